"""Benchmarks: scripts that print one JSON line of figures each.

Owns the ``python -m exchange.bench <name>`` dispatcher; each benchmark lives
in its own module with ``add_arguments(parser)`` and ``run(args) -> dict``,
registered in ``BENCHMARKS``. Every figure is compared with a ceiling measured
in the same run.

Must never assert on timings: benchmarks report, tests assert.
"""

from __future__ import annotations

#: sub-command -> module under exchange.bench (imported lazily)
BENCHMARKS: dict[str, str] = {
    "matching": "exchange.bench.matching",
    "journal": "exchange.bench.journal",
    "flushcost": "exchange.bench.flushcost",
    "actors": "exchange.bench.actors",
    "hostcpu": "exchange.bench.hostcpu",
    "memory": "exchange.bench.memory",
    "http": "exchange.bench.http",
}
