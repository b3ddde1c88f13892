"""The price ladder and the money rules, by example."""

import pytest

from exchange.domain import ladder, money


def test_the_classic_ladder_has_350_prices_from_1_01_to_1000():
    assert ladder.TICKS == 350
    assert ladder.price_text(0) == "1.01"
    assert ladder.price_text(ladder.MAX_TICK) == "1000"


@pytest.mark.parametrize(
    ("low", "high", "step"),
    [
        ("1.01", "2", 1), ("2", "3", 2), ("3", "4", 5), ("4", "6", 10), ("6", "10", 20),
        ("10", "20", 50), ("20", "30", 100), ("30", "50", 200), ("50", "100", 500), ("100", "1000", 1000),
    ],
)
def test_each_band_moves_by_its_increment(low, high, step):
    start, end = ladder.parse_price(low), ladder.parse_price(high)
    gaps = {ladder.PRICES[t + 1] - ladder.PRICES[t] for t in range(start, end)}
    assert gaps == {step}


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("3", "3"), ("3.0", "3"), ("3.00", "3"), ("3.5", "3.5"), ("3.50", "3.5"), ("1.01", "1.01"),
     ("1000.0", "1000"), ("2.02", "2.02"), (" 4.1 ", "4.1"), ("4.100", "4.1")],
)
def test_prices_parse_to_ticks_and_print_canonically(text, canonical):
    assert ladder.price_text(ladder.parse_price(text)) == canonical


@pytest.mark.parametrize(
    "text",
    ["1", "1.00", "1.001", "2.01", "3.01", "3.52", "1010", "0", "-2", "nan", "inf", "abc", "", "3,5", None, 3, 3.0],
)
def test_a_price_off_the_ladder_is_not_a_tick(text):
    assert ladder.parse_price(text) is None


def test_every_tick_round_trips_through_its_text():
    assert all(ladder.parse_price(ladder.price_text(t)) == t for t in range(ladder.TICKS))


def test_shift_moves_along_the_ladder_and_clamps():
    assert ladder.price_text(ladder.shift(ladder.parse_price("1.99"), 2)) == "2.02"
    assert ladder.shift(0, -5) == 0 and ladder.shift(ladder.MAX_TICK, 3) == ladder.MAX_TICK


def test_a_back_of_1000_at_3_wins_2000_and_the_lay_risks_the_same():
    tick = ladder.parse_price("3.0")
    assert money.back_profit(1000, tick) == 2000
    assert money.lay_liability(1000, tick) == 2000
    assert money.max_loss("BACK", 1000, tick) == 1000
    assert money.max_loss("LAY", 1000, tick) == 2000


def test_profit_rounds_down_to_the_minor_unit():
    tick = ladder.parse_price("1.01")
    assert money.back_profit(150, tick) == 1  # 1.5 -> 1
    assert money.lay_liability(99, tick) == 0


def test_commission_is_on_net_winnings_only_rounded_down():
    assert money.commission(1500, 500) == 75
    assert money.commission(-1500, 500) == 0
    assert money.commission(1500, 500, discount_bp=2000) == 60
    assert money.commission(19, 500) == 0
