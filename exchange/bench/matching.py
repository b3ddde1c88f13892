"""Matching throughput of the domain market against a bare price-time loop.

One market of 3 runners, orders around a mid price from a pool of players: ~50%
places meant to rest, ~30% places that cross (often several orders deep), ~20%
cancels of recent orders. The same operation stream runs through:

- ``ops_per_s``: ``exchange.domain.market.handle`` per command (validation,
  price parsing, self-match check, matching, events built, book and order index
  and per-player positions maintained, the touched players' exposures computed,
  a CommandResult with reports);
- ``ceiling_ops_per_s``: a bare price-time loop over per-tick deques with no
  validation, events, positions or exposure (only the id index cancels need);
- ``outputs_only_ops_per_s``: building nothing but the domain's own outputs
  again (the same events with their fills, reports and results, field for
  field, from values read off the first run), with no book at all;
- ``floor_ops_per_s``: the two together (their times added, less one bare
  iteration over the stream, which a fused loop would share): what any
  implementation that walks the book like the ceiling and answers with the
  issue's frozen Structs must spend at least, before validating anything or
  keeping positions and exposure. ``floor_ratio`` is it against the ceiling:
  the most any such implementation could reach.

Commands are built before timing (they arrive decoded from the wire). Best of
``--repeat`` runs for each; one core; the garbage collector stays on (the
prebuilt stream is frozen out of it, see ``run``). ``steal_pct``: the share of the
machine's CPU time the hypervisor gave to other guests over the timed runs
(exchange/bench/machine.py): this figure is how fast this VM runs Python right now,
and the readings of the other benchmarks taken near it are read against it.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import sys
import time
from collections import deque

from exchange.bench.machine import cpu_ticks, steal_pct
from exchange.domain import market as market_mod
from exchange.domain.context import Context
from exchange.domain.ladder import TEXT, TICKS, parse_price
from exchange.domain.messages import (
    CancelInstruction,
    CancelOrders,
    CommandResult,
    DefineMarket,
    Fill,
    InstructionReport,
    OpenMarket,
    OrderCancelled,
    OrderPlaced,
    PlaceInstruction,
    PlaceOrders,
)

REST, CROSS, CANCEL = 0, 1, 2
MARKET_ID = "1.234567"
RUNNER_IDS = (47972, 58805, 1221385)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ops", type=int, default=100_000, help="operations per run (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine; the best counts (default 3)")
    parser.add_argument("--players", type=int, default=1000, help="size of the player pool (default 1000)")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the operation stream")


def make_ops(count: int, players: int, seed: int) -> list[tuple]:
    """(kind, runner index, is_back, tick, size, player index, target op index)."""
    rng = random.Random(seed)
    mid = parse_price("3.0")
    ops: list[tuple] = []
    places: list[int] = []
    oldest = 0  # quotes get refreshed: half the cancels take the oldest place first
    for i in range(count):
        roll = rng.random()
        runner = rng.randrange(len(RUNNER_IDS))
        player = rng.randrange(players)
        is_back = rng.random() < 0.5
        if roll < 0.5:  # rests on its own side of the mid
            tick = mid + rng.randint(1, 4) if is_back else mid - rng.randint(1, 4)
            ops.append((REST, runner, is_back, tick, rng.randint(2, 50) * 100, player, -1))
            places.append(i)
        elif roll < 0.8:  # crosses to the other side
            tick = mid - rng.randint(1, 5) if is_back else mid + rng.randint(1, 5)
            ops.append((CROSS, runner, is_back, tick, rng.randint(2, 200) * 100, player, -1))
            places.append(i)
        else:  # cancels a recent place, or the oldest not yet cancelled (it may be gone already)
            if not places:
                target = -1
            elif rng.random() < 0.5:
                target = places[-rng.randint(1, min(len(places), 200))]
            else:
                target = places[min(oldest, len(places) - 1)]
                oldest += 1
            ops.append((CANCEL, 0, False, 0, 0, 0, target))
    return ops


# --------------------------------------------------------------------------
# the domain, full bookkeeping


def _fresh_market() -> market_mod.MarketState:
    ctx = Context(0)
    state, _ = market_mod.handle(None, DefineMarket(command_id="d", market_id=MARKET_ID, runners=list(RUNNER_IDS)), ctx)
    state, _ = market_mod.handle(state, OpenMarket(command_id="o", market_id=MARKET_ID), ctx)
    return state


def build_commands(ops: list[tuple], players: int) -> list:
    """Wire commands for the stream; cancels name the bet ids a first run assigns."""
    names = [f"player-{p}" for p in range(players)]
    places: dict[int, PlaceOrders] = {}
    commands: list = []
    for i, (kind, runner, is_back, tick, size, player, target) in enumerate(ops):
        if kind == CANCEL:
            commands.append(target)
            continue
        cmd = PlaceOrders(
            command_id=f"c{i}",
            market_id=MARKET_ID,
            player_id=names[player],
            instructions=[
                PlaceInstruction(
                    runner_id=RUNNER_IDS[runner], side="BACK" if is_back else "LAY", price=TEXT[tick], size=size
                )
            ],
        )
        places[i] = cmd
        commands.append(cmd)
    # a first run learns the bet ids (the domain is deterministic, so a second
    # run on a fresh market assigns the same ones)
    state = _fresh_market()
    handle = market_mod.handle
    bet_ids: dict[int, int] = {}
    ctx = Context(1)
    for i, cmd in enumerate(commands):
        if type(cmd) is int:
            cmd = commands[i] = _cancel(i, cmd, bet_ids, places)
        state, result = handle(state, cmd, ctx)
        if type(cmd) is PlaceOrders and result.reports[0].bet_id is not None:
            bet_ids[i] = result.reports[0].bet_id
    return commands


def _cancel(i: int, target: int, bet_ids: dict[int, int], places: dict[int, PlaceOrders]) -> CancelOrders:
    player_id = places[target].player_id if target in places else "player-0"
    return CancelOrders(
        command_id=f"c{i}",
        market_id=MARKET_ID,
        player_id=player_id,
        instructions=[CancelInstruction(bet_id=bet_ids.get(target, -1))],
    )


def run_domain(commands: list) -> tuple[float, dict]:
    state = _fresh_market()
    handle = market_mod.handle
    ctx = Context(1)
    outcomes = {"SUCCESS": 0, "FAILURE": 0}
    events = 0
    started = time.perf_counter()
    for cmd in commands:
        state, result = handle(state, cmd, ctx)
        outcomes[result.status] += 1
        events += len(result.events)
    elapsed = time.perf_counter() - started
    return elapsed, {"events": events, **{k.lower(): v for k, v in outcomes.items()}}


# --------------------------------------------------------------------------
# the outputs alone: the domain's events, reports and results built again


def record_outputs(commands: list) -> list[tuple]:
    """What a run of the domain answered, as plain values, one tuple per command."""
    state = _fresh_market()
    handle = market_mod.handle
    ctx = Context(1)
    recorded: list[tuple] = []
    for cmd in commands:
        state, result = handle(state, cmd, ctx)
        report = result.reports[0]
        exposures = tuple(result.exposures.items())
        if result.status != "SUCCESS":
            recorded.append((2, result.command_id, result.error_code, result.market_seq))
            continue
        event = result.events[0]
        if type(event) is OrderCancelled:
            recorded.append((1, result.command_id, report.bet_id, exposures, result.market_seq, event.market_id,
                             event.seq, event.at, event.size_cancelled))
            continue
        fills = tuple((f.maker_bet_id, f.maker_player_id, f.price_tick, f.size) for f in event.fills)
        recorded.append((0, result.command_id, report.bet_id, report.size_matched, report.matched_value, exposures,
                         result.market_seq, event.market_id, event.seq, event.at, event.player_id, event.runner_id,
                         event.side, event.price_tick, event.size, event.persistence, event.customer_ref, fills))
    return recorded


def run_loop_only(recorded: list[tuple]) -> float:
    """The bare iteration of ``run_outputs``: a fused implementation would share
    one loop with the walk, so the floor does not count it twice."""
    started = time.perf_counter()
    for values in recorded:
        kind = values[0]  # noqa: F841
    return time.perf_counter() - started


def run_outputs(recorded: list[tuple]) -> float:
    """Build every recorded answer again, each Struct by keyword as the domain does."""
    started = time.perf_counter()
    for values in recorded:
        kind = values[0]
        if kind == 0:
            (_, command_id, bet_id, size_matched, matched_value, exposures, market_seq, market_id, seq, at,
             player_id, runner_id, side, price_tick, size, persistence, customer_ref, fills) = values
            made = []  # a loop, not a comprehension (a frame of its own on 3.11): the cheapest way
            for m, p, t, q in fills:
                made.append(Fill(maker_bet_id=m, maker_player_id=p, price_tick=t, size=q))
            CommandResult(
                command_id=command_id,
                status="SUCCESS",
                reports=[InstructionReport(index=0, status="SUCCESS", bet_id=bet_id, size_matched=size_matched,
                                           matched_value=matched_value)],
                events=[OrderPlaced(market_id=market_id, seq=seq, at=at, bet_id=bet_id, player_id=player_id,
                                    runner_id=runner_id, side=side, price_tick=price_tick, size=size,
                                    persistence=persistence, customer_ref=customer_ref,
                                    fills=made)],
                exposures=dict(exposures) if fills else {player_id: exposures[0][1]},
                market_seq=market_seq,
            )
        elif kind == 1:
            _, command_id, bet_id, exposures, market_seq, market_id, seq, at, size_cancelled = values
            CommandResult(
                command_id=command_id,
                status="SUCCESS",
                reports=[InstructionReport(index=0, status="SUCCESS", bet_id=bet_id)],
                events=[OrderCancelled(market_id=market_id, seq=seq, at=at, bet_id=bet_id,
                                       size_cancelled=size_cancelled)],
                exposures={exposures[0][0]: exposures[0][1]},
                market_seq=market_seq,
            )
        else:
            _, command_id, error_code, market_seq = values
            CommandResult(
                command_id=command_id,
                status="FAILURE",
                error_code=error_code,
                reports=[InstructionReport(index=0, status="FAILURE", error_code=error_code)],
                market_seq=market_seq,
            )
    return time.perf_counter() - started


# --------------------------------------------------------------------------
# the ceiling: a bare price-time loop


def run_ceiling(ops: list[tuple]) -> float:
    backs = [[deque() for _ in range(TICKS)] for _ in RUNNER_IDS]
    lays = [[deque() for _ in range(TICKS)] for _ in RUNNER_IDS]
    best_back = [TICKS] * len(RUNNER_IDS)
    best_lay = [-1] * len(RUNNER_IDS)
    live: dict[int, list] = {}
    started = time.perf_counter()
    for i, (kind, r, is_back, tick, size, player, target) in enumerate(ops):
        if kind == CANCEL:
            entry = live.pop(target, None)
            if entry is not None:
                t = entry[2]
                if entry[1]:
                    queue = backs[r2 := entry[3]][t]
                    queue.remove(entry)
                    if not queue and t == best_back[r2]:
                        b = backs[r2]
                        while t < TICKS and not b[t]:
                            t += 1
                        best_back[r2] = t
                else:
                    queue = lays[r2 := entry[3]][t]
                    queue.remove(entry)
                    if not queue and t == best_lay[r2]:
                        b = lays[r2]
                        while t >= 0 and not b[t]:
                            t -= 1
                        best_lay[r2] = t
            continue
        if is_back:
            book = lays[r]
            level = best_lay[r]
            while size and level >= tick:
                queue = book[level]
                while queue:
                    maker = queue[0]
                    if maker[0] > size:
                        maker[0] -= size
                        size = 0
                        break
                    size -= maker[0]
                    queue.popleft()
                    del live[maker[4]]
                if not queue:
                    level -= 1
            while level >= 0 and not book[level]:
                level -= 1
            best_lay[r] = level
            if size:
                entry = [size, True, tick, r, i]
                backs[r][tick].append(entry)
                live[i] = entry
                if tick < best_back[r]:
                    best_back[r] = tick
        else:
            book = backs[r]
            level = best_back[r]
            while size and level <= tick:
                queue = book[level]
                while queue:
                    maker = queue[0]
                    if maker[0] > size:
                        maker[0] -= size
                        size = 0
                        break
                    size -= maker[0]
                    queue.popleft()
                    del live[maker[4]]
                if not queue:
                    level += 1
            while level < TICKS and not book[level]:
                level += 1
            best_back[r] = level
            if size:
                entry = [size, False, tick, r, i]
                lays[r][tick].append(entry)
                live[i] = entry
                if tick > best_lay[r]:
                    best_lay[r] = tick
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict:
    ops = make_ops(args.ops, args.players, args.seed)
    commands = build_commands(ops, args.players)
    recorded = record_outputs(commands)
    # The prebuilt stream stays alive for the whole run, which a real host never
    # does (commands arrive, are handled and dropped): freeze it out of the
    # collector's sight so full collections do not walk it over and over.
    gc.collect()
    gc.freeze()
    domain_best = float("inf")
    ceiling_best = float("inf")
    outputs_best = float("inf")
    loop_best = float("inf")
    counts: dict = {}
    ticks = cpu_ticks()
    try:
        for _ in range(max(1, args.repeat)):
            ceiling_best = min(ceiling_best, run_ceiling(ops))
            elapsed, counts = run_domain(commands)
            domain_best = min(domain_best, elapsed)
            outputs_best = min(outputs_best, run_outputs(recorded))
            loop_best = min(loop_best, run_loop_only(recorded))
    finally:
        gc.unfreeze()
    stolen = steal_pct(ticks, cpu_ticks())
    ops_per_s = len(ops) / domain_best
    ceiling_ops_per_s = len(ops) / ceiling_best
    floor_ops_per_s = len(ops) / (ceiling_best + outputs_best - loop_best)
    mix = {k: sum(1 for op in ops if op[0] == v) for k, v in (("rest", REST), ("cross", CROSS), ("cancel", CANCEL))}
    return {
        "benchmark": "matching",
        "ops_per_s": round(ops_per_s),
        "ceiling_ops_per_s": round(ceiling_best and ceiling_ops_per_s),
        "ratio": round(ops_per_s / ceiling_ops_per_s, 3),
        "outputs_only_ops_per_s": round(len(ops) / outputs_best),
        "floor_ops_per_s": round(floor_ops_per_s),
        "floor_ratio": round(floor_ops_per_s / ceiling_ops_per_s, 3),
        "ops": len(ops),
        "seconds": round(domain_best, 4),
        "ceiling_seconds": round(ceiling_best, 4),
        "outputs_only_seconds": round(outputs_best, 4),
        "mix": mix,
        "results": counts,
        "runners": len(RUNNER_IDS),
        "players": args.players,
        "repeat": args.repeat,
        "steal_pct": stolen,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
    }
