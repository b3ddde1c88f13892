"""The exchange's real hosts land where each scenario says, and `placement check` agrees."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from placement import load_topology


@pytest.mark.parametrize("scenario, expected", [("A", "intl"), ("B", "ca-on"), ("C", "ca-on")])
def test_real_hosts_run_on_the_nodes_their_scenario_allows(ray_session, stack, scenario, expected):
    from ray.util.state import list_actors

    from actors.deploy import deploy_hosts, remove_hosts

    ray = ray_session
    topology = load_topology(scenario_overrides={"ca-on": scenario})
    namespace = f"hostplace-{scenario}-{uuid.uuid4().hex[:6]}"
    hosts = deploy_hosts("ca-on", stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"], 1, 1, namespace=namespace,
                         prefix=f"hp{uuid.uuid4().hex[:6]}", topology=topology, scenario=scenario)
    try:
        labels = {n["NodeID"]: n["Labels"] for n in ray.nodes() if n["Alive"]}
        actors = [a for a in list_actors(filters=[("ray_namespace", "=", namespace)], detail=True, limit=50)
                  if a.state == "ALIVE"]
        assert {a.name for a in actors} == {"market-host/ca-on/0", "wallet-host/ca-on/0"}
        for a in actors:
            assert labels[a.node_id]["exchange/jurisdiction"] == expected, (scenario, a.name)
        check = subprocess.run([sys.executable, "-m", "placement", "check", "--namespace", namespace],
                               capture_output=True, text=True, timeout=120,
                               env={**__import__("os").environ, "EXCHANGE_SCENARIO_CA_ON": scenario})
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        remove_hosts(hosts)
