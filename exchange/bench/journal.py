"""`python -m exchange.bench journal`: journal appends/s against raw aiokafka produce.

Both halves run in one process, one after the other, against the same broker:
- ceiling: a bare idempotent aiokafka producer (acks=all) sending small records as
  fast as it can, awaiting every delivery: `raw_produce_per_s` records/s;
- journal: many concurrent writers, each appending one small event to one of many
  aggregates and awaiting its group commit (a Kafka transaction) before its next:
  `journal_per_s` events/s acknowledged, with append-to-ack latency percentiles.
Prints one JSON line. Needs the local stack (cluster/stack.py up).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid

import msgspec

from exchange.stats import percentile

EVENT_BYTES = 100


def add_arguments(p) -> None:
    p.add_argument("--bootstrap", default=os.environ.get("EXCHANGE_KAFKA_BOOTSTRAP", "127.0.0.1:29092"))
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each half")
    p.add_argument("--writers", type=int, default=2000, help="concurrent journal writers")
    p.add_argument("--aggregates", type=int, default=1000, help="aggregates the writers spread over")


def run(args) -> dict:
    return asyncio.run(_run(args))


async def raw_produce(bootstrap: str, topic: str, seconds: float) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                                linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    payload = os.urandom(EVENT_BYTES)
    sent = 0
    try:
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            futures = [await producer.send(topic, payload, key=b"k%d" % (i % 1000), partition=0)
                       for i in range(5000)]
            await asyncio.gather(*futures)
            sent += len(futures)
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    return sent / elapsed


async def journal_appends(bootstrap: str, prefix: str, seconds: float, writers: int,
                          aggregates: int) -> dict:
    from exchange.journal import Journal, JournalConfig, ensure_topics

    config = JournalConfig(bootstrap=bootstrap, stream="bench", partitions=1, prefix=prefix)
    await ensure_topics(config)
    journal = Journal(config, partition=0)
    await journal.start()
    event = msgspec.msgpack.encode(os.urandom(EVENT_BYTES - 3))
    latencies: list[float] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def writer(n: int) -> None:
        nonlocal done
        aggregate = f"agg-{n % aggregates}"
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await journal.append(aggregate, [event])
            latencies.append(time.perf_counter() - t0)
            done += 1

    start = time.perf_counter()
    flushes0 = journal.flushes
    try:
        await asyncio.gather(*(writer(n) for n in range(writers)))
        elapsed = time.perf_counter() - start
        flushes = journal.flushes - flushes0
        records = journal.records
    finally:    # before its topics go
        await journal.stop()
    ms = sorted(x * 1000 for x in latencies)
    return {
        "journal_per_s": round(done / elapsed),
        "journal_flushes_per_s": round(flushes / elapsed, 1),
        "journal_events_per_flush": round(done / max(flushes, 1), 1),
        "journal_records_per_s": round(records / elapsed),
        "journal_p50_ms": percentile(ms, 0.50) or 0.0,
        "journal_p99_ms": percentile(ms, 0.99) or 0.0,
    }


async def _run(args) -> dict:
    from exchange.journal import create_topic, delete_topics

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    raw_topic = f"{prefix}.raw"
    await create_topic(args.bootstrap, raw_topic)
    try:
        print(f"raw aiokafka produce for {args.seconds:.0f}s ...", file=sys.stderr, flush=True)
        raw = await raw_produce(args.bootstrap, raw_topic, args.seconds)
        print(f"journal appends ({args.writers} writers, {args.aggregates} aggregates) "
              f"for {args.seconds:.0f}s ...", file=sys.stderr, flush=True)
        figures = await journal_appends(args.bootstrap, prefix, args.seconds, args.writers, args.aggregates)
    finally:   # the raw topic and the journal's two, whether or not the run got through
        await delete_topics(args.bootstrap, lambda t: t.startswith(f"{prefix}."))
    result = {"bench": "journal", **figures, "raw_produce_per_s": round(raw),
              "ratio": round(figures["journal_per_s"] / raw, 3), "event_bytes": EVENT_BYTES,
              "writers": args.writers, "aggregates": args.aggregates, "seconds": args.seconds}
    return result
