"""Ray options for every actor the exchange creates, from the topology and the policies.

Owns: the actor name scheme (`market-host/us-nj/0`), the label selectors, restart
settings, the placement groups that bind a jurisdiction's hosts to its nodes, and the
`ray_actor_options` of Serve deployments. The actor layer (actors/, exchange/api/)
calls these and passes the result to `.options(**opts)` / `@serve.deployment`; it never
writes a label selector itself.

Rules it must never break:
- every selector names the jurisdiction label (`exchange/jurisdiction`), never the
  site alone: an actor that selected only site=outpost moved to another
  jurisdiction's outpost when its node died;
- a regulated actor's selector names its own jurisdiction, so when those nodes are
  lost it stays PENDING/RESTARTING until a node with that label returns; it never
  falls back to the Region (no `fallback_strategy`, no soft constraints).

Verified on Ray 2.60 (tests/integration/test_placement.py): actor `label_selector`,
`placement_group(..., bundle_label_selector=[one per bundle])` (a single selector for
several bundles is refused; bundles of only zero resources are refused), and an actor
in a bundle that also carries a `label_selector` (both must hold; a mismatch stays
pending). Serve 2.60 accepts `label_selector` in `ray_actor_options`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from placement.policy import HOST_ROLES, Placement, Role, where
from placement.topology import Scenario, Topology

NAMESPACE = "exchange"
DEFAULT_HOST_BUNDLE = {"CPU": 0.5}

# Calls to a host are answered once: a host call that was in flight when its process died
# fails fast (the ingress turns that into MARKET_SUSPENDED and the client retries with the
# same command id, which the host dedupes). Region consumers are idempotent by offset, so
# their calls may be retried transparently.
_MAX_TASK_RETRIES = {
    Role.BET_INGRESS: 0, Role.MARKET_HOST: 0, Role.WALLET_HOST: 0, Role.ACCOUNT: 0,
    Role.ODDS_ENGINE: -1, Role.ANALYTICS: -1, Role.PROJECTOR: -1, Role.REPLICA: -1,
}

_NAME = re.compile(r"^(?P<role>[a-z][a-z-]*)/(?P<jurisdiction>[A-Za-z0-9][A-Za-z0-9._-]*)"
                   r"/(?P<instance>[A-Za-z0-9._-]+)$")


@dataclass(frozen=True, kw_only=True)
class ActorName:
    role: Role
    jurisdiction: str
    instance: str

    def __str__(self) -> str:
        return f"{self.role.value}/{self.jurisdiction}/{self.instance}"


def actor_name(role: Role | str, jurisdiction: str, instance: int | str = 0) -> str:
    """The Ray actor name: `<role>/<jurisdiction>/<instance>`, e.g. `market-host/us-nj/0`.

    Same scheme as actors.directory.host_name("market", "us-nj", 0). `placement check`
    reads the role and jurisdiction back from it.
    """
    name = str(ActorName(role=Role(role), jurisdiction=jurisdiction, instance=str(instance)))
    if not _NAME.match(name):
        raise ValueError(f"not a valid actor name: {name!r}")
    return name


def parse_actor_name(name: str | None) -> ActorName | None:
    """The role/jurisdiction/instance of a name in the scheme; None for any other name.

    Serve replicas (`SERVE_REPLICA::<app>#<deployment>#<id>`) are read from their
    deployment name when it is `serve_deployment_name(...)`.
    """
    if not name:
        return None
    if name.startswith("SERVE_REPLICA::"):
        parts = name[len("SERVE_REPLICA::"):].split("#")
        if len(parts) != 3:
            return None
        deployment, replica = parts[1], parts[2]
        role, sep, jurisdiction = deployment.partition(".")
        if not sep:
            return None
        name = f"{role}/{jurisdiction}/{replica}"
    match = _NAME.match(name)
    if not match:
        return None
    try:
        role = Role(match["role"])
    except ValueError:
        return None
    return ActorName(role=role, jurisdiction=match["jurisdiction"], instance=match["instance"])


def serve_deployment_name(role: Role | str, jurisdiction: str) -> str:
    """A Serve deployment's name: `bet-ingress.us-nj` (Serve puts it in its replicas' names)."""
    return f"{Role(role).value}.{jurisdiction}"


def placement_for(role: Role | str, jurisdiction: str, topology: Topology,
                  scenario: Scenario | str | None = None) -> Placement:
    """The policy's answer for this topology (scenario from the topology unless given)."""
    topology.jurisdiction(jurisdiction)      # unknown jurisdictions are an error, not "Region"
    scenario = topology.scenario(jurisdiction) if scenario is None else scenario
    return where(role, jurisdiction, scenario, region=topology.region_jurisdiction)


def label_selector(role: Role | str, jurisdiction: str, topology: Topology,
                   scenario: Scenario | str | None = None) -> dict[str, str]:
    """`{exchange/jurisdiction: <where it runs>, exchange/site: <that site>}`.

    The jurisdiction key is always there; the site key narrows it (a jurisdiction
    could one day have nodes on two site kinds; then drop the site, never the jurisdiction).
    """
    return nodes_selector(placement_for(role, jurisdiction, topology, scenario).runs_in, topology)


def nodes_selector(jurisdiction: str, topology: Topology) -> dict[str, str]:
    """The selector matching exactly the nodes of `jurisdiction` (the Region's own included)."""
    jur = topology.jurisdiction(jurisdiction)
    keys = topology.labels
    return {keys.jurisdiction: jur.id, keys.site: jur.site.kind.value}


def actor_options(role: Role | str, jurisdiction: str, topology: Topology, *,
                  instance: int | str = 0, scenario: Scenario | str | None = None,
                  namespace: str = NAMESPACE, detached: bool = False,
                  placement_group=None, bundle_index: int = -1) -> dict[str, Any]:
    """Options for `RemoteClass.options(**opts)`: name, namespace, selector, restarts.

    With `placement_group` (from `host_placement_group`), the actor goes into that
    bundle too (the label selector stays: both must hold). Resources (num_cpus...) are
    the caller's: they describe the actor, not where it may run.
    """
    role = Role(role)
    opts: dict[str, Any] = {
        "name": actor_name(role, jurisdiction, instance),
        "namespace": namespace,
        "label_selector": label_selector(role, jurisdiction, topology, scenario),
        "max_restarts": -1,
        "max_task_retries": _MAX_TASK_RETRIES[role],
    }
    if detached:
        opts["lifetime"] = "detached"
    if placement_group is not None:
        opts["scheduling_strategy"] = bundle_strategy(placement_group, bundle_index)
    return opts


def bundle_strategy(placement_group, bundle_index: int = -1):
    """The scheduling strategy that puts an actor in bundle `bundle_index` (-1: any)."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return PlacementGroupSchedulingStrategy(placement_group=placement_group,
                                            placement_group_bundle_index=bundle_index)


def host_bundle_selectors(jurisdiction: str, n_bundles: int, topology: Topology, *,
                          scenario: Scenario | str | None = None) -> list[dict[str, str]]:
    """One selector per bundle (Ray 2.60 wants exactly one per bundle): where the
    jurisdiction's hosts run under its scenario (its own nodes in B and C, the Region in A)."""
    if n_bundles < 1:
        raise ValueError("a placement group needs at least one bundle")
    selector = label_selector(Role.MARKET_HOST, jurisdiction, topology, scenario)
    return [dict(selector) for _ in range(n_bundles)]


def host_placement_group_name(jurisdiction: str, group: str = "hosts") -> str:
    return f"{group}/{jurisdiction}"


def host_placement_group(jurisdiction: str, n_bundles: int, topology: Topology, *,
                         scenario: Scenario | str | None = None,
                         bundle: dict[str, float] | None = None, strategy: str = "SPREAD",
                         name: str | None = None, detached: bool = False):
    """A placement group for the jurisdiction's hosts, every bundle bound by label to the
    nodes the scenario gives them: the jurisdiction's own (B, C) or the Region's (A).

    Bundles need
    a non-zero resource (Ray refuses all-zero bundles): `bundle` defaults to half a CPU.
    SPREAD puts bundles on different nodes of the jurisdiction when it has several.
    If those nodes die the group is RESCHEDULING and comes back only on nodes with the
    same jurisdiction label. Returns the PlacementGroup (call `.ready()` / `.wait()`).
    """
    import ray

    selectors = host_bundle_selectors(jurisdiction, n_bundles, topology, scenario=scenario)
    bundles = [dict(bundle or DEFAULT_HOST_BUNDLE) for _ in range(n_bundles)]
    return ray.util.placement_group(
        bundles, strategy=strategy, name=name or host_placement_group_name(jurisdiction),
        lifetime="detached" if detached else None,
        bundle_label_selector=selectors)


def serve_options(role: Role | str, jurisdiction: str, topology: Topology, *,
                  scenario: Scenario | str | None = None, num_cpus: float = 0) -> dict[str, Any]:
    """Arguments for `@serve.deployment(**opts)` / `.options(**opts)`: name and ray_actor_options.

    Serve 2.60 accepts `label_selector` in `ray_actor_options` (it refuses max_restarts
    and name there: Serve restarts and names replicas itself).
    """
    return {
        "name": serve_deployment_name(role, jurisdiction),
        "ray_actor_options": {
            "num_cpus": num_cpus,
            "label_selector": label_selector(role, jurisdiction, topology, scenario),
        },
    }


def is_host_role(role: Role | str) -> bool:
    return Role(role) in HOST_ROLES
