"""The WebSocket figures of `python -m exchange.bench http`: order entry and market-data fan-out.

Run by exchange/bench/http.py against the app it deployed (route prefix, bettors'
session tokens, open markets), in each Serve mode:

- `ws_orders`: `connections` WebSocket clients, each authenticated, keep `window`
  single-instruction placeOrders messages in flight (pipelined: the next is sent as soon
  as any answer is in, never waiting per order). Orders rest (backs at 3.0 and up, lays
  at 2.0 and down). Counted: answers whose order was accepted, per second of the
  measured window; latency from send to answer.
- `fanout`: `connections` clients (spread over `procs` processes) subscribe to one
  market (best 3 levels, traded volume, last price); a driver places orders on it at
  `rate` per second over its own stream connection, alternating resting and crossing
  orders so every order changes the ladder. Counted: change messages delivered per
  second over all clients, and the delivery delay of each = the client's receive time
  minus the message's publish time `pt` (the replica's clock; same machine).

Prints nothing itself; progress goes through the caller's `progress`.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time

from exchange.bench.http import run_uvloop
from exchange.stats import percentile

REST_BACK = ("3", "3.5", "4", "5", "6")
REST_LAY = ("2", "1.9", "1.8", "1.5")


def _url(spec: dict) -> str:
    return f"ws://127.0.0.1:{spec['port']}{spec['prefix']}/stream"


async def _connect(spec: dict, token: str):
    import websockets

    # no permessage-deflate: trading clients favour latency (and the server would compress
    # every copy of a fanned-out message separately)
    ws = await websockets.connect(_url(spec), max_size=2**24, open_timeout=60, ping_interval=None,
                                  compression=None)
    json.loads(await ws.recv())                                     # op: connection
    await ws.send(json.dumps({"op": "authentication", "id": 1, "appKey": spec.get("app_key", "bench-http"), "session": token}))
    status = json.loads(await ws.recv())
    if status.get("statusCode") != "SUCCESS":
        raise RuntimeError(f"stream authentication: {status}")
    return ws


def _place(rng: random.Random, markets: list[str], rid: int) -> str:
    if rng.random() < 0.5:
        side, price = "BACK", rng.choice(REST_BACK)
    else:
        side, price = "LAY", rng.choice(REST_LAY)
    return (f'{{"op":"placeOrders","id":{rid},"params":{{"marketId":"{rng.choice(markets)}","instructions":'
            f'[{{"orderType":"LIMIT","selectionId":{rng.randint(1, 3)},"side":"{side}",'
            f'"limitOrder":{{"size":2,"price":{price},"persistenceType":"PERSIST"}}}}]}}}}')


# ---------------------------------------------------------------- order entry


async def _orders_proc(spec: dict) -> dict:
    rng = random.Random(spec["seed"])
    counted = {"answers": 0, "accepted": 0, "failures": 0, "broken": 0}
    samples: dict[str, str] = {}
    latencies: list[float] = []
    now = time.perf_counter
    start = now()
    measure_from = start + spec["warmup"]
    stop_at = measure_from + spec["seconds"]
    cpu0 = time.process_time()

    async def client(c: int) -> None:
        try:
            ws = await _connect(spec, spec["tokens"][c % len(spec["tokens"])])
        except Exception as exc:
            counted["broken"] += 1
            samples.setdefault("connect", repr(exc)[:300])
            return
        sent_at: dict[int, float] = {}
        rid = 0
        window = asyncio.Semaphore(spec["window"])

        async def reader():
            async for raw in ws:
                t1 = now()
                msg = json.loads(raw)
                t0 = sent_at.pop(msg.get("id"), None)
                if t0 is None:
                    continue
                window.release()
                if measure_from <= t0 and t1 <= stop_at:
                    counted["answers"] += 1
                    latencies.append((t1 - t0) * 1000)
                    result = msg.get("result")
                    if result is not None and result.get("status") == "SUCCESS":
                        counted["accepted"] += 1
                    else:
                        counted["failures"] += 1
                        samples.setdefault("failure", json.dumps(msg)[:300])
                if t1 > stop_at and not sent_at:
                    return

        task = asyncio.ensure_future(reader())
        try:
            while now() < stop_at:
                await window.acquire()
                rid += 1
                sent_at[rid] = now()
                await ws.send(_place(rng, spec["markets"], rid))
            await asyncio.wait_for(task, 30)
        except Exception as exc:
            counted["broken"] += 1
            samples.setdefault("broken", repr(exc)[:300])
        finally:
            task.cancel()
            await ws.close()

    await asyncio.gather(*(client(c) for c in range(spec["connections"])))
    return {**counted, "latencies": latencies, "window_s": spec["seconds"], "samples": samples,
            "cpu_fraction": (time.process_time() - cpu0) / max(1e-9, now() - start)}


def _orders_entry(spec: dict) -> dict:
    return run_uvloop(_orders_proc, spec)


def ws_orders(spec: dict, procs: int) -> dict:
    specs = [{**spec, "seed": 2000 + i, "connections": max(1, spec["connections"] // procs),
              "tokens": spec["tokens"][i::procs] or spec["tokens"]} for i in range(procs)]
    if procs == 1:
        parts = [_orders_entry(specs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            parts = pool.map(_orders_entry, specs)
    latencies = sorted(x for p in parts for x in p["latencies"])
    accepted = sum(p["accepted"] for p in parts)
    return {"ws_orders_per_s": round(accepted / spec["seconds"], 1),
            "ws_answers": sum(p["answers"] for p in parts), "ws_failures": sum(p["failures"] for p in parts),
            "ws_broken": sum(p["broken"] for p in parts), "ws_p50_ms": percentile(latencies, 0.5),
            "ws_p99_ms": percentile(latencies, 0.99), "ws_connections": spec["connections"],
            "ws_window": spec["window"], "ws_loadgen_cpu": round(max(p["cpu_fraction"] for p in parts), 2),
            "ws_samples": {k: v for p in parts for k, v in p["samples"].items()}}


# ---------------------------------------------------------------- fan-out


async def _fanout_proc(spec: dict, connected, go) -> dict:
    delays: list[float] = []
    counted = {"messages": 0, "connected": 0, "broken": 0, "heartbeats": 0}
    samples: dict[str, str] = {}
    sockets = []
    sub = json.dumps({"op": "marketSubscription", "id": 2, "marketFilter": {"marketIds": [spec["market"]]},
                      "marketDataFilter": {"fields": ["EX_BEST_OFFERS", "EX_TRADED_VOL", "EX_LTP"],
                                           "ladderLevels": 3}})

    async def open_one(c: int):
        try:
            ws = await _connect(spec, spec["tokens"][c % len(spec["tokens"])])
            await ws.send(sub)
            while True:                                   # status, then the image
                msg = json.loads(await ws.recv())
                if msg.get("op") == "mcm" and msg.get("ct") == "SUB_IMAGE":
                    break
            sockets.append(ws)
            counted["connected"] += 1
        except Exception as exc:
            counted["broken"] += 1
            samples.setdefault("connect", repr(exc)[:300])

    for i in range(0, spec["connections"], 50):           # 50 handshakes at a time
        await asyncio.gather(*(open_one(c) for c in range(i, min(spec["connections"], i + 50))))
    connected.put(counted["connected"])
    while not go.is_set():
        await asyncio.sleep(0.05)
    started = time.time()
    measure_from = started + spec["warmup"]
    stop_at = measure_from + spec["seconds"]

    async def listen(ws):
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, stop_at - time.time()))
                t = time.time() * 1000
                if '"HEARTBEAT"' in raw:
                    counted["heartbeats"] += 1
                    continue
                if t / 1000 < measure_from:
                    continue
                pt = json.loads(raw).get("pt")
                if pt is not None:
                    counted["messages"] += 1
                    delays.append(t - pt)
        except (asyncio.TimeoutError, TimeoutError):
            return
        except Exception as exc:
            counted["broken"] += 1
            samples.setdefault("listen", repr(exc)[:300])

    await asyncio.gather(*(listen(ws) for ws in sockets))
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {**counted, "delays": delays, "samples": samples}


def _fanout_entry(spec: dict, connected, go, results) -> None:
    results.put(run_uvloop(_fanout_proc, spec, connected, go))


async def _drive_market(spec: dict) -> dict:
    """Orders on the fan-out market at `rate`/s: a resting back from one bettor, then a lay
    from another that takes it (two bettors: a bettor's lay never matches their own back)."""
    backer = await _connect(spec, spec["tokens"][0])
    layer = await _connect(spec, spec["tokens"][1 % len(spec["tokens"])])
    interval = 1 / spec["rate"]
    stop_at = time.perf_counter() + spec["warmup"] + spec["seconds"]
    sent = 0
    answers = {"SUCCESS": 0}
    next_at = time.perf_counter()
    rng = random.Random(7)

    async def reader(ws):
        async for raw in ws:
            status = json.loads(raw).get("result", {}).get("status", "FAILURE")
            answers[status] = answers.get(status, 0) + 1

    tasks = [asyncio.ensure_future(reader(ws)) for ws in (backer, layer)]
    while time.perf_counter() < stop_at:
        sent += 1
        side, price, ws = ("BACK", rng.choice(("3", "3.5", "4")), backer) if sent % 2 else ("LAY", "4", layer)
        await ws.send(f'{{"op":"placeOrders","id":{sent},"params":{{"marketId":"{spec["market"]}",'
                      f'"instructions":[{{"orderType":"LIMIT","selectionId":1,"side":"{side}",'
                      f'"limitOrder":{{"size":2,"price":{price},"persistenceType":"PERSIST"}}}}]}}}}')
        next_at += interval
        await asyncio.sleep(max(0, next_at - time.perf_counter()))
    await asyncio.sleep(1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(backer.close(), layer.close(), return_exceptions=True)
    return {"sent": sent, "answers": answers}


def fanout(spec: dict, procs: int, progress) -> dict:
    ctx = multiprocessing.get_context("fork")
    connected, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    children = []
    for i in range(procs):
        part = {**spec, "connections": spec["connections"] // procs + (i < spec["connections"] % procs),
                "tokens": spec["tokens"][i::procs] or spec["tokens"]}
        p = ctx.Process(target=_fanout_entry, args=(part, connected, go, results), daemon=True)
        p.start()
        children.append(p)
    t0 = time.perf_counter()
    total = sum(connected.get(timeout=600) for _ in children)
    progress(f"fanout: {total} subscribed connections in {time.perf_counter() - t0:.1f} s; "
             f"driving {spec['rate']} orders/s")
    go.set()
    driver = run_uvloop(_drive_market, spec)
    parts = [results.get(timeout=120) for _ in children]
    for p in children:
        p.join(timeout=10)
    delays = sorted(x for p in parts for x in p["delays"])
    messages = sum(p["messages"] for p in parts)
    return {"fanout_connections": total, "fanout_messages_per_s": round(messages / spec["seconds"], 1),
            "fanout_p50_ms": percentile(delays, 0.5), "fanout_p99_ms": percentile(delays, 0.99),
            "fanout_max_ms": percentile(delays, 1.0), "fanout_orders_sent": driver["sent"],
            "fanout_orders_accepted": driver["answers"].get("SUCCESS", 0),
            "fanout_rate": spec["rate"], "fanout_broken": sum(p["broken"] for p in parts),
            "fanout_samples": {k: v for p in parts for k, v in p["samples"].items()}}
