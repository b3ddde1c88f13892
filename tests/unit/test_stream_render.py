"""The stream's clocks, history and rendering, without a socket or Kafka.

A FeedSource is fed events by hand (as its Kafka tail would) and publishes changes;
a client image built from SUB_IMAGE plus the rendered deltas, single or merged
(conflation), must equal a fresh image after every step.
"""

from __future__ import annotations

import random

import msgspec

from exchange.api.stream import (
    DataSpec,
    FeedSource,
    decode_clock,
    encode_clock,
    render_changes,
    render_image,
)
from exchange.domain import market
from exchange.domain.feed import MarketFeed
from tests.stream_cache import apply_runner, new_runner
from tests.unit.rules import MARKET, NOW, back, define, lay, open_market

FIELDS = DataSpec(frozenset({"EX_ALL_OFFERS", "EX_BEST_OFFERS", "EX_TRADED", "EX_TRADED_VOL", "EX_LTP",
                             "EX_MARKET_DEF"}), 3)


def test_clocks_round_trip_and_garbage_is_no_clock():
    assert decode_clock(encode_clock({0: 12, 3: 7})) == {0: 12, 3: 7}
    assert decode_clock("garbage") is None and decode_clock("") is None and decode_clock("1:x") is None


def test_history_answers_only_clocks_it_covers():
    source = FeedSource("127.0.0.1:1", "us-nj")
    source.offsets = {0: 100, 1: 50}
    source.history_from = {0: 40, 1: 0}
    assert source.changes_since({0: 39, 1: 10}) is None          # older than the history
    assert source.changes_since({0: 101, 1: 10}) is None         # ahead of this replica
    assert source.changes_since({0: 60, 1: 50}) == []


class _Client:
    """A client's copy of one market, as Betfair clients keep it."""

    def __init__(self):
        self.rc: dict[int, dict] = {}
        self.definition = None

    def apply(self, mc: dict) -> None:
        mc = msgspec.json.decode(msgspec.json.Encoder(decimal_format="number").encode(mc))
        if mc.get("img"):
            self.rc = {}
        if "marketDefinition" in mc:
            self.definition = mc["marketDefinition"]
        for rc in mc.get("rc", []):
            apply_runner(self.rc.setdefault(rc["id"], new_runner()), rc)


def _run(conflate: int, seed: int) -> None:
    rng = random.Random(seed)
    source = FeedSource("127.0.0.1:1", "us-nj")
    feed = source.feeds[MARKET] = MarketFeed()
    state = None
    offset = 0

    def execute(command):
        nonlocal state, offset
        state, result = market.handle(state, command, NOW)
        for event in result.events:
            feed.apply(event)
        offset += 1
        source.offsets[0] = offset
        source.history_from.setdefault(0, 0)
        source._publish({MARKET: 0})
        return source.history[-1] if result.events else None

    execute(define())
    execute(open_market())
    client = _Client()
    client.apply(render_image(feed, MARKET, FIELDS, None, ""))
    pending = []
    for step in range(120):
        player = f"p{rng.randint(0, 3)}"
        runner = rng.choice((11, 12, 13))
        price = rng.choice(("2.0", "2.02", "2.04", "2.06", "2.08", "2.1"))
        size = rng.choice((100, 200, 500))
        command = back(player, runner, price, size) if rng.random() < 0.5 else lay(player, runner, price, size)
        change = execute(command)
        if change is not None:
            pending.append(change)
        if len(pending) >= conflate:
            mc = render_changes(feed, MARKET, pending, FIELDS, None, "")
            if mc is not None:
                client.apply(mc)
            pending = []
            fresh = _Client()
            fresh.apply(render_image(feed, MARKET, FIELDS, None, ""))
            assert client.rc == fresh.rc, step
    assert sum(len(r["trd"]) for r in client.rc.values()) >= 3      # trades happened
    assert sum(len(r["atb"]) + len(r["atl"]) for r in client.rc.values()) >= 3    # and orders rest


def test_deltas_one_at_a_time_rebuild_the_image():
    for seed in range(5):
        _run(1, seed)


def test_conflated_deltas_rebuild_the_image():
    for seed in range(5):
        _run(4, seed)
