"""A jurisdiction loses its only node under load: its hosts wait, bettors see SUSPENDED,
and when a node with the jurisdiction's label returns the hosts recover from Kafka.

Real market and wallet hosts (actors/), placed by placement/ on a test jurisdiction
(xx-test) whose node this test starts and kills itself, so the shared stack's nodes are
never touched. Timings are printed: detection, recovery after the replacement starts.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest

from exchange.domain.messages import SettleMarket

from tests.chaos.test_host_crashes import _acknowledged_orders_are_present, _load, funded, new_market
from tests.integration import test_placement as nodes

JURISDICTION = nodes.TEST_JURISDICTION
FIRST, REPLACEMENT = "xx-test-3", "xx-test-4"
nodes.NODE_PORTS.update({FIRST: 27820, REPLACEMENT: 27830})


async def _until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def test_lost_jurisdiction_suspends_its_markets_then_recovers_everything(ray_session, stack, capsys):
    from ray.util.state import list_actors

    from actors.deploy import deploy_hosts, remove_hosts
    from actors.gateway import Gateway
    from placement import load_topology

    ray = ray_session
    topology = load_topology().with_jurisdiction(JURISDICTION, site="outpost", scenario="B")
    key = topology.labels.jurisdiction
    tag = uuid.uuid4().hex[:6]
    namespace = f"jloss-{tag}"
    timings: dict[str, float] = {}
    hosts = None
    try:
        nodes.start_node(FIRST, os.environ["RAY_ADDRESS"])
        hosts = await asyncio.to_thread(
            deploy_hosts, JURISDICTION, stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"], 1, 1,
            namespace=namespace, prefix=f"jl{tag}", reservation_ttl_ms=1000, topology=topology)
        gw = Gateway(hosts, reservation_ttl_ms=1000, call_timeout_s=3)
        players = await funded(gw, 10)
        markets = [await new_market(gw) for _ in range(2)]
        before = await _load(gw, players, markets, 200)
        await gw.quiesce()
        acked_before = await _acknowledged_orders_are_present(gw, before)
        funds_before = await gw.balances(players)
        first_node = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Labels"].get(key) == JURISDICTION}

        killed = time.monotonic()
        assert nodes.kill_node(FIRST), "no raylet found for the xx-test node"
        # bettors: the markets are SUSPENDED and orders are refused so, not lost or misplaced
        assert await gw.market_status(markets[0], timeout_s=2) == "SUSPENDED"
        books = await gw.market_books(markets)        # what listMarketBook shows bettors
        assert {b["status"] for b in books.values()} == {"SUSPENDED"}
        during = await _load(gw, players, markets, 20)
        assert all(r.status == "FAILURE" and r.error_code == "MARKET_SUSPENDED" for _, r in during)

        async def node_dead():
            return not any(n["Alive"] for n in ray.nodes() if n["NodeID"] in first_node)
        await _until(node_dead, 60, "the lost node to be reported dead")
        timings["detection_s"] = time.monotonic() - killed
        for _ in range(10):   # while no node of the jurisdiction lives, its hosts run nowhere
            for a in list_actors(filters=[("ray_namespace", "=", namespace)], detail=True, limit=50):
                assert a.state != "ALIVE", (a.name, a.state, a.node_id)
            await asyncio.sleep(0.5)
        assert await gw.market_status(markets[0], timeout_s=1) == "SUSPENDED"

        replaced = time.monotonic()
        await asyncio.to_thread(nodes.start_node, REPLACEMENT, os.environ["RAY_ADDRESS"])

        async def reopened():
            return await gw.market_status(markets[0], timeout_s=2) == "OPEN"
        await _until(reopened, 90, "the market to reopen on the replacement node")
        timings["recovered_after_replacement_s"] = time.monotonic() - replaced
        timings["outage_s"] = time.monotonic() - killed

        for a in list_actors(filters=[("ray_namespace", "=", namespace)], detail=True, limit=50):
            if a.state == "ALIVE":
                labels = next(n["Labels"] for n in ray.nodes() if n["NodeID"] == a.node_id)
                assert labels[key] == JURISDICTION and labels["exchange/node"] == REPLACEMENT
        assert await _acknowledged_orders_are_present(gw, before) == acked_before
        funds_after = await gw.balances(players)
        for p in players:
            assert funds_after[p]["balance"] == funds_before[p]["balance"]
            assert funds_after[p]["exposures"] == funds_before[p]["exposures"]
        after = await _load(gw, players, markets, 50)
        assert any(r.status == "SUCCESS" for _, r in after), "trading resumes"
        for market in markets:
            assert (await gw.operate(SettleMarket(command_id=uuid.uuid4().hex, market_id=market,
                                                  winners=[1]))).status == "SUCCESS"
        await gw.quiesce()
        funds = await gw.balances(players)
        assert sum(f["balance"] + f["commission_paid"] for f in funds.values()) == \
            sum(f["deposited"] - f["withdrawn"] for f in funds.values())
        with capsys.disabled():
            print(f"\n[jurisdiction loss, real hosts] {acked_before} orders before; "
                  + ", ".join(f"{k}={v:.1f}" for k, v in timings.items()))
    finally:
        if hosts is not None:
            remove_hosts(hosts)
        nodes.stop_node(FIRST)
        nodes.stop_node(REPLACEMENT)
