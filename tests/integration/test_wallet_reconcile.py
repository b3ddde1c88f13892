"""The wallet host's reconciler against a reservation still on its way to Kafka.

A reservation is in the wallet's memory as soon as it is decided, and in the log only
once its flush is acknowledged; the host notes when it saw it only then. A reconcile
round in between must leave it alone: releasing it would free money that a placement
on its way to the market is about to use."""

from __future__ import annotations

import asyncio
import uuid

from actors.wallet_host import WalletHost
from exchange.domain.messages import Deposit, ReserveExposure


async def test_a_reconcile_round_leaves_a_reservation_that_is_not_yet_committed(stack):
    host = WalletHost("us-nj", 0, stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"], market_hosts=1,
                      partitions=1, prefix=f"recon{uuid.uuid4().hex[:6]}", reservation_ttl_ms=0)
    await host.ready()
    try:
        assert (await host.execute([Deposit(command_id="dep", wallet_id="p", amount=10_000)]))[0].status == "SUCCESS"
        reserve = ReserveExposure(command_id="r1", wallet_id="p", market_id="1.1", amount=4_000)
        reserving = asyncio.get_running_loop().create_task(host.execute([reserve]))
        while "r1" not in host.core.states["p"].reservations:      # decided, its flush not yet acknowledged
            await asyncio.sleep(0)
        assert not reserving.done()
        # with no time to live, anything the reconciler looks at is stale; a reservation it
        # looked at would be resolved by asking the market host (there is none here: it would
        # raise), so 0 says it was left alone
        assert await host.reconcile() == 0
        assert (await reserving)[0].status == "SUCCESS"
        assert host.core.states["p"].reservations["r1"] == ("1.1", 4_000)
        assert host.core.states["p"].available == 6_000
    finally:
        await host.core.stop()
