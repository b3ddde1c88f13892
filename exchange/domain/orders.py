"""Orders at rest: the market's in-memory view of a live (unmatched) order.

Owns the mutable ``Order`` record the book queues and the market indexes by bet
id. It lives only inside one market aggregate and is rebuilt from events on
replay; the wire form of an order is the ``OrderPlaced`` event.

Must never be shared across aggregates or sent anywhere: it is mutable.
"""

from __future__ import annotations

import msgspec
import msgspec.structs

from .messages import BACK, FILL_OR_KILL, LAPSE, LAY, MARKET_ON_CLOSE, PERSIST

SIDES = frozenset((BACK, LAY))
PERSISTENCES = frozenset((LAPSE, PERSIST, MARKET_ON_CLOSE))
TIMES_IN_FORCE = frozenset((None, FILL_OR_KILL))
MAX_CUSTOMER_REF = 32


class Order(msgspec.Struct, gc=False, eq=False, array_like=True):
    """A live order. ``remaining`` is its unmatched size; at 0 it leaves the market.

    A mutable Struct (cheap to create; no reference cycles, so ``gc=False``)
    with identity equality (``eq=False``): the book removes an order from its
    queue by identity. ``array_like``: a market's snapshot packs its orders as
    arrays (``MarketState.__getstate__``).
    """

    bet_id: int
    player_id: str
    runner_index: int
    is_back: bool
    tick: int
    size: int
    remaining: int
    matched: int
    persistence: str
    time_in_force: str | None
    customer_ref: str | None
    placed_at: int
    matched_value: int = 0   # sum of fill size x price in hundredths: averagePriceMatched's numerator

    def snapshot(self) -> tuple:
        return msgspec.structs.astuple(self)
