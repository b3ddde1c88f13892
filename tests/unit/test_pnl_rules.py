"""Matched P&L by outcome (listMarketProfitAndLoss): given a market's history, then each
runner's ifWin (and ifLose on multi-winner markets), in pence."""

from exchange.domain import pnl
from exchange.domain.messages import CloseMarket, RemoveRunner, SettleMarket, VoidMarket

from .rules import A, B, C, MARKET, back, cancel, cid, define, given, history, lay, open_market, when


def lines(state, player, **kw):
    out = pnl.market_pnl(state, player, **kw)
    return None if out is None else [tuple(line) for line in out.runners]


def test_a_matched_back_wins_its_profit_on_its_runner_and_loses_its_stake_on_the_others():
    # Arrange: bob lays 1000 at 3.0 on A, alice backs it
    state = given(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000)))
    # Act / Assert
    assert lines(state, "alice") == [(A, 2000, None), (B, -1000, None), (C, -1000, None)]
    assert lines(state, "bob") == [(A, -2000, None), (B, 1000, None), (C, 1000, None)]


def test_unmatched_orders_count_for_nothing_and_a_part_fill_only_for_its_matched_part():
    state = given(history(lay("bob", A, "3.0", 400), back("alice", A, "3.0", 1000), lay("bob", B, "5.0", 500)))
    # alice: 400 matched at 3.0, 600 resting; bob: 400 matched, 500 lay on B resting
    assert lines(state, "alice") == [(A, 800, None), (B, -400, None), (C, -400, None)]
    assert lines(state, "bob") == [(A, -800, None), (B, 400, None), (C, 400, None)]
    assert state.exposure_of("alice") == 1000          # exposure still counts the resting back
    assert state.exposure_of("bob") == 2000 - 400      # and the resting lay's liability (2000 on B)


def test_a_player_without_bets_has_zero_everywhere():
    state = given(history(back("alice", A, "2.0", 100)))
    assert lines(state, "nobody") == [(A, 0, None), (B, 0, None), (C, 0, None)]
    assert lines(state, "alice") == [(A, 0, None), (B, 0, None), (C, 0, None)]   # nothing matched


def test_cancelling_the_rest_leaves_the_matched_pnl_alone():
    events = history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 300))
    state = given(events)
    before = lines(state, "alice")
    result = when(state, cancel("alice", 1))
    assert result.status == "SUCCESS"
    assert lines(state, "alice") == before == [(A, 600, None), (B, -300, None), (C, -300, None)]


def test_offsetting_backs_on_two_runners():
    state = given(history(lay("bob", A, "3.0", 1000), lay("bob", B, "4.0", 500),
                          back("alice", A, "3.0", 1000), back("alice", B, "4.0", 500)))
    # A wins: +2000 - 500; B wins: +1500 - 1000; C wins: -1500
    assert lines(state, "alice") == [(A, 1500, None), (B, 500, None), (C, -1500, None)]
    assert state.exposure_of("alice") == 1500 == -min(line[1] for line in lines(state, "alice"))


def test_a_multi_winner_market_gives_each_runner_its_own_win_and_lose():
    state = given(history(define(number_of_winners=2), open_market(),
                          lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000),
                          back("bob", B, "2.0", 200), lay("alice", B, "2.0", 200), setup=False))
    assert lines(state, "alice") == [(A, 2000, -1000), (B, -200, 200), (C, 0, 0)]
    assert lines(state, "bob") == [(A, -2000, 1000), (B, 200, -200), (C, 0, 0)]
    # the worst winner set for alice: {B, C}: -200 + 0 + -1000 (A loses)
    assert state.exposure_of("alice") == 1200


def test_a_removed_runner_is_left_out_and_its_bets_are_void():
    state = given(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000),
                          lay("bob", B, "2.0", 500), back("alice", B, "2.0", 500)))
    result = when(state, RemoveRunner(command_id=cid(), market_id=MARKET, runner_id=B))
    assert result.status == "SUCCESS"
    assert lines(state, "alice") == [(A, 2000, None), (C, -1000, None)]


def test_net_of_commission_takes_the_base_rate_off_winning_outcomes_only():
    state = given(history(define(commission_rate_bp=500), open_market(),
                          lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000), setup=False))
    out = pnl.market_pnl(state, "alice", net=True)
    assert out.commission_bp == 500
    assert [tuple(x) for x in out.runners] == [(A, 1900, None), (B, -1000, None), (C, -1000, None)]
    assert pnl.market_pnl(state, "alice").commission_bp is None
    assert pnl.net_of_commission(1999, 500) == 1999 - 99      # commission rounds down
    assert pnl.net_of_commission(-5, 500) == -5


def test_a_settled_market_is_left_out_unless_settled_bets_are_asked_for_and_paid_its_winners_line():
    state = given(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 700)))
    expected = {p: lines(state, p) for p in ("alice", "bob")}
    result = when(state, SettleMarket(command_id=cid(), market_id=MARKET, winners=[B]))
    assert result.status == "SUCCESS"
    assert lines(state, "alice") is None
    assert lines(state, "alice", include_settled=True) == expected["alice"]
    paid = {r.player_id: r.pnl for r in state.results}
    assert paid == {p: dict((s, w) for s, w, _ in expected[p])[B] for p in ("alice", "bob")}


def test_a_voided_market_is_zero_everywhere():
    state = given(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000)))
    assert when(state, CloseMarket(command_id=cid(), market_id=MARKET)).status == "SUCCESS"
    assert lines(state, "alice") == [(A, 2000, None), (B, -1000, None), (C, -1000, None)]  # closed, not settled
    assert when(state, VoidMarket(command_id=cid(), market_id=MARKET)).status == "SUCCESS"
    assert lines(state, "alice") is None
    assert lines(state, "alice", include_settled=True) == [(A, 0, None), (B, 0, None), (C, 0, None)]

