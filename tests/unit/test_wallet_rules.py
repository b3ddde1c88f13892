"""The wallet's rules, and the venue wiring markets to wallets."""

import copy

from exchange.domain import codes, wallet
from exchange.domain.context import Context
from exchange.domain.messages import (
    ApplyMarketExposure,
    ApplySettlement,
    Deposit,
    ExposureReserved,
    FundsDeposited,
    ReserveExposure,
    SettleMarket,
    Withdraw,
)
from exchange.domain.venue import Venue

from .rules import MARKET, NOW, A, B, back, cid, define, lay, open_market

W = "alice"


def given(*commands):
    state = None
    for cmd in commands:
        state, result = wallet.handle(state, cmd, NOW)
        assert result.status == "SUCCESS", result
    return state


def deposit(amount, command_id=None):
    return Deposit(command_id=command_id or cid(), wallet_id=W, amount=amount)


def reserve(amount, command_id=None, market_id=MARKET):
    return ReserveExposure(command_id=command_id or cid(), wallet_id=W, market_id=market_id, amount=amount)


def apply(exposure, market_seq, release=()):
    return ApplyMarketExposure(
        command_id=cid(), wallet_id=W, market_id=MARKET, exposure=exposure, market_seq=market_seq, release=list(release)
    )


def then_refused(state, cmd, code):
    before = copy.deepcopy(state.snapshot()) if state is not None else None
    new_state, result = wallet.handle(state, cmd, NOW)
    assert (result.status, result.error_code, result.events) == ("FAILURE", code, [])
    assert (new_state.snapshot() if new_state is not None else None) == before


def test_a_deposit_opens_the_wallet_and_adds_to_the_balance():
    state, result = wallet.handle(None, deposit(5000, "d-1"), NOW)
    assert isinstance(result.events[0], FundsDeposited) and result.events[0].seq == 1
    assert (state.balance, state.available) == (5000, 5000)


def test_a_repeated_deposit_is_a_duplicate_transaction():
    state = given(deposit(5000, "d-1"))
    then_refused(state, deposit(5000, "d-1"), codes.DUPLICATE_TRANSACTION)


def test_amounts_must_be_positive_integers():
    state = given(deposit(5000))
    for amount in (0, -1, 1.5, "10", 10**16):
        then_refused(state, deposit(amount), codes.INVALID_AMOUNT)
        then_refused(state, Withdraw(command_id=cid(), wallet_id=W, amount=amount), codes.INVALID_AMOUNT)
    then_refused(state, reserve(-1), codes.INVALID_AMOUNT)


def test_a_withdrawal_cannot_exceed_what_is_available():
    state = given(deposit(5000), reserve(3000))
    then_refused(state, Withdraw(command_id=cid(), wallet_id=W, amount=2001), codes.INSUFFICIENT_FUNDS)
    state, result = wallet.handle(state, Withdraw(command_id=cid(), wallet_id=W, amount=2000), NOW)
    assert (state.balance, state.available) == (3000, 0)
    then_refused(None, Withdraw(command_id=cid(), wallet_id=W, amount=1), codes.INSUFFICIENT_FUNDS)


def test_a_reservation_holds_funds_and_refuses_beyond_available():
    state = given(deposit(5000), reserve(3000, "r-1"))
    assert state.available == 2000
    then_refused(state, reserve(2001), codes.INSUFFICIENT_FUNDS)
    then_refused(state, reserve(10, "r-1"), codes.DUPLICATE_TRANSACTION)


def test_the_markets_exposure_replaces_the_reservation():
    state = given(deposit(5000), reserve(3000, "r-1"))
    state, result = wallet.handle(state, apply(1200, market_seq=7, release=["r-1"]), NOW)
    assert (state.total_reserved, state.exposures, state.available) == (0, {MARKET: 1200}, 3800)


def test_an_older_exposure_report_only_releases_its_reservations():
    state = given(deposit(5000), reserve(1000, "r-1"), apply(1200, market_seq=9))
    state, result = wallet.handle(state, apply(300, market_seq=8, release=["r-1"]), NOW)
    assert result.events[0].exposure is None
    assert (state.exposures, state.total_reserved) == ({MARKET: 1200}, 0)
    _, again = wallet.handle(state, apply(300, market_seq=8, release=["r-1"]), NOW)
    assert (again.status, again.events) == ("SUCCESS", [])  # a repeat changes nothing


def test_settlement_moves_the_result_into_the_balance_once():
    state = given(deposit(5000), reserve(1000, "r-1"), apply(1000, 3, ["r-1"]))
    settle = ApplySettlement(command_id=cid(), wallet_id=W, market_id=MARKET, pnl=2000, commission=100)
    state, _ = wallet.handle(state, settle, NOW)
    assert (state.balance, state.total_exposure, state.available, state.commission_paid) == (6900, 0, 6900, 100)
    then_refused(state, settle, codes.DUPLICATE_TRANSACTION)
    _, late = wallet.handle(state, apply(500, 4), NOW)  # a late report cannot resurrect exposure
    assert late.events == []


def test_a_command_for_another_wallet_is_refused():
    state = given(deposit(5000))
    then_refused(state, Deposit(command_id=cid(), wallet_id="bob", amount=1), codes.INVALID_WALLET_ID)


def test_wallet_replay_rebuilds_the_state():
    events = []
    state = None
    for cmd in (deposit(5000), reserve(1000, "r-1"), apply(700, 2, ["r-1"]), Withdraw(command_id=cid(), wallet_id=W, amount=300)):
        state, result = wallet.handle(state, cmd, NOW)
        events += result.events
    replayed = None
    for e in events:
        replayed = wallet.evolve(replayed, e)
    assert replayed.snapshot() == state.snapshot()
    assert isinstance(events[1], ExposureReserved)


# ---------------------------------------------------------------- the venue


def venue_with(*deposits):
    venue = Venue()
    for player, amount in deposits:
        venue.execute(Deposit(command_id=cid(), wallet_id=player, amount=amount), NOW)
    venue.execute(define(), NOW)
    venue.execute(open_market(), NOW)
    return venue


def test_an_order_needs_funds_for_its_maximum_loss():
    venue = venue_with(("alice", 1000), ("bob", 1000))
    assert venue.execute(back("alice", A, "3.0", 1000), NOW).status == "SUCCESS"
    assert venue.available("alice") == 0
    result = venue.execute(lay("bob", A, "3.0", 600), NOW)  # liability 1200 > 1000
    assert (result.status, result.error_code) == ("FAILURE", codes.INSUFFICIENT_FUNDS)
    assert venue.markets[MARKET].orders.keys() == {1}
    assert venue.available("bob") == 1000
    result = venue.execute(back("carol", A, "3.0", 100), NOW)  # no wallet at all
    assert result.error_code == codes.INSUFFICIENT_FUNDS


def test_market_refusals_come_before_funds_and_release_nothing():
    venue = venue_with(("alice", 100))
    result = venue.execute(back("alice", A, "3.01", 1000), NOW)
    assert result.error_code == codes.INVALID_ODDS
    assert venue.available("alice") == 100 and venue.wallets["alice"].reservations == {}


def test_fills_release_exposure_and_settlement_moves_cash():
    venue = venue_with(("alice", 5000), ("bob", 5000))
    venue.execute(lay("bob", A, "3.0", 1000), NOW)
    assert venue.available("bob") == 3000
    venue.execute(back("alice", A, "3.0", 1000), NOW)
    venue.execute(back("alice", B, "3.0", 1000), NOW)  # rests: alice's worst is C wins (-2000)
    assert venue.available("alice") == 3000
    venue.execute(SettleMarket(command_id=cid(), market_id=MARKET, winners=[A]), NOW)
    assert venue.wallets["alice"].balance == 5000 + 2000 - 100
    assert venue.wallets["bob"].balance == 5000 - 2000
    assert venue.available("alice") == venue.wallets["alice"].balance
    total = sum(w.balance + w.commission_paid for w in venue.wallets.values())
    assert total == 10000
    assert Venue.replay(venue.journal).snapshot() == venue.snapshot()


def test_replace_reserves_for_the_new_price():
    venue = venue_with(("alice", 1000))
    venue.execute(lay("alice", A, "2.0", 1000), NOW)  # liability 1000
    from exchange.domain.messages import ReplaceInstruction, ReplaceOrders

    cmd = ReplaceOrders(command_id=cid(), market_id=MARKET, player_id="alice",
                        instructions=[ReplaceInstruction(bet_id=1, new_price="3.0")])
    assert venue.execute(cmd, NOW).error_code == codes.INSUFFICIENT_FUNDS
    assert venue.markets[MARKET].orders[1].remaining == 1000


def test_deposits_and_withdrawals_go_through_the_venue():
    venue = Venue()
    assert venue.execute(Deposit(command_id="d", wallet_id="alice", amount=100), Context(1)).status == "SUCCESS"
    assert venue.execute(Withdraw(command_id="w", wallet_id="alice", amount=101), Context(2)).error_code == codes.INSUFFICIENT_FUNDS


def test_an_idle_wallet_shares_its_empty_containers_and_a_snapshot_keeps_working():
    import pickle

    from exchange.domain import wallet
    from exchange.domain.context import Context
    from exchange.domain.messages import ApplyMarketExposure, ApplySettlement, Deposit, ReserveExposure

    ctx = Context(1)
    state, _ = wallet.handle(None, Deposit(command_id="d1", wallet_id="w", amount=1_000), ctx)
    assert state.exposures is wallet.EMPTY and state.reservations is wallet.EMPTY
    state = pickle.loads(pickle.dumps(state))            # as a host snapshot does
    state, r = wallet.handle(state, ReserveExposure(command_id="r1", wallet_id="w", market_id="m",
                                                    amount=300), ctx)
    assert r.status == "SUCCESS" and wallet.EMPTY == {}
    state, r = wallet.handle(state, ApplyMarketExposure(command_id="x1", wallet_id="w", market_id="m",
                                                        exposure=200, market_seq=1, release=["r1"]), ctx)
    state, r = wallet.handle(state, ApplySettlement(command_id="s1", wallet_id="w", market_id="m",
                                                    pnl=-200, commission=0), ctx)
    assert r.status == "SUCCESS" and state.balance == 800 and state.available == 800
    assert wallet.EMPTY == {}, "the shared empty mapping was never written"


# ---------------------------------------------------------------- how long ids are kept

KEPT = wallet.RESERVATION_IDS_KEPT_MS


def at(ms):
    return Context(ms)


def handled(state, cmd, ms):
    state, result = wallet.handle(state, cmd, at(ms))
    return state, result


def test_a_reservation_id_is_a_duplicate_for_the_window_then_forgotten():
    state, _ = handled(None, deposit(10**9, "d-1"), 0)
    state, _ = handled(state, reserve(100, "r-1"), 0)
    state, _ = handled(state, apply(0, market_seq=1, release=["r-1"]), 1)    # placed and released
    assert "r-1" not in state.reservations
    then = copy.deepcopy(state.snapshot())
    _, again = handled(state, reserve(100, "r-1"), KEPT)                     # still within the window
    assert (again.status, again.error_code, again.events) == ("FAILURE", codes.DUPLICATE_TRANSACTION, [])
    assert state.snapshot() == then
    # reservations go on; once the oldest id is half a window past it, the old ones go
    t = 0
    while t <= KEPT * 3 // 2:
        t += 60_000
        state, r = handled(state, reserve(1, f"later-{t}"), t)
        assert r.status == "SUCCESS"
    assert "r-1" not in state.reserved_ids
    assert min(state.reserved_ids.values()) >= t - KEPT, "every id within the window is kept"
    state, r = handled(state, reserve(100, "r-1"), t)                        # a new placement now
    assert r.status == "SUCCESS"


def test_a_wallet_reserving_all_day_keeps_a_bounded_set_of_ids():
    state, _ = handled(None, deposit(10**12, "d-1"), 0)
    longest = 0
    for n in range(1, 3 * 3600):      # one reservation a second for three hours, each released
        state, r = handled(state, reserve(10, f"r-{n}"), n * 1000)
        state, _ = handled(state, apply(0, market_seq=n, release=[f"r-{n}"]), n * 1000)
        longest = max(longest, len(state.reserved_ids))
    assert longest <= KEPT * 3 // 2 // 1000 + 1
    assert len(state.seen) == 1 and state.reservations == {} and state.total_reserved == 0
    _, again = handled(state, reserve(10, f"r-{n}"), n * 1000)
    assert again.error_code == codes.DUPLICATE_TRANSACTION


def test_deposit_and_withdrawal_ids_are_kept_for_good():
    state, _ = handled(None, deposit(5000, "d-1"), 0)
    state, _ = handled(state, Withdraw(command_id="w-1", wallet_id=W, amount=10), 0)
    for n in range(1, 40):
        state, _ = handled(state, reserve(1, f"r-{n}"), n * KEPT)
    for cmd in (deposit(5000, "d-1"), Withdraw(command_id="w-1", wallet_id=W, amount=10), deposit(1, "r-39")):
        _, r = handled(state, cmd, 40 * KEPT)
        assert r.error_code == codes.DUPLICATE_TRANSACTION


def test_a_snapshot_from_before_the_window_loads_and_keeps_its_ids():
    import pickle

    state = given(deposit(5000, "d-1"), reserve(100, "r-1"), apply(0, market_seq=1, release=["r-1"]))
    state.seen.add("r-1")                      # where the old code kept reservation ids
    del state.reserved_ids                     # which the old code did not have
    old = pickle.loads(pickle.dumps(state))
    assert old.reserved_ids is wallet.EMPTY and old.balance == 5000
    then_refused(old, reserve(100, "r-1"), codes.DUPLICATE_TRANSACTION)
    old, r = wallet.handle(old, reserve(100, "r-2"), NOW)
    assert r.status == "SUCCESS" and list(old.reserved_ids) == ["r-2"]
