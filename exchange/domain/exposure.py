"""Exposure: a player's worst-case loss on one market.

Owns the ``Position`` of a player in a market, kept incrementally by the market
as orders are placed, matched, cancelled and lapsed, and the worst-case
evaluation over the market's outcomes.

Model. An outcome is a set of winning runners of the market's size
(``number_of_winners``, 1 for a WIN market) among the runners not removed. Every
bet's P&L depends only on whether its own runner is in the winning set, so a
position is two numbers per runner, win[r] and lose[r]: the player's P&L from
bets on r if r wins / loses, summing matched fills (per fill, with the rounding
rule of ``money``) and unmatched orders at their worst (min(0, the order's P&L
if matched in full): an unmatched lay adds -liability to win[r], an unmatched
back adds -stake to lose[r]). Once the market is closed nothing is unmatched,
so the same numbers settle it.

P&L(S) = sum_r lose[r] + sum_{r in S} (win[r] - lose[r]), so the worst outcome
is found without enumerating sets: the ``number_of_winners`` smallest deltas.
The position keeps exactly what that needs, up to date after every event:
``lose[r]``, ``delta[r] = win[r] - lose[r]`` and ``base = sum of lose`` over the
runners not removed (a removed runner's delta is ``REMOVED``, larger than any
real one, so it is never picked). The worst case of a WIN market is then
``base + min(delta)``, found with a plain loop: on a market's few runners it
is cheaper than the ``min()`` call (the market's hot paths inline the same loop).
Exposure = max(0, -worst); a voided market (P&L 0 for everyone) never loses.
The property tests compare this with a brute force over all winner sets.

Must never change a position itself (the market does, in ``evolve``, through
the helpers below).
"""

from __future__ import annotations

REMOVED = 1 << 62  # delta of a removed runner: never among the smallest


class Position:
    """One player's P&L by runner on one market (matched + unmatched at worst)."""

    __slots__ = ("lose", "delta", "base")

    def __init__(self, runners: int) -> None:
        self.lose = [0] * runners
        self.delta = [0] * runners
        self.base = 0

    @classmethod
    def of(cls, lose: list[int], delta: list[int], base: int) -> Position:
        """A position with these figures (a market's snapshot restores them)."""
        position = cls.__new__(cls)
        position.lose = lose
        position.delta = delta
        position.base = base
        return position

    def add_lose(self, r: int, amount: int) -> None:
        """P&L if runner r loses changes by ``amount``."""
        self.lose[r] += amount
        self.delta[r] -= amount
        self.base += amount

    def add_win(self, r: int, amount: int) -> None:
        """P&L if runner r wins changes by ``amount``."""
        self.delta[r] += amount

    def remove_runner(self, r: int) -> None:
        """Bets on r are void: its P&L no longer counts in any outcome."""
        self.base -= self.lose[r]
        self.lose[r] = 0
        self.delta[r] = REMOVED

    def win(self, r: int) -> int:
        return self.delta[r] + self.lose[r]

    def snapshot(self) -> tuple:
        return (tuple(self.lose), tuple(self.delta), self.base)


def worst_case(position: Position, winners: int, active: int) -> int:
    """The lowest P&L over all outcomes (``winners`` places among ``active``
    runners), counting unmatched orders at their worst."""
    if winners == 1:
        low = REMOVED  # min(delta), as a loop: cheaper than the min() call on a market's few runners
        for d in position.delta:
            if d < low:
                low = d
        return position.base + low
    k = winners if winners < active else active
    return position.base + sum(sorted(position.delta)[:k])


def exposure(position: Position, winners: int, active: int) -> int:
    """max(0, -worst case): what the wallet must hold for this market."""
    worst = worst_case(position, winners, active)
    return -worst if worst < 0 else 0
