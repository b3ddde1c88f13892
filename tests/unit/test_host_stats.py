"""A host's stats() runs on its event loop, between commands: it must stay cheap.

Counting the collector's frozen objects walks all of them (gc.get_freeze_count): with
the benchmark's books that took 70-100 ms, a stall of every call waiting on the host,
each time a benchmark or a dashboard asked for stats. stats() reports the count taken
after recovery and after each sweep instead."""

import gc

import pytest

from actors.wallet_host import WalletHost


@pytest.fixture
def host():
    host = WalletHost("us-nj", 0, "127.0.0.1:1", 1)   # plain object: no Ray, no Kafka needed
    yield host
    gc.callbacks.remove(host._watch_gc)     # leave this test process's collector as it was
    gc.unfreeze()


def test_stats_does_not_walk_the_frozen_heap(host, monkeypatch):
    def walk():
        raise AssertionError("stats() counted the frozen objects")

    monkeypatch.setattr(gc, "get_freeze_count", walk)
    stats = host.stats()
    assert stats["gc_frozen"] == 0 and stats["cpu_s"] > 0


def test_a_sweep_records_the_frozen_count_that_stats_reports(host):
    sweep = host.gc_sweep()
    assert host.stats()["gc_frozen"] == sweep["frozen_after"] > 0
