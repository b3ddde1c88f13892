from collections import Counter

from actors.directory import host_index, host_name


def test_every_caller_maps_an_aggregate_to_the_same_host():
    assert [host_index(f"1.{n}", 4) for n in range(5)] == [host_index(f"1.{n}", 4) for n in range(5)]


def test_aggregates_spread_evenly_over_hosts():
    counts = Counter(host_index(f"player-{n}", 4) for n in range(20_000))
    assert set(counts) == {0, 1, 2, 3}
    assert min(counts.values()) > 4_500


def test_growing_by_one_host_moves_about_one_in_n():
    moved = sum(host_index(f"m{n}", 4) != host_index(f"m{n}", 5) for n in range(10_000))
    assert 1_500 < moved < 2_500       # ~1/5, not ~4/5 as modulo hashing would move


def test_host_names_read_well_in_the_dashboard():
    assert host_name("market", "us-nj", 0) == "market-host/us-nj/0"
