"""The stream's read model (exchange/domain/feed.py) over random exchange histories.

Runs the Venue machine's random commands and feeds every market event to one
MarketFeed per market, the way the stream's Kafka tail does. After every step:
the feed's market equals the venue's; every order record adds up (size = remaining
+ matched + cancelled + lapsed) and agrees with the live order; traded volume is
exactly the fills; nothing changes without being reported (a runner whose ladder
moved, an order whose sizes moved is in take_changes); and a client that only ever
applied the deltas holds exactly the fresh image, both the full ladder and the
best-N levels.
"""

from __future__ import annotations

from exchange.domain import messages as m
from exchange.domain.feed import (
    MarketFeed,
    apply_best_delta,
    apply_level_delta,
    best_delta,
    best_levels,
    level_delta,
)
from hypothesis.stateful import invariant

from tests.property.test_venue_stateful import VenueMachine

DEPTH = 3


class FeedMachine(VenueMachine):
    def run(self, cmd):
        if not hasattr(self, "feeds"):
            self.feeds: dict[str, MarketFeed] = {}
            self.client: dict[tuple[str, int], tuple] = {}   # (market, runner) -> (to_back, to_lay, best_b, best_l)
            self.seen_orders: dict[tuple[str, int], tuple] = {}
            self.fills: dict[tuple[str, int], int] = {}
        result = super().run(cmd)
        for e in result.events:
            if isinstance(e, m.MARKET_EVENTS):
                self.feeds.setdefault(e.market_id, MarketFeed()).apply(e)
                if isinstance(e, m.OrderPlaced):
                    key = (e.market_id, e.runner_id)
                    self.fills[key] = self.fills.get(key, 0) + sum(f.size for f in e.fills)
        return result

    @invariant()
    def the_feed_holds_the_market_and_every_order_adds_up(self):
        for market_id, feed in self.feeds.items():
            state = self.venue.markets[market_id]
            assert feed.state.snapshot() == state.snapshot()
            for order in state.orders.values():
                record = feed.orders[order.bet_id]
                assert (record.remaining, record.matched) == (order.remaining, order.matched)
            for record in feed.orders.values():
                assert record.size == record.remaining + record.matched + record.cancelled + record.lapsed
                assert record.remaining >= 0
                if record.remaining:
                    assert record.bet_id in state.orders
            for runner in state.runners:
                traded = sum(feed.traded.get(runner, {}).values())
                assert traded == self.fills.get((market_id, runner), 0)

    @invariant()
    def deltas_carry_every_change_and_rebuild_the_image(self):
        for market_id, feed in self.feeds.items():
            changes = feed.take_changes()
            for runner in feed.state.runners:
                to_back, to_lay = feed.available(runner)
                fresh = (to_back, to_lay, best_levels(to_back, DEPTH, True), best_levels(to_lay, DEPTH, False))
                key = (market_id, runner)
                held = self.client.get(key, ({}, {}, [], []))
                if runner not in changes.runners:
                    assert held == fresh, "a ladder moved without being reported"
                    continue
                self.client[key] = (
                    apply_level_delta(held[0], level_delta(held[0], to_back)),
                    apply_level_delta(held[1], level_delta(held[1], to_lay)),
                    apply_best_delta(held[2], best_delta(held[2], fresh[2])),
                    apply_best_delta(held[3], best_delta(held[3], fresh[3])),
                )
                assert self.client[key] == fresh
            reported = {o.bet_id for o in changes.orders}
            for o in changes.orders:
                self.seen_orders[market_id, o.bet_id] = (o.remaining, o.matched, o.cancelled, o.lapsed, o.voided,
                                              o.persistence)
            for o in feed.orders.values():
                if o.bet_id not in reported:
                    assert self.seen_orders[market_id, o.bet_id] == (o.remaining, o.matched, o.cancelled, o.lapsed,
                                                          o.voided, o.persistence)
                assert o.remaining, "a complete order outlived the changes that reported it"
            for o in feed.completed.values():
                assert not o.remaining and o.bet_id not in feed.orders and o.bet_id not in feed.state.orders
                assert feed.state.settlement is None, "complete orders are kept only until settlement"


TestFeed = FeedMachine.TestCase
