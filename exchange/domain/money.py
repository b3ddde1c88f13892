"""Money arithmetic in integer minor units (pence, cents).

Owns: a back's profit and a lay's liability at a ladder price, the maximum loss
of an order, commission. Every amount is an int in minor units; prices come in
as ladder ticks and are used as integer hundredths.

Rounding rule (one rule, used everywhere so both sides of a fill agree): the
profit of a back of ``stake`` at price P is ``floor(stake * (P - 1))``, computed
exactly as ``stake * (hundredths - 100) // 100``; the liability of the matching
lay is the same number. A fill is settled from these per-fill amounts, so the
backer's gain is exactly the layer's loss and vice versa.

Commission is ``floor(net_winnings * rate_bp * (10000 - discount_bp) / 10000**2)``:
rounded down, in the player's favour.

Must never use floats.
"""

from __future__ import annotations

from .ladder import PRICES

#: ODDS_MINUS_ONE[tick] = (price - 1) in hundredths.
ODDS_MINUS_ONE: tuple[int, ...] = tuple(p - 100 for p in PRICES)

BASIS = 10_000  # basis points in one


def back_profit(stake: int, tick: int) -> int:
    """What a back of ``stake`` at ``tick`` wins if its runner wins."""
    return stake * ODDS_MINUS_ONE[tick] // 100


def lay_liability(stake: int, tick: int) -> int:
    """What a lay of (backer's) ``stake`` at ``tick`` loses if its runner wins."""
    return stake * ODDS_MINUS_ONE[tick] // 100


def max_loss(side: str, stake: int, tick: int) -> int:
    """The most an order can lose if it is matched in full at ``tick``.

    For a back the stake; for a lay its liability. It bounds how much placing
    the order can add to the player's exposure on the market (fills at better
    prices only reduce it).
    """
    if side == "BACK":
        return stake
    return stake * ODDS_MINUS_ONE[tick] // 100


def commission(net_winnings: int, rate_bp: int, discount_bp: int = 0) -> int:
    """Commission on a player's net winnings on one market (none on a net loss)."""
    if net_winnings <= 0:
        return 0
    return net_winnings * rate_bp * (BASIS - discount_bp) // (BASIS * BASIS)
