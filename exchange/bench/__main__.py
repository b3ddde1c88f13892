"""``python -m exchange.bench <benchmark> [options]``: run one benchmark, print one JSON line."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exchange.bench", description=__doc__)
    subparsers = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    modules = {}
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        sub = subparsers.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    figures = modules[args.benchmark].run(args)
    sys.stdout.write(json.dumps(figures, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
