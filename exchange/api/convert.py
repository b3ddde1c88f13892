"""Translations between API-NG shapes and the exchange's commands and views.

Owns the one place where decimal prices and currency units meet ladder ticks and
minor units, exactly (``Decimal`` arithmetic, never floats): 2.5 units <-> 250 pence,
price 3.05 <-> its tick. A value that has no exact form inside (a size of 2.555, a
price off the ladder) is passed on as one the domain refuses with API-NG's code
(INVALID_BET_SIZE, INVALID_ODDS), so the rules stay in the domain.

Pure functions ``x_to_y``: no I/O, no clock (the caller passes ``now``).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from decimal import Decimal

import msgspec

from exchange.domain import codes, ladder
from exchange.domain.messages import CommandResult
from exchange.domain.messages import PlaceInstruction as DomainPlaceInstruction
from exchange.domain.messages import PlaceOrders

from exchange.api import wire

BET_SPACE = 10**9            # bet ids per market inside an API betId
ZERO = Decimal(0)
REFUSED_PRICE = "0"          # not a ladder price: the domain answers INVALID_ODDS
INVALID_BET_ID = "INVALID_BET_ID"


# ---------------------------------------------------------------- numbers


def units_to_minor(amount: Decimal) -> int | None:
    """2.5 -> 250; None when the amount has more than two decimals (or is not finite)."""
    if not amount.is_finite():
        return None
    minor = amount.scaleb(2)
    if minor != minor.to_integral_value():
        return None
    return int(minor)


def minor_to_units(amount: int) -> Decimal:
    """250 -> Decimal('2.50'), written as the JSON number 2.50."""
    return Decimal(amount).scaleb(-2)


def price_to_text(price: Decimal) -> str:
    """A decimal price -> the ladder's canonical text, or a text the domain refuses."""
    hundredths = units_to_minor(price)
    tick = ladder.tick_of_hundredths(hundredths) if hundredths is not None else None
    return ladder.price_text(tick) if tick is not None else REFUSED_PRICE


def tick_to_price(tick: int) -> Decimal:
    return Decimal(ladder.PRICES[tick]).scaleb(-2)


def rate_to_bp(rate: Decimal) -> int | None:
    """0.05 -> 500 basis points; None when not a whole number of basis points."""
    if not rate.is_finite():
        return None
    bp = rate.scaleb(4)
    return int(bp) if bp == bp.to_integral_value() and 0 <= bp <= 10_000 else None


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


# ---------------------------------------------------------------- ids


def market_number(market_id: str) -> int | None:
    """'1.100000007' -> 100000007 (API-NG's market id form), else None."""
    prefix, _, number = market_id.partition(".")
    if prefix == "1" and number.isdigit() and len(number) <= 9:
        return int(number)
    return None


def bet_id_to_api(market_id: str, bet_id: int) -> str:
    """A bet id unique across markets (API-NG's betId is a string of digits)."""
    number = market_number(market_id)
    if number is None or not 0 < bet_id < BET_SPACE:
        return f"{market_id}~{bet_id}"
    return str(number * BET_SPACE + bet_id)


def api_to_bet_id(bet_id: str) -> tuple[str, int] | None:
    """betId -> (market id, bet id within the market); None when it is not one of ours."""
    if "~" in bet_id:
        market_id, _, n = bet_id.rpartition("~")
        return (market_id, int(n)) if n.isdigit() and market_id else None
    if not bet_id.isdigit() or len(bet_id) > 18:
        return None
    number, n = divmod(int(bet_id), BET_SPACE)
    return (f"1.{number}", n) if number and n else None


def command_id_for(account_id: str, operation: str, customer_ref: str | None, fresh: str) -> str:
    """The command id: derived from the customerRef (so a retry is a duplicate), else ``fresh``."""
    if customer_ref is None:
        return fresh
    digest = hashlib.blake2b(f"{account_id}\0{operation}\0{customer_ref}".encode(), digest_size=16)
    return f"ref-{digest.hexdigest()}"


# ---------------------------------------------------------------- orders


def place_params_to_command(params: wire.PlaceOrdersParams, account_id: str, command_id: str) -> PlaceOrders:
    instructions = []
    for ins in params.instructions:
        order = ins.limit_order
        size = units_to_minor(order.size)
        min_fill = None
        if order.min_fill_size is not None:
            min_fill = units_to_minor(order.min_fill_size)
            min_fill = -1 if min_fill is None else min_fill        # -> INVALID_MIN_FILL_SIZE
        instructions.append(DomainPlaceInstruction(
            runner_id=ins.selection_id, side=ins.side, price=price_to_text(order.price),
            size=0 if size is None else size,                        # 0 -> INVALID_BET_SIZE
            persistence=order.persistence_type, time_in_force=order.time_in_force,
            min_fill_size=min_fill, customer_ref=ins.customer_order_ref))
    version = params.market_version.version if params.market_version is not None else None
    return PlaceOrders(command_id=command_id, market_id=params.market_id, player_id=account_id,
                       instructions=instructions, market_version=version)


def execution_status(result: CommandResult) -> tuple[str, str | None]:
    """(ExecutionReportStatus, ExecutionReportErrorCode) of a command result."""
    if result.status == "SUCCESS":
        return "SUCCESS", None
    if result.error_code == codes.PROCESSED_WITH_ERRORS and any(r.status == "SUCCESS" for r in result.reports):
        return "PROCESSED_WITH_ERRORS", codes.PROCESSED_WITH_ERRORS
    return "FAILURE", result.error_code


def result_to_place_report(params: wire.PlaceOrdersParams, result: CommandResult,
                           now: datetime) -> wire.PlaceExecutionReport:
    status, error = execution_status(result)
    by_index = {r.index: r for r in result.reports}
    reports = []
    for index, ins in enumerate(params.instructions):
        r = by_index.get(index)
        if r is None or r.status != "SUCCESS":
            reports.append(wire.PlaceInstructionReport(
                status="FAILURE", instruction=ins,
                error_code=(r.error_code if r is not None else error) or codes.PROCESSED_WITH_ERRORS))
            continue
        size = units_to_minor(ins.limit_order.size) or 0
        done = ins.limit_order.time_in_force is not None or r.size_matched >= size
        reports.append(wire.PlaceInstructionReport(
            status="SUCCESS", instruction=ins,
            order_status="EXECUTION_COMPLETE" if done else "EXECUTABLE",
            bet_id=bet_id_to_api(params.market_id, r.bet_id), placed_date=now,
            average_price_matched=average_price(r.matched_value, r.size_matched),
            size_matched=minor_to_units(r.size_matched)))
    return wire.PlaceExecutionReport(status=status, error_code=error, market_id=params.market_id,
                                     customer_ref=params.customer_ref, instruction_reports=reports)


def order_record_to_view(market_id: str, o) -> dict:
    """A stream feed's OrderRecord (exchange/domain/feed.py) -> the view player_orders gives."""
    return {"market_id": market_id, "bet_id": o.bet_id, "selection_id": o.runner_id, "side": o.side,
            "tick": o.tick, "size": o.size, "remaining": o.remaining, "matched": o.matched,
            "persistence": o.persistence, "time_in_force": o.time_in_force, "customer_ref": o.customer_ref,
            "placed_at": o.placed_at, "lapsed": o.lapsed, "cancelled": o.cancelled, "voided": o.voided,
            "matched_value": o.matched_value}


def order_view_to_summary(view: dict, regulator: str) -> wire.CurrentOrderSummary:
    """A player_orders row (a live order: EXECUTABLE) or a complete order's view -> CurrentOrderSummary."""
    size, remaining, matched = view["size"], view["remaining"], view["matched"]
    lapsed = view.get("lapsed", 0)
    cancelled = view.get("cancelled", size - remaining - matched - lapsed)
    return wire.CurrentOrderSummary(
        bet_id=bet_id_to_api(view["market_id"], view["bet_id"]), market_id=view["market_id"],
        selection_id=view["selection_id"], handicap=ZERO,
        price_size=wire.PriceSize(price=tick_to_price(view["tick"]), size=minor_to_units(size)),
        bsp_liability=ZERO, side=view["side"], status="EXECUTABLE" if remaining else "EXECUTION_COMPLETE",
        persistence_type=view["persistence"], order_type="LIMIT",
        placed_date=ms_to_datetime(view["placed_at"]), size_matched=minor_to_units(matched),
        size_remaining=minor_to_units(remaining), size_lapsed=minor_to_units(lapsed),
        size_cancelled=minor_to_units(cancelled), size_voided=minor_to_units(view.get("voided", 0)),
        average_price_matched=average_price(view["matched_value"], matched),
        regulator_code=regulator, customer_order_ref=view["customer_ref"])


def order_view_to_order(view: dict) -> wire.Order:
    size, remaining, matched = view["size"], view["remaining"], view["matched"]
    return wire.Order(
        bet_id=bet_id_to_api(view["market_id"], view["bet_id"]), order_type="LIMIT",
        status="EXECUTABLE" if remaining else "EXECUTION_COMPLETE", persistence_type=view["persistence"],
        side=view["side"], price=tick_to_price(view["tick"]), size=minor_to_units(size),
        bsp_liability=ZERO, placed_date=ms_to_datetime(view["placed_at"]),
        size_matched=minor_to_units(matched), size_remaining=minor_to_units(remaining),
        size_lapsed=ZERO, size_cancelled=minor_to_units(size - remaining - matched), size_voided=ZERO,
        average_price_matched=average_price(view["matched_value"], matched),
        customer_order_ref=view["customer_ref"])


# ---------------------------------------------------------------- prices


def levels_to_price_sizes(levels) -> list[wire.PriceSize]:
    return [wire.PriceSize(price=tick_to_price(tick), size=minor_to_units(size)) for tick, size in levels]


def market_status(view: dict) -> str:
    """API-NG MarketStatus: INACTIVE, OPEN, SUSPENDED, CLOSED."""
    return "CLOSED" if view["settlement"] is not None else view["status"]


def view_to_market_book(view: dict, with_prices: bool, orders: list[dict] | None = None,
                        traded=None, with_traded: bool = False) -> wire.MarketBook:
    """MarketHost.market_books view -> MarketBook; ``orders``: the caller's own live orders;
    ``traded``: the market's feed (exchange/domain/feed.py MarketFeed) for totalMatched,
    lastPriceTraded and, ``with_traded`` (EX_TRADED), tradedVolume; None: not known here."""
    runners = []
    mine: dict[int, list[wire.Order]] = {}
    for o in orders or ():
        mine.setdefault(o["selection_id"], []).append(order_view_to_order(o))
    market_matched = 0
    for r in view["runners"]:
        rid = r["selection_id"]
        volume = traded.traded.get(rid, {}) if traded is not None else {}
        ex = None
        if with_prices or with_traded:
            ex = wire.ExchangePrices(
                available_to_back=levels_to_price_sizes(r["to_back"]) if with_prices else [],
                available_to_lay=levels_to_price_sizes(r["to_lay"]) if with_prices else [],
                traded_volume=levels_to_price_sizes(sorted(volume.items())) if with_traded else [])
        matched = sum(volume.values())
        market_matched += matched
        ltp = traded.ltp.get(rid) if traded is not None else None
        runners.append(wire.Runner(selection_id=rid, handicap=ZERO,
                                   status="ACTIVE" if r["active"] else "REMOVED",
                                   last_price_traded=tick_to_price(ltp) if ltp is not None else None,
                                   total_matched=minor_to_units(matched) if traded is not None else None, ex=ex,
                                   orders=mine.get(rid, []) if orders is not None else None))
    return wire.MarketBook(
        total_matched=minor_to_units(market_matched) if traded is not None else None,
        market_id=view["market_id"], is_market_data_delayed=False, status=market_status(view),
        bet_delay=view["bet_delay_ms"] // 1000, bsp_reconciled=False, complete=True,
        inplay=view["in_play"], number_of_winners=view["number_of_winners"],
        number_of_runners=len(view["runners"]),
        number_of_active_runners=sum(1 for r in view["runners"] if r["active"]),
        cross_matching=False, runners_voidable=False, version=view["version"], runners=runners)


# ---------------------------------------------------------------- profit and loss


def pnl_view_to_market_profit_and_loss(view: dict) -> wire.MarketProfitAndLoss:
    """MarketHost.profit_and_loss view (minor units) -> MarketProfitAndLoss; commissionApplied
    (the market's base rate as a percentage, 500 bp -> 5.00) only when it was netted off."""
    bp = view["commission_bp"]
    return wire.MarketProfitAndLoss(
        market_id=view["market_id"],
        profit_and_losses=[wire.RunnerProfitAndLoss(
            selection_id=selection_id, if_win=minor_to_units(if_win),
            if_lose=minor_to_units(if_lose) if if_lose is not None else None)
            for selection_id, if_win, if_lose in view["runners"]],
        commission_applied=Decimal(bp).scaleb(-2) if bp is not None else None)


# ---------------------------------------------------------------- funds


def balances_to_funds(balance: dict | None) -> wire.AccountFundsResponse:
    """Wallet host balances -> AccountFundsResponse (exposure is negative, as in API-NG).

    A reservation (an order between the wallet's hold and the market's report) counts
    as exposure: it is money the bettor cannot bet with.
    """
    balance = balance or {"available": 0, "exposure": 0, "reserved": 0}
    return wire.AccountFundsResponse(
        available_to_bet_balance=minor_to_units(balance["available"]),
        exposure=minor_to_units(-(balance["exposure"] + balance["reserved"])),
        retained_commission=ZERO, discount_rate=ZERO,
        points_balance=0, wallet="UK")


# ---------------------------------------------------------------- history (cleared orders, statement)

#: getAccountStatement's includeItem -> the statement item kinds it lists (None: every kind)
INCLUDE_ITEM_KINDS: dict[str, list[str] | None] = {
    "ALL": None, "DEPOSITS_WITHDRAWALS": ["DEPOSIT", "WITHDRAWAL"], "EXCHANGE": ["SETTLEMENT", "COMMISSION"],
    "POKER_ROOM": [],
}
_statement_json = msgspec.json.Encoder(decimal_format="number")
_ITEM_NAMES = {"DEPOSIT": "Deposit", "WITHDRAWAL": "Withdrawal", "COMMISSION": "Commission"}


def account_details(account) -> wire.AccountDetailsResponse:
    """A platform Account -> API-NG's AccountDetailsResponse (see wire.AccountDetailsResponse)."""
    country, _, rest = account.jurisdiction.partition("-")
    return wire.AccountDetailsResponse(
        currency_code=account.currency, locale_code="en", region=account.jurisdiction, timezone="UTC",
        discount_rate=ZERO, points_balance=0,
        country_code=country.upper() if rest and len(country) == 2 else None)


def average_price(matched_value: int, matched: int) -> Decimal | None:
    """The average matched price from its numerator (size x price in hundredths), to 0.01."""
    if not matched:
        return None
    return (Decimal(matched_value) / matched).scaleb(-2).quantize(Decimal("0.01"))


def cleared_row_to_summary(row, with_description: bool = False) -> wire.ClearedOrderSummary:
    """A cleared_orders row (exchange/history/store.py, joined with the catalogue) -> ClearedOrderSummary.

    One bet per summary (groupBy BET): betCount 1; commission is per market, never per
    bet, so it is left out (see getAccountStatement for it).
    """
    description = None
    if with_description:
        description = wire.ItemDescription(
            event_type_desc=row["event_type_name"], event_desc=row["event_name"], market_desc=row["market_name"],
            market_type=row["market_type"], market_start_time=row["market_start_time"],
            runner_desc=row["runner_name"], number_of_winners=row["number_of_winners"])
    return wire.ClearedOrderSummary(
        event_type_id=row["event_type_id"], event_id=row["event_id"], market_id=row["market_id"],
        selection_id=row["selection_id"], handicap=ZERO, bet_id=bet_id_to_api(row["market_id"], row["bet_id"]),
        placed_date=row["placed_at"], persistence_type=row["persistence"], order_type="LIMIT", side=row["side"],
        item_description=description, bet_outcome=row["outcome"], price_requested=tick_to_price(row["price_tick"]),
        settled_date=row["settled_at"], last_matched_date=row["last_matched_at"], bet_count=1,
        price_matched=average_price(row["matched_value"], row["size_matched"]), price_reduced=False,
        size_settled=minor_to_units(row["size_settled"]), profit=minor_to_units(row["profit"]),
        size_cancelled=minor_to_units(row["size_cancelled"]), customer_order_ref=row["customer_ref"])


def _long(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() and len(text) <= 18 else None


def statement_row_to_item(row) -> wire.StatementItem:
    """A statement_items row (joined with its market's catalogue) -> StatementItem.

    itemClass UNKNOWN, as Betfair sends for exchange items: itemClassData's
    ``unknownStatementItem`` is the legacy data as a JSON string. Deposits and
    withdrawals say so in ``marketName``; a settlement is WON or LOST by its sign, its
    commission is an item of its own (``marketName`` "Commission", with the rate).
    """
    kind, amount = row["kind"], row["amount"]
    exchange = kind in ("SETTLEMENT", "COMMISSION")
    market_name = row["market_name"]
    full_name = f"{row['event_name']} / {market_name}" if market_name and row["event_name"] else market_name
    if kind == "SETTLEMENT":
        win_lose = "RESULT_WON" if amount > 0 else "RESULT_LOST" if amount < 0 else "RESULT_NOT_APPLICABLE"
    else:
        win_lose = "RESULT_NOT_APPLICABLE"
    bp = row["commission_bp"]
    legacy = wire.StatementLegacyData(
        avg_price=ZERO, bet_size=ZERO, bet_category_type="E" if exchange else None,
        commission_rate=f"{Decimal(bp).scaleb(-2).normalize():f}%" if kind == "COMMISSION" and bp is not None else None,
        event_id=_long(row["event_id"]), event_type_id=_long(row["event_type_id"]), full_market_name=full_name,
        gross_bet_amount=minor_to_units(amount) if kind == "SETTLEMENT" else None,
        market_name=_ITEM_NAMES.get(kind, market_name),
        market_type="O" if exchange else None, start_date=row["market_start_time"],
        transaction_type="ACCOUNT_CREDIT" if amount >= 0 else "ACCOUNT_DEBIT", win_lose=win_lose)
    return wire.StatementItem(
        ref_id=row["ref_id"], item_date=row["item_at"], amount=minor_to_units(amount),
        balance=minor_to_units(row["balance"]), item_class="UNKNOWN",
        item_class_data={"unknownStatementItem": _statement_json.encode(legacy).decode()}, legacy_data=legacy)
