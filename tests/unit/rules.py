"""Given / when / then helpers for the domain's rule tests.

Markets are built from recorded history (events) and replayed, the way a host
actor recovers; commands are then handled against that state.
"""

from __future__ import annotations

import copy

from exchange.domain import market
from exchange.domain.context import Context
from exchange.domain.messages import (
    CancelInstruction,
    CancelOrders,
    DefineMarket,
    OpenMarket,
    PlaceInstruction,
    PlaceOrders,
)

MARKET = "1.100"
A, B, C = 11, 12, 13
NOW = Context(1_700_000_000_000)

_ids = iter(range(1, 10**9))


def cid() -> str:
    return f"cmd-{next(_ids)}"


def define(runners=(A, B, C), **kw) -> DefineMarket:
    return DefineMarket(command_id=cid(), market_id=MARKET, runners=list(runners), **kw)


def open_market() -> OpenMarket:
    return OpenMarket(command_id=cid(), market_id=MARKET)


def place(player: str, runner: int, side: str, price: str, size: int, **kw) -> PlaceOrders:
    market_version = kw.pop("market_version", None)
    return PlaceOrders(
        command_id=cid(),
        market_id=MARKET,
        player_id=player,
        instructions=[PlaceInstruction(runner_id=runner, side=side, price=price, size=size, **kw)],
        market_version=market_version,
    )


def back(player, runner, price, size, **kw):
    return place(player, runner, "BACK", price, size, **kw)


def lay(player, runner, price, size, **kw):
    return place(player, runner, "LAY", price, size, **kw)


def cancel(player: str, bet_id: int, size_reduction=None) -> CancelOrders:
    return CancelOrders(
        command_id=cid(),
        market_id=MARKET,
        player_id=player,
        instructions=[CancelInstruction(bet_id=bet_id, size_reduction=size_reduction)],
    )


def history(*commands, setup=True) -> list:
    """The events of a run of commands, each of which must succeed."""
    if setup:
        commands = (define(), open_market(), *commands)
    state = None
    events = []
    for command in commands:
        state, result = market.handle(state, command, NOW)
        assert result.status == "SUCCESS", (command, result)
        events.extend(result.events)
    return events


def given(events) -> market.MarketState:
    return market.replay(events)


def when(state, command, now: Context = NOW):
    _, result = market.handle(state, command, now)
    return result


def then_refused(state, command, code: str):
    """The command is refused with ``code`` and the state does not change."""
    before = copy.deepcopy(state.snapshot()) if state is not None else None
    result = when(state, command)
    assert result.status == "FAILURE", result
    assert code in (result.error_code, *(r.error_code for r in result.reports)), result
    assert result.events == []
    assert (state.snapshot() if state is not None else None) == before
    return result


def types(events) -> list[str]:
    return [type(e).__name__ for e in events]
