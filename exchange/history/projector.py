"""The history projector: a jurisdiction's market and wallet journals into PostgreSQL.

Owns the tail of both journals of one jurisdiction (``{prefix}.markets.{j}.events`` and
``{prefix}.wallets.{j}.events``; every record in them counts, see exchange/journal)
from the positions stored in PostgreSQL, the pure projection
(exchange/domain/history.py) over it, and the writes (exchange/history/store.py):

- one poll of both topics = one batch = one PostgreSQL transaction holding its rows,
  every aggregate's new sequence number (and a wallet's balance), the events of the
  markets still open and the new positions. A crash before the commit leaves nothing;
  after it, nothing is read twice. Replayed journal batches (a host that wrote again
  what it had written) are skipped by sequence number, across restarts too.
- one writer: the projector holds a PostgreSQL advisory lock (per schema, prefix and
  jurisdiction) on the connection it writes with, for as long as it runs; a second
  projector waits for it.
- crash-only: any failure (Kafka, PostgreSQL, an event it cannot decode) drops the whole
  in-memory state; the projector starts again from what PostgreSQL holds, after a
  backoff. Memory only ever runs ahead of the database inside one batch.

Restart cost: the open markets' events come back from PostgreSQL, the rest from the
stored positions on; the per-aggregate sequence numbers and balances are read on first
sight of an aggregate (one query per poll for all the new ones).

Must never write a row outside a batch transaction or skip the sequence check.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable

from exchange.domain.history import HistoryProjection
from exchange.domain.messages import event_msgpack
from exchange.history.store import HistoryBatch, HistoryStore
from exchange.journal import JournalConfig, ensure_topics, kafka_admin
from exchange.journal.records import batch_decoder

log = logging.getLogger(__name__)


@dataclass
class ProjectorStats:
    batches: int = 0
    events: int = 0
    skipped: int = 0             # journal events already applied (replays)
    cleared: int = 0
    items: int = 0
    gaps: int = 0
    restarts: int = 0


def lock_key(schema: str, prefix: str, jurisdiction: str) -> int:
    """The advisory lock (a signed 64-bit key) that makes the projector the one writer."""
    digest = hashlib.blake2b(f"history/{schema}/{prefix}/{jurisdiction}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class HistoryProjector:
    """One jurisdiction's projector (plain asyncio: the Ray actor in actors/ runs it)."""

    def __init__(self, bootstrap: str, dsn: str, jurisdiction: str, schema: str = "platform",
                 prefix: str = "exchange", partitions: int = 8, max_records: int = 5000,
                 gather_s: float = 0.1, fail_point: Callable[[], Awaitable[None]] | None = None):
        self.dsn = dsn
        self.jurisdiction = jurisdiction
        self.schema = schema
        self.prefix = prefix
        self.markets = JournalConfig(bootstrap=bootstrap, stream=f"markets.{jurisdiction}",
                                     partitions=partitions, prefix=prefix)
        self.wallets = JournalConfig(bootstrap=bootstrap, stream=f"wallets.{jurisdiction}",
                                     partitions=partitions, prefix=prefix)
        self.max_records = max_records
        self.gather_s = gather_s      # after a short poll, let this much more arrive before the next
        self.fail_point = fail_point
        self.stats = ProjectorStats()
        self.ready = asyncio.Event()           # state loaded from PostgreSQL, tail assigned
        self.done: dict[tuple[str, int], int] = {}    # per partition: every offset below is in PostgreSQL
        self._consumer = None
        self._tps: list = []
        self._progress = asyncio.Condition()

    # ---------------------------------------------------------------- running

    async def run(self) -> None:
        """Projects forever; a failure restarts the projection from PostgreSQL."""
        delay = 0.5
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.restarts += 1
                log.exception("history projector %s: failed; restarting from PostgreSQL in %.1fs",
                              self.jurisdiction, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def run_once(self) -> None:
        """Loads the stored state, then tails both journals until something fails."""
        import asyncpg
        from aiokafka import AIOKafkaConsumer

        self.ready.clear()
        con = await asyncpg.connect(self.dsn)
        try:
            store = HistoryStore(con, self.schema)
            await store.create_schema()
            await self._lock(con)
            projection = HistoryProjection()
            topics = [self.markets.events_topic, self.wallets.events_topic]
            positions = await store.positions(topics)
            decode = event_msgpack.decode
            for market_id, events in (await store.open_markets(self.markets.events_topic)).items():
                projection.restore_market(market_id, [decode(e) for e in events])
            await ensure_topics(self.markets)
            await ensure_topics(self.wallets)
            consumer = AIOKafkaConsumer(bootstrap_servers=self.markets.bootstrap, enable_auto_commit=False,
                                        isolation_level="read_uncommitted", group_id=None,
                                        auto_offset_reset="earliest",
                                        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_wait_ms=100)
            await consumer.start()
            try:
                from aiokafka import TopicPartition

                partitions = await _partitions(self.markets.bootstrap, topics)
                tps = [TopicPartition(topic, p) for topic in topics for p in partitions[topic]]
                consumer.assign(tps)
                for tp in tps:
                    offset = positions.get((tp.topic, tp.partition), 0)
                    consumer.seek(tp, offset)
                    self.done[(tp.topic, tp.partition)] = offset
                self._consumer, self._tps = consumer, tps
                log.info("history projector %s: %d open markets restored, tailing from %s", self.jurisdiction,
                         len(projection.markets), {f"{t}/{p}": o for (t, p), o in positions.items()})
                self.ready.set()
                while True:
                    polled = await consumer.getmany(timeout_ms=200, max_records=self.max_records)
                    reached = {(tp.topic, tp.partition): await consumer.position(tp) for tp in tps}
                    if polled:
                        await self._apply(store, projection, polled)
                    async with self._progress:
                        self.done.update(reached)
                        self._progress.notify_all()
                    if polled and sum(map(len, polled.values())) < self.max_records:
                        # one PostgreSQL transaction per poll: under a steady trickle of
                        # flushes, polling at once would commit one per flush
                        await asyncio.sleep(self.gather_s)
            finally:
                self._consumer = None
                await consumer.stop()
        finally:
            self.ready.clear()
            try:
                await asyncio.wait_for(con.close(), 5)
            except Exception:           # the server is gone or slow: drop the socket
                con.terminate()

    async def _lock(self, con) -> None:
        key = lock_key(self.schema, self.prefix, self.jurisdiction)
        waited = 0
        while not await con.fetchval("SELECT pg_try_advisory_lock($1)", key):
            if waited % 30 == 0:
                log.warning("history projector %s: another projector holds the lock; waiting", self.jurisdiction)
            waited += 1
            await asyncio.sleep(1)

    async def _apply(self, store: HistoryStore, projection: HistoryProjection, polled: dict) -> None:
        """One poll: decode, restore the aggregates seen for the first time, project, write."""
        market_topic = self.markets.events_topic
        wallet_topic = self.wallets.events_topic
        decoded = []
        new_markets: set[str] = set()
        new_wallets: set[str] = set()
        for tp, records in polled.items():
            is_market = tp.topic == market_topic
            for record in records:
                batches = batch_decoder.decode(record.value)
                decoded.append((tp, record.offset, batches))
                for b in batches:
                    if is_market:
                        if b.aggregate_id not in projection.market_seqs:
                            new_markets.add(b.aggregate_id)
                    elif b.aggregate_id not in projection.wallets:
                        new_wallets.add(b.aggregate_id)
        if new_markets:
            found = await store.aggregates(market_topic, sorted(new_markets))
            for market_id in new_markets:
                projection.restore_market_seq(market_id, found.get(market_id, (0, 0))[0])
        if new_wallets:
            found = await store.aggregates(wallet_topic, sorted(new_wallets))
            for wallet_id in new_wallets:
                projection.restore_wallet(wallet_id, *found.get(wallet_id, (0, 0)))

        decode = event_msgpack.decode
        batch = HistoryBatch()
        touched: set[str] = set()
        stats = self.stats
        for tp, offset, batches in decoded:
            is_market = tp.topic == market_topic
            for b in batches:
                events = [decode(raw) for raw in b.events]
                if is_market:
                    applied = projection.market_batch(b.aggregate_id, b.first_seq, events)
                else:
                    applied = projection.wallet_batch(b.aggregate_id, b.first_seq, events)
                stats.skipped += len(events) - applied.fresh
                if applied.gap:
                    stats.gaps += 1
                    log.error("history projector %s: %s %s: sequence gap at %s offset %d (batch from %d)",
                              self.jurisdiction, "market" if is_market else "wallet", b.aggregate_id, tp.topic,
                              offset, b.first_seq)
                if not applied.fresh:
                    continue
                stats.events += applied.fresh
                if is_market:
                    market_id = b.aggregate_id
                    touched.add(market_id)
                    batch.aggregates[(market_topic, market_id)] = (projection.market_seqs[market_id], 0)
                    if market_id in projection.markets:
                        first = len(events) - applied.fresh
                        batch.open_events.extend((market_topic, market_id, e.seq, bytes(raw))
                                                 for e, raw in zip(events[first:], b.events[first:]))
                    batch.cleared.extend(applied.cleared)
                else:
                    batch.aggregates[(wallet_topic, b.aggregate_id)] = projection.wallets[b.aggregate_id]
                    batch.items.extend(applied.items)
            batch.positions[(tp.topic, tp.partition)] = offset + 1
        batch.closed_markets = {(market_topic, m) for m in touched if m not in projection.markets}
        await store.write_batch(batch, self.jurisdiction, self.fail_point)
        stats.batches += 1
        stats.cleared += len(batch.cleared)
        stats.items += len(batch.items)

    # ---------------------------------------------------------------- progress

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        """The journals' ends now (their high watermarks: every record below counts)."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("the projector is not tailing")
        ends = await consumer.end_offsets(self._tps)
        return {(tp.topic, tp.partition): end for tp, end in ends.items()}

    async def lag(self) -> int:
        """Journal records (and transaction markers) not yet in PostgreSQL."""
        ends = await self.end_offsets()
        return sum(max(0, end - self.done.get(key, 0)) for key, end in ends.items())

    async def wait_caught_up(self, timeout: float = 60.0) -> None:
        """Waits until everything written to both journals when called is in PostgreSQL."""
        async def wait() -> None:
            await self.ready.wait()
            ends = await self.end_offsets()
            async with self._progress:
                await self._progress.wait_for(
                    lambda: all(self.done.get(key, 0) >= end for key, end in ends.items()))
        await asyncio.wait_for(wait(), timeout)


async def _partitions(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    """Each topic's partitions, as the broker describes them (a consumer that subscribes to
    nothing does not learn them from its own metadata)."""
    async with kafka_admin(bootstrap) as admin:
        for _ in range(50):          # a topic just created may not be described yet
            described = await admin.describe_topics(topics)
            out = {d["topic"]: sorted(p["partition"] for p in d["partitions"])
                   for d in described if not d["error_code"]}
            missing = [t for t in topics if not out.get(t)]
            if not missing:
                return {t: out[t] for t in topics}
            await asyncio.sleep(0.1)
    raise RuntimeError(f"topics without partitions: {missing}")
