"""The market's rules: given events, when a command, then events (or a refusal)."""

from exchange.domain import codes, ladder, market
from exchange.domain.messages import (
    CancelOrders,
    CloseMarket,
    MarketClosed,
    MarketOpened,
    MarketSuspended,
    MarketTurnedInPlay,
    OrderCancelled,
    OrderExpired,
    OrderLapsed,
    OrderPlaced,
    OrderUpdated,
    PlaceInstruction,
    PlaceOrders,
    RemoveRunner,
    ReplaceInstruction,
    ReplaceOrders,
    RunnerRemoved,
    SuspendMarket,
    TurnInPlay,
    UpdateInstruction,
    UpdateOrders,
)

from .rules import (
    MARKET, NOW, A, B, C, back, cancel, cid, define, given, history, lay, open_market, place,
    then_refused, types, when,
)


def tick(text):
    return ladder.parse_price(text)


def fills_of(result):
    placed = next(e for e in result.events if isinstance(e, OrderPlaced))
    return [(f.maker_player_id, ladder.price_text(f.price_tick), f.size) for f in placed.fills]


# ---------------------------------------------------------------- placing


def test_a_back_on_an_empty_book_rests():
    state = given(history())
    result = when(state, back("alice", A, "3.0", 1000))
    assert types(result.events) == ["OrderPlaced"]
    placed = result.events[0]
    assert (placed.bet_id, placed.player_id, placed.price_tick, placed.size, placed.fills) == (1, "alice", tick("3.0"), 1000, [])
    assert placed.at == NOW.now_ms and placed.seq == state.seq
    assert state.books[0].best_back == tick("3.0")
    assert result.reports[0].bet_id == 1 and result.reports[0].size_matched == 0


def test_a_back_takes_resting_lays_at_or_above_its_price_best_first_at_their_price():
    state = given(history(lay("bob", A, "3.0", 500), lay("carol", A, "3.1", 500), lay("dave", A, "2.9", 500)))
    result = when(state, back("alice", A, "3.0", 800))
    assert fills_of(result) == [("carol", "3.1", 500), ("bob", "3", 300)]
    assert result.reports[0].size_matched == 800
    # averagePriceMatched's numerator: (500 x 3.10 + 300 x 3.00) in hundredths -> 3.0625
    assert result.reports[0].matched_value == 500 * 310 + 300 * 300
    assert state.books[0].best_lay == tick("3.0")  # bob's 200 left
    assert result.exposures.keys() == {"alice", "carol", "bob"}


def test_a_live_order_keeps_the_value_it_matched_as_taker_and_as_maker():
    state = given(history(lay("bob", A, "3.0", 500), lay("carol", A, "3.1", 500)))
    when(state, back("alice", A, "3.0", 1500, persistence="PERSIST"))    # takes 500 at 3.1, 500 at 3.0
    [order] = state.live_orders("alice")
    assert (order.matched, order.matched_value) == (1000, 500 * 310 + 500 * 300)
    when(state, lay("dave", A, "3.2", 200))                              # takes 200 of hers at her 3.0
    [order] = state.live_orders("alice")
    assert (order.matched, order.remaining, order.matched_value) == (1200, 300, 500 * 310 + 700 * 300)


def test_a_lay_takes_resting_backs_at_or_below_its_price_lowest_first():
    state = given(history(back("bob", A, "3.0", 500), back("carol", A, "2.9", 500), back("dave", A, "3.2", 500)))
    result = when(state, lay("alice", A, "3.1", 2000))
    assert fills_of(result) == [("carol", "2.9", 500), ("bob", "3", 500)]
    assert state.books[0].best_lay == tick("3.1")  # the remainder rests
    assert state.orders[result.events[0].bet_id].remaining == 1000


def test_within_a_price_the_oldest_order_fills_first():
    state = given(history(lay("bob", A, "3.0", 500), lay("carol", A, "3.0", 500)))
    result = when(state, back("alice", A, "3.0", 600))
    assert fills_of(result) == [("bob", "3", 500), ("carol", "3", 100)]


def test_the_book_is_per_runner():
    state = given(history(lay("bob", B, "3.0", 500)))
    result = when(state, back("alice", A, "3.0", 500))
    assert fills_of(result) == []


def test_a_players_order_never_matches_his_own_resting_order():
    state = given(history(lay("alice", A, "3.0", 500)))
    then_refused(state, back("alice", A, "3.0", 500), codes.INVALID_BACK_LAY_COMBINATION)


def test_an_order_that_would_not_reach_the_players_own_order_is_fine():
    state = given(history(lay("bob", A, "3.1", 500), lay("alice", A, "3.0", 500)))
    result = when(state, back("alice", A, "3.0", 500))
    assert fills_of(result) == [("bob", "3.1", 500)]


def test_a_price_off_the_ladder_is_invalid_odds():
    state = given(history())
    for price in ("3.01", "1001", "1.00", "abc", ""):
        then_refused(state, back("alice", A, price, 1000), codes.INVALID_ODDS)


def test_a_stake_below_the_minimum_is_an_invalid_bet_size():
    state = given(history())
    for size in (99, 0, -100):
        then_refused(state, back("alice", A, "3.0", size), codes.INVALID_BET_SIZE)


def test_the_minimum_stake_is_the_markets():
    state = given(history(define(min_stake=200), open_market(), setup=False))
    then_refused(state, back("alice", A, "3.0", 150), codes.INVALID_BET_SIZE)


def test_an_unknown_runner_is_invalid():
    state = given(history())
    then_refused(state, back("alice", 99, "3.0", 1000), codes.INVALID_RUNNER)


def test_bad_fields_built_in_python_are_refused_not_raised():
    state = given(history())
    then_refused(state, place("alice", A, "BUY", "3.0", 1000), codes.INVALID_BID_TYPE)
    then_refused(state, back("alice", A, "3.0", 1000, persistence="FOREVER"), codes.INVALID_PERSISTENCE_TYPE)
    then_refused(state, back("alice", A, "3.0", 1000, time_in_force="GOOD_TILL_CANCEL"), codes.INVALID_ORDER_TYPE)
    then_refused(state, back("alice", [A], "3.0", 1000), codes.INVALID_RUNNER)
    then_refused(state, back("alice", A, 3.0, 1000), codes.INVALID_ODDS)
    then_refused(state, back("alice", A, "3.0", 1000.0), codes.INVALID_BET_SIZE)


def test_a_minimum_fill_needs_fill_or_kill_and_fits_the_size():
    state = given(history())
    then_refused(state, back("alice", A, "3.0", 1000, min_fill_size=500), codes.INVALID_MIN_FILL_SIZE)
    then_refused(
        state, back("alice", A, "3.0", 1000, time_in_force="FILL_OR_KILL", min_fill_size=1001), codes.INVALID_MIN_FILL_SIZE
    )
    then_refused(
        state, back("alice", A, "3.0", 1000, time_in_force="FILL_OR_KILL", min_fill_size=0), codes.INVALID_MIN_FILL_SIZE
    )


def test_a_customer_ref_makes_placement_idempotent():
    state = given(history(back("alice", A, "3.0", 1000, customer_ref="r-1")))
    then_refused(state, back("alice", A, "3.5", 1000, customer_ref="r-1"), codes.DUPLICATE_TRANSACTION)
    assert when(state, back("bob", A, "3.5", 1000, customer_ref="r-1")).status == "SUCCESS"


def test_a_customer_ref_longer_than_32_is_invalid():
    state = given(history())
    then_refused(state, back("alice", A, "3.0", 1000, customer_ref="x" * 33), codes.INVALID_CUSTOMER_ORDER_REF)


def test_orders_on_a_suspended_market_are_refused():
    state = given(history(SuspendMarket(command_id=cid(), market_id=MARKET)))
    then_refused(state, back("alice", A, "3.0", 1000), codes.MARKET_SUSPENDED)


def test_orders_on_an_inactive_or_closed_market_are_refused():
    state = given(history(define(), setup=False))
    then_refused(state, back("alice", A, "3.0", 1000), codes.MARKET_NOT_OPEN_FOR_BETTING)
    state = given(history(CloseMarket(command_id=cid(), market_id=MARKET)))
    then_refused(state, back("alice", A, "3.0", 1000), codes.MARKET_NOT_OPEN_FOR_BETTING)


def test_orders_for_another_or_unknown_market_are_invalid_market_id():
    state = given(history())
    other = PlaceOrders(
        command_id=cid(), market_id="1.999", player_id="alice",
        instructions=[PlaceInstruction(runner_id=A, side="BACK", price="3.0", size=1000)],
    )
    then_refused(state, other, codes.INVALID_MARKET_ID)
    _, result = market.handle(None, other, NOW)
    assert result.error_code == codes.INVALID_MARKET_ID


def test_a_stale_market_version_is_refused():
    state = given(history())
    then_refused(state, back("alice", A, "3.0", 1000, market_version=0), codes.INVALID_MARKET_VERSION)
    assert when(state, back("alice", A, "3.0", 1000, market_version=state.version)).status == "SUCCESS"


def test_more_than_200_instructions_is_too_many():
    state = given(history())
    ins = [PlaceInstruction(runner_id=A, side="BACK", price="3.0", size=100)] * 201
    cmd = PlaceOrders(command_id=cid(), market_id=MARKET, player_id="alice", instructions=ins)
    then_refused(state, cmd, codes.TOO_MANY_INSTRUCTIONS)


def test_each_instruction_stands_alone_and_later_ones_see_earlier_ones():
    state = given(history(lay("bob", A, "3.0", 500)))
    ins = [
        PlaceInstruction(runner_id=A, side="BACK", price="3.0", size=300),
        PlaceInstruction(runner_id=A, side="BACK", price="3.01", size=300),
        PlaceInstruction(runner_id=A, side="BACK", price="3.0", size=300),
    ]
    result = when(state, PlaceOrders(command_id=cid(), market_id=MARKET, player_id="alice", instructions=ins))
    assert (result.status, result.error_code) == ("FAILURE", codes.PROCESSED_WITH_ERRORS)
    assert [(r.status, r.error_code, r.size_matched) for r in result.reports] == [
        ("SUCCESS", None, 300), ("FAILURE", codes.INVALID_ODDS, 0), ("SUCCESS", None, 200),
    ]
    assert [e.seq for e in result.events] == [state.seq - 1, state.seq]


# ---------------------------------------------------------------- fill or kill


def test_fill_or_kill_fills_completely_or_expires():
    state = given(history(lay("bob", A, "3.0", 500)))
    result = when(state, back("alice", A, "3.0", 800, time_in_force="FILL_OR_KILL"))
    assert types(result.events) == ["OrderPlaced", "OrderExpired"]
    assert result.events[0].fills == [] and result.events[1].size_expired == 800
    assert state.orders == {result.events[0].bet_id - 1: state.orders[result.events[0].bet_id - 1]}
    assert state.exposure_of("alice") == 0


def test_fill_or_kill_with_a_minimum_fill_fills_what_it_can_and_expires_the_rest():
    state = given(history(lay("bob", A, "3.0", 500)))
    result = when(state, back("alice", A, "3.0", 800, time_in_force="FILL_OR_KILL", min_fill_size=400))
    assert fills_of(result) == [("bob", "3", 500)]
    assert result.events[1].size_expired == 300
    assert state.books[0].best_back == ladder.TICKS  # nothing rests


def test_fill_or_kill_price_bounds_the_average_price_of_the_whole_fill():
    state = given(history(lay("bob", A, "3.2", 100), lay("carol", A, "2.8", 100)))
    # average of 3.2 and 2.8 is 3.0: a back at 3.0 may take both
    result = when(state, back("alice", A, "3.0", 200, time_in_force="FILL_OR_KILL"))
    assert fills_of(result) == [("bob", "3.2", 100), ("carol", "2.8", 100)]
    state = given(history(lay("bob", A, "3.2", 100), lay("carol", A, "2.8", 100)))
    # at 3.05 the slack 100 * 0.15 buys 60 at 2.8 (0.25 worse): 160 in all
    result = when(state, back("alice", A, "3.05", 200, time_in_force="FILL_OR_KILL", min_fill_size=150))
    assert fills_of(result) == [("bob", "3.2", 100), ("carol", "2.8", 60)]
    assert result.events[1].size_expired == 40
    state = given(history(lay("bob", A, "3.2", 100), lay("carol", A, "2.8", 100)))
    result = when(state, back("alice", A, "3.05", 200, time_in_force="FILL_OR_KILL"))
    assert fills_of(result) == [] and result.events[1].size_expired == 200


def test_a_lay_fill_or_kill_bounds_the_average_from_above():
    state = given(history(back("bob", A, "2.8", 100), back("carol", A, "3.2", 100)))
    result = when(state, lay("alice", A, "3.0", 200, time_in_force="FILL_OR_KILL"))
    assert fills_of(result) == [("bob", "2.8", 100), ("carol", "3.2", 100)]


def test_fill_or_kill_never_matches_the_players_own_order():
    state = given(history(lay("alice", A, "3.0", 500)))
    then_refused(state, back("alice", A, "3.0", 200, time_in_force="FILL_OR_KILL"), codes.INVALID_BACK_LAY_COMBINATION)


# ---------------------------------------------------------------- cancel


def test_cancel_removes_the_unmatched_part():
    state = given(history(back("alice", A, "3.0", 1000)))
    result = when(state, cancel("alice", 1))
    assert types(result.events) == ["OrderCancelled"] and result.events[0].size_cancelled == 1000
    assert state.orders == {} and state.books[0].best_back == ladder.TICKS
    assert state.exposure_of("alice") == 0


def test_a_size_reduction_keeps_the_orders_place_in_the_queue():
    state = given(history(lay("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000)))
    when(state, cancel("alice", 1, size_reduction=400))
    result = when(state, back("carol", A, "3.0", 700))
    assert fills_of(result) == [("alice", "3", 600), ("bob", "3", 100)]


def test_a_reduction_larger_than_what_is_left_cancels_the_rest():
    state = given(history(back("alice", A, "3.0", 1000)))
    result = when(state, cancel("alice", 1, size_reduction=5000))
    assert result.events[0].size_cancelled == 1000 and state.orders == {}


def test_a_reduction_that_is_not_positive_is_an_invalid_bet_size():
    state = given(history(back("alice", A, "3.0", 1000)))
    then_refused(state, cancel("alice", 1, size_reduction=0), codes.INVALID_BET_SIZE)


def test_unknown_finished_or_foreign_bets_are_taken_or_lapsed():
    state = given(history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 1000), back("alice", B, "3.0", 1000)))
    then_refused(state, cancel("alice", 1), codes.BET_TAKEN_OR_LAPSED)  # fully matched
    then_refused(state, cancel("alice", 99), codes.BET_TAKEN_OR_LAPSED)  # unknown
    then_refused(state, cancel("bob", 3), codes.BET_TAKEN_OR_LAPSED)  # someone else's
    when(state, cancel("alice", 3))
    then_refused(state, cancel("alice", 3), codes.BET_TAKEN_OR_LAPSED)  # already cancelled


def test_cancel_with_no_instructions_cancels_all_the_players_bets():
    state = given(history(back("alice", A, "3.0", 1000), back("alice", B, "4.0", 1000), back("bob", C, "5.0", 1000)))
    result = when(state, CancelOrders(command_id=cid(), market_id=MARKET, player_id="alice"))
    assert [e.bet_id for e in result.events] == [1, 2]
    assert list(state.orders) == [3]


def test_cancels_on_a_suspended_market_are_refused():
    state = given(history(back("alice", A, "3.0", 1000), SuspendMarket(command_id=cid(), market_id=MARKET)))
    then_refused(state, cancel("alice", 1), codes.MARKET_SUSPENDED)


# ---------------------------------------------------------------- replace, update


def replace(player, bet_id, price):
    return ReplaceOrders(
        command_id=cid(), market_id=MARKET, player_id=player,
        instructions=[ReplaceInstruction(bet_id=bet_id, new_price=price)],
    )


def update(player, bet_id, persistence):
    return UpdateOrders(
        command_id=cid(), market_id=MARKET, player_id=player,
        instructions=[UpdateInstruction(bet_id=bet_id, new_persistence=persistence)],
    )


def test_replace_cancels_the_unmatched_part_and_places_it_at_the_new_price():
    state = given(history(back("alice", A, "3.0", 1000, persistence="PERSIST"), lay("bob", A, "3.0", 400)))
    result = when(state, replace("alice", 1, "3.5"))
    assert types(result.events) == ["OrderCancelled", "OrderPlaced"]
    cancelled, placed = result.events
    assert cancelled.size_cancelled == 600
    assert (placed.replaces, placed.size, placed.price_tick, placed.persistence) == (1, 600, tick("3.5"), "PERSIST")
    assert result.reports[0].bet_id == placed.bet_id == 3


def test_replace_can_cross_and_match():
    state = given(history(back("alice", A, "3.5", 1000), lay("bob", A, "3.2", 300)))
    result = when(state, replace("alice", 1, "3.0"))
    assert fills_of(result) == [("bob", "3.2", 300)]


def test_replace_refusals_change_nothing():
    state = given(history(back("alice", A, "3.0", 1000), lay("alice", A, "2.5", 1000)))
    then_refused(state, replace("alice", 1, "3.01"), codes.INVALID_ODDS)
    then_refused(state, replace("alice", 1, "3.0"), codes.NO_ACTION_REQUIRED)
    then_refused(state, replace("alice", 1, "2.4"), codes.INVALID_BACK_LAY_COMBINATION)
    then_refused(state, replace("alice", 7, "3.5"), codes.BET_TAKEN_OR_LAPSED)


def test_update_changes_persistence():
    state = given(history(back("alice", A, "3.0", 1000)))
    result = when(state, update("alice", 1, "PERSIST"))
    assert isinstance(result.events[0], OrderUpdated) and state.orders[1].persistence == "PERSIST"
    then_refused(state, update("alice", 1, "PERSIST"), codes.NO_ACTION_REQUIRED)
    then_refused(state, update("alice", 1, "SOMETIMES"), codes.INVALID_PERSISTENCE_TYPE)
    then_refused(state, update("alice", 2, "LAPSE"), codes.BET_TAKEN_OR_LAPSED)


# ---------------------------------------------------------------- lifecycle


def test_the_lifecycle_runs_inactive_open_suspended_open_closed_with_versions():
    state = given(history(define(), setup=False))
    assert (state.status, state.version) == ("INACTIVE", 0)
    r = when(state, open_market())
    assert isinstance(r.events[0], MarketOpened) and (state.status, state.version) == ("OPEN", 1)
    r = when(state, SuspendMarket(command_id=cid(), market_id=MARKET))
    assert isinstance(r.events[0], MarketSuspended) and (state.status, state.version) == ("SUSPENDED", 2)
    when(state, open_market())
    r = when(state, CloseMarket(command_id=cid(), market_id=MARKET))
    assert isinstance(r.events[-1], MarketClosed) and (state.status, state.version) == ("CLOSED", 4)


def test_lifecycle_transitions_that_do_not_exist_are_refused():
    state = given(history(define(), setup=False))
    then_refused(state, SuspendMarket(command_id=cid(), market_id=MARKET), codes.INVALID_MARKET_STATE)
    then_refused(state, define(), codes.INVALID_MARKET_STATE)
    when(state, CloseMarket(command_id=cid(), market_id=MARKET))
    then_refused(state, open_market(), codes.INVALID_MARKET_STATE)
    then_refused(state, CloseMarket(command_id=cid(), market_id=MARKET), codes.INVALID_MARKET_STATE)


def test_a_bad_market_definition_is_refused():
    then_refused(None, define(runners=()), codes.INVALID_RUNNER)
    then_refused(None, define(runners=(A, A)), codes.INVALID_RUNNER)
    then_refused(None, define(number_of_winners=4), codes.INVALID_RUNNER)
    then_refused(None, define(min_stake=0), codes.INVALID_BET_SIZE)
    then_refused(None, define(commission_rate_bp=10_001), codes.INVALID_AMOUNT)


def test_turning_in_play_lapses_lapse_orders_and_keeps_persist_orders():
    state = given(history(
        back("alice", A, "3.0", 1000),
        back("alice", B, "3.0", 1000, persistence="PERSIST"),
        back("bob", C, "3.0", 1000, persistence="MARKET_ON_CLOSE"),
    ))
    version = state.version
    result = when(state, TurnInPlay(command_id=cid(), market_id=MARKET, bet_delay_ms=5000))
    assert types(result.events) == ["OrderLapsed", "OrderLapsed", "MarketTurnedInPlay"]
    assert [(e.bet_id, e.reason) for e in result.events[:2]] == [(1, "IN_PLAY"), (3, "IN_PLAY")]
    assert isinstance(result.events[-1], MarketTurnedInPlay)
    assert (state.in_play, state.bet_delay_ms, state.version) == (True, 5000, version + 1)
    assert list(state.orders) == [2]
    then_refused(state, TurnInPlay(command_id=cid(), market_id=MARKET), codes.INVALID_MARKET_STATE)
    then_refused(state, update("alice", 2, "MARKET_ON_CLOSE"), codes.INVALID_PERSISTENCE_TYPE)


def test_removing_a_runner_lapses_its_unmatched_bets_and_voids_its_matched_ones():
    state = given(history(
        back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 600), back("alice", B, "5.0", 1000),
    ))
    assert state.exposure_of("bob") == 1200
    result = when(state, RemoveRunner(command_id=cid(), market_id=MARKET, runner_id=A))
    assert types(result.events) == ["OrderLapsed", "RunnerRemoved"]
    assert result.events[0].bet_id == 1 and result.events[0].size_lapsed == 400
    removed = result.events[-1]
    assert isinstance(removed, RunnerRemoved) and removed.voided_bet_ids == [1, 2]
    assert state.exposure_of("bob") == 0 and state.exposure_of("alice") == 1000
    assert result.exposures == {"alice": 1000, "bob": 0}
    then_refused(state, back("carol", A, "3.0", 1000), codes.INVALID_RUNNER)
    then_refused(state, RemoveRunner(command_id=cid(), market_id=MARKET, runner_id=A), codes.INVALID_RUNNER)


def test_closing_lapses_every_unmatched_order():
    state = given(history(back("alice", A, "3.0", 1000), lay("bob", B, "3.0", 1000)))
    result = when(state, CloseMarket(command_id=cid(), market_id=MARKET))
    assert types(result.events) == ["OrderLapsed", "OrderLapsed", "MarketClosed"]
    assert {e.reason for e in result.events[:2]} == {"MARKET_CLOSED"}
    assert state.orders == {} and result.exposures == {"alice": 0, "bob": 0}


def test_sequence_numbers_count_every_event_and_replay_rebuilds_the_state():
    events = history(back("alice", A, "3.0", 1000), lay("bob", A, "3.0", 600), cancel("alice", 1))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert market.replay(events).snapshot() == given(events).snapshot()


# ---------------------------------------------------------------- exposure


def test_exposure_counts_matched_bets_and_unmatched_bets_at_their_worst():
    state = given(history(back("alice", A, "3.0", 1000)))
    assert state.exposure_of("alice") == 1000
    when(state, lay("alice", B, "3.0", 1000))
    # A wins: 0 - 2000; B wins: -1000 - 2000 (both unmatched at their worst); C: -1000
    assert state.exposure_of("alice") == 3000


def test_backing_two_runners_offsets():
    state = given(history(lay("bob", A, "3.0", 1000), lay("bob", B, "3.0", 1000)))
    when(state, back("alice", A, "3.0", 1000))
    when(state, back("alice", B, "3.0", 1000))
    # A wins: +2000 - 1000; B wins: same; C wins: -2000
    assert state.exposure_of("alice") == 2000


def test_matching_never_raises_exposure():
    state = given(history(lay("bob", A, "3.0", 1000)))
    before = state.exposure_of("bob")
    when(state, back("alice", A, "2.0", 500))
    assert state.exposure_of("bob") <= before


def test_a_market_snapshot_pickled_before_positions_were_packed_still_loads():
    """Hosts snapshot markets with pickle; MarketState.__getstate__ now packs the positions.
    A snapshot in the older form (pickle's default for slots: (None, {slot: value})) loads
    to the same state, and the packed form round-trips with a removed runner's marker."""
    import pickle

    state = given(history(back("p1", A, "3.0", 500), lay("p2", A, "3.0", 200), lay("p3", B, "4.0", 300),
                          RemoveRunner(command_id=cid(), market_id=MARKET, runner_id=C)))
    older = market.MarketState.__new__(market.MarketState)
    older.__setstate__((None, {name: getattr(state, name) for name in market.MarketState.__slots__}))
    assert older.snapshot() == state.snapshot()
    assert pickle.loads(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)).snapshot() == state.snapshot()


# A market pickled by the code before MarketState.__getstate__ (commit 8ab6d80): define and
# open "1.9" with runners 1-3, then c1 p1 backs 1 at 3.0 for 500, c2 p2 lays 1 at 3.0 for 200,
# c3 p3 lays 2 at 4.0 for 300, c4 p2 backs 2 at 4.5 for 100, and runner 3 is removed.
OLD_MARKET_PICKLE = (
    "gAWVGAwAAAAAAACMFmV4Y2hhbmdlLmRvbWFpbi5tYXJrZXSUjAtNYXJrZXRTdGF0ZZSTlCmBlE59lCiMCW1hcmtldF9pZJSM"
    "AzEuOZSMA3NlcZRLB4wHdmVyc2lvbpRLAowGc3RhdHVzlIwET1BFTpSMB2luX3BsYXmUiYwMYmV0X2RlbGF5X21zlEsAjAdy"
    "dW5uZXJzlEsBSwJLA4eUjAxydW5uZXJfaW5kZXiUfZQoSwFLAEsCSwFLA0sCdYwMYWN0aXZlX2luZGV4lH2UKEsBSwBLAksB"
    "dYwGYWN0aXZllEsASwGGlIwRbnVtYmVyX29mX3dpbm5lcnOUSwGMCW1pbl9zdGFrZZRLZIwSY29tbWlzc2lvbl9yYXRlX2Jw"
    "lE30AYwFYm9va3OUXZQojBRleGNoYW5nZS5kb21haW4uYm9va5SMClJ1bm5lckJvb2uUk5QpgZROfZQojAViYWNrc5RdlCgp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKYwLY29sbGVjdGlvbnOUjAVkZXF1ZZSTlClSlIwWZXhjaGFuZ2UuZG9tYWluLm9yZGVyc5SMBU9yZGVylJOUKEsBjAJw"
    "MZRLAIhLlU30AU0sAUvIjAVMQVBTRZROTksBTWDqdJRSlGEpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKWWMBGxheXOUXZQoKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSlljAliZXN0X2JhY2uUS5WMCGJlc3RfbGF5lEr/////dYaUYmgcKYGUTn2UKGgfXZQoKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpaCMpUpRoJyhLBIwCcDKUSwGIS65LZEtkSwBoKU5OSwFLAHSUUpRhKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKWVoLF2UKCkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSloIylSlGgnKEsDjAJwM5RL"
    "AYlLqU0sAU0sAUsAaClOTksBSwB0lFKUYSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKWVoLkuuaC9LqXWG"
    "lGJoHCmBlE59lChoH12UKCkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpZWgsXZQoKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkpKSkp"
    "KSllaC5NXgFoL0r/////dYaUYmWMBm9yZGVyc5R9lChLAWgrSwNoPEsEaDd1jAlwb3NpdGlvbnOUfZQoaCiMGGV4Y2hhbmdl"
    "LmRvbWFpbi5leHBvc3VyZZSMCFBvc2l0aW9ulJOUKYGUTn2UKIwEbG9zZZRdlChKDP7//0sASwBljAVkZWx0YZRdlChNhANL"
    "AIoIAAAAAAAAAEBljARiYXNllEoM/v//dYaUYmg1aEkpgZROfZQoaExdlChLyEqc////SwBlaE5dlChKqP3//0tkiggAAAAA"
    "AAAAQGVoUEtkdYaUYmg6aEkpgZROfZQoaExdlChLAEsASwBlaE5dlChLAEp8/P//iggAAAAAAAAAQGVoUEsAdYaUYnWMBHJl"
    "ZnOUj5SMC25leHRfYmV0X2lklEsFjAxtYXRjaGVkX2JldHOUXZQoXZQoSwFLAmVdlF2UZYwKc2V0dGxlbWVudJROjAdyZXN1"
    "bHRzlF2UdYaUYi4="
)


def test_a_market_snapshot_written_by_the_older_code_loads_to_the_same_state():
    """Hosts recover markets from pickled snapshots; bytes written before the packed form
    (frozen above) must load to exactly the state the same commands give today."""
    import base64
    import pickle

    from exchange.domain.context import Context
    from exchange.domain.messages import DefineMarket, OpenMarket

    def placed(i, player, runner, side, price, size):
        return PlaceOrders(command_id=f"c{i}", market_id="1.9", player_id=player,
                           instructions=[PlaceInstruction(runner_id=runner, side=side, price=price, size=size)])

    state = None
    for command in (DefineMarket(command_id="d", market_id="1.9", runners=[1, 2, 3]),
                    OpenMarket(command_id="o", market_id="1.9"),
                    placed(1, "p1", 1, "BACK", "3.0", 500), placed(2, "p2", 1, "LAY", "3.0", 200),
                    placed(3, "p3", 2, "LAY", "4.0", 300), placed(4, "p2", 2, "BACK", "4.5", 100),
                    RemoveRunner(command_id="r", market_id="1.9", runner_id=3)):
        state, result = market.handle(state, command, Context(1))
        assert result.status == "SUCCESS"
    loaded = pickle.loads(base64.b64decode(OLD_MARKET_PICKLE))
    assert loaded.snapshot() == state.snapshot()
    assert loaded.positions["p2"].delta[2] == state.positions["p2"].delta[2] > 1 << 61   # removed runner
