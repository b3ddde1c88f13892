"""`python -m exchange.bench memory`: bytes per funded wallet and per busy market in a host.

Fills one wallet host core and one market host core (the code the host actors run,
driven in-process, every event committed to the real Kafka) and reads the process's
resident memory before and after:
- `wallet_bytes_each`: 1,000,000 funded idle wallets (one deposit each);
- `market_bytes_each`: 10,000 open markets of 3 runners with 100 resting orders each
  (backs below and lays above the spread, from 50 players).
Budgets from the issue, printed beside them: 1 GiB for the million wallets
(`wallet_budget_bytes_each`), 2 GiB for the ten thousand markets (`market_budget_bytes_each`).
Needs the local stack (cluster/stack.py up).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import uuid


def add_arguments(p) -> None:
    p.add_argument("--wallets", type=int, default=1_000_000)
    p.add_argument("--markets", type=int, default=10_000)
    p.add_argument("--orders-per-market", type=int, default=100)
    p.add_argument("--bootstrap", default=os.environ.get("EXCHANGE_KAFKA_BOOTSTRAP", "127.0.0.1:29092"))


def progress(message: str) -> None:
    print(f"[memory bench] {message}", file=sys.stderr, flush=True)


def rss_bytes() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(args) -> dict:
    return asyncio.run(_run(args))


async def _fill(core, commands, total: int, what: str, batch: int = 10_000) -> float:
    started, done = time.perf_counter(), 0
    chunk = []
    for cmd in commands:
        chunk.append(cmd)
        if len(chunk) == batch:
            await core.execute(chunk)
            done += len(chunk)
            chunk = []
            if done % (batch * 20) == 0:
                progress(f"  {what}: {done:,}/{total:,} ({done / (time.perf_counter() - started):,.0f}/s)")
    if chunk:
        await core.execute(chunk)
    return time.perf_counter() - started


async def _run(args) -> dict:
    from actors.host_core import HostCore
    from actors.market_host import MARKET_KIND
    from actors.wallet_host import WALLET_KIND
    from exchange.domain.messages import DefineMarket, Deposit, OpenMarket, PlaceInstruction, PlaceOrders
    from exchange.journal import JournalConfig

    prefix = f"mem{uuid.uuid4().hex[:6]}"
    result: dict = {"bench": "memory"}

    def config(stream: str) -> JournalConfig:
        # no snapshots during the fill: they would add transient memory to the reading
        return JournalConfig(bootstrap=args.bootstrap, stream=stream, partitions=1, prefix=prefix,
                             checkpoint_every_s=10**9)

    wallets = HostCore(WALLET_KIND, config("wallets.bench"), 0)
    await wallets.start()
    before = rss_bytes()
    progress(f"funding {args.wallets:,} wallets")
    seconds = await _fill(wallets, (Deposit(command_id=f"dep-{n}", wallet_id=f"player-{n:07d}", amount=10_000)
                                    for n in range(args.wallets)), args.wallets, "wallets")
    used = rss_bytes() - before
    result["wallet_bytes_each"] = round(used / args.wallets)
    result["wallet_budget_bytes_each"] = (1 << 30) // 1_000_000
    result["wallets"] = args.wallets
    result["wallet_fill_per_s"] = round(args.wallets / seconds)
    await wallets.stop()
    del wallets
    gc.collect()

    markets = HostCore(MARKET_KIND, config("markets.bench"), 0)
    await markets.start()
    before = rss_bytes()
    progress(f"opening {args.markets:,} markets with {args.orders_per_market} resting orders each")
    ids = [f"1.{n:06d}" for n in range(args.markets)]
    await _fill(markets, (DefineMarket(command_id=f"d{m}", market_id=m, runners=[11, 12, 13]) for m in ids),
                args.markets, "define")
    await _fill(markets, (OpenMarket(command_id=f"o{m}", market_id=m) for m in ids), args.markets, "open")
    backs, lays = ("1.5", "1.6", "1.7", "1.8", "1.9"), ("2.1", "2.2", "2.3", "2.4", "2.5")

    def orders():
        for m in ids:
            for k in range(args.orders_per_market):
                side = "BACK" if k % 2 else "LAY"
                price = (lays if side == "BACK" else backs)[k % 5]   # backs above, lays below: no cross
                yield PlaceOrders(command_id=f"p{m}-{k}", market_id=m, player_id=f"mp{k % 50}",
                                  instructions=[PlaceInstruction(runner_id=11 + k % 3, side=side,
                                                                 price=price, size=200 + k)])
    total = args.markets * args.orders_per_market
    seconds = await _fill(markets, orders(), total, "orders")
    resting = sum(len(s.orders) for s in markets.states.values())
    used = rss_bytes() - before
    result["market_bytes_each"] = round(used / args.markets)
    result["market_budget_bytes_each"] = (2 << 30) // 10_000
    result["markets"] = args.markets
    result["resting_orders"] = resting
    result["order_fill_per_s"] = round(total / seconds)
    await markets.stop()
    return result
