"""The API app on the real stack: one Serve app per test session, its own hosts, topics and schema.

The app runs with the jurisdiction us-nj under a unique Ray namespace (hosts), Kafka
topic prefix and PostgreSQL schema, at a unique route prefix; it trusts
X-Forwarded-For so that each test client can stand for its own IP address. At the end
the app, its hosts and its schema are removed (Serve itself too, when no other app runs).
"""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

PORT = int(os.environ.get("EXCHANGE_SERVE_PORT", 8000))
APP_KEY = "e2e-app-key"
OPERATOR = ("operator", "operator-password-1")
INGRESS_NICENESS = -5     # neither Ray's 15 nor the hosts' -10: the app's setting shows


class Api:
    """A bettor's (or operator's) HTTP client: one client IP, one session."""

    def __init__(self, base: str, ip: str, app_key: str = APP_KEY):
        import httpx

        self.http = httpx.Client(base_url=base, timeout=30)
        self.ip = ip
        self.app_key = app_key
        self.token: str | None = None
        self.ids = 0

    def headers(self, **extra) -> dict:
        h = {"X-Forwarded-For": self.ip, "X-Application": self.app_key}
        if self.token:
            h["X-Authentication"] = self.token
        h.update(extra)
        return h

    def login(self, username: str, password: str) -> dict:
        reply = self.http.post("/api/login", data={"username": username, "password": password},
                               headers={"X-Forwarded-For": self.ip, "X-Application": self.app_key,
                                        "Accept": "application/json"}).json()
        if reply["status"] == "SUCCESS":
            self.token = reply["token"]
        return reply

    def post(self, path: str, body, **headers):
        return self.http.post(path, content=body if isinstance(body, (bytes, str)) else None,
                              json=None if isinstance(body, (bytes, str)) else body,
                              headers=self.headers(**headers))

    def rpc(self, endpoint: str, method: str, params: dict):
        self.ids += 1
        return self.post(f"/exchange/{endpoint}/json-rpc/v1",
                         {"jsonrpc": "2.0", "method": method, "params": params, "id": self.ids})

    def betting(self, op: str, **params):
        return _result(self.rpc("betting", f"SportsAPING/v1.0/{op}", params))

    def account(self, op: str, **params):
        return _result(self.rpc("account", f"AccountAPING/v1.0/{op}", params))

    def operator(self, op: str, **params):
        return _result(self.rpc("operator", f"OperatorAPING/v1.0/{op}", params))


def _result(response):
    body = response.json()
    assert "result" in body, body
    return body["result"]


@pytest.fixture(scope="session")
def api_app(ray_session, stack):
    from ray import serve

    from actors.deploy import remove_hosts
    from actors.gateway import Hosts
    from actors.history_projector import remove_projector
    from exchange.api.app import build_app
    from exchange.api.demo import ensure_account
    from exchange.storage.platform import PlatformStore

    tag = uuid.uuid4().hex[:8]
    args = {"jurisdiction": "us-nj", "namespace": f"e2e-{tag}", "kafka_prefix": f"e2e{tag}",
            "db_schema": f"e2e_{tag}", "trust_forwarded_for": True, "ip_rate": 5, "ip_burst": 60,
            "account_rate": 1000, "account_burst": 1000, "login_rate": 100, "login_burst": 100,
            "lockout_s": 600, "max_body_bytes": 64 * 1024, "max_ongoing_requests": 64,
            "niceness": INGRESS_NICENESS}
    dsn = stack["env"]["EXCHANGE_POSTGRES_DSN"]
    serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": PORT})
    name = f"e2e-{tag}"
    serve.run(build_app(args), name=name, route_prefix=f"/{name}")

    async def seed_operator():
        store = await PlatformStore.connect(dsn, args["db_schema"])
        try:
            await ensure_account(store, *OPERATOR, "OPERATOR", "us-nj", "USD")
        finally:
            await store.close()

    asyncio.run(seed_operator())
    yield {"base": f"http://127.0.0.1:{PORT}/{name}", "schema": args["db_schema"], "dsn": dsn, "tag": tag,
           "name": name}

    serve.delete(name)
    remove_hosts(Hosts("us-nj", 1, 1, f"e2e-{tag}"))
    remove_projector("us-nj", f"e2e-{tag}")

    async def drop():
        store = await PlatformStore.connect(dsn, args["db_schema"])
        await store.drop_schema()
        await store.close()

    asyncio.run(drop())
    if not serve.status().applications:
        serve.shutdown()


@pytest.fixture(scope="session")
def operator(api_app) -> Api:
    op = Api(api_app["base"], "10.0.0.1")
    assert op.login(*OPERATOR)["status"] == "SUCCESS"
    return op


_ips = iter(range(2, 250))


@pytest.fixture
def new_client(api_app):
    """new_client() -> an Api with a fresh client IP and no session."""
    return lambda: Api(api_app["base"], f"10.0.1.{next(_ips)}")


@pytest.fixture
def bettor(api_app, operator, new_client):
    """bettor(funds) -> a logged-in Api for a new funded account (funds in currency units)."""

    def make(funds: str | None = "100", **account) -> Api:
        username = f"b{uuid.uuid4().hex[:10]}"
        operator.operator("createAccount", username=username, password="bettor-pass-1", **account)
        if funds is not None:
            assert operator.operator("deposit", username=username, amount=float(funds))["status"] == "SUCCESS"
        client = new_client()
        client.username = username
        assert client.login(username, "bettor-pass-1")["status"] == "SUCCESS"
        return client

    return make
