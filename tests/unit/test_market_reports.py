"""What a market host tells the wallets after a batch: each touched player's exposure when
it differs from the last one told, the placer's always (it releases the reservation).

A maker whose resting order fills keeps its worst loss, so most makers' reports would change
nothing; they are not sent. Whatever is skipped, every wallet must end up holding the
market's truth. The hosts run in-process (no Ray, no Kafka): their journals are
acknowledged at once, and the gateway and the market reach them directly.
"""

from __future__ import annotations

import asyncio
import gc
import random

import pytest

from actors.channel import LocalLink
from actors.gateway import Gateway, Hosts
from actors.market_host import MarketHost
from actors.wallet_host import WalletHost
from exchange.domain.messages import (
    CancelOrders,
    CloseMarket,
    DefineMarket,
    Deposit,
    OpenMarket,
    PlaceInstruction,
    PlaceOrders,
    SettleMarket,
)

PLAYERS = [f"p{i}" for i in range(6)]
MARKETS = ["1.1", "1.2"]


async def _acknowledge(journal) -> None:
    while True:
        await journal._wakeup.wait()
        journal._wakeup.clear()
        if journal._waiter is not None:
            journal._pending = {}
            waiter, journal._waiter = journal._waiter, None
            waiter.set_result(None)


class Exchange:
    """A wallet host, a market host and a gateway in this process; counts the reports."""

    def __init__(self):
        self.wallet = WalletHost("us-nj", 0, "127.0.0.1:1", 1)
        self.market = MarketHost("us-nj", 0, "127.0.0.1:1", 1)
        self.gateway = Gateway(Hosts("us-nj", 1, 1))
        self.gateway.link = lambda kind, i: LocalLink(self.wallet if kind == "wallet" else self.market)
        self.market._wallets[0] = LocalLink(self.wallet)
        self.reports: list = []
        self.all_reports: list = []
        self.touched = 0            # players whose exposure the market's results carried
        told = self.market._wallet_messages

        def counted(commands, results, reservations):
            out = told(commands, results, reservations)
            self.reports.extend(out)
            self.all_reports.extend(out)
            self.touched += sum(len(r.exposures) for r in results)
            return out

        self.market._wallet_messages = counted
        self._tasks = []

    async def start(self) -> None:
        for host in (self.wallet, self.market):
            started = asyncio.get_running_loop().create_future()
            started.set_result(None)
            host._started = started
            self._tasks.append(asyncio.ensure_future(_acknowledge(host.core.journal)))
        await self.wallet.execute([Deposit(command_id=f"d{p}", wallet_id=p, amount=10**9) for p in PLAYERS])
        await self.market.execute([DefineMarket(command_id=f"d{m}", market_id=m, runners=[1, 2, 3])
                                   for m in MARKETS])
        await self.market.execute([OpenMarket(command_id=f"o{m}", market_id=m) for m in MARKETS])

    async def place(self, command_id: str, market: str, player: str, runner: int, side: str,
                    price: str, size: int):
        self.reports.clear()
        result = await self.gateway.place_orders(PlaceOrders(
            command_id=command_id, market_id=market, player_id=player,
            instructions=[PlaceInstruction(runner_id=runner, side=side, price=price, size=size)]))
        await self.market.settled()
        return result

    def wallet_view(self, player: str, market: str) -> int:
        return self.wallet.core.states[player].exposures.get(market, 0)

    def truth(self, player: str, market: str) -> int:
        return self.market.core.states[market].exposure_of(player)

    def reported(self) -> set[str]:
        return {r.wallet_id for r in self.reports if hasattr(r, "exposure")}

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for host in (self.wallet, self.market):
            gc.callbacks.remove(host._watch_gc)


@pytest.fixture
def exchange():
    ex = Exchange()
    yield ex
    ex.stop()


def test_a_maker_whose_worst_loss_stays_is_not_told_again(exchange):
    async def run():
        await exchange.start()
        await exchange.place("a1", "1.1", "p0", 1, "BACK", "2.0", 1000)      # rests
        assert exchange.reported() == {"p0"}
        await exchange.place("b1", "1.1", "p1", 1, "LAY", "2.0", 1000)       # fills p0's back in full
        assert exchange.reported() == {"p1"}          # p0's worst loss is its stake either way
        assert exchange.wallet_view("p0", "1.1") == exchange.truth("p0", "1.1") == 1000
        # p0's resting lay on runner 1 hedges its matched back once it fills against p1's
        # back: p0's worst case falls to nothing, so it is told
        await exchange.place("a2", "1.1", "p0", 1, "LAY", "2.0", 1000)
        before = exchange.truth("p0", "1.1")
        await exchange.place("b2", "1.1", "p1", 1, "BACK", "2.0", 1000)
        assert exchange.truth("p0", "1.1") == 0 < before
        assert exchange.reported() == {"p0", "p1"}
        for player in ("p0", "p1"):
            assert exchange.wallet_view(player, "1.1") == exchange.truth(player, "1.1")

    asyncio.run(run())


@pytest.mark.parametrize("seed", range(8))
def test_every_wallet_holds_the_markets_truth_whatever_was_skipped(exchange, seed):
    rng = random.Random(seed)
    prices = ["1.9", "1.95", "2.0", "2.04", "2.1"]

    async def run():
        await exchange.start()
        for n in range(150):
            market, player = rng.choice(MARKETS), rng.choice(PLAYERS)
            if rng.random() < 0.15:
                exchange.reports.clear()
                await exchange.gateway.cancel_orders(CancelOrders(command_id=f"c{n}", market_id=market,
                                                                  player_id=player))
                await exchange.market.settled()
            else:
                await exchange.place(f"o{n}", market, player, rng.randint(1, 3), rng.choice(["BACK", "LAY"]),
                                     rng.choice(prices), rng.choice([200, 500, 1000, 2500]))
            for m in MARKETS:
                for p in PLAYERS:
                    assert exchange.wallet_view(p, m) == exchange.truth(p, m), (n, m, p)
        told = sum(1 for _ in exchange.all_reports)
        assert exchange.touched > told        # some reports were skipped: the path under test ran

    asyncio.run(run())


def test_a_settled_market_is_forgotten(exchange):
    async def run():
        await exchange.start()
        await exchange.place("a1", "1.2", "p0", 1, "BACK", "2.0", 1000)
        await exchange.place("b1", "1.2", "p1", 1, "LAY", "2.0", 1000)
        assert "1.2" in exchange.market._told
        for cmd in (CloseMarket(command_id="x", market_id="1.2"),
                    SettleMarket(command_id="s", market_id="1.2", winners=[1])):
            result = await exchange.gateway.operate(cmd)
            assert result.status == "SUCCESS", result
        await exchange.market.settled()
        assert "1.2" not in exchange.market._told
        assert exchange.wallet_view("p0", "1.2") == exchange.wallet_view("p1", "1.2") == 0

    asyncio.run(run())
