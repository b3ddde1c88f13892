"""The Python API over the hosts: what the Serve app and the load test call.

Owns the bet flow across wallet and market hosts and the batching of calls to them;
holds no state of its own but actor handles, so any number of gateways (one per Serve
replica, one per load generator) can run at once.

A placement is two-phase: (1) the player's wallet host reserves the orders' maximum
loss, or refuses with INSUFFICIENT_FUNDS; (2) the market host places them with a
deadline and, once committed, reports the player's new exposure to the wallets,
releasing the reservation. A gateway that dies between the two leaves a reservation
that the wallet host reconciles after the deadline. A reservation id that was already
used (a retry) is refused with DUPLICATE_TRANSACTION and places nothing again.

Calls to one host made in the same event-loop turn travel as one batch.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from dataclasses import dataclass

import ray

from exchange.domain import codes, ladder
from exchange.domain.messages import (
    FAILURE,
    CommandResult,
    Deposit,
    InstructionReport,
    PlaceOrders,
    ReplaceOrders,
    ReserveExposure,
    Withdraw,
)
from exchange.domain.money import max_loss

from actors.channel import ChannelClosed, Link, RayLink, RemoteError, host_link
from actors.directory import host_index, host_name
from actors.host_core import now_ms
from actors.wallet_host import RESERVATION_TTL_MS
from actors.wire import pack_batch, unpack_results


# Calls in flight per host method from one gateway. One: what arrives during a call goes in
# the next, so a host takes fewer, larger calls; its journal has one flush in flight at a
# time anyway, so a caller waits about as long (docs/benchmarks.md, 2026-12-02 afternoon:
# placeOrders over HTTP +13% requests/s, p99 lower, in five alternated pairs).
WINDOW = 1


class _Batcher:
    """Collects calls to one host method; sends them as one call per loop turn, with at
    most `window` calls in flight (0: no bound): what arrives while the window is full
    goes in one call as soon as a reply comes back.

    `send(payload)` makes the call: with `packed`, one msgpack HostBatch in and packed
    results out (actors/wire.py); otherwise the item columns as arguments."""

    def __init__(self, send, max_batch: int = 1000, packed: bool = False, timeout_s: float | None = None,
                 window: int = WINDOW):
        self.send = send
        self.timeout_s = timeout_s
        self.packed = packed
        self.max_batch = max_batch
        self.window = window
        self.in_flight = 0
        self.items: list = []
        self.futures: list[asyncio.Future] = []
        self.scheduled = False

    def submit(self, *item) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self.items.append(item)
        self.futures.append(fut)
        if len(self.items) >= self.max_batch:
            self._send()
        elif not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._send)
        return fut

    def _send(self) -> None:
        """Sends what was collected; no task of its own when the channel is up: the reply's
        callback hands each caller its result (every loop turn on the way is latency)."""
        self.scheduled = False
        if not self.items or (self.window and self.in_flight >= self.window):
            return
        items, futures = self.items[:self.max_batch], self.futures[:self.max_batch]
        self.items, self.futures = self.items[self.max_batch:], self.futures[self.max_batch:]
        self.in_flight += 1
        try:
            columns = [list(c) for c in zip(*items)]
            reply = self.send(pack_batch(*columns)) if self.packed else self.send(*columns)
            if not isinstance(reply, asyncio.Future):
                reply = asyncio.ensure_future(reply)     # connecting first, or a Ray call
        except Exception as exc:
            self.in_flight -= 1
            _fail(futures, exc)
            return
        timer = (asyncio.get_running_loop().call_later(self.timeout_s, reply.cancel)
                 if self.timeout_s is not None else None)
        reply.add_done_callback(functools.partial(self._deliver, futures, timer))

    def _deliver(self, futures: list, timer, reply: asyncio.Future) -> None:
        if timer is not None:
            timer.cancel()
        self.in_flight -= 1
        if self.items and not self.scheduled:     # what waited for the window goes now
            self._send()
        if reply.cancelled():
            _fail(futures, asyncio.TimeoutError(f"no reply in {self.timeout_s} s"))
            return
        try:
            results = reply.result()
            if self.packed:
                results = unpack_results(results)
        except Exception as exc:
            _fail(futures, exc)
            return
        for f, r in zip(futures, results):
            if not f.done():
                f.set_result(r)


def _fail(futures: list, exc: BaseException) -> None:
    for f in futures:
        if not f.done():
            f.set_exception(exc)


async def _awaited(ref):
    return await ref


def host_unavailable(exc: BaseException) -> bool:
    """True when a call failed because its host is away (dead, restarting, its node
    lost, its journal failed) rather than because of what was asked."""
    from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, RayActorError, ActorUnavailableError,
                        ChannelClosed, OSError)):
        return True      # OSError: its channel could not connect (the host is gone or moving)
    return isinstance(exc, (RayTaskError, RemoteError)) and "JournalFailed" in str(exc)


@dataclass(frozen=True)
class Hosts:
    """A jurisdiction's hosts as the gateway sees them."""

    jurisdiction: str
    market_hosts: int
    wallet_hosts: int
    namespace: str = "exchange"


class Gateway:
    def __init__(self, hosts: Hosts, reservation_ttl_ms: int = RESERVATION_TTL_MS,
                 call_timeout_s: float = 10.0):
        self.hosts = hosts
        self.ttl = reservation_ttl_ms
        self.call_timeout_s = call_timeout_s
        self._handles: dict[tuple[str, int], object] = {}
        self._links: dict[tuple[str, int], Link | RayLink] = {}
        self._batchers: dict[tuple[str, int, str], _Batcher] = {}

    def handle(self, kind: str, index: int):
        key = (kind, index)
        h = self._handles.get(key)
        if h is None:
            h = ray.get_actor(host_name(kind, self.hosts.jurisdiction, index), namespace=self.hosts.namespace)
            self._handles[key] = h
        return h

    def market_host(self, market_id: str):
        return self.handle("market", host_index(market_id, self.hosts.market_hosts))

    def wallet_host(self, wallet_id: str):
        return self.handle("wallet", host_index(wallet_id, self.hosts.wallet_hosts))

    def link(self, kind: str, index: int) -> Link | RayLink:
        """The direct channel to a host (actors/channel.py), found through Ray."""
        key = (kind, index)
        link = self._links.get(key)
        if link is None:
            link = self._links[key] = host_link(lambda: self.handle(kind, index))
        return link

    def _batched(self, kind: str, index: int, method: str, *item) -> asyncio.Future:
        key = (kind, index, method)
        b = self._batchers.get(key)
        if b is None:
            b = self._batchers[key] = _Batcher(functools.partial(self.link(kind, index).call, method),
                                               packed=True, timeout_s=self.call_timeout_s)
        return b.submit(*item)

    def forget(self) -> None:
        """Drops cached handles and channels (after a host was replaced)."""
        self._handles.clear()
        for link in self._links.values():
            link.close()
        self._links.clear()
        self._batchers.clear()

    # ---------------------------------------------------------------- wallets

    async def wallet(self, cmd, unavailable: str = "SERVICE_UNAVAILABLE") -> CommandResult:
        """A wallet command; a wallet host that is away answers `unavailable` (outcome
        unknown for a command in flight: retry with the same command id)."""
        index = host_index(cmd.wallet_id, self.hosts.wallet_hosts)
        try:
            return await self._batched("wallet", index, "execute", cmd)
        except Exception as exc:
            if not host_unavailable(exc):
                raise
            return _refused(cmd, unavailable)

    async def deposit(self, player_id: str, amount: int, command_id: str | None = None) -> CommandResult:
        return await self.wallet(Deposit(command_id=command_id or uuid.uuid4().hex,
                                         wallet_id=player_id, amount=amount))

    async def withdraw(self, player_id: str, amount: int, command_id: str | None = None) -> CommandResult:
        return await self.wallet(Withdraw(command_id=command_id or uuid.uuid4().hex,
                                          wallet_id=player_id, amount=amount))

    async def balances(self, player_ids: list[str]) -> dict:
        by_host: dict[int, list[str]] = {}
        for p in player_ids:
            by_host.setdefault(host_index(p, self.hosts.wallet_hosts), []).append(p)
        out = {}
        for index, ids in by_host.items():
            out.update(await self.handle("wallet", index).balances.remote(ids))
        return out

    # ---------------------------------------------------------------- markets

    async def market(self, cmd, reservation: str | None = None, deadline: int | None = None) -> CommandResult:
        """A market command; a market host that is away (its node lost, restarting) makes
        the market SUSPENDED for bettors: MARKET_SUSPENDED, outcome unknown if in flight."""
        index = host_index(cmd.market_id, self.hosts.market_hosts)
        try:
            return await self._batched("market", index, "execute", cmd, reservation, deadline)
        except Exception as exc:
            if not host_unavailable(exc):
                raise
            return _refused(cmd, codes.MARKET_SUSPENDED)

    async def market_status(self, market_id: str, timeout_s: float = 2.0) -> str:
        """The market's status as bettors see it: SUSPENDED while its host is away."""
        try:
            view = await asyncio.wait_for(_awaited(self.market_host(market_id).market_view.remote(market_id)),
                                          timeout_s)
        except Exception as exc:
            if not host_unavailable(exc):
                raise
            return "SUSPENDED"
        return view["status"] if view is not None else "UNKNOWN"

    async def place_orders(self, cmd: PlaceOrders) -> CommandResult:
        return await self._reserve_then(cmd, _reservation_for(cmd))

    async def place_orders_many(self, cmds: list[PlaceOrders]) -> list[CommandResult]:
        """Many placements (any players, any markets) in one reserve call per wallet host
        and one place call per market host: the load generator's and a bulk client's path.
        Same two phases and guarantees as place_orders, without a future per order."""
        by_wallet: dict[int, list[int]] = {}
        for i, cmd in enumerate(cmds):
            by_wallet.setdefault(host_index(cmd.player_id, self.hosts.wallet_hosts), []).append(i)
        results: list[CommandResult | None] = [None] * len(cmds)

        async def reserve(index: int, which: list[int]) -> None:
            batch = [ReserveExposure(command_id=cmds[i].command_id, wallet_id=cmds[i].player_id,
                                     market_id=cmds[i].market_id, amount=_reservation_for(cmds[i]))
                     for i in which]
            try:
                replies = unpack_results(await self._read(
                    self.link("wallet", index).call("execute", pack_batch(batch)), self.call_timeout_s))
            except Exception as exc:
                if not host_unavailable(exc):
                    raise
                replies = [_refused(b, codes.MARKET_SUSPENDED) for b in batch]
            for i, reply in zip(which, replies):
                if reply.status != "SUCCESS":
                    results[i] = _refused(cmds[i], reply.error_code or codes.INSUFFICIENT_FUNDS)

        await asyncio.gather(*(reserve(i, w) for i, w in by_wallet.items()))
        deadline = now_ms() + self.ttl
        by_market: dict[int, list[int]] = {}
        for i, cmd in enumerate(cmds):
            if results[i] is None:
                by_market.setdefault(host_index(cmd.market_id, self.hosts.market_hosts), []).append(i)

        async def place(index: int, which: list[int]) -> None:
            batch = [cmds[i] for i in which]
            try:
                replies = unpack_results(await self._read(self.link("market", index).call(
                    "execute", pack_batch(batch, [c.command_id for c in batch], [deadline] * len(batch))),
                    self.call_timeout_s))
            except Exception as exc:
                if not host_unavailable(exc):
                    raise
                replies = [_refused(c, codes.MARKET_SUSPENDED) for c in batch]
            for i, reply in zip(which, replies):
                results[i] = reply

        await asyncio.gather(*(place(i, w) for i, w in by_market.items()))
        return results

    async def replace_orders(self, cmd: ReplaceOrders) -> CommandResult:
        sizes = await self.market_host(cmd.market_id).unmatched_sizes.remote(
            cmd.market_id, cmd.player_id, [i.bet_id for i in cmd.instructions])
        amount = 0
        for ins in cmd.instructions:
            tick = ladder.parse_price(ins.new_price)
            if tick is not None and ins.bet_id in sizes:
                amount += max(max_loss("BACK", sizes[ins.bet_id], tick),
                              max_loss("LAY", sizes[ins.bet_id], tick))
        return await self._reserve_then(cmd, amount)

    async def _reserve_then(self, cmd, amount: int) -> CommandResult:
        reservation = cmd.command_id
        reserved = await self.wallet(ReserveExposure(command_id=reservation, wallet_id=cmd.player_id,
                                                     market_id=cmd.market_id, amount=amount),
                                     unavailable=codes.MARKET_SUSPENDED)
        if reserved.status != "SUCCESS":
            return _refused(cmd, reserved.error_code or codes.INSUFFICIENT_FUNDS)
        return await self.market(cmd, reservation, now_ms() + self.ttl)

    async def cancel_orders(self, cmd) -> CommandResult:
        return await self.market(cmd)

    async def update_orders(self, cmd) -> CommandResult:
        return await self.market(cmd)

    async def operate(self, cmd) -> CommandResult:
        """Operator commands: define, open, suspend, turn in-play, remove runner, settle, void."""
        return await self.market(cmd)

    async def quiesce(self) -> None:
        """Waits until every market host has delivered its wallet reports (tests, tools)."""
        await asyncio.gather(*(self.handle("market", i).settled.remote()
                               for i in range(self.hosts.market_hosts)))

    async def orders(self, market_id: str, player_id: str) -> list[dict]:
        return await self.market_host(market_id).orders_of.remote(market_id, player_id)

    async def market_view(self, market_id: str) -> dict | None:
        return await self.market_host(market_id).market_view.remote(market_id)

    # ---- read models for the API (exchange/api/): read-only

    async def market_books(self, market_ids: list[str], depth: int = 3) -> dict[str, dict | None]:
        """market id -> MarketHost.market_books view (None: the market is not held)."""
        by_host: dict[int, list[str]] = {}
        for m in dict.fromkeys(market_ids):
            by_host.setdefault(host_index(m, self.hosts.market_hosts), []).append(m)
        replies = await asyncio.gather(*(self._read(self.handle("market", i).market_books.remote(ids, depth))
                                         for i, ids in by_host.items()), return_exceptions=True)
        out: dict[str, dict | None] = {}
        for ids, views in zip(by_host.values(), replies):
            if isinstance(views, BaseException):
                if not host_unavailable(views):
                    raise views
                # the host is away (its node lost, restarting): bettors see the market SUSPENDED
                views = [{"market_id": m, "status": "SUSPENDED", "in_play": False, "bet_delay_ms": 0,
                          "version": 0, "number_of_winners": 1, "settlement": None, "runners": []}
                         for m in ids]
            out.update(zip(ids, views))
        return out

    async def _read(self, ref, timeout_s: float = 3.0):
        return await asyncio.wait_for(_awaited(ref), min(timeout_s, self.call_timeout_s))

    async def player_orders(self, player_id: str, market_ids: list[str] | None = None) -> list[dict]:
        """The player's live orders on the given markets, or on every market of the jurisdiction."""
        if market_ids is None:
            calls = [self.handle("market", i).player_orders.remote(player_id, None)
                     for i in range(self.hosts.market_hosts)]
        else:
            by_host: dict[int, list[str]] = {}
            for m in dict.fromkeys(market_ids):
                by_host.setdefault(host_index(m, self.hosts.market_hosts), []).append(m)
            calls = [self.handle("market", i).player_orders.remote(player_id, ids)
                     for i, ids in by_host.items()]
        replies = await asyncio.gather(*(self._read(c) for c in calls), return_exceptions=True)
        for r in replies:
            if isinstance(r, BaseException) and not host_unavailable(r):
                raise r
        # a host that is away contributes nothing until it is back (its markets show SUSPENDED)
        return [o for orders in replies if not isinstance(orders, BaseException) for o in orders]

    async def profit_and_loss(self, player_id: str, market_ids: list[str], include_settled: bool = False,
                              net_of_commission: bool = False) -> list[dict]:
        """The player's matched P&L by runner (MarketHost.profit_and_loss views), one per
        market in the order asked, each once; markets not held, settled ones unless
        ``include_settled``, and those of a host that is away are left out."""
        by_host: dict[int, list[str]] = {}
        for m in dict.fromkeys(market_ids):
            by_host.setdefault(host_index(m, self.hosts.market_hosts), []).append(m)
        replies = await asyncio.gather(*(self._read(self.handle("market", i).profit_and_loss.remote(
            player_id, ids, include_settled, net_of_commission)) for i, ids in by_host.items()),
            return_exceptions=True)
        found: dict[str, dict] = {}
        for views in replies:
            if isinstance(views, BaseException):
                if not host_unavailable(views):
                    raise views
                continue        # the host is away: its markets show SUSPENDED and their P&L is not known
            found.update((v["market_id"], v) for v in views if v is not None)
        return [found[m] for m in dict.fromkeys(market_ids) if m in found]

    async def unmatched(self, market_id: str, player_id: str, bet_ids: list[int]) -> dict[int, int]:
        """Unmatched size of each of the player's live bets on one market."""
        return await self.market_host(market_id).unmatched_sizes.remote(market_id, player_id, bet_ids)


def _reservation_for(cmd: PlaceOrders) -> int:
    """What a placement must hold: the sum of its orders' maximum losses (exposure can
    rise by no more). Instructions the market will refuse anyway hold nothing."""
    amount = 0
    for ins in cmd.instructions:
        tick = ladder.parse_price(ins.price)
        if tick is not None and type(ins.size) is int and ins.size > 0:
            amount += max_loss(ins.side, ins.size, tick)
    return amount


def _refused(cmd, code: str) -> CommandResult:
    return CommandResult(command_id=cmd.command_id, status=FAILURE, error_code=code,
                         reports=[InstructionReport(index=i, status=FAILURE, error_code=code)
                                  for i in range(len(getattr(cmd, "instructions", ())))])
