"""Small figures over samples, shared by the hosts' stats and the benchmarks."""

from __future__ import annotations


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-quantile of already sorted values (nearest rank, q=1.0 the maximum), to 0.01;
    None when there are none."""
    if not sorted_values:
        return None
    return round(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))], 2)
