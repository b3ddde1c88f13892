"""The machine readings benchmarks print beside their figures (exchange/bench/machine.py)."""

from __future__ import annotations

from exchange.bench.machine import cpu_ticks, machine_busy_s, steal_pct


def test_steal_is_the_stolen_share_of_all_cpu_time_between_two_readings():
    #         user nice sys idle iowait irq softirq steal
    before = [100, 0, 50, 800, 10, 0, 5, 35]
    after = [160, 0, 70, 880, 10, 0, 5, 75]   # 200 ticks later, 40 of them stolen
    assert steal_pct(before, after) == 20.0


def test_steal_is_unknown_without_two_readings_or_without_elapsed_time():
    ticks = [1, 2, 3, 4, 5, 6, 7, 8]
    assert steal_pct(None, ticks) is None
    assert steal_pct(ticks, None) is None
    assert steal_pct(ticks, list(ticks)) is None


def test_this_machine_reads_eight_counters_that_only_grow():
    first = cpu_ticks()
    assert first is not None and len(first) == 8
    sum(i * i for i in range(200_000))      # some CPU time passes
    second = cpu_ticks()
    assert all(b >= a for a, b in zip(first, second))
    share = steal_pct(first, second)
    assert share is None or 0.0 <= share <= 100.0
    assert machine_busy_s() > 0
