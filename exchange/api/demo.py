"""The demo seed: a demo event with markets and funded demo accounts, over the API itself.

Owns what `cluster/dev run` shows a new user. Idempotent: the operator account is
created in PostgreSQL only when missing; the rest goes through the operator routes
and is skipped when the demo event already exists (deposits carry a transaction
reference, so a rerun never pays twice).

Run after the app is up:  python -m exchange.api.demo [--base http://127.0.0.1:8000]
or deploy serve_config.yaml first and wait for the app:  python -m exchange.api.demo --deploy
Must never run against production data (it creates accounts with known passwords).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from exchange.api.passwords import hash_password

DEMO_EVENT = "Demo FC v Example United"
OPERATOR = ("operator", os.environ.get("EXCHANGE_DEMO_OPERATOR_PASSWORD", "operator-demo-pass"))
BETTORS = [("alice", "alice-demo-pass"), ("bob", "bob-demo-pass"), ("carol", "carol-demo-pass")]
FUNDS = 1000          # currency units per demo bettor
APP_KEY = "demo"


async def ensure_account(store, username: str, password: str, role: str, jurisdiction: str,
                         currency: str):
    """The account, created when missing (its password is not changed when it exists)."""
    account = await store.account_by_username(username)
    if account is None:
        password_hash = await asyncio.to_thread(hash_password, password)
        account = await store.create_account(username, password_hash, role, jurisdiction, currency)
        account = account or await store.account_by_username(username)
    return account


class _Client:
    def __init__(self, base: str):
        self.base = base.rstrip("/")
        self.token = ""

    def _post(self, path: str, body: bytes, content_type: str) -> dict:
        request = urllib.request.Request(
            self.base + path, data=body, method="POST",
            headers={"Content-Type": content_type, "Accept": "application/json", "X-Application": APP_KEY,
                     **({"X-Authentication": self.token} if self.token else {})})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.loads(reply.read())

    def login(self, username: str, password: str) -> None:
        reply = self._post("/api/login", urlencode({"username": username, "password": password}).encode(),
                           "application/x-www-form-urlencoded")
        if reply["status"] != "SUCCESS":
            raise SystemExit(f"demo: login as {username} failed: {reply['error']}")
        self.token = reply["token"]

    def call(self, endpoint: str, method: str, **params):
        reply = self._post(f"/exchange/{endpoint}/json-rpc/v1",
                           json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}).encode(),
                           "application/json")
        if "error" in reply:
            raise SystemExit(f"demo: {method} failed: {reply['error']}")
        return reply["result"]


def seed(base: str, dsn: str, schema: str = "platform", jurisdiction: str = "us-nj",
         currency: str = "USD") -> dict:
    from exchange.storage.platform import PlatformStore

    async def operator_account():
        store = await PlatformStore.connect(dsn, schema)
        try:
            await ensure_account(store, *OPERATOR, "OPERATOR", jurisdiction, currency)
        finally:
            await store.close()

    asyncio.run(operator_account())
    op = _Client(base)
    op.login(*OPERATOR)
    existing = op.call("betting", "SportsAPING/v1.0/listMarketCatalogue",
                       filter={"textQuery": DEMO_EVENT}, maxResults=100, marketProjection=["EVENT"])
    if existing:
        return {"markets": [m["marketId"] for m in existing], "created": False}
    for username, password in BETTORS:
        try:
            op.call("operator", "OperatorAPING/v1.0/createAccount", username=username, password=password)
        except SystemExit as taken:     # a rerun after a partial seed
            print(f"demo: {taken}", file=sys.stderr)
        op.call("operator", "OperatorAPING/v1.0/deposit", username=username, amount=FUNDS,
                transactionRef=f"demo-{username}")
    start = (datetime.now(timezone.utc) + timedelta(hours=2)).replace(microsecond=0).isoformat()
    event = op.call("operator", "OperatorAPING/v1.0/createEvent", eventTypeId="1", eventTypeName="Soccer",
                    name=DEMO_EVENT, countryCode="US", timezone="America/New_York", openDate=start)
    markets = []
    for name, kind, runners in (("Match Odds", "MATCH_ODDS", ["Demo FC", "Example United", "The Draw"]),
                                ("Over/Under 2.5 Goals", "OVER_UNDER_25", ["Under 2.5 Goals", "Over 2.5 Goals"])):
        market = op.call("operator", "OperatorAPING/v1.0/createMarket", eventId=event["eventId"],
                         marketName=name, marketType=kind, marketStartTime=start,
                         runners=[{"runnerName": r} for r in runners])
        op.call("operator", "OperatorAPING/v1.0/openMarket", marketId=market["marketId"])
        markets.append(market["marketId"])
    return {"markets": markets, "created": True}


def deploy(config: str, env: dict) -> None:
    """`serve deploy CONFIG` against the stack's dashboard (returns before the app is up)."""
    address = env.get("EXCHANGE_RAY_DASHBOARD")
    if not address:
        raise SystemExit("demo: the Ray dashboard address is unknown: is the stack up?")
    subprocess.run([sys.executable, "-m", "ray.serve.scripts", "deploy", "--address", address, config],
                   env=env, check=True)


def wait_for(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(base.rstrip("/") + "/openapi.json", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: the API at {base} did not answer within {timeout:.0f} s "
                             f"(serve status --address $EXCHANGE_RAY_DASHBOARD)")
        time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    from exchange.api.app import ROOT, _stack_env

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=os.environ.get("EXCHANGE_API_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--schema", default="platform")
    parser.add_argument("--jurisdiction", default="us-nj")
    parser.add_argument("--deploy", action="store_true", help="serve deploy serve_config.yaml first")
    parser.add_argument("--config", default=str(ROOT / "serve_config.yaml"))
    parser.add_argument("--wait", type=float, default=300, help="seconds to wait for the API to answer")
    args = parser.parse_args(argv)
    env = {**_stack_env(), **os.environ}
    if args.deploy:
        deploy(args.config, env)
    wait_for(args.base, args.wait)
    dsn = env.get("EXCHANGE_POSTGRES_DSN")
    if not dsn:
        raise SystemExit("demo: EXCHANGE_POSTGRES_DSN is not set and state/stack.json is missing")
    out = seed(args.base, dsn, args.schema, args.jurisdiction)
    print(f"demo: {'seeded' if out['created'] else 'already seeded'}: markets {', '.join(out['markets'])}")
    print(f"demo: bettors {', '.join(u for u, _ in BETTORS)} (passwords <name>-demo-pass), "
          f"{FUNDS} each; operator {OPERATOR[0]}")
    print(f"demo: API {args.base}  (OpenAPI at {args.base}/openapi.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
