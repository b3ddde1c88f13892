"""`python -m exchange.bench http`: the HTTP edge, requests/s and latency through Ray Serve.

Against the running local stack (real Ray, Kafka, PostgreSQL), in one run, per Serve
ingress mode:
- `haproxy`: Serve's HAProxy ingress (RAY_SERVE_ENABLE_HA_PROXY=1
  RAY_SERVE_THROUGHPUT_OPTIMIZED=1), the stack's default edge;
- `default_proxy`: Serve's Python proxy actor, the fallback (EXCHANGE_SERVE_EDGE=default).
The mode the stack runs (state/stack.json EXCHANGE_SERVE_EDGE) is measured on the
stack's own Serve (port 8000); the other on a throwaway single-node Ray head on other
ports (GCS 36379, Serve HTTP 18000) started with or without those variables (they must
be in the Ray processes' environment before Serve starts), using the same Kafka and
PostgreSQL; stopped afterwards, by its ports.

In each mode the bet-ingress app (exchange/api/app.py) is deployed as an app of its
own (own route prefix, hosts namespace, Kafka prefix and PostgreSQL schema, rate limits
lifted), bettors are created and funded through the operator routes, and the load
generator (raw asyncio HTTP/1.1 keep-alive connections, `--procs` processes) measures:
- `noop`: GET /health, no actor call: the ceiling of the edge;
- `place1`: placeOrders with 1 instruction; `place200`: with 200 instructions
  (`batched_orders_per_s` = instructions/s); orders mostly rest (backs at 3.0 and up,
  lays at 2.0 and down; `--cross` of them cross), spread over `--markets` markets.
`loadgen_ceiling_rps` is the same generator against a bare asyncio HTTP server in
another process: what the generator itself can do here. `<phase>_steal_pct`: the share
of the machine's CPU time the hypervisor gave to other guests during that phase, warmup
included (exchange/bench/machine.py), averaged over its rounds.

- `ws_orders`: WebSocket order entry, pipelined single-instruction placeOrders
  (`ws_orders_per_s`); `fanout`: 1,000 connections subscribed to one market while a
  driver changes it, delivery delay p50/p99 (`fanout_p99_ms`) and messages/s; see
  exchange/bench/ws.py.

Bounded: every phase is `--warmup` + `--seconds` long and stops at `--max-requests`;
only 127.0.0.1 is ever addressed. Prints one JSON line (progress on stderr). Must never
stop what it did not start: the stack's Ray and Serve are only added an app, then
that app is deleted.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

from exchange.bench.machine import cpu_ticks, steal_pct
from exchange.stats import percentile

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
APP_KEY = "bench-http"
OPERATOR = ("bench-operator", "bench-operator-pass")
BETTOR_PASSWORD = "bench-bettor-pass"
BETTING = "/exchange/betting/json-rpc/v1"
OPERATOR_PATH = "/exchange/operator/json-rpc/v1"
REST_BACKS = ["3.0", "3.5", "4.0", "5.0", "6.0"]     # backs that never meet the lays below
REST_LAYS = ["1.5", "1.8", "1.9", "2.0"]
FUNDS = 1_000_000                                    # currency units per bettor
# the throwaway Ray head for the HAProxy figures
# (the node's own ports sit below the kernel's ephemeral range, 32768+, where the load
# generator's own connections would otherwise collide with them)
HA = {"gcs": 36379, "dashboard": 38265, "serve": 18000, "node_base": 27100, "client": 27110,
      "haproxy_stats": 27111, "haproxy_metrics": 27112}
HA_TEMP = Path(f"/tmp/ray-bench-{HA['gcs']}")


PHASES = ("fanout", "noop", "place1", "place_batched", "ws_orders")


def add_arguments(p) -> None:
    p.add_argument("--modes", default="default_proxy,haproxy",
                   help="comma-separated: haproxy (Serve's HAProxy ingress), default_proxy (Serve's Python "
                        "proxy). The mode the stack runs (EXCHANGE_SERVE_EDGE, HAProxy by default) is "
                        "measured on the stack's Serve, the other on a throwaway Ray head")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds before each phase")
    p.add_argument("--max-requests", type=int, default=200_000, help="per phase, over all generator processes")
    p.add_argument("--connections", type=int, default=64, help="keep-alive connections for noop and place1")
    p.add_argument("--batched-connections", type=int, default=8, help="connections for place200")
    p.add_argument("--instructions", type=int, default=200, help="instructions per batched placeOrders")
    p.add_argument("--rounds", type=int, default=3,
                   help="noop and place1 alternate in this many slices of seconds/rounds each (after "
                        "its own warmup), so that a machine whose speed drifts meets both alike")
    p.add_argument("--procs", type=int, default=1, help="load generator processes")
    p.add_argument("--bettors", type=int, default=32)
    p.add_argument("--markets", type=int, default=8)
    p.add_argument("--cross", type=float, default=0.02, help="fraction of orders priced to cross")
    p.add_argument("--ws-connections", type=int, default=8, help="WebSocket order-entry connections")
    p.add_argument("--ws-window", type=int, default=64, help="orders in flight per WebSocket connection")
    p.add_argument("--fanout-connections", type=int, default=1000, help="subscribed WebSocket connections")
    p.add_argument("--fanout-rate", type=float, default=10.0, help="orders/s on the fan-out market")
    p.add_argument("--fanout-procs", type=int, default=2, help="processes holding the subscribed connections")
    p.add_argument("--max-ongoing-requests", type=int, default=1280,
                   help="per replica; a stream connection holds one for its whole life")
    p.add_argument("--ingress-niceness", type=int, default=None,
                   help="the replicas' niceness (the app's `niceness` setting; by default Ray's "
                        "15 for its workers)")
    p.add_argument("--phases", default=",".join(PHASES),
                   help=f"comma-separated subset of {','.join(PHASES)} (all by default; a partial run "
                        "lacks the keys of the phases it skips)")
    p.add_argument("--port", type=int, default=int(os.environ.get("EXCHANGE_SERVE_PORT", 8000)),
                   help="the stack's Serve HTTP port (default_proxy mode)")


def progress(message: str) -> None:
    print(f"[http bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- a cheap HTTP/1.1 client


class Connection:
    """One keep-alive HTTP/1.1 connection: write a whole request, read one whole reply."""

    def __init__(self, reader, writer):
        self.reader, self.writer, self.closed = reader, writer, False

    @classmethod
    async def open(cls, port: int) -> "Connection":
        reader, writer = await asyncio.open_connection(HOST, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"content-length:")
        if at >= 0:
            end = lower.find(b"\r\n", at)
            body = await self.reader.readexactly(int(lower[at + 15:end]))
        elif b"transfer-encoding: chunked" in lower:
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        self.closed = b"connection: close" in lower
        return status, body

    def close(self) -> None:
        self.writer.close()


def http_request(method: str, path: str, port: int, body: bytes = b"", content_type: str = "application/json",
                 token: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {HOST}:{port}", f"X-Application: {APP_KEY}"]
    if token:
        lines.append(f"X-Authentication: {token}")
    if method != "GET":
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Client:
    """Seeding calls (login, operator and betting JSON-RPC) over one connection."""

    def __init__(self, port: int, prefix: str):
        self.port, self.prefix, self.token, self.conn, self.ids = port, prefix, None, None, 0

    async def _send(self, method: str, path: str, body: bytes, content_type: str = "application/json"):
        if self.conn is None or self.conn.closed:
            self.conn = await Connection.open(self.port)
        status, reply = await self.conn.exchange(
            http_request(method, self.prefix + path, self.port, body, content_type, self.token))
        return status, json.loads(reply)

    async def login(self, username: str, password: str) -> str:
        _, reply = await self._send("POST", "/api/login",
                                    urlencode({"username": username, "password": password}).encode(),
                                    "application/x-www-form-urlencoded")
        if reply.get("status") != "SUCCESS":
            raise RuntimeError(f"login as {username}: {reply}")
        self.token = reply["token"]
        return self.token

    async def call(self, path: str, method: str, **params):
        self.ids += 1
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": self.ids}).encode()
        _, reply = await self._send("POST", path, body)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]


# ---------------------------------------------------------------- the load generator


def _place_body(rng: random.Random, markets: list[str], count: int, cross: float) -> bytes:
    instructions = []
    for _ in range(count):
        if rng.random() < cross:         # a back at 1.5 meets the best resting lay at or above 1.5
            side, price = "BACK", "1.5"
        elif rng.random() < 0.5:
            side, price = "BACK", rng.choice(REST_BACKS)
        else:
            side, price = "LAY", rng.choice(REST_LAYS)
        instructions.append(f'{{"orderType":"LIMIT","selectionId":{rng.randint(1, 3)},"side":"{side}",'
                            f'"limitOrder":{{"size":2,"price":{price},"persistenceType":"PERSIST"}}}}')
    return (f'{{"jsonrpc":"2.0","method":"SportsAPING/v1.0/placeOrders","id":1,"params":'
            f'{{"marketId":"{rng.choice(markets)}","instructions":[{",".join(instructions)}]}}}}').encode()


def _requests(spec: dict, rng: random.Random, token: str) -> list[bytes]:
    port, prefix = spec["port"], spec["prefix"]
    if spec["kind"] == "noop":
        return [http_request("GET", prefix + "/health", port)]
    pool = 64 if spec["instructions"] > 1 else 256
    return [http_request("POST", prefix + BETTING, port,
                         _place_body(rng, spec["markets"], spec["instructions"], spec["cross"]), token=token)
            for _ in range(pool)]


async def _drive(spec: dict) -> dict:
    """`spec["connections"]` connections, each sending its next request when the reply is in."""
    import msgspec

    decode = msgspec.json.decode
    rng = random.Random(spec["seed"])
    tokens = spec["tokens"] or [None]
    counted = {"requests": 0, "http_errors": 0, "http_5xx": 0, "rpc_errors": 0, "instructions": 0,
               "accepted": 0, "connect_errors": 0, "broken": 0}
    samples: dict[str, str] = {}
    latencies: list[float] = []
    loop_time = time.perf_counter
    start = loop_time()
    measure_from = start + spec["warmup"]
    stop_at = measure_from + spec["seconds"]
    budget = spec["max_requests"]
    sent = 0
    check = spec["kind"] != "noop"
    cpu0 = time.process_time()

    async def worker(w: int) -> None:
        nonlocal sent
        requests = _requests(spec, rng, tokens[w % len(tokens)])
        try:
            conn = await Connection.open(spec["port"])
        except OSError as exc:
            counted["connect_errors"] += 1
            samples.setdefault("connect", repr(exc))
            return
        n = w
        while sent < budget:
            t0 = loop_time()
            if t0 >= stop_at:
                break
            sent += 1
            try:
                status, body = await conn.exchange(requests[n % len(requests)])
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                counted["broken"] += 1
                samples.setdefault("broken", repr(exc))
                conn.close()
                try:
                    conn = await Connection.open(spec["port"])
                except OSError:
                    return
                continue
            t1 = loop_time()
            n += 1
            if conn.closed:
                conn.close()
                conn = await Connection.open(spec["port"])
            if t0 < measure_from or t1 > stop_at:
                continue
            latencies.append((t1 - t0) * 1000)
            counted["requests"] += 1
            if status != 200:
                counted["http_errors"] += 1
                counted["http_5xx"] += status >= 500
                samples.setdefault(f"http_{status}", body[:300].decode(errors="replace"))
                continue
            if check:
                reply = decode(body)
                if "error" in reply:
                    counted["rpc_errors"] += 1
                    samples.setdefault("rpc", json.dumps(reply["error"])[:300])
                    continue
                reports = reply["result"].get("instructionReports") or []
                counted["instructions"] += len(reports)
                counted["accepted"] += sum(1 for r in reports if r.get("status") == "SUCCESS")
                for r in reports:
                    if r.get("status") != "SUCCESS":
                        samples.setdefault("refused", str(r.get("errorCode")))
                        break
        conn.close()

    tasks = [asyncio.ensure_future(worker(w)) for w in range(spec["connections"])]
    _, pending = await asyncio.wait(tasks, timeout=spec["warmup"] + spec["seconds"] + 60)
    for t in pending:
        t.cancel()
    end = min(loop_time(), stop_at)
    return {**counted, "latencies": latencies, "window_s": max(1e-9, end - measure_from),
            "cpu_fraction": (time.process_time() - cpu0) / max(1e-9, loop_time() - start), "samples": samples,
            "unfinished": len(pending)}


def run_uvloop(coroutine_function, *args):
    """asyncio.run(coroutine_function(*args)) on uvloop when it is installed (generator processes)."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(coroutine_function(*args))


def _drive_in_process(spec: dict) -> dict:
    return run_uvloop(_drive, spec)


def load(spec: dict, procs: int) -> dict:
    """Runs `spec` in `procs` generator processes (forked; the parent holds no Ray) and merges."""
    specs = []
    for i in range(procs):
        specs.append({**spec, "seed": 1000 + i, "max_requests": max(1, spec["max_requests"] // procs),
                      "connections": max(1, spec["connections"] // procs),
                      "tokens": spec["tokens"][i::procs] or spec["tokens"]})
    if procs == 1:
        parts = [_drive_in_process(specs[0])]
    else:
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            parts = pool.map(_drive_in_process, specs)
    return merge([{**p, "window_s": max(q["window_s"] for q in parts)} for p in parts], concurrent=True)


_COUNTS = ("requests", "http_errors", "http_5xx", "rpc_errors", "instructions", "accepted", "connect_errors",
           "broken", "unfinished")


def merge(parts: list[dict], concurrent: bool = False) -> dict:
    """One phase's figures from its parts: generator processes running at once
    (`concurrent`: one window) or slices run one after another (their windows add up)."""
    latencies = sorted(x for p in parts for x in p["latencies"])
    window = parts[0]["window_s"] if concurrent else sum(p["window_s"] for p in parts)
    out = {k: sum(p[k] for p in parts) for k in _COUNTS}
    out["rps"] = round(out["requests"] / window, 1)
    out["p50_ms"], out["p99_ms"] = percentile(latencies, 0.5), percentile(latencies, 0.99)
    out["loadgen_cpu"] = round(max(p["cpu_fraction"] for p in parts), 2)
    out["samples"] = {k: v for p in parts for k, v in p["samples"].items()}
    out["latencies"], out["window_s"], out["cpu_fraction"] = latencies, window, out["loadgen_cpu"]
    return out


# ---------------------------------------------------------------- the generator's own ceiling


class _FixedReply(asyncio.Protocol):
    REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
             b'{"status":"OK"}')

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        n = self.buffer.count(b"\r\n\r\n")          # GET requests only: no bodies
        if n:
            self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(self.REPLY * n)


def _bare_server(port_out) -> None:
    async def serve():
        server = await asyncio.get_running_loop().create_server(_FixedReply, HOST, 0)
        port_out.send(server.sockets[0].getsockname()[1])
        await asyncio.sleep(3600)

    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve())


def loadgen_ceiling(args) -> dict:
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_bare_server, args=(child,), daemon=True)
    server.start()
    try:
        port = parent.recv()
        result = load({"kind": "noop", "port": port, "prefix": "", "tokens": [], "markets": [],
                       "instructions": 0, "cross": 0, "connections": args.connections,
                       "seconds": min(args.seconds, 3.0), "warmup": 0.5,
                       "max_requests": args.max_requests}, args.procs)
    finally:
        server.kill()
        server.join()
    return {"loadgen_ceiling_rps": result["rps"], "loadgen_ceiling_cpu": result["loadgen_cpu"]}


# ---------------------------------------------------------------- deploying the app (a child process)


def _child_main(config: dict) -> int:
    """Deploys the app on `config["ray_address"]`, says ready, waits for a line on stdin,
    then deletes the app, its hosts, its schema and its topics (never Serve or Ray themselves)."""
    import ray
    from ray import serve

    from actors.deploy import remove_hosts
    from actors.gateway import Hosts
    from exchange.api.app import build_app
    from exchange.api.demo import ensure_account
    from exchange.journal import delete_topics
    from exchange.storage.platform import PlatformStore

    args, name = config["app_args"], config["name"]
    ray.init(address=config["ray_address"], namespace=args["namespace"], log_to_driver=False,
             logging_level="WARNING")
    try:
        serve.start(proxy_location="HeadOnly", http_options={"host": HOST, "port": config["port"]})
        serve.run(build_app(args), name=name, route_prefix=f"/{name}")

        async def seed_operator():
            store = await PlatformStore.connect(args["postgres_dsn"], args["db_schema"])
            try:
                await ensure_account(store, *OPERATOR, "OPERATOR", args["jurisdiction"], "USD")
            finally:
                await store.close()

        asyncio.run(seed_operator())
        print(json.dumps({"ready": True}), flush=True)
        sys.stdin.readline()
    finally:
        try:
            serve.delete(name)
        except Exception as exc:       # report, and go on removing the rest
            print(f"[http bench] serve.delete({name}): {exc!r}", file=sys.stderr)
        remove_hosts(Hosts(args["jurisdiction"], 1, 1, args["namespace"]))
        from actors.history_projector import remove_projector
        remove_projector(args["jurisdiction"], args["namespace"])

        async def drop():
            store = await PlatformStore.connect(args["postgres_dsn"], args["db_schema"])
            await store.drop_schema()
            await store.close()
            await delete_topics(args["kafka_bootstrap"], lambda t: t.startswith(args["kafka_prefix"] + "."))

        asyncio.run(drop())
        ray.shutdown()
    print(json.dumps({"stopped": True}), flush=True)
    return 0


class DeployedApp:
    """The child process that holds the app deployed; `stop()` removes it."""

    def __init__(self, ray_address: str, port: int, tag: str, args, env: dict):
        self.name = f"bench-http-{tag}"
        self.prefix = f"/{self.name}"
        self.port = port
        app_args = {
            "jurisdiction": "us-nj", "namespace": f"bench-http-{tag}", "kafka_prefix": f"benchhttp{tag}",
            "db_schema": f"bench_http_{tag}", "market_hosts": 1, "wallet_hosts": 1,
            "kafka_bootstrap": env["EXCHANGE_KAFKA_BOOTSTRAP"], "postgres_dsn": env["EXCHANGE_POSTGRES_DSN"],
            "ip_rate": 1e9, "ip_burst": 1e9, "account_rate": 1e9, "account_burst": 1e9,
            "login_rate": 1e6, "login_burst": 1e6, "max_ongoing_requests": args.max_ongoing_requests}
        if args.ingress_niceness is not None:
            app_args["niceness"] = args.ingress_niceness
        config = {"ray_address": ray_address, "port": port, "name": self.name, "app_args": app_args}
        self.proc = subprocess.Popen([sys.executable, "-m", "exchange.bench.http", "--deploy-child",
                                      json.dumps(config)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().startswith("{"):
            self.proc.wait(timeout=60)
            raise RuntimeError(f"deploying the app failed (exit {self.proc.returncode}); see stderr")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=180)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- the throwaway HAProxy Ray head


def _port_free(port: int) -> bool:
    """Nothing listens on the port (a connection of ours in TIME-WAIT on it does not count)."""
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((HOST, port)) != 0


def _ray_cli() -> str:
    cli = Path(sys.executable).parent / "ray"
    return str(cli) if cli.exists() else "ray"


class ThrowawayRay:
    """A single-node Ray head labelled us-nj, for the Serve mode the stack does not run
    (HAProxy ingress or the default proxy); stop() ends only its processes."""

    def __init__(self, haproxy: bool):
        self.haproxy = haproxy
        self.token = Path(f"{HA_TEMP}.token")
        self.haproxy_dir = Path(f"{HA_TEMP}-haproxy")
        self.address = f"{HOST}:{HA['gcs']}"

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("RAY_ADDRESS", None)
        for key in [k for k in env if k.startswith("RAY_SERVE_")]:
            env.pop(key)
        env.update({
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token), "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
        if not self.haproxy:
            return env
        env.update({
            "RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(self.haproxy_dir / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(self.haproxy_dir / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(self.haproxy_dir),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(self.haproxy_dir / "server-state"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(HA["haproxy_stats"]),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(HA["haproxy_metrics"])})
        return env

    def start(self) -> None:
        base = HA["node_base"]
        ports = [HA["gcs"], HA["dashboard"], HA["client"], HA["serve"], HA["haproxy_stats"],
                 HA["haproxy_metrics"], *range(base, base + 6)]
        taken = [p for p in ports if not _port_free(p)]
        if taken or self.pids():
            raise RuntimeError(f"ports {taken} are taken or a previous throwaway head runs "
                               f"({HA_TEMP}): not starting a second one")
        self.token.write_text(secrets.token_hex(32) + "\n")
        os.chmod(self.token, 0o600)
        self.haproxy_dir.mkdir(exist_ok=True)
        cmd = [_ray_cli(), "start", "--head", "--port", str(HA["gcs"]), "--temp-dir", str(HA_TEMP),
               "--include-dashboard", "false", "--dashboard-port", str(HA["dashboard"]),
               "--ray-client-server-port", str(HA["client"]), "--node-ip-address", HOST, "--num-cpus", "4",
               "--labels", "exchange/site=outpost,exchange/jurisdiction=us-nj,exchange/node=bench-haproxy-1",
               "--node-manager-port", str(base), "--object-manager-port", str(base + 1),
               "--dashboard-agent-listen-port", str(base + 2), "--dashboard-agent-grpc-port", str(base + 3),
               "--runtime-env-agent-port", str(base + 4), "--metrics-export-port", str(base + 5),
               "--object-store-memory", str(256 * 2**20), "--disable-usage-stats"]
        out = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=180)
        if out.returncode:
            self.stop()
            raise RuntimeError(f"ray start (throwaway head) failed: {out.stderr[-2000:]}")

    def pids(self) -> list[int]:
        """Processes of this head only: their command line names its temp dir, GCS port or HAProxy dir."""
        marks = [str(HA_TEMP).encode(), str(self.haproxy_dir).encode()]
        gcs = f":{HA['gcs']}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmd = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            args = cmd.split(b"\0")
            if any(m in cmd for m in marks) or (b"ray" in cmd and any(a.endswith(gcs) for a in args)):
                if b"exchange.bench" not in cmd:
                    found.append(int(proc.name))
        return found

    def stop(self) -> None:
        def kill(pids: list[int], sig) -> None:
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

        def raylet(pid: int) -> bool:
            try:
                return b"raylet" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                return False

        for group in ([p for p in self.pids() if raylet(p)], None):
            pids = group if group is not None else self.pids()
            kill(pids, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
                time.sleep(0.2)
        kill(self.pids(), signal.SIGKILL)
        for path in (self.token,):
            path.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(HA_TEMP), str(self.haproxy_dir)], check=False)


# ---------------------------------------------------------------- one mode


async def wait_until_routed(port: int, prefix: str, timeout: float = 120) -> float:
    """Seconds until GET <prefix>/health answers 200 (HAProxy learns the routes after serve.run)."""
    t0 = time.perf_counter()
    last = None
    while time.perf_counter() - t0 < timeout:
        try:
            conn = await Connection.open(port)
            try:
                last, _ = await conn.exchange(http_request("GET", prefix + "/health", port))
            finally:
                conn.close()
            if last == 200:
                return round(time.perf_counter() - t0, 1)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            last = repr(exc)
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{prefix}/health on port {port} did not answer 200 within {timeout:.0f} s: {last}")


async def seed(port: int, prefix: str, bettors: int, markets: int, tag: str) -> tuple[list[str], list[str]]:
    """Bettors funded and logged in, markets open: all through the API's operator routes."""
    op = Client(port, prefix)
    await op.login(*OPERATOR)
    names = [f"bh{tag}{i}" for i in range(bettors)]
    for i in range(0, len(names), 8):
        clients = [Client(port, prefix) for _ in names[i:i + 8]]
        for c in clients:
            await c.login(*OPERATOR)
        await asyncio.gather(*(c.call(OPERATOR_PATH, "OperatorAPING/v1.0/createAccount", username=n,
                                      password=BETTOR_PASSWORD) for c, n in zip(clients, names[i:i + 8])))
        await asyncio.gather(*(c.call(OPERATOR_PATH, "OperatorAPING/v1.0/deposit", username=n, amount=FUNDS,
                                      transactionRef=f"bench-{n}") for c, n in zip(clients, names[i:i + 8])))
    start = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=0).isoformat()
    event = await op.call(OPERATOR_PATH, "OperatorAPING/v1.0/createEvent", eventTypeId="1",
                          eventTypeName="Soccer", name=f"Bench {tag}", openDate=start)
    market_ids = []
    for m in range(markets):
        market = await op.call(OPERATOR_PATH, "OperatorAPING/v1.0/createMarket", eventId=event["eventId"],
                               marketName=f"Match Odds {m}", marketStartTime=start,
                               runners=[{"runnerName": r} for r in ("Home", "Away", "Draw")])
        await op.call(OPERATOR_PATH, "OperatorAPING/v1.0/openMarket", marketId=market["marketId"])
        market_ids.append(market["marketId"])
    tokens = []
    for n in names:
        c = Client(port, prefix)
        tokens.append(await c.login(n, BETTOR_PASSWORD))
        c.conn.close()
    op.conn.close()
    return tokens, market_ids


def measure_mode(mode: str, args, env: dict, ray_address: str, port: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    progress(f"{mode}: deploying the app on {ray_address} (Serve port {port})")
    t0 = time.perf_counter()
    app = DeployedApp(ray_address, port, tag, args, env)
    out: dict = {"mode": mode, "port": port}
    try:
        out["deploy_s"] = round(time.perf_counter() - t0, 1)
        out["routed_after_s"] = asyncio.run(wait_until_routed(port, app.prefix))
        progress(f"{mode}: seeding {args.bettors} bettors and {args.markets} markets")
        tokens, markets = asyncio.run(seed(port, app.prefix, args.bettors, args.markets, tag))
        from exchange.bench import ws

        common = {"port": port, "prefix": app.prefix, "tokens": tokens, "markets": markets, "cross": args.cross,
                  "seconds": args.seconds, "warmup": args.warmup, "max_requests": args.max_requests}
        # fan-out first: the stream's feed replays the whole market journal, and after the
        # order phases it would still be working through their backlog while measured
        wanted = set(args.phases.split(","))
        if "fanout" in wanted:
            progress(f"{mode}: fan-out: subscribing {args.fanout_connections} connections to one market")
            r = ws.fanout({**common, "market": markets[0], "connections": args.fanout_connections,
                           "rate": args.fanout_rate}, args.fanout_procs, progress)
            out.update(r)
            progress(f"{mode}: fan-out: {r['fanout_messages_per_s']} messages/s to {r['fanout_connections']} "
                     f"connections, delay p50 {r['fanout_p50_ms']} ms, p99 {r['fanout_p99_ms']} ms")
        phases = [("noop", "noop", {"kind": "noop", "instructions": 0, "connections": args.connections}),
                  ("place1", "place1", {"kind": "place", "instructions": 1, "connections": args.connections}),
                  (f"place{args.instructions}", "place_batched",
                   {"kind": "place", "instructions": args.instructions,
                    "connections": args.batched_connections})]
        # noop and place1 alternate in slices: the ratio between them is the figure that counts,
        # and this machine's speed drifts by a third within minutes
        rounds = max(1, args.rounds) if {"noop", "place1"} <= wanted else 1
        out["rounds"] = rounds
        measured: dict[str, list[dict]] = {}
        stolen: dict[str, list[float | None]] = {}     # per phase and round (warmup included)
        for r_index in range(rounds):
            for name, key, phase in phases:
                if key not in wanted or (key == "place_batched" and r_index < rounds - 1):
                    continue
                sliced = rounds if key != "place_batched" else 1
                progress(f"{mode}: {name}, {phase['connections']} connections, "
                         f"{args.warmup:g}+{args.seconds / sliced:.3g} s"
                         + (f" (round {r_index + 1} of {rounds})" if sliced > 1 else ""))
                before = cpu_ticks()
                measured.setdefault(key, []).append(
                    load({**common, **phase, "seconds": args.seconds / sliced}, args.procs))
                stolen.setdefault(key, []).append(steal_pct(before, cpu_ticks()))
        for name, key, phase in phases:
            if key not in measured:
                continue
            r = merge(measured[key])
            out[f"{key}_rps"] = r["rps"]
            out[f"{key}_p50_ms"], out[f"{key}_p99_ms"] = r["p50_ms"], r["p99_ms"]
            out[f"{key}_connections"] = phase["connections"]
            out[f"{key}_loadgen_cpu"] = r["loadgen_cpu"]
            shares = [x for x in stolen[key] if x is not None]
            out[f"{key}_steal_pct"] = round(sum(shares) / len(shares), 1) if shares else None
            errors = {k: r[k] for k in ("http_errors", "http_5xx", "rpc_errors", "connect_errors", "broken",
                                        "unfinished") if r[k]}
            if errors:
                out[f"{key}_errors"] = {**errors, "samples": r["samples"]}
            if phase["kind"] == "place":
                window = r["requests"] / r["rps"] if r["rps"] else 1
                out[f"{key}_orders_per_s"] = round(r["instructions"] / window, 1)
                out[f"{key}_accepted_per_s"] = round(r["accepted"] / window, 1)
            progress(f"{mode}: {name}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                     f"generator cpu {r['loadgen_cpu']}")
        if "ws_orders" in wanted:
            progress(f"{mode}: WebSocket order entry, {args.ws_connections} connections x {args.ws_window} "
                     "in flight")
            r = ws.ws_orders({**common, "connections": args.ws_connections, "window": args.ws_window}, args.procs)
            out.update(r)
            progress(f"{mode}: WebSocket order entry: {r['ws_orders_per_s']} orders/s, p50 {r['ws_p50_ms']} ms, "
                     f"p99 {r['ws_p99_ms']} ms")
        if "place_batched" in wanted:
            out["place_batched_instructions"] = args.instructions
            out["batched_orders_per_s"] = out.pop("place_batched_orders_per_s")
        if out.get("noop_rps") and "place1_rps" in out:
            out["ratio_place1_to_noop"] = round(out["place1_rps"] / out["noop_rps"], 3)
    finally:
        progress(f"{mode}: removing the app, its hosts and its schema")
        app.stop()
    return out


# ---------------------------------------------------------------- run


def _stack_env() -> dict:
    from exchange.api.app import _stack_env as stack_env

    return {**stack_env(), **os.environ}


def run(args) -> dict:
    from actors.channel import transport

    env = _stack_env()
    for key in ("EXCHANGE_KAFKA_BOOTSTRAP", "EXCHANGE_POSTGRES_DSN", "RAY_ADDRESS"):
        if not env.get(key):
            raise SystemExit(f"http bench: {key} is unknown: is the stack up? (source state/env.sh)")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    result: dict = {"bench": "http", "seconds": args.seconds, "procs": args.procs, "bettors": args.bettors,
                    "markets": args.markets, "cross": args.cross, "cpus": os.cpu_count(),
                    "load_average_1m": round(os.getloadavg()[0], 2),
                    "host_transport": transport()}
    progress(f"generator ceiling: a bare asyncio HTTP server, {args.connections} connections")
    result.update(loadgen_ceiling(args))
    by_mode: dict[str, dict] = {}
    stack_edge = {"haproxy": "haproxy", "default": "default_proxy"}.get(env.get("EXCHANGE_SERVE_EDGE"),
                                                                         "default_proxy")
    for mode in modes:
        if mode not in ("default_proxy", "haproxy"):
            raise SystemExit(f"http bench: unknown mode {mode!r}")
        if mode == stack_edge:
            progress(f"{mode}: the stack's own Serve (port {args.port})")
            by_mode[mode] = measure_mode(mode, args, env, env["RAY_ADDRESS"], args.port)
            by_mode[mode]["serve"] = "the stack's"
            continue
        head = ThrowawayRay(haproxy=mode == "haproxy")
        try:
            progress(f"{mode}: starting a throwaway Ray head (GCS {HA['gcs']}, Serve {HA['serve']})")
            head.start()
            child_env = {**head.env(), "RAY_ADDRESS": head.address, "RAY_AUTH_MODE": "token",
                         "RAY_AUTH_TOKEN_PATH": str(head.token),
                         **{k: env[k] for k in ("EXCHANGE_KAFKA_BOOTSTRAP", "EXCHANGE_POSTGRES_DSN")}}
            by_mode[mode] = measure_mode(mode, args, child_env, head.address, HA["serve"])
            by_mode[mode]["serve"] = "a throwaway head's"
        except RuntimeError as exc:
            by_mode[mode] = {"mode": mode, "not_measured": str(exc)}
        finally:
            progress(f"{mode}: stopping the throwaway Ray head (its own processes only)")
            head.stop()
    # the interface keys: the production mode (HAProxy) when measured, else the default proxy
    headline = next((m for m in ("haproxy", "default_proxy")
                     if m in by_mode and "not_measured" not in by_mode[m]), None)
    for key in ("noop_rps", "place1_rps", "batched_orders_per_s", "ws_orders_per_s", "fanout_p99_ms",
                "fanout_messages_per_s"):
        result[key] = by_mode[headline].get(key) if headline else None
    result["mode"] = headline
    if headline and result["batched_orders_per_s"] is not None and result["ws_orders_per_s"] is not None:
        result["batched_plus_ws_orders_per_s"] = round(result["batched_orders_per_s"] + result["ws_orders_per_s"], 1)
    for mode, figures in by_mode.items():
        for key, value in figures.items():
            if key != "mode":
                result[f"{key}_{mode}"] = value
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--deploy-child":
        raise SystemExit(_child_main(json.loads(sys.argv[2])))
    raise SystemExit("usage: python -m exchange.bench http [options]")
