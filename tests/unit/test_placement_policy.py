"""placement.policy: every role x scenario, for a jurisdiction and for the Region itself."""

from __future__ import annotations

import pytest

from placement.policy import Role, where
from placement.topology import Scenario

J, R = "jurisdiction", "region"
EXPECTED = {   # role: (A, B, C)
    Role.BET_INGRESS: (R, J, J),
    Role.MARKET_HOST: (R, J, J),
    Role.WALLET_HOST: (R, J, J),
    Role.ACCOUNT: (R, J, J),
    Role.ODDS_ENGINE: (R, R, J),
    Role.ANALYTICS: (R, R, R),
    Role.PROJECTOR: (R, R, R),
    Role.REPLICA: (J, J, J),
}


def test_the_table_covers_every_role():
    assert set(EXPECTED) == set(Role)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("scenario", list(Scenario))
def test_where_each_role_runs(role, scenario):
    expected = EXPECTED[role]["ABC".index(scenario.value)]

    placement = where(role, "us-nj", scenario, region="intl")

    assert placement.role is role and placement.serves == "us-nj" and placement.scenario is scenario
    assert placement.runs_in == ("us-nj" if expected == J else "intl")
    assert placement.regulated is (expected == J)
    assert placement.in_region is (expected == R)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("scenario", list(Scenario))
def test_the_regions_own_jurisdiction_runs_everything_in_the_region(role, scenario):
    placement = where(role, "intl", scenario, region="intl")
    assert placement.runs_in == "intl" and not placement.regulated


def test_analytics_never_leaves_the_region():
    assert all(where(Role.ANALYTICS, j, s).runs_in == "intl"
               for j in ("us-nj", "ca-on", "gb") for s in Scenario)


def test_strings_are_accepted_and_bad_ones_refused():
    assert where("market-host", "us-nj", "b").regulated
    with pytest.raises(ValueError):
        where("croupier", "us-nj", "B")
    with pytest.raises(ValueError):
        where(Role.MARKET_HOST, "us-nj", "D")
