"""The order book of one runner: resting backs and lays in price-time priority.

Owns the queues and the best-price pointers, and the walks that find what an
incoming order would match. Invariants (documented here, checked by the
property tests):

- Price-time priority: each price level is a FIFO queue; a walk takes levels
  best price first and, within a level, oldest first.
- An incoming BACK at tick t takes resting LAYS at ticks >= t, highest first; an
  incoming LAY at tick t takes resting BACKS at ticks <= t, lowest first. Fills
  are at the resting order's tick.
- Never crossed at rest: ``best_back > best_lay`` (sentinels: no back is
  ``TICKS``, no lay is ``-1``).
- A walk that would reach one of the taker's own resting orders reports
  ``SELF_MATCH`` instead of fills: the book never matches a player with himself.

Walks are read-only (``decide`` uses them); only ``add``, ``remove``,
``reduce`` and ``fill_front`` change the book (``evolve`` uses them), and the
market's fused hot path (``market._place_one``), which does what they do
inline: a level is a deque while it holds orders and ``NO_ORDERS`` once empty,
and the best-price pointers skip empty levels.

Must never know about money, players' positions or events.
"""

from __future__ import annotations

from collections import deque

from .ladder import PRICES, TICKS
from .orders import Order

SELF_MATCH = None  # what a walk returns when it meets the taker's own order
NO_ORDERS: tuple = ()  # an empty level: levels get a deque of their own only while they hold orders


class RunnerBook:
    __slots__ = ("backs", "lays", "best_back", "best_lay")

    def __init__(self) -> None:
        # 2 x 350 empty deques would cost ~440 KB per runner; an empty level is NO_ORDERS
        self.backs: list[deque[Order] | tuple] = [NO_ORDERS] * TICKS
        self.lays: list[deque[Order] | tuple] = [NO_ORDERS] * TICKS
        self.best_back = TICKS  # lowest tick with a resting back
        self.best_lay = -1  # highest tick with a resting lay

    # ---------------------------------------------------------------- walks

    def match_back(self, tick: int, size: int, player_id: str) -> list[tuple[Order, int]] | None:
        """What an incoming back of ``size`` at ``tick`` takes: [(lay, qty)] best first."""
        fills: list[tuple[Order, int]] = []
        level = self.best_lay
        lays = self.lays
        while level >= tick:
            for maker in lays[level]:
                if maker.player_id == player_id:
                    return SELF_MATCH
                qty = maker.remaining
                if qty >= size:
                    fills.append((maker, size))
                    return fills
                fills.append((maker, qty))
                size -= qty
            level -= 1
        return fills

    def match_lay(self, tick: int, size: int, player_id: str) -> list[tuple[Order, int]] | None:
        """What an incoming lay of ``size`` at ``tick`` takes: [(back, qty)] best first."""
        fills: list[tuple[Order, int]] = []
        level = self.best_back
        backs = self.backs
        while level <= tick:
            for maker in backs[level]:
                if maker.player_id == player_id:
                    return SELF_MATCH
                qty = maker.remaining
                if qty >= size:
                    fills.append((maker, size))
                    return fills
                fills.append((maker, qty))
                size -= qty
            level += 1
        return fills

    def match_fill_or_kill(
        self, is_back: bool, tick: int, size: int, player_id: str
    ) -> list[tuple[Order, int]] | None:
        """Fills for a FILL_OR_KILL order whose ``tick`` bounds the average price.

        Takes the opposite side best first, past ``tick`` as long as the
        size-weighted average price of all its fills stays at or better than
        the tick's price (for a back: average >= price; for a lay: <=). The
        slack sum(qty * (fill price - limit)) (signs flipped for a lay) stays
        >= 0; at a worse level it allows floor(slack / distance) more.
        """
        limit = PRICES[tick]
        fills: list[tuple[Order, int]] = []
        slack = 0
        if is_back:
            levels, level, step, end = self.lays, self.best_lay, -1, -1
        else:
            levels, level, step, end = self.backs, self.best_back, 1, TICKS
        while level != end and size:
            queue = levels[level]
            if queue:
                gain = (PRICES[level] - limit) if is_back else (limit - PRICES[level])
                for maker in queue:
                    if maker.player_id == player_id:
                        return SELF_MATCH
                    qty = maker.remaining if maker.remaining < size else size
                    if gain < 0:
                        allowed = slack // -gain
                        if allowed < qty:
                            if allowed > 0:
                                fills.append((maker, allowed))
                            return fills
                    fills.append((maker, qty))
                    slack += qty * gain
                    size -= qty
                    if not size:
                        return fills
            level += step
        return fills

    # ------------------------------------------------------------- changes

    def add(self, order: Order) -> None:
        tick = order.tick
        if order.is_back:
            queue = self.backs[tick]
            if queue is NO_ORDERS:
                queue = self.backs[tick] = deque()
            queue.append(order)
            if tick < self.best_back:
                self.best_back = tick
        else:
            queue = self.lays[tick]
            if queue is NO_ORDERS:
                queue = self.lays[tick] = deque()
            queue.append(order)
            if tick > self.best_lay:
                self.best_lay = tick

    def fill_front(self, order: Order, qty: int) -> None:
        """A resting order at the front of its level was matched for ``qty``."""
        order.remaining -= qty
        order.matched += qty
        order.matched_value += qty * PRICES[order.tick]
        if order.remaining == 0:
            tick = order.tick
            if order.is_back:
                queue = self.backs[tick]
                queue.popleft()
                if not queue:
                    self.backs[tick] = NO_ORDERS
                    if tick == self.best_back:
                        self._advance_back()
            else:
                queue = self.lays[tick]
                queue.popleft()
                if not queue:
                    self.lays[tick] = NO_ORDERS
                    if tick == self.best_lay:
                        self._advance_lay()

    def reduce(self, order: Order, qty: int) -> None:
        """Take ``qty`` off a resting order's unmatched size (cancel or lapse);
        it keeps its place in the queue unless nothing is left."""
        order.remaining -= qty
        if order.remaining == 0:
            self.remove(order)

    def remove(self, order: Order) -> None:
        tick = order.tick
        if order.is_back:
            queue = self.backs[tick]
            queue.remove(order)
            if not queue:
                self.backs[tick] = NO_ORDERS
                if tick == self.best_back:
                    self._advance_back()
        else:
            queue = self.lays[tick]
            queue.remove(order)
            if not queue:
                self.lays[tick] = NO_ORDERS
                if tick == self.best_lay:
                    self._advance_lay()

    def _advance_back(self) -> None:
        backs = self.backs
        tick = self.best_back
        while tick < TICKS and not backs[tick]:
            tick += 1
        self.best_back = tick

    def _advance_lay(self) -> None:
        lays = self.lays
        tick = self.best_lay
        while tick >= 0 and not lays[tick]:
            tick -= 1
        self.best_lay = tick

    # ------------------------------------------------------------- reading

    def resting(self):
        """Every resting order, backs then lays, in price-time order."""
        for queue in self.backs:
            yield from queue
        for queue in reversed(self.lays):
            yield from queue

    def levels(self) -> tuple:
        """The book as plain values: best pointers, then (tick, bet ids in queue order) of
        each level holding orders, backs then lays (a market's snapshot packs it)."""
        return (
            self.best_back,
            self.best_lay,
            [(t, [o.bet_id for o in q]) for t, q in enumerate(self.backs) if q],
            [(t, [o.bet_id for o in q]) for t, q in enumerate(self.lays) if q],
        )

    @classmethod
    def of(cls, levels, orders: dict[int, Order]) -> RunnerBook:
        """The book ``levels()`` described, queuing the given live orders (by bet id)."""
        book = cls()
        book.best_back, book.best_lay, backs, lays = levels
        for side, queued in ((book.backs, backs), (book.lays, lays)):
            for tick, bet_ids in queued:
                side[tick] = deque(orders[bet_id] for bet_id in bet_ids)
        return book

    def snapshot(self) -> tuple:
        return (
            self.best_back,
            self.best_lay,
            tuple((t, tuple(o.bet_id for o in q)) for t, q in enumerate(self.backs) if q),
            tuple((t, tuple(o.bet_id for o in q)) for t, q in enumerate(self.lays) if q),
        )
