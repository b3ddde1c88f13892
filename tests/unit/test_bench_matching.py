"""The matching benchmark runs and prints one JSON line (figures are not asserted)."""

import json

from exchange.bench.__main__ import main


def test_matching_benchmark_prints_one_json_line(capsys):
    assert main(["matching", "--ops", "2000", "--repeat", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["ops"] == 2000
    assert figures["ops_per_s"] > 0 and figures["ceiling_ops_per_s"] > 0
    assert {"ratio", "seconds", "python"} <= figures.keys()
    # the floor is the ceiling's walk plus the outputs: never faster than either alone
    assert 0 < figures["floor_ops_per_s"] < figures["ceiling_ops_per_s"]
    assert figures["floor_ops_per_s"] < figures["outputs_only_ops_per_s"]
    assert figures["results"]["success"] > figures["results"]["failure"]
    assert figures["steal_pct"] is None or 0.0 <= figures["steal_pct"] <= 100.0
