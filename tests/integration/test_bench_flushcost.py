"""`python -m exchange.bench flushcost` runs against the stack and prints its interface keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_flushcost_prints_every_mode_beside_its_ceiling(child_env):
    out = subprocess.run([sys.executable, "-m", "exchange.bench", "flushcost", "--seconds", "0.3"],
                         cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    for mode in ("txn_per_flush", "lease", "plain"):
        assert figures[f"{mode}_per_s"] > 0
        assert 0 < figures[f"{mode}_p50_ms"] <= figures[f"{mode}_p99_ms"]
        assert figures[f"{mode}_client_cpu_us"] > 0
    assert figures["broker_pid_found"] is True and figures["lease_broker_cpu_us"] is not None
    assert figures["lease_to_plain"] > 0 and figures["txn_per_flush_to_plain"] > 0

