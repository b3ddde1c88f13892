"""What the machine itself did during a benchmark phase, from /proc and /sys.

Owns the readings that let a figure be read against the machine it came from: CPU time
busy and stolen (`/proc/stat`), and idle halts (cpuidle). On a VM the hypervisor runs
other guests on the same physical cores; the time a vCPU was ready to run and was not
given a core is *steal*, and the same command has measured twice as fast in one hour as
in the next here. A figure beside its `steal_pct` says which kind of hour it came from.
All readings are since boot; a phase takes the difference of two. None (or 0.0) where
/proc or /sys is missing.
"""

from __future__ import annotations

import os


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time since boot, all CPUs summed, in clock ticks: user, nice,
    system, idle, iowait, irq, softirq, steal (the first line of /proc/stat)."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def machine_busy_s() -> float:
    """CPU seconds every core of this machine has spent busy since boot (/proc/stat: all but
    idle and iowait; steal included, as the CPU per order figures have always counted it);
    0.0 where there is no /proc."""
    ticks = cpu_ticks()
    if ticks is None:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def steal_pct(before: list[int] | None, after: list[int] | None) -> float | None:
    """Of all the CPU time between two `cpu_ticks` readings, the share (%) the hypervisor
    gave to someone else while this machine's vCPUs were ready to run."""
    if before is None or after is None:
        return None
    total = sum(after) - sum(before)
    if total <= 0:
        return None
    return round(100 * (after[7] - before[7]) / total, 1)


def idle_halts() -> int | None:
    """How many times this machine's CPUs have entered an idle state deeper than polling
    since boot (cpuidle's per-state usage counts). On a VM each such halt is an exit to
    the hypervisor, and the wake that ends it costs the waker and the woken tens of
    microseconds. None where cpuidle is not exposed (not the same as no halts)."""
    total = 0
    found = False
    base = "/sys/devices/system/cpu"
    try:
        cpus = [c for c in os.listdir(base) if c.startswith("cpu") and c[3:].isdigit()]
    except OSError:
        return None
    for cpu in cpus:
        try:
            states = os.listdir(f"{base}/{cpu}/cpuidle")
        except OSError:
            continue
        for state in states:
            try:
                with open(f"{base}/{cpu}/cpuidle/{state}/name") as f:
                    if f.read().strip() == "POLL":
                        continue
                with open(f"{base}/{cpu}/cpuidle/{state}/usage") as f:
                    total += int(f.read())
                found = True
            except (OSError, ValueError):
                continue
    return total if found else None
