"""The bet flow across wallet and market hosts on the real Ray cluster and Kafka."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from exchange.domain.messages import (
    DefineMarket,
    OpenMarket,
    PlaceInstruction,
    PlaceOrders,
    CancelOrders,
    CancelInstruction,
    SettleMarket,
)


@pytest.fixture(scope="module", params=["channel", "ray"])
def flow(request, ray_session, stack):
    """Hosts and a gateway calling them over the hosts' direct channel (the default), then
    over Ray actor calls (EXCHANGE_HOST_TRANSPORT=ray, the fallback): every test, both ways."""
    import os

    import ray

    from actors.channel import TRANSPORT_ENV
    from actors.deploy import deploy_hosts, remove_hosts
    from actors.gateway import Gateway

    before = os.environ.get(TRANSPORT_ENV)
    os.environ[TRANSPORT_ENV] = request.param
    tag = uuid.uuid4().hex[:8]
    hosts = deploy_hosts("us-nj", stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"], market_hosts=2,
                         wallet_hosts=2, namespace=f"flow-{tag}", prefix=f"flow{tag}")
    gw = Gateway(hosts)
    try:
        yield gw
        # the calls went the way asked: a host serves a channel only once someone asked for it
        ports = [ray.get(gw.handle(kind, i).stats.remote())["channel_port"]
                 for kind, n in (("market", 2), ("wallet", 2)) for i in range(n)]
        assert all(p is None for p in ports) if request.param == "ray" else any(ports), ports
    finally:
        remove_hosts(hosts)
        if before is None:
            os.environ.pop(TRANSPORT_ENV, None)
        else:
            os.environ[TRANSPORT_ENV] = before


def place(market, player, side, price, size, runner=1, ref=None):
    return PlaceOrders(command_id=uuid.uuid4().hex, market_id=market, player_id=player,
                       instructions=[PlaceInstruction(runner_id=runner, side=side, price=price,
                                                      size=size, customer_ref=ref)])


async def new_market(gw, runners=(1, 2, 3)) -> str:
    market = f"1.{uuid.uuid4().int % 10**9}"
    assert (await gw.operate(DefineMarket(command_id=uuid.uuid4().hex, market_id=market,
                                          runners=list(runners)))).status == "SUCCESS"
    assert (await gw.operate(OpenMarket(command_id=uuid.uuid4().hex, market_id=market))).status == "SUCCESS"
    return market


async def test_a_matched_back_and_lay_settle_and_conserve_money(flow):
    gw = flow
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    await asyncio.gather(gw.deposit(alice, 10_000), gw.deposit(bob, 10_000))
    market = await new_market(gw)

    lay = await gw.place_orders(place(market, bob, "LAY", "3.0", 1_000))
    assert lay.status == "SUCCESS", lay
    await gw.quiesce()
    funds = await gw.balances([bob])
    assert funds[bob]["exposure"] == 2_000 and funds[bob]["reserved"] == 0

    back = await gw.place_orders(place(market, alice, "BACK", "3.0", 1_000))
    assert back.status == "SUCCESS" and back.reports[0].size_matched == 1_000
    await gw.quiesce()
    funds = await gw.balances([alice, bob])
    assert funds[alice]["exposure"] == 1_000 and funds[alice]["available"] == 9_000
    assert funds[bob]["exposure"] == 2_000

    settled = await gw.operate(SettleMarket(command_id=uuid.uuid4().hex, market_id=market, winners=[1]))
    assert settled.status == "SUCCESS"
    await gw.quiesce()
    funds = await gw.balances([alice, bob])
    assert funds[alice]["balance"] == 10_000 + 2_000 - funds[alice]["commission_paid"]
    assert funds[alice]["commission_paid"] == 100     # 5% of net winnings 2,000
    assert funds[bob]["balance"] == 8_000
    assert funds[alice]["exposure"] == funds[bob]["exposure"] == 0
    total = funds[alice]["balance"] + funds[bob]["balance"] + funds[alice]["commission_paid"]
    assert total == 20_000


async def test_insufficient_funds_is_refused_and_reserves_nothing(flow):
    gw = flow
    carol = f"carol-{uuid.uuid4().hex[:6]}"
    await gw.deposit(carol, 500)
    market = await new_market(gw)
    result = await gw.place_orders(place(market, carol, "LAY", "5.0", 200))   # liability 800
    assert result.status == "FAILURE" and result.error_code == "INSUFFICIENT_FUNDS"
    funds = await gw.balances([carol])
    assert funds[carol] | {} == funds[carol] and funds[carol]["available"] == 500
    assert funds[carol]["reserved"] == 0


async def test_cancel_releases_exposure(flow):
    gw = flow
    dave = f"dave-{uuid.uuid4().hex[:6]}"
    await gw.deposit(dave, 5_000)
    market = await new_market(gw)
    placed = await gw.place_orders(place(market, dave, "BACK", "2.0", 1_000))
    await gw.quiesce()
    assert (await gw.balances([dave]))[dave]["available"] == 4_000
    cancel = CancelOrders(command_id=uuid.uuid4().hex, market_id=market, player_id=dave,
                          instructions=[CancelInstruction(bet_id=placed.reports[0].bet_id)])
    assert (await gw.cancel_orders(cancel)).status == "SUCCESS"
    await gw.quiesce()
    assert (await gw.balances([dave]))[dave]["available"] == 5_000


async def test_a_retried_placement_is_a_duplicate_and_places_nothing_twice(flow):
    gw = flow
    erin = f"erin-{uuid.uuid4().hex[:6]}"
    await gw.deposit(erin, 5_000)
    market = await new_market(gw)
    cmd = place(market, erin, "BACK", "4.0", 1_000)
    first, again = await gw.place_orders(cmd), await gw.place_orders(cmd)
    assert first.status == "SUCCESS"
    assert again.error_code == "DUPLICATE_TRANSACTION"
    assert len(await gw.orders(market, erin)) == 1
    await gw.quiesce()
    assert (await gw.balances([erin]))[erin]["available"] == 4_000


async def test_many_concurrent_bettors_batch_and_conserve(flow):
    gw = flow
    players = [f"p{n}-{uuid.uuid4().hex[:6]}" for n in range(40)]
    await asyncio.gather(*(gw.deposit(p, 100_000) for p in players))
    market = await new_market(gw)
    orders = []
    for n in range(400):
        p = players[n % len(players)]
        side = "BACK" if n % 2 else "LAY"
        price = ["2.0", "2.02", "2.04", "1.98"][n % 4]
        orders.append(gw.place_orders(place(market, p, side, price, 200 + n % 7 * 10, runner=1 + n % 3)))
    results = await asyncio.gather(*orders)
    assert all(r.status in ("SUCCESS", "FAILURE") for r in results)
    assert sum(r.status == "SUCCESS" for r in results) > 300
    await gw.operate(SettleMarket(command_id=uuid.uuid4().hex, market_id=market, winners=[2]))
    await gw.quiesce()
    funds = await gw.balances(players)
    assert sum(f["balance"] + f["commission_paid"] for f in funds.values()) == 100_000 * len(players)
    assert all(f["exposure"] == 0 and f["reserved"] == 0 for f in funds.values())


async def test_bulk_placement_keeps_the_same_guarantees(flow):
    gw = flow
    rich, poor = f"rich-{uuid.uuid4().hex[:6]}", f"poor-{uuid.uuid4().hex[:6]}"
    await gw.deposit(rich, 1_000_000)
    await gw.deposit(poor, 300)
    markets = [await new_market(gw) for _ in range(3)]
    cmds = [place(markets[n % 3], rich, "BACK", "3.0", 1_000 + n) for n in range(30)]
    cmds.append(place(markets[0], poor, "LAY", "5.0", 200))          # liability 800 > 300
    results = await gw.place_orders_many(cmds)
    assert [r.status for r in results[:30]] == ["SUCCESS"] * 30
    assert results[30].error_code == "INSUFFICIENT_FUNDS"
    await gw.quiesce()
    funds = await gw.balances([rich, poor])
    assert funds[rich]["exposure"] == sum(1_000 + n for n in range(30)) and funds[rich]["reserved"] == 0
    assert funds[poor]["available"] == 300
    again = await gw.place_orders_many(cmds[:2])                       # a retried bulk call
    assert {r.error_code for r in again} == {"DUPLICATE_TRANSACTION"}
