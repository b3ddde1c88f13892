"""The deployment files start Ray nodes with exactly the topology's labels.

cluster/kuberay/rayservice.yaml (KubeRay groups' `labels:` and the Serve config's
label selectors) and cluster/aws/ray-cluster.yaml (launcher node types' `labels:`)
must name the same (site, jurisdiction) pairs as placement/topology.toml, pin the
jurisdictions' pods to their node groups, and never select on the site alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from placement.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
TOPO = load_topology(env={})
KEYS = TOPO.labels


def topology_pairs() -> set[tuple[str, str]]:
    pairs = {(TOPO.region.site.kind.value, TOPO.region.id)}
    pairs |= {(j.site.kind.value, j.id) for j in TOPO.jurisdictions}
    return pairs


def pair(labels: dict, where: str) -> tuple[str, str]:
    assert set(labels) <= {KEYS.site, KEYS.jurisdiction, KEYS.node}, f"{where}: unknown label keys {labels}"
    assert KEYS.jurisdiction in labels and KEYS.site in labels, f"{where}: needs site and jurisdiction"
    return labels[KEYS.site], labels[KEYS.jurisdiction]


@pytest.fixture(scope="module")
def rayservice() -> dict:
    return yaml.safe_load((ROOT / "cluster/kuberay/rayservice.yaml").read_text())


def test_kuberay_groups_carry_the_topologys_labels(rayservice):
    cluster = rayservice["spec"]["rayClusterConfig"]
    head = pair(cluster["headGroupSpec"]["labels"], "head group")
    workers = {g["groupName"]: pair(g["labels"], g["groupName"]) for g in cluster["workerGroupSpecs"]}

    assert head == (TOPO.region.site.kind.value, TOPO.region.id)
    assert {head, *workers.values()} == topology_pairs()


def test_kuberay_jurisdiction_pods_are_pinned_and_tolerate_their_taint(rayservice):
    for group in rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        site, jur = pair(group["labels"], group["groupName"])
        spec = group["template"]["spec"]
        assert spec["nodeSelector"][KEYS.site] == site
        if jur == TOPO.region.id:
            continue
        assert spec["nodeSelector"][KEYS.jurisdiction] == jur
        assert {"key": KEYS.jurisdiction, "operator": "Equal", "value": jur, "effect": "NoSchedule"} \
            in spec["tolerations"]
        assert group["minReplicas"] >= 1, f"{group['groupName']}: a jurisdiction must keep a node"


def test_serve_config_selects_on_the_jurisdiction(rayservice):
    serve_config = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    selectors = [d["ray_actor_options"]["label_selector"]
                 for app in serve_config["applications"] for d in app.get("deployments", [])
                 if "label_selector" in d.get("ray_actor_options", {})]
    assert selectors, "the Serve config pins no deployment"
    assert {pair(s, "serve selector") for s in selectors} <= topology_pairs()
    assert {s[KEYS.jurisdiction] for s in selectors} == {j.id for j in TOPO.jurisdictions}


def test_launcher_node_types_carry_the_topologys_labels():
    config = yaml.safe_load((ROOT / "cluster/aws/ray-cluster.yaml").read_text())
    types = {name: pair(t["labels"], name) for name, t in config["available_node_types"].items()}

    assert set(types.values()) == topology_pairs()
    assert types[config["head_node_type"]] == (TOPO.region.site.kind.value, TOPO.region.id)
    for name, (site, jur) in types.items():
        if jur != TOPO.region.id:
            assert config["available_node_types"][name]["min_workers"] >= 1


def test_local_stack_nodes_use_the_same_pairs():
    assert {(n.site.value, n.jurisdiction) for n in TOPO.local_nodes} == topology_pairs()
