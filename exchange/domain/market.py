"""The market aggregate: one market's books, orders, positions and lifecycle.

Owns the rules of a market: lifecycle INACTIVE -> OPEN <-> SUSPENDED -> CLOSED
(plus in-play, runner removal, settlement, void), placement with price-time
matching, cancel, replace, update, the per-player positions behind exposure,
and the market's event stream (``seq`` = the aggregate version after an event;
``version`` = the market version clients see, bumped on material changes).

The three functions the host calls:

- ``decide_*(state, ..., ctx) -> list[event] | reason code``: pure, reads the
  state, never changes it. A refusal is a code from ``codes``.
- ``evolve(state, event) -> state``: the only thing that changes a market. It
  never validates and never raises on events ``decide`` produced; it mutates
  ``state`` in place and returns it (a market holds a 2x350-level book per
  runner; copying it per event would cost more than the matching).
- ``handle(state, command, ctx) -> (state, CommandResult)``: decides each
  instruction of the command against the state the earlier instructions left
  and evolves its events at once, so the result's events replayed through
  ``evolve`` from the same starting state rebuild exactly the same state.
  The commonest commands (one placement, one cancel) take fused paths that
  decide and apply in one pass, to exactly the same events and state.
  Host actors call this, persist ``result.events``, then reply; if persisting
  fails they crash and replay (crash-only), so the in-memory state never
  outlives its journal.

Funds are not checked here: the wallet reserves before a placement and the
market reports every touched player's new exposure (``CommandResult.exposures``).
Bet ids come from the market's own counter, so replay reproduces them.

Must never do I/O, read a clock, draw random numbers or raise on user input.
"""

from __future__ import annotations

from collections import deque

import msgspec

from . import codes
from .book import NO_ORDERS, RunnerBook
from .context import Context
from .exposure import REMOVED, Position, exposure
from .ladder import _TICK_BY_TEXT, PRICES, TICKS, parse_price
from .messages import (
    BACK,
    FAILURE,
    FILL_OR_KILL,
    LAPSE,
    LAY,
    MARKET_ON_CLOSE,
    PERSIST,
    SUCCESS,
    CancelOrders,
    CloseMarket,
    CommandResult,
    DefineMarket,
    Fill,
    InstructionReport,
    MarketClosed,
    MarketDefined,
    MarketOpened,
    MarketSettled,
    MarketSuspended,
    MarketTurnedInPlay,
    MarketVoided,
    OpenMarket,
    OrderCancelled,
    OrderExpired,
    OrderLapsed,
    OrderPlaced,
    OrderUpdated,
    PlaceOrders,
    PlayerResult,
    RemoveRunner,
    ReplaceOrders,
    RunnerRemoved,
    SettleMarket,
    SuspendMarket,
    TurnInPlay,
    UpdateOrders,
    VoidMarket,
)
from .money import ODDS_MINUS_ONE
from .orders import MAX_CUSTOMER_REF, PERSISTENCES, Order
from .settlement import settle

INACTIVE = "INACTIVE"
OPEN = "OPEN"
SUSPENDED = "SUSPENDED"
CLOSED = "CLOSED"

SETTLED = "SETTLED"
VOIDED = "VOIDED"

MAX_INSTRUCTIONS = 200  # API-NG's limit for placeOrders
MAX_RUNNERS = 1000

LAPSED_IN_PLAY = "IN_PLAY"
LAPSED_RUNNER_REMOVED = "RUNNER_REMOVED"
LAPSED_MARKET_CLOSED = "MARKET_CLOSED"


class MarketState:
    """Everything a market knows; rebuilt exactly by replaying its events."""

    __slots__ = (
        "market_id",
        "seq",
        "version",
        "status",
        "in_play",
        "bet_delay_ms",
        "runners",
        "runner_index",
        "active_index",
        "active",
        "number_of_winners",
        "min_stake",
        "commission_rate_bp",
        "books",
        "orders",
        "positions",
        "refs",
        "next_bet_id",
        "matched_bets",
        "settlement",
        "results",
    )

    def __init__(
        self,
        market_id: str,
        runners: tuple[int, ...],
        number_of_winners: int,
        min_stake: int,
        commission_rate_bp: int,
    ) -> None:
        self.market_id = market_id
        self.seq = 0
        self.version = 0
        self.status = INACTIVE
        self.in_play = False
        self.bet_delay_ms = 0
        self.runners = runners
        self.runner_index = {runner_id: i for i, runner_id in enumerate(runners)}
        self.active_index = dict(self.runner_index)  # runners not removed
        self.active: tuple[int, ...] = tuple(range(len(runners)))
        self.number_of_winners = number_of_winners
        self.min_stake = min_stake
        self.commission_rate_bp = commission_rate_bp
        self.books = [RunnerBook() for _ in runners]
        self.orders: dict[int, Order] = {}  # live orders (unmatched size > 0) by bet id
        self.positions: dict[str, Position] = {}
        self.refs: set[tuple[str, str]] = set()  # (player id, customer ref) ever used
        self.next_bet_id = 1
        self.matched_bets: list[list[int]] = [[] for _ in runners]  # bet ids with a fill, per runner
        self.settlement: str | None = None  # SETTLED or VOIDED
        self.results: list[PlayerResult] = []

    # ---------------------------------------------------------------- reads

    def exposure_of(self, player_id: str) -> int:
        if self.settlement is not None:
            return 0
        position = self.positions.get(player_id)
        if position is None:
            return 0
        return exposure(position, self.number_of_winners, len(self.active))

    def live_orders(self, player_id: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if player_id is None or o.player_id == player_id]

    def __getstate__(self) -> tuple:
        """What pickle keeps (hosts snapshot states with it): every field, in slot order,
        with the three big ones packed by msgspec: positions as (lose, delta, base) per
        player, live orders as a list, books as bet ids per level. Pickling each Position
        and Order as an object cost ~0.7-0.9 us apiece (a market with 790 players and
        209 live orders: 0.40 ms, against ~0.15 ms packed), and hosts snapshot while they
        answer, so it was latency."""
        packed = {
            "positions": _PACK.encode({p: (pos.lose, pos.delta, pos.base) for p, pos in self.positions.items()}),
            "orders": _PACK.encode(list(self.orders.values())),
            "books": _PACK.encode([book.levels() for book in self.books]),
        }
        return tuple(packed[name] if name in packed else getattr(self, name) for name in _SLOTS)

    def __setstate__(self, state) -> None:
        if type(state) is tuple and len(state) == len(_SLOTS):
            for name, value in zip(_SLOTS, state):
                setattr(self, name, value)
            self.positions = {p: Position.of(lose, delta, base)
                              for p, (lose, delta, base) in msgspec.msgpack.decode(self.positions).items()}
            if type(self.orders) is bytes:   # (a snapshot of one evening's code packed only the positions)
                self.orders = {o.bet_id: o for o in _ORDERS.decode(self.orders)}
                self.books = [RunnerBook.of(levels, self.orders) for levels in msgspec.msgpack.decode(self.books)]
        else:   # pickled before __getstate__ existed: (None, {slot: value})
            for name, value in state[1].items():
                setattr(self, name, value)

    def snapshot(self) -> dict:
        """Every field as builtins: equal snapshots mean equal states."""
        return {
            "market_id": self.market_id,
            "seq": self.seq,
            "version": self.version,
            "status": self.status,
            "in_play": self.in_play,
            "bet_delay_ms": self.bet_delay_ms,
            "runners": self.runners,
            "active": self.active,
            "number_of_winners": self.number_of_winners,
            "min_stake": self.min_stake,
            "commission_rate_bp": self.commission_rate_bp,
            "books": [b.snapshot() for b in self.books],
            "orders": {k: o.snapshot() for k, o in self.orders.items()},
            "positions": {k: p.snapshot() for k, p in sorted(self.positions.items())},
            "refs": sorted(self.refs),
            "next_bet_id": self.next_bet_id,
            "matched_bets": [tuple(m) for m in self.matched_bets],
            "settlement": self.settlement,
            "results": list(self.results),
        }


_SLOTS = MarketState.__slots__
_PACK = msgspec.msgpack.Encoder()
_ORDERS = msgspec.msgpack.Decoder(list[Order])


# ======================================================================
# decide: placement


def decide_place(
    state: MarketState,
    player_id: str,
    ins,
    now: int,
    seq: int,
) -> list | str:
    """Events for one PlaceInstruction (OrderPlaced, then OrderExpired for a
    FILL_OR_KILL remainder), or a reason code. ``seq`` is the last sequence
    number used; the events take the next ones."""
    status = state.status
    if status != OPEN:
        return codes.MARKET_SUSPENDED if status == SUSPENDED else codes.MARKET_NOT_OPEN_FOR_BETTING
    runner_id = ins.runner_id
    ri = state.active_index.get(runner_id) if type(runner_id) is int else None
    if ri is None:
        return codes.INVALID_RUNNER
    side = ins.side
    if side == BACK:
        is_back = True
    elif side == LAY:
        is_back = False
    else:
        return codes.INVALID_BID_TYPE
    price = ins.price
    tick = _TICK_BY_TEXT.get(price) if type(price) is str else None
    if tick is None:
        tick = parse_price(price)
        if tick is None:
            return codes.INVALID_ODDS
    size = ins.size
    if type(size) is not int or size < state.min_stake:
        return codes.INVALID_BET_SIZE
    persistence = ins.persistence
    if persistence not in PERSISTENCES:
        return codes.INVALID_PERSISTENCE_TYPE
    tif = ins.time_in_force
    min_fill = ins.min_fill_size
    if tif is not None:
        if tif != FILL_OR_KILL:
            return codes.INVALID_ORDER_TYPE
        if min_fill is not None and (type(min_fill) is not int or not 0 < min_fill <= size):
            return codes.INVALID_MIN_FILL_SIZE
    elif min_fill is not None:
        return codes.INVALID_MIN_FILL_SIZE
    ref = ins.customer_ref
    if ref is not None:
        if type(ref) is not str or not 0 < len(ref) <= MAX_CUSTOMER_REF:
            return codes.INVALID_CUSTOMER_ORDER_REF
        if (player_id, ref) in state.refs:
            return codes.DUPLICATE_TRANSACTION
    if tif is None:  # the hot path, inlined: a LIMIT order that rests or crosses
        book = state.books[ri]
        if is_back:
            taken = book.match_back(tick, size, player_id) if book.best_lay >= tick else ()
        else:
            taken = book.match_lay(tick, size, player_id) if book.best_back <= tick else ()
        if taken is None:
            return codes.INVALID_BACK_LAY_COMBINATION
        return [
            OrderPlaced(
                market_id=state.market_id,
                seq=seq + 1,
                at=now,
                bet_id=state.next_bet_id,
                player_id=player_id,
                runner_id=runner_id,
                side=side,
                price_tick=tick,
                size=size,
                persistence=persistence,
                customer_ref=ref,
                fills=[
                    Fill(maker_bet_id=maker.bet_id, maker_player_id=maker.player_id, price_tick=maker.tick, size=qty)
                    for maker, qty in taken
                ],
            )
        ]
    return _decide_order(
        state, player_id, ri, is_back, tick, size, persistence, tif, min_fill, ref, now, seq, None
    )


def _decide_order(
    state: MarketState,
    player_id: str,
    ri: int,
    is_back: bool,
    tick: int,
    size: int,
    persistence: str,
    tif: str | None,
    min_fill: int | None,
    ref: str | None,
    now: int,
    seq: int,
    replaces: int | None,
) -> list | str:
    book = state.books[ri]
    if tif is None:
        if is_back:
            taken = book.match_back(tick, size, player_id) if book.best_lay >= tick else []
        else:
            taken = book.match_lay(tick, size, player_id) if book.best_back <= tick else []
    else:
        taken = book.match_fill_or_kill(is_back, tick, size, player_id)
    if taken is None:
        return codes.INVALID_BACK_LAY_COMBINATION
    matched = 0
    fills = []
    for maker, qty in taken:
        fills.append(
            Fill(maker_bet_id=maker.bet_id, maker_player_id=maker.player_id, price_tick=maker.tick, size=qty)
        )
        matched += qty
    if tif is not None and matched < (size if min_fill is None else min_fill):
        fills = []
        matched = 0
    market_id = state.market_id
    bet_id = state.next_bet_id
    placed = OrderPlaced(
        market_id=market_id,
        seq=seq + 1,
        at=now,
        bet_id=bet_id,
        player_id=player_id,
        runner_id=state.runners[ri],
        side=BACK if is_back else LAY,
        price_tick=tick,
        size=size,
        persistence=persistence,
        time_in_force=tif,
        min_fill_size=min_fill,
        customer_ref=ref,
        fills=fills,
        replaces=replaces,
    )
    if tif is not None and matched < size:
        return [
            placed,
            OrderExpired(market_id=market_id, seq=seq + 2, at=now, bet_id=bet_id, size_expired=size - matched),
        ]
    return [placed]


# ======================================================================
# decide: cancel, replace, update


def _status_refusal(state: MarketState) -> str | None:
    status = state.status
    if status == OPEN:
        return None
    return codes.MARKET_SUSPENDED if status == SUSPENDED else codes.MARKET_NOT_OPEN_FOR_BETTING


def _own_live_order(state: MarketState, player_id: str, bet_id) -> Order | None:
    order = state.orders.get(bet_id) if type(bet_id) is int else None
    if order is None or order.player_id != player_id or order.time_in_force is not None:
        return None
    return order


def decide_cancel(state: MarketState, player_id: str, ins, now: int, seq: int) -> list | str:
    code = _status_refusal(state)
    if code:
        return code
    order = _own_live_order(state, player_id, ins.bet_id)
    if order is None:
        return codes.BET_TAKEN_OR_LAPSED
    reduction = ins.size_reduction
    if reduction is None:
        qty = order.remaining
    elif type(reduction) is not int or reduction <= 0:
        return codes.INVALID_BET_SIZE
    else:
        qty = min(reduction, order.remaining)
    return [OrderCancelled(market_id=state.market_id, seq=seq + 1, at=now, bet_id=order.bet_id, size_cancelled=qty)]


def decide_replace(state: MarketState, player_id: str, ins, now: int, seq: int) -> list | str:
    """Cancel the unmatched part and place it at the new price (same side, size,
    persistence; the matched part stays with the old bet). The replacement is
    not held to the minimum stake: its size was accepted once already."""
    code = _status_refusal(state)
    if code:
        return code
    order = _own_live_order(state, player_id, ins.bet_id)
    if order is None:
        return codes.BET_TAKEN_OR_LAPSED
    tick = parse_price(ins.new_price)
    if tick is None:
        return codes.INVALID_ODDS
    if tick == order.tick:
        return codes.NO_ACTION_REQUIRED
    qty = order.remaining
    placed = _decide_order(
        state,
        player_id,
        order.runner_index,
        order.is_back,
        tick,
        qty,
        order.persistence,
        None,
        None,
        None,
        now,
        seq + 1,
        order.bet_id,
    )
    if type(placed) is str:
        return placed
    cancelled = OrderCancelled(market_id=state.market_id, seq=seq + 1, at=now, bet_id=order.bet_id, size_cancelled=qty)
    return [cancelled, *placed]


def decide_update(state: MarketState, player_id: str, ins, now: int, seq: int) -> list | str:
    code = _status_refusal(state)
    if code:
        return code
    order = _own_live_order(state, player_id, ins.bet_id)
    if order is None:
        return codes.BET_TAKEN_OR_LAPSED
    persistence = ins.new_persistence
    if persistence not in PERSISTENCES or (state.in_play and persistence == MARKET_ON_CLOSE):
        return codes.INVALID_PERSISTENCE_TYPE
    if persistence == order.persistence:
        return codes.NO_ACTION_REQUIRED
    return [OrderUpdated(market_id=state.market_id, seq=seq + 1, at=now, bet_id=order.bet_id, persistence=persistence)]


# ======================================================================
# decide: lifecycle


def _lapses(state: MarketState, orders, reason: str, now: int, seq: int) -> list:
    return [
        OrderLapsed(market_id=state.market_id, seq=seq + i, at=now, bet_id=o.bet_id, size_lapsed=o.remaining, reason=reason)
        for i, o in enumerate(orders, 1)
    ]


def decide_define(state: MarketState | None, cmd: DefineMarket, now: int) -> list | str:
    if state is not None:
        return codes.INVALID_MARKET_STATE
    runners = cmd.runners
    if (
        not isinstance(runners, list)
        or not 0 < len(runners) <= MAX_RUNNERS
        or any(type(r) is not int for r in runners)
        or len(set(runners)) != len(runners)
    ):
        return codes.INVALID_RUNNER
    winners = cmd.number_of_winners
    if type(winners) is not int or not 0 < winners <= len(runners):
        return codes.INVALID_RUNNER
    if type(cmd.min_stake) is not int or cmd.min_stake < 1:
        return codes.INVALID_BET_SIZE
    if type(cmd.commission_rate_bp) is not int or not 0 <= cmd.commission_rate_bp <= 10_000:
        return codes.INVALID_AMOUNT
    return [
        MarketDefined(
            market_id=cmd.market_id,
            seq=1,
            at=now,
            runners=list(runners),
            number_of_winners=winners,
            min_stake=cmd.min_stake,
            commission_rate_bp=cmd.commission_rate_bp,
        )
    ]


def decide_lifecycle(state: MarketState, cmd, now: int) -> list | str:
    """Open, suspend, turn in-play, remove a runner, close, settle, void."""
    if state.settlement is not None:
        return codes.INVALID_MARKET_STATE
    status = state.status
    seq = state.seq
    version = state.version + 1
    market_id = state.market_id
    kind = type(cmd)
    if kind is OpenMarket:
        if status not in (INACTIVE, SUSPENDED):
            return codes.INVALID_MARKET_STATE
        return [MarketOpened(market_id=market_id, seq=seq + 1, at=now, version=version)]
    if kind is SuspendMarket:
        if status != OPEN:
            return codes.INVALID_MARKET_STATE
        return [MarketSuspended(market_id=market_id, seq=seq + 1, at=now, version=version)]
    if kind is TurnInPlay:
        if status not in (OPEN, SUSPENDED) or state.in_play:
            return codes.INVALID_MARKET_STATE
        delay = cmd.bet_delay_ms
        if type(delay) is not int or not 0 <= delay <= 60_000:
            return codes.INVALID_AMOUNT
        lapsing = [o for o in state.orders.values() if o.persistence != PERSIST]
        events = _lapses(state, lapsing, LAPSED_IN_PLAY, now, seq)
        seq += len(events)
        events.append(MarketTurnedInPlay(market_id=market_id, seq=seq + 1, at=now, version=version, bet_delay_ms=delay))
        return events
    if kind is RemoveRunner:
        if status == CLOSED:
            return codes.INVALID_MARKET_STATE
        runner_id = cmd.runner_id
        ri = state.runner_index.get(runner_id) if type(runner_id) is int else None
        if ri is None or ri not in state.active or len(state.active) <= 1:
            return codes.INVALID_RUNNER
        lapsing = [o for o in state.orders.values() if o.runner_index == ri]
        events = _lapses(state, lapsing, LAPSED_RUNNER_REMOVED, now, seq)
        seq += len(events)
        events.append(
            RunnerRemoved(
                market_id=market_id,
                seq=seq + 1,
                at=now,
                version=version,
                runner_id=runner_id,
                voided_bet_ids=list(state.matched_bets[ri]),
            )
        )
        return events
    if kind is CloseMarket:
        if status == CLOSED:
            return codes.INVALID_MARKET_STATE
        return _close(state, now)
    if kind is SettleMarket:
        return _decide_settle(state, cmd, now)
    if kind is VoidMarket:
        events = [] if status == CLOSED else _close(state, now)
        seq += len(events)
        version += 1 if events else 0
        results = [PlayerResult(player_id=p, pnl=0, commission=0) for p in sorted(state.positions)]
        events.append(MarketVoided(market_id=market_id, seq=seq + 1, at=now, version=version, results=results))
        return events
    return codes.INVALID_MARKET_STATE


def _close(state: MarketState, now: int) -> list:
    events = _lapses(state, list(state.orders.values()), LAPSED_MARKET_CLOSED, now, state.seq)
    events.append(
        MarketClosed(market_id=state.market_id, seq=state.seq + len(events) + 1, at=now, version=state.version + 1)
    )
    return events


def _runner_indexes(state: MarketState, runner_ids) -> list[int] | None:
    if not isinstance(runner_ids, list):
        return None
    out = []
    for runner_id in runner_ids:
        ri = state.runner_index.get(runner_id) if type(runner_id) is int else None
        if ri is None or ri not in state.active or ri in out:
            return None
        out.append(ri)
    return out


def _matched_positions(state: MarketState) -> dict[str, Position]:
    """The positions without unmatched orders (as they will be once the market
    has closed and lapsed them), without touching the state."""
    positions = dict(state.positions)
    for order in state.orders.values():
        player_id = order.player_id
        pos = positions[player_id]
        if pos is state.positions[player_id]:
            copy = Position(len(state.runners))
            copy.lose, copy.delta, copy.base = list(pos.lose), list(pos.delta), pos.base
            pos = positions[player_id] = copy
        ri, rem = order.runner_index, order.remaining
        if order.is_back:
            pos.add_lose(ri, rem)
        else:
            pos.add_win(ri, rem * ODDS_MINUS_ONE[order.tick] // 100)
    return positions


def _decide_settle(state: MarketState, cmd: SettleMarket, now: int) -> list | str:
    winners = _runner_indexes(state, cmd.winners)
    tied = _runner_indexes(state, cmd.dead_heat)
    if winners is None or tied is None or set(winners) & set(tied):
        return codes.INVALID_RUNNER
    places = state.number_of_winners
    if tied:
        if not (len(winners) < places and len(tied) > places - len(winners)):
            return codes.INVALID_RUNNER
    elif len(winners) != min(places, len(state.active)):
        return codes.INVALID_RUNNER
    discounts = cmd.discounts_bp
    if not isinstance(discounts, dict) or any(
        type(v) is not int or not 0 <= v <= 10_000 for v in discounts.values()
    ):
        return codes.INVALID_AMOUNT
    events = [] if state.status == CLOSED else _close(state, now)
    version = state.version + (2 if events else 1)
    results = settle(
        _matched_positions(state),
        tuple(winners),
        tuple(tied),
        places - len(winners),
        state.commission_rate_bp,
        discounts,
    )
    events.append(
        MarketSettled(
            market_id=state.market_id,
            seq=state.seq + len(events) + 1,
            at=now,
            version=version,
            winners=list(cmd.winners),
            dead_heat=list(cmd.dead_heat),
            results=results,
        )
    )
    return events


# ======================================================================
# evolve


def _new_position(state: MarketState, player_id: str) -> Position:
    position = state.positions[player_id] = Position(len(state.runners))
    if len(state.active) != len(state.runners):
        for r in range(len(state.runners)):
            if r not in state.active:
                position.remove_runner(r)
    return position


def _on_defined(state: MarketState | None, e: MarketDefined) -> MarketState:
    new = MarketState(e.market_id, tuple(e.runners), e.number_of_winners, e.min_stake, e.commission_rate_bp)
    new.seq = e.seq
    return new


def _on_placed(s: MarketState, e: OrderPlaced) -> MarketState:
    ri = s.runner_index[e.runner_id]
    is_back = e.side == BACK
    player_id = e.player_id
    positions = s.positions
    pos = positions.get(player_id)
    if pos is None:
        pos = _new_position(s, player_id)
    size = e.size
    matched = value = 0
    if e.fills:
        book = s.books[ri]
        orders = s.orders
        first = s.matched_bets[ri]
        taker_lose, taker_delta = pos.lose, pos.delta
        for f in e.fills:
            maker = orders[f.maker_bet_id]
            qty = f.size
            om = ODDS_MINUS_ONE[f.price_tick]
            swing = qty * om // 100 + qty  # profit + stake: how far delta moves
            mpos = positions[maker.player_id]
            if not maker.matched:
                first.append(maker.bet_id)
            if is_back:
                # the maker lays: its unmatched liability shrinks (win side),
                # its matched lay loses the profit if r wins, wins qty if not
                rem = maker.remaining
                mpos.delta[ri] += rem * om // 100 - (rem - qty) * om // 100 - swing
                mpos.lose[ri] += qty
                mpos.base += qty
                taker_delta[ri] += swing
                taker_lose[ri] -= qty
                pos.base -= qty
            else:
                # the maker backs: its unmatched stake (lose side) turns matched,
                # so lose[r] is unchanged and only the win side gains the profit
                mpos.delta[ri] += swing - qty
                taker_delta[ri] -= swing
                taker_lose[ri] += qty
                pos.base += qty
            book.fill_front(maker, qty)
            if not maker.remaining:
                del orders[maker.bet_id]
            matched += qty
            value += qty * PRICES[f.price_tick]
        first.append(e.bet_id)
    remaining = size - matched
    if remaining:
        tick = e.price_tick
        order = Order(
            e.bet_id,
            player_id,
            ri,
            is_back,
            tick,
            size,
            remaining,
            matched,
            e.persistence,
            e.time_in_force,
            e.customer_ref,
            e.at,
            value,
        )
        s.orders[e.bet_id] = order
        if is_back:
            pos.lose[ri] -= remaining
            pos.delta[ri] += remaining
            pos.base -= remaining
        else:
            pos.delta[ri] -= remaining * ODDS_MINUS_ONE[tick] // 100
        if e.time_in_force is None:
            s.books[ri].add(order)
    if e.customer_ref is not None:
        s.refs.add((player_id, e.customer_ref))
    s.next_bet_id = e.bet_id + 1
    s.seq = e.seq
    return s


def _take_unmatched(s: MarketState, bet_id: int, qty: int, seq: int) -> MarketState:
    """Cancel, lapse or expire ``qty`` of a live order's unmatched size."""
    order = s.orders[bet_id]
    pos = s.positions[order.player_id]
    ri = order.runner_index
    rem = order.remaining
    if order.is_back:
        pos.add_lose(ri, qty)
    else:
        om = ODDS_MINUS_ONE[order.tick]
        pos.delta[ri] += rem * om // 100 - (rem - qty) * om // 100
    if order.time_in_force is None:
        s.books[ri].reduce(order, qty)
    else:
        order.remaining = rem - qty
    if not order.remaining:
        del s.orders[bet_id]
    s.seq = seq
    return s


def _on_cancelled(s: MarketState, e: OrderCancelled) -> MarketState:
    return _take_unmatched(s, e.bet_id, e.size_cancelled, e.seq)


def _on_lapsed(s: MarketState, e: OrderLapsed) -> MarketState:
    return _take_unmatched(s, e.bet_id, e.size_lapsed, e.seq)


def _on_expired(s: MarketState, e: OrderExpired) -> MarketState:
    return _take_unmatched(s, e.bet_id, e.size_expired, e.seq)


def _on_updated(s: MarketState, e: OrderUpdated) -> MarketState:
    s.orders[e.bet_id].persistence = e.persistence
    s.seq = e.seq
    return s


def _on_opened(s: MarketState, e: MarketOpened) -> MarketState:
    s.status = OPEN
    s.version = e.version
    s.seq = e.seq
    return s


def _on_suspended(s: MarketState, e: MarketSuspended) -> MarketState:
    s.status = SUSPENDED
    s.version = e.version
    s.seq = e.seq
    return s


def _on_in_play(s: MarketState, e: MarketTurnedInPlay) -> MarketState:
    s.in_play = True
    s.bet_delay_ms = e.bet_delay_ms
    s.version = e.version
    s.seq = e.seq
    return s


def _on_runner_removed(s: MarketState, e: RunnerRemoved) -> MarketState:
    ri = s.runner_index[e.runner_id]
    s.active = tuple(r for r in s.active if r != ri)
    del s.active_index[e.runner_id]
    for pos in s.positions.values():  # its matched bets are void
        pos.remove_runner(ri)
    s.version = e.version
    s.seq = e.seq
    return s


def _on_closed(s: MarketState, e: MarketClosed) -> MarketState:
    s.status = CLOSED
    s.version = e.version
    s.seq = e.seq
    return s


def _on_settled(s: MarketState, e: MarketSettled) -> MarketState:
    s.settlement = SETTLED
    s.results = list(e.results)
    s.version = e.version
    s.seq = e.seq
    return s


def _on_voided(s: MarketState, e: MarketVoided) -> MarketState:
    s.settlement = VOIDED
    s.results = list(e.results)
    s.version = e.version
    s.seq = e.seq
    return s


_EVOLVE = {
    MarketDefined: _on_defined,
    OrderPlaced: _on_placed,
    OrderCancelled: _on_cancelled,
    OrderLapsed: _on_lapsed,
    OrderExpired: _on_expired,
    OrderUpdated: _on_updated,
    MarketOpened: _on_opened,
    MarketSuspended: _on_suspended,
    MarketTurnedInPlay: _on_in_play,
    RunnerRemoved: _on_runner_removed,
    MarketClosed: _on_closed,
    MarketSettled: _on_settled,
    MarketVoided: _on_voided,
}


def evolve(state: MarketState | None, event) -> MarketState:
    """Apply one event (``state`` is None only for MarketDefined)."""
    return _EVOLVE[type(event)](state, event)


def replay(events) -> MarketState | None:
    state = None
    for event in events:
        state = evolve(state, event)
    return state


# ======================================================================
# handle: decide + evolve, per command


def _refused(cmd, code: str, count: int = 0) -> CommandResult:
    reports = [InstructionReport(index=i, status=FAILURE, error_code=code) for i in range(count)]
    return CommandResult(command_id=cmd.command_id, status=FAILURE, error_code=code, reports=reports)


def _exposures(state: MarketState, players) -> dict[str, int]:
    return {p: state.exposure_of(p) for p in players}


def handle(state: MarketState | None, cmd, ctx: Context) -> tuple[MarketState | None, CommandResult]:
    """Decide ``cmd`` and evolve its events into ``state``; see the module doc."""
    kind = type(cmd)
    if state is not None:  # hot paths first: one instruction, this market
        if kind is PlaceOrders:
            if len(cmd.instructions) == 1 and cmd.market_version is None and cmd.market_id == state.market_id:
                return state, _place_one(state, cmd, ctx.now_ms)
        elif kind is CancelOrders:
            if len(cmd.instructions) == 1 and cmd.market_id == state.market_id:
                return state, _cancel_one(state, cmd, ctx.now_ms)
    now = ctx.now_ms
    if kind is DefineMarket:
        out = decide_define(state, cmd, now)
        if type(out) is str:
            return state, _refused(cmd, out)
        state = evolve(None, out[0])
        return state, CommandResult(command_id=cmd.command_id, status=SUCCESS, events=out, market_seq=state.seq)
    if state is None or cmd.market_id != state.market_id:
        count = len(cmd.instructions) if hasattr(cmd, "instructions") else 0
        return state, _refused(cmd, codes.INVALID_MARKET_ID, count)
    if kind is PlaceOrders:
        return state, _handle_orders(state, cmd, now, decide_place, cmd.market_version)
    if kind is CancelOrders:
        if not cmd.instructions:
            return state, _cancel_all(state, cmd, now)
        return state, _handle_orders(state, cmd, now, decide_cancel, None)
    if kind is ReplaceOrders:
        return state, _handle_orders(state, cmd, now, decide_replace, cmd.market_version)
    if kind is UpdateOrders:
        return state, _handle_orders(state, cmd, now, decide_update, None)
    out = decide_lifecycle(state, cmd, now)
    if type(out) is str:
        return state, _refused(cmd, out)
    touched = sorted(state.positions)
    for event in out:
        _EVOLVE[type(event)](state, event)
    return state, CommandResult(
        command_id=cmd.command_id,
        status=SUCCESS,
        events=out,
        exposures=_exposures(state, touched),
        market_seq=state.seq,
    )


# ----------------------------------------------------------------------
# the hot paths: one instruction, decided and evolved in one pass
#
# Most commands are one placement or one cancel. Going through decide (a list
# of (maker, qty) pairs, events) and then evolve (which reads the event back
# and looks every maker up again) costs about twice the work itself, so these
# two do both at once. They must stay exactly equivalent to decide + evolve:
# the events they return are what replay feeds to ``evolve``.


def _failed_one(cmd, code: str, seq: int) -> CommandResult:
    return CommandResult(
        command_id=cmd.command_id,
        status=FAILURE,
        error_code=code,
        reports=[InstructionReport(index=0, status=FAILURE, error_code=code)],
        market_seq=seq,
    )


def _place_one(state: MarketState, cmd: PlaceOrders, now: int) -> CommandResult:
    """A PlaceOrders with one plain LIMIT instruction, decided and evolved in
    one pass: exactly the event, state and result of ``decide_place``, then
    ``evolve`` (``_on_placed``, which replay uses), then ``exposure_of`` for the
    taker and each maker, without the walk's intermediate list, without
    re-reading the event, and with each touched position read once.

    Anything else (a refusal other than a self-match, FILL_OR_KILL, a customer
    ref already used, a price text not in canonical form) goes to
    ``_place_one_general``. The walk only reads: nothing changes before it has
    passed the self-match check. It keeps the book's invariants the way
    ``RunnerBook.fill_front`` and ``add`` do (a level emptied becomes
    NO_ORDERS, the best-price pointers move past empty levels).
    tests/property/test_market_hot_paths.py holds it to the plain way."""
    ins = cmd.instructions[0]
    try:
        tick = _TICK_BY_TEXT.get(ins.price)  # canonical price texts only; anything else goes the long way
    except TypeError:  # unhashable junk
        tick = None
    runner_id = ins.runner_id
    ri = state.active_index.get(runner_id) if type(runner_id) is int else None
    size = ins.size
    persistence = ins.persistence
    ref = ins.customer_ref
    player_id = cmd.player_id
    if (
        tick is None
        or ri is None
        or type(size) is not int
        or size < state.min_stake
        or state.status != OPEN
        or persistence not in PERSISTENCES
        or ins.time_in_force is not None
        or ins.min_fill_size is not None
        or (
            ref is not None
            and (type(ref) is not str or not 0 < len(ref) <= MAX_CUSTOMER_REF or (player_id, ref) in state.refs)
        )
    ):
        return _place_one_general(state, cmd, now)
    side = ins.side
    book = state.books[ri]
    # the walk: makers taken, best price first; all but the last in full
    if side == BACK:
        is_back = True
        level = book.best_lay
        crosses = level >= tick
        if crosses:
            levels = book.lays
            makers = []
            want = size
            while level >= tick:
                for maker in levels[level]:
                    if maker.player_id == player_id:
                        return _failed_one(cmd, codes.INVALID_BACK_LAY_COMBINATION, state.seq)
                    makers.append(maker)
                    if maker.remaining >= want:
                        break  # takes ``want`` of it
                    want -= maker.remaining
                else:
                    level -= 1
                    continue
                break
            else:  # the book ran out first: the last maker is taken in full too
                want = makers[-1].remaining
    elif side == LAY:
        is_back = False
        level = book.best_back
        crosses = level <= tick
        if crosses:
            levels = book.backs
            makers = []
            want = size
            while level <= tick:
                for maker in levels[level]:
                    if maker.player_id == player_id:
                        return _failed_one(cmd, codes.INVALID_BACK_LAY_COMBINATION, state.seq)
                    makers.append(maker)
                    if maker.remaining >= want:
                        break  # takes ``want`` of it
                    want -= maker.remaining
                else:
                    level += 1
                    continue
                break
            else:  # the book ran out first: the last maker is taken in full too
                want = makers[-1].remaining
    else:
        return _place_one_general(state, cmd, now)

    # decided: evolve as _on_placed does, building the fills on the way
    bet_id = state.next_bet_id
    seq = state.seq + 1
    positions = state.positions
    pos = positions.get(player_id)
    if pos is None:
        pos = _new_position(state, player_id)
    fills: list[Fill] = []
    matched = 0
    win = state.number_of_winners == 1  # worst case = base + min(delta): a loop, cheaper than min()
    if crosses:
        exposures = {player_id: 0}  # the taker first (filled in last), then the makers in fill order
        orders = state.orders
        first = state.matched_bets[ri]
        swings = 0
        value = 0
        emptied = False
        last = makers[-1]
        for maker in makers:
            rem = maker.remaining
            qty = want if maker is last else rem
            tick_m = maker.tick
            maker_id = maker.player_id
            fills.append(Fill(maker_bet_id=maker.bet_id, maker_player_id=maker_id, price_tick=tick_m, size=qty))
            profit = qty * ODDS_MINUS_ONE[tick_m] // 100
            fill_value = qty * PRICES[tick_m]
            value += fill_value
            if not maker.matched:
                first.append(maker.bet_id)
            maker.remaining = rem - qty
            maker.matched += qty
            maker.matched_value += fill_value
            mpos = positions[maker_id]
            if is_back:  # the maker lays: its unmatched liability turns matched (see _on_placed)
                if rem == qty:
                    mpos.delta[ri] -= qty
                else:
                    om = ODDS_MINUS_ONE[tick_m]
                    mpos.delta[ri] += rem * om // 100 - (rem - qty) * om // 100 - profit - qty
                mpos.lose[ri] += qty
                mpos.base += qty
            else:  # the maker backs: its unmatched stake turns matched
                mpos.delta[ri] += profit
            if rem == qty:  # filled in full: it leaves the front of its level
                queue = levels[tick_m]
                queue.popleft()
                if not queue:
                    levels[tick_m] = NO_ORDERS
                    emptied = True
                del orders[maker.bet_id]
            swings += profit
            matched += qty
            # the maker's exposure (a maker met again later is simply recomputed)
            if win:
                low = REMOVED
                for d in mpos.delta:
                    if d < low:
                        low = d
                low += mpos.base
                exposures[maker_id] = -low if low < 0 else 0
            else:
                exposures[maker_id] = exposure(mpos, state.number_of_winners, len(state.active))
        first.append(bet_id)
        swings += matched  # profit + stake: how far the taker's delta moves
        if is_back:
            pos.delta[ri] += swings
            pos.lose[ri] -= matched
            pos.base -= matched
            if emptied:
                t = book.best_lay
                while t >= 0 and not levels[t]:
                    t -= 1
                book.best_lay = t
        else:
            pos.delta[ri] -= swings
            pos.lose[ri] += matched
            pos.base += matched
            if emptied:
                t = book.best_back
                while t < TICKS and not levels[t]:
                    t += 1
                book.best_back = t
    remaining = size - matched
    if remaining:
        order = Order(bet_id, player_id, ri, is_back, tick, size, remaining, matched, persistence, None, ref, now,
                      value if crosses else 0)
        state.orders[bet_id] = order
        if is_back:
            pos.lose[ri] -= remaining
            pos.delta[ri] += remaining
            pos.base -= remaining
            queue = book.backs[tick]
            if queue is NO_ORDERS:
                queue = book.backs[tick] = deque()
            queue.append(order)
            if tick < book.best_back:
                book.best_back = tick
        else:
            pos.delta[ri] -= remaining * ODDS_MINUS_ONE[tick] // 100
            queue = book.lays[tick]
            if queue is NO_ORDERS:
                queue = book.lays[tick] = deque()
            queue.append(order)
            if tick > book.best_lay:
                book.best_lay = tick
    if ref is not None:
        state.refs.add((player_id, ref))
    state.next_bet_id = bet_id + 1
    state.seq = seq
    if win:
        low = REMOVED
        for d in pos.delta:
            if d < low:
                low = d
        low += pos.base
        taker = -low if low < 0 else 0
    else:
        taker = exposure(pos, state.number_of_winners, len(state.active))
    if crosses:
        exposures[player_id] = taker
    else:
        exposures = {player_id: taker}
    return CommandResult(
        command_id=cmd.command_id,
        status=SUCCESS,
        reports=[InstructionReport(index=0, status=SUCCESS, bet_id=bet_id, size_matched=matched,
                                   matched_value=value if crosses else 0)],
        events=[
            OrderPlaced(
                market_id=state.market_id,
                seq=seq,
                at=now,
                bet_id=bet_id,
                player_id=player_id,
                runner_id=runner_id,
                side=side,
                price_tick=tick,
                size=size,
                persistence=persistence,
                customer_ref=ref,
                fills=fills,
            )
        ],
        exposures=exposures,
        market_seq=seq,
    )


def _place_one_general(state: MarketState, cmd: PlaceOrders, now: int) -> CommandResult:
    """Any other single placement (FILL_OR_KILL, a refusal): decide, then evolve."""
    player_id = cmd.player_id
    out = decide_place(state, player_id, cmd.instructions[0], now, state.seq)
    if type(out) is str:
        return _failed_one(cmd, out, state.seq)
    placed = out[0]
    _on_placed(state, placed)
    if len(out) > 1:
        _on_expired(state, out[1])
    exposure_of = state.exposure_of
    exposures = {player_id: exposure_of(player_id)}
    size_matched = value = 0
    for f in placed.fills:
        size_matched += f.size
        value += f.size * PRICES[f.price_tick]
        exposures[f.maker_player_id] = exposure_of(f.maker_player_id)
    return CommandResult(
        command_id=cmd.command_id,
        status=SUCCESS,
        reports=[InstructionReport(index=0, status=SUCCESS, bet_id=placed.bet_id, size_matched=size_matched,
                                   matched_value=value)],
        events=out,
        exposures=exposures,
        market_seq=state.seq,
    )


def _cancel_one(state: MarketState, cmd: CancelOrders, now: int) -> CommandResult:
    """The other hot path: one CancelInstruction, decided and evolved in one
    pass (the same event, state and result as ``decide_cancel``, then
    ``_take_unmatched``, then ``exposure_of``)."""
    ins = cmd.instructions[0]
    bet_id = ins.bet_id
    order = state.orders.get(bet_id) if type(bet_id) is int else None
    player_id = cmd.player_id
    if state.status != OPEN:
        return _failed_one(cmd, _status_refusal(state), state.seq)
    if order is None or order.player_id != player_id or order.time_in_force is not None:
        return _failed_one(cmd, codes.BET_TAKEN_OR_LAPSED, state.seq)
    rem = order.remaining
    reduction = ins.size_reduction
    if reduction is None:
        qty = rem
    elif type(reduction) is not int or reduction <= 0:
        return _failed_one(cmd, codes.INVALID_BET_SIZE, state.seq)
    else:
        qty = reduction if reduction < rem else rem
    seq = state.seq + 1
    cancelled = OrderCancelled(market_id=state.market_id, seq=seq, at=now, bet_id=bet_id, size_cancelled=qty)
    # evolve, as _take_unmatched does it
    pos = state.positions[player_id]
    ri = order.runner_index
    if order.is_back:
        pos.lose[ri] += qty
        pos.delta[ri] -= qty
        pos.base += qty
    else:
        om = ODDS_MINUS_ONE[order.tick]
        pos.delta[ri] += rem * om // 100 - (rem - qty) * om // 100
    if qty == rem:
        order.remaining = 0
        state.books[ri].remove(order)
        del state.orders[bet_id]
    else:
        order.remaining = rem - qty
    state.seq = seq
    if state.number_of_winners == 1:
        low = REMOVED
        for d in pos.delta:
            if d < low:
                low = d
        low += pos.base
        exp = -low if low < 0 else 0
    else:
        exp = exposure(pos, state.number_of_winners, len(state.active))
    return CommandResult(
        command_id=cmd.command_id,
        status=SUCCESS,
        reports=[InstructionReport(index=0, status=SUCCESS, bet_id=bet_id)],
        events=[cancelled],
        exposures={player_id: exp},
        market_seq=seq,
    )


def _handle_orders(state: MarketState, cmd, now: int, decide, market_version) -> CommandResult:
    instructions = cmd.instructions
    count = len(instructions)
    if not 0 < count <= MAX_INSTRUCTIONS:
        return _refused(cmd, codes.TOO_MANY_INSTRUCTIONS if count else codes.NO_ACTION_REQUIRED, 0)
    code = _status_refusal(state)
    if code is None and market_version is not None and market_version != state.version:
        code = codes.INVALID_MARKET_VERSION
    if code is not None:
        return _refused(cmd, code, count)
    player_id = cmd.player_id
    touched = {player_id: None}
    events: list = []
    reports: list[InstructionReport] = []
    failed = 0
    last_code = None
    for index, ins in enumerate(instructions):
        out = decide(state, player_id, ins, now, state.seq)
        if type(out) is str:
            failed += 1
            last_code = out
            reports.append(InstructionReport(index=index, status=FAILURE, error_code=out))
            continue
        bet_id = None
        size_matched = value = 0
        for event in out:
            _EVOLVE[type(event)](state, event)
            if type(event) is OrderPlaced:
                bet_id = event.bet_id
                for f in event.fills:
                    size_matched += f.size
                    value += f.size * PRICES[f.price_tick]
                    touched[f.maker_player_id] = None
            elif bet_id is None:
                bet_id = event.bet_id
        events += out
        reports.append(InstructionReport(index=index, status=SUCCESS, bet_id=bet_id, size_matched=size_matched,
                                         matched_value=value))
    if failed == 0:
        status, error = SUCCESS, None
    elif failed == count:
        status, error = FAILURE, (last_code if count == 1 else codes.PROCESSED_WITH_ERRORS)
    else:
        status, error = FAILURE, codes.PROCESSED_WITH_ERRORS
    return CommandResult(
        command_id=cmd.command_id,
        status=status,
        error_code=error,
        reports=reports,
        events=events,
        exposures=_exposures(state, touched) if events else {},
        market_seq=state.seq,
    )


def _cancel_all(state: MarketState, cmd: CancelOrders, now: int) -> CommandResult:
    code = _status_refusal(state)
    if code is not None:
        return _refused(cmd, code)
    player_id = cmd.player_id
    events = []
    for order in state.live_orders(player_id):
        events.append(
            OrderCancelled(
                market_id=state.market_id,
                seq=state.seq + len(events) + 1,
                at=now,
                bet_id=order.bet_id,
                size_cancelled=order.remaining,
            )
        )
    for event in events:
        _on_cancelled(state, event)
    reports = [
        InstructionReport(index=i, status=SUCCESS, bet_id=e.bet_id) for i, e in enumerate(events)
    ]
    return CommandResult(
        command_id=cmd.command_id,
        status=SUCCESS,
        reports=reports,
        events=events,
        exposures=_exposures(state, [player_id]) if events else {},
        market_seq=state.seq,
    )
