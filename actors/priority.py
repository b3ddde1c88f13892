"""Scheduling priority of a Ray worker process that is on the latency path of a bet.

Ray starts its workers at nice 15, so that they yield to the raylet and GCS. Market and
wallet hosts (actors/host_actor.py) and the bettors' ingress replicas (exchange/api/app.py)
are the latency path of every bet; at nice 15 they wait behind everything at nice 0 or
below on a busy node. They ask for a lower niceness when they may (root, or CAP_SYS_NICE
in a container) and keep Ray's otherwise.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def renice(niceness: int, who: str = "process") -> int:
    """This process's niceness after asking for ``niceness`` (unchanged when not allowed).

    Linux keeps a niceness per thread, and Ray's core worker started its threads (those
    that receive calls and replies among them) before the actor existed: each thread is
    asked, not only the calling one. A thread already at or below ``niceness`` is left.
    """
    refused = []
    for tid in thread_ids():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) > niceness:
                os.setpriority(os.PRIO_PROCESS, tid, niceness)
        except OSError as exc:      # not permitted here (or the thread ended): keep Ray's
            refused.append(f"{tid}: {exc.strerror}")
    if refused:
        log.info("%s niceness stays for %d threads (%s)", who, len(refused), "; ".join(refused[:3]))
    return os.getpriority(os.PRIO_PROCESS, 0)


def thread_ids(pid: int | str = "self") -> list[int]:
    """A process's threads, this one's by default (0, the calling thread, where /proc is
    not there to list them)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [0]


def thread_niceness(pid: int | str = "self") -> list[int]:
    """The niceness of each of a process's threads, this one's by default."""
    out = []
    for tid in thread_ids(pid):
        try:
            out.append(os.getpriority(os.PRIO_PROCESS, tid))
        except OSError:     # ended meanwhile
            pass
    return out
