"""The Kafka journal against the real broker: group commit, recovery, snapshots, fencing."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from exchange.journal import Journal, JournalConfig, JournalFailed, ensure_topics


@pytest.fixture
async def config(stack):
    cfg = JournalConfig(bootstrap=stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"], stream="test",
                        partitions=2, prefix=f"t{uuid.uuid4().hex[:8]}")
    await ensure_topics(cfg)
    return cfg


def ev(aggregate: str, n: int) -> bytes:
    """An encoded event: the journal stores each event as the msgpack value it is given."""
    return msgspec.msgpack.encode([aggregate, n])


async def test_appends_are_group_committed_and_recovered_in_order(config):
    journal = Journal(config, partition=1)
    await journal.start()
    appends = []
    for n in range(1, 301):
        for agg in ("m1", "m2", "m3"):
            appends.append(journal.append(agg, [ev(agg, n)]))
    await asyncio.gather(*appends)
    flushes = journal.flushes
    await journal.stop()
    assert flushes < 300, "900 appends should share far fewer than 300 commits"

    successor = Journal(config, partition=1)
    await successor.start()
    recovered = await successor.recover()
    await successor.stop()
    for agg in ("m1", "m2", "m3"):
        assert recovered[agg].snapshot is None
        assert recovered[agg].events == [ev(agg, n) for n in range(1, 301)]
    assert successor.next_seq("m1") == 301


async def test_recovery_starts_at_the_last_checkpoint(config):
    state: dict[str, list[bytes]] = {"a": [], "b": []}

    def snapshot(aggregates):
        # only "a" can be snapshotted: "b" stays uncovered, so recovery must still
        # start early enough to replay all of b's events
        return {agg: (len(state[agg]), msgspec.msgpack.encode(state[agg])) for agg in aggregates if agg == "a"}

    cfg = JournalConfig(**{**config.__dict__, "checkpoint_every_s": 0.0})
    journal = Journal(cfg, partition=0, snapshot_source=snapshot)
    await journal.start()
    for n in range(1, 51):
        for agg in ("a", "b"):
            state[agg].append(ev(agg, n))
            fut = journal.append(agg, [ev(agg, n)])
        await fut     # one flush per round, each may snapshot what is due
    assert journal.snapshots >= 20      # "a" is due every other flush: right after its events land
    await journal.stop()

    successor = Journal(cfg, partition=0)
    await successor.start()
    recovered = await successor.recover()
    await successor.stop()
    a, b = recovered["a"], recovered["b"]
    assert a.snapshot is not None and a.snapshot_seq >= 49 and len(a.events) <= 1
    assert msgspec.msgpack.decode(a.snapshot) + a.events == [ev("a", n) for n in range(1, 51)]
    assert b.snapshot is None and b.events == [ev("b", n) for n in range(1, 51)]


async def test_a_restarted_host_fences_its_zombie_predecessor(config):
    zombie = Journal(config, partition=0)
    await zombie.start()
    await zombie.append("w1", [ev("w1", 1)])

    successor = Journal(config, partition=0)
    await successor.start()          # same host identity: bumps the producer epoch
    recovered = await successor.recover()
    assert recovered["w1"].events == [ev("w1", 1)]

    with pytest.raises(JournalFailed):
        await zombie.append("w1", [ev("w1", 2)])
    with pytest.raises(JournalFailed):
        zombie.append("w1", [ev("w1", 3)])   # failed for good: crash-only
    await zombie.stop()

    await successor.append("w1", [ev("w1", 2)])
    await successor.stop()
    final = Journal(config, partition=0)
    await final.start()
    recovered = await final.recover()
    await final.stop()
    assert recovered["w1"].events == [ev("w1", 1), ev("w1", 2)], "the zombie never appended"


async def test_a_flush_larger_than_a_kafka_record_is_split_and_recovered(config):
    journal = Journal(config, partition=0)
    await journal.start()
    big = [msgspec.msgpack.encode(b"x" * 2000) for _ in range(2000)]     # ~4 MB in one flush
    await asyncio.gather(journal.append("huge", big), journal.append("small", [ev("small", 1)]))
    records = journal.records
    await journal.stop()
    assert records >= 8
    successor = Journal(config, partition=0)
    await successor.start()
    recovered = await successor.recover()
    await successor.stop()
    assert recovered["huge"].events == big
    assert recovered["small"].events == [ev("small", 1)]


async def test_a_flush_the_broker_never_answers_fails_the_journal_in_time(config):
    """A frozen broker (SIGSTOP: connections open, no answers) must not hang the host:
    the flush watchdog fails the journal after flush_timeout_s, so the host exits and
    recovers (crash-only) instead of waiting on a producer that may never resend."""
    import os
    import signal
    import time
    from pathlib import Path

    state = Path(os.environ.get("EXCHANGE_STATE_DIR", Path(__file__).resolve().parents[2] / "state"))
    broker = int((state / "kafka" / "pid").read_text().split()[0])
    cfg = JournalConfig(**{**config.__dict__, "flush_timeout_s": 1.0})
    journal = Journal(cfg, partition=0)
    await journal.start()
    await journal.append("w1", [ev("w1", 1)])
    os.kill(broker, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(JournalFailed):
            await asyncio.wait_for(journal.append("w1", [ev("w1", 2)]), 10)
        waited = time.monotonic() - started
    finally:
        os.kill(broker, signal.SIGCONT)
    assert 0.9 <= waited < 5, waited
    assert journal.failed is not None
    with pytest.raises(JournalFailed):
        journal.append("w1", [ev("w1", 3)])
    await journal.stop()
