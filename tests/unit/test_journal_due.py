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
