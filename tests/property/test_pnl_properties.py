"""Matched P&L by outcome (exchange/domain/pnl.py) against a brute force over the fills.

Random placements (backs and lays at five prices around 3.0, so that they cross),
cancels and a runner removal on a market with 1 to 3 winners among 4 runners. Then,
for every player: each winner set's P&L from the P&L lines equals the brute force over
the market's own fill events; unmatched orders count for nothing; every outcome nets
to zero across players; with nothing unmatched, exposure = max(0, -worst outcome);
replaying the events gives the same lines; and settling pays each player exactly the
line of the winners drawn. Hypothesis prints the failing example (and its blob).
"""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from exchange.domain import ladder, market, pnl
from exchange.domain.context import Context
from exchange.domain.messages import (
    CancelInstruction,
    CancelOrders,
    CloseMarket,
    DefineMarket,
    OpenMarket,
    OrderPlaced,
    PlaceInstruction,
    PlaceOrders,
    RemoveRunner,
    SettleMarket,
)
from exchange.domain.money import back_profit

MARKET = "1.7"
PLAYERS = ("p0", "p1", "p2")
RUNNERS = (21, 22, 23, 24)
MID = ladder.parse_price("3.0")
NOW = Context(1_700_000_000_000)

PLACE = st.tuples(st.just("place"), st.sampled_from(PLAYERS), st.sampled_from(RUNNERS[:2] * 3 + RUNNERS[2:]),
                  st.sampled_from(["BACK", "LAY"]), st.integers(MID - 2, MID + 2).map(ladder.price_text),
                  st.sampled_from([100, 150, 333, 500, 1000, 2501]))
CANCEL = st.tuples(st.just("cancel"), st.sampled_from(PLAYERS), st.integers(1, 60))
REMOVE = st.tuples(st.just("remove"), st.sampled_from(RUNNERS))
OPS = st.lists(st.integers(0, 19).flatmap(lambda k: PLACE if k < 16 else CANCEL if k < 19 else REMOVE),
               max_size=40)


def run(winners: int, ops) -> tuple[market.MarketState, list]:
    commands = [DefineMarket(command_id="d", market_id=MARKET, runners=list(RUNNERS), number_of_winners=winners,
                             min_stake=100, commission_rate_bp=500),
                OpenMarket(command_id="o", market_id=MARKET)]
    for i, op in enumerate(ops):
        if op[0] == "place":
            _, player, runner, side, price, size = op
            commands.append(PlaceOrders(command_id=f"c{i}", market_id=MARKET, player_id=player, instructions=[
                PlaceInstruction(runner_id=runner, side=side, price=price, size=size)]))
        elif op[0] == "cancel":
            commands.append(CancelOrders(command_id=f"c{i}", market_id=MARKET, player_id=op[1],
                                         instructions=[CancelInstruction(bet_id=op[2])]))
        else:
            commands.append(RemoveRunner(command_id=f"c{i}", market_id=MARKET, runner_id=op[1]))
    state, events = None, []
    for command in commands:
        state, result = market.handle(state, command, NOW)
        events += result.events          # refusals add none
    return state, events


def brute_force(state: market.MarketState, events: list, player: str) -> dict[tuple[int, ...], int]:
    """Matched P&L by winner set, from the fills in the events (removed runners void)."""
    active = [state.runners[r] for r in state.active]
    fills = []                           # (runner, is_back, tick, size) from the player's side
    for e in events:
        if isinstance(e, OrderPlaced):
            for f in e.fills:
                if e.player_id == player:
                    fills.append((e.runner_id, e.side == "BACK", f.price_tick, f.size))
                if f.maker_player_id == player:
                    fills.append((e.runner_id, e.side != "BACK", f.price_tick, f.size))
    out = {}
    for winners in itertools.combinations(active, min(state.number_of_winners, len(active))):
        total = 0
        for runner, is_back, tick, size in fills:
            if runner not in active:
                continue
            won = back_profit(size, tick) if runner in winners else -size
            total += won if is_back else -won
        out[winners] = total
    return out


def outcomes(state: market.MarketState, lines: list[pnl.RunnerPnl]) -> dict[tuple[int, ...], int]:
    """P&L by winner set from the lines (one winner: ifWin; several: ifWin/ifLose per runner)."""
    ids = [line.selection_id for line in lines]
    by_id = {line.selection_id: line for line in lines}
    out = {}
    for winners in itertools.combinations(ids, min(state.number_of_winners, len(ids))):
        if state.number_of_winners == 1:
            out[winners] = by_id[winners[0]].if_win
        else:
            out[winners] = sum(by_id[r].if_win if r in winners else by_id[r].if_lose for r in ids)
    return out


@given(winners=st.integers(1, 3), ops=OPS)
def test_lines_are_the_matched_pnl_of_every_outcome(winners, ops):
    state, events = run(winners, ops)
    replayed = market.replay(events)
    for player in PLAYERS:
        lines = pnl.market_pnl(state, player).runners
        assert [line.selection_id for line in lines] == [state.runners[r] for r in sorted(state.active)]
        assert all((line.if_lose is None) == (winners == 1) for line in lines)
        assert outcomes(state, lines) == brute_force(state, events, player)
        assert pnl.market_pnl(replayed, player) == pnl.market_pnl(state, player)


@given(winners=st.integers(1, 3), ops=OPS)
def test_every_outcome_nets_to_zero_across_players(winners, ops):
    state, _ = run(winners, ops)
    by_player = [pnl.market_pnl(state, p).runners for p in PLAYERS]
    for lines in zip(*by_player):
        assert sum(line.if_win for line in lines) == 0
        if winners > 1:
            assert sum(line.if_lose for line in lines) == 0


@given(winners=st.integers(1, 3), ops=OPS)
def test_without_unmatched_orders_exposure_is_minus_the_worst_outcome(winners, ops):
    state, _ = run(winners, ops)
    for player in PLAYERS:
        state, cancelled = market.handle(state, CancelOrders(command_id=f"all-{player}", market_id=MARKET,
                                                             player_id=player), NOW)
        assert cancelled.status == "SUCCESS" and not state.live_orders(player)
        worst = min(outcomes(state, pnl.market_pnl(state, player).runners).values())
        assert state.exposure_of(player) == max(0, -worst)
        if winners == 1:
            assert state.exposure_of(player) == max(0, -min(x.if_win for x in pnl.market_pnl(state, player).runners))


@given(winners=st.integers(1, 3), ops=OPS, data=st.data())
def test_settlement_pays_each_player_the_outcome_of_the_winners_drawn(winners, ops, data):
    state, _ = run(winners, ops)
    before = {p: pnl.market_pnl(state, p) for p in PLAYERS}
    active = [state.runners[r] for r in sorted(state.active)]
    drawn = data.draw(st.permutations(active).map(lambda rs: sorted(rs[:min(winners, len(rs))])), label="winners")
    state, closed = market.handle(state, CloseMarket(command_id="x", market_id=MARKET), NOW)
    assert closed.status == "SUCCESS"
    assert {p: pnl.market_pnl(state, p) for p in PLAYERS} == before       # closing lapses only unmatched
    state, settled = market.handle(state, SettleMarket(command_id="s", market_id=MARKET, winners=drawn), NOW)
    assert settled.status == "SUCCESS", settled
    paid = {r.player_id: r.pnl for r in state.results}
    for player in PLAYERS:
        assert pnl.market_pnl(state, player) is None
        lines = pnl.market_pnl(state, player, include_settled=True).runners
        assert paid.get(player, 0) == outcomes(state, lines)[tuple(drawn)]
