"""cluster/stack.py spawn(): a server started with a niceness runs at it, threads included;
realtime_threads(): the threads of a server named so, and only those, at SCHED_FIFO."""

import os
import time

import pytest

from cluster.stack import pid_alive, realtime_threads, spawn, terminate


def test_a_spawned_server_runs_at_the_niceness_asked_for(tmp_path):
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(ours + 3, 19)        # raising it is allowed to anyone
    pid = spawn(["python3", "-c", "import threading, time; threading.Thread(target=time.sleep, args=(30,)).start()"],
                log=tmp_path / "server.log", niceness=wanted)
    try:
        deadline = time.monotonic() + 10
        while len(os.listdir(f"/proc/{pid}/task")) < 2:
            assert time.monotonic() < deadline and pid_alive(pid), (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        assert {os.getpriority(os.PRIO_PROCESS, t) for t in threads} == {wanted}
    finally:
        terminate([pid], what="test server", grace=2)


def test_a_niceness_not_allowed_keeps_ours_and_still_starts(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may lower it: nothing is refused")
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    pid = spawn(["sleep", "30"], log=tmp_path / "server.log", niceness=-10)
    try:
        time.sleep(0.2)
        assert pid_alive(pid) and os.getpriority(os.PRIO_PROCESS, pid) == ours
    finally:
        terminate([pid], what="test server", grace=2)


NAMED_THREADS = """
import threading, time
def run(name):
    with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
        f.write(name)
    time.sleep(30)
for name in ("data-plane-1", "data-plane-2", "other"):
    threading.Thread(target=run, args=(name,)).start()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root or CAP_SYS_NICE")
def test_only_the_threads_named_so_run_at_the_real_time_priority(tmp_path):
    pid = spawn(["python3", "-c", NAMED_THREADS], log=tmp_path / "server.log")
    try:
        def names() -> dict[int, str]:
            out = {}
            for t in os.listdir(f"/proc/{pid}/task"):
                try:
                    out[int(t)] = open(f"/proc/{pid}/task/{t}/comm").read().strip()
                except OSError:
                    pass
            return out
        deadline = time.monotonic() + 10
        while not {"data-plane-1", "data-plane-2", "other"} <= set(names().values()):
            assert time.monotonic() < deadline and pid_alive(pid), (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        assert realtime_threads(pid, "data-plane", 1) == (2, 0)
        for tid, name in names().items():
            fifo = os.sched_getscheduler(tid) == os.SCHED_FIFO
            assert fifo == name.startswith("data-plane"), (tid, name)
            if fifo:
                assert os.sched_getparam(tid).sched_priority == 1
    finally:
        terminate([pid], what="test server", grace=2)
