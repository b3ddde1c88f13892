"""The in-process host benchmark runs and prints one JSON line (figures are not asserted)."""

import json

from exchange.bench.__main__ import main


def test_hostcpu_benchmark_prints_one_json_line(capsys):
    assert main(["hostcpu", "--orders", "2000", "--repeat", "1", "--players", "200", "--markets", "20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    figures = json.loads(lines[0])
    assert figures["orders"] >= 2000
    # every order is a reservation, a placement and at least the placer's report
    assert figures["commands_per_order"] >= 3
    # the hosts decide through the same domain, and do more around it
    assert figures["cpu_us_per_order"] > figures["domain_cpu_us_per_order"] > 0
    assert figures["ratio_to_domain"] > 1
