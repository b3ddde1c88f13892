"""Placement on the live local Ray cluster (cluster/stack.py): labelled nodes stand in for
the Region, the Ontario Local Zone and the New Jersey Outpost.

For each scenario, one stand-in actor per role per jurisdiction is created with
placement.actor_options and must land on a node whose jurisdiction label is the one its
policy allows; placement groups bound to a jurisdiction land on its node; `python -m
placement check` fails on a misplaced actor. The node-loss test adds its own labelled
node (jurisdiction xx-test, ports 27800+) so the shared stack is never harmed: it kills
that node's raylet, asserts the regulated actors wait (never ALIVE elsewhere) and calls
to them fail fast, measures detection, starts a replacement node with the same labels
and measures until the actors answer from it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from placement import options as popts
from placement.policy import Role
from placement.topology import Scenario, load_topology

ROOT = Path(__file__).resolve().parents[2]
TEST_JURISDICTION = "xx-test"
NODE_PORTS = {"xx-test-1": 27800, "xx-test-2": 27810}   # node-manager port; +1..+5 the others


@pytest.fixture(scope="module")
def ray(ray_session):
    return ray_session


@pytest.fixture(scope="module")
def namespace():
    return f"placement-test-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def standin(ray):
    @ray.remote(num_cpus=0)
    class StandIn:
        """Reports where it runs and whether Ray restarted it; counts calls (its 'state')."""

        def __init__(self):
            self.calls = 0

        def where(self):
            self.calls += 1
            ctx = ray.get_runtime_context()
            return {"node_id": ctx.get_node_id(), "restarted": ctx.was_current_actor_reconstructed}

    return StandIn


def node_labels(ray) -> dict[str, dict[str, str]]:
    return {n["NodeID"]: n.get("Labels", {}) for n in ray.nodes() if n["Alive"]}


@pytest.mark.parametrize("scenario", ["A", "B", "C"])
def test_every_role_lands_on_the_nodes_its_scenario_allows(ray, standin, namespace, scenario):
    # Arrange
    topology = load_topology().with_scenarios({j.id: scenario for j in load_topology().jurisdictions})
    key = topology.labels.jurisdiction
    labels = node_labels(ray)
    region_nodes = {n for n, lab in labels.items() if lab.get(key) == topology.region_jurisdiction}
    assert region_nodes, "the stack has no Region node"
    ns = f"{namespace}-{scenario.lower()}"

    # Act
    actors = {}
    for jur in topology.jurisdictions:
        for role in Role:
            opts = popts.actor_options(role, jur.id, topology, namespace=ns)
            actors[(role, jur.id)] = standin.options(**opts).remote()
    try:
        where = dict(zip(actors, ray.get([a.where.remote() for a in actors.values()], timeout=60)))

        # Assert
        for (role, jur), got in where.items():
            allowed = popts.placement_for(role, jur, topology).runs_in
            assert labels[got["node_id"]][key] == allowed, (scenario, role, jur, labels[got["node_id"]])
            if role is Role.ANALYTICS:
                assert got["node_id"] in region_nodes
        from placement.__main__ import judge, live_actors_and_nodes
        actors_seen, nodes, _ = live_actors_and_nodes(None, ns)
        reports = judge(actors_seen, nodes, topology)
        assert len(reports) == len(actors)
        assert [r for r in reports if r.verdict != "ok"] == []
    finally:
        for a in actors.values():
            ray.kill(a, no_restart=True)


def test_host_placement_group_is_bound_to_the_jurisdiction(ray, standin, namespace):
    # Arrange
    topology = load_topology()
    key = topology.labels.jurisdiction
    labels = node_labels(ray)
    from ray.util.placement_group import placement_group_table, remove_placement_group

    for jur in ("us-nj", "ca-on"):
        # Act
        pg = popts.host_placement_group(jur, 2, topology, scenario="B", bundle={"CPU": 0.1},
                                        name=f"{namespace}/hosts/{jur}")
        try:
            assert pg.wait(30), f"placement group for {jur} not placed"
            hosts = [standin.options(**popts.actor_options(Role.MARKET_HOST, jur, topology, instance=i,
                                                           scenario="B", namespace=namespace,
                                                           placement_group=pg, bundle_index=i)).remote()
                     for i in range(2)]
            got = ray.get([h.where.remote() for h in hosts], timeout=60)

            # Assert
            bundle_nodes = placement_group_table(pg)["bundles_to_node_id"].values()
            assert {labels[n][key] for n in bundle_nodes} == {jur}
            assert {labels[g["node_id"]][key] for g in got} == {jur}
            for h in hosts:
                ray.kill(h, no_restart=True)
        finally:
            remove_placement_group(pg)


def test_check_cli_exits_1_on_a_misplaced_actor(ray, standin, namespace):
    # Arrange: a market host of us-nj (scenario B: regulated) forced onto the Region.
    topology = load_topology(scenario_overrides={"us-nj": "B"})
    ns = f"{namespace}-check"
    bad = standin.options(name=popts.actor_name(Role.MARKET_HOST, "us-nj", "misplaced"), namespace=ns,
                          label_selector={topology.labels.jurisdiction: "intl"}).remote()
    good = standin.options(**popts.actor_options(Role.ANALYTICS, "us-nj", topology, namespace=ns)).remote()
    unmanaged = standin.options(name="not-in-the-scheme", namespace=ns).remote()
    ray.get([bad.where.remote(), good.where.remote(), unmanaged.where.remote()], timeout=60)
    try:
        # Act
        env = dict(os.environ, EXCHANGE_SCENARIO_US_NJ="B")
        proc = subprocess.run([sys.executable, "-m", "placement", "check", "--namespace", ns],
                              capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)

        # Assert
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        assert any(l.startswith("VIOLATION") and "market-host/us-nj/misplaced" in l for l in lines)
        assert any(l.startswith("ok") and "analytics/us-nj/0" in l for l in lines)
        assert any(l.startswith("unmanaged") and "not-in-the-scheme" in l for l in lines)
    finally:
        for a in (bad, good, unmanaged):
            ray.kill(a, no_restart=True)


# ---------------------------------------------------------------- node loss

def _ray_env() -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def start_node(name: str, address: str) -> None:
    base = NODE_PORTS[name]
    labels = (f"exchange/site=outpost,exchange/jurisdiction={TEST_JURISDICTION},"
              f"exchange/node={name}")
    cmd = [str(Path(sys.executable).parent / "ray"), "start", "--address", address,
           "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--labels", labels,
           "--node-manager-port", str(base), "--object-manager-port", str(base + 1),
           "--dashboard-agent-listen-port", str(base + 2), "--dashboard-agent-grpc-port", str(base + 3),
           "--runtime-env-agent-port", str(base + 4), "--metrics-export-port", str(base + 5),
           "--include-log-monitor", "false", "--object-store-memory", str(80 * 2**20),
           "--disable-usage-stats"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_ray_env(), timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree.setdefault(ppid, []).append(int(proc.name))
    return tree


def node_pids(name: str) -> list[int]:
    """The raylet started on this node's ports and all its descendants (agents, workers)."""
    marker = f"--node_manager_port={NODE_PORTS[name]}".encode()
    roots = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args and args[0].endswith(b"raylet") and marker in args:
                roots.append(int(proc.name))
    tree, seen = _children(), []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.append(pid)
            todo.extend(tree.get(pid, []))
    return seen


def kill_node(name: str, sig: int = signal.SIGKILL) -> list[int]:
    pids = node_pids(name)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    return pids


def stop_node(name: str) -> None:
    """Cleanup: SIGTERM the node's processes (the raylet unregisters), SIGKILL what remains."""
    kill_node(name, signal.SIGTERM)
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline and node_pids(name):
        time.sleep(0.2)
    kill_node(name, signal.SIGKILL)


def test_lost_jurisdiction_node_actors_wait_then_recover_on_a_replacement(ray, standin, namespace,
                                                                          capsys):
    from ray.util.placement_group import remove_placement_group
    from ray.util.state import list_actors

    topology = load_topology().with_jurisdiction(TEST_JURISDICTION, site="outpost", scenario="B")
    key = topology.labels.jurisdiction
    address = os.environ["RAY_ADDRESS"]
    ns = f"{namespace}-loss"
    timings: dict[str, float] = {}
    actors, pg = [], None
    stop_load = threading.Event()
    try:
        # Arrange: the jurisdiction's node, a host by label and a host in a bound placement group.
        t0 = time.monotonic()
        start_node("xx-test-1", address)
        deadline = time.monotonic() + 30
        while not any(l.get(key) == TEST_JURISDICTION for l in node_labels(ray).values()):
            assert time.monotonic() < deadline, "the xx-test node did not join"
            time.sleep(0.2)
        timings["node_join_s"] = time.monotonic() - t0
        first_node = next(n for n, l in node_labels(ray).items() if l.get(key) == TEST_JURISDICTION)
        pg = popts.host_placement_group(TEST_JURISDICTION, 1, topology, bundle={"CPU": 0.1},
                                        name=f"{ns}/hosts")
        assert pg.wait(30)
        actors = [
            standin.options(**popts.actor_options(Role.MARKET_HOST, TEST_JURISDICTION, topology,
                                                  instance=0, namespace=ns)).remote(),
            standin.options(**popts.actor_options(Role.WALLET_HOST, TEST_JURISDICTION, topology,
                                                  instance=0, namespace=ns, placement_group=pg,
                                                  bundle_index=0)).remote(),
        ]
        names = {popts.actor_name(Role.MARKET_HOST, TEST_JURISDICTION, 0),
                 popts.actor_name(Role.WALLET_HOST, TEST_JURISDICTION, 0)}
        assert {g["node_id"] for g in ray.get([a.where.remote() for a in actors], timeout=60)} == {first_node}

        # Load: a caller keeps calling the hosts; during the outage its calls must fail
        # (the ingress's MARKET_SUSPENDED), not hang and not be answered from elsewhere.
        outcomes: list[tuple[float, str, str]] = []

        def load():
            while not stop_load.is_set():
                for a in actors:
                    try:
                        got = ray.get(a.where.remote(), timeout=2)
                        outcomes.append((time.monotonic(), "ok", got["node_id"]))
                    except Exception as exc:     # noqa: BLE001 - every failure is "suspended"
                        outcomes.append((time.monotonic(), "suspended", type(exc).__name__))
                time.sleep(0.05)

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        time.sleep(1)

        # Act: the Outpost's raylet dies.
        killed_at = time.monotonic()
        assert kill_node("xx-test-1"), "no raylet found on port 27800"
        detected_at = None
        seen_states = set()
        while time.monotonic() - killed_at < 20 or detected_at is None:
            assert time.monotonic() - killed_at < 60, "the dead node was never reported DEAD"
            if detected_at is None and not any(n["NodeID"] == first_node and n["Alive"] for n in ray.nodes()):
                detected_at = time.monotonic()
            for a in list_actors(filters=[("ray_namespace", "=", ns)], detail=True, limit=100):
                if a.name in names:
                    seen_states.add(a.state)
                    # Assert: never alive anywhere but the jurisdiction's (dead) node.
                    assert a.state != "ALIVE" or a.node_id == first_node, (a.name, a.state, a.node_id)
            time.sleep(0.5)
        timings["detection_s"] = detected_at - killed_at
        outage = [o for o in outcomes if o[0] > detected_at]
        assert outage and all(o[1] == "suspended" for o in outage), outage[-5:]

        # Act: a replacement node with the same labels joins.
        replaced_at = time.monotonic()
        start_node("xx-test-2", address)
        timings["replacement_start_s"] = time.monotonic() - replaced_at
        deadline = time.monotonic() + 60
        while True:
            try:
                got = ray.get([a.where.remote() for a in actors], timeout=5)
                break
            except Exception:                   # noqa: BLE001 - still restarting
                assert time.monotonic() < deadline, "the hosts did not come back on the replacement"
                time.sleep(0.2)
        timings["recovery_after_replacement_start_s"] = time.monotonic() - replaced_at
        timings["total_outage_s"] = time.monotonic() - killed_at

        # Assert: back on the replacement (a node of the same jurisdiction), restarted by Ray.
        labels = node_labels(ray)
        assert {labels[g["node_id"]].get(key) for g in got} == {TEST_JURISDICTION}
        assert {labels[g["node_id"]].get("exchange/node") for g in got} == {"xx-test-2"}
        assert all(g["restarted"] for g in got)
        stop_load.set()
        loader.join(timeout=10)
        regulated_elsewhere = [o for o in outcomes if o[1] == "ok" and
                               labels.get(o[2], {}).get(key, TEST_JURISDICTION) != TEST_JURISDICTION]
        assert regulated_elsewhere == []
        with capsys.disabled():
            print(f"\n[placement node loss] states seen while down: {sorted(seen_states)}; "
                  + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
    finally:
        stop_load.set()
        for a in actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:                   # noqa: BLE001 - cleanup
                pass
        if pg is not None:
            remove_placement_group(pg)
        for name in NODE_PORTS:
            stop_node(name)
