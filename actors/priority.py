"""Scheduling priority of a Ray worker process that is on the latency path of a bet.

Ray starts its workers at nice 15, so that they yield to the raylet and GCS. Market and
wallet hosts (actors/host_actor.py) and the bettors' ingress replicas (exchange/api/app.py)
are the latency path of every bet; at nice 15 they wait behind everything at nice 0 or
below on a busy node. They ask for a lower niceness when they may (root, or CAP_SYS_NICE
in a container) and keep Ray's otherwise. Hosts also ask for a real-time priority
(`realtime`), which the niceness backs up where it is refused.
"""

from __future__ import annotations

import logging
import os
from typing import Callable

log = logging.getLogger(__name__)


def renice(niceness: int, who: str = "process") -> int:
    """This process's niceness after asking for ``niceness`` (unchanged when not allowed).

    Linux keeps a niceness per thread, and Ray's core worker started its threads (those
    that receive calls and replies among them) before the actor existed: each thread is
    asked, not only the calling one. A thread already at or below ``niceness`` is left.
    """
    def ask(tid: int) -> None:
        if os.getpriority(os.PRIO_PROCESS, tid) > niceness:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    _ask_each_thread(ask, f"{who} niceness stays")
    return os.getpriority(os.PRIO_PROCESS, 0)


def realtime(priority: int, who: str = "process") -> int:
    """This process's real-time priority after asking for SCHED_FIFO at ``priority`` for
    each of its threads (0: not asked, or not allowed; the niceness then orders it).

    A real-time thread runs as soon as it is woken, ahead of every ordinary thread: the
    kernel places it on a CPU where it can run now. The fair scheduler of a VM may instead
    stack woken threads on a CPU that is already busy while another sits idle (the
    benchmark VM boots with `sched_vcpu_pack`), where they wait their turn. The kernel's
    real-time throttling (`sched_rt_runtime_us`, 95% by default) still leaves ordinary
    threads a share of every CPU. Threads started later inherit the policy.
    """
    if priority <= 0:
        return 0
    _ask_each_thread(lambda tid: os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(priority)),
                     f"{who} stays in the ordinary scheduler")
    return os.sched_getparam(0).sched_priority if os.sched_getscheduler(0) == os.SCHED_FIFO else 0


def _ask_each_thread(ask: Callable[[int], None], refused_message: str) -> None:
    """Calls ``ask(tid)`` for each thread of this process; logs the threads that refused
    (not permitted here, or the thread ended meanwhile): they keep what they had."""
    refused = []
    for tid in thread_ids():
        try:
            ask(tid)
        except OSError as exc:
            refused.append(f"{tid}: {exc.strerror}")
    if refused:
        log.info("%s for %d threads (%s)", refused_message, len(refused), "; ".join(refused[:3]))


def thread_ids(pid: int | str = "self") -> list[int]:
    """A process's threads, this one's by default (0, the calling thread, where /proc is
    not there to list them)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [0]


def thread_niceness(pid: int | str = "self") -> list[int]:
    """The niceness of each of a process's threads, this one's by default."""
    return _of_each_thread(pid, lambda tid: os.getpriority(os.PRIO_PROCESS, tid))


def thread_realtime(pid: int | str = "self") -> list[int]:
    """The real-time priority of each of a process's threads (0: the ordinary scheduler)."""
    def read(tid: int) -> int:
        fifo = os.sched_getscheduler(tid) in (os.SCHED_FIFO, os.SCHED_RR)
        return os.sched_getparam(tid).sched_priority if fifo else 0
    return _of_each_thread(pid, read)


def _of_each_thread(pid: int | str, read: Callable[[int], int]) -> list[int]:
    """``read(tid)`` for each thread of a process, skipping threads that ended meanwhile."""
    out = []
    for tid in thread_ids(pid):
        try:
            out.append(read(tid))
        except OSError:
            pass
    return out
