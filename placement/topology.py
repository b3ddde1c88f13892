"""Where the exchange runs: the Region, the jurisdictions, their sites and node labels.

Owns reading and validating placement/topology.toml into frozen values, and the
per-jurisdiction scenario (from the file, overridden by EXCHANGE_SCENARIO_<JUR> in the
environment, overridden by an explicit `scenario_overrides` mapping). Pure: it never
talks to Ray. It must never guess: an unknown site, scenario or jurisdiction, a
duplicate id or a missing label key is a TopologyError naming the file and the entry.

cluster/stack.py reads the same file with its own few lines ([labels], [[local_nodes]]);
keep those tables' shape.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent / "topology.toml"
SCENARIO_ENV_PREFIX = "EXCHANGE_SCENARIO_"
TOPOLOGY_ENV = "EXCHANGE_TOPOLOGY"


class TopologyError(ValueError):
    """The topology file (or an override) is not valid; the message names what and where."""


class SiteKind(StrEnum):
    REGION = "region"
    LOCAL_ZONE = "local-zone"
    OUTPOST = "outpost"
    ON_PREM = "on-prem"


class Scenario(StrEnum):
    """The seed's three scenarios (DESIGN.md section 6)."""
    A = "A"   # everything in the Region; a copy of the regulated data in the jurisdiction
    B = "B"   # sportsbook (ingress, markets, wallets, accounts) in the jurisdiction
    C = "C"   # B plus the odds engine in the jurisdiction


@dataclass(frozen=True, kw_only=True)
class LabelKeys:
    """The Ray node label keys that identify a node's site, jurisdiction and name."""
    site: str = "exchange/site"
    jurisdiction: str = "exchange/jurisdiction"
    node: str = "exchange/node"


@dataclass(frozen=True, kw_only=True)
class Site:
    """A place Ray nodes run: the Region itself, or a jurisdiction's Local Zone/Outpost/on-prem."""
    kind: SiteKind
    name: str            # e.g. "us-east-1" for the Region, "New Jersey outpost" otherwise

    @property
    def in_region(self) -> bool:
        return self.kind is SiteKind.REGION


@dataclass(frozen=True, kw_only=True)
class Jurisdiction:
    """A licensing jurisdiction, the site its regulated actors run on, and its scenario."""
    id: str              # also the value of the jurisdiction node label: "us-nj"
    name: str
    site: Site
    scenario: Scenario
    currency: str = ""


@dataclass(frozen=True, kw_only=True)
class LocalNode:
    """One `ray start` of the local stack (cluster/stack.py)."""
    name: str
    site: SiteKind
    jurisdiction: str
    head: bool = False
    num_cpus: int = 2


@dataclass(frozen=True, kw_only=True)
class Topology:
    labels: LabelKeys
    region: Jurisdiction          # the Region's own jurisdiction ("intl"): analytics, A's core
    jurisdictions: tuple[Jurisdiction, ...]
    local_nodes: tuple[LocalNode, ...] = ()
    source: str = "<memory>"
    _by_id: dict = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "_by_id", {j.id: j for j in (self.region, *self.jurisdictions)})

    @property
    def region_jurisdiction(self) -> str:
        return self.region.id

    def jurisdiction(self, jurisdiction_id: str) -> Jurisdiction:
        """The jurisdiction (or the Region's own) by id; TopologyError when unknown."""
        try:
            return self._by_id[jurisdiction_id]
        except KeyError:
            known = ", ".join(sorted(self._by_id))
            raise TopologyError(f"{self.source}: unknown jurisdiction {jurisdiction_id!r} "
                                f"(known: {known})") from None

    def knows(self, jurisdiction_id: str) -> bool:
        return jurisdiction_id in self._by_id

    def scenario(self, jurisdiction_id: str) -> Scenario:
        return self.jurisdiction(jurisdiction_id).scenario

    def with_jurisdiction(self, jurisdiction_id: str, *, site: str = "outpost", scenario: str = "B",
                          name: str | None = None, currency: str = "") -> Topology:
        """A copy with one more jurisdiction (tests, or a jurisdiction being commissioned)."""
        if self.knows(jurisdiction_id):
            raise TopologyError(f"{self.source}: jurisdiction {jurisdiction_id!r} already exists")
        kind = _site_kind(site, f"jurisdiction {jurisdiction_id!r}", self.source)
        if kind is SiteKind.REGION:
            raise TopologyError(f"jurisdiction {jurisdiction_id!r}: a jurisdiction's site cannot be "
                                f"the Region (that is the Region's own jurisdiction)")
        extra = Jurisdiction(id=jurisdiction_id, name=name or jurisdiction_id,
                             site=Site(kind=kind, name=f"{name or jurisdiction_id} {kind.value}"),
                             scenario=_scenario(scenario, f"jurisdiction {jurisdiction_id!r}", self.source),
                             currency=currency)
        return replace(self, jurisdictions=(*self.jurisdictions, extra))

    def with_scenarios(self, overrides: Mapping[str, str]) -> Topology:
        """A copy where the named jurisdictions use another scenario."""
        by_id = {j.id: j for j in self.jurisdictions}
        for jur, scenario in overrides.items():
            if jur not in by_id:
                self.jurisdiction(jur)   # raises with the known ids
                raise TopologyError(f"the Region's own jurisdiction {jur!r} has no scenario")
            by_id[jur] = replace(by_id[jur], scenario=_scenario(scenario, f"override for {jur!r}",
                                                                self.source))
        return replace(self, jurisdictions=tuple(by_id[j.id] for j in self.jurisdictions))


def scenario_env_var(jurisdiction_id: str) -> str:
    """EXCHANGE_SCENARIO_US_NJ for us-nj."""
    return SCENARIO_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", jurisdiction_id).upper()


def load_topology(path: str | Path | None = None, *,
                  scenario_overrides: Mapping[str, str] | None = None,
                  env: Mapping[str, str] | None = None) -> Topology:
    """Reads and validates a topology file (default: $EXCHANGE_TOPOLOGY or placement/topology.toml).

    Scenario per jurisdiction: the file's, then EXCHANGE_SCENARIO_<JUR> from `env`
    (default os.environ), then `scenario_overrides`.
    """
    env = os.environ if env is None else env
    path = Path(path or env.get(TOPOLOGY_ENV) or DEFAULT_TOPOLOGY)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise TopologyError(f"cannot read topology file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{path}: not valid TOML: {exc}") from exc
    topo = parse_topology(raw, source=str(path))
    from_env = {j.id: env[scenario_env_var(j.id)] for j in topo.jurisdictions
                if env.get(scenario_env_var(j.id))}
    if from_env:
        topo = topo.with_scenarios(from_env)
    if scenario_overrides:
        topo = topo.with_scenarios(scenario_overrides)
    return topo


def parse_topology(raw: Mapping, *, source: str = "<memory>") -> Topology:
    """Validates the parsed TOML tables and builds a Topology."""
    def need(table: Mapping, key: str, where: str):
        if key not in table or table[key] in ("", None):
            raise TopologyError(f"{source}: {where} lacks {key!r}")
        return table[key]

    labels_raw = raw.get("labels", {})
    labels = LabelKeys(**{k: str(labels_raw[k]) for k in ("site", "jurisdiction", "node")
                          if k in labels_raw})
    unknown_keys = set(labels_raw) - {"site", "jurisdiction", "node"}
    if unknown_keys:
        raise TopologyError(f"{source}: [labels] has unknown keys {sorted(unknown_keys)}")

    region_raw = raw.get("region")
    if not isinstance(region_raw, Mapping):
        raise TopologyError(f"{source}: missing the [region] table")
    region_id = str(need(region_raw, "jurisdiction", "[region]"))
    region_name = str(need(region_raw, "name", "[region]"))
    region = Jurisdiction(id=region_id, name=region_name,
                          site=Site(kind=SiteKind.REGION, name=region_name),
                          scenario=Scenario.A)

    jurisdictions: list[Jurisdiction] = []
    seen = {region_id: "[region]"}
    for i, j in enumerate(raw.get("jurisdictions", [])):
        where = f"[[jurisdictions]] #{i + 1}"
        jid = str(need(j, "id", where))
        where = f"jurisdiction {jid!r}"
        if jid in seen:
            raise TopologyError(f"{source}: duplicate jurisdiction id {jid!r} ({seen[jid]} and {where})")
        seen[jid] = where
        kind = _site_kind(need(j, "site", where), where, source)
        if kind is SiteKind.REGION:
            raise TopologyError(f"{source}: {where} has site 'region': a jurisdiction's regulated "
                                f"actors run on its own site (local-zone, outpost or on-prem)")
        name = str(j.get("name", jid))
        jurisdictions.append(Jurisdiction(
            id=jid, name=name, site=Site(kind=kind, name=f"{name} {kind.value}"),
            scenario=_scenario(need(j, "scenario", where), where, source),
            currency=str(j.get("currency", ""))))

    nodes: list[LocalNode] = []
    node_names: set[str] = set()
    for i, n in enumerate(raw.get("local_nodes", [])):
        where = f"[[local_nodes]] #{i + 1}"
        name = str(need(n, "name", where))
        where = f"local node {name!r}"
        if name in node_names:
            raise TopologyError(f"{source}: duplicate local node name {name!r}")
        node_names.add(name)
        kind = _site_kind(need(n, "site", where), where, source)
        jur = str(need(n, "jurisdiction", where))
        if jur not in seen:
            raise TopologyError(f"{source}: {where} names unknown jurisdiction {jur!r}")
        expected = SiteKind.REGION if jur == region_id else \
            next(x.site.kind for x in jurisdictions if x.id == jur)
        if kind is not expected:
            raise TopologyError(f"{source}: {where} is a {kind.value} node of {jur!r}, "
                                f"whose site is {expected.value}")
        nodes.append(LocalNode(name=name, site=kind, jurisdiction=jur, head=bool(n.get("head", False)),
                               num_cpus=int(n.get("num_cpus", 2))))
    if nodes and sum(n.head for n in nodes) != 1:
        raise TopologyError(f"{source}: exactly one local node must be the head")
    return Topology(labels=labels, region=region, jurisdictions=tuple(jurisdictions),
                    local_nodes=tuple(nodes), source=source)


def _site_kind(value, where: str, source: str) -> SiteKind:
    try:
        return SiteKind(value)
    except ValueError:
        raise TopologyError(f"{source}: {where} has unknown site {value!r} "
                            f"(one of: {', '.join(s.value for s in SiteKind)})") from None


def _scenario(value, where: str, source: str) -> Scenario:
    try:
        return Scenario(str(value).upper())
    except ValueError:
        raise TopologyError(f"{source}: {where} has unknown scenario {value!r} "
                            f"(one of: {', '.join(s.value for s in Scenario)})") from None
