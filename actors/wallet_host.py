"""Wallet host: a Ray actor holding many player wallets of one jurisdiction.

Owns its wallets and their journal partition: deposits, withdrawals and exposure
reservations come from the gateway (`execute`); exposure reports and settlements come
from market hosts (`apply`). Every one is idempotent in the domain.

Reconciliation: a reservation is held until its market reports the placement. If that
report never comes (the gateway or the market host died in between), the reservation
outlives the placement deadline; after it the market refuses the placement for good,
so the host asks the market for the player's current exposure and applies it,
releasing the reservation. No money stays stuck and none is created.
"""

from __future__ import annotations

import asyncio
import logging
import time

import ray

from exchange.domain import wallet
from exchange.domain.messages import ApplyMarketExposure, CommandResult, ReserveExposure

from actors.directory import host_index, host_name
from actors.host_actor import HostActor
from actors.host_core import AggregateKind, now_ms
from actors.wire import pack_batch, pack_results, unpack_batch

log = logging.getLogger(__name__)

WALLET_KIND = AggregateKind("wallets", lambda c: c.wallet_id, wallet.handle, wallet.evolve)

RESERVATION_TTL_MS = 3_000     # the gateway's placement deadline after reserving
RECONCILE_MARGIN_MS = 1_000
# How long a market's reports (and settlements) may wait to ride along with the wallet's
# next flush instead of starting one. Nobody waits on them: the market has already
# answered its bettors. Each is applied at once and is in the log before anything decided
# after it (a reservation that uses the funds a report freed is in the same flush or a
# later one), and the market counts a report delivered only once it is durable, so a
# crash in between loses nothing: the market resends it. Without the wait, half of the
# wallet's flushes carried nothing but reports (`python -m exchange.bench actors` at half
# load: 1.75 wallet flushes per market batch).
REPORT_FLUSH_WITHIN_S = 0.020


class WalletHost(HostActor):
    KIND_NAME = "wallet"
    CHANNEL_METHODS = ("execute", "apply")

    def __init__(self, jurisdiction: str, index: int, bootstrap: str, market_hosts: int,
                 namespace: str = "exchange", partitions: int = 8, prefix: str = "exchange",
                 reservation_ttl_ms: int = RESERVATION_TTL_MS, linger_ms: float = 0.0):
        super().__init__(WALLET_KIND, jurisdiction, index, bootstrap, partitions, prefix, linger_ms)
        self.market_hosts = market_hosts
        self.namespace = namespace
        self.reservation_ttl_ms = reservation_ttl_ms
        self._markets: dict[int, object] = {}
        # reservation id -> (when this host saw it, its wallet): what reconcile() looks at,
        # so that a round costs the reservations outstanding, not the wallets held
        self._reserved_at: dict[str, tuple[int, str]] = {}

    async def execute(self, commands: list) -> list[CommandResult]:
        """Deposits, withdrawals and reservations (the gateway's commands)."""
        started = time.perf_counter()
        await self.ready()
        results = await self.run_batch(commands)
        now = now_ms()
        for cmd, result in zip(commands, results):
            if type(cmd) is ReserveExposure and result.status == "SUCCESS":
                self._reserved_at[cmd.command_id] = (now, cmd.wallet_id)
        self.maybe_crash("wallet.after_persist")
        self.record(len(commands), started)
        return results

    async def apply(self, commands: list) -> list[CommandResult]:
        """Exposure reports and settlements from market hosts (idempotent); answered once
        durable, which may wait REPORT_FLUSH_WITHIN_S for the next flush."""
        started = time.perf_counter()
        await self.ready()
        results = await self.run_batch(commands, REPORT_FLUSH_WITHIN_S)
        self.record(len(commands), started)
        for cmd in commands:
            if type(cmd) is ApplyMarketExposure:
                for reservation in cmd.release:
                    self._reserved_at.pop(reservation, None)
        return results

    async def execute_packed(self, payload: bytes) -> bytes:
        return pack_results(await self.execute(unpack_batch(payload).commands))

    async def apply_packed(self, payload: bytes) -> bytes:
        """`apply` for a msgpack HostBatch; answers empty bytes once it is all committed
        (market hosts need only that: every report is idempotent, its result is not read)."""
        await self.apply(unpack_batch(payload).commands)
        return b""

    async def balances(self, wallet_ids: list[str]) -> dict[str, dict | None]:
        await self.ready()
        out = {}
        for wallet_id in wallet_ids:
            state = self.core.states.get(wallet_id)
            out[wallet_id] = None if state is None else {
                "balance": state.balance, "available": state.available,
                "exposure": state.total_exposure, "reserved": state.total_reserved,
                "exposures": dict(state.exposures), "reservations": len(state.reservations),
                "deposited": state.deposited, "withdrawn": state.withdrawn,
                "commission_paid": state.commission_paid}
        return out

    async def totals(self) -> dict:
        """Sums over every wallet held: what the money-conservation checks read."""
        await self.ready()
        t = {"wallets": 0, "balance": 0, "exposure": 0, "reserved": 0, "deposited": 0,
             "withdrawn": 0, "commission_paid": 0, "reservations": 0}
        for s in self.core.states.values():
            t["wallets"] += 1
            t["balance"] += s.balance
            t["exposure"] += s.total_exposure
            t["reserved"] += s.total_reserved
            t["deposited"] += s.deposited
            t["withdrawn"] += s.withdrawn
            t["commission_paid"] += s.commission_paid
            t["reservations"] += len(s.reservations)
        return t

    # ---------------------------------------------------------------- reconciliation

    async def after_recovery(self) -> None:
        now = now_ms()
        for wallet_id, state in self.core.states.items():
            for reservation in state.reservations:
                self._reserved_at.setdefault(reservation, (now, wallet_id))
        asyncio.get_running_loop().create_task(self._reconcile_forever())

    async def _reconcile_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.reconcile()
            except Exception:
                log.warning("%s: reconciliation round failed", self.name, exc_info=True)

    async def reconcile(self, force: bool = False) -> int:
        """Resolves reservations older than the placement deadline; returns how many."""
        await self.ready()
        cutoff = now_ms() - self.reservation_ttl_ms - RECONCILE_MARGIN_MS
        stale: list[tuple[str, str, str]] = []          # (reservation, wallet, market)
        for reservation, (seen_at, wallet_id) in list(self._reserved_at.items()):
            if not force and seen_at > cutoff:
                continue
            state = self.core.states.get(wallet_id)
            held = state.reservations.get(reservation) if state is not None else None
            if held is None:            # released meanwhile, by a report or a reconcile
                self._reserved_at.pop(reservation, None)
                continue
            stale.append((reservation, wallet_id, held[0]))
        if not stale:
            return 0
        by_host: dict[int, list] = {}
        for item in stale:
            by_host.setdefault(host_index(item[2], self.market_hosts), []).append(item)
        fixes = []
        for index, items in by_host.items():
            market = self._market(index)
            truths = await market.exposures.remote([(m, w) for _, w, m in items])
            for (reservation, wallet_id, market_id), (exposure, seq) in zip(items, truths):
                fixes.append(ApplyMarketExposure(
                    command_id=f"reconcile/{reservation}", wallet_id=wallet_id, market_id=market_id,
                    exposure=exposure, market_seq=seq, release=[reservation]))
        await self.apply(fixes)
        log.info("%s: reconciled %d stale reservations", self.name, len(fixes))
        return len(fixes)

    def _market(self, index: int):
        handle = self._markets.get(index)
        if handle is None:
            handle = ray.get_actor(host_name("market", self.jurisdiction, index), namespace=self.namespace)
            self._markets[index] = handle
        return handle
