"""A host's journal in Kafka: group commit, fencing, snapshots and recovery.

Owns one host's events partition and snapshots partition. Every aggregate the host
holds writes through it. It never decides or applies anything: callers hand it
already-encoded events, and await the returned future before they answer anyone
(persist, then reply).

- Group commit: every append made while a flush is in flight goes into the next flush.
  A flush is one produce of a few records (each a list of whole per-aggregate
  EventBatches, sharing a record up to MAX_RECORD_BYTES) to the host's events partition; the awaited future resolves when
  the broker has acknowledged them (acks=all, idempotent producer). One flush is in
  flight at a time, and any failed flush fails the journal for good: the host must exit
  and recover (crash-only), because its in-memory state ran ahead of what Kafka holds.
  So a record in the log is a real, applied event, and there are no gaps: every record
  counts, and readers read everything (read_uncommitted). The journal never aborts.
- Fencing, with a transaction as a lease: the producer's transactional id is the host
  identity (`<prefix>.<stream>.<partition>`, and its relay's below) and every write
  happens inside a transaction that is committed and begun again every so often. A
  restarted host's producer start (InitProducerId) bumps the epoch and aborts the open
  transaction of any zombie predecessor, writing markers with the new epoch into its
  partitions; from then on the broker refuses the zombie's writes (ProducerFenced), and
  its next flush fails before it can answer anyone. What the zombie wrote before that is
  in the log, was or could have been acknowledged, and is recovered with the rest.
  Committing per flush instead (what this journal did before) costs an
  AddPartitionsToTxn, an EndTxn and the coordinator's marker writes on every flush:
  here ~1 ms and ~1 ms of CPU (broker and host together) against ~0.2 ms and ~0.2 ms.
- The lease runs as a relay of two producers (`<identity>` and `<identity>.relay`): one
  writes the flushes in its open lease while the other commits its lease and opens the
  next (an empty record adds the partition to it); every `lease_s` they swap between two
  flushes, so each lease is open for about two `lease_s`. A renewal so never holds up a
  flush: on one producer, the commit and the flush that opened the next lease
  (AddPartitionsToTxn first) stalled every flush behind them for 1.8-44.5 ms once per
  `lease_s`, which at half load was about the host's p99.9.
  A successor fences both producers at its start, before it reads anything.
- Snapshots: a flush takes snapshots of the aggregates that are due (within
  `snapshot_budget_s` of pickling), and once its events are acknowledged hands them, with a Checkpoint
  record naming the offset before the oldest events no snapshot covers, to the
  snapshot writer. The writer has a producer and a lease of its own
  (`<host identity>.snapshots`, fenced by a successor the same way), so its round trips
  never hold up the next flush: aiokafka sends one request per broker connection at a
  time, and on one producer a snapshot write delayed the next flush by a round trip
  (at half load that was the host's p99.9). A snapshot is written only after the events
  it covers are durable; snapshots and checkpoints are read committed, so a checkpoint
  counts only with the snapshots written before it in the same lease (an aborted lease
  leaves the older checkpoint: only slower to recover from). Recovery reads the
  compacted snapshots partition, then the events after the last checkpoint, so its
  time is bounded by the checkpoint interval, not by history. An aggregate comes due at
  a random time within `checkpoint_every_s` of its oldest unsnapshotted event, so a
  host's aggregates, which all start uncovered after a recovery or a quiet spell, come
  due spread out at the steady rate instead of all at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from exchange.journal.records import (
    CHECKPOINT_KEY,
    Checkpoint,
    EventBatch,
    Snapshot,
    batch_decoder,
    batch_encoder,
    checkpoint_decoder,
    snapshot_decoder,
)

log = logging.getLogger(__name__)

# A transaction that starts right after the previous one committed often finds the
# coordinator still writing that one's commit markers (well under a millisecond here):
# the broker answers CONCURRENT_TRANSACTIONS and aiokafka retries after a fixed 20 ms
# (aiokafka/producer/sender.py, BACKOFF_OVERRIDE). A journal that flushes back to back
# hit it on 22-90% of its transactions: a p99 commit of ~23 ms where a clean one takes
# ~1 ms. Retrying after 1 ms costs one more small request on localhost-class links.
TRANSACTION_RETRY_S = 0.001


def _tune_transaction_retry() -> None:
    from aiokafka.producer import sender

    if isinstance(getattr(sender, "BACKOFF_OVERRIDE", None), float):
        sender.BACKOFF_OVERRIDE = TRANSACTION_RETRY_S
    else:       # a newer aiokafka: the journal still works, at the old latency
        log.warning("aiokafka.producer.sender.BACKOFF_OVERRIDE is gone: transaction retries keep "
                    "aiokafka's own backoff")


_tune_transaction_retry()

MAX_SNAPSHOT_BYTES = 48 * 1024 * 1024   # the snapshots topic takes records up to 64 MB
MAX_RECORD_BYTES = 512 * 1024   # slices share a record up to this; one slice may exceed it
MAX_QUEUED_SNAPSHOT_BYTES = 64 * 1024 * 1024   # flushes take no snapshots while the writer is this far behind


class JournalFailed(RuntimeError):
    """The journal can no longer write (fenced, broker lost past retries): exit and recover."""


@dataclass(frozen=True)
class JournalConfig:
    bootstrap: str
    stream: str                 # "markets", "wallets", ...
    partitions: int = 8         # how many hosts of this stream can exist
    prefix: str = "exchange"
    checkpoint_every_s: float = 30.0   # an aggregate's events wait at most ~this long for a snapshot
    snapshot_budget_s: float = 0.0005  # time spent pickling snapshots per flush (at least one)
    linger_s: float = 0.0       # extra wait before a flush to gather more (0: flush as soon as idle)
    request_timeout_ms: int = 30000
    transaction_timeout_ms: int = 60000
    lease_s: float = 10.0       # the fencing transaction commits and begins again this often
    flush_timeout_s: float = 10.0  # a flush (or lease commit) not done by then fails the journal

    @property
    def events_topic(self) -> str:
        return f"{self.prefix}.{self.stream}.events"

    @property
    def snapshots_topic(self) -> str:
        return f"{self.prefix}.{self.stream}.snapshots"


@contextlib.asynccontextmanager
async def kafka_admin(bootstrap: str):
    """An admin client for the length of a block, closed however the block ends."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(config: JournalConfig) -> None:
    """Creates the stream's events (delete policy) and snapshots (compacted) topics if missing."""
    async with kafka_admin(config.bootstrap) as admin:
        existing = set(await admin.list_topics())
        wanted = []
        if config.events_topic not in existing:
            wanted.append(NewTopic(config.events_topic, config.partitions, 1,
                                   topic_configs={"retention.ms": "-1", "min.insync.replicas": "1",
                                                  "max.message.bytes": str(64 * 1024 * 1024)}))
        if config.snapshots_topic not in existing:
            wanted.append(NewTopic(config.snapshots_topic, config.partitions, 1,
                                   topic_configs={"cleanup.policy": "compact",
                                                  "max.message.bytes": str(64 * 1024 * 1024),
                                                  "min.compaction.lag.ms": "0",
                                                  "segment.ms": "600000"}))
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass


async def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """A plain topic (replication 1) for benchmarks and tests."""
    async with kafka_admin(bootstrap) as admin:
        await admin.create_topics([NewTopic(topic, partitions, 1)])


async def list_topics(bootstrap: str) -> set[str]:
    async with kafka_admin(bootstrap) as admin:
        return set(await admin.list_topics())


async def delete_topics(bootstrap: str, chosen: Callable[[str], bool]) -> list[str]:
    """Deletes every topic ``chosen`` picks (never Kafka's own ``__`` topics) and
    returns their names. For the throwaway topics of benchmarks and tests: each is a few
    partitions, and a broker that kept them paid for each one (a day's leftovers, 6,635
    partitions, held 400 MB of the broker's heap live, which its collector marked over
    and over, on the cores the hosts use)."""
    async with kafka_admin(bootstrap) as admin:
        doomed = sorted(t for t in await admin.list_topics() if not t.startswith("__") and chosen(t))
        for i in range(0, len(doomed), 100):
            await admin.delete_topics(doomed[i:i + 100])
        return doomed


@dataclass
class RecoveredAggregate:
    """What recovery found for one aggregate: its latest snapshot and the events after it."""

    aggregate_id: str
    snapshot: bytes | None = None
    snapshot_seq: int = 0
    events: list[bytes] = field(default_factory=list)   # encoded events snapshot_seq+1, +2, ...
    first_offset: int | None = None     # the events record holding events[0] (None: no events)

    @property
    def seq(self) -> int:
        return self.snapshot_seq + len(self.events)


class _Lease:
    """One producer's fencing transaction: begun before its first write after a commit,
    committed when `lease_s` has passed (by the loop that writes through it)."""

    def __init__(self, lease_s: float, wake: Callable[[], None]):
        self.lease_s = lease_s
        self.open = False
        self.due = False
        self._wake = wake
        self._timer: asyncio.TimerHandle | None = None

    async def begin(self, producer: AIOKafkaProducer) -> None:
        if not self.open:
            await producer.begin_transaction()
            self.open = True
            self._timer = asyncio.get_running_loop().call_later(self.lease_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self.due = True
        self._wake()

    async def renew_if_due(self, producer: AIOKafkaProducer) -> None:
        if self.due:
            self.due = False
            await producer.commit_transaction()
            self.open = False

    async def close(self, producer: AIOKafkaProducer, timeout_s: float, healthy: bool) -> None:
        """Commits an open lease (when nothing failed) and stops the producer, each bounded."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await _close_producer(producer, self.open and healthy, timeout_s)
        self.open = False


async def _close_producer(producer: AIOKafkaProducer, commit: bool, timeout_s: float) -> None:
    """Commits the producer's open transaction (``commit``) and stops it, each bounded."""
    if commit:
        try:
            await asyncio.wait_for(producer.commit_transaction(), timeout_s)
        except Exception:   # fenced or timed out: what it wrote is in the log all the same
            log.debug("closing the lease failed", exc_info=True)
    try:
        await asyncio.wait_for(producer.stop(), timeout_s)
    except Exception:  # a fenced producer may refuse to stop cleanly; a frozen broker may not answer
        log.debug("producer stop failed", exc_info=True)


class _Relay:
    """The events producers' leases, run as a relay (module docstring): `producer` writes
    the flushes in its open lease; every `lease_s` the flush loop calls `swap_if_due` between
    two flushes, which hands the writing to the other producer, whose lease is open with the
    partition in it, and commits the first one's lease in the background, then opens its
    next. Any failure of a renewal goes to `on_fail` (the journal fails)."""

    def __init__(self, lease_s: float, timeout_s: float, wake: Callable[[], None],
                 opener: Callable[[AIOKafkaProducer], Awaitable[None]],
                 on_fail: Callable[[BaseException], None]):
        self.lease_s = lease_s
        self.timeout_s = timeout_s
        self._wake = wake
        self._opener = opener
        self._on_fail = on_fail
        self.producers: list[AIOKafkaProducer] = []
        self.open = [False, False]
        self.active = 0
        self.due = False
        self.renewals = 0
        self.renewal: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        # the renewal's commit (ms), and the longest flush that ran beside each renewal
        self.commit_ms: collections.deque[float] = collections.deque(maxlen=1_000)
        self.flush_beside_ms: collections.deque[float] = collections.deque(maxlen=1_000)
        self._longest_beside = 0.0

    @property
    def producer(self) -> AIOKafkaProducer:
        return self.producers[self.active]

    @property
    def renewing(self) -> bool:
        return self.renewal is not None and not self.renewal.done()

    async def start(self, producers: list[AIOKafkaProducer]) -> None:
        """Opens both leases (the producers are started: each start fenced a predecessor)."""
        self.producers = producers
        for index in range(len(producers)):
            await self._open(index)
        self._timer = asyncio.get_running_loop().call_later(self.lease_s, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self.due = True
        self._wake()

    def flushed(self, ms: float) -> None:
        """A flush of `ms` ended: noted against a renewal running beside it."""
        if self.renewing:
            self._longest_beside = max(self._longest_beside, ms)

    def swap_if_due(self) -> None:
        """Between flushes: when the lease is due and the other producer's is open, swaps."""
        if not self.due or self.renewing or self._timer is not None or not self.producers:
            return
        self.due = False
        old, self.active = self.active, 1 - self.active
        self.renewal = asyncio.get_running_loop().create_task(self._renew(old))
        self._timer = asyncio.get_running_loop().call_later(self.lease_s, self._expire)

    async def _renew(self, index: int) -> None:
        started = time.perf_counter()
        self._longest_beside = 0.0
        try:
            await asyncio.wait_for(self._commit_then_open(index), self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # fenced, or the broker is gone: the host must restart
            self._on_fail(exc)
            return
        self.renewals += 1
        self.flush_beside_ms.append(self._longest_beside)
        log.debug("lease renewed in %.1f ms", (time.perf_counter() - started) * 1000)
        if self.due:        # came due again while this one renewed (a renewal over lease_s)
            self._wake()

    async def _commit_then_open(self, index: int) -> None:
        started = time.perf_counter()
        await self.producers[index].commit_transaction()
        self.open[index] = False
        self.commit_ms.append((time.perf_counter() - started) * 1000)
        await self._open(index)

    async def _open(self, index: int) -> None:
        producer = self.producers[index]
        await producer.begin_transaction()
        self.open[index] = True
        await self._opener(producer)

    async def close(self, healthy: bool) -> None:
        """Waits for a renewal in progress, then commits both leases and stops both producers."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.renewal is not None:
            await _bounded(self.renewal, self.timeout_s)
        for index, producer in enumerate(self.producers):
            await _close_producer(producer, self.open[index] and healthy, self.timeout_s)
            self.open[index] = False
        self.producers = []


class Journal:
    """One host's journal (see the module docstring)."""

    def __init__(self, config: JournalConfig, partition: int,
                 snapshot_source: Callable[[Iterable[str]], dict[str, tuple[int, bytes]]] | None = None):
        if not 0 <= partition < config.partitions:
            raise ValueError(f"partition {partition} outside 0..{config.partitions - 1}")
        self.config = config
        self.partition = partition
        self.host_id = f"{config.prefix}.{config.stream}.{partition}"
        self._snapshot_source = snapshot_source
        self._pending: dict[str, list] = {}            # aggregate id -> [first_seq, [raw events]]
        self._next_seq: dict[str, int] = {}
        self._waiter: asyncio.Future | None = None
        self._wakeup = asyncio.Event()
        self._deferred: asyncio.TimerHandle | None = None   # the wakeup of events appended within_s
        self._task: asyncio.Task | None = None
        self._failed: BaseException | None = None
        # aggregate -> (offset of its oldest events not covered by a snapshot, when it is due),
        # oldest first: offsets only grow, and an aggregate is re-added at the end
        self._uncovered: dict[str, tuple[int, float]] = {}
        self._due: list[tuple[float, str]] = []   # heap of (due at, aggregate); stale entries skipped
        self._force_snapshots = False
        self._last_events_offset = -1
        # the fencing leases of the events producers (module docstring)
        self._relay = _Relay(config.lease_s, config.flush_timeout_s, self._wakeup.set, self._open_lease,
                             lambda exc: self._fail(exc, None))
        self._stopping = False
        self._in_flight: asyncio.Future | None = None   # the waiter of the flush being written
        # the snapshot writer: (snapshots, checkpoint offset) of acknowledged flushes, in order
        self._snapshot_producer: AIOKafkaProducer | None = None
        self._snapshot_queue: list[tuple[dict[str, tuple[int, bytes]], int]] = []
        self._snapshot_queued_bytes = 0     # handed over and not yet acknowledged
        self._snapshot_wakeup = asyncio.Event()
        self._snapshot_lease = _Lease(config.lease_s, self._snapshot_wakeup.set)
        self._snapshot_task: asyncio.Task | None = None
        self._snapshots_stopping = False
        self.snapshots = 0
        self.snapshot_writes = 0      # the writer's rounds (each one or more produce requests)
        # figures for metrics
        self.flushes = 0
        self.records = 0
        self.events = 0
        self.last_flush_ms = 0.0
        self.flush_ms: collections.deque[float] = collections.deque(maxlen=10_000)   # the latest flushes
        # the lease renewals: the longest flush beside each (ms), and each commit (ms)
        self.lease_flush_ms = self._relay.flush_beside_ms
        self.lease_commit_ms = self._relay.commit_ms

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connects as this host identity, fencing any predecessor with the same identity."""
        producers = [self._new_producer(self.host_id), self._new_producer(f"{self.host_id}.relay")]
        self._snapshot_producer = self._new_producer(f"{self.host_id}.snapshots")
        for producer in (*producers, self._snapshot_producer):
            await producer.start()
        await self._relay.start(producers)
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._flush_loop(), name=f"journal {self.host_id}")
        self._snapshot_task = loop.create_task(self._snapshot_loop(), name=f"snapshots {self.host_id}")

    def _new_producer(self, transactional_id: str) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            max_batch_size=256 * 1024,
            max_request_size=64 * 1024 * 1024,
            request_timeout_ms=self.config.request_timeout_ms,
            transaction_timeout_ms=self.config.transaction_timeout_ms,
        )

    async def stop(self) -> None:
        """Flushes what is pending and writes the snapshots in hand, then disconnects."""
        bound = self.config.request_timeout_ms / 1000 + 5
        if self._task is not None:
            # the flush loop writes what is pending, hands its snapshots over, then returns
            self._stopping = True
            self._wakeup.set()
            await _bounded(self._task, bound)
            self._task = None
        if self._snapshot_task is not None:
            self._snapshots_stopping = True
            self._snapshot_wakeup.set()
            await _bounded(self._snapshot_task, bound)
            self._snapshot_task = None
        healthy = self._failed is None
        await self._relay.close(healthy)
        if self._snapshot_producer is not None:
            await self._snapshot_lease.close(self._snapshot_producer, self.config.flush_timeout_s, healthy)
            self._snapshot_producer = None

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def state(self) -> dict:
        """Where the flush loop is (diagnostics: a host's stats())."""
        relay = self._relay
        txn = getattr(relay.producer, "_txn_manager", None) if relay.producers else None
        return {"pending_aggregates": len(self._pending), "waiting": self._waiter is not None,
                "in_transaction": relay.open[relay.active], "lease_due": relay.due,
                "lease_renewing": relay.renewing, "lease_renewals": relay.renewals,
                "transaction_state": str(getattr(txn, "state", None)),
                "snapshots_queued": len(self._snapshot_queue), "snapshots_in_transaction": self._snapshot_lease.open,
                "failed": repr(self._failed)}

    # ---------------------------------------------------------------- writing

    def set_next_seq(self, aggregate_id: str, seq: int) -> None:
        """Tells the journal the next sequence number of a recovered aggregate."""
        self._next_seq[aggregate_id] = seq

    def append(self, aggregate_id: str, events: list[bytes], within_s: float = 0.0) -> asyncio.Future:
        """Queues an aggregate's encoded events (each one msgpack value) for the next group commit.

        Returns a future that resolves when they are committed in Kafka, or raises
        JournalFailed. Events must be appended in the order they were applied.

        ``within_s``: the events may wait up to this long for a flush that something else
        asks for, rather than starting one now (0: flush as soon as the journal is idle).
        For work nobody is waiting on: it rides along with the next flush, and is in the
        log before anything appended after it, so nothing decided on its effects is
        answered before it is durable.
        """
        if self._failed is not None:
            raise JournalFailed(f"journal {self.host_id} failed: {self._failed!r}")
        if self._stopping:
            raise JournalFailed(f"journal {self.host_id} is stopping")
        raws = [msgspec.Raw(e) for e in events]
        entry = self._pending.get(aggregate_id)
        if entry is None:
            first = self._next_seq.get(aggregate_id, 1)
            self._pending[aggregate_id] = [first, raws]
            self._next_seq[aggregate_id] = first + len(raws)
        else:       # pending since this flush began: its next seq is noted
            entry[1] += raws
            self._next_seq[aggregate_id] += len(raws)
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        if within_s <= 0:
            self._wakeup.set()
        elif self._deferred is None and not self._wakeup.is_set():
            self._deferred = asyncio.get_running_loop().call_later(within_s, self._deferred_due)
        return waiter

    def _deferred_due(self) -> None:
        self._deferred = None
        self._wakeup.set()

    def next_seq(self, aggregate_id: str) -> int:
        return self._next_seq.get(aggregate_id, 1)

    def request_checkpoint(self) -> None:
        """Makes every aggregate's snapshot due at the next flush (tests, shutdown)."""
        self._force_snapshots = True
        self._wakeup.set()

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if self.config.linger_s:
                await asyncio.sleep(self.config.linger_s)
            watchdog = loop.call_later(self.config.flush_timeout_s, self._stuck)
            if self._deferred is not None:     # this flush takes the deferred events too
                self._deferred.cancel()
                self._deferred = None
            if self._waiter is not None:
                batch, self._pending = self._pending, {}
                waiter, self._waiter = self._waiter, None
                self._in_flight = waiter
                started = time.perf_counter()
                try:
                    snapshots = self._take_due_snapshots()
                    placed = await self._write_events(batch)
                except asyncio.CancelledError:
                    waiter.cancel()
                    raise
                except Exception as exc:  # fenced, or the broker is gone past the timeouts
                    self._fail(exc, waiter)
                    return
                self.last_flush_ms = (time.perf_counter() - started) * 1000
                self.flush_ms.append(self.last_flush_ms)
                self._relay.flushed(self.last_flush_ms)
                waiter.set_result(None)     # durable: answer now; snapshots are not on the reply path
                self._hand_over_snapshots(placed, snapshots)
            self._relay.swap_if_due()       # the renewal runs beside the next flushes
            watchdog.cancel()
            if self._failed is not None:    # a renewal failed: nothing more is written
                return
            self._in_flight = None
            if self._stopping and self._waiter is None:
                return

    async def _snapshot_loop(self) -> None:
        """The snapshot writer: writes what acknowledged flushes handed over, in order, on
        its own producer, and keeps its own lease."""
        loop = asyncio.get_running_loop()
        while True:
            await self._snapshot_wakeup.wait()
            self._snapshot_wakeup.clear()
            watchdog = loop.call_later(self.config.flush_timeout_s, self._stuck, True)
            queued, self._snapshot_queue = self._snapshot_queue, []
            try:
                if queued:
                    await self._write_snapshots(queued)
                await self._snapshot_lease.renew_if_due(self._snapshot_producer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:   # fenced, or the broker is gone: the host must restart
                self._fail(exc, None)
                return
            finally:
                watchdog.cancel()
            if self._snapshots_stopping and not self._snapshot_queue:
                return

    def _stuck(self, snapshots: bool = False) -> None:
        """A flush, or a snapshot write or its lease's commit (``snapshots``), outlived flush_timeout_s
        (an events lease's renewal has its own bound, in _Relay):
        aiokafka can wait on a broker that came back without resending (seen after a broker
        SIGKILL). Crash-only: fail now, so the host exits and recovers with a new producer
        instead of hanging."""
        if self._failed is None:
            what = "a snapshot write" if snapshots else "a flush"
            self._fail(TimeoutError(f"{what} took over {self.config.flush_timeout_s:.0f} s"),
                       None if snapshots else self._in_flight)
            task = self._snapshot_task if snapshots else self._task
            if task is not None:
                task.cancel()

    def _fail(self, exc: BaseException, waiter: asyncio.Future | None) -> None:
        self._failed = exc
        log.error("journal %s failed, the host must restart: %r", self.host_id, exc)
        failure = JournalFailed(f"journal {self.host_id} failed: {exc!r}")
        for w in (waiter, self._waiter):
            if w is not None and not w.done():
                w.set_exception(failure)
                w.exception()   # the future may have no awaiter left; mark it retrieved
        self._waiter = None

    def _take_due_snapshots(self) -> dict[str, tuple[int, bytes]] | None:
        """Snapshots the aggregates that are due, soonest due first, within a small time
        budget per flush (all of them after request_checkpoint).

        Spreading snapshots over flushes keeps any one flush short (a pause for a full
        checkpoint of every market was the tail of the latency). Called synchronously as
        the batch is taken, so each snapshot holds exactly the events up to this batch's
        (hosts apply before they append, with no await between). None once stopping (a
        host may have applied a command whose append was then refused) or while the
        writer is behind by more than MAX_QUEUED_SNAPSHOT_BYTES (they stay due).
        """
        if (self._snapshot_source is None or not self._uncovered or self._stopping
                or self._snapshot_queued_bytes > MAX_QUEUED_SNAPSHOT_BYTES):
            return None
        now = time.monotonic()
        taken: dict[str, tuple[int, bytes]] = {}
        again: list[str] = []     # asked for but not taken: due again, after this flush
        if self._force_snapshots:
            self._force_snapshots = False
            for aggregate_id in list(self._uncovered):
                self._snapshot_into(taken, again, aggregate_id)
        else:
            due, uncovered = self._due, self._uncovered
            deadline = time.perf_counter() + self.config.snapshot_budget_s
            tried = False
            while due and due[0][0] <= now and not (tried and time.perf_counter() > deadline):
                at, aggregate_id = heapq.heappop(due)
                entry = uncovered.get(aggregate_id)
                if entry is not None and entry[1] == at:    # else snapshotted since, or due again later
                    self._snapshot_into(taken, again, aggregate_id)
                    tried = True
        for aggregate_id in again:
            if aggregate_id in self._uncovered:
                self._mark_uncovered(aggregate_id, self._uncovered[aggregate_id][0], now)
        return taken or None

    def _snapshot_into(self, taken: dict[str, tuple[int, bytes]], again: list[str], aggregate_id: str) -> None:
        snapshots = self._snapshot_source((aggregate_id,))
        state = snapshots.get(aggregate_id)
        if state is not None and len(state[1]) <= MAX_SNAPSHOT_BYTES:
            taken[aggregate_id] = state
            return
        if state is not None:   # stays uncovered: recovery replays its events instead (slower, still exact)
            log.warning("%s: snapshot of %s is %d bytes, over %d: not written", self.host_id,
                        aggregate_id, len(state[1]), MAX_SNAPSHOT_BYTES)
        again.append(aggregate_id)

    def _mark_uncovered(self, aggregate_id: str, offset: int, now: float) -> None:
        """Notes an aggregate's oldest events no snapshot covers, due at a random time within
        the checkpoint interval (an aggregate already noted keeps its place in the order)."""
        at = now + self.config.checkpoint_every_s * random.random()
        self._uncovered[aggregate_id] = (offset, at)
        heapq.heappush(self._due, (at, aggregate_id))

    async def _write_events(self, batch: dict[str, list]) -> list[tuple[int, str]]:
        """Produces one flush's events; returns (offset, aggregate) of each slice written."""
        producer = self._relay.producer     # its lease is open, the partition in it
        cfg = self.config
        sends = []
        placed: list[tuple[int, str]] = []       # (index in sends, aggregate) of each slice
        n_events = 0
        key = self.host_id.encode()
        record: list[EventBatch] = []
        in_record = 0
        for aggregate_id, (first_seq, events) in batch.items():
            # An aggregate's slice (every command it handled since the last flush) goes whole
            # into one record, so a flush that fails part way leaves each command's events in
            # the log entirely or not at all. Slices share records up to MAX_RECORD_BYTES; a
            # slice larger than that is a record of its own (the topic takes up to 64 MB).
            size = len(aggregate_id) + 16
            for e in events:
                size += len(e) + 1
            if record and in_record + size > MAX_RECORD_BYTES:
                sends.append(await producer.send(cfg.events_topic, batch_encoder.encode(record),
                                                 key=key, partition=self.partition))
                record, in_record = [], 0
            record.append(EventBatch(aggregate_id, first_seq, events))
            placed.append((len(sends), aggregate_id))
            in_record += size
            n_events += len(events)
        if record:
            sends.append(await producer.send(cfg.events_topic, batch_encoder.encode(record),
                                             key=key, partition=self.partition))
        offsets = [m.offset for m in await asyncio.gather(*sends)] if sends else []
        if any(o < 0 for o in offsets):   # aiokafka answers a DuplicateSequenceNumber with -1
            raise RuntimeError(f"an events record came back without its offset: {offsets}")
        if offsets:
            self._last_events_offset = offsets[-1]
        self.flushes += 1
        self.records += len(sends)
        self.events += n_events
        return [(offsets[index], aggregate_id) for index, aggregate_id in placed]

    async def _open_lease(self, producer: AIOKafkaProducer) -> None:
        """Adds the events partition to the producer's new lease with an empty record (no
        events: readers find no batches in it), so no flush has to."""
        sent = await producer.send(self.config.events_topic, batch_encoder.encode([]),
                                   key=self.host_id.encode(), partition=self.partition)
        await sent

    def _hand_over_snapshots(self, placed: list[tuple[int, str]],
                             snapshots: dict[str, tuple[int, bytes]] | None) -> None:
        """After a flush is acknowledged: notes what it left uncovered, and queues the
        snapshots taken with it, and the checkpoint they allow, for the snapshot writer."""
        uncovered = self._uncovered
        if snapshots:
            for aggregate_id in snapshots:
                uncovered.pop(aggregate_id, None)
        now = time.monotonic()
        for offset, aggregate_id in placed:
            if aggregate_id not in uncovered and not (snapshots and aggregate_id in snapshots):
                self._mark_uncovered(aggregate_id, offset, now)
        if snapshots:
            oldest = next(iter(uncovered.values()))[0] - 1 if uncovered else self._last_events_offset
            self._snapshot_queue.append((snapshots, oldest))
            self._snapshot_queued_bytes += sum(len(state) for _, state in snapshots.values())
            self._snapshot_wakeup.set()

    async def _write_snapshots(self, queued: list[tuple[dict[str, tuple[int, bytes]], int]]) -> None:
        """Writes the snapshots of one or more acknowledged flushes (the latest of each
        aggregate), then the latest checkpoint right behind them, in the writer's lease."""
        producer = self._snapshot_producer
        cfg = self.config
        await self._snapshot_lease.begin(producer)
        latest: dict[str, tuple[int, bytes]] = {}
        for snapshots, _ in queued:
            latest.update(snapshots)
        written = []
        for aggregate_id, (seq, state) in latest.items():
            value = batch_encoder.encode(Snapshot(aggregate_id, seq, msgspec.Raw(state)))
            written.append(await producer.send(cfg.snapshots_topic, value, key=aggregate_id.encode(),
                                               partition=self.partition))
        # the checkpoint goes right behind its snapshots, without waiting for them: both sit in
        # the writer's lease and recovery reads the snapshots committed, so a checkpoint is
        # never seen without the snapshots before it
        marker = batch_encoder.encode(Checkpoint(queued[-1][1], int(time.time() * 1000)))
        written.append(await producer.send(cfg.snapshots_topic, marker, key=CHECKPOINT_KEY,
                                           partition=self.partition))
        await asyncio.gather(*written)
        self.snapshots += sum(len(snapshots) for snapshots, _ in queued)
        self.snapshot_writes += 1
        self._snapshot_queued_bytes -= sum(len(state) for snapshots, _ in queued for _, state in snapshots.values())

    # ---------------------------------------------------------------- recovery

    async def recover(self) -> dict[str, RecoveredAggregate]:
        """Reads this host's latest snapshots and the committed events after its last checkpoint.

        Raises JournalFailed on a sequence gap (crash-only: a gap means lost data).
        Call after start(): start() fences the predecessor, so what is read is final.
        """
        aggregates = await read_partition(self.config, self.partition)
        for agg in aggregates.values():
            self._next_seq[agg.aggregate_id] = agg.seq + 1
        # what recovery replayed is covered by no snapshot: it holds the next checkpoint back
        # until each such aggregate is snapshotted (else a checkpoint past those events would
        # lose them for the recovery after)
        now = time.monotonic()
        replayed = sorted((agg.first_offset, agg.aggregate_id) for agg in aggregates.values()
                          if agg.first_offset is not None)
        self._uncovered, self._due = {}, []
        for offset, aggregate_id in replayed:
            self._mark_uncovered(aggregate_id, offset, now)
        return aggregates

    async def _read(self, topic: str, offset: int):
        async for item in read_records(self.config, topic, self.partition, offset):
            yield item


async def _bounded(task: asyncio.Task, timeout_s: float) -> None:
    """Waits for a loop to finish, at most timeout_s; whatever it ended with was logged."""
    try:
        await asyncio.wait_for(task, timeout_s)
    except (asyncio.CancelledError, asyncio.TimeoutError, Exception):
        pass


async def read_partition(cfg: JournalConfig, partition: int) -> dict[str, RecoveredAggregate]:
    """Read-only recovery of one host partition (snapshots + events after the checkpoint).

    Fences nobody: tests and tools use it to compare a host's memory with its log.
    """
    aggregates: dict[str, RecoveredAggregate] = {}
    start_offset = 0
    # Snapshots and checkpoints: committed ones only. A lease aborted by a successor (or
    # its timeout) may hold some, and the log cleaner discards aborted transactional
    # batches from the compacted topic: a recovery that used them could later find them
    # gone under a checkpoint that relied on them. Events are never compacted: all count.
    async for key, value, _ in read_records(cfg, cfg.snapshots_topic, partition, 0, committed=True):
        if key == CHECKPOINT_KEY:
            start_offset = checkpoint_decoder.decode(value).events_offset + 1
        else:
            snap = snapshot_decoder.decode(value)
            aggregates[snap.aggregate_id] = RecoveredAggregate(
                snap.aggregate_id, bytes(snap.state), snap.seq)
    async for _, value, offset in read_records(cfg, cfg.events_topic, partition, start_offset):
        for batch in batch_decoder.decode(value):
            agg = aggregates.get(batch.aggregate_id)
            if agg is None:
                agg = aggregates[batch.aggregate_id] = RecoveredAggregate(batch.aggregate_id)
            expected = agg.seq + 1
            skip = expected - batch.first_seq
            if skip < 0:
                raise JournalFailed(f"{batch.aggregate_id}: sequence gap at offset {offset}: "
                                    f"expected event {expected}, record starts at {batch.first_seq}")
            if skip < len(batch.events):
                if agg.first_offset is None:
                    agg.first_offset = offset
                agg.events.extend(bytes(e) for e in batch.events[skip:])
    return aggregates


async def read_records(cfg: JournalConfig, topic: str, partition: int, offset: int, committed: bool = False):
    """Yields (key, value, offset) of the records from offset to the current end: every record
    (events: see the module docstring), or with ``committed`` only those of committed
    transactions, up to the last stable offset (snapshots)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(bootstrap_servers=cfg.bootstrap, enable_auto_commit=False,
                                isolation_level="read_committed" if committed else "read_uncommitted",
                                group_id=None,
                                max_partition_fetch_bytes=64 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if end <= offset:
            return
        consumer.seek(tp, offset)
        while await consumer.position(tp) < end:
            batches = await consumer.getmany(tp, timeout_ms=1000, max_records=10000)
            for record in batches.get(tp, ()):
                if record.offset >= end:
                    break
                yield record.key, record.value, record.offset
    finally:
        await consumer.stop()
