"""Settlement: each player's net result on a market, and the commission.

Owns the arithmetic that turns matched positions and a result into
``PlayerResult`` records. Rules:

- Winners win in full, losers lose; a voided market (or a removed runner) is
  P&L 0 for its bets.
- Dead heat: runners in ``dead_heat`` share the ``places`` left (number of
  winners minus clear winners) among ``k`` tied runners. A bet on a tied runner
  is settled as stake * places/k at full odds and the rest lost, which makes the
  player's P&L exactly the average of his matched P&L over the winner sets the
  tie allows: (k * P&L(clear winners) + places * sum of tied deltas) / k.
  Minor units: each player gets floor of that; the few units the floors leave
  over (fewer than the number of players) go one each to the players with the
  largest remainders (ties by player id). So the players' results still sum to
  exactly zero, and nobody loses more than his exposure (floor of an average is
  never below the worst outcome).
- Commission: ``money.commission`` on each player's net winnings on the market
  at the market's base rate less the player's discount, rounded down.

Must never touch wallets: it returns results; the wallet moves the cash.
"""

from __future__ import annotations

from .exposure import Position
from .messages import PlayerResult
from .money import commission


def settle(
    positions: dict[str, Position],
    winners: tuple[int, ...],
    dead_heat: tuple[int, ...],
    places: int,
    rate_bp: int,
    discounts_bp: dict[str, int],
) -> list[PlayerResult]:
    """``winners`` and ``dead_heat`` are runner indexes; ``places`` is how many
    places the tied runners share (ignored when ``dead_heat`` is empty). The
    positions must hold no unmatched orders (the market is closed)."""
    k = len(dead_heat) or 1
    share = places if dead_heat else 0
    numerators: list[tuple[str, int]] = []
    for player_id in sorted(positions):
        p = positions[player_id]
        delta = p.delta
        clear = p.base + sum(delta[r] for r in winners)
        tied = sum(delta[r] for r in dead_heat)
        numerators.append((player_id, k * clear + share * tied))
    pnl = {player_id: num // k for player_id, num in numerators}
    if k > 1:
        leftover = -sum(pnl.values())  # exactly sum(remainders) // k
        if leftover:
            by_remainder = sorted(numerators, key=lambda item: (-(item[1] % k), item[0]))
            for player_id, _ in by_remainder[:leftover]:
                pnl[player_id] += 1
    return [
        PlayerResult(
            player_id=player_id,
            pnl=pnl[player_id],
            commission=commission(pnl[player_id], rate_bp, discounts_bp.get(player_id, 0)),
        )
        for player_id, _ in numerators
    ]
