"""The WebSocket stream (/stream): Betfair's Exchange Stream API, and order entry.

Owns two things of one ingress replica:

- ``FeedSource``: a tail of the jurisdiction's market journal (the Kafka events topic
  the market hosts write to: every record in it counts), replayed from the start into one
  ``MarketFeed`` per market (exchange/domain/feed.py). So the stream never shows a
  state that is not durable: what a subscriber sees is in the log, replicated (below the
  high watermark), though the host may not have answered for it yet. After each
  poll it turns what changed into ``MarketChange``s (ladder deltas in ticks and minor
  units), keeps the newest in a bounded history for resumption, and hands them to the
  connections. The clock (clk) is the Kafka position of every partition the replica
  has applied: the same log gives every replica the same clocks, so a client resumes
  on any replica.
- ``StreamConnection``: one client. Messages as in the Exchange Stream API:
  connection, authentication, heartbeat, marketSubscription (marketFilter,
  marketDataFilter fields and ladderLevels, conflateMs, heartbeatMs, clk/initialClk),
  orderSubscription; mcm/ocm changes: a SUB_IMAGE first, then deltas (size 0 removes a
  level), HEARTBEAT when idle, RESUB_DELTA when a client resumes by clk. And order
  entry (ours: Betfair has none): placeOrders / cancelOrders / replaceOrders /
  updateOrders with API-NG's params, pipelined: each runs as soon as it arrives and is
  answered with its id when done, in whatever order they finish.

A message goes straight to the connection's socket when the socket takes it in order
(exchange/api/wsdirect.py); otherwise (the socket is paused for backpressure, or the
server is not one we can write to directly) to the connection's writer task through a
bounded queue: a client that does not read is disconnected rather than allowed to grow
the replica's memory. Change messages are rendered once per market and data filter and
shared by all subscribers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

import msgspec

from exchange.api import convert, wire
from exchange.api.wsdirect import DirectSocket, text_frame
from exchange.domain.feed import (
    MarketFeed,
    OrderRecord,
    best_delta,
    best_levels,
    level_delta,
    merge_level_deltas,
)
from exchange.domain.history import fresh_count
from exchange.domain.ladder import PRICES

log = logging.getLogger(__name__)

HISTORY = 50_000                  # market changes kept for resumption by clk
MAX_QUEUE = 20_000                # outbound messages a client may leave unread before it is dropped
MAX_IN_FLIGHT = 512               # order-entry messages one connection may have running
DEFAULT_FIELDS = frozenset({"EX_ALL_OFFERS", "EX_BEST_OFFERS", "EX_TRADED", "EX_TRADED_VOL", "EX_LTP",
                            "EX_MARKET_DEF"})
DEFAULT_LEVELS = 3
DEFAULT_HEARTBEAT_MS = 5000
_PRICE = [Decimal(p).scaleb(-2) for p in PRICES]


def _units(minor: int) -> Decimal:
    return Decimal(minor).scaleb(-2)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- clocks


def encode_clock(offsets: dict[int, int]) -> str:
    """Kafka positions as an opaque clk: "partition:offset,..."."""
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


def decode_clock(text: str | None) -> dict[int, int] | None:
    if not text:
        return None
    try:
        out = {}
        for part in text.split(","):
            p, o = part.split(":")
            out[int(p)] = int(o)
        return out
    except ValueError:
        return None


# ---------------------------------------------------------------- changes


@dataclass
class RunnerChange:
    back: list[tuple[int, int]]            # available to back: level deltas (tick, size; 0 removes)
    lay: list[tuple[int, int]]
    best_back_old: list[tuple[int, int]]   # ranked levels before and after, for best-N deltas
    best_back_new: list[tuple[int, int]]
    best_lay_old: list[tuple[int, int]]
    best_lay_new: list[tuple[int, int]]
    traded: list[tuple[int, int]]          # (tick, total matched there) where it changed


@dataclass
class MarketChange:
    market_id: str
    partition: int
    end: int                               # the partition's position after the records it covers
    definition: bool
    runners: dict[int, RunnerChange]
    orders: list[OrderRecord]


@dataclass
class _Published:
    """What the subscribers of one runner hold (the baseline of the next delta)."""

    back: dict[int, int] = field(default_factory=dict)
    lay: dict[int, int] = field(default_factory=dict)
    traded: dict[int, int] = field(default_factory=dict)


class FeedSource:
    """The replica's tail of the jurisdiction's market journal (see the module docstring)."""

    def __init__(self, bootstrap: str, jurisdiction: str, prefix: str = "exchange",
                 catalogue: Callable[[list[str]], Any] | None = None):
        from exchange.journal import JournalConfig

        self.config = JournalConfig(bootstrap=bootstrap, stream=f"markets.{jurisdiction}", prefix=prefix)
        self.catalogue_source = catalogue
        self.catalogue: dict[str, dict] = {}           # market id -> catalogue row (event, type, names)
        self.feeds: dict[str, MarketFeed] = {}
        self.applied_seq: dict[str, int] = {}          # per market: the last event applied
        self.published: dict[tuple[str, int], _Published] = {}
        self.offsets: dict[int, int] = {}
        self.history: collections.deque[MarketChange] = collections.deque()
        self.history_from: dict[int, int] = {}          # per partition: history is complete after this
        self.listeners: set[Callable[[list[MarketChange]], None]] = set()
        self.new_market_listeners: set[Callable[[str], None]] = set()
        self.ready = asyncio.Event()
        self.events_applied = 0
        self._task: asyncio.Task | None = None
        self._pending_catalogue: set[str] = set()
        self.announced: set[str] = set()
        self._clock_key: tuple = ()
        self._clock_text = ""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def clock(self) -> str:
        key = tuple(self.offsets.values())
        if key != self._clock_key:
            self._clock_key, self._clock_text = key, encode_clock(self.offsets)
        return self._clock_text

    async def _run(self) -> None:
        while True:
            try:
                await self._tail()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("market feed: the journal tail failed; restarting it in 1 s")
                await asyncio.sleep(1)

    async def _tail(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from exchange.domain.messages import event_msgpack
        from exchange.journal import ensure_topics
        from exchange.journal.records import batch_decoder

        await ensure_topics(self.config)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.config.bootstrap, enable_auto_commit=False,
                                    isolation_level="read_uncommitted", group_id=None,
                                    max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            partitions = sorted(consumer.partitions_for_topic(self.config.events_topic)
                                or await self._partitions(consumer))
            tps = [TopicPartition(self.config.events_topic, p) for p in partitions]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self.offsets.get(tp.partition, 0))
                self.offsets.setdefault(tp.partition, 0)
                self.history_from.setdefault(tp.partition, 0)
            ends = await consumer.end_offsets(tps)
            decode = event_msgpack.decode
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                dirty: dict[str, int] = {}
                for tp, records in batches.items():
                    for record in records:
                        for batch in batch_decoder.decode(record.value):
                            market_id = batch.aggregate_id
                            count = len(batch.events)
                            fresh, gap = fresh_count(self.applied_seq.get(market_id, 0), batch.first_seq, count)
                            if gap:
                                log.error("market feed: %s sequence gap at offset %d", market_id, record.offset)
                            if not fresh:
                                continue
                            feed = self.feeds.get(market_id)
                            if feed is None:
                                feed = self.feeds[market_id] = MarketFeed()
                            for raw in batch.events[count - fresh:]:
                                feed.apply(decode(raw))
                            self.events_applied += fresh
                            self.applied_seq[market_id] = batch.first_seq + count - 1
                            dirty[market_id] = tp.partition
                        self.offsets[tp.partition] = record.offset + 1
                if not self.ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    for tp, pos in positions.items():
                        self.offsets[tp.partition] = max(self.offsets[tp.partition], pos)
                if dirty:
                    self._publish(dirty)
                if not self.ready.is_set() and all(self.offsets[tp.partition] >= ends[tp] for tp in tps):
                    log.info("market feed: caught up with %d markets, %d events", len(self.feeds),
                             self.events_applied)
                    self.ready.set()
        finally:
            await consumer.stop()

    async def _partitions(self, consumer) -> set[int]:
        for _ in range(50):
            found = consumer.partitions_for_topic(self.config.events_topic)
            if found:
                return found
            await consumer.topics()
            await asyncio.sleep(0.1)
        return set(range(self.config.partitions))

    # ---------------------------------------------------------------- changes

    def _publish(self, dirty: dict[str, int]) -> None:
        changes = []
        for market_id, partition in dirty.items():
            feed = self.feeds[market_id]
            taken = feed.take_changes()
            runners = {}
            for runner_id in taken.runners:
                runners[runner_id] = self._runner_change(market_id, feed, runner_id)
            if taken.definition and market_id not in self.catalogue:
                self._fetch_catalogue(market_id)
            changes.append(MarketChange(market_id, partition, self.offsets[partition], taken.definition,
                                        runners, taken.orders))
            if market_id not in self.announced:
                self.announced.add(market_id)
                for listener in list(self.new_market_listeners):
                    listener(market_id)
        history = self.history
        history.extend(changes)
        while len(history) > HISTORY:
            old = history.popleft()
            if old.end > self.history_from[old.partition]:
                self.history_from[old.partition] = old.end
        if self.ready.is_set():
            for listener in list(self.listeners):
                try:
                    listener(changes)
                except Exception:
                    log.exception("market feed: a listener failed")

    def _runner_change(self, market_id: str, feed: MarketFeed, runner_id: int) -> RunnerChange:
        key = (market_id, runner_id)
        published = self.published.get(key)
        if published is None:
            published = self.published[key] = _Published()
        back, lay = feed.available(runner_id)
        traded = feed.traded.get(runner_id, {})
        change = RunnerChange(
            level_delta(published.back, back), level_delta(published.lay, lay),
            best_levels(published.back, 10, True), best_levels(back, 10, True),
            best_levels(published.lay, 10, False), best_levels(lay, 10, False),
            [(t, v) for t, v in traded.items() if published.traded.get(t) != v])
        published.back, published.lay, published.traded = back, lay, dict(traded)
        return change

    def _fetch_catalogue(self, market_id: str) -> None:
        if self.catalogue_source is None or market_id in self._pending_catalogue:
            return
        self._pending_catalogue.add(market_id)

        async def fetch():
            try:
                rows = await self.catalogue_source([market_id])
                self.catalogue.update(rows)
            except Exception:
                log.exception("market feed: catalogue lookup of %s failed", market_id)
            finally:
                self._pending_catalogue.discard(market_id)

        asyncio.get_running_loop().create_task(fetch())

    async def ensure_catalogue(self, market_ids) -> None:
        """Catalogue rows (event, market type, start time) of these markets, fetched if missing."""
        missing = [m for m in market_ids if m not in self.catalogue]
        if missing and self.catalogue_source is not None:
            try:
                self.catalogue.update(await asyncio.wait_for(self.catalogue_source(missing), 5))
            except Exception:
                log.exception("market feed: catalogue lookup failed")

    def changes_since(self, clock: dict[int, int] | None) -> list[MarketChange] | None:
        """The history after ``clock``, or None when it does not reach back that far."""
        if clock is None:
            return None
        for partition, offset in self.offsets.items():
            at = clock.get(partition, 0)
            if at < self.history_from.get(partition, 0) or at > offset:
                return None
        return [c for c in self.history if c.end > clock.get(c.partition, 0)]


# ---------------------------------------------------------------- rendering (ESA shapes)


def _pv(levels) -> list:
    return [[_PRICE[t], _units(s)] for t, s in levels]


def _lpv(levels) -> list:
    return [[lvl, _PRICE[t] if s else 0, _units(s)] for lvl, t, s in levels]


def market_definition(feed: MarketFeed, row: dict | None, regulator: str) -> dict:
    state = feed.state
    out: dict[str, Any] = {
        "bspMarket": False, "turnInPlayEnabled": True, "persistenceEnabled": True,
        "marketBaseRate": Decimal(state.commission_rate_bp).scaleb(-2), "numberOfWinners": state.number_of_winners,
        "bettingType": "ODDS", "bspReconciled": False, "complete": True, "inPlay": state.in_play,
        "crossMatching": False, "runnersVoidable": False, "numberOfActiveRunners": len(state.active),
        "betDelay": state.bet_delay_ms // 1000, "status": feed.state.status, "discountAllowed": True,
        "version": state.version, "regulators": [regulator] if regulator else [],
    }
    sort = {}
    if row:
        out.update({"eventId": row["event_id"], "eventTypeId": row["event_type_id"],
                    "marketType": row["market_type"], "countryCode": row["country_code"],
                    "timezone": row["timezone"], "name": row["name"], "eventName": row["event_name"]})
        if row.get("start_time") is not None:
            out["marketTime"] = row["start_time"]
            out["suspendTime"] = row["start_time"]
        if row.get("open_date") is not None:
            out["openDate"] = row["open_date"]
        sort = row.get("sort_priority", {})
    if feed.settled_at is not None:
        out["settledTime"] = convert.ms_to_datetime(feed.settled_at)
    out["runners"] = [{"id": r, "sortPriority": sort.get(r, i + 1), "status": feed.runner_status(r),
                       "hc": 0} for i, r in enumerate(state.runners)]
    return out


@dataclass(frozen=True)
class DataSpec:
    fields: frozenset
    levels: int


def render_image(feed: MarketFeed, market_id: str, spec: DataSpec, row: dict | None, regulator: str) -> dict:
    mc: dict[str, Any] = {"id": market_id, "img": True}
    f = spec.fields
    if "EX_MARKET_DEF" in f:
        mc["marketDefinition"] = market_definition(feed, row, regulator)
    rc = []
    total = 0
    for runner_id in feed.state.runners:
        back, lay = feed.available(runner_id)
        traded = feed.traded.get(runner_id, {})
        volume = sum(traded.values())
        total += volume
        r: dict[str, Any] = {"id": runner_id}
        if "EX_ALL_OFFERS" in f:
            r["atb"] = _pv(sorted(back.items()))
            r["atl"] = _pv(sorted(lay.items()))
        if "EX_BEST_OFFERS" in f or "EX_BEST_OFFERS_DISP" in f:
            bb = [(i, t, s) for i, (t, s) in enumerate(best_levels(back, spec.levels, True))]
            bl = [(i, t, s) for i, (t, s) in enumerate(best_levels(lay, spec.levels, False))]
            if "EX_BEST_OFFERS" in f:
                r["batb"], r["batl"] = _lpv(bb), _lpv(bl)
            if "EX_BEST_OFFERS_DISP" in f:
                r["bdatb"], r["bdatl"] = _lpv(bb), _lpv(bl)
        if "EX_TRADED" in f:
            r["trd"] = _pv(sorted(traded.items()))
        if "EX_TRADED_VOL" in f:
            r["tv"] = _units(volume)
        if "EX_LTP" in f and runner_id in feed.ltp:
            r["ltp"] = _PRICE[feed.ltp[runner_id]]
        rc.append(r)
    mc["rc"] = rc
    if "EX_TRADED_VOL" in f:
        mc["tv"] = _units(total)
    return mc


def render_changes(feed: MarketFeed, market_id: str, changes: list[MarketChange], spec: DataSpec,
                   row: dict | None, regulator: str) -> dict | None:
    """One mc entry for one or more consecutive changes of a market (None: nothing in the fields)."""
    f = spec.fields
    mc: dict[str, Any] = {"id": market_id}
    if "EX_MARKET_DEF" in f and any(c.definition for c in changes):
        mc["marketDefinition"] = market_definition(feed, row, regulator)
    merged: dict[int, list[RunnerChange]] = {}
    for c in changes:
        for runner_id, rc in c.runners.items():
            merged.setdefault(runner_id, []).append(rc)
    rcs = []
    for runner_id, parts in merged.items():
        r: dict[str, Any] = {"id": runner_id}
        if "EX_ALL_OFFERS" in f:
            back = _merge([p.back for p in parts])
            lay = _merge([p.lay for p in parts])
            if back:
                r["atb"] = _pv(back)
            if lay:
                r["atl"] = _pv(lay)
        if "EX_BEST_OFFERS" in f or "EX_BEST_OFFERS_DISP" in f:
            n = spec.levels
            if len(parts) == 1:
                bb = best_delta(parts[0].best_back_old[:n], parts[0].best_back_new[:n])
                bl = best_delta(parts[0].best_lay_old[:n], parts[0].best_lay_new[:n])
            else:      # merged: the whole top n, every slot written
                bb = _full_best(parts[-1].best_back_new[:n], n)
                bl = _full_best(parts[-1].best_lay_new[:n], n)
            if bb:
                r["batb" if "EX_BEST_OFFERS" in f else "bdatb"] = _lpv(bb)
            if bl:
                r["batl" if "EX_BEST_OFFERS" in f else "bdatl"] = _lpv(bl)
        traded = _merge([p.traded for p in parts])
        if traded:
            if "EX_TRADED" in f:
                r["trd"] = _pv(traded)
            if "EX_TRADED_VOL" in f:
                r["tv"] = _units(sum(feed.traded.get(runner_id, {}).values()))
            if "EX_LTP" in f and runner_id in feed.ltp:
                r["ltp"] = _PRICE[feed.ltp[runner_id]]
        if len(r) > 1:
            rcs.append(r)
    if rcs:
        mc["rc"] = rcs
    if "EX_TRADED_VOL" in f and any(p.traded for parts in merged.values() for p in parts):
        mc["tv"] = _units(sum(sum(v.values()) for v in feed.traded.values()))
    return mc if len(mc) > 1 else None


def _merge(deltas: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    if len(deltas) == 1:
        return deltas[0]
    out: list[tuple[int, int]] = []
    for d in deltas:
        out = merge_level_deltas(out, d)
    return out


def _full_best(ranked: list[tuple[int, int]], n: int) -> list[tuple[int, int, int]]:
    return [(i, *ranked[i]) if i < len(ranked) else (i, 0, 0) for i in range(n)]


def render_order(o: OrderRecord, market_id: str, regulator: str) -> dict:
    u: dict[str, Any] = {
        "id": convert.bet_id_to_api(market_id, o.bet_id), "p": _PRICE[o.tick], "s": _units(o.size),
        "side": "B" if o.side == "BACK" else "L", "status": "E" if o.remaining else "EC",
        "pt": {"LAPSE": "L", "PERSIST": "P", "MARKET_ON_CLOSE": "MOC"}.get(o.persistence, "L"),
        "ot": "L", "pd": o.placed_at, "sm": _units(o.matched), "sr": _units(o.remaining),
        "sl": _units(o.lapsed), "sc": _units(o.cancelled), "sv": _units(o.voided), "rac": "",
        "rc": "REG_GGC", "rfo": o.customer_ref or "", "rfs": "",
    }
    if regulator:
        u["rc"] = regulator
    if o.matched:
        u["avp"] = (Decimal(o.matched_value) / o.matched).scaleb(-2).quantize(Decimal("0.01"))
        u["md"] = o.matched_at
    if o.cancelled_at is not None:
        u["cd"] = o.cancelled_at
    if o.lapsed_at is not None:
        u["ld"] = o.lapsed_at
        u["lsrc"] = o.lapse_reason
    return u


def render_player_orders(feed: MarketFeed, market_id: str, player_id: str, orders: list[OrderRecord] | None,
                         regulator: str, image: bool) -> dict | None:
    """One oc entry: the player's orders on a market (image: every live one) and matched by price."""
    mine = feed.player_orders(player_id) if orders is None else [o for o in orders if o.player_id == player_id]
    if image:
        runners = {r for (p, r) in feed.matched_by_price if p == player_id} | {o.runner_id for o in mine}
    else:
        runners = {o.runner_id for o in mine}
    if not runners:
        return None
    orc = []
    for runner_id in sorted(runners):
        backs, lays = feed.matched_of(player_id, runner_id)
        entry: dict[str, Any] = {"id": runner_id}
        if image:
            entry["fullImage"] = True
        uo = [render_order(o, market_id, regulator) for o in mine if o.runner_id == runner_id]
        if uo:
            entry["uo"] = uo
        if backs:
            entry["mb"] = _pv(sorted(backs.items()))
        if lays:
            entry["ml"] = _pv(sorted(lays.items()))
        orc.append(entry)
    oc: dict[str, Any] = {"id": market_id, "orc": orc}
    if image:
        oc["fullImage"] = True
    if feed.state.status == "CLOSED":
        oc["closed"] = True
    return oc


# ---------------------------------------------------------------- subscriptions


class Refused(Exception):
    def __init__(self, code: str, message: str, close: bool = False):
        super().__init__(code)
        self.code, self.message, self.close = code, message, close


@dataclass(kw_only=True)
class Subscription:
    """What both kinds of subscription keep: the request id, pacing, and unsent changes."""

    id: int | None
    conflate_ms: int
    heartbeat_ms: int
    initial_clk: str
    pending: list[MarketChange] = field(default_factory=list)
    last_sent: float = 0.0
    last_flush: float = 0.0


@dataclass(kw_only=True)
class MarketSubscription(Subscription):
    spec: DataSpec
    market_ids: set[str] | None            # None: every market of the jurisdiction
    query: wire.StreamMarketFilter | None  # a filter beyond market ids: matched through the catalogue

    def wants(self, market_id: str) -> bool:
        return self.market_ids is None or market_id in self.market_ids


@dataclass(kw_only=True)
class OrderSubscription(Subscription):
    player_id: str


class StreamHub:
    """The replica's feed and its connections; renders each change once per data filter."""

    def __init__(self, ingress):
        self.ingress = ingress
        s = ingress.s
        self.regulator = s.regulator
        self.feed = FeedSource(s.kafka_bootstrap, s.jurisdiction, s.kafka_prefix, catalogue=self._catalogue)
        self.feed.listeners.add(self._on_changes)
        self.feed.new_market_listeners.add(self._on_new_market)
        self.connections: set[StreamConnection] = set()
        self.encoder = msgspec.json.Encoder(decimal_format="number")
        self._ticker: asyncio.Task | None = None
        self.direct_writes: bool | None = None       # known at the first connection

    def start(self) -> None:
        self.feed.start()
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        """One ticker for every connection: conflation flushes and heartbeats."""
        while True:
            conflate = [s.conflate_ms for c in self.connections for s in (c.market_sub, c.order_sub)
                        if s is not None and s.conflate_ms]
            await asyncio.sleep(max(0.01, min([0.25, *(ms / 2000 for ms in conflate)])))
            now, clk, pt = time.monotonic(), self.feed.clock, _now_ms()
            for conn in list(self.connections):
                try:
                    conn.tick(now, clk, pt)
                except Exception:
                    log.exception("stream %s: tick failed", conn.id)

    async def _catalogue(self, market_ids: list[str]) -> dict[str, dict]:
        store = await self.ingress.platform()
        rows = await store.markets(self.ingress.s.jurisdiction, market_ids=market_ids)
        runners = await store.runners(market_ids)
        out = {}
        for row in rows:
            d = dict(row)
            d["sort_priority"] = {r["selection_id"]: r["sort_priority"] for r in runners.get(d["market_id"], [])}
            out[d["market_id"]] = d
        return out

    def _on_changes(self, changes: list[MarketChange]) -> None:
        """One poll's changes to every subscriber: each distinct message is rendered once.

        Subscribers with the same subscription id, data filter and markets (the usual
        case: many clients of one app) share one text; the loop then costs a dict
        lookup and a queue put per connection, and the writers send.
        """
        now = time.monotonic()
        clk = self.feed.clock
        pt = _now_ms()
        fragments: dict[tuple, bytes | None] = {}
        texts: dict[tuple, tuple[str | None, bytes | None]] = {}
        players = None
        for conn in list(self.connections):
            sub = conn.market_sub
            if sub is not None:
                mine = changes if sub.market_ids is None else [c for c in changes if c.market_id in sub.market_ids]
                if mine:
                    if sub.conflate_ms:
                        sub.pending.extend(mine)
                    else:
                        key = (sub.id, sub.spec,
                               None if sub.market_ids is None else tuple(c.market_id for c in mine))
                        entry = texts.get(key)
                        if entry is None:
                            text = conn.market_text(sub, mine, clk, pt, fragments)
                            entry = texts[key] = (text, None if text is None else text_frame(text.encode()))
                        if entry[0] is not None:
                            conn.send(*entry)
                            sub.last_sent = now
            osub = conn.order_sub
            if osub is not None:
                if players is None:
                    players = {o.player_id for c in changes for o in c.orders}
                if osub.player_id in players:
                    mine = [c for c in changes if c.orders]
                    if osub.conflate_ms:
                        osub.pending.extend(mine)
                    else:
                        conn.send_order_changes(osub, mine, clk, pt, now)

    def _on_new_market(self, market_id: str) -> None:
        for conn in list(self.connections):
            sub = conn.market_sub
            if sub is not None and sub.query is not None and market_id not in sub.market_ids:
                asyncio.get_running_loop().create_task(conn.consider_market(sub, market_id))

    def fragment(self, market_id: str, changes: list[MarketChange], spec: DataSpec,
                 cache: dict | None) -> bytes | None:
        key = (market_id, spec)
        if cache is not None and key in cache:
            return cache[key]
        mc = render_changes(self.feed.feeds[market_id], market_id, changes, spec,
                            self.feed.catalogue.get(market_id), self.regulator)
        out = self.encoder.encode(mc) if mc is not None else None
        if cache is not None:
            cache[key] = out
        return out


class StreamConnection:
    """One WebSocket client (see the module docstring)."""

    def __init__(self, hub: StreamHub, websocket, ip: str):
        self.hub = hub
        self.ws = websocket
        self.ip = ip
        self.id = uuid.uuid4().hex[:12]
        self.caller = None
        self.market_sub: MarketSubscription | None = None
        self.order_sub: OrderSubscription | None = None
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.backlog = 0                  # texts queued for the writer task and not yet sent
        self.direct: DirectSocket | None = None
        self.closed = False
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.tasks: set[asyncio.Task] = set()
        self.decoder = msgspec.json.Decoder(wire.StreamMessage)

    # -------------------------------------------------------------- sending

    def send(self, text: str, frame: bytes | None = None) -> None:
        """Sends now when the socket takes it in order, else queues for the writer task.

        ``frame``: the text already framed (a fanned-out change is framed once for all).
        """
        if self.closed:
            return
        direct = self.direct
        if direct is not None and not self.backlog and direct.ready():
            direct.write(frame if frame is not None else text_frame(text.encode()))
            return
        if self.queue.qsize() >= MAX_QUEUE:
            log.warning("stream %s: %d messages unread; disconnecting the slow client", self.id, MAX_QUEUE)
            self.closed = True
            self.queue.put_nowait(None)
            return
        self.backlog += 1
        self.queue.put_nowait(text)

    def send_obj(self, obj) -> None:
        self.send(self.hub.encoder.encode(obj).decode())

    def status(self, rid, code: str | None = None, message: str | None = None, close: bool = False) -> None:
        self.send_obj(wire.StreamStatus(id=rid, status_code="FAILURE" if code else "SUCCESS",
                                        connection_closed=close, error_code=code, error_message=message))

    async def _writer(self) -> None:
        ws = self.ws
        queue = self.queue
        try:
            while True:
                text = await queue.get()
                if text is None:
                    break
                await ws.send_text(text)
                self.backlog -= 1
        except Exception:
            pass
        finally:
            self.closed = True
            try:
                await ws.close()
            except Exception:
                pass

    def _change_message(self, op: str, sid, clk: str, pt: int, items: list[bytes], ct: str | None = None,
                        extra: str = "") -> str:
        head = f'{{"op":"{op}","id":{"null" if sid is None else sid},"clk":"{clk}","pt":{pt}'
        if ct:
            head += f',"ct":"{ct}"'
        key = "mc" if op == "mcm" else "oc"
        return f'{head}{extra},"{key}":[{b",".join(items).decode()}]}}'

    def market_text(self, sub: MarketSubscription, changes: list[MarketChange], clk: str, pt: int,
                    fragments: dict | None, ct: str | None = None) -> str | None:
        by_market: dict[str, list[MarketChange]] = {}
        for c in changes:
            by_market.setdefault(c.market_id, []).append(c)
        items = [frag for market_id, cs in by_market.items()
                 if (frag := self.hub.fragment(market_id, cs, sub.spec, fragments if len(cs) == 1 else None))]
        if items or ct:
            return self._change_message("mcm", sub.id, clk, pt, items, ct)
        return None

    def send_market_changes(self, sub: MarketSubscription, changes: list[MarketChange], clk: str, pt: int,
                            fragments: dict | None, now: float, ct: str | None = None) -> None:
        text = self.market_text(sub, changes, clk, pt, fragments, ct)
        if text is not None:
            self.send(text)
            sub.last_sent = now

    def send_order_changes(self, sub: OrderSubscription, changes: list[MarketChange], clk: str, pt: int,
                           now: float, ct: str | None = None) -> None:
        feeds = self.hub.feed.feeds
        by_market: dict[str, list[OrderRecord]] = {}
        for c in changes:
            by_market.setdefault(c.market_id, []).extend(o for o in c.orders if o.player_id == sub.player_id)
        encode = self.hub.encoder.encode
        items = []
        for market_id, orders in by_market.items():
            if orders:
                unique = list({o.bet_id: o for o in orders}.values())
                oc = render_player_orders(feeds[market_id], market_id, sub.player_id, unique,
                                          self.hub.regulator, image=False)
                if oc is not None:
                    items.append(encode(oc))
        if items or ct:
            self.send(self._change_message("ocm", sub.id, clk, pt, items, ct))
            sub.last_sent = now

    # -------------------------------------------------------------- ticking

    def tick(self, now: float, clk: str, pt: int) -> None:
        """Flushes conflated changes that are due and sends heartbeats (the hub's ticker calls it)."""
        for sub in (self.market_sub, self.order_sub):
            if sub is None:
                continue
            if sub.conflate_ms and sub.pending and (now - sub.last_flush) * 1000 >= sub.conflate_ms:
                pending, sub.pending = sub.pending, []
                sub.last_flush = now
                if isinstance(sub, MarketSubscription):
                    self.send_market_changes(sub, pending, clk, pt, None, now)
                else:
                    self.send_order_changes(sub, pending, clk, pt, now)
            if sub.heartbeat_ms and (now - sub.last_sent) * 1000 >= sub.heartbeat_ms:
                op = "mcm" if isinstance(sub, MarketSubscription) else "ocm"
                self.send(f'{{"op":"{op}","id":{"null" if sub.id is None else sub.id},'
                          f'"clk":"{clk}","pt":{pt},"ct":"HEARTBEAT"}}')
                sub.last_sent = now

    # -------------------------------------------------------------- the session

    async def run(self) -> None:
        ws = self.ws
        await ws.accept()
        self.direct = DirectSocket.of(ws)
        if self.hub.direct_writes is None:
            self.hub.direct_writes = self.direct is not None
            log.info("stream: %s", "frames go straight to each socket" if self.direct is not None
                     else "no direct socket access (not uvicorn on this loop): frames go through ASGI sends")
        self.hub.connections.add(self)
        writer = asyncio.get_running_loop().create_task(self._writer())
        self.send_obj(wire.StreamConnection(connection_id=self.id))
        try:
            while not self.closed:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("text")
                if data is None:
                    data = (message.get("bytes") or b"").decode("utf-8", "replace")
                await self.on_message(data)
        except Exception as exc:       # the socket went away under us
            log.debug("stream %s: %s", self.id, exc)
        finally:
            self.closed = True
            self.hub.connections.discard(self)
            for task in list(self.tasks):
                task.cancel()
            self.queue.put_nowait(None)
            await asyncio.gather(writer, return_exceptions=True)

    async def on_message(self, data: str) -> None:
        rid = None
        try:
            if len(data) > self.hub.ingress.s.max_body_bytes:
                raise Refused("INVALID_INPUT", "the message is too large")
            try:
                msg = self.decoder.decode(data)
            except msgspec.DecodeError as exc:
                rid = _request_id(data)
                raise Refused("INVALID_INPUT", str(exc)) from None
            rid = msg.id
            if isinstance(msg, wire.StreamAuthentication):
                await self.authenticate(msg)
                return
            if isinstance(msg, wire.StreamHeartbeat):
                self.status(rid)
                return
            if self.caller is None:
                raise Refused("NOT_AUTHORIZED", "authenticate first", close=True)
            wait = self.hub.ingress.account_limits.take(self.caller.account_id, rate=self.caller.rate,
                                                        burst=self.caller.burst)
            if wait:
                raise Refused("TOO_MANY_REQUESTS", f"too many requests for this account; retry in {wait:.2f}s")
            if isinstance(msg, wire.StreamMarketSubscription):
                await self.subscribe_markets(msg)
            elif isinstance(msg, wire.StreamOrderSubscription):
                await self.subscribe_orders(msg)
            else:
                await self.in_flight.acquire()
                task = asyncio.get_running_loop().create_task(self.order_entry(msg))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        except Refused as r:
            self.status(rid, r.code, r.message, r.close)
            if r.close:
                self.closed = True
                self.queue.put_nowait(None)

    async def authenticate(self, msg: wire.StreamAuthentication) -> None:
        from exchange.api.app import Refusal

        if not msg.app_key:
            raise Refused("NO_APP_KEY", "appKey is required", close=True)
        if not msg.session:
            raise Refused("NO_SESSION", "session is required", close=True)
        try:
            self.caller = await self.hub.ingress.session_caller(msg.app_key, msg.session)
        except Refusal as r:
            code = {"INVALID_SESSION_INFORMATION": "INVALID_SESSION_INFORMATION",
                    "INVALID_APP_KEY": "INVALID_APP_KEY"}.get(r.code, "NOT_AUTHORIZED")
            raise Refused(code, r.details, close=True) from None
        self.status(msg.id)

    async def _ready(self) -> None:
        try:
            await asyncio.wait_for(self.hub.feed.ready.wait(), 60)
        except asyncio.TimeoutError:
            raise Refused("TIMEOUT", "the market feed is not ready yet; retry") from None

    async def subscribe_markets(self, msg: wire.StreamMarketSubscription) -> None:
        await self._ready()
        f = msg.market_filter or wire.StreamMarketFilter()
        d = msg.market_data_filter or wire.StreamMarketDataFilter()
        spec = DataSpec(frozenset(d.fields) if d.fields else DEFAULT_FIELDS, d.ladder_levels or DEFAULT_LEVELS)
        needs_query = any(v is not None for v in (f.event_type_ids, f.event_ids, f.market_types, f.country_codes,
                                                  f.bsp_market, f.turn_in_play_enabled, f.betting_types))
        market_ids = set(f.market_ids) if f.market_ids is not None else None
        if needs_query:
            market_ids = await self._query(f, market_ids)
        feed = self.hub.feed
        await feed.ensure_catalogue([m for m in feed.feeds if market_ids is None or m in market_ids])
        sub = MarketSubscription(id=msg.id, spec=spec, market_ids=market_ids, query=f if needs_query else None,
                                 conflate_ms=msg.conflate_ms or 0, heartbeat_ms=_heartbeat(msg.heartbeat_ms),
                                 initial_clk=feed.clock)
        # From here to registering, no await: the image and the deltas after it are contiguous.
        self.status(msg.id)
        now = time.monotonic()
        resumed = feed.changes_since(decode_clock(msg.clk)) if msg.clk else None
        clk, pt = feed.clock, _now_ms()
        if resumed is not None:
            # The markets that changed since the client's clock, each as a whole image
            # (img: true replaces the client's copy): another replica's polls split the log
            # elsewhere, so deltas cut at our boundaries could miss a level that came and went.
            self.market_sub = sub
            sub.initial_clk = msg.initial_clk or sub.initial_clk
            changed = sorted({c.market_id for c in resumed if sub.wants(c.market_id)})
            items = [self.hub.encoder.encode(render_image(feed.feeds[m], m, spec, feed.catalogue.get(m),
                                                          self.hub.regulator)) for m in changed]
            self.send(self._change_message("mcm", sub.id, clk, pt, items, "RESUB_DELTA",
                                           f',"initialClk":"{sub.initial_clk}"'))
        else:
            items = [self.hub.encoder.encode(render_image(feed.feeds[m], m, spec, feed.catalogue.get(m),
                                                          self.hub.regulator))
                     for m in sorted(feed.feeds) if sub.wants(m)]
            self.market_sub = sub
            self.send(self._change_message("mcm", sub.id, clk, pt, items, "SUB_IMAGE",
                                           f',"initialClk":"{clk}","conflateMs":{sub.conflate_ms},'
                                           f'"heartbeatMs":{sub.heartbeat_ms}'))
        sub.last_sent = sub.last_flush = now

    async def _query(self, f: wire.StreamMarketFilter, market_ids: set[str] | None) -> set[str]:
        store = await self.hub.ingress.platform()
        rows = await store.markets(self.hub.ingress.s.jurisdiction, event_type_ids=f.event_type_ids,
                                   event_ids=f.event_ids, market_ids=sorted(market_ids) if market_ids else None,
                                   market_types=f.market_types, countries=f.country_codes, limit=10_000)
        return {r["market_id"] for r in rows
                if f.turn_in_play_enabled in (None, True) and not f.bsp_market
                and (f.betting_types is None or "ODDS" in f.betting_types)}

    async def consider_market(self, sub: MarketSubscription, market_id: str) -> None:
        """A market born after a filtered subscription: send its image if it matches."""
        await asyncio.sleep(0.5)          # its catalogue row is written just after the market
        if self.market_sub is not sub:
            return
        if market_id in await self._query(sub.query, {market_id}) and market_id not in sub.market_ids:
            sub.market_ids.add(market_id)
            feed = self.hub.feed
            item = self.hub.encoder.encode(render_image(feed.feeds[market_id], market_id, sub.spec,
                                                        feed.catalogue.get(market_id), self.hub.regulator))
            self.send(self._change_message("mcm", sub.id, feed.clock, _now_ms(), [item]))

    async def subscribe_orders(self, msg: wire.StreamOrderSubscription) -> None:
        await self._ready()
        feed = self.hub.feed
        player = self.caller.account_id
        sub = OrderSubscription(id=msg.id, player_id=player, conflate_ms=msg.conflate_ms or 0,
                                heartbeat_ms=_heartbeat(msg.heartbeat_ms), initial_clk=feed.clock)
        self.status(msg.id)
        now = time.monotonic()
        clk, pt = feed.clock, _now_ms()
        resumed = feed.changes_since(decode_clock(msg.clk)) if msg.clk else None
        self.order_sub = sub
        if resumed is not None:
            sub.initial_clk = msg.initial_clk or sub.initial_clk
            self.send_order_changes(sub, [c for c in resumed if c.orders], clk, pt, now, "RESUB_DELTA")
        else:
            encode = self.hub.encoder.encode
            items = [encode(oc) for m in sorted(feed.feeds)
                     if (oc := render_player_orders(feed.feeds[m], m, player, None, self.hub.regulator, True))]
            self.send(self._change_message("ocm", sub.id, clk, pt, items, "SUB_IMAGE",
                                           f',"initialClk":"{clk}","conflateMs":{sub.conflate_ms},'
                                           f'"heartbeatMs":{sub.heartbeat_ms}'))
        sub.last_sent = sub.last_flush = now

    async def order_entry(self, msg) -> None:
        from exchange.api.app import Refusal

        try:
            handler = {wire.StreamPlaceOrders: self.hub.ingress.place_orders,
                       wire.StreamCancelOrders: self.hub.ingress.cancel_orders,
                       wire.StreamReplaceOrders: self.hub.ingress.replace_orders,
                       wire.StreamUpdateOrders: self.hub.ingress.update_orders}[type(msg)]
            result = await handler(self.caller, msg.params)
            body = self.hub.encoder.encode(result).decode()
            op = type(msg).__struct_config__.tag
            self.send(f'{{"op":"{op}","id":{"null" if msg.id is None else msg.id},"result":{body}}}')
        except Refusal as r:
            self.status(msg.id, r.code, r.details)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stream %s: order entry failed", self.id)
            self.status(msg.id, "UNEXPECTED_ERROR", type(exc).__name__)
        finally:
            self.in_flight.release()


class _Envelope(msgspec.Struct):
    id: int | None = None


def _request_id(data: str) -> int | None:
    """The id of a message that did not validate, if it has a readable one (to answer it by)."""
    try:
        return msgspec.json.decode(data, type=_Envelope).id
    except msgspec.DecodeError:
        return None


def _heartbeat(ms: int | None) -> int:
    if ms is None:
        return DEFAULT_HEARTBEAT_MS
    return min(max(ms, 500), 5000)       # Betfair's range


__all__ = ["FeedSource", "MarketChange", "StreamConnection", "StreamHub", "decode_clock", "encode_clock",
           "render_changes", "render_image"]
