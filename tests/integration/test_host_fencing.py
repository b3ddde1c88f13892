"""Two instances of the same market host: the newer fences the older, which can never append."""

from __future__ import annotations

import uuid

import pytest

from actors.host_core import HostCore, replay_log
from actors.market_host import MARKET_KIND
from exchange.domain.messages import DefineMarket, OpenMarket, PlaceInstruction, PlaceOrders
from exchange.journal import JournalConfig, JournalFailed


def order(n: int, player: str) -> PlaceOrders:
    return PlaceOrders(command_id=f"c{n}", market_id="1.1", player_id=player,
                       instructions=[PlaceInstruction(runner_id=1, side="BACK", price="3.0", size=200 + n)])


async def test_a_restarted_host_fences_the_zombie_host(stack):
    config = JournalConfig(bootstrap=stack["env"]["EXCHANGE_KAFKA_BOOTSTRAP"], stream="markets.test",
                           partitions=1, prefix=f"fence{uuid.uuid4().hex[:6]}")
    zombie = HostCore(MARKET_KIND, config, 0)
    await zombie.start()
    await zombie.execute([DefineMarket(command_id="d", market_id="1.1", runners=[1, 2]),
                          OpenMarket(command_id="o", market_id="1.1"), order(1, "a")])

    successor = HostCore(MARKET_KIND, config, 0)      # Ray restarted the host elsewhere
    await successor.start()
    assert successor.states["1.1"].next_bet_id == 2

    with pytest.raises(JournalFailed):                # the old process wakes up and tries to go on
        await zombie.execute([order(2, "b")])
    await zombie.stop()

    await successor.execute([order(3, "c")])
    await successor.stop()
    log = await replay_log(MARKET_KIND, config, 0)
    placed = [o.player_id for o in log["1.1"].orders.values()]
    assert sorted(placed) == ["a", "c"], "the zombie's order never reached the log"
