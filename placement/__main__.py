"""`python -m placement plan|check`: what runs where, and whether a live cluster obeys it.

plan  prints, for a topology and a scenario, every role of every jurisdiction: where it
      runs (Region or the jurisdiction's site) and the label selector its actors get.
check connects to a live Ray cluster, lists every ALIVE actor with its node and that
      node's labels, reads role and jurisdiction from the actor's name (placement.options
      name scheme) and exits 1 when any actor is on a node its policy does not allow.
      Actors whose names are outside the scheme are listed as unmanaged and pass.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

from placement.options import label_selector, parse_actor_name, placement_for
from placement.policy import Role
from placement.topology import Scenario, Topology, TopologyError, load_topology


def plan_rows(topology: Topology, scenario: Scenario | str | None = None) -> list[dict]:
    """One row per jurisdiction x role: the plan `plan` prints (scenario None: the topology's)."""
    rows = []
    for jur in topology.jurisdictions:
        for role in Role:
            p = placement_for(role, jur.id, topology, scenario)
            runs_in = topology.jurisdiction(p.runs_in)
            rows.append({
                "jurisdiction": jur.id, "scenario": p.scenario.value, "role": role.value,
                "runs_in": p.runs_in, "site": runs_in.site.kind.value, "regulated": p.regulated,
                "where": "region" if runs_in.site.in_region else f"{runs_in.site.kind.value} ({jur.id})",
                "label_selector": label_selector(role, jur.id, topology, scenario),
            })
    return rows


def cmd_plan(args) -> int:
    topology = load_topology(args.topology)
    rows = plan_rows(topology, args.scenario)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    src = f"scenario {args.scenario} for every jurisdiction" if args.scenario \
        else "each jurisdiction's own scenario"
    print(f"topology {topology.source}; region {topology.region.name} "
          f"(jurisdiction {topology.region.id}); {src}")
    header = f"{'jurisdiction':<12} {'sc':<2} {'role':<13} {'where':<22} {'regulated':<9} label selector"
    print(header)
    print("-" * len(header))
    for r in rows:
        sel = ",".join(f"{k}={v}" for k, v in r["label_selector"].items())
        print(f"{r['jurisdiction']:<12} {r['scenario']:<2} {r['role']:<13} {r['where']:<22} "
              f"{'yes' if r['regulated'] else 'no':<9} {sel}")
    return 0


@dataclass(frozen=True, kw_only=True)
class ActorReport:
    name: str
    namespace: str
    class_name: str
    node: str              # the node's exchange/node label (or its id)
    node_jurisdiction: str
    node_site: str
    verdict: str           # "ok", "VIOLATION" or "unmanaged"
    reason: str = ""


def judge(actors: list[dict], nodes: dict[str, dict[str, str]], topology: Topology) -> list[ActorReport]:
    """Pure: each actor (name, namespace, class_name, node_id) against its policy.

    `nodes` maps node id -> that node's labels. An actor in the scheme whose jurisdiction
    is not in the topology is a violation (there is no policy that allows it anywhere).
    """
    keys = topology.labels
    reports = []
    for a in actors:
        labels = nodes.get(a.get("node_id") or "", {})
        node_jur = labels.get(keys.jurisdiction, "")
        common = dict(name=a.get("name") or "", namespace=a.get("namespace") or "",
                      class_name=a.get("class_name") or "",
                      node=labels.get(keys.node, (a.get("node_id") or "?")[:12]),
                      node_jurisdiction=node_jur or "-", node_site=labels.get(keys.site, "-"))
        parsed = parse_actor_name(a.get("name"))
        if parsed is None:
            reports.append(ActorReport(**common, verdict="unmanaged"))
            continue
        if not topology.knows(parsed.jurisdiction):
            reports.append(ActorReport(**common, verdict="VIOLATION",
                                       reason=f"jurisdiction {parsed.jurisdiction!r} is not in the topology"))
            continue
        p = placement_for(parsed.role, parsed.jurisdiction, topology)
        if node_jur != p.runs_in:
            where = "its jurisdiction's" if p.regulated else "the Region's"
            reports.append(ActorReport(**common, verdict="VIOLATION",
                                       reason=f"scenario {p.scenario.value}: {parsed.role.value} of "
                                              f"{parsed.jurisdiction} must run on {where} nodes "
                                              f"({keys.jurisdiction}={p.runs_in})"))
        else:
            reports.append(ActorReport(**common, verdict="ok"))
    return reports


def live_actors_and_nodes(address: str | None, namespace: str | None):
    """ALIVE actors (as dicts), node id -> labels, and the number of alive nodes (state API)."""
    import ray
    from ray.util.state import list_actors, list_nodes

    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto",
                 logging_level="ERROR", log_to_driver=False)
    filters = [("state", "=", "ALIVE")]
    if namespace:
        filters.append(("ray_namespace", "=", namespace))
    actors = [{"name": a.name, "namespace": a.ray_namespace, "class_name": a.class_name,
               "node_id": a.node_id}
              for a in list_actors(filters=filters, detail=True, limit=10_000, raise_on_missing_output=False)]
    listed = list_nodes(detail=True, limit=10_000)    # dead ones too: an actor may outlive notice
    nodes = {n.node_id: dict(n.labels or {}) for n in listed}
    return actors, nodes, sum(1 for n in listed if n.state == "ALIVE")


def cmd_check(args) -> int:
    topology = load_topology(args.topology)
    actors, nodes, alive = live_actors_and_nodes(args.address, args.namespace)
    reports = judge(actors, nodes, topology)
    if args.json:
        print(json.dumps([r.__dict__ for r in reports], indent=2))
    else:
        print(f"{len(reports)} alive actors on {alive} alive nodes; topology {topology.source}")
        print(f"{'verdict':<9} {'actor':<44} {'node':<18} {'jurisdiction':<12} {'site':<10} class")
        order = {"VIOLATION": 0, "ok": 1, "unmanaged": 2}
        for r in sorted(reports, key=lambda r: (order[r.verdict], r.name)):
            label = r.name or "(unnamed)"
            if r.namespace and r.name:
                label = f"{r.namespace}:{r.name}"
            print(f"{r.verdict:<9} {label:<44} {r.node:<18} {r.node_jurisdiction:<12} {r.node_site:<10} "
                  f"{r.class_name}")
            if r.reason:
                print(f"          ^ {r.reason}")
    bad = [r for r in reports if r.verdict == "VIOLATION"]
    if not args.json:
        print(f"{len(bad)} actor(s) outside the nodes their policy allows" if bad
              else "every managed actor is where its policy allows")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m placement",
        description="Where the exchange's actors may run (placement/topology.toml and the "
                    "scenario policies A, B, C), and whether a live Ray cluster obeys it.")
    parser.add_argument("--topology", metavar="FILE",
                        help="topology file (default: $EXCHANGE_TOPOLOGY or placement/topology.toml); "
                             "EXCHANGE_SCENARIO_<JUR> overrides a jurisdiction's scenario")
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="print what runs where for a topology and scenario",
                          description="Print, per jurisdiction and role, where it runs and its "
                                      "label selector.")
    plan.add_argument("--scenario", choices=[s.value for s in Scenario],
                      help="apply this scenario to every jurisdiction (default: each one's own)")
    plan.add_argument("--topology", metavar="FILE", default=argparse.SUPPRESS,
                      help="topology file (as above)")
    plan.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    check = sub.add_parser("check", help="check a live cluster's actors against their policies "
                                         "(exit 1 on any violation)",
                           description="List every ALIVE actor, its node and the node's labels; "
                                       "exit 1 when a managed actor is on a node its policy forbids.")
    check.add_argument("--address", help="Ray address (default: $RAY_ADDRESS, from state/env.sh)")
    check.add_argument("--namespace", help="only actors of this Ray namespace (default: all)")
    check.add_argument("--topology", metavar="FILE", default=argparse.SUPPRESS,
                       help="topology file (as above)")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        return {"plan": cmd_plan, "check": cmd_check}[args.command](args)
    except TopologyError as exc:
        print(f"placement: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:          # `| head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
