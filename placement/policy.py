"""The three scenarios as policies: which jurisdiction's nodes may run each role.

Owns the decision "role x jurisdiction x scenario -> where". Pure: no Ray, no files.
It never answers "anywhere": every role runs either on the jurisdiction's own nodes
(regulated: it must never move into the Region or another jurisdiction, it waits for
its nodes instead) or on the Region's nodes.

| role         | A        | B            | C            |
|--------------|----------|--------------|--------------|
| bet-ingress  | Region   | jurisdiction | jurisdiction |
| market-host  | Region   | jurisdiction | jurisdiction |
| wallet-host  | Region   | jurisdiction | jurisdiction |
| account-host | Region   | jurisdiction | jurisdiction |
| odds-engine  | Region   | Region       | jurisdiction |
| analytics    | Region   | Region       | Region       |
| projector    | Region   | Region       | Region       |
| replica      | jurisd.  | jurisdiction | jurisdiction |

The replica is the jurisdiction's copy of its regulated data (scenario A's MirrorMaker 2
and PostgreSQL subscriber); in B and C the data is born there and the copy stays there.
Projectors write the Region's PostgreSQL from the mirrored streams in every scenario.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from placement.topology import Scenario

REGION_JURISDICTION = "intl"


class Role(StrEnum):
    """What an actor does. The value is the first part of its Ray actor name."""
    BET_INGRESS = "bet-ingress"
    MARKET_HOST = "market-host"
    WALLET_HOST = "wallet-host"
    ACCOUNT = "account-host"
    ODDS_ENGINE = "odds-engine"
    ANALYTICS = "analytics"
    PROJECTOR = "projector"
    REPLICA = "replica"


# Roles that run in the jurisdiction, per scenario; every other role runs in the Region.
_IN_JURISDICTION: dict[Scenario, frozenset[Role]] = {
    Scenario.A: frozenset({Role.REPLICA}),
    Scenario.B: frozenset({Role.BET_INGRESS, Role.MARKET_HOST, Role.WALLET_HOST, Role.ACCOUNT,
                           Role.REPLICA}),
    Scenario.C: frozenset({Role.BET_INGRESS, Role.MARKET_HOST, Role.WALLET_HOST, Role.ACCOUNT,
                           Role.REPLICA, Role.ODDS_ENGINE}),
}

# Roles whose instances are hosts: kept in placement groups bound to their nodes.
HOST_ROLES = frozenset({Role.MARKET_HOST, Role.WALLET_HOST, Role.ACCOUNT})


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where one role of one jurisdiction may run.

    `serves` is the jurisdiction whose bets/wallets/markets the actor handles;
    `runs_in` is the jurisdiction whose nodes may run it (the jurisdiction label value
    to select on); `regulated` is true when that is the jurisdiction itself, so the
    actor must wait for those nodes rather than move.
    """
    role: Role
    serves: str
    runs_in: str
    regulated: bool
    scenario: Scenario

    @property
    def in_region(self) -> bool:
        return not self.regulated


def where(role: Role | str, jurisdiction: str, scenario: Scenario | str, *,
          region: str = REGION_JURISDICTION) -> Placement:
    """The placement of `role` serving `jurisdiction` under `scenario`.

    The Region's own jurisdiction (`region`) runs everything in the Region.
    """
    role, scenario = Role(role), Scenario(str(scenario).upper())
    in_jurisdiction = jurisdiction != region and role in _IN_JURISDICTION[scenario]
    return Placement(role=role, serves=jurisdiction, runs_in=jurisdiction if in_jurisdiction else region,
                     regulated=in_jurisdiction, scenario=scenario)
