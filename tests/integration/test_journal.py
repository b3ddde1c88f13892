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


async def recovered_by_a_successor(cfg: JournalConfig, partition: int) -> tuple[dict, Journal]:
    """A new instance of the host's journal starts (fencing any predecessor), recovers and stops:
    what it recovered, and the stopped journal (its next sequence numbers)."""
    successor = Journal(cfg, partition=partition)
    await successor.start()
    recovered = await successor.recover()
    await successor.stop()
    return recovered, successor


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

    recovered, successor = await recovered_by_a_successor(config, 1)
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
    await journal.stop()                # the snapshot writer finishes what it was handed
    assert journal.snapshots >= 20      # "a" is due every other flush: right after its events land

    recovered, _ = await recovered_by_a_successor(cfg, 0)
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
        await zombie.append("w1", [ev("zombie", 2)])
    with pytest.raises(JournalFailed):
        zombie.append("w1", [ev("zombie", 3)])   # failed for good: crash-only
    await zombie.stop()

    await successor.append("w1", [ev("w1", 2)])
    await successor.stop()
    recovered, _ = await recovered_by_a_successor(config, 0)
    assert recovered["w1"].events == [ev("w1", 1), ev("w1", 2)], "the zombie never appended"


async def test_records_hold_whole_slices_and_a_huge_one_is_recovered(config):
    """A record is atomic and a flush is not (no transaction per flush): an aggregate's slice
    is never cut across records, so a flush that fails part way leaves each command whole
    or absent. Small slices share records; one larger than a record's share stands alone."""
    journal = Journal(config, partition=0)
    await journal.start()
    big = [msgspec.msgpack.encode(b"x" * 2000) for _ in range(2000)]     # ~4 MB in one flush
    await asyncio.gather(journal.append("huge", big), journal.append("small", [ev("small", 1)]),
                         *(journal.append(f"s{i}", [ev(f"s{i}", 1)]) for i in range(100)))
    records = journal.records
    await journal.stop()
    assert records == 2, "the huge slice alone, then every small one together"
    recovered, _ = await recovered_by_a_successor(config, 0)
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
        # a loaded machine takes a moment to stop every thread of the JVM: until then it may
        # still answer (seen once in CI); wait until all of them are stopped
        deadline = time.monotonic() + 10
        while not _all_threads_stopped(broker):
            assert time.monotonic() < deadline, "the broker did not stop"
            await asyncio.sleep(0.01)
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


async def test_what_recovery_replayed_holds_the_next_checkpoint_back(config):
    """Events a successor replayed (no snapshot covers them) must survive its checkpoints:
    x is written, the host dies before any snapshot; the successor writes only y, snapshots
    y and checkpoints; the recovery after that still has all of x."""
    cfg = JournalConfig(**{**config.__dict__, "checkpoint_every_s": 0.0})
    first = Journal(cfg, partition=1)
    await first.start()
    for n in (1, 2, 3):
        await first.append("x", [ev("x", n)])
    await first.stop()

    ys: list[bytes] = []
    second = Journal(cfg, partition=1,
                     snapshot_source=lambda aggs: {a: (len(ys), msgspec.msgpack.encode(ys)) for a in aggs if a == "y"})
    await second.start()
    assert (await second.recover())["x"].events == [ev("x", n) for n in (1, 2, 3)]
    for n in range(1, 6):
        ys.append(ev("y", n))
        await second.append("y", [ev("y", n)])
    await second.stop()
    assert second.snapshots >= 2, "y was snapshotted and checkpoints were written"

    recovered, third = await recovered_by_a_successor(cfg, 1)
    assert recovered["x"].events == [ev("x", n) for n in (1, 2, 3)], "x survived y's checkpoints"
    assert third.next_seq("x") == 4


async def test_snapshots_of_an_aborted_lease_are_not_used_but_its_events_are(config):
    """A successor aborts its predecessor's open lease: the events in it count (they were
    acknowledged), the snapshots and checkpoint in it do not (the log cleaner may drop them
    later), so recovery starts from the last committed checkpoint and replays."""
    cfg = JournalConfig(**{**config.__dict__, "checkpoint_every_s": 0.0})
    state: list[bytes] = []
    first = Journal(cfg, partition=0, snapshot_source=lambda aggs: {a: (len(state), msgspec.msgpack.encode(state))
                                                                     for a in aggs})
    await first.start()
    for n in range(1, 6):
        state.append(ev("a", n))
        await first.append("a", [ev("a", n)])
    for _ in range(200):                  # the snapshot writer follows the flushes on its own
        if first.snapshots >= 2:
            break
        await asyncio.sleep(0.01)
    assert first.snapshots >= 2 and first.state()["snapshots_in_transaction"] is True   # inside its open lease

    recovered, _ = await recovered_by_a_successor(cfg, 0)      # aborts the lease: its snapshots never commit
    await first.stop()
    a = recovered["a"]
    assert a.snapshot is None and a.events == [ev("a", n) for n in range(1, 6)]


async def test_a_snapshot_write_never_holds_up_a_flush(config):
    """The snapshot writer has its own producer: while its writes hang, flushes go on and are
    answered; once it is let go the snapshots and checkpoint land, and recovery uses them."""
    cfg = JournalConfig(**{**config.__dict__, "checkpoint_every_s": 0.0})
    state: list[bytes] = []
    journal = Journal(cfg, partition=1, snapshot_source=lambda aggs: {a: (len(state), msgspec.msgpack.encode(state))
                                                                       for a in aggs})
    await journal.start()
    gate = asyncio.Event()
    held = []
    send = journal._snapshot_producer.send

    async def held_send(*args, **kwargs):
        held.append(args)
        await gate.wait()
        return await send(*args, **kwargs)

    journal._snapshot_producer.send = held_send
    for n in range(1, 21):
        state.append(ev("a", n))
        await asyncio.wait_for(journal.append("a", [ev("a", n)]), 5)   # answered while snapshots wait
    assert journal.flushes == 20
    assert held and not gate.is_set(), "the writer was held from the first snapshot on"
    gate.set()
    await journal.stop()
    assert journal.snapshots >= 2

    recovered, _ = await recovered_by_a_successor(cfg, 1)
    a = recovered["a"]
    assert a.snapshot is not None and a.snapshot_seq >= 19
    assert msgspec.msgpack.decode(a.snapshot) + a.events == [ev("a", n) for n in range(1, 21)]


def _hold_commits(producer) -> tuple[asyncio.Event, asyncio.Event]:
    """Makes the producer's lease commits wait for the returned gate; `entered` is set when
    one starts waiting."""
    gate, entered = asyncio.Event(), asyncio.Event()
    commit = producer.commit_transaction

    async def held_commit():
        entered.set()
        await gate.wait()
        return await commit()

    producer.commit_transaction = held_commit
    return gate, entered


async def test_a_zombie_renewing_its_lease_is_fenced_on_both_producers(config):
    """The events leases run as a relay: a successor that starts while its predecessor
    commits one lease and writes through the other fences both. The zombie's renewal fails,
    its next flush is refused, and the log holds what it wrote before and nothing after."""
    cfg = JournalConfig(**{**config.__dict__, "lease_s": 0.05})
    zombie = Journal(cfg, partition=1)
    await zombie.start()
    await zombie.append("w", [ev("w", 1)])
    for _ in range(100):                  # each producer has renewed its lease at least once
        if zombie.state()["lease_renewals"] >= 2:
            break
        await asyncio.sleep(0.02)
    assert zombie.state()["lease_renewals"] >= 2
    renewing = zombie._relay.producer
    gate, entered = _hold_commits(renewing)
    await asyncio.wait_for(entered.wait(), 5)      # a swap: the held producer commits its lease
    assert zombie.state()["lease_renewing"] and zombie._relay.producer is not renewing
    await zombie.append("w", [ev("w", 2)])        # written beside the held renewal

    successor = Journal(cfg, partition=1)
    await successor.start()
    assert (await successor.recover())["w"].events == [ev("w", 1), ev("w", 2)]
    gate.set()
    with pytest.raises(JournalFailed):
        await zombie.append("w", [ev("zombie", 3)])
    for _ in range(100):
        if zombie.failed is not None:
            break
        await asyncio.sleep(0.02)
    assert zombie.failed is not None, "the renewal's commit was fenced"
    await zombie.stop()
    await successor.append("w", [ev("w", 3)])
    await successor.stop()
    recovered, _ = await recovered_by_a_successor(cfg, 1)
    assert recovered["w"].events == [ev("w", 1), ev("w", 2), ev("w", 3)]


async def test_a_lease_renewal_never_holds_up_a_flush(config):
    """While one producer's lease commit hangs, flushes go on through the other and are
    answered; once it is let go the lease reopens, and the relay keeps swapping."""
    cfg = JournalConfig(**{**config.__dict__, "lease_s": 0.05})
    journal = Journal(cfg, partition=0)
    await journal.start()
    relay = journal._relay
    held = relay.producers[1 - relay.active]     # it takes over at the next swap, renews at the one after
    gate, entered = _hold_commits(held)
    await journal.append("a", [ev("a", 1)])
    await asyncio.wait_for(entered.wait(), 5)
    assert journal.state()["lease_renewing"] and relay.producer is not held
    flushes = journal.flushes
    for n in range(2, 22):
        await asyncio.wait_for(journal.append("a", [ev("a", n)]), 5)   # answered while the commit waits
    assert journal.flushes >= flushes + 20 and journal.state()["lease_renewing"]
    renewals = journal.state()["lease_renewals"]
    gate.set()
    for _ in range(100):
        if journal.state()["lease_renewals"] >= renewals + 2:
            break
        await journal.append("a", [ev("a", 99)])
        await asyncio.sleep(0.02)
    assert journal.state()["lease_renewals"] >= renewals + 2 and journal.failed is None
    assert max(journal.lease_commit_ms) > 0
    await journal.stop()


def _all_threads_stopped(pid: int) -> bool:
    """Every thread of the process is in the stopped state (T), as /proc shows it."""
    from pathlib import Path

    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
        except OSError:       # a thread that ended meanwhile
            continue
    return bool(states) and all(state in ("T", "t") for state in states)


async def test_deferred_events_ride_along_with_the_next_flush_and_keep_their_order(config):
    journal = Journal(config, partition=0)
    await journal.start()
    try:
        await journal.append("w", [ev("w", 1)])           # the first flush opens the lease
        flushes = journal.flushes

        # alone, a deferred append waits its time, then is flushed by itself
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(journal.append("w", [ev("w", 2)], within_s=0.2), 2.0)
        assert loop.time() - started >= 0.19
        assert journal.flushes == flushes + 1

        # an urgent append after it flushes both at once, in the order appended
        deferred = journal.append("w", [ev("w", 3)], within_s=5.0)
        started = loop.time()
        await asyncio.wait_for(journal.append("w", [ev("w", 4)]), 2.0)
        assert deferred.done() and loop.time() - started < 2.0
        assert journal.flushes == flushes + 2
    finally:
        await journal.stop()

    recovered, _ = await recovered_by_a_successor(config, 0)
    assert recovered["w"].events == [ev("w", n) for n in range(1, 5)]
