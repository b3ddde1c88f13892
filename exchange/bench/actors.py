"""`python -m exchange.bench actors`: durable orders/s through the hosts, latency, recovery.

Against the running local stack (real Kafka, real Ray), in one run:
- ceiling: the same driver and batching calling a no-op actor that echoes each batch
  over the direct channel the hosts serve (`ceiling_calls_per_s` items/s, what one hop
  with batching allows here) and over a Ray actor call (`ceiling_ray_calls_per_s`);
- full load: `--concurrency` orders in flight, from a few bulk callers
  (`Gateway.place_orders_many`; `--driver single`: one coroutine per bettor, each
  placing an order and waiting for its reply). Each order is reserved on the wallet
  host and placed on the market host, each step committed in Kafka before the reply;
  the exposure goes back to the wallet after it: `orders_per_s`;
- half load: orders sent open-loop at half that rate: host-side latency from a batch's
  arrival at a market host to its acknowledged reply, p50/p99/p99.9, weighted by order;
  how even that load was (the driver's tick gaps, the largest batch it sent catching up);
- both phases: CPU microseconds per order in each host, in the driver and in the whole
  machine (`machine`: the broker, Ray's processes and the rest included), and how often
  per order the machine's CPUs went idle deeper than polling (`idle_halts_per_order_*`:
  on a VM each such halt ends in a wake that exits to the hypervisor; null without cpuidle),
  and the share of the machine's CPU time the hypervisor gave to other guests while the
  phase ran (`steal_pct_*`, exchange/bench/machine.py; the `machine` CPU counts it as busy);
- recovery: a market whose history holds `--recovery-events` events is written through
  an in-process market host core (same code as the actor) and recovered by a fresh one:
  `recovery_s` (latest snapshot + the events after it).
Prints one JSON line (progress on stderr).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import random
import sys
import time
import uuid

from exchange.bench.machine import cpu_ticks, idle_halts, machine_busy_s, steal_pct


def add_arguments(p) -> None:
    p.add_argument("--seconds", type=float, default=10.0, help="duration of each load phase")
    p.add_argument("--concurrency", type=int, default=2000, help="bettors in flight at full load")
    p.add_argument("--players", type=int, default=2000)
    p.add_argument("--markets", type=int, default=200)
    p.add_argument("--market-hosts", type=int, default=1)
    p.add_argument("--wallet-hosts", type=int, default=1)
    p.add_argument("--jurisdiction", default="us-nj")
    p.add_argument("--linger-ms", type=float, default=0.0,
                   help="hosts' journal linger: wait this long before a flush to gather more")
    p.add_argument("--driver", choices=("batch", "single"), default="batch",
                   help="batch: bulk callers (Gateway.place_orders_many); single: one coroutine per bettor")
    p.add_argument("--instructions", type=int, default=1,
                   help="orders (instructions) per PlaceOrders command, on one market (API-NG allows 200); "
                        "orders_per_s counts orders")
    p.add_argument("--recovery-events", type=int, default=1_000_000,
                   help="events in the recovered market's history (0: skip)")


def order_shapes(markets: list[str], players: list[str], seed: int = 7):
    """The random part of each order (market, player, runner, side, price, size), drawn
    before the load and then taken in turn, endlessly: the driver shares the two cores with
    the hosts, and six draws per order cost it ~2 us. Also `python -m exchange.bench hostcpu`'s
    orders."""
    rng = random.Random(seed)
    prices = ["1.98", "1.99", "2.0", "2.02", "2.04"]
    return itertools.cycle([(markets[rng.randrange(len(markets))], players[rng.randrange(len(players))],
                             rng.randint(1, 3), "BACK" if rng.random() < 0.5 else "LAY",
                             rng.choice(prices), 200 + rng.randrange(10) * 100)
                            for _ in range(1 << 16)])


def progress(message: str) -> None:
    print(f"[actors bench] {message}", file=sys.stderr, flush=True)


def weighted_percentiles(samples: list[tuple[float, int]], qs=(0.5, 0.99, 0.999)) -> list[float]:
    if not samples:
        return [0.0 for _ in qs]
    samples = sorted(samples)
    total = sum(n for _, n in samples)
    out = []
    for q in qs:
        target, acc = q * total, 0
        for ms, n in samples:
            acc += n
            if acc >= target:
                out.append(round(ms, 2))
                break
    return out


class _GcWatch:
    """The driver's own collections while it is installed: their count per generation and
    the longest pause (a paused driver sends a catch-up batch when it wakes)."""

    def __init__(self):
        self._started = None
        self.max_pause_ms = 0.0
        self.collections = [0, 0, 0]
        gc.callbacks.append(self._watch)

    def _watch(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.max_pause_ms = max(self.max_pause_ms, (time.perf_counter() - self._started) * 1000)
            self.collections[info.get("generation", 0)] += 1

    def close(self) -> None:
        gc.callbacks.remove(self._watch)

    def figures(self) -> dict:
        return {"collections": self.collections, "max_pause_ms": round(self.max_pause_ms, 1)}


def percentiles(values: list[float], qs=(0.5, 0.99, 0.999)) -> list[float]:
    return weighted_percentiles([(v, 1) for v in values], qs)


class Echo:
    """The ceiling: an actor that returns each batch as it is, called through Ray or
    through the direct channel the hosts serve (actors/channel.py)."""

    def __init__(self):
        self._server = None

    async def execute(self, items: list, *more) -> list:
        return items

    async def endpoint(self):
        from actors.channel import ChannelServer
        if self._server is None:
            async def echo(payload: bytes) -> bytes:
                return payload
            self._server = ChannelServer({"execute": echo})
            await self._server.start()
        return self._server.endpoint


def run(args) -> dict:
    import ray

    from placement import Role, actor_options, load_topology

    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), namespace="bench", log_to_driver=False,
             logging_level="WARNING")
    try:
        result = asyncio.run(_bench(args, ray, load_topology(), Role, actor_options))
    finally:
        ray.shutdown()
    return result


async def _closed_loop(call, concurrency: int, seconds: float, make) -> tuple[int, int, list[float]]:
    done = ok = 0
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done, ok
        n = 0
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await call(make(w, n))
            latencies.append((time.perf_counter() - t0) * 1000)
            done += 1
            ok += r is True or getattr(r, "status", None) == "SUCCESS"
            n += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - start
    return round(done / elapsed), round(ok / elapsed), latencies


async def _bench(args, ray, topology, Role, actor_options) -> dict:
    import msgspec

    from actors.channel import Link, transport
    from actors.deploy import deploy_hosts, remove_hosts
    from actors.gateway import Gateway, _Batcher
    from actors.host_actor import _ThreadSchedstat
    from exchange.domain.messages import DefineMarket, OpenMarket, PlaceInstruction, PlaceOrders
    from exchange.journal import delete_topics

    tag = uuid.uuid4().hex[:6]
    bootstrap = os.environ.get("EXCHANGE_KAFKA_BOOTSTRAP", "127.0.0.1:29092")
    jur = args.jurisdiction
    result: dict = {"bench": "actors", "market_hosts": args.market_hosts, "wallet_hosts": args.wallet_hosts,
                    "concurrency": args.concurrency, "seconds": args.seconds}

    progress("ceiling: batched calls to a no-op actor, over the hosts' channel and over Ray")
    echo_opts = actor_options(Role.MARKET_HOST, jur, topology, instance=f"echo-{tag}", namespace="bench")
    echo = ray.remote(Echo).options(**echo_opts, max_concurrency=10_000, num_cpus=0).remote()
    async def endpoint():
        return await echo.endpoint.remote()
    link = Link(endpoint)

    async def over_channel(items: list) -> list:
        return msgspec.msgpack.decode(await link.call("execute", msgspec.msgpack.encode(items)))

    async def over_ray(items: list) -> list:
        return await echo.execute.remote(items)

    for key, send in (("ceiling_calls_per_s", over_channel), ("ceiling_ray_calls_per_s", over_ray)):
        batcher = _Batcher(send, window=0)
        result[key], _, _ = await _closed_loop(lambda item: batcher.submit(item), args.concurrency,
                                               min(args.seconds, 5), lambda w, n: True)
    ray.kill(echo)

    progress(f"deploying {args.market_hosts} market + {args.wallet_hosts} wallet hosts in {jur}")
    hosts = deploy_hosts(jur, bootstrap, args.market_hosts, args.wallet_hosts,
                         namespace=f"bench-{tag}", prefix=f"bench{tag}", journal_linger_ms=args.linger_ms)
    result["journal_linger_ms"] = args.linger_ms
    gw = Gateway(hosts)
    try:
        players = [f"bp{n}" for n in range(args.players)]
        for i in range(0, len(players), 1000):
            await asyncio.gather(*(gw.deposit(p, 10**9) for p in players[i:i + 1000]))
        markets = [f"1.{n}" for n in range(args.markets)]
        await asyncio.gather(*(gw.operate(DefineMarket(command_id=f"d{m}", market_id=m, runners=[1, 2, 3]))
                               for m in markets))
        await asyncio.gather(*(gw.operate(OpenMarket(command_id=f"o{m}", market_id=m)) for m in markets))
        per_command = max(1, args.instructions)
        result["instructions_per_command"] = per_command
        shapes = order_shapes(markets, players)

        def order(caller: str, n: int) -> PlaceOrders:
            """The caller's n-th order (its command id is unique in the run): one market and
            player, per_command instructions."""
            market, player, runner, side, price, size = next(shapes)
            instructions = [PlaceInstruction(runner_id=runner, side=side, price=price, size=size)]
            for _ in range(per_command - 1):
                _, _, runner, side, price, size = next(shapes)
                instructions.append(PlaceInstruction(runner_id=runner, side=side, price=price, size=size))
            return PlaceOrders(command_id=f"{tag}-{caller}-{n}", market_id=market, player_id=player,
                               instructions=instructions)

        market_hosts = [gw.handle("market", i) for i in range(args.market_hosts)]
        wallet_hosts = [gw.handle("wallet", i) for i in range(args.wallet_hosts)]
        all_hosts = market_hosts + wallet_hosts
        await asyncio.gather(*(h.latency_sample.remote() for h in all_hosts))   # a fresh sample each
        host_stats: list[dict] = []

        async def cpu_now() -> dict[str, float]:
            # CPU seconds used so far by each host process, by this driver, and by the whole
            # machine (the broker, Ray's own processes and the rest share the same cores)
            host_stats[:] = await asyncio.gather(*(h.stats.remote() for h in all_hosts))
            return {**{s["name"]: s["cpu_s"] for s in host_stats}, "driver": time.process_time(),
                    "machine": machine_busy_s()}

        def cpu_per_order(before: dict, after: dict, orders: int) -> dict[str, float]:
            return {k: round((after[k] - before[k]) / max(orders, 1) * 1e6, 1) for k in before}

        # The driver's collector stays off through both load phases (its heap frozen before
        # them): a full collection of it paused the driver 77.6 ms at half load, and the
        # catch-up batch it sent on waking (676 orders) was the phase's slowest at the hosts.
        # The hosts' own collector runs as always (actors/host_actor.py).
        gc.collect()
        gc.freeze()
        gc.disable()
        cpu_full = await cpu_now()
        halts_full = idle_halts()
        ticks_full = cpu_ticks()
        full_started = time.perf_counter()
        result["driver"] = args.driver
        result["host_transport"] = transport()
        if args.driver == "batch":
            # bulk callers: `concurrency` orders in flight as a few place_orders_many calls
            loops = 8
            per_call = max(1, args.concurrency // loops // per_command)
            progress(f"full load: {loops} bulk callers x {per_call} orders in flight for {args.seconds:.0f}s")

            async def bulk(cmds):
                t0 = time.perf_counter()
                out = await gw.place_orders_many(cmds)
                ms = (time.perf_counter() - t0) * 1000
                return [(sum(1 for x in r.reports if x.status == "SUCCESS") if r.reports else
                         (per_command if r.status == "SUCCESS" else 0), ms) for r in out]

            done = ok = 0
            e2e_full = []
            stop = time.perf_counter() + args.seconds
            start = time.perf_counter()

            async def caller(w: int):
                nonlocal done, ok
                n = 0
                while time.perf_counter() < stop:
                    outcomes = await bulk([order(f"f{w}", n + k) for k in range(per_call)])
                    n += per_call
                    done += len(outcomes) * per_command
                    ok += sum(o for o, _ in outcomes)
                    e2e_full.append(outcomes[0][1])
            await asyncio.gather(*(caller(w) for w in range(loops)))
            elapsed = time.perf_counter() - start
            rate, accepted = round(done / elapsed), round(ok / elapsed)
        else:
            progress(f"full load: {args.concurrency} bettors for {args.seconds:.0f}s")
            rate, accepted, e2e_full = await _closed_loop(gw.place_orders, args.concurrency, args.seconds,
                                                          order)
            rate, accepted = rate * per_command, accepted * per_command
        cpu_half = await cpu_now()
        halts_half = idle_halts()
        ticks_half = cpu_ticks()
        full_orders = done if args.driver == "batch" else round(rate * (time.perf_counter() - full_started))
        result["cpu_us_per_order_full_load"] = cpu_per_order(cpu_full, cpu_half, full_orders)
        result["idle_halts_per_order_full_load"] = _halts_per_order(halts_full, halts_half, full_orders)
        result["steal_pct_full_load"] = steal_pct(ticks_full, ticks_half)
        # each host's journal flushes over the full-load phase (start to acknowledged)
        result["full_load_hosts"] = {st["name"]: {k: st.get(k) for k in ("flush_p50_ms", "flush_p99_ms",
                                                                          "flush_max_ms", "max_loop_lag_ms",
                                                                          "max_loop_lag_ran_ms",
                                                                          "max_loop_lag_waited_ms")}
                                     for st in host_stats}
        samples = await asyncio.gather(*(h.latency_sample.remote() for h in all_hosts))
        for st, sample in zip(host_stats, samples):
            result["full_load_hosts"][st["name"]]["batches"] = len(sample)
        full = [s for sample in samples[:len(market_hosts)] for s in sample]
        result["orders_per_s"] = rate
        result["accepted_per_s"] = accepted
        p = weighted_percentiles(full)
        result.update(p50_ms_full_load=p[0], p99_ms_full_load=p[1], p99_9_ms_full_load=p[2])
        result["e2e_p50_ms_full_load"], result["e2e_p99_ms_full_load"], _ = percentiles(e2e_full)

        half_rate = max(1, rate // 2)
        progress(f"half load: {half_rate} orders/s open-loop for {args.seconds:.0f}s")
        e2e_half: list[float] = []

        async def timed(cmds):
            t0 = time.perf_counter()
            if args.driver == "batch":
                await gw.place_orders_many(cmds)
            else:
                await asyncio.gather(*(gw.place_orders(c) for c in cmds))
            e2e_half.append((time.perf_counter() - t0) * 1000)

        # open loop, paced by the clock: every tick sends what is owed by now, so a driver
        # that wakes late sends more rather than lowering the rate
        tick = 0.005
        commands_per_s = half_rate / per_command
        tasks = []
        start = time.perf_counter()
        n = 0
        ticks: list[float] = []      # when each tick ran: a driver that waited for a core shows here
        runs: list = []              # this thread's (ran, waited) ns at each tick (/proc schedstat)
        sched = _ThreadSchedstat()
        largest = 0
        gc_watch = _GcWatch()
        while (elapsed := time.perf_counter() - start) < args.seconds:
            ticks.append(elapsed)
            runs.append(sched.read())
            due = int(elapsed * commands_per_s) - n
            largest = max(largest, due)
            if due > 0:
                tasks.append(asyncio.ensure_future(timed([order("h", n + k) for k in range(due)])))
                n += due
            await asyncio.sleep(tick)
        await asyncio.gather(*tasks)
        half_elapsed = time.perf_counter() - start
        gc_watch.close()
        gc.enable()
        gc.unfreeze()
        result["cpu_us_per_order_half_load"] = cpu_per_order(cpu_half, await cpu_now(), n * per_command)
        result["idle_halts_per_order_half_load"] = _halts_per_order(halts_half, idle_halts(), n * per_command)
        result["steal_pct_half_load"] = steal_pct(ticks_half, cpu_ticks())
        # how even the offered load was: the driver's gaps between ticks (5 ms when it gets
        # a core on time) and the largest batch it sent at once, catching up
        gaps = sorted((b - a) * 1000 for a, b in zip(ticks, ticks[1:]))
        _, gap_p99, gap_max = percentiles(gaps, (0.5, 0.99, 1.0))
        result.update(half_load_tick_gap_p99_ms=gap_p99, half_load_tick_gap_max_ms=gap_max,
                      half_load_largest_batch_orders=largest * per_command)
        # over the longest gap: how long the driver's thread ran (its own work, its
        # collector) and how long it waited for a core; and its collector over the phase
        worst = max(range(1, len(ticks)), key=lambda i: ticks[i] - ticks[i - 1], default=None)
        if worst is not None and runs[worst] is not None and runs[worst - 1] is not None:
            result["half_load_tick_gap_max_ran_ms"] = round((runs[worst][0] - runs[worst - 1][0]) / 1e6, 1)
            result["half_load_tick_gap_max_waited_ms"] = round((runs[worst][1] - runs[worst - 1][1]) / 1e6, 1)
        result["half_load_driver_gc"] = gc_watch.figures()
        # where the half-load latency goes: each host's journal flushes (start to acknowledged),
        # its worst event-loop lag and GC pause over the phase; since it started: its
        # collections and objects collected per generation
        names = [st["name"] for st in host_stats]     # as cpu_now() just read them
        for st in host_stats:
            result.setdefault("half_load_hosts", {})[st["name"]] = {
                k: st.get(k) for k in ("flushes", "flush_p50_ms", "flush_p99_ms", "flush_max_ms", "flush_slowest_ms",
                                       "max_loop_lag_ms", "max_loop_lag_ran_ms", "max_loop_lag_waited_ms",
                                       "max_gc_pause_ms", "gc_collections", "lease_flush_ms", "lease_commit_ms",
                                       "gc_collected", "snapshots", "snapshot_writes", "aggregates", "niceness",
                                       "realtime")}
        # the batches (calls) each host took over the phase: a call's cost here is mostly fixed
        samples = [await h.latency_sample.remote() for h in all_hosts]
        for name, sample in zip(names, samples):
            result["half_load_hosts"][name]["batches"] = len(sample)
        half = [s for sample in samples[:len(market_hosts)] for s in sample]
        # the market hosts' slowest batches of the phase, (ms, orders): the p99.9 is about
        # the second of them, so whether they were large (a catch-up) or slow (a stall) shows
        result["half_load_slowest_batches"] = [[round(ms, 2), k * per_command]
                                               for ms, k in sorted(half, reverse=True)[:5]]
        # what the frozen survivors held back from the collector (actors/host_actor.py):
        # one full sweep per host after the phases, its objects collected and its pause
        for h, name in zip(all_hosts, names):
            sweep = await h.gc_sweep.remote()
            result["half_load_hosts"][name].update(gc_sweep_collected=sweep["collected"],
                                                   gc_sweep_ms=sweep["ms"])
        p = weighted_percentiles(half)
        result["half_load_orders_per_s"] = round(n * per_command / half_elapsed)
        result.update(p50_ms_half_load=p[0], p99_ms_half_load=p[1], p99_9_ms_half_load=p[2])
        result["e2e_p50_ms_half_load"], result["e2e_p99_ms_half_load"], _ = percentiles(e2e_half)
        result["ratio_to_ceiling"] = round(rate / max(result["ceiling_calls_per_s"], 1), 3)
    finally:
        if not gc.isenabled():    # a phase failed with the driver's collector off
            gc.enable()
            gc.unfreeze()
        remove_hosts(hosts)
        await delete_topics(bootstrap, lambda t: t.startswith(f"bench{tag}."))

    if args.recovery_events:
        try:
            result.update(await recovery(bootstrap, f"rec{tag}", args.recovery_events))
        finally:
            await delete_topics(bootstrap, lambda t: t.startswith(f"rec{tag}."))
    return result


def _halts_per_order(before: int | None, after: int | None, orders: int) -> float | None:
    if before is None or after is None:
        return None
    return round((after - before) / max(orders, 1), 3)


async def recovery(bootstrap: str, prefix: str, events: int) -> dict:
    """Writes a market with `events` events of history, then times a fresh host's recovery."""
    from actors.host_core import HostCore
    from actors.market_host import MARKET_KIND
    from exchange.domain.messages import DefineMarket, OpenMarket, PlaceInstruction, PlaceOrders
    from exchange.journal import JournalConfig

    config = JournalConfig(bootstrap=bootstrap, stream="markets.bench", partitions=1, prefix=prefix,
                           checkpoint_every_s=5.0)
    core = HostCore(MARKET_KIND, config, 0)
    await core.start()
    market = "1.recovery"
    await core.execute([DefineMarket(command_id="d", market_id=market, runners=[1, 2, 3]),
                        OpenMarket(command_id="o", market_id=market)])
    progress(f"recovery: writing a market with {events:,} events of history")
    written, n, t0 = 2, 0, time.perf_counter()
    players = [f"r{i}" for i in range(10)]
    while written < events:
        batch = []
        for _ in range(min(5000, events - written)):
            n += 1
            # a back, then a lay by another player that matches it in full: two events, no book growth
            side = "BACK" if n % 2 else "LAY"
            player = players[(n // 2 + (0 if side == "BACK" else 1)) % len(players)]
            batch.append(PlaceOrders(command_id=f"c{n}", market_id=market, player_id=player,
                                     instructions=[PlaceInstruction(runner_id=1 + (n // 2) % 3, side=side,
                                                                    price="2.0", size=200)]))
        await core.execute(batch)
        written += len(batch)
        if n % 100_000 < 5000:
            progress(f"  {written:,} events ({written / (time.perf_counter() - t0):,.0f}/s)")
    history_s = time.perf_counter() - t0
    seq = core.states[market].seq
    await core.stop()

    fresh = HostCore(MARKET_KIND, config, 0)
    t1 = time.perf_counter()
    await fresh.start()
    recovery_s = time.perf_counter() - t1
    assert fresh.states[market].seq == seq, "recovered market differs from the one written"
    snap = fresh.states[market].snapshot()
    await fresh.stop()
    return {"recovery_s": round(recovery_s, 3), "recovery_history_events": seq,
            "recovery_tail_events": fresh.recovered_events, "history_write_per_s": round(written / history_s),
            "recovery_matched_bets": sum(len(b) for b in snap["matched_bets"])}
