"""Profit and loss by outcome: what a player's matched bets pay if a runner wins.

Owns the read behind API-NG's listMarketProfitAndLoss: from a ``Position`` (which
counts matched fills *and* unmatched orders at their worst, see ``exposure``) it takes
the unmatched orders back out, leaving the matched bets alone, and evaluates them per
runner, in minor units:

- one-winner market: ``if_win[r]`` = the player's P&L on the whole market if r wins
  = sum over the active runners of lose[a] + (win[r] - lose[r]);
- multi-winner market (``number_of_winners > 1``): the P&L depends on the whole
  winner set, so, as API-NG does, each runner gets the P&L of the bets on it alone:
  ``if_win[r]`` = win[r] and ``if_lose[r]`` = lose[r]; the market's P&L for a winner set
  S is sum_{r in S} if_win[r] + sum_{r not in S} if_lose[r].

Removed runners are left out (they cannot win; their bets are void). A voided market
is P&L 0 everywhere. A settled market is left out unless asked for (Betfair lists open
markets; ``include_settled`` gives a settled one's matched P&L by outcome, of which
the settlement paid one). Net of commission: ``money.commission`` at the market's base
rate comes off a positive one-winner ``if_win`` (it is a market total, as commission
is); multi-winner values are per runner, so no commission can be attributed to them and
they stay gross. When nothing is unmatched, exposure = max(0, -min over outcomes).

Must never count an unmatched order, change a position or a market, or use floats.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

from .exposure import Position
from .market import VOIDED, MarketState
from .money import commission, lay_liability
from .orders import Order


class RunnerPnl(NamedTuple):
    """One runner's line: P&L if it wins (and, multi-winner, if it loses)."""

    selection_id: int
    if_win: int
    if_lose: int | None = None


class MarketPnl(NamedTuple):
    """A player's P&L on one market; ``commission_bp``: the rate netted off, if any."""

    market_id: str
    runners: list[RunnerPnl]
    commission_bp: int | None = None


def matched_win_lose(position: Position | None, live_orders: Iterable[Order],
                     runners: int) -> tuple[list[int], list[int]]:
    """(win, lose) by runner index from matched bets only: the position less the
    unmatched orders it counts at their worst (a back's stake on lose[r], a lay's
    liability on win[r], exactly as the market added them). Removed runners' values
    are meaningless; callers skip them."""
    if position is None:
        return [0] * runners, [0] * runners
    lose = list(position.lose)
    win = [d + lo for d, lo in zip(position.delta, lose)]
    for order in live_orders:
        r = order.runner_index
        if order.is_back:
            lose[r] += order.remaining
        else:
            win[r] += lay_liability(order.remaining, order.tick)
    return win, lose


def runner_pnl(win: list[int], lose: list[int], active: Iterable[int], runner_ids: tuple[int, ...],
               number_of_winners: int) -> list[RunnerPnl]:
    """The lines of the active runners (indexes into ``runner_ids``), in runner order."""
    active = sorted(active)
    if number_of_winners > 1:
        return [RunnerPnl(runner_ids[r], win[r], lose[r]) for r in active]
    base = sum(lose[r] for r in active)
    return [RunnerPnl(runner_ids[r], base + win[r] - lose[r]) for r in active]


def net_of_commission(pnl: int, rate_bp: int) -> int:
    """A P&L less the commission it would pay (a loss pays none)."""
    return pnl - commission(pnl, rate_bp)


def market_pnl(state: MarketState, player_id: str, include_settled: bool = False,
               net: bool = False) -> MarketPnl | None:
    """The player's matched P&L by runner on the market; None for a settled or
    voided market unless ``include_settled``."""
    if state.settlement is not None and not include_settled:
        return None
    if state.settlement == VOIDED:
        lines = [RunnerPnl(state.runners[r], 0, 0 if state.number_of_winners > 1 else None)
                 for r in sorted(state.active)]
    else:
        win, lose = matched_win_lose(state.positions.get(player_id), state.live_orders(player_id),
                                     len(state.runners))
        lines = runner_pnl(win, lose, state.active, state.runners, state.number_of_winners)
    if not net or state.number_of_winners > 1:
        return MarketPnl(state.market_id, lines)
    rate = state.commission_rate_bp
    return MarketPnl(state.market_id,
                     [line._replace(if_win=net_of_commission(line.if_win, rate)) for line in lines], rate)
