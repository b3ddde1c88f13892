"""cluster/stack.py spawn(): a server started with a niceness runs at it, threads included."""

import os
import time

import pytest

from cluster.stack import pid_alive, spawn, terminate


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
