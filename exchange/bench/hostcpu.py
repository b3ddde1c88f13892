"""`python -m exchange.bench hostcpu`: the hosts' own CPU per order, in one process, no I/O.

The actors benchmark measures durable orders through Ray, Kafka and two cores shared with
the broker and the driver; its CPU per order moves by half from one hour to the next on
this VM. This one keeps only the Python that every order runs through: a gateway, a
wallet host and a market host (the classes the Ray actors run, not actors here) in this
process; the gateway reaches the hosts and the market host its wallet host by direct calls
with the same msgpack batches the channel carries; each journal runs its flush loop,
encoding and snapshots as always, but its producer acknowledges at once (no Kafka, no
sockets; the snapshot writer's queue is dropped). The orders are drawn as the actors
benchmark draws them (`--players` bettors on `--markets` markets, one instruction each,
`--callers` bulk callers of `--per-call` orders).

- `cpu_us_per_order`: this process's CPU per order (the callers, the gateway and both hosts),
  best of `--repeat` rounds of `--orders`;
- ceiling, `domain_cpu_us_per_order`: the domain's decisions alone for the very commands
  the hosts executed (reservations, placements, exposure reports, in the order they ran),
  replayed through `exchange.domain.wallet.handle` and `exchange.domain.market.handle` on
  fresh state: what any host must spend;
- `ratio_to_domain`: the first over the second, how much the hosts' plumbing adds.
Prints one JSON line (progress on stderr).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time

from exchange.bench.machine import cpu_ticks, steal_pct


def add_arguments(p) -> None:
    p.add_argument("--orders", type=int, default=100_000, help="orders per round")
    p.add_argument("--repeat", type=int, default=3, help="rounds; the best is reported")
    p.add_argument("--per-call", type=int, default=250, help="orders per bulk call")
    p.add_argument("--callers", type=int, default=8, help="bulk callers in flight")
    p.add_argument("--players", type=int, default=2000)
    p.add_argument("--markets", type=int, default=200)


def progress(message: str) -> None:
    print(f"[hostcpu bench] {message}", file=sys.stderr, flush=True)


class _Sent:
    def __init__(self, offset: int):
        self.offset = offset


class _AtOnce:
    """A producer whose every send is acknowledged at once, at the next offset."""

    def __init__(self):
        self.offset = -1

    async def send(self, topic, value, key=None, partition=None) -> asyncio.Future:
        self.offset += 1
        sent = asyncio.get_running_loop().create_future()
        sent.set_result(_Sent(self.offset))
        return sent


class _NoLease:
    producer = _AtOnce()

    def flushed(self, ms: float) -> None:
        pass

    def swap_if_due(self) -> None:
        pass


def _in_process_hosts():
    from actors.channel import LocalLink
    from actors.gateway import Gateway, Hosts
    from actors.market_host import MarketHost
    from actors.wallet_host import WalletHost

    wallet = WalletHost("bench", 0, "127.0.0.1:1", 1, partitions=1, prefix="hostcpu")
    market = MarketHost("bench", 0, "127.0.0.1:1", 1, partitions=1, prefix="hostcpu")
    gateway = Gateway(Hosts("bench", 1, 1))
    gateway.link = lambda kind, index: LocalLink(wallet if kind == "wallet" else market)
    market._wallets[0] = LocalLink(wallet)
    return gateway, wallet, market


async def _round(args) -> tuple[float, list, list, int]:
    """One round on fresh hosts: (CPU seconds of the orders; the commands the hosts executed
    as (kind, command), in order, for the setup and for the orders; orders placed)."""
    from actors.host_actor import GC_YOUNG_THRESHOLD
    from exchange.bench.actors import order_shapes
    from exchange.domain.messages import DefineMarket, Deposit, OpenMarket, PlaceInstruction, PlaceOrders

    gateway, wallet, market = _in_process_hosts()
    threshold = gc.get_threshold()
    executed: list[tuple[str, object]] = []
    tasks = []
    for kind, host in (("wallet", wallet), ("market", market)):
        started = asyncio.get_running_loop().create_future()
        started.set_result(None)
        host._started = started
        journal = host.core.journal
        journal._relay = _NoLease()
        tasks.append(asyncio.ensure_future(journal._flush_loop()))
        execute = host.core.execute

        async def recorded(commands, within_s=0.0, kind=kind, execute=execute):
            executed.extend((kind, c) for c in commands)
            return await execute(commands, within_s)

        host.core.execute = recorded

    async def drop_snapshots():
        while True:
            await asyncio.sleep(0.05)
            for host in (wallet, market):
                host.core.journal._snapshot_queue.clear()
                host.core.journal._snapshot_queued_bytes = 0

    tasks.append(asyncio.ensure_future(drop_snapshots()))
    try:
        players = [f"bp{n}" for n in range(args.players)]
        await wallet.execute([Deposit(command_id=f"d{p}", wallet_id=p, amount=10**9) for p in players])
        markets = [f"1.{n}" for n in range(args.markets)]
        await market.execute([DefineMarket(command_id=f"d{m}", market_id=m, runners=[1, 2, 3]) for m in markets])
        await market.execute([OpenMarket(command_id=f"o{m}", market_id=m) for m in markets])
        shapes = order_shapes(markets, players)

        def order(caller: int, n: int) -> PlaceOrders:
            m, p, runner, side, price, size = next(shapes)
            return PlaceOrders(command_id=f"h-{caller}-{n}", market_id=m, player_id=p,
                               instructions=[PlaceInstruction(runner_id=runner, side=side, price=price, size=size)])

        per_caller = max(args.per_call, args.orders // max(1, args.callers))

        async def caller(c: int) -> int:
            n = 0
            while n < per_caller:
                await gateway.place_orders_many([order(c, n + k) for k in range(args.per_call)])
                n += args.per_call
            return n

        setup = executed[:]         # deposits, definitions, openings: not orders
        executed.clear()
        # as the Ray hosts do after recovery: the heap so far frozen, young collections often
        gc.collect()
        gc.freeze()
        gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)
        for host in (wallet, market):
            host._freeze_survivors = True
        cpu = time.process_time()
        placed = sum(await asyncio.gather(*(caller(c) for c in range(args.callers))))
        await market.settled()
        cpu = time.process_time() - cpu
        return cpu, setup, executed, placed
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for host in (wallet, market):
            gc.callbacks.remove(host._watch_gc)
        gc.unfreeze()
        gc.set_threshold(*threshold)


def _replay(setup: list, orders: list) -> float:
    """CPU seconds of the domain's decisions for `orders`, on fresh state after `setup`
    (untimed), each list (kind, command) in the order the hosts ran them."""
    from actors.market_host import MARKET_KIND
    from actors.wallet_host import WALLET_KIND
    from exchange.domain.context import Context

    kinds = {"wallet": (WALLET_KIND.handle, WALLET_KIND.aggregate_id, {}),
             "market": (MARKET_KIND.handle, MARKET_KIND.aggregate_id, {})}
    ctx = Context(int(time.time() * 1000))

    def decide(commands: list) -> None:
        for kind, command in commands:
            handle, aggregate_id, states = kinds[kind]
            agg = aggregate_id(command)
            state, _ = handle(states.get(agg), command, ctx)
            if state is not None:
                states[agg] = state

    decide(setup)
    gc.collect()
    gc.freeze()
    cpu = time.process_time()
    decide(orders)
    cpu = time.process_time() - cpu
    gc.unfreeze()
    return cpu


def run(args) -> dict:
    # the hosts log a collection over 50 ms; here those are this benchmark's own gc.collect()
    logging.getLogger("actors.host_actor").setLevel(logging.ERROR)
    best_host = best_domain = float("inf")
    placed = executed_n = 0
    ticks = cpu_ticks()
    for r in range(max(1, args.repeat)):
        cpu, setup, executed, placed = asyncio.run(_round(args))
        domain = _replay(setup, executed)
        executed_n = len(executed)
        best_host = min(best_host, cpu / placed)
        best_domain = min(best_domain, domain / placed)
        progress(f"round {r + 1}: {placed} orders, hosts {cpu / placed * 1e6:.1f} us/order, "
                 f"domain {domain / placed * 1e6:.1f} us/order")
    return {
        "bench": "hostcpu",
        "orders": placed,
        "per_call": args.per_call,
        "callers": args.callers,
        "commands_per_order": round(executed_n / max(placed, 1), 2),
        "cpu_us_per_order": round(best_host * 1e6, 1),
        "domain_cpu_us_per_order": round(best_domain * 1e6, 1),
        "ratio_to_domain": round(best_host / best_domain, 2) if best_domain > 0 else None,
        "repeat": args.repeat,
        "steal_pct": steal_pct(ticks, cpu_ticks()),
        "python": sys.version.split()[0],
    }
