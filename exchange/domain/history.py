"""The history read model: cleared orders and account-statement items, from the journals.

Owns the pure turn of a jurisdiction's journalled events into the rows behind API-NG's
listClearedOrders and getAccountStatement, and the rule that makes a replay harmless:

- Markets. Each open market's events go through a ``MarketFeed`` (exchange/domain/feed.py,
  which already tracks every order's matched size, average price numerator, cancelled,
  lapsed and voided sizes through completion) plus, per bet, what its fills win if its
  side wins (the per-fill ``money.back_profit`` amounts the settlement itself adds up).
  When the market settles or is voided every bet it ever held becomes one row per
  status: SETTLED (its matched size, with its profit from the winners), VOIDED (a
  matched size voided by a removed runner or a voided market: profit 0), CANCELLED and
  LAPSED (unmatched sizes the player cancelled / the market lapsed or a FILL_OR_KILL
  expired). Then the market is complete and forgotten but for its sequence number.
- Dead heat: a bet on a tied runner is settled as stake x places/k at full odds and the
  rest lost, rounded down (floor), per bet; the players' market results round once per
  player (exchange/domain/settlement.py), so a dead heat's bet profits can differ from
  the player's result by less than one minor unit per bet. Without a dead heat they add
  up exactly.
- Wallets. Every money movement is a statement item with the balance after it:
  FundsDeposited (+amount), FundsWithdrawn (-amount), SettlementApplied (+pnl, then
  -commission as its own item when there is one). Exposure events move no balance and
  make no item.
- Replay. Every event carries its aggregate's sequence number: a batch whose events are
  at or below what was applied is skipped (wholly or in part). A batch that starts
  beyond the next expected event is a gap: it is reported; a wallet's items are still
  written (each is a fact), a market with a gap is never settled from (its rows would
  be wrong): it is dropped.

Rows carry times as the events' own ``at`` (epoch ms) and money in minor units.
Must never do I/O or read a clock; never emit a row twice for the same (bet, status)
or (wallet, seq, part) from the same history.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from .feed import MarketFeed, OrderRecord
from .messages import (
    BACK,
    FundsDeposited,
    FundsWithdrawn,
    MarketDefined,
    MarketSettled,
    MarketVoided,
    OrderPlaced,
    SettlementApplied,
)
from .money import back_profit

SETTLED = "SETTLED"
VOIDED = "VOIDED"
LAPSED = "LAPSED"
CANCELLED = "CANCELLED"
BET_STATUSES = (SETTLED, VOIDED, LAPSED, CANCELLED)

WON = "WON"
LOST = "LOST"

DEPOSIT = "DEPOSIT"
WITHDRAWAL = "WITHDRAWAL"
SETTLEMENT = "SETTLEMENT"
COMMISSION = "COMMISSION"
ITEM_KINDS = (DEPOSIT, WITHDRAWAL, SETTLEMENT, COMMISSION)


class ClearedOrder(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One bet in one final status (a bet can have up to three: e.g. SETTLED for its
    matched part and CANCELLED for the rest). Keyed by (market_id, bet_id, bet_status)."""

    market_id: str
    bet_id: int
    bet_status: str
    player_id: str
    selection_id: int
    side: str
    persistence: str
    price_tick: int             # the price asked
    size: int                   # the size asked
    placed_at: int
    settled_at: int             # settlement / void time; the cancel or lapse time for those rows
    last_matched_at: int | None
    size_settled: int           # SETTLED: matched; VOIDED: voided; else 0
    matched_value: int          # sum of fill size x price in hundredths (average price numerator)
    size_matched: int           # the bet's whole matched size (average price denominator)
    profit: int                 # SETTLED only; 0 otherwise
    size_cancelled: int         # CANCELLED: cancelled; LAPSED: lapsed (and expired); else 0
    customer_ref: str | None
    outcome: str | None         # WON / LOST for SETTLED rows


class StatementItem(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One money movement of one wallet, with the balance after it. Keyed by
    (account_id, seq, part): the wallet event's sequence number, and 1 for the
    commission item of a settlement (0 otherwise)."""

    account_id: str
    seq: int
    part: int
    ref_id: str
    at: int
    amount: int
    balance: int
    kind: str
    market_id: str | None = None


class Applied(NamedTuple):
    """What one journal batch changed."""

    fresh: int                      # how many of the batch's events were new (its last ``fresh``)
    cleared: list[ClearedOrder]
    items: list[StatementItem]
    finished: bool                  # the market settled or was voided: it is complete
    gap: bool                       # the batch began beyond the next expected event


def fresh_count(applied_seq: int, first_seq: int, count: int) -> tuple[int, bool]:
    """(how many of a batch's ``count`` events, numbered from ``first_seq``, come after
    ``applied_seq``; whether the batch leaves a gap after it)."""
    skip = applied_seq + 1 - first_seq
    if skip < 0:
        return count, True
    return max(0, count - skip), False


# ---------------------------------------------------------------- markets


class MarketHistory:
    """One open market: its feed, and per bet what its fills win if its side wins.

    The feed's ``take_changes`` is never called, so it keeps every order of the market,
    complete ones too (a fully matched bet can still be voided), until the market completes.
    """

    __slots__ = ("feed", "wins", "seq")

    def __init__(self) -> None:
        self.feed = MarketFeed()
        self.wins: dict[int, int] = {}      # bet id -> sum of back_profit over its fills
        self.seq = 0

    def apply(self, event) -> list[ClearedOrder]:
        """Folds one event in; the market's cleared orders when it settles or is voided."""
        self.feed.apply(event)
        self.seq = event.seq
        kind = type(event)
        if kind is OrderPlaced and event.fills:
            wins = self.wins
            for f in event.fills:
                won = back_profit(f.size, f.price_tick)
                wins[event.bet_id] = wins.get(event.bet_id, 0) + won
                wins[f.maker_bet_id] = wins.get(f.maker_bet_id, 0) + won
        elif kind is MarketSettled:
            return self._cleared(event.market_id, event.at, set(event.winners), tuple(event.dead_heat))
        elif kind is MarketVoided:
            return self._cleared(event.market_id, event.at, None, ())
        return []

    def _cleared(self, market_id: str, at: int, winners: set[int] | None,
                 dead_heat: tuple[int, ...]) -> list[ClearedOrder]:
        state = self.feed.state
        places = state.number_of_winners - len(winners or ())
        tied = set(dead_heat)
        rows = []
        for order in sorted(self.feed.orders.values(), key=lambda o: o.bet_id):
            if order.voided:
                rows.append(_row(market_id, order, VOIDED, at, size_settled=order.voided))
            elif order.matched and winners is not None:
                profit = bet_profit(order.side == BACK, order.matched, self.wins.get(order.bet_id, 0),
                                    order.runner_id in winners, order.runner_id in tied, places, len(tied))
                if order.runner_id in tied:
                    won = profit > 0
                else:
                    won = (order.runner_id in winners) == (order.side == BACK)
                rows.append(_row(market_id, order, SETTLED, at, size_settled=order.matched, profit=profit,
                                 outcome=WON if won else LOST))
            if order.cancelled:
                rows.append(_row(market_id, order, CANCELLED, order.cancelled_at or at,
                                 size_cancelled=order.cancelled))
            if order.lapsed:
                rows.append(_row(market_id, order, LAPSED, order.lapsed_at or at, size_cancelled=order.lapsed))
        return rows


def bet_profit(is_back: bool, matched: int, wins: int, winner: bool, tied: bool, places: int, k: int) -> int:
    """A matched bet's profit: a back wins ``wins`` (its fills' back_profit) if its runner
    wins and loses ``matched`` if not; a lay mirrors it. On a runner tied in a dead heat
    for ``places`` places among ``k`` runners: stake x places/k at full odds, the rest
    lost, rounded down."""
    if tied:
        numerator = wins * places - matched * (k - places)
        return (numerator if is_back else -numerator) // k
    back = wins if winner else -matched
    return back if is_back else -back


def _row(market_id: str, o: OrderRecord, status: str, settled_at: int, *, size_settled: int = 0,
         profit: int = 0, size_cancelled: int = 0, outcome: str | None = None) -> ClearedOrder:
    return ClearedOrder(
        market_id=market_id, bet_id=o.bet_id, bet_status=status, player_id=o.player_id,
        selection_id=o.runner_id, side=o.side, persistence=o.persistence, price_tick=o.tick, size=o.size,
        placed_at=o.placed_at, settled_at=settled_at, last_matched_at=o.matched_at,
        size_settled=size_settled, matched_value=o.matched_value, size_matched=o.matched, profit=profit,
        size_cancelled=size_cancelled, customer_ref=o.customer_ref, outcome=outcome)


# ---------------------------------------------------------------- wallets


def statement_items(balance: int, event) -> tuple[int, list[StatementItem]]:
    """(the balance after a wallet event, its statement items)."""
    kind = type(event)
    if kind is FundsDeposited:
        balance += event.amount
        return balance, [StatementItem(account_id=event.wallet_id, seq=event.seq, part=0, ref_id=event.command_id,
                                       at=event.at, amount=event.amount, balance=balance, kind=DEPOSIT)]
    if kind is FundsWithdrawn:
        balance -= event.amount
        return balance, [StatementItem(account_id=event.wallet_id, seq=event.seq, part=0, ref_id=event.command_id,
                                       at=event.at, amount=-event.amount, balance=balance, kind=WITHDRAWAL)]
    if kind is SettlementApplied:
        balance += event.pnl
        items = [StatementItem(account_id=event.wallet_id, seq=event.seq, part=0, ref_id=event.market_id,
                               at=event.at, amount=event.pnl, balance=balance, kind=SETTLEMENT,
                               market_id=event.market_id)]
        if event.commission:
            balance -= event.commission
            items.append(StatementItem(account_id=event.wallet_id, seq=event.seq, part=1, ref_id=event.market_id,
                                       at=event.at, amount=-event.commission, balance=balance, kind=COMMISSION,
                                       market_id=event.market_id))
        return balance, items
    return balance, []


# ---------------------------------------------------------------- both journals


class HistoryProjection:
    """A jurisdiction's market and wallet journals folded into rows, replay-safe.

    ``market_seqs`` and ``wallets`` hold what was applied per aggregate; a caller that
    keeps them elsewhere (a database) restores them before handing over an aggregate's
    batches (``restore_*``); an aggregate never seen starts at sequence 0.
    """

    def __init__(self) -> None:
        self.markets: dict[str, MarketHistory] = {}          # open markets
        self.market_seqs: dict[str, int] = {}                # every market: last applied seq
        self.wallets: dict[str, tuple[int, int]] = {}        # wallet id -> (last applied seq, balance)

    # ------------------------------------------------------------ restore

    def restore_market(self, market_id: str, events) -> None:
        """An open market from its stored events (in order): no rows come out of it."""
        history = MarketHistory()
        for event in events:
            history.apply(event)
        self.markets[market_id] = history
        self.market_seqs[market_id] = history.seq

    def restore_market_seq(self, market_id: str, seq: int) -> None:
        self.market_seqs[market_id] = seq

    def restore_wallet(self, wallet_id: str, seq: int, balance: int) -> None:
        self.wallets[wallet_id] = (seq, balance)

    # ------------------------------------------------------------ batches

    def market_batch(self, market_id: str, first_seq: int, events: list) -> Applied:
        applied = self.market_seqs.get(market_id, 0)
        fresh, gap = fresh_count(applied, first_seq, len(events))
        if not fresh:
            return Applied(0, [], [], False, False)
        history = self.markets.get(market_id)
        new = events[len(events) - fresh:]
        if gap or (history is None and type(new[0]) is not MarketDefined):
            # a hole in the market's history (or events after it completed): never settle from it
            self.markets.pop(market_id, None)
            self.market_seqs[market_id] = new[-1].seq
            return Applied(fresh, [], [], False, gap or applied == 0)
        if history is None:
            history = self.markets[market_id] = MarketHistory()
        cleared: list[ClearedOrder] = []
        finished = False
        for event in new:
            cleared.extend(history.apply(event))
            if type(event) is MarketSettled or type(event) is MarketVoided:
                finished = True
        self.market_seqs[market_id] = history.seq
        if finished:
            del self.markets[market_id]
        return Applied(fresh, cleared, [], finished, False)

    def wallet_batch(self, wallet_id: str, first_seq: int, events: list) -> Applied:
        seq, balance = self.wallets.get(wallet_id, (0, 0))
        fresh, gap = fresh_count(seq, first_seq, len(events))
        if not fresh:
            return Applied(0, [], [], False, False)
        items: list[StatementItem] = []
        for event in events[len(events) - fresh:]:
            balance, new = statement_items(balance, event)
            items.extend(new)
            seq = event.seq
        self.wallets[wallet_id] = (seq, balance)
        return Applied(fresh, [], items, False, gap)


__all__ = ["Applied", "ClearedOrder", "HistoryProjection", "MarketHistory", "StatementItem", "bet_profit",
           "fresh_count", "statement_items"]
