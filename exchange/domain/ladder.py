"""The price ladder: Betfair's CLASSIC ladder as integer ticks.

Owns: the 350 prices from 1.01 to 1000, tick <-> price in hundredths, tick <->
decimal string, tick arithmetic. A tick is an int in ``range(TICKS)``; tick 0 is
1.01 and tick 349 is 1000.

Must never use floats: prices are integers in hundredths inside the domain,
and ``Decimal`` is used only to parse a string that is not already canonical.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# (upper bound in hundredths, increment in hundredths), starting from 1.01
_BANDS = (
    (200, 1),
    (300, 2),
    (400, 5),
    (600, 10),
    (1000, 20),
    (2000, 50),
    (3000, 100),
    (5000, 200),
    (10000, 500),
    (100000, 1000),
)


def _build() -> tuple[int, ...]:
    prices = [101]
    for upper, step in _BANDS:
        while prices[-1] < upper:
            prices.append(prices[-1] + step)
    return tuple(prices)


#: PRICES[tick] is the price in hundredths (101 = 1.01).
PRICES: tuple[int, ...] = _build()
TICKS = len(PRICES)  # 350
MIN_TICK = 0
MAX_TICK = TICKS - 1
_TICK_BY_HUNDREDTHS = {p: t for t, p in enumerate(PRICES)}


def format_hundredths(hundredths: int) -> str:
    """Canonical decimal string: no trailing zeros ("1.01", "3.5", "3", "1000")."""
    units, cents = divmod(hundredths, 100)
    if cents == 0:
        return str(units)
    if cents % 10 == 0:
        return f"{units}.{cents // 10}"
    return f"{units}.{cents:02d}"


#: TEXT[tick] is the canonical decimal string of the tick's price.
TEXT: tuple[str, ...] = tuple(format_hundredths(p) for p in PRICES)

# Fast path for the forms clients send most: "3", "3.0", "3.00", "3.5", "3.50".
_TICK_BY_TEXT: dict[str, int] = {}
for _t, _p in enumerate(PRICES):
    _u, _c = divmod(_p, 100)
    _TICK_BY_TEXT[TEXT[_t]] = _t
    _TICK_BY_TEXT[f"{_u}.{_c:02d}"] = _t
    if _c % 10 == 0:
        _TICK_BY_TEXT[f"{_u}.{_c // 10}"] = _t
del _t, _p, _u, _c


def tick_of_hundredths(hundredths: int) -> int | None:
    """The tick whose price is exactly ``hundredths``, or None if off the ladder."""
    return _TICK_BY_HUNDREDTHS.get(hundredths)


def parse_price(text: object) -> int | None:
    """The tick of a decimal string ("3.05"), or None if it is not a ladder price.

    Never raises: anything that is not a string naming a ladder price exactly
    (junk, "3.051", "1.001", NaN, negative, off-ladder like "3.01") gives None.
    """
    if type(text) is not str:
        return None
    tick = _TICK_BY_TEXT.get(text)
    if tick is not None:
        return tick
    if len(text) > 16:
        return None
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    hundredths = value * 100
    if hundredths != hundredths.to_integral_value():
        return None
    return _TICK_BY_HUNDREDTHS.get(int(hundredths))


def price_text(tick: int) -> str:
    """The canonical decimal string of a tick."""
    return TEXT[tick]


def is_tick(value: object) -> bool:
    return type(value) is int and 0 <= value < TICKS


def shift(tick: int, steps: int) -> int:
    """The tick ``steps`` ticks away, clamped to the ladder."""
    return min(MAX_TICK, max(MIN_TICK, tick + steps))
