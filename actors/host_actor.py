"""What every host Ray actor shares: lazy recovery, crash-only exits, metrics, crash points.

Owns the Ray side of a host: the actor is created once per (kind, jurisdiction, index)
with a readable name (market-host/us-nj/0) and max_restarts=-1; Ray restarts it after a
crash, and its first call recovers it from Kafka before doing anything else.

Crash points are named places in the bet flow where a test can make the host die
(os._exit, as a kill -9 would) to prove that nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time

from exchange.journal import JournalConfig, JournalFailed
from exchange.stats import percentile

from actors.channel import ChannelServer
from actors.host_core import AggregateKind, HostCore
from actors.priority import realtime, renice, thread_niceness, thread_realtime

log = logging.getLogger(__name__)

GC_SWEEP_EVERY_S = 3600.0   # a full collection of the host's heap, frozen objects included
# Ray starts its workers at nice 15, so that they yield to the raylet and GCS. A host is the
# latency path of every bet: on a busy node it waited behind the broker and everything else
# at nice 0. It asks for HOST_NICENESS when it may (root, or CAP_SYS_NICE in a container)
# and keeps Ray's otherwise; the local stack starts the broker at the same niceness
# (cluster/stack.py). Where the kernel groups tasks by session (sched_autogroup_enabled=1,
# as on the benchmark VM), a niceness orders a thread only within its session: the hosts
# against Ray's other processes and a driver started from the same shell, not against the
# broker, which the stack starts in a session of its own. Measured with `python -m
# exchange.bench actors` (docs/benchmarks.md): at 0 rather than 15, 20,422-28,830 one-order
# orders/s against 17,478-24,736; at -10 with the broker, a host p99.9 at half load of
# 19.7-38.2 ms against 43.4-192.4 ms at 0 (three runs each, alternated, on a slow hour of
# the machine). EXCHANGE_HOST_NICENESS overrides.
HOST_NICENESS = int(os.environ.get("EXCHANGE_HOST_NICENESS", "-10"))
# Above the niceness, a host asks for the lowest real-time priority (SCHED_FIFO 1; 0 asks
# for none): actors/priority.py. Traced on the benchmark VM (sched_switch and
# sched_wakeup through a half-load phase, docs/benchmarks.md), the fair scheduler stacked
# both host threads and the broker's on one CPU, preempting one another, while the other
# CPU idled, and a woken host waited behind kernel threads (kdamond, 3-5 ms at a time).
# EXCHANGE_HOST_REALTIME overrides; the deployer's value is passed on (actors/deploy.py).
HOST_REALTIME = int(os.environ.get("EXCHANGE_HOST_REALTIME", "1"))
# Young collections run every this many net allocations of tracked objects (see below).
GC_YOUNG_THRESHOLD = 2_000


def _in_an_actor() -> bool:
    """True in a Ray actor's own process (asking without a Ray session would start one)."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


class HostActor:
    """Base of MarketHost and WalletHost (not a Ray actor by itself)."""

    KIND_NAME = "host"

    def __init__(self, kind: AggregateKind, jurisdiction: str, index: int, bootstrap: str,
                 partitions: int = 8, prefix: str = "exchange", linger_ms: float = 0.0):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.jurisdiction = jurisdiction
        self.index = index
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.partitions = partitions
        config = JournalConfig(bootstrap=bootstrap, stream=f"{kind.stream}.{jurisdiction}",
                               partitions=partitions, prefix=prefix,
                               linger_s=linger_ms / 1000)
        self.core = HostCore(kind, config, index)
        self.name = f"{self.KIND_NAME}-host/{jurisdiction}/{index}"
        self._started: asyncio.Future | None = None
        self._crash_points: set[str] = set()
        self._metrics = None
        self._latencies: list[tuple[float, int]] = []
        self._gc_started: float | None = None
        self.max_gc_pause_ms = 0.0
        self.max_loop_lag_ms = 0.0
        # over the timer interval of the worst lag (its 10 ms plus the lag): how long the
        # loop's thread ran, and how long it waited for a core
        self.max_loop_lag_split: tuple[float, float] | None = None
        self._freeze_survivors = False
        # objects frozen, as counted after recovery and after each sweep: counting walks
        # every frozen object (70-100 ms in the benchmark, a stall of the event loop), so
        # stats() reports this count rather than taking it
        self._frozen = 0
        self._channel: ChannelServer | None = None
        gc.callbacks.append(self._watch_gc)
        if _in_an_actor():
            self.niceness = renice(HOST_NICENESS, "host")
            self.realtime = realtime(HOST_REALTIME, "host")
        else:   # a host built in a test's or a tool's process leaves that process's scheduling be
            self.niceness, self.realtime = os.getpriority(os.PRIO_PROCESS, 0), 0

    # ---------------------------------------------------------------- lifecycle

    async def ready(self) -> dict:
        """Recovers on first use (retrying while Kafka is unreachable); returns recovery figures."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._started)
        return {"name": self.name, "aggregates": len(self.core.states),
                "recovered_events": self.core.recovered_events, "recovery_s": self.core.recovery_s,
                "pid": os.getpid()}

    async def _start(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.core.start()
                break
            except Exception as exc:   # the broker may be down: wait for it, never serve stale
                log.warning("%s: recovery failed (%r); retrying in %.1fs", self.name, exc, delay)
                try:
                    await self.core.journal.stop()
                except Exception:
                    pass
                self.core = HostCore(self.core.kind, self.core.config, self.core.partition)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._init_metrics()
        # The collector policy (see gc_sweep): recovered state is frozen, and from now on so
        # is whatever survives a collection.
        gc.collect()
        gc.freeze()
        self._frozen = gc.get_freeze_count()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
        self._freeze_survivors = True
        await self.after_recovery()
        asyncio.get_running_loop().create_task(self._watch_journal())
        asyncio.get_running_loop().create_task(self._sweep_forever())

    async def after_recovery(self) -> None:
        """Reconciliation a host kind runs once it is recovered (overridden)."""

    # ---------------------------------------------------------------- the direct channel

    CHANNEL_METHODS: tuple[str, ...] = ("execute",)   # each served by `<name>_packed`

    async def endpoint(self) -> tuple[str, int, bytes]:
        """Where to call this host's batched methods directly (actors/channel.py): its
        node's address, a port of this process and this incarnation's secret."""
        if self._channel is None:
            server = ChannelServer({m: getattr(self, f"{m}_packed") for m in self.CHANNEL_METHODS},
                                   _node_address())
            await server.start()
            self._channel = server
            log.info("%s: direct channel on %s:%d", self.name, server.address, server.port)
        return self._channel.endpoint

    # ---------------------------------------------------------------- the collector
    #
    # A host's heap is mostly long-lived state (books, orders, wallets) that reference
    # counting frees when it goes; the cyclic collector finds next to nothing in it (a full
    # sweep after the actors benchmark's phases collected 0 objects). Yet CPython's older
    # generations are scanned whole: with orders resting at thousands per second, a gen-1
    # or gen-2 pass took 30-55 ms, the tail of the host latency. So whatever survives a
    # collection is frozen at once (gc.freeze: O(1), moves it out of every generation),
    # and each collection scans only what was allocated since the last one. What that
    # costs: cycles that die after surviving a collection are not freed until the next
    # sweep, which unfreezes and collects everything once every GC_SWEEP_EVERY_S (a pause
    # proportional to the heap, 60-420 ms in the benchmark, logged with its figures).
    # Young collections run every GC_YOUNG_THRESHOLD (2,000) net allocations (the code
    # began at 50,000, then 10,000): the smaller, the less each scans. At 10,000 a young
    # collection of the market host still took up to 4.4-6.6 ms of CPU at a quarter of
    # full load (its thread time, measured in the gc callback during `python -m
    # exchange.bench actors`); at 2,000, 0.6-1.4 ms.

    def _watch_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            pause_ms = (time.perf_counter() - self._gc_started) * 1000
            if pause_ms > self.max_gc_pause_ms:
                self.max_gc_pause_ms = pause_ms
            if pause_ms > 50:
                log.warning("%s: gc generation %d paused %.0f ms (%d collected)", self.name,
                            info.get("generation", -1), pause_ms, info.get("collected", 0))
            if self._freeze_survivors:
                gc.freeze()

    def gc_sweep(self) -> dict:
        """One full collection of everything, the frozen included; then freezes again."""
        frozen = gc.get_freeze_count()
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self._frozen = gc.get_freeze_count()
        figures = {"collected": collected, "ms": round((time.perf_counter() - started) * 1000, 1),
                   "frozen_before": frozen, "frozen_after": self._frozen}
        log.info("%s: gc sweep %s", self.name, figures)
        return figures

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(GC_SWEEP_EVERY_S)
            self.gc_sweep()

    async def _watch_loop_lag(self) -> None:
        """Records how late the event loop runs a 10 ms timer: stalls show here. For the
        worst, the thread's scheduler figures say whether it was busy (our code, the
        collector) or waited for a core (the machine)."""
        sched = _ThreadSchedstat()
        while True:
            t0 = time.perf_counter()
            before = sched.read()
            await asyncio.sleep(0.01)
            lag_ms = (time.perf_counter() - t0) * 1000 - 10
            if lag_ms > self.max_loop_lag_ms:
                self.max_loop_lag_ms = lag_ms
                after = sched.read()
                self.max_loop_lag_split = (None if before is None or after is None else
                                           ((after[0] - before[0]) / 1e6, (after[1] - before[1]) / 1e6))
            if lag_ms > 100:
                log.warning("%s: event loop stalled %.0f ms", self.name, lag_ms)

    async def _watch_journal(self) -> None:
        asyncio.get_running_loop().create_task(self._watch_loop_lag())
        while True:
            await asyncio.sleep(0.5)
            if self.core.journal.failed is not None:
                self.crash(f"journal failed: {self.core.journal.failed!r}")
            if self._metrics is not None:
                self._metrics["flush_ms"].set(self.core.journal.last_flush_ms)
                self._metrics["aggregates"].set(len(self.core.states))

    def crash(self, why: str) -> None:
        """Crash-only: exit the process now; Ray restarts the actor, which replays Kafka."""
        log.error("%s exits: %s", self.name, why)
        logging.shutdown()
        os._exit(1)

    # ---------------------------------------------------------------- crash points

    def arm_crash(self, point: str) -> None:
        """Test hook: die the next time the flow reaches this named point."""
        self._crash_points.add(point)

    def maybe_crash(self, point: str) -> None:
        if point in self._crash_points:
            self.crash(f"crash point {point}")

    # ---------------------------------------------------------------- metrics

    def _init_metrics(self) -> None:
        try:
            from ray.util import metrics
        except ImportError:   # driven in-process without Ray
            return
        tags = {"host": self.name}
        self._metrics = {
            "commands": metrics.Counter("exchange_host_commands", "commands handled",
                                        tag_keys=("host",)),
            "latency": metrics.Histogram("exchange_host_batch_ms",
                                         "command arrival to acknowledged reply (ms)",
                                         boundaries=[0.5, 1, 2, 5, 10, 20, 50, 100, 250, 1000],
                                         tag_keys=("host",)),
            "flush_ms": metrics.Gauge("exchange_journal_flush_ms", "last group commit duration (ms)",
                                      tag_keys=("host",)),
            "aggregates": metrics.Gauge("exchange_host_aggregates", "aggregates held",
                                        tag_keys=("host",)),
        }
        for m in self._metrics.values():
            m.set_default_tags(tags)

    def record(self, commands: int, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        if len(self._latencies) < 1_000_000:
            self._latencies.append((elapsed_ms, commands))
        if self._metrics is not None:
            self._metrics["commands"].inc(commands)
            self._metrics["latency"].observe(elapsed_ms)

    def latency_sample(self, reset: bool = True) -> list[tuple[float, int]]:
        """(ms from a batch's arrival to its acknowledged reply, commands in it) since the last
        reset; a reset also restarts what stats() summarises of the same span: the journal's
        flush sample and the worst GC pause and event-loop lag."""
        sample = self._latencies
        if reset:
            self._latencies = []
            self.core.journal.flush_ms.clear()
            self.core.journal.lease_flush_ms.clear()
            self.core.journal.lease_commit_ms.clear()
            self.max_gc_pause_ms = 0.0
            self.max_loop_lag_ms = 0.0
            self.max_loop_lag_split = None
        return sample

    async def run_batch(self, commands: list, within_s: float = 0.0) -> list:
        """Handles a batch through the core; a failed journal crashes the host. ``within_s``:
        its events may wait that long to ride along with another flush (Journal.append)."""
        try:
            return await self.core.execute(commands, within_s)
        except JournalFailed as exc:
            asyncio.get_running_loop().call_soon(self.crash, f"journal failed: {exc}")
            raise

    def stats(self) -> dict:
        """Counters and figures for dashboards and benchmarks; cheap (it runs on the event loop)."""
        journal = self.core.journal
        generations = gc.get_stats()
        return {"name": self.name, "aggregates": len(self.core.states), "commands": self.core.commands,
                "flushes": journal.flushes, "records": journal.records, "events": journal.events,
                "last_flush_ms": journal.last_flush_ms, "snapshots": journal.snapshots,
                "snapshot_writes": journal.snapshot_writes,
                **_flush_percentiles(journal.flush_ms),
                "lease_flush_ms": [round(x, 2) for x in journal.lease_flush_ms],
                "lease_commit_ms": [round(x, 2) for x in journal.lease_commit_ms],
                "max_gc_pause_ms": round(self.max_gc_pause_ms, 1),
                "max_loop_lag_ms": round(self.max_loop_lag_ms, 1),
                **_lag_split(self.max_loop_lag_split),
                "gc_collections": [g["collections"] for g in generations],
                "gc_collected": [g["collected"] for g in generations],
                "gc_frozen": self._frozen, "journal": journal.state(), "niceness": self.niceness,
                "thread_niceness": sorted(set(thread_niceness())), "realtime": self.realtime,
                "thread_realtime": sorted(set(thread_realtime())),
                "channel_port": self._channel.port if self._channel is not None else None,
                "cpu_s": time.process_time(), "pid": os.getpid()}


class _ThreadSchedstat:
    """The calling thread's time on a CPU and waiting for one, in ns since it started
    (/proc/thread-self/schedstat, opened once and re-read: a few us); None without it."""

    def __init__(self):
        try:
            self._fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
        except OSError:
            self._fd = None

    def read(self) -> tuple[int, int] | None:
        if self._fd is None:
            return None
        try:
            ran, waited, _ = os.pread(self._fd, 128, 0).split()
            return int(ran), int(waited)
        except (OSError, ValueError):
            return None


def _lag_split(split: tuple[float, float] | None) -> dict:
    if split is None:
        return {"max_loop_lag_ran_ms": None, "max_loop_lag_waited_ms": None}
    return {"max_loop_lag_ran_ms": round(split[0], 1), "max_loop_lag_waited_ms": round(split[1], 1)}


def _node_address() -> str:
    """This node's address as Ray knows it (loopback when driven without Ray)."""
    try:
        import ray
        return ray.util.get_node_ip_address()
    except Exception:
        return "127.0.0.1"


def _flush_percentiles(flush_ms) -> dict:
    """p50/p99/max of the journal's latest flushes (start to acknowledged), in ms."""
    xs = sorted(flush_ms)
    if not xs:
        return {}
    return {"flush_p50_ms": percentile(xs, 0.5), "flush_p99_ms": percentile(xs, 0.99),
            "flush_max_ms": percentile(xs, 1.0), "flush_slowest_ms": [round(x, 2) for x in xs[-5:]]}
