"""placement.topology: the file loads, validates, and scenarios can be overridden."""

from __future__ import annotations

import tomllib

import pytest

from placement.topology import (DEFAULT_TOPOLOGY, Scenario, SiteKind, TopologyError, load_topology,
                                parse_topology, scenario_env_var)

BASE = tomllib.loads(DEFAULT_TOPOLOGY.read_text())


def variant(**changes) -> dict:
    raw = tomllib.loads(DEFAULT_TOPOLOGY.read_text())
    raw.update(changes)
    return raw


def test_the_project_topology_loads():
    topo = load_topology(env={})
    assert topo.region.id == "intl" and topo.region.site.kind is SiteKind.REGION
    assert {j.id: (j.site.kind, j.scenario) for j in topo.jurisdictions} == {
        "us-nj": (SiteKind.OUTPOST, Scenario.B), "ca-on": (SiteKind.LOCAL_ZONE, Scenario.C)}
    assert topo.labels.jurisdiction == "exchange/jurisdiction"
    assert sum(n.head for n in topo.local_nodes) == 1
    assert {n.jurisdiction for n in topo.local_nodes} == {"intl", "us-nj", "ca-on"}


def test_unknown_site_is_refused_with_its_name():
    raw = variant(jurisdictions=[{**BASE["jurisdictions"][0], "site": "moon-base"}])
    with pytest.raises(TopologyError, match="unknown site 'moon-base'"):
        parse_topology(raw)


def test_unknown_scenario_is_refused():
    raw = variant(jurisdictions=[{**BASE["jurisdictions"][0], "scenario": "D"}])
    with pytest.raises(TopologyError, match="unknown scenario 'D'"):
        parse_topology(raw)


def test_duplicate_jurisdiction_is_refused():
    raw = variant(jurisdictions=[BASE["jurisdictions"][0], BASE["jurisdictions"][0]])
    with pytest.raises(TopologyError, match="duplicate jurisdiction id 'us-nj'"):
        parse_topology(raw)


def test_a_jurisdiction_cannot_reuse_the_regions_id():
    raw = variant(jurisdictions=[{**BASE["jurisdictions"][0], "id": "intl"}])
    with pytest.raises(TopologyError, match="duplicate jurisdiction id 'intl'"):
        parse_topology(raw)


def test_a_jurisdiction_in_the_region_is_refused():
    raw = variant(jurisdictions=[{**BASE["jurisdictions"][0], "site": "region"}])
    with pytest.raises(TopologyError, match="site 'region'"):
        parse_topology(raw)


def test_duplicate_local_node_and_wrong_site_are_refused():
    nodes = BASE["local_nodes"]
    with pytest.raises(TopologyError, match="duplicate local node"):
        parse_topology(variant(local_nodes=[*nodes, nodes[1]]))
    with pytest.raises(TopologyError, match="whose site is outpost"):
        parse_topology(variant(local_nodes=[nodes[0], {**nodes[2], "site": "local-zone"}]))
    with pytest.raises(TopologyError, match="unknown jurisdiction 'gb'"):
        parse_topology(variant(local_nodes=[nodes[0], {**nodes[2], "jurisdiction": "gb"}]))


def test_unknown_jurisdiction_lookup_names_the_known_ones():
    with pytest.raises(TopologyError, match="unknown jurisdiction 'gb'.*ca-on, intl, us-nj"):
        load_topology(env={}).jurisdiction("gb")


def test_scenario_overrides_env_then_explicit():
    assert scenario_env_var("us-nj") == "EXCHANGE_SCENARIO_US_NJ"
    env = {"EXCHANGE_SCENARIO_US_NJ": "c", "EXCHANGE_SCENARIO_CA_ON": "A"}
    topo = load_topology(env=env, scenario_overrides={"ca-on": "B"})
    assert topo.scenario("us-nj") is Scenario.C
    assert topo.scenario("ca-on") is Scenario.B
    with pytest.raises(TopologyError, match="unknown scenario 'Z'"):
        load_topology(env={}, scenario_overrides={"us-nj": "Z"})
    with pytest.raises(TopologyError, match="unknown jurisdiction 'gb'"):
        load_topology(env={}, scenario_overrides={"gb": "A"})


def test_with_jurisdiction_adds_a_test_jurisdiction_without_touching_the_file():
    topo = load_topology(env={}).with_jurisdiction("xx-test", site="on-prem", scenario="C")
    assert topo.jurisdiction("xx-test").site.kind is SiteKind.ON_PREM
    assert topo.scenario("xx-test") is Scenario.C
    with pytest.raises(TopologyError, match="already exists"):
        topo.with_jurisdiction("us-nj")


def test_unreadable_or_invalid_file(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "missing.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[region\n")
    with pytest.raises(TopologyError, match="not valid TOML"):
        load_topology(bad, env={})
