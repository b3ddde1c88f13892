"""placement.options and the plan/check logic: names, selectors, restarts, judging a cluster."""

from __future__ import annotations

import json

import pytest

from placement import options as popts
from placement.__main__ import judge, main, plan_rows
from placement.policy import Role
from placement.topology import Scenario, TopologyError, load_topology

TOPO = load_topology(env={})
JUR = TOPO.labels.jurisdiction


def test_name_scheme_round_trips_and_matches_the_directory():
    from actors.directory import host_name

    assert popts.actor_name(Role.MARKET_HOST, "us-nj", 0) == "market-host/us-nj/0"
    assert popts.actor_name(Role.ACCOUNT, "us-nj", 3) == host_name("account", "us-nj", 3)
    for role in Role:
        parsed = popts.parse_actor_name(popts.actor_name(role, "ca-on", "7"))
        assert (parsed.role, parsed.jurisdiction, parsed.instance) == (role, "ca-on", "7")


@pytest.mark.parametrize("name", [None, "", "SERVE_CONTROLLER_ACTOR", "croupier/us-nj/0",
                                  "market-host/us-nj", "market-host//0", "SERVE_REPLICA::app#Ingress#x1"])
def test_names_outside_the_scheme_are_not_parsed(name):
    assert popts.parse_actor_name(name) is None


def test_serve_replica_names_are_read_from_the_deployment_name():
    deployment = popts.serve_deployment_name(Role.BET_INGRESS, "us-nj")
    parsed = popts.parse_actor_name(f"SERVE_REPLICA::exchange#{deployment}#k3j2")
    assert (parsed.role, parsed.jurisdiction) == (Role.BET_INGRESS, "us-nj")


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("scenario", list(Scenario))
@pytest.mark.parametrize("jurisdiction", ["us-nj", "ca-on", "intl"])
def test_every_selector_names_the_jurisdiction_label(role, scenario, jurisdiction):
    opts = popts.actor_options(role, jurisdiction, TOPO, scenario=scenario, instance=2)

    placement = popts.placement_for(role, jurisdiction, TOPO, scenario)
    assert opts["label_selector"][JUR] == placement.runs_in
    site = TOPO.jurisdiction(placement.runs_in).site.kind.value
    assert opts["label_selector"][TOPO.labels.site] == site
    assert opts["name"] == f"{role.value}/{jurisdiction}/2"
    assert opts["namespace"] == popts.NAMESPACE
    assert opts["max_restarts"] == -1
    assert "fallback_strategy" not in opts and "lifetime" not in opts


def test_hosts_fail_fast_and_region_consumers_retry():
    assert popts.actor_options(Role.MARKET_HOST, "us-nj", TOPO)["max_task_retries"] == 0
    assert popts.actor_options(Role.PROJECTOR, "us-nj", TOPO)["max_task_retries"] == -1
    assert popts.actor_options(Role.WALLET_HOST, "us-nj", TOPO, detached=True)["lifetime"] == "detached"


def test_scenario_comes_from_the_topology_unless_given():
    assert popts.label_selector(Role.ODDS_ENGINE, "us-nj", TOPO)[JUR] == "intl"     # B
    assert popts.label_selector(Role.ODDS_ENGINE, "ca-on", TOPO)[JUR] == "ca-on"    # C
    assert popts.label_selector(Role.ODDS_ENGINE, "us-nj", TOPO, "C")[JUR] == "us-nj"


def test_unknown_jurisdiction_is_an_error_not_the_region():
    with pytest.raises(TopologyError):
        popts.actor_options(Role.MARKET_HOST, "xx-test", TOPO)
    topo = TOPO.with_jurisdiction("xx-test")
    assert popts.actor_options(Role.MARKET_HOST, "xx-test", topo)["label_selector"][JUR] == "xx-test"


def test_bundle_selectors_one_per_bundle_on_the_jurisdiction():
    selectors = popts.host_bundle_selectors("us-nj", 3, TOPO)
    assert selectors == [{JUR: "us-nj", TOPO.labels.site: "outpost"}] * 3
    assert popts.host_bundle_selectors("us-nj", 1, TOPO, scenario="A")[0][JUR] == "intl"
    with pytest.raises(ValueError):
        popts.host_bundle_selectors("us-nj", 0, TOPO)


def test_serve_options_carry_the_selector_in_ray_actor_options():
    opts = popts.serve_options(Role.BET_INGRESS, "ca-on", TOPO, num_cpus=1)
    assert opts["name"] == "bet-ingress.ca-on"
    assert opts["ray_actor_options"] == {"num_cpus": 1,
                                         "label_selector": {JUR: "ca-on", TOPO.labels.site: "local-zone"}}


def test_judge_flags_actors_outside_their_jurisdiction():
    nodes = {"n-region": {JUR: "intl", "exchange/node": "region-1", "exchange/site": "region"},
             "n-nj": {JUR: "us-nj", "exchange/node": "us-nj-outpost-1", "exchange/site": "outpost"},
             "n-on": {JUR: "ca-on", "exchange/node": "ca-on-lz-1", "exchange/site": "local-zone"}}
    actors = [
        {"name": "market-host/us-nj/0", "node_id": "n-nj"},     # B: ok
        {"name": "market-host/us-nj/1", "node_id": "n-region"}, # B: must be in us-nj
        {"name": "market-host/us-nj/2", "node_id": "n-on"},     # another jurisdiction
        {"name": "odds-engine/us-nj/0", "node_id": "n-region"}, # B: ok
        {"name": "odds-engine/ca-on/0", "node_id": "n-region"}, # C: must be in ca-on
        {"name": "analytics/ca-on/0", "node_id": "n-on"},       # analytics only in the Region
        {"name": "market-host/gb/0", "node_id": "n-region"},    # no policy for gb
        {"name": "SERVE_CONTROLLER_ACTOR", "node_id": "n-region"},
        {"name": "", "node_id": "n-nj"},
    ]
    verdicts = [r.verdict for r in judge(actors, nodes, TOPO)]
    assert verdicts == ["ok", "VIOLATION", "VIOLATION", "ok", "VIOLATION", "VIOLATION", "VIOLATION",
                        "unmanaged", "unmanaged"]


def test_plan_rows_and_cli(capsys):
    rows = plan_rows(TOPO, "C")
    assert len(rows) == len(Role) * len(TOPO.jurisdictions)
    assert all(r["label_selector"][JUR] for r in rows)
    assert main(["plan", "--scenario", "A", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {(r["role"], r["runs_in"]) for r in printed if r["jurisdiction"] == "us-nj"} == \
        {(role.value, "us-nj" if role is Role.REPLICA else "intl") for role in Role}
    assert main(["plan"]) == 0
    assert "market-host" in capsys.readouterr().out


def test_cli_help_on_every_command(capsys):
    for argv in (["--help"], ["plan", "--help"], ["check", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 0
    assert "--namespace" in capsys.readouterr().out


def test_cli_reports_a_bad_topology(tmp_path, capsys):
    bad = tmp_path / "t.toml"
    bad.write_text('[region]\nname = "r"\njurisdiction = "intl"\n'
                   '[[jurisdictions]]\nid = "x"\nsite = "moon"\nscenario = "B"\n')
    assert main(["plan", "--topology", str(bad)]) == 2
    assert "unknown site 'moon'" in capsys.readouterr().err
