"""Market host: a Ray actor holding many markets of one jurisdiction.

Owns its markets' books and their journal partition. After a batch of market commands
is committed in Kafka it replies, and tells the wallets what changed (each touched
player's new exposure when it differs from the last one told, the placer's always, releasing
its reservation; settlement results), batched
per wallet host, without holding the reply for them: the placer's reservation already
covers the worst the batch can do, and nobody else's exposure can rise from it. A wallet host that is away gets the same messages later
from an outbox; every message is idempotent (ordered by market sequence, settlement
once per market), so resending is always safe. On recovery the host resends every
open position's exposure and every settlement it holds, which reconciles a crash at
any point between its commit and the wallets.

A placement carries a deadline: after it the market refuses it, so a wallet whose
reservation is older than the deadline can ask the market for the truth and release it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import ray

from exchange.domain import market, pnl
from exchange.domain.messages import (
    FAILURE,
    ApplyMarketExposure,
    ApplySettlement,
    CommandResult,
    InstructionReport,
    MarketSettled,
    MarketVoided,
    PlaceOrders,
    ReplaceOrders,
)

from actors.channel import Link, RayLink, host_link
from actors.directory import host_index, host_name
from actors.host_actor import HostActor
from actors.host_core import AggregateKind, now_ms
from actors.wire import pack_batch, pack_results, unpack_batch

log = logging.getLogger(__name__)

# API-NG's code for "the exchange could not do it now": a placement past its deadline.
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"

# A report the wallet host has not answered in this long goes to the outbox (resent later).
WALLET_CALL_TIMEOUT_S = 30.0

MARKET_KIND = AggregateKind("markets", lambda c: c.market_id, market.handle, market.evolve)


class MarketHost(HostActor):
    KIND_NAME = "market"

    def __init__(self, jurisdiction: str, index: int, bootstrap: str, wallet_hosts: int,
                 namespace: str = "exchange", partitions: int = 8, prefix: str = "exchange",
                 linger_ms: float = 0.0):
        super().__init__(MARKET_KIND, jurisdiction, index, bootstrap, partitions, prefix, linger_ms)
        self.wallet_hosts = wallet_hosts
        self.namespace = namespace
        self._wallets: dict[int, Link | RayLink] = {}
        self._outbox: list = []
        self._outbox_task: asyncio.Task | None = None
        self._pushes: set[asyncio.Task] = set()
        # market -> player -> the exposure last sent to the player's wallet (queued or
        # delivered: a report that fails goes to the outbox and is resent). Not durable: a
        # recovered host starts empty and resends every open exposure (after_recovery).
        self._told: dict[str, dict[str, int]] = {}

    # ---------------------------------------------------------------- commands

    async def execute(self, commands: list, reservations: list | None = None,
                      deadlines: list | None = None) -> list[CommandResult]:
        """Handles market commands; `reservations[i]`/`deadlines[i]` go with a placement."""
        started = time.perf_counter()
        await self.ready()
        now = now_ms()
        n = len(commands)
        reservations = reservations or [None] * n
        deadlines = deadlines or [None] * n
        runnable, expired = [], {}
        for i, cmd in enumerate(commands):
            if deadlines[i] is not None and now > deadlines[i]:
                expired[i] = _refusal(cmd, SERVICE_UNAVAILABLE)
            else:
                runnable.append(cmd)
        results_run = await self.run_batch(runnable)
        self.maybe_crash("market.after_persist")
        results, it = [], iter(results_run)
        for i in range(n):
            results.append(expired[i] if i in expired else next(it))
        messages = self._wallet_messages(commands, results, reservations)
        if messages:
            # The reply does not wait for the wallets: each wallet's reservation already
            # covers the worst this batch can do, and a report lost with this process is
            # resent on recovery. Reports carry the market's sequence, so order is free.
            task = asyncio.get_running_loop().create_task(self._tell_wallets_then(messages))
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)
        self.record(n, started)
        return results

    async def _tell_wallets_then(self, messages: list) -> None:
        await self._tell_wallets(messages)
        self.maybe_crash("market.after_wallets")

    async def settled(self) -> bool:
        """True when every wallet report of this host has been delivered (tests, tools)."""
        while self._pushes:
            await asyncio.gather(*list(self._pushes))
        return not self._outbox

    def _wallet_messages(self, commands, results, reservations) -> list:
        """The wallet messages of a committed batch: each touched player's new exposure where
        it differs from the last one told (a maker's resting order that fills keeps its worst
        loss, so most makers' reports would change nothing), always the placer's with its
        reservation to release; settlement results."""
        out = []
        told = self._told
        for cmd, result, reservation in zip(commands, results, reservations):
            state = self.core.states.get(cmd.market_id)
            seq = state.seq if state is not None else 0
            exposures = dict(result.exposures)
            placer = getattr(cmd, "player_id", None) if reservation is not None else None
            if placer is not None and placer not in exposures:
                exposures[placer] = state.exposure_of(placer) if state is not None else 0
            market_told = told.get(cmd.market_id)
            if market_told is None:
                market_told = told[cmd.market_id] = {}
            for player, exposure in exposures.items():
                if player != placer and market_told.get(player) == exposure:
                    continue
                market_told[player] = exposure
                out.append(ApplyMarketExposure(
                    command_id=f"{cmd.command_id}/x/{player}", wallet_id=player,
                    market_id=cmd.market_id, exposure=exposure,
                    market_seq=result.market_seq or seq,
                    release=[reservation] if player == placer else []))
            for event in result.events:
                if type(event) in (MarketSettled, MarketVoided):
                    out.extend(_settlements(event))
                    told.pop(event.market_id, None)
        return out

    async def execute_packed(self, payload: bytes) -> bytes:
        """`execute` for a msgpack HostBatch (the gateway's fast path); results without events."""
        batch = unpack_batch(payload)
        return pack_results(await self.execute(batch.commands, batch.reservations, batch.deadlines))

    # ---------------------------------------------------------------- wallets

    def _wallet(self, index: int) -> Link | RayLink:
        link = self._wallets.get(index)
        if link is None:
            link = self._wallets[index] = host_link(
                lambda: ray.get_actor(host_name("wallet", self.jurisdiction, index), namespace=self.namespace))
        return link

    async def _tell_wallets(self, messages: list) -> None:
        if not messages:
            return
        by_host: dict[int, list] = {}
        for m in messages:
            by_host.setdefault(host_index(m.wallet_id, self.wallet_hosts), []).append(m)

        async def send(index: int, batch: list) -> None:
            try:
                await asyncio.wait_for(self._wallet(index).call("apply", pack_batch(batch)), WALLET_CALL_TIMEOUT_S)
            except Exception as exc:   # wallet host away: keep it for later, all idempotent
                log.warning("%s: wallet host %d unreachable (%r); %d messages to the outbox",
                            self.name, index, exc, len(batch))
                link = self._wallets.pop(index, None)
                if link is not None:
                    link.close()
                self._outbox.extend(batch)
                if self._outbox_task is None or self._outbox_task.done():
                    self._outbox_task = asyncio.get_running_loop().create_task(self._drain_outbox())

        await asyncio.gather(*(send(i, b) for i, b in by_host.items()))

    async def _drain_outbox(self) -> None:
        while self._outbox:
            await asyncio.sleep(0.5)
            batch, self._outbox = self._outbox, []
            await self._tell_wallets(batch)

    async def after_recovery(self) -> None:
        """Resends every open exposure and every settlement held: wallets ignore what they have."""
        messages = []
        for market_id, state in self.core.states.items():
            if state.settlement is None:
                for player in state.positions:
                    messages.append(ApplyMarketExposure(
                        command_id=f"recover/{market_id}/{state.seq}/{player}", wallet_id=player,
                        market_id=market_id, exposure=state.exposure_of(player), market_seq=state.seq))
            else:
                messages.extend(ApplySettlement(command_id=f"settle/{market_id}/{r.player_id}",
                                                wallet_id=r.player_id, market_id=market_id,
                                                pnl=r.pnl, commission=r.commission)
                                for r in state.results)
        if messages:
            asyncio.get_running_loop().create_task(self._tell_wallets(messages))

    # ---------------------------------------------------------------- reads

    async def exposures(self, requests: list[tuple[str, str]]) -> list[tuple[int, int]]:
        """(market id, player id) -> (exposure, market seq): the market's current truth."""
        await self.ready()
        out = []
        for market_id, player in requests:
            state = self.core.states.get(market_id)
            out.append((state.exposure_of(player), state.seq) if state is not None else (0, 0))
        return out

    async def unmatched_sizes(self, market_id: str, player_id: str, bet_ids: list[int]) -> dict[int, int]:
        """Unmatched size of each of the player's live bets (what a replace would re-place)."""
        await self.ready()
        state = self.core.states.get(market_id)
        if state is None:
            return {}
        sizes = {}
        for bet_id in bet_ids:
            order = state.orders.get(bet_id)
            if order is not None and order.player_id == player_id:
                sizes[bet_id] = order.remaining
        return sizes

    async def market_view(self, market_id: str) -> dict | None:
        await self.ready()
        state = self.core.states.get(market_id)
        return state.snapshot() if state is not None else None

    async def orders_of(self, market_id: str, player_id: str) -> list[dict]:
        await self.ready()
        state = self.core.states.get(market_id)
        if state is None:
            return []
        return [o.snapshot() for o in state.live_orders(player_id)]

    async def market_ids(self) -> list[str]:
        await self.ready()
        return sorted(self.core.states)

    async def outbox_size(self) -> int:
        return len(self._outbox)

    # ---- read models for the API (exchange/api/): read-only, no journal, no wallets

    async def market_books(self, market_ids: list[str], depth: int = 3) -> list[dict | None]:
        """Each market's status and its best ``depth`` price levels per runner.

        ``to_back``: resting lays a backer can take, best (highest) tick first;
        ``to_lay``: resting backs a layer can take, best (lowest) tick first; sizes
        are the unmatched backer's stakes at each tick (minor units). None: no market.
        """
        await self.ready()
        out: list[dict | None] = []
        for market_id in market_ids:
            state = self.core.states.get(market_id)
            if state is None:
                out.append(None)
                continue
            runners = []
            for index, runner_id in enumerate(state.runners):
                book = state.books[index]
                to_back, to_lay = [], []
                tick = book.best_lay
                while tick >= 0 and len(to_back) < depth:
                    if book.lays[tick]:
                        to_back.append((tick, sum(o.remaining for o in book.lays[tick])))
                    tick -= 1
                tick = book.best_back
                while tick < len(book.backs) and len(to_lay) < depth:
                    if book.backs[tick]:
                        to_lay.append((tick, sum(o.remaining for o in book.backs[tick])))
                    tick += 1
                runners.append({"selection_id": runner_id, "active": runner_id in state.active_index,
                                "to_back": to_back, "to_lay": to_lay})
            out.append({"market_id": market_id, "status": state.status, "in_play": state.in_play,
                        "bet_delay_ms": state.bet_delay_ms, "version": state.version,
                        "number_of_winners": state.number_of_winners, "settlement": state.settlement,
                        "runners": runners})
        return out

    async def player_orders(self, player_id: str, market_ids: list[str] | None = None) -> list[dict]:
        """The player's live (partly unmatched) orders on the given markets, or on every market held."""
        await self.ready()
        states = self.core.states
        ids = sorted(states) if market_ids is None else market_ids
        out = []
        for market_id in ids:
            state = states.get(market_id)
            if state is None:
                continue
            for o in state.live_orders(player_id):
                out.append({"market_id": market_id, "bet_id": o.bet_id,
                            "selection_id": state.runners[o.runner_index],
                            "side": "BACK" if o.is_back else "LAY", "tick": o.tick, "size": o.size,
                            "remaining": o.remaining, "matched": o.matched, "persistence": o.persistence,
                            "time_in_force": o.time_in_force, "customer_ref": o.customer_ref,
                            "placed_at": o.placed_at, "matched_value": o.matched_value})
        return out

    async def profit_and_loss(self, player_id: str, market_ids: list[str], include_settled: bool = False,
                              net_of_commission: bool = False) -> list[dict | None]:
        """The player's matched P&L by runner on each market (exchange/domain/pnl.py), in
        minor units: {"market_id", "commission_bp", "runners": [(selection id, if win, if
        lose or None)]}. None: the market is not held, or settled and not asked for."""
        await self.ready()
        states = self.core.states
        out: list[dict | None] = []
        for market_id in market_ids:
            state = states.get(market_id)
            found = (pnl.market_pnl(state, player_id, include_settled, net_of_commission)
                     if state is not None else None)
            out.append(None if found is None else {
                "market_id": market_id, "commission_bp": found.commission_bp,
                "runners": [tuple(line) for line in found.runners]})
        return out


def _settlements(event) -> list[ApplySettlement]:
    return [ApplySettlement(command_id=f"settle/{event.market_id}/{r.player_id}", wallet_id=r.player_id,
                            market_id=event.market_id, pnl=r.pnl, commission=r.commission)
            for r in event.results]


def _refusal(cmd, code: str) -> CommandResult:
    count = len(cmd.instructions) if isinstance(cmd, (PlaceOrders, ReplaceOrders)) else 0
    return CommandResult(command_id=cmd.command_id, status=FAILURE, error_code=code,
                         reports=[InstructionReport(index=i, status=FAILURE, error_code=code)
                                  for i in range(count)])
