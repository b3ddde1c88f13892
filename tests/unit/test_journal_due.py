"""When a journal's aggregates come due for a snapshot (no broker needed: nothing is written)."""

import time

from exchange.journal import Journal, JournalConfig


def journal(snapshot_source=None, **kw) -> Journal:
    config = JournalConfig(bootstrap="unused:9092", stream="test", partitions=1,
                           **{"checkpoint_every_s": 30.0, "snapshot_budget_s": 10.0, **kw})
    return Journal(config, 0, snapshot_source=snapshot_source)


def test_aggregates_come_due_spread_over_the_interval_not_all_at_once():
    j = journal()
    for n in range(200):
        j._mark_uncovered(f"a{n}", n, 1000.0)
    due = [at for _, at in j._uncovered.values()]
    assert all(1000.0 <= at <= 1030.0 for at in due)
    assert min(due) < 1005 and max(due) > 1025 and len(set(due)) > 190
    assert list(j._uncovered) == [f"a{n}" for n in range(200)], "offset order kept for the checkpoint"


def test_a_flush_snapshots_what_is_due_soonest_first_and_leaves_the_rest():
    asked = []

    def source(aggregates):
        asked.extend(aggregates)
        return {a: (1, b"state") for a in aggregates}

    j = journal(source)
    now = time.monotonic()
    for n in range(100):
        j._mark_uncovered(f"a{n}", n, now - 15.0)     # half of them are due by now
    due_now = sorted((at, a) for a, (_, at) in j._uncovered.items() if at <= time.monotonic())
    taken = j._take_due_snapshots()
    assert asked == [a for _, a in due_now]
    assert set(taken) == set(asked) and 0 < len(asked) < 100
    assert j._take_due_snapshots() is None, "nothing else is due yet"


def test_an_aggregate_noted_again_keeps_its_place_and_its_old_due_time_no_longer_counts():
    j = journal(lambda aggregates: {a: (1, b"s") for a in aggregates}, checkpoint_every_s=0.0)
    j._mark_uncovered("x", 5, time.monotonic() - 1)
    j._mark_uncovered("y", 6, time.monotonic() - 1)
    j._mark_uncovered("x", 5, time.monotonic() + 100)   # e.g. its snapshot was too big: due again later
    assert list(j._uncovered) == ["x", "y"]
    assert set(j._take_due_snapshots()) == {"y"}


def test_a_snapshot_too_big_or_declined_is_tried_once_per_flush_and_stays_due(monkeypatch):
    """Neither hangs the flush nor freezes the checkpoint: each is asked for once, stays
    uncovered, and is due again for a later flush."""
    from exchange.journal import kafka_journal

    monkeypatch.setattr(kafka_journal, "MAX_SNAPSHOT_BYTES", 4)
    asked = []

    def source(aggregates):
        asked.extend(aggregates)
        return {a: (1, b"far too big") for a in aggregates if a == "big"}   # "gone" is declined

    j = journal(source, checkpoint_every_s=0.0)
    now = time.monotonic()
    j._mark_uncovered("big", 1, now)
    j._mark_uncovered("gone", 2, now)
    assert j._take_due_snapshots() is None
    assert sorted(asked) == ["big", "gone"], "each asked for once"
    assert list(j._uncovered) == ["big", "gone"]
    assert j._take_due_snapshots() is None and len(asked) == 4, "and again at the next flush"


def test_no_snapshots_while_stopping_or_while_the_writer_is_far_behind():
    from exchange.journal.kafka_journal import MAX_QUEUED_SNAPSHOT_BYTES

    j = journal(lambda aggregates: {a: (1, b"s") for a in aggregates}, checkpoint_every_s=0.0)
    j._mark_uncovered("a", 1, time.monotonic())
    j._snapshot_queued_bytes = MAX_QUEUED_SNAPSHOT_BYTES + 1
    assert j._take_due_snapshots() is None
    j._snapshot_queued_bytes = 0
    j._stopping = True      # a host may have applied a command whose append was refused
    assert j._take_due_snapshots() is None
    j._stopping = False
    assert set(j._take_due_snapshots()) == {"a"}


def test_the_checkpoint_handed_over_stops_before_the_oldest_events_no_snapshot_covers():
    j = journal()
    now = time.monotonic()
    for offset, aggregate in ((10, "a"), (20, "b"), (30, "c")):
        j._mark_uncovered(aggregate, offset, now)
    # a flush at offset 40 wrote a and d; a was snapshotted with it, d was not
    j._hand_over_snapshots([(40, "a"), (40, "d")], {"a": (7, b"state of a")})
    assert list(j._uncovered) == ["b", "c", "d"]
    assert j._uncovered["d"][0] == 40
    assert j._snapshot_queue == [({"a": (7, b"state of a")}, 19)], "the checkpoint: just before b's events"
    j._hand_over_snapshots([(50, "b")], {"b": (3, b"b"), "c": (4, b"c")})
    assert j._snapshot_queue[-1][1] == 39, "then just before d's"
