"""actors/priority.py realtime(): every thread of the process at SCHED_FIFO, later ones too."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from actors.priority import realtime, thread_realtime

SCRIPT = textwrap.dedent("""
    import json, threading
    from actors.priority import realtime, thread_realtime
    started = threading.Event(); done = threading.Event()
    early = threading.Thread(target=lambda: (started.set(), done.wait())); early.start(); started.wait()
    got = realtime(1, "test")
    late = threading.Thread(target=done.wait); late.start()
    print(json.dumps({"got": got, "threads": thread_realtime()}))
    done.set()
""")


def test_zero_asks_for_nothing():
    before = thread_realtime()
    assert realtime(0) == 0
    assert thread_realtime() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root or CAP_SYS_NICE")
def test_every_thread_runs_at_the_priority_asked_for_started_before_or_after():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["got"] == 1
    assert seen["threads"] == [1, 1, 1]      # the main thread, one started before, one after


def test_a_host_built_outside_an_actor_leaves_its_callers_scheduling_be():
    import gc

    from actors.wallet_host import WalletHost

    policy, niceness = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)
    host = WalletHost("us-nj", 0, "127.0.0.1:1", 1)     # as the in-process test harnesses do
    try:
        assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == (policy, niceness)
        assert host.realtime == 0 and host.niceness == niceness
    finally:
        gc.callbacks.remove(host._watch_gc)
