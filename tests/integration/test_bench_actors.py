"""`python -m exchange.bench actors` runs against the stack, prints its interface keys, and
leaves no topic behind."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from exchange.journal import list_topics

ROOT = Path(__file__).resolve().parents[2]


def test_actors_bench_prints_its_figures_and_cleans_up(stack, child_env):
    bootstrap = stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"]
    before = asyncio.run(list_topics(bootstrap))
    out = subprocess.run([sys.executable, "-m", "exchange.bench", "actors", "--seconds", "1",
                          "--concurrency", "200", "--players", "200", "--markets", "20",
                          "--recovery-events", "2000"],
                         cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])

    # the keys the issue names, each beside its ceiling
    assert figures["orders_per_s"] > 0 and figures["ceiling_calls_per_s"] > 0
    assert 0 < figures["p50_ms_half_load"] <= figures["p99_ms_half_load"] <= figures["p99_9_ms_half_load"]
    assert figures["recovery_s"] > 0 and figures["recovery_history_events"] == 2000
    # where the time and the CPU went
    for phase in ("full", "half"):
        cpu = figures[f"cpu_us_per_order_{phase}_load"]
        assert cpu["driver"] > 0 and cpu["machine"] > 0
        assert set(cpu) >= {"market-host/us-nj/0", "wallet-host/us-nj/0"}
        halts = figures[f"idle_halts_per_order_{phase}_load"]      # None where cpuidle is not exposed
        assert halts is None or halts >= 0
    assert figures["half_load_driver_gc"]["collections"] == [0, 0, 0]   # its collector stays off
    slowest = figures["half_load_slowest_batches"]
    assert slowest and slowest[0][0] >= figures["p99_9_ms_half_load"] and all(n > 0 for _, n in slowest)
    # the run's topics are gone (its hosts' and the recovered market's)
    assert asyncio.run(list_topics(bootstrap)) - before == set()
