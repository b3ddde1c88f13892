"""`python -m exchange.bench flushcost`: what one journal flush costs, three ways.

One aiokafka producer writes one 100-byte record at a time (acks=all, idempotent) and
awaits it before the next, as a host's journal does when it flushes back to back:
- `txn_per_flush`: a transaction begun and committed around every record (the
  journal before 2026-12-01: AddPartitionsToTxn, produce, EndTxn and the
  coordinator's marker writes per flush; CONCURRENT_TRANSACTIONS retried after 1 ms);
- `lease`: every record inside one transaction held open (the journal now);
- `plain` (the ceiling): no transactional id at all: the same produce, unfenced.
For each: flushes/s, latency p50/p99, and CPU per flush in the broker (from its
/proc stat) and in this process. Prints one JSON line. Needs the local stack.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

from exchange.stats import percentile

ROOT = Path(__file__).resolve().parents[2]
MODES = ("txn_per_flush", "lease", "plain")


def add_arguments(p) -> None:
    p.add_argument("--bootstrap", default=os.environ.get("EXCHANGE_KAFKA_BOOTSTRAP", "127.0.0.1:29092"))
    p.add_argument("--seconds", type=float, default=3.0, help="duration of each mode")
    p.add_argument("--broker-pid", type=int, default=None,
                   help="the Kafka broker's pid (default: state/kafka/pid of the local stack)")


def run(args) -> dict:
    return asyncio.run(_run(args))


def _broker_pid(given: int | None) -> int | None:
    if given:
        return given
    state = Path(os.environ.get("EXCHANGE_STATE_DIR", ROOT / "state"))
    try:
        return int((state / "kafka" / "pid").read_text().split()[0])
    except (OSError, ValueError):
        return None


def _cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (this one when pid is None)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _mode(bootstrap: str, topic: str, mode: str, seconds: float, broker: int | None) -> dict:
    from aiokafka import AIOKafkaProducer

    import exchange.journal.kafka_journal  # noqa: F401  (sets the 1 ms CONCURRENT_TRANSACTIONS retry)

    kwargs = dict(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    if mode != "plain":
        kwargs["transactional_id"] = f"{topic}.{mode}"
    producer = AIOKafkaProducer(**kwargs)
    await producer.start()
    payload = os.urandom(100)
    latencies: list[float] = []
    try:
        if mode == "lease":
            await producer.begin_transaction()
        broker0, self0 = _cpu_s(broker) if broker else 0.0, _cpu_s(None)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            if mode == "txn_per_flush":
                await producer.begin_transaction()
            await (await producer.send(topic, payload, partition=0))
            if mode == "txn_per_flush":
                await producer.commit_transaction()
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - start
        broker_s = _cpu_s(broker) - broker0 if broker else None
        self_s = _cpu_s(None) - self0
        if mode == "lease":
            await producer.commit_transaction()
    finally:
        await producer.stop()
    n = len(latencies)
    latencies.sort()
    return {f"{mode}_per_s": round(n / elapsed), f"{mode}_p50_ms": percentile(latencies, 0.5),
            f"{mode}_p99_ms": percentile(latencies, 0.99),
            f"{mode}_broker_cpu_us": round(broker_s / n * 1e6) if broker_s is not None else None,
            f"{mode}_client_cpu_us": round(self_s / n * 1e6)}


async def _run(args) -> dict:
    from exchange.journal import create_topic, delete_topics

    topic = f"bench-flushcost-{uuid.uuid4().hex[:8]}"
    await create_topic(args.bootstrap, topic)
    broker = _broker_pid(args.broker_pid)
    figures: dict = {"bench": "flushcost", "seconds": args.seconds, "record_bytes": 100,
                     "broker_pid_found": broker is not None}
    try:
        for mode in MODES:
            figures.update(await _mode(args.bootstrap, topic, mode, args.seconds, broker))
    finally:
        await delete_topics(args.bootstrap, lambda t: t == topic)
    figures["lease_to_plain"] = round(figures["lease_per_s"] / max(figures["plain_per_s"], 1), 3)
    figures["txn_per_flush_to_plain"] = round(figures["txn_per_flush_per_s"] / max(figures["plain_per_s"], 1), 3)
    return figures
