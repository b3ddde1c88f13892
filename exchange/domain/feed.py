"""The market-data and order read model behind the streams (Exchange Stream API).

Owns what a subscriber sees of one market: its definition, each runner's full ladder
of available-to-back and available-to-lay sizes, traded volume by price, last traded
price, and every order's sizes from placement to completion (matched, remaining,
cancelled, lapsed, voided, average matched price), per player with matched sizes by
price. It is fed the market's journalled events in order, runs them through the
market's own ``evolve`` (so its book is the book the host had), and keeps what the
market state forgets: traded volume, and orders once they are complete.

It also says what changed since the last ``take_changes``: the stream layer turns
that into deltas. The ladder arithmetic of deltas (``level_delta``, ``best_delta``,
``merge_level_deltas``) is here too, so that "image + deltas == new image" is
proven without a socket.

Money in minor units, prices as ladder ticks; the stream layer converts at the edge.
Must never do I/O or read a clock: times are the events' own ``at``.
"""

from __future__ import annotations

import msgspec

from . import market as market_rules
from .ladder import PRICES
from .messages import (
    BACK,
    MarketClosed,
    MarketDefined,
    MarketOpened,
    MarketSettled,
    MarketSuspended,
    MarketTurnedInPlay,
    MarketVoided,
    OrderCancelled,
    OrderExpired,
    OrderLapsed,
    OrderPlaced,
    OrderUpdated,
    RunnerRemoved,
)

MAX_COMPLETED = 100_000        # complete orders kept per market for listCurrentOrders, newest last

EXECUTABLE = "EXECUTABLE"
EXECUTION_COMPLETE = "EXECUTION_COMPLETE"


class OrderRecord(msgspec.Struct, gc=False, eq=False):
    """One order's life as a stream subscriber sees it (mutable, never shared)."""

    bet_id: int
    player_id: str
    runner_id: int
    side: str
    tick: int
    size: int
    persistence: str
    time_in_force: str | None
    customer_ref: str | None
    placed_at: int
    remaining: int = 0
    matched: int = 0
    matched_value: int = 0        # sum of fill size x price in hundredths: the average price's numerator
    cancelled: int = 0
    lapsed: int = 0
    voided: int = 0
    matched_at: int | None = None
    cancelled_at: int | None = None
    lapsed_at: int | None = None
    lapse_reason: str | None = None

    @property
    def status(self) -> str:
        return EXECUTABLE if self.remaining else EXECUTION_COMPLETE


class Changes(msgspec.Struct, gc=False):
    """What changed in one market since the last take_changes()."""

    definition: bool
    runners: frozenset[int]            # runner ids whose ladder, volume or last price changed
    orders: list[OrderRecord]          # orders whose sizes or status changed (complete ones last seen here)


class MarketFeed:
    """One market's read model; ``apply`` each of its events in order."""

    __slots__ = ("state", "traded", "ltp", "orders", "completed", "matched_by_price", "definition_changed",
                 "runners_changed", "orders_changed", "winners", "settled_at", "last_at")

    def __init__(self) -> None:
        self.state: market_rules.MarketState | None = None
        self.traded: dict[int, dict[int, int]] = {}     # runner id -> tick -> backer's stake matched
        self.ltp: dict[int, int] = {}                     # runner id -> last traded tick
        self.orders: dict[int, OrderRecord] = {}          # live orders, and complete ones until taken
        # complete orders once taken, until the market settles (then they are cleared orders)
        self.completed: dict[int, OrderRecord] = {}
        # (player, runner id) -> ({tick: matched backing}, {tick: matched laying})
        self.matched_by_price: dict[tuple[str, int], tuple[dict[int, int], dict[int, int]]] = {}
        self.definition_changed = False
        self.runners_changed: set[int] = set()
        self.orders_changed: dict[int, OrderRecord] = {}
        self.winners: tuple[int, ...] = ()
        self.settled_at: int | None = None
        self.last_at = 0

    # ---------------------------------------------------------------- events

    def apply(self, event) -> None:
        self.state = market_rules.evolve(self.state, event)
        self.last_at = event.at
        handler = _APPLY.get(type(event))
        if handler is not None:
            handler(self, event)

    def _on_placed(self, e: OrderPlaced) -> None:
        order = OrderRecord(e.bet_id, e.player_id, e.runner_id, e.side, e.price_tick, e.size, e.persistence,
                            e.time_in_force, e.customer_ref, e.at, remaining=e.size)
        self.orders[e.bet_id] = order
        self._changed(order)
        if e.fills:
            traded = self.traded.setdefault(e.runner_id, {})
            for f in e.fills:
                traded[f.price_tick] = traded.get(f.price_tick, 0) + f.size
                self._fill(order, f.price_tick, f.size, e.at)
                maker = self.orders.get(f.maker_bet_id)
                if maker is not None:
                    self._fill(maker, f.price_tick, f.size, e.at)
            self.ltp[e.runner_id] = e.fills[-1].price_tick
        self.runners_changed.add(e.runner_id)

    def _fill(self, order: OrderRecord, tick: int, size: int, at: int) -> None:
        order.matched += size
        order.matched_value += size * PRICES[tick]
        order.remaining -= size
        order.matched_at = at
        key = (order.player_id, order.runner_id)
        by_price = self.matched_by_price.get(key)
        if by_price is None:
            by_price = self.matched_by_price[key] = ({}, {})
        side = by_price[0 if order.side == BACK else 1]
        side[tick] = side.get(tick, 0) + size
        self._changed(order)

    def _take(self, bet_id: int, size: int, at: int, how: str, reason: str | None = None) -> None:
        order = self.orders.get(bet_id)
        if order is None:
            return
        order.remaining -= size
        if how == "cancelled":
            order.cancelled += size
            order.cancelled_at = at
        else:
            order.lapsed += size
            order.lapsed_at = at
            order.lapse_reason = reason
        self.runners_changed.add(order.runner_id)
        self._changed(order)

    def _on_cancelled(self, e: OrderCancelled) -> None:
        self._take(e.bet_id, e.size_cancelled, e.at, "cancelled")

    def _on_lapsed(self, e: OrderLapsed) -> None:
        self._take(e.bet_id, e.size_lapsed, e.at, "lapsed", e.reason)

    def _on_expired(self, e: OrderExpired) -> None:
        self._take(e.bet_id, e.size_expired, e.at, "lapsed", "FILL_OR_KILL")

    def _on_updated(self, e: OrderUpdated) -> None:
        order = self.orders.get(e.bet_id)
        if order is not None:
            order.persistence = e.persistence
            self._changed(order)

    def _on_runner_removed(self, e: RunnerRemoved) -> None:
        for bet_id in e.voided_bet_ids:
            order = self.orders.get(bet_id)
            if order is not None and order.matched:
                self._void(order)
        for (player, runner), _ in list(self.matched_by_price.items()):
            if runner == e.runner_id:
                del self.matched_by_price[(player, runner)]
        self.runners_changed.add(e.runner_id)
        self.definition_changed = True

    def _void(self, order: OrderRecord) -> None:
        order.voided += order.matched
        self._changed(order)

    def _on_lifecycle(self, e) -> None:
        self.definition_changed = True

    def _on_settled(self, e: MarketSettled) -> None:
        self.completed.clear()
        self.winners = tuple(e.winners)
        self.settled_at = e.at
        self.definition_changed = True

    def _on_voided(self, e: MarketVoided) -> None:
        for order in self.orders.values():
            if order.matched and not order.voided:
                self._void(order)
        self.completed.clear()
        self.settled_at = e.at
        self.definition_changed = True

    def _changed(self, order: OrderRecord) -> None:
        self.orders_changed[order.bet_id] = order

    # ---------------------------------------------------------------- reads

    def take_changes(self) -> Changes:
        """What changed since the last call; complete orders move to ``completed`` once taken
        here (the newest MAX_COMPLETED of them, until the market settles)."""
        changes = Changes(self.definition_changed, frozenset(self.runners_changed),
                          list(self.orders_changed.values()))
        completed = self.completed
        for order in changes.orders:
            if not order.remaining and self.orders.get(order.bet_id) is order:
                del self.orders[order.bet_id]
                if self.settled_at is None:
                    completed[order.bet_id] = order
                    if len(completed) > MAX_COMPLETED:
                        del completed[next(iter(completed))]
        self.definition_changed = False
        self.runners_changed = set()
        self.orders_changed = {}
        return changes

    def available(self, runner_id: int) -> tuple[dict[int, int], dict[int, int]]:
        """(to_back, to_lay): tick -> unmatched backer's stake on offer, for one runner.

        to_back: resting lays (a backer takes them), to_lay: resting backs.
        """
        state = self.state
        index = state.runner_index.get(runner_id) if state is not None else None
        if index is None:
            return {}, {}
        book = state.books[index]
        to_back = {t: sum(o.remaining for o in q) for t, q in enumerate(book.lays) if q}
        to_lay = {t: sum(o.remaining for o in q) for t, q in enumerate(book.backs) if q}
        return to_back, to_lay

    def runner_status(self, runner_id: int) -> str:
        state = self.state
        if runner_id not in state.active_index:
            return "REMOVED"
        if state.settlement == market_rules.SETTLED:
            return "WINNER" if runner_id in self.winners else "LOSER"
        return "ACTIVE"

    def player_orders(self, player_id: str) -> list[OrderRecord]:
        return [o for o in self.orders.values() if o.player_id == player_id]

    def matched_of(self, player_id: str, runner_id: int) -> tuple[dict[int, int], dict[int, int]]:
        return self.matched_by_price.get((player_id, runner_id), ({}, {}))


_APPLY = {
    OrderPlaced: MarketFeed._on_placed,
    OrderCancelled: MarketFeed._on_cancelled,
    OrderLapsed: MarketFeed._on_lapsed,
    OrderExpired: MarketFeed._on_expired,
    OrderUpdated: MarketFeed._on_updated,
    RunnerRemoved: MarketFeed._on_runner_removed,
    MarketDefined: MarketFeed._on_lifecycle,
    MarketOpened: MarketFeed._on_lifecycle,
    MarketSuspended: MarketFeed._on_lifecycle,
    MarketTurnedInPlay: MarketFeed._on_lifecycle,
    MarketClosed: MarketFeed._on_lifecycle,
    MarketSettled: MarketFeed._on_settled,
    MarketVoided: MarketFeed._on_voided,
}


# ---------------------------------------------------------------- ladder deltas


def level_delta(old: dict[int, int], new: dict[int, int]) -> list[tuple[int, int]]:
    """[(tick, size)] turning ``old`` into ``new``; size 0 removes a level (ticks ascending)."""
    out = [(t, s) for t, s in new.items() if old.get(t) != s]
    out.extend((t, 0) for t in old if t not in new)
    out.sort()
    return out


def apply_level_delta(levels: dict[int, int], delta) -> dict[int, int]:
    out = dict(levels)
    for tick, size in delta:
        if size:
            out[tick] = size
        else:
            out.pop(tick, None)
    return out


def merge_level_deltas(first, second) -> list[tuple[int, int]]:
    """One delta with the effect of ``first`` then ``second``."""
    merged = dict(first)
    merged.update(second)
    return sorted(merged.items())


def best_levels(levels: dict[int, int], count: int, highest_first: bool) -> list[tuple[int, int]]:
    """The ``count`` best (tick, size) levels: to_back is best highest, to_lay best lowest."""
    return sorted(levels.items(), reverse=highest_first)[:count]


def best_delta(old: list[tuple[int, int]], new: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """[(level, tick, size)] turning the ranked list ``old`` into ``new``; (level, 0, 0) empties a level."""
    out = []
    for level in range(max(len(old), len(new))):
        now = new[level] if level < len(new) else None
        if level >= len(old) or old[level] != now:
            out.append((level, *now) if now is not None else (level, 0, 0))
    return out


def apply_best_delta(ranked: list[tuple[int, int]], delta) -> list[tuple[int, int]]:
    slots = dict(enumerate(ranked))
    for level, tick, size in delta:
        if size:
            slots[level] = (tick, size)
        else:
            slots.pop(level, None)
    return [slots[k] for k in sorted(slots)]


__all__ = ["Changes", "MarketFeed", "OrderRecord", "apply_best_delta", "apply_level_delta", "best_delta",
           "best_levels", "level_delta", "merge_level_deltas"]
