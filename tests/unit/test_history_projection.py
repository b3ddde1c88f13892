"""The history read model: cleared orders when a market completes, statement items with
running balances, and replays that change nothing (exchange/domain/history.py)."""

from __future__ import annotations

from exchange.domain.history import (
    CANCELLED,
    COMMISSION,
    DEPOSIT,
    LAPSED,
    SETTLED,
    SETTLEMENT,
    VOIDED,
    WITHDRAWAL,
    HistoryProjection,
    bet_profit,
    fresh_count,
)
from exchange.domain.messages import (
    FundsDeposited,
    FundsWithdrawn,
    MarketExposureApplied,
    MarketSettled,
    RemoveRunner,
    SettleMarket,
    SettlementApplied,
    TurnInPlay,
    VoidMarket,
)

from .rules import MARKET, A, B, C, back, cancel, cid, define, history, lay, open_market


def settle(winners, dead_heat=()):
    return SettleMarket(command_id=cid(), market_id=MARKET, winners=list(winners), dead_heat=list(dead_heat))


def cleared(events) -> dict[tuple[str, int, str], object]:
    """Feed a market's events as one journal batch; the rows by (player, bet id, status)."""
    projection = HistoryProjection()
    applied = projection.market_batch(MARKET, 1, events)
    assert applied.fresh == len(events) and not applied.gap
    return {(c.player_id, c.bet_id, c.bet_status): c for c in applied.cleared}


def test_a_back_winner_and_a_lay_loser_are_settled_with_their_profit():
    rows = cleared(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000), settle([A])))
    assert set(rows) == {("bob", 1, SETTLED), ("alice", 2, SETTLED)}
    alice, bob = rows["alice", 2, SETTLED], rows["bob", 1, SETTLED]
    assert (alice.profit, alice.outcome, alice.size_settled, alice.side) == (2000, "WON", 1000, "BACK")
    assert (bob.profit, bob.outcome, bob.size_settled, bob.side) == (-2000, "LOST", 1000, "LAY")
    assert alice.matched_value == 1000 * 300 and alice.size_matched == 1000       # average price 3.00
    assert alice.settled_at == alice.placed_at and alice.last_matched_at is not None


def test_a_partly_matched_bet_is_settled_for_its_matched_part_and_cancelled_for_the_rest():
    rows = cleared(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 400), cancel("bob", 1),
                           settle([B])))
    assert set(rows) == {("bob", 1, SETTLED), ("bob", 1, CANCELLED), ("alice", 2, SETTLED)}
    assert (rows["bob", 1, SETTLED].profit, rows["bob", 1, SETTLED].outcome) == (400, "WON")
    assert rows["bob", 1, SETTLED].size_settled == 400
    assert (rows["bob", 1, CANCELLED].size_cancelled, rows["bob", 1, CANCELLED].profit) == (600, 0)
    assert (rows["alice", 2, SETTLED].profit, rows["alice", 2, SETTLED].outcome) == (-400, "LOST")


def test_unmatched_bets_lapse_at_in_play_and_on_closing_and_fill_or_kill_remainders_lapse():
    rows = cleared(history(
        back("carol", B, "5.0", 300),                                           # LAPSE: lapses in play
        lay("dave", C, "2.0", 200, persistence="PERSIST"),                      # lapses when the market closes
        lay("bob", A, "3.0", 100), back("alice", A, "3.0", 500, time_in_force="FILL_OR_KILL", min_fill_size=100),
        TurnInPlay(command_id=cid(), market_id=MARKET), settle([A])))
    assert rows["carol", 1, LAPSED].size_cancelled == 300
    assert rows["dave", 2, LAPSED].size_cancelled == 200
    assert rows["alice", 4, LAPSED].size_cancelled == 400
    assert rows["alice", 4, SETTLED].profit == 200 and rows["bob", 3, SETTLED].profit == -200
    assert {k[2] for k in rows if k[0] == "carol"} == {LAPSED}


def test_a_voided_market_voids_every_matched_bet_and_lapses_the_unmatched():
    rows = cleared(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 400),
                           VoidMarket(command_id=cid(), market_id=MARKET)))
    assert set(rows) == {("bob", 1, VOIDED), ("bob", 1, LAPSED), ("alice", 2, VOIDED)}
    assert (rows["bob", 1, VOIDED].size_settled, rows["bob", 1, VOIDED].profit) == (400, 0)
    assert rows["bob", 1, LAPSED].size_cancelled == 600


def test_a_removed_runners_matched_bets_are_void_and_the_others_settle():
    rows = cleared(history(
        lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000),
        lay("bob", B, "2.0", 500), back("alice", B, "2.0", 500),
        RemoveRunner(command_id=cid(), market_id=MARKET, runner_id=A), settle([B])))
    assert rows["alice", 2, VOIDED].profit == 0 and rows["bob", 1, VOIDED].size_settled == 1000
    assert rows["alice", 4, SETTLED].profit == 500 and rows["bob", 3, SETTLED].profit == -500


def test_bet_profits_add_up_to_each_players_settlement_over_fills_at_several_prices():
    events = history(
        lay("bob", A, "3.05", 333), lay("carol", A, "3.1", 250), lay("bob", A, "3.15", 999),
        back("alice", A, "3.05", 1400), back("dave", B, "4.0", 150), lay("carol", B, "4.0", 150),
        settle([A]))
    rows = cleared(events)
    results = {r.player_id: r.pnl for r in events[-1].results}
    by_player: dict[str, int] = {}
    for (player, _, status), row in rows.items():
        if status == SETTLED:
            by_player[player] = by_player.get(player, 0) + row.profit
    assert by_player == results
    alice = rows["alice", 4, SETTLED]
    # best price first: 999 at 3.15, 250 at 3.1, 151 at 3.05 (bob's first lay: the rest lapses at the close)
    assert alice.size_settled == 1400 and alice.matched_value == 999 * 315 + 250 * 310 + 151 * 305
    assert rows["bob", 1, LAPSED].size_cancelled == 333 - 151


def test_a_dead_heat_settles_each_bet_at_its_share_of_the_places():
    rows = cleared(history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000),
                           settle([], dead_heat=[A, B])))
    assert rows["alice", 2, SETTLED].profit == 500 and rows["alice", 2, SETTLED].outcome == "WON"
    assert rows["bob", 1, SETTLED].profit == -500 and rows["bob", 1, SETTLED].outcome == "LOST"
    assert bet_profit(True, 101, 202, False, True, 1, 3) == 0          # (202 - 202) / 3
    assert bet_profit(False, 103, 211, False, True, 1, 3) == -2        # floor(-5 / 3)


def test_no_rows_before_the_market_completes_and_none_after():
    projection = HistoryProjection()
    events = history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000), settle([A]))
    open_part, rest = events[:-2], events[-2:]
    assert projection.market_batch(MARKET, 1, open_part).cleared == []
    assert MARKET in projection.markets
    done = projection.market_batch(MARKET, open_part[-1].seq + 1, rest)
    assert done.finished and len(done.cleared) == 2 and MARKET not in projection.markets
    assert projection.market_seqs[MARKET] == events[-1].seq


def test_replayed_and_overlapping_batches_are_skipped():
    events = history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000), settle([A]))
    projection = HistoryProjection()
    first = projection.market_batch(MARKET, 1, events[:3])
    again = projection.market_batch(MARKET, 1, events[:3])
    overlap = projection.market_batch(MARKET, 2, events[1:])
    assert (first.fresh, again.fresh, overlap.fresh) == (3, 0, len(events) - 3)
    assert len(overlap.cleared) == 2
    assert projection.market_batch(MARKET, 1, events) == (0, [], [], False, False)   # complete: all skipped
    assert fresh_count(5, 3, 4) == (1, False) and fresh_count(5, 7, 2) == (2, True)


def test_a_gap_drops_the_market_rather_than_settling_it_wrongly():
    events = history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 1000), settle([A]))
    projection = HistoryProjection()
    projection.market_batch(MARKET, 1, events[:2])
    gapped = projection.market_batch(MARKET, 4, events[3:])
    assert gapped.gap and gapped.cleared == [] and MARKET not in projection.markets
    unseen = HistoryProjection().market_batch(MARKET, 3, events[2:])
    assert unseen.gap and unseen.cleared == []


def test_an_open_market_restored_from_its_events_settles_as_if_never_interrupted():
    events = history(lay("bob", A, "3.0", 1000), back("alice", A, "3.0", 400), settle([A]))
    whole = HistoryProjection().market_batch(MARKET, 1, events).cleared
    restored = HistoryProjection()
    restored.restore_market(MARKET, events[:-2])
    assert restored.market_batch(MARKET, events[-2].seq, events[-2:]).cleared == whole


def test_statement_items_carry_the_running_balance_and_commission_is_its_own_item():
    w = "alice"
    events = [
        FundsDeposited(wallet_id=w, seq=1, at=10, command_id="dep-1", amount=10_000),
        MarketExposureApplied(wallet_id=w, seq=2, at=11, market_id=MARKET, exposure=1000, market_seq=3),
        SettlementApplied(wallet_id=w, seq=3, at=12, command_id="s", market_id=MARKET, pnl=2000, commission=100),
        SettlementApplied(wallet_id=w, seq=4, at=13, command_id="t", market_id="1.2", pnl=-500, commission=0),
        FundsWithdrawn(wallet_id=w, seq=5, at=14, command_id="wd-1", amount=3000),
    ]
    projection = HistoryProjection()
    applied = projection.wallet_batch(w, 1, events)
    assert [(i.seq, i.part, i.kind, i.ref_id, i.amount, i.balance) for i in applied.items] == [
        (1, 0, DEPOSIT, "dep-1", 10_000, 10_000),
        (3, 0, SETTLEMENT, MARKET, 2000, 12_000),
        (3, 1, COMMISSION, MARKET, -100, 11_900),
        (4, 0, SETTLEMENT, "1.2", -500, 11_400),
        (5, 0, WITHDRAWAL, "wd-1", -3000, 8_400),
    ]
    assert projection.wallets[w] == (5, 8_400)
    assert projection.wallet_batch(w, 3, events[2:]).items == []           # a replay adds nothing


def test_a_wallet_restored_from_its_stored_balance_goes_on_from_it():
    projection = HistoryProjection()
    projection.restore_wallet("bob", 7, 5_000)
    applied = projection.wallet_batch("bob", 8, [
        FundsDeposited(wallet_id="bob", seq=8, at=1, command_id="d", amount=250)])
    assert [(i.amount, i.balance) for i in applied.items] == [(250, 5_250)]


def test_a_market_defined_with_several_winners_settles_each_runner_on_its_own():
    events = history(define(number_of_winners=2), open_market(),
                     lay("bob", A, "2.0", 1000), back("alice", A, "2.0", 1000),
                     lay("bob", B, "2.0", 1000), back("alice", B, "2.0", 1000),
                     lay("bob", C, "2.0", 1000), back("alice", C, "2.0", 1000),
                     settle([A, B]), setup=False)
    rows = cleared(events)
    assert [rows["alice", bet, SETTLED].profit for bet in (2, 4, 6)] == [1000, 1000, -1000]
    assert isinstance(events[-1], MarketSettled)
