"""Settlement: winners, losers, void, dead heats, commission."""

from exchange.domain import codes
from exchange.domain.messages import (
    CloseMarket,
    MarketSettled,
    MarketVoided,
    RemoveRunner,
    SettleMarket,
    VoidMarket,
)

from .rules import MARKET, A, B, C, back, cid, define, given, history, lay, open_market, then_refused, when


def settle(winners, dead_heat=(), discounts=None):
    return SettleMarket(
        command_id=cid(), market_id=MARKET, winners=list(winners), dead_heat=list(dead_heat),
        discounts_bp=discounts or {},
    )


def results(result):
    settled = result.events[-1]
    assert isinstance(settled, (MarketSettled, MarketVoided))
    return {r.player_id: (r.pnl, r.commission) for r in settled.results}


def test_a_winning_back_wins_the_odds_and_the_lay_pays_them():
    state = given(history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000)))
    result = when(state, settle([A]))
    assert results(result) == {"alice": (2000, 100), "bob": (-2000, 0)}
    assert state.settlement == "SETTLED" and state.exposure_of("bob") == 0


def test_a_losing_back_loses_its_stake_to_the_lay():
    state = given(history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000)))
    assert results(when(state, settle([B]))) == {"alice": (-1000, 0), "bob": (1000, 50)}


def test_commission_is_on_net_market_winnings_at_the_base_rate_less_discount():
    # alice wins 2000 on A and loses 500 on B: net 1500, 5% is 75; 20% discount: 60
    state = given(history(
        back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000),
        back("alice", B, "4.0", 500), lay("carol", B, "4.0", 500),
    ))
    assert results(when(state, settle([A])))["alice"] == (1500, 75)
    state = given(history(
        back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000),
        back("alice", B, "4.0", 500), lay("carol", B, "4.0", 500),
    ))
    assert results(when(state, settle([A], discounts={"alice": 2000})))["alice"] == (1500, 60)


def test_a_voided_market_returns_everything():
    state = given(history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000)))
    result = when(state, VoidMarket(command_id=cid(), market_id=MARKET))
    assert [type(e).__name__ for e in result.events] == ["MarketClosed", "MarketVoided"]
    assert results(result) == {"alice": (0, 0), "bob": (0, 0)}
    assert state.settlement == "VOIDED"


def test_a_dead_heat_settles_half_the_stake_at_full_odds_and_loses_the_other_half():
    state = given(history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000)))
    # 500 at 3.0 wins 1000, 500 lost: +500
    assert results(when(state, settle([], dead_heat=[A, B]))) == {"alice": (500, 25), "bob": (-500, 0)}


def test_dead_heat_remainders_still_net_to_zero():
    state = given(history(
        back("alice", A, "3.0", 101), lay("bob", A, "3.0", 101),
        back("carol", B, "3.05", 103), lay("dave", B, "3.05", 103),
    ))
    out = results(when(state, settle([], dead_heat=[A, B, C])))
    assert sum(pnl for pnl, _ in out.values()) == 0
    # alice: (202 - 101 - 101) / 3 = 0; carol: (211 - 103 - 103) / 3 = 5/3
    assert out["alice"][0] == 0 and out["carol"][0] in (1, 2)


def test_a_removed_runners_bets_are_void_at_settlement():
    state = given(history(
        back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000),
        RemoveRunner(command_id=cid(), market_id=MARKET, runner_id=A),
    ))
    assert results(when(state, settle([B]))) == {"alice": (0, 0), "bob": (0, 0)}


def test_a_place_market_pays_every_placed_runner_and_splits_a_tie_for_the_last_place():
    events = history(
        define(number_of_winners=2), open_market(),
        back("alice", A, "2.0", 1000), lay("bob", A, "2.0", 1000),
        back("alice", B, "2.0", 1000), lay("bob", B, "2.0", 1000),
        setup=False,
    )
    assert results(when(given(events), settle([A, B])))["alice"] == (2000, 100)
    # A places; B and C tie for the last place: B's bet is half won, half lost
    assert results(when(given(events), settle([A], dead_heat=[B, C])))["alice"] == (1000, 50)
    then_refused(given(events), settle([A]), codes.INVALID_RUNNER)


def test_settling_needs_a_valid_result_and_happens_once():
    state = given(history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000)))
    then_refused(state, settle([99]), codes.INVALID_RUNNER)
    then_refused(state, settle([A, B]), codes.INVALID_RUNNER)
    then_refused(state, settle([A], dead_heat=[A]), codes.INVALID_RUNNER)
    then_refused(state, settle([], dead_heat=[A]), codes.INVALID_RUNNER)
    then_refused(state, settle([A], discounts={"alice": -1}), codes.INVALID_AMOUNT)
    when(state, CloseMarket(command_id=cid(), market_id=MARKET))
    when(state, settle([A]))
    then_refused(state, settle([A]), codes.INVALID_MARKET_STATE)
    then_refused(state, VoidMarket(command_id=cid(), market_id=MARKET), codes.INVALID_MARKET_STATE)
