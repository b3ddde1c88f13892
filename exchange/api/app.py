"""The bet ingress: API-NG shaped JSON-RPC over Ray Serve, one app per jurisdiction.

Owns the edge (DESIGN.md section 3, row 1, the seed's WAF role): request size limits,
per-IP and per-account token buckets, login with argon2 and lockout, sessions with
expiry, strict validation (unknown fields and wrong types are refused with a reason
naming the field), the operator role, and the translation of API-NG operations into
Gateway calls. Money and orders stay in the host actors; accounts, sessions and the
catalogue in PostgreSQL.

Routes (below the app's route prefix):
  POST /api/login | /api/keepAlive | /api/logout      Betfair's interactive login shapes
  POST /exchange/betting/json-rpc/v1                   SportsAPING/v1.0/<operation>
  POST /exchange/account/json-rpc/v1                   AccountAPING/v1.0/<operation>
  POST /exchange/operator/json-rpc/v1                  OperatorAPING/v1.0/<operation> (operators)
  GET  /openapi.json                                   generated from exchange/api/wire.py
  GET  /health                                         {"status": "OK"}: no actor call, no database
  WS   /stream                                         Exchange Stream API + order entry (exchange/api/stream.py)

Must never hold money state, trust a player id from the body (the session names the
bettor), or block the event loop (argon2 runs in a thread).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qsl

import msgspec

from exchange.api import convert, wire
from exchange.api.limits import TokenBuckets
from exchange.api.passwords import hash_password, verify_password

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]

BETTING = "/exchange/betting/json-rpc/v1"
ACCOUNT = "/exchange/account/json-rpc/v1"
OPERATOR = "/exchange/operator/json-rpc/v1"

# APINGExceptionCode -> the number in its message (ANGX-00NN / AANGX-00NN)
APING_CODES = {
    "TOO_MUCH_DATA": 1, "INVALID_INPUT_DATA": 2, "INVALID_SESSION_INFORMATION": 3, "NO_APP_KEY": 4,
    "NO_SESSION": 5, "UNEXPECTED_ERROR": 6, "INVALID_APP_KEY": 7, "TOO_MANY_REQUESTS": 8,
    "SERVICE_BUSY": 9, "TIMEOUT_ERROR": 10, "REQUEST_SIZE_EXCEEDS_LIMIT": 11, "ACCESS_DENIED": 12,
}
APING_ERROR = -32099
PARSE_ERROR = -32700
MAX_INSTRUCTIONS = 200          # API-NG's limit per placeOrders
INVALID_REQUEST = -32600
MAX_BATCH = 50          # calls in one JSON-RPC batch
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


@dataclass(frozen=True)
class Settings:
    """Everything a replica needs; resolved by build_app, passed to each replica."""

    jurisdiction: str
    kafka_bootstrap: str
    postgres_dsn: str
    db_schema: str = "platform"
    market_hosts: int = 1
    wallet_hosts: int = 1
    namespace: str = "exchange"
    kafka_prefix: str = "exchange"
    currency: str = "USD"
    regulator: str = ""
    session_ttl_s: float = 8 * 3600
    session_cache_s: float = 2.0        # a logged-out token may pass on another replica this long
    max_body_bytes: int = 256 * 1024
    max_login_bytes: int = 4096
    ip_rate: float = 100.0              # requests per second per client IP, over all replicas
    ip_burst: float = 200.0
    account_rate: float = 50.0          # per account, unless the account row says otherwise
    account_burst: float = 100.0
    login_rate: float = 1.0             # logins per second per client IP
    login_burst: float = 10.0
    max_login_failures: int = 3
    lockout_s: float = 1800.0
    trust_forwarded_for: bool = False   # only behind a proxy that sets X-Forwarded-For itself
    num_replicas: int = 1
    # A niceness for the replica to ask for (actors/priority.py); None keeps Ray's 15, which
    # yields a busy node's cores to the hosts and the broker (-10) before new requests. At
    # -10 on the 2-core machine: the no-op route +10-70% requests/s, placeOrders mixed,
    # their ratio lower (docs/benchmarks.md, 2026-12-02; `bench http --ingress-niceness`).
    niceness: int | None = None


class Refusal(Exception):
    """An APINGException to answer with (never crosses an actor boundary)."""

    def __init__(self, code: str, details: str = "", http_status: int = 200, retry_after: float = 0):
        super().__init__(code)
        self.code, self.details, self.http_status, self.retry_after = code, details, http_status, retry_after


@dataclass(frozen=True)
class Caller:
    account_id: str
    username: str
    role: str
    rate: float | None
    burst: float | None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _rpc_error(rid, code: int, message: str, data: dict | None = None) -> wire.JsonRpcErrorReply:
    return wire.JsonRpcErrorReply(jsonrpc="2.0", id=rid, error=wire.JsonRpcError(code=code, message=message, data=data))


# a market the feed has seen nothing of yet: nothing traded (listMarketBook)
_NOTHING_TRADED = SimpleNamespace(traded={}, ltp={})


class BetIngress:
    """The Serve deployment class (one instance per replica)."""

    def __init__(self, settings: dict):
        from starlette.responses import Response

        from actors.gateway import Gateway, Hosts
        from actors.priority import renice
        from exchange.api.openapi import openapi_document

        self.s = Settings(**settings)
        if self.s.niceness is not None:
            renice(self.s.niceness, "ingress")
        self.Response = Response
        _log_with_serve()
        # Codecs are built here, not at module level: Serve pickles deployment classes by value.
        self.encoder = msgspec.json.Encoder(decimal_format="number")
        self.envelope = msgspec.json.Decoder(wire.JsonRpcRequest)
        self.batch_envelope = msgspec.json.Decoder(list[msgspec.Raw])
        self.gateway = Gateway(Hosts(self.s.jurisdiction, self.s.market_hosts, self.s.wallet_hosts,
                                     self.s.namespace))
        n = max(1, self.s.num_replicas)
        self.ip_limits = TokenBuckets(self.s.ip_rate / n, self.s.ip_burst / n)
        self.account_limits = TokenBuckets(self.s.account_rate / n, self.s.account_burst / n)
        self.login_limits = TokenBuckets(self.s.login_rate / n, self.s.login_burst / n)
        self.sessions: dict[str, tuple[Caller, str, float]] = {}   # token -> (caller, app key, cache until)
        self.store = None
        self.hub = None                    # the WebSocket stream's feed and connections, made on first use
        self._store_lock = asyncio.Lock()
        ops = {
            BETTING: {
                "SportsAPING/v1.0/listEventTypes": (wire.ListEventTypesParams, self.list_event_types),
                "SportsAPING/v1.0/listEvents": (wire.ListEventsParams, self.list_events),
                "SportsAPING/v1.0/listMarketCatalogue": (wire.ListMarketCatalogueParams,
                                                         self.list_market_catalogue),
                "SportsAPING/v1.0/listMarketBook": (wire.ListMarketBookParams, self.list_market_book),
                "SportsAPING/v1.0/placeOrders": (wire.PlaceOrdersParams, self.place_orders),
                "SportsAPING/v1.0/cancelOrders": (wire.CancelOrdersParams, self.cancel_orders),
                "SportsAPING/v1.0/replaceOrders": (wire.ReplaceOrdersParams, self.replace_orders),
                "SportsAPING/v1.0/updateOrders": (wire.UpdateOrdersParams, self.update_orders),
                "SportsAPING/v1.0/listCurrentOrders": (wire.ListCurrentOrdersParams,
                                                       self.list_current_orders),
                "SportsAPING/v1.0/listMarketProfitAndLoss": (wire.ListMarketProfitAndLossParams,
                                                             self.list_market_profit_and_loss),
                "SportsAPING/v1.0/listClearedOrders": (wire.ListClearedOrdersParams, self.list_cleared_orders),
            },
            ACCOUNT: {
                "AccountAPING/v1.0/getAccountFunds": (wire.GetAccountFundsParams, self.get_account_funds),
                "AccountAPING/v1.0/getAccountDetails": (wire.GetAccountDetailsParams, self.get_account_details),
                "AccountAPING/v1.0/getAccountStatement": (wire.GetAccountStatementParams,
                                                          self.get_account_statement),
            },
            OPERATOR: {
                "OperatorAPING/v1.0/createAccount": (wire.CreateAccountParams, self.create_account),
                "OperatorAPING/v1.0/unlockAccount": (wire.UsernameParams, self.unlock_account),
                "OperatorAPING/v1.0/deposit": (wire.DepositParams, self.deposit),
                "OperatorAPING/v1.0/createEvent": (wire.CreateEventParams, self.create_event),
                "OperatorAPING/v1.0/createMarket": (wire.CreateMarketParams, self.create_market),
                "OperatorAPING/v1.0/openMarket": (wire.MarketIdParams, self.open_market),
                "OperatorAPING/v1.0/suspendMarket": (wire.MarketIdParams, self.suspend_market),
                "OperatorAPING/v1.0/turnInPlay": (wire.TurnInPlayParams, self.turn_in_play),
                "OperatorAPING/v1.0/removeRunner": (wire.RemoveRunnerParams, self.remove_runner),
                "OperatorAPING/v1.0/closeMarket": (wire.MarketIdParams, self.close_market),
                "OperatorAPING/v1.0/settleMarket": (wire.SettleMarketParams, self.settle_market),
                "OperatorAPING/v1.0/voidMarket": (wire.MarketIdParams, self.void_market),
            },
        }
        self.ops = {path: {m: (msgspec.json.Decoder(t), h) for m, (t, h) in table.items()}
                    for path, table in ops.items()}
        self.openapi = self.encoder.encode(openapi_document(self.s.jurisdiction))

    async def platform(self):
        if self.store is None:
            async with self._store_lock:
                if self.store is None:
                    from exchange.storage.platform import PlatformStore
                    self.store = await PlatformStore.connect(self.s.postgres_dsn, self.s.db_schema)
        return self.store

    # ---------------------------------------------------------------- HTTP

    def reply(self, body, status: int = 200, headers: dict | None = None):
        return self.Response(self.encoder.encode(body), status_code=status, headers=headers,
                             media_type="application/json")

    def client_ip(self, request) -> str:
        if self.s.trust_forwarded_for:
            forwarded = request.headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()[:64]
        return request.client.host if request.client else "unknown"

    def __serve_build_asgi_app__(self):
        """Serve's ASGI entry (serve.ingress without an app): HTTP to handle(), /stream to the hub."""
        from starlette.requests import Request
        from starlette.websockets import WebSocket

        async def app(scope, receive, send):
            kind = scope["type"]
            if kind == "http":
                response = await self.handle(Request(scope, receive))
                await response(scope, receive, send)
            elif kind == "websocket":
                await self.stream(WebSocket(scope, receive, send))
            elif kind == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        if self.hub is not None:
                            await self.hub.feed.stop()
                        await send({"type": "lifespan.shutdown.complete"})
                        return

        return app

    def stream_hub(self):
        """The replica's stream feed and connections, made and started on first use."""
        from exchange.api.stream import StreamHub

        if self.hub is None:
            self.hub = StreamHub(self)
        self.hub.start()
        return self.hub

    async def stream(self, websocket) -> None:
        if _route(websocket) != "/stream":
            await websocket.close(code=4404)
            return
        ip = self.client_ip(websocket)
        if self.ip_limits.take(ip):
            await websocket.close(code=1013)       # try again later
            return
        from exchange.api.stream import StreamConnection

        await StreamConnection(self.stream_hub(), websocket, ip).run()

    async def handle(self, request):
        path = _route(request)
        if path == "/health":          # the load balancer's check and the benchmarks' ceiling: no I/O
            return self.Response(b'{"status":"OK"}', media_type="application/json")
        ip = self.client_ip(request)
        wait = self.ip_limits.take(ip)
        if request.method == "GET" and path == "/openapi.json":
            return self.Response(self.openapi, media_type="application/json")
        if path in ("/api/login", "/api/keepAlive", "/api/logout"):
            return await self.identity(request, path, ip, wait)
        if path not in self.ops:
            return self.reply({"error": "NOT_FOUND", "path": path}, 404)
        account_api = path == ACCOUNT
        rid = None
        try:
            if request.method != "POST":
                raise Refusal("INVALID_INPUT_DATA", "use POST")
            if wait:
                raise Refusal("TOO_MANY_REQUESTS", "too many requests from this address", 429, wait)
            body = await self.read_body(request, self.s.max_body_bytes)
            caller = await self.authenticate(request)
            self.take_account_token(caller)
            if path == OPERATOR and caller.role != "OPERATOR":
                raise Refusal("ACCESS_DENIED", "operator role required")
            if body.lstrip()[:1] == b"[":
                return await self.batch(path, caller, body, account_api)
            try:
                call = self.envelope.decode(body)
            except msgspec.ValidationError as exc:
                return self.rpc_error(None, INVALID_REQUEST, f"Invalid Request: {exc}")
            except msgspec.DecodeError as exc:
                return self.rpc_error(None, PARSE_ERROR, f"Parse error: {exc}")
            rid = call.id
            return self.reply(await self.call(path, caller, call, account_api))
        except Refusal as r:
            headers = {"Retry-After": str(max(1, int(r.retry_after + 0.999)))} if r.retry_after else None
            return self.reply(self.refusal_reply(rid, r, account_api), r.http_status, headers)
        except Exception as exc:       # a host away, the database away: say so, keep serving
            log.exception("unexpected error on %s", path)
            return self.reply(self.refusal_reply(rid, Refusal("UNEXPECTED_ERROR", type(exc).__name__),
                                                 account_api))

    def take_account_token(self, caller: Caller) -> None:
        """One request (or one call of a batch) against the account's rate; TOO_MANY_REQUESTS over it.
        (An account's own rate and burst are per replica too: Caller holds them divided.)"""
        wait = self.account_limits.take(caller.account_id, rate=caller.rate, burst=caller.burst)
        if wait:
            raise Refusal("TOO_MANY_REQUESTS", "too many requests for this account", 429, wait)

    def refusal_reply(self, rid, r: Refusal, account_api: bool) -> wire.JsonRpcErrorReply:
        """An APINGException (or AccountAPINGException) reply for a refusal."""
        return _rpc_error(rid, APING_ERROR, self.aping_message(r.code, account_api),
                          self.aping_data(r.code, r.details, account_api))

    async def call(self, path: str, caller: Caller, call: wire.JsonRpcRequest, account_api: bool):
        """One JSON-RPC call -> its reply (a JsonRpcReply, or a JsonRpcErrorReply for a method
        not found or bad params); a Refusal or another error propagates."""
        op = self.ops[path].get(call.method)
        if op is None:
            return _rpc_error(call.id, METHOD_NOT_FOUND, f"Method not found: {call.method}")
        decoder, handler = op
        try:
            params = decoder.decode(call.params)
        except msgspec.DecodeError as exc:
            reason = _at_params(str(exc))
            return _rpc_error(call.id, INVALID_PARAMS, f"Invalid params: {reason}",
                              self.aping_data("INVALID_INPUT_DATA", reason, account_api))
        return wire.JsonRpcReply(jsonrpc="2.0", id=call.id, result=await handler(caller, params))

    async def batch(self, path: str, caller: Caller, body: bytes, account_api: bool):
        """A JSON-RPC 2.0 batch: an array of calls, answered by an array of their replies in
        the same order, one after the other. The request counted once against the account's
        rate when it came in; each further call takes its own token (over the rate: that
        call's reply is TOO_MANY_REQUESTS). An empty array, or more than MAX_BATCH calls, is
        one Invalid Request."""
        try:
            raws = self.batch_envelope.decode(body)
        except msgspec.DecodeError as exc:
            return self.rpc_error(None, PARSE_ERROR, f"Parse error: {exc}")
        if not raws or len(raws) > MAX_BATCH:
            return self.rpc_error(None, INVALID_REQUEST,
                                  f"Invalid Request: a batch holds 1 to {MAX_BATCH} calls, not {len(raws)}")
        replies = []
        for n, raw in enumerate(raws):
            rid = None
            try:
                try:
                    call = self.envelope.decode(raw)
                except msgspec.DecodeError as exc:
                    replies.append(_rpc_error(None, INVALID_REQUEST, f"Invalid Request: {exc}"))
                    continue
                rid = call.id
                if n:
                    self.take_account_token(caller)
                replies.append(await self.call(path, caller, call, account_api))
            except Refusal as r:
                replies.append(self.refusal_reply(rid, r, account_api))
            except Exception as exc:
                log.exception("unexpected error on %s (batch call %d)", path, n)
                replies.append(self.refusal_reply(rid, Refusal("UNEXPECTED_ERROR", type(exc).__name__),
                                                  account_api))
        return self.reply(replies)

    async def read_body(self, request, limit: int) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise Refusal("REQUEST_SIZE_EXCEEDS_LIMIT", f"the body is limited to {limit} bytes", 413)
        body = await request.body()
        if len(body) > limit:
            raise Refusal("REQUEST_SIZE_EXCEEDS_LIMIT", f"the body is limited to {limit} bytes", 413)
        return body

    def aping_message(self, code: str, account_api: bool) -> str:
        return f"{'AANGX' if account_api else 'ANGX'}-{APING_CODES.get(code, 6):04d}"

    def aping_data(self, code: str, details: str, account_api: bool) -> dict:
        name = "AccountAPINGException" if account_api else "APINGException"
        return {name: {"requestUUID": uuid.uuid4().hex, "errorCode": code, "errorDetails": details},
                "exceptionname": name}

    def rpc_error(self, rid, code: int, message: str, data: dict | None = None, status: int = 200,
                  headers: dict | None = None):
        return self.reply(_rpc_error(rid, code, message, data), status, headers)

    async def authenticate(self, request) -> Caller:
        app_key = request.headers.get("x-application")
        if not app_key:
            raise Refusal("NO_APP_KEY", "the X-Application header is required")
        token = request.headers.get("x-authentication")
        if not token:
            raise Refusal("NO_SESSION", "the X-Authentication header is required")
        return await self.session_caller(app_key, token)

    async def session_caller(self, app_key: str, token: str) -> Caller:
        """The bettor a session token names, if the token is live and was opened with app_key."""
        now = time.monotonic()
        cached = self.sessions.get(token)
        if cached is None or cached[2] < now:
            found = await (await self.platform()).session(token) if len(token) <= 128 else None
            if found is None:
                self.sessions.pop(token, None)
                raise Refusal("INVALID_SESSION_INFORMATION", "the session token is invalid or expired")
            account, expires_at, session_app_key = found
            n = max(1, self.s.num_replicas)
            caller = Caller(account.account_id, account.username, account.role,
                            account.requests_per_second / n if account.requests_per_second else None,
                            account.burst / n if account.burst else None)
            until = min(now + self.s.session_cache_s, now + (expires_at - _now()).total_seconds())
            if len(self.sessions) > 100_000:
                self.sessions.clear()
            cached = self.sessions[token] = (caller, session_app_key, until)
        caller, session_app_key, _ = cached
        if app_key != session_app_key:
            raise Refusal("INVALID_APP_KEY", "the session was opened with another application key")
        return caller

    # ---------------------------------------------------------------- identity

    async def identity(self, request, path: str, ip: str, ip_wait: float):
        app_key = request.headers.get("x-application", "")

        def answer(status: str, error: str = "", token: str = "", http: int = 200):
            return self.reply(wire.LoginResponse(token=token, product=app_key, status=status, error=error),
                              http)

        if ip_wait:
            return answer("FAIL", "TEMPORARY_BAN_TOO_MANY_REQUESTS", http=429)
        try:
            body = await self.read_body(request, self.s.max_login_bytes)
        except Refusal:
            return answer("FAIL", "INPUT_VALIDATION_ERROR", http=413)
        if not app_key or len(app_key) > 64:
            return answer("FAIL", "INVALID_APP_KEY" if app_key else "NO_APP_KEY")
        store = await self.platform()
        ttl = timedelta(seconds=self.s.session_ttl_s)
        if path == "/api/login":
            if self.login_limits.take(ip):
                return answer("FAIL", "TEMPORARY_BAN_TOO_MANY_REQUESTS", http=429)
            try:
                form = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body),
                                      max_num_fields=4))
            except (ValueError, UnicodeDecodeError):
                return answer("FAIL", "INPUT_VALIDATION_ERROR")
            username, password = form.get("username", ""), form.get("password", "")
            if set(form) != {"username", "password"} or not username or not password or len(password) > 128:
                return answer("FAIL", "INPUT_VALIDATION_ERROR")
            # a name no account can have (e.g. a NUL, which PostgreSQL refuses) is an unknown name
            record = await store.login_record(username) if _possible_username(username) else None
            if record is not None and record[2] is not None and record[2] > _now():
                return answer("FAIL", "ACCOUNT_ALREADY_LOCKED")
            ok = await asyncio.to_thread(verify_password, record[1] if record else None, password)
            if record is None:
                return answer("FAIL", "INVALID_USERNAME_OR_PASSWORD")
            account = record[0]
            if not ok:
                locked = await store.login_failed(account.account_id, self.s.max_login_failures,
                                                  timedelta(seconds=self.s.lockout_s))
                return answer("FAIL", "ACCOUNT_NOW_LOCKED" if locked else "INVALID_USERNAME_OR_PASSWORD")
            if account.jurisdiction != self.s.jurisdiction:
                return answer("FAIL", "NOT_AUTHORIZED_BY_REGULATOR")
            await store.login_succeeded(account.account_id)
            token = await store.create_session(account.account_id, app_key, ttl)
            return answer("SUCCESS", token=token)
        token = request.headers.get("x-authentication", "")
        if not token or len(token) > 128:
            return answer("FAIL", "NO_SESSION")
        if path == "/api/keepAlive":
            ok = await store.keep_alive(token, ttl)
            return answer("SUCCESS", token=token) if ok else answer("FAIL", "NO_SESSION")
        self.sessions.pop(token, None)
        ok = await store.end_session(token)
        return answer("SUCCESS", token=token) if ok else answer("FAIL", "NO_SESSION")

    # ---------------------------------------------------------------- catalogue

    async def _markets(self, f: wire.MarketFilter, limit: int = 10_000, order: str | None = None):
        start = f.market_start_time
        kwargs = {"order": order} if order else {}
        return await (await self.platform()).markets(
            self.s.jurisdiction, text=f.text_query, event_type_ids=f.event_type_ids, event_ids=f.event_ids,
            market_ids=f.market_ids, market_types=f.market_type_codes, countries=f.market_countries,
            start_from=start.from_ if start else None, start_to=start.to if start else None,
            limit=limit, **kwargs)

    async def list_event_types(self, caller: Caller, p: wire.ListEventTypesParams):
        counts: dict[str, list] = {}
        for m in await self._markets(p.filter):
            entry = counts.setdefault(m["event_type_id"], [m["event_type_name"], 0])
            entry[1] += 1
        return [wire.EventTypeResult(event_type=wire.EventType(id=k, name=v[0]), market_count=v[1])
                for k, v in sorted(counts.items())]

    async def list_events(self, caller: Caller, p: wire.ListEventsParams):
        events: dict[str, list] = {}
        for m in await self._markets(p.filter):
            entry = events.setdefault(m["event_id"], [m, 0])
            entry[1] += 1
        return [wire.EventResult(event=_event(m), market_count=n) for m, n in events.values()]

    async def list_market_catalogue(self, caller: Caller, p: wire.ListMarketCatalogueParams):
        order = "m.start_time DESC, m.market_id" if p.sort == "LAST_TO_START" else None
        rows = await self._markets(p.filter, p.max_results, order)
        projection = set(p.market_projection)
        runners = (await (await self.platform()).runners([r["market_id"] for r in rows])
                   if "RUNNER_DESCRIPTION" in projection else {})
        out = []
        for m in rows:
            out.append(wire.MarketCatalogue(
                market_id=m["market_id"], market_name=m["name"],
                market_start_time=m["start_time"] if "MARKET_START_TIME" in projection else None,
                description=wire.MarketDescription(
                    persistence_enabled=True, bsp_market=False, market_time=m["start_time"],
                    suspend_time=m["start_time"], betting_type="ODDS", turn_in_play_enabled=True,
                    market_type=m["market_type"], regulator=self.s.regulator,
                    market_base_rate=_percent(m["commission_bp"]), discount_allowed=False)
                if "MARKET_DESCRIPTION" in projection else None,
                runners=[_runner(r) for r in runners.get(m["market_id"], [])]
                if "RUNNER_DESCRIPTION" in projection else None,
                event_type=wire.EventType(id=m["event_type_id"], name=m["event_type_name"])
                if "EVENT_TYPE" in projection else None,
                event=_event(m) if "EVENT" in projection else None))
        return out

    async def list_market_book(self, caller: Caller, p: wire.ListMarketBookParams):
        projection = p.price_projection
        with_prices = projection is not None and bool(
            {"EX_BEST_OFFERS", "EX_ALL_OFFERS"} & set(projection.price_data))
        depth = 3
        if projection is not None and "EX_ALL_OFFERS" in projection.price_data:
            depth = 350
        elif projection is not None and projection.ex_best_offers_overrides is not None:
            depth = projection.ex_best_offers_overrides.best_prices_depth or 3
        with_traded = projection is not None and "EX_TRADED" in projection.price_data
        views = await self.gateway.market_books(p.market_ids, depth)
        orders = None
        if p.order_projection in ("ALL", "EXECUTABLE"):
            orders = await self.gateway.player_orders(caller.account_id, list(views))
        # traded figures come from the replica's market feed (the stream's tail of the
        # journal, a moment behind the hosts); left out while it is still replaying
        feed = self.stream_hub().feed
        feeds = feed.feeds if feed.ready.is_set() else None
        out = []
        for market_id, view in views.items():
            if view is None:
                continue
            mine = [o for o in orders if o["market_id"] == market_id] if orders is not None else None
            # a market the feed has seen no event of yet: nothing traded
            traded = feeds.get(market_id, _NOTHING_TRADED) if feeds is not None else None
            out.append(convert.view_to_market_book(view, with_prices, mine, traded, with_traded))
        return out

    # ---------------------------------------------------------------- orders

    async def place_orders(self, caller: Caller, p: wire.PlaceOrdersParams):
        from exchange.domain import codes

        count = len(p.instructions)
        if not count:
            raise Refusal("INVALID_INPUT_DATA", "instructions: at least one - at `$.params.instructions`")
        if count > MAX_INSTRUCTIONS:
            code = codes.TOO_MANY_INSTRUCTIONS
            return wire.PlaceExecutionReport(
                status="FAILURE", error_code=code, market_id=p.market_id, customer_ref=p.customer_ref,
                instruction_reports=[wire.PlaceInstructionReport(status="FAILURE", instruction=i,
                                                                 error_code=code) for i in p.instructions])
        command_id = convert.command_id_for(caller.account_id, "place", p.customer_ref, uuid.uuid4().hex)
        cmd = convert.place_params_to_command(p, caller.account_id, command_id)
        result = await self.gateway.place_orders(cmd)
        return convert.result_to_place_report(p, result, _now())

    def _bet_ids(self, market_id: str, bet_ids: list[str]) -> list[int | None]:
        out = []
        for b in bet_ids:
            parsed = convert.api_to_bet_id(b)
            out.append(parsed[1] if parsed is not None and parsed[0] == market_id else None)
        return out

    async def cancel_orders(self, caller: Caller, p: wire.CancelOrdersParams):
        from exchange.domain.messages import CancelInstruction, CancelOrders

        now = _now()
        if p.market_id is None:
            if p.instructions:
                raise Refusal("INVALID_INPUT_DATA", "instructions need a marketId")
            live = await self.gateway.player_orders(caller.account_id)
            by_market: dict[str, list[dict]] = {}
            for o in live:
                by_market.setdefault(o["market_id"], []).append(o)
            results = await asyncio.gather(*(self.gateway.cancel_orders(CancelOrders(
                command_id=uuid.uuid4().hex, market_id=m, player_id=caller.account_id))
                for m in by_market))
            reports = []
            for (m, orders), result in zip(by_market.items(), results):
                remaining = {o["bet_id"]: o["remaining"] for o in orders}
                for r in result.reports:
                    if r.status == "SUCCESS":
                        reports.append(wire.CancelInstructionReport(
                            status="SUCCESS",
                            instruction=wire.CancelInstruction(bet_id=convert.bet_id_to_api(m, r.bet_id)),
                            size_cancelled=convert.minor_to_units(remaining.get(r.bet_id, 0)),
                            cancelled_date=now))
            failed = [r for r in results if r.status != "SUCCESS"]
            return wire.CancelExecutionReport(
                status="FAILURE" if failed else "SUCCESS", error_code=failed[0].error_code if failed else None,
                customer_ref=p.customer_ref, instruction_reports=reports)
        bets = self._bet_ids(p.market_id, [i.bet_id for i in p.instructions])
        live = {o["bet_id"]: o for o in await self.gateway.player_orders(caller.account_id, [p.market_id])}
        instructions = []
        for ins, bet in zip(p.instructions, bets):
            reduction = None
            if ins.size_reduction is not None:
                reduction = convert.units_to_minor(ins.size_reduction)
                reduction = -1 if reduction is None else reduction      # -> INVALID_BET_SIZE
            instructions.append(CancelInstruction(bet_id=0 if bet is None else bet, size_reduction=reduction))
        result = await self.gateway.cancel_orders(CancelOrders(
            command_id=uuid.uuid4().hex, market_id=p.market_id, player_id=caller.account_id,
            instructions=instructions))
        status, error = convert.execution_status(result)
        if not p.instructions:       # the whole market: one report per bet cancelled
            reports = [wire.CancelInstructionReport(
                status="SUCCESS",
                instruction=wire.CancelInstruction(bet_id=convert.bet_id_to_api(p.market_id, r.bet_id)),
                size_cancelled=convert.minor_to_units(live.get(r.bet_id, {}).get("remaining", 0)),
                cancelled_date=now) for r in result.reports if r.status == "SUCCESS"]
        else:
            reports = []
            by_index = {r.index: r for r in result.reports}
            for index, (ins, bet, cmd_ins) in enumerate(zip(p.instructions, bets, instructions)):
                r = by_index.get(index)
                if bet is None:
                    reports.append(wire.CancelInstructionReport(status="FAILURE", instruction=ins,
                                                                error_code=convert.INVALID_BET_ID))
                elif r is None or r.status != "SUCCESS":
                    reports.append(wire.CancelInstructionReport(
                        status="FAILURE", instruction=ins, error_code=(r.error_code if r else error)))
                else:
                    before = live.get(bet, {}).get("remaining", 0)
                    size = before if cmd_ins.size_reduction is None else min(before, cmd_ins.size_reduction)
                    reports.append(wire.CancelInstructionReport(
                        status="SUCCESS", instruction=ins, size_cancelled=convert.minor_to_units(size),
                        cancelled_date=now))
            if bets == [None]:
                error = convert.INVALID_BET_ID
        return wire.CancelExecutionReport(status=status, error_code=error, market_id=p.market_id,
                                          customer_ref=p.customer_ref, instruction_reports=reports)

    async def replace_orders(self, caller: Caller, p: wire.ReplaceOrdersParams):
        from exchange.domain.messages import ReplaceInstruction, ReplaceOrders

        now = _now()
        bets = self._bet_ids(p.market_id, [i.bet_id for i in p.instructions])
        live = {o["bet_id"]: o for o in await self.gateway.player_orders(caller.account_id, [p.market_id])}
        command_id = convert.command_id_for(caller.account_id, "replace", p.customer_ref, uuid.uuid4().hex)
        cmd = ReplaceOrders(
            command_id=command_id, market_id=p.market_id, player_id=caller.account_id,
            instructions=[ReplaceInstruction(bet_id=0 if b is None else b,
                                             new_price=convert.price_to_text(i.new_price))
                          for i, b in zip(p.instructions, bets)],
            market_version=p.market_version.version if p.market_version is not None else None)
        result = await self.gateway.replace_orders(cmd)
        status, error = convert.execution_status(result)
        by_index = {r.index: r for r in result.reports}
        reports = []
        for index, (ins, bet) in enumerate(zip(p.instructions, bets)):
            r = by_index.get(index)
            order = live.get(bet) if bet is not None else None
            if r is None or r.status != "SUCCESS" or order is None:
                code = convert.INVALID_BET_ID if bet is None else (r.error_code if r else error)
                reports.append(wire.ReplaceInstructionReport(status="FAILURE", error_code=code))
                continue
            size = order["remaining"]
            placed = wire.PlaceInstruction(
                order_type="LIMIT", selection_id=order["selection_id"], side=order["side"],
                limit_order=wire.LimitOrder(size=convert.minor_to_units(size), price=ins.new_price,
                                            persistence_type=order["persistence"]))
            reports.append(wire.ReplaceInstructionReport(
                status="SUCCESS",
                cancel_instruction_report=wire.CancelInstructionReport(
                    status="SUCCESS", instruction=wire.CancelInstruction(bet_id=ins.bet_id),
                    size_cancelled=convert.minor_to_units(size), cancelled_date=now),
                place_instruction_report=wire.PlaceInstructionReport(
                    status="SUCCESS", instruction=placed,
                    order_status="EXECUTION_COMPLETE" if r.size_matched >= size else "EXECUTABLE",
                    bet_id=convert.bet_id_to_api(p.market_id, r.bet_id), placed_date=now,
                    average_price_matched=convert.average_price(r.matched_value, r.size_matched),
                    size_matched=convert.minor_to_units(r.size_matched))))
        return wire.ReplaceExecutionReport(status=status, error_code=error, market_id=p.market_id,
                                           customer_ref=p.customer_ref, instruction_reports=reports)

    async def update_orders(self, caller: Caller, p: wire.UpdateOrdersParams):
        from exchange.domain.messages import UpdateInstruction, UpdateOrders

        bets = self._bet_ids(p.market_id, [i.bet_id for i in p.instructions])
        result = await self.gateway.update_orders(UpdateOrders(
            command_id=uuid.uuid4().hex, market_id=p.market_id, player_id=caller.account_id,
            instructions=[UpdateInstruction(bet_id=0 if b is None else b, new_persistence=i.new_persistence_type)
                          for i, b in zip(p.instructions, bets)]))
        status, error = convert.execution_status(result)
        by_index = {r.index: r for r in result.reports}
        reports = []
        for index, (ins, bet) in enumerate(zip(p.instructions, bets)):
            r = by_index.get(index)
            if bet is None or r is None or r.status != "SUCCESS":
                code = convert.INVALID_BET_ID if bet is None else (r.error_code if r else error)
                reports.append(wire.UpdateInstructionReport(status="FAILURE", instruction=ins, error_code=code))
            else:
                reports.append(wire.UpdateInstructionReport(status="SUCCESS", instruction=ins))
        return wire.UpdateExecutionReport(status=status, error_code=error, market_id=p.market_id,
                                          customer_ref=p.customer_ref, instruction_reports=reports)

    async def list_current_orders(self, caller: Caller, p: wire.ListCurrentOrdersParams):
        if p.order_projection == "EXECUTION_COMPLETE":
            views = []           # the markets hold live orders only
        else:
            views = await self.gateway.player_orders(caller.account_id, p.market_ids)
        if p.order_projection != "EXECUTABLE":
            views += await self.completed_orders(caller.account_id, p.market_ids)
        if p.bet_ids is not None:
            wanted = set(p.bet_ids)
            views = [v for v in views if convert.bet_id_to_api(v["market_id"], v["bet_id"]) in wanted]
        if p.customer_order_refs is not None:
            refs = set(p.customer_order_refs)
            views = [v for v in views if v["customer_ref"] in refs]
        views.sort(key=lambda v: (v["placed_at"], v["market_id"], v["bet_id"]))
        start = p.from_record or 0
        count = p.record_count or 1000
        page = views[start:start + count]
        return wire.CurrentOrderSummaryReport(
            current_orders=[convert.order_view_to_summary(v, self.s.regulator) for v in page],
            more_available=start + count < len(views))

    async def list_market_profit_and_loss(self, caller: Caller, p: wire.ListMarketProfitAndLossParams):
        """The caller's matched P&L by runner per market, in the order asked; as Betfair, unknown
        markets and settled ones (unless includeSettledBets) are left out (exchange/domain/pnl.py)."""
        views = await self.gateway.profit_and_loss(caller.account_id, p.market_ids, p.include_settled_bets,
                                                   p.net_of_commission)
        return [convert.pnl_view_to_market_profit_and_loss(v) for v in views]

    async def completed_orders(self, player_id: str, market_ids: list[str] | None) -> list[dict]:
        """The player's complete orders with a matched part on unsettled markets (as on
        Betfair, a bet cancelled or lapsed whole is not current), from the replica's market
        feed (the stream's tail of the journal: committed data, a moment behind the hosts)."""
        feed = self.stream_hub().feed
        try:
            await asyncio.wait_for(feed.ready.wait(), 30)
        except asyncio.TimeoutError:
            raise Refusal("SERVICE_BUSY", "the order history is still loading; retry") from None
        out = []
        for market_id in (market_ids if market_ids is not None else list(feed.feeds)):
            market = feed.feeds.get(market_id)
            if market is None:
                continue
            for o in market.completed.values():
                if o.player_id == player_id and o.matched:
                    out.append(convert.order_record_to_view(market_id, o))
        return out

    async def get_account_funds(self, caller: Caller, p: wire.GetAccountFundsParams):
        balances = await self.gateway.balances([caller.account_id])
        return convert.balances_to_funds(balances.get(caller.account_id))

    async def get_account_details(self, caller: Caller, p: wire.GetAccountDetailsParams):
        account = await (await self.platform()).account_by_username(caller.username)
        if account is None:     # deleted while its session lived
            raise Refusal("INVALID_SESSION_INFORMATION", "the session's account no longer exists")
        return convert.account_details(account)

    async def list_cleared_orders(self, caller: Caller, p: wire.ListClearedOrdersParams):
        """The caller's bets in one final status, from the history read model in PostgreSQL
        (exchange/history/: the jurisdiction's projector writes a market's bets once it settles)."""
        from exchange.history.store import history_reader

        if p.group_by not in (None, "BET"):
            raise Refusal("INVALID_INPUT_DATA", f"groupBy {p.group_by}: only BET is supported")
        bets = None if p.bet_ids is None else [b for b in map(convert.api_to_bet_id, p.bet_ids) if b is not None]
        when = p.settled_date_range
        start, count = p.from_record or 0, p.record_count or 1000
        store = await self.platform()
        rows = await (await history_reader(store.pool, store.s)).cleared_orders(
            caller.account_id, p.bet_status, market_ids=p.market_ids, bets=bets, runner_ids=p.runner_ids,
            event_ids=p.event_ids, event_type_ids=p.event_type_ids, side=p.side,
            customer_refs=p.customer_order_refs, settled_from=when.from_ if when else None,
            settled_to=when.to if when else None, offset=start, limit=count + 1)
        return wire.ClearedOrderSummaryReport(
            cleared_orders=[convert.cleared_row_to_summary(r, p.include_item_description) for r in rows[:count]],
            more_available=len(rows) > count)

    async def get_account_statement(self, caller: Caller, p: wire.GetAccountStatementParams):
        """The caller's money movements, newest first, with the balance after each (the history
        read model; deposits and withdrawals, and per settled market its P&L and commission)."""
        from exchange.history.store import history_reader

        when = p.item_date_range
        start, count = p.from_record or 0, p.record_count or 100
        store = await self.platform()
        rows = await (await history_reader(store.pool, store.s)).statement(
            caller.account_id, kinds=convert.INCLUDE_ITEM_KINDS[p.include_item or "ALL"],
            item_from=when.from_ if when else None, item_to=when.to if when else None,
            offset=start, limit=count + 1)
        return wire.AccountStatementReport(
            account_statement=[convert.statement_row_to_item(r) for r in rows[:count]],
            more_available=len(rows) > count)

    # ---------------------------------------------------------------- operator

    async def create_account(self, caller: Caller, p: wire.CreateAccountParams):
        password_hash = await asyncio.to_thread(hash_password, p.password)
        account = await (await self.platform()).create_account(
            p.username, password_hash, p.role, self.s.jurisdiction, p.currency or self.s.currency,
            p.requests_per_second, p.burst)
        if account is None:
            raise Refusal("INVALID_INPUT_DATA", f"username {p.username!r} is taken")
        return wire.CreatedAccount(account_id=account.account_id, username=account.username)

    async def unlock_account(self, caller: Caller, p: wire.UsernameParams):
        ok = await (await self.platform()).unlock(p.username)
        return wire.OperatorReport(status="SUCCESS" if ok else "FAILURE",
                                   error_code=None if ok else "INVALID_ACCOUNT")

    async def deposit(self, caller: Caller, p: wire.DepositParams):
        account = await (await self.platform()).account_by_username(p.username)
        if account is None or account.jurisdiction != self.s.jurisdiction:
            raise Refusal("INVALID_INPUT_DATA", f"no account {p.username!r} in {self.s.jurisdiction}")
        amount = convert.units_to_minor(p.amount)
        if amount is None:
            raise Refusal("INVALID_INPUT_DATA", "amount: at most two decimals")
        command_id = convert.command_id_for(account.account_id, "deposit", p.transaction_ref,
                                            uuid.uuid4().hex)
        result = await self.gateway.deposit(account.account_id, amount, command_id)
        return _operator_report(result)

    async def create_event(self, caller: Caller, p: wire.CreateEventParams):
        event_id = await (await self.platform()).create_event(
            p.event_type_id, p.event_type_name, p.name, p.country_code, p.timezone, p.open_date,
            self.s.jurisdiction)
        if event_id is None:
            raise Refusal("INVALID_INPUT_DATA", f"unknown eventTypeId {p.event_type_id!r}: give eventTypeName")
        return wire.CreatedEvent(event_id=event_id)

    async def create_market(self, caller: Caller, p: wire.CreateMarketParams):
        from exchange.domain import codes
        from exchange.domain.messages import DefineMarket

        store = await self.platform()
        if await store.event_jurisdiction(p.event_id) != self.s.jurisdiction:
            raise Refusal("INVALID_INPUT_DATA", f"no event {p.event_id!r} in {self.s.jurisdiction}")
        given = [r.selection_id for r in p.runners]
        if all(g is None for g in given):
            ids = list(range(1, len(p.runners) + 1))
        elif None in given or len(set(given)) != len(given):
            raise Refusal("INVALID_INPUT_DATA", "runners: give every selectionId, each once, or none")
        else:
            ids = given
        min_stake = convert.units_to_minor(p.min_stake)
        commission_bp = convert.rate_to_bp(p.commission_rate)
        if min_stake is None or min_stake < 1 or commission_bp is None:
            raise Refusal("INVALID_INPUT_DATA", "minStake: positive, two decimals; commissionRate: 0..1 in bp")
        for _ in range(5):
            market_id = f"1.{await store.next_id()}"
            result = await self.gateway.operate(DefineMarket(
                command_id=uuid.uuid4().hex, market_id=market_id, runners=ids,
                number_of_winners=p.number_of_winners, min_stake=min_stake, commission_rate_bp=commission_bp))
            # INVALID_MARKET_STATE: the journal already has this id (a catalogue wiped without
            # its Kafka topics): take the next id.
            if result.error_code != codes.INVALID_MARKET_STATE:
                break
        if result.status != "SUCCESS":
            raise Refusal("INVALID_INPUT_DATA", f"the market was refused: {result.error_code}")
        runners = [(sid, r.runner_name, r.sort_priority if r.sort_priority is not None else i + 1)
                   for i, (sid, r) in enumerate(zip(ids, p.runners))]
        await store.create_market(market_id, p.event_id, p.market_name, p.market_type, p.market_start_time,
                                  self.s.jurisdiction, p.number_of_winners, min_stake, commission_bp, runners)
        return wire.CreatedMarket(market_id=market_id, runners=[
            wire.RunnerCatalog(selection_id=sid, runner_name=name, handicap=convert.ZERO, sort_priority=prio)
            for sid, name, prio in runners])

    async def _lifecycle(self, command, quiesce: bool = False):
        result = await self.gateway.operate(command)
        if quiesce and result.status == "SUCCESS":
            await self.gateway.quiesce()       # the wallets have the results when the operator hears back
        return _operator_report(result)

    async def open_market(self, caller: Caller, p: wire.MarketIdParams):
        from exchange.domain.messages import OpenMarket
        return await self._lifecycle(OpenMarket(command_id=uuid.uuid4().hex, market_id=p.market_id))

    async def suspend_market(self, caller: Caller, p: wire.MarketIdParams):
        from exchange.domain.messages import SuspendMarket
        return await self._lifecycle(SuspendMarket(command_id=uuid.uuid4().hex, market_id=p.market_id))

    async def turn_in_play(self, caller: Caller, p: wire.TurnInPlayParams):
        from exchange.domain.messages import TurnInPlay
        return await self._lifecycle(TurnInPlay(command_id=uuid.uuid4().hex, market_id=p.market_id,
                                                bet_delay_ms=p.bet_delay * 1000), quiesce=True)

    async def remove_runner(self, caller: Caller, p: wire.RemoveRunnerParams):
        from exchange.domain.messages import RemoveRunner
        return await self._lifecycle(RemoveRunner(command_id=uuid.uuid4().hex, market_id=p.market_id,
                                                  runner_id=p.selection_id), quiesce=True)

    async def close_market(self, caller: Caller, p: wire.MarketIdParams):
        from exchange.domain.messages import CloseMarket
        return await self._lifecycle(CloseMarket(command_id=uuid.uuid4().hex, market_id=p.market_id),
                                     quiesce=True)

    async def settle_market(self, caller: Caller, p: wire.SettleMarketParams):
        from exchange.domain.messages import SettleMarket
        return await self._lifecycle(SettleMarket(command_id=uuid.uuid4().hex, market_id=p.market_id,
                                                  winners=p.winners, dead_heat=p.dead_heat), quiesce=True)

    async def void_market(self, caller: Caller, p: wire.MarketIdParams):
        from exchange.domain.messages import VoidMarket
        return await self._lifecycle(VoidMarket(command_id=uuid.uuid4().hex, market_id=p.market_id),
                                     quiesce=True)


def _log_with_serve() -> None:
    """Our modules' INFO lines go where Serve writes the replica's log (logs/serve/replica_*.log)."""
    ours, serve = logging.getLogger("exchange"), logging.getLogger("ray.serve")
    if serve.handlers and not ours.handlers:
        for handler in serve.handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)
        ours.propagate = False


def _route(connection) -> str:
    """An HTTP request's or a WebSocket's path below the app's route prefix, without a trailing /."""
    path = connection.url.path
    root = connection.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path.rstrip("/") or "/"


def _percent(bp: int) -> Decimal:
    return Decimal(bp).scaleb(-2)          # 500 bp -> 5.00 (API-NG's marketBaseRate is a percentage)


def _event(m) -> wire.Event:
    return wire.Event(id=m["event_id"], name=m["event_name"], country_code=m["country_code"],
                      timezone=m["timezone"], open_date=m["open_date"])


def _runner(r) -> wire.RunnerCatalog:
    return wire.RunnerCatalog(selection_id=r["selection_id"], runner_name=r["name"], handicap=convert.ZERO,
                              sort_priority=r["sort_priority"])


def _operator_report(result) -> wire.OperatorReport:
    return wire.OperatorReport(status=result.status, error_code=result.error_code)


def _possible_username(name: str) -> bool:
    try:
        msgspec.convert(name, wire.Username)
        return True
    except msgspec.ValidationError:
        return False


def _at_params(reason: str) -> str:
    """msgspec's reason with its path made relative to the request: `$.x` -> `$.params.x`."""
    if " - at `$" in reason:
        return reason.replace(" - at `$", " - at `$.params", 1)
    return f"{reason} - at `$.params`"


# ---------------------------------------------------------------- the builder


def _stack_env() -> dict:
    state = Path(os.environ.get("EXCHANGE_STATE_DIR", ROOT / "state"))
    try:
        return json.loads((state / "stack.json").read_text())["env"]
    except (OSError, ValueError, KeyError):
        return {}


def resolve_settings(args: dict) -> Settings:
    """Settings from the builder's args; the stack's addresses from args, the environment or
    state/stack.json (Ray workers do not inherit the shell's environment)."""
    from placement import load_topology

    args = dict(args)
    jurisdiction = args.pop("jurisdiction", "us-nj")
    stack = _stack_env()

    def address(key: str, env: str) -> str:
        value = args.pop(key, None) or os.environ.get(env) or stack.get(env)
        if not value:
            raise ValueError(f"{key}: not in the app's args, ${env} or state/stack.json")
        return value

    topology = load_topology()
    j = {j.id: j for j in topology.jurisdictions}.get(jurisdiction)
    if j is None:
        raise ValueError(f"jurisdiction {jurisdiction!r} is not in placement/topology.toml")
    names = {f.name for f in fields(Settings)}
    unknown = set(args) - names - {"max_ongoing_requests", "deploy_hosts", "access_log"}
    if unknown:
        raise ValueError(f"unknown app args: {sorted(unknown)}")
    return Settings(
        jurisdiction=jurisdiction,
        kafka_bootstrap=address("kafka_bootstrap", "EXCHANGE_KAFKA_BOOTSTRAP"),
        postgres_dsn=address("postgres_dsn", "EXCHANGE_POSTGRES_DSN"),
        **{"currency": j.currency, "regulator": j.name, **{k: v for k, v in args.items() if k in names}})


def ensure_hosts(s: Settings) -> None:
    """The jurisdiction's hosts exist and have recovered (created once; found afterwards)."""
    import ray

    from actors.deploy import deploy_hosts
    from actors.directory import host_name
    from actors.history_projector import ensure_projector

    try:
        handles = [ray.get_actor(host_name(kind, s.jurisdiction, i), namespace=s.namespace)
                   for kind, n in (("market", s.market_hosts), ("wallet", s.wallet_hosts)) for i in range(n)]
        ray.get([h.ready.remote() for h in handles], timeout=120)
    except ValueError:
        deploy_hosts(s.jurisdiction, s.kafka_bootstrap, market_hosts=s.market_hosts,
                     wallet_hosts=s.wallet_hosts, namespace=s.namespace, prefix=s.kafka_prefix)
    ensure_projector(s.jurisdiction, s.kafka_bootstrap, s.postgres_dsn, s.db_schema, s.namespace, s.kafka_prefix)


def build_app(args: dict):
    """The jurisdiction's bet-ingress app; ``args`` as in serve_config.yaml (all optional).

    jurisdiction (us-nj), market_hosts, wallet_hosts, namespace, kafka_prefix, db_schema,
    num_replicas, max_ongoing_requests (default 256), limits and session settings (see
    Settings), deploy_hosts (default true), access_log (Serve's per-request log lines,
    default false).
    """
    from ray import serve
    from ray.serve import Application  # noqa: F401  (the return type)

    from actors.channel import transport_env
    from placement import Role, load_topology, serve_options

    s = resolve_settings(args)
    if args.get("deploy_hosts", True):
        ensure_hosts(s)
    opts = serve_options(Role.BET_INGRESS, s.jurisdiction, load_topology())
    # the replicas reach the hosts the way the deployer asks (actors/channel.py)
    env_vars = {"PYTHONPATH": str(ROOT), **transport_env()}
    ray_actor_options = {**opts["ray_actor_options"], "runtime_env": {"env_vars": env_vars}}
    deployment = serve.deployment(serve.ingress()(BetIngress)).options(
        name=opts["name"], ray_actor_options=ray_actor_options, num_replicas=s.num_replicas,
        max_ongoing_requests=int(args.get("max_ongoing_requests", 256)),
        # Serve's per-request access log line cost ~5% of the replica's CPU per request. The
        # journal is the audit trail of every command; `access_log: true` turns it back on.
        logging_config={"enable_access_log": bool(args.get("access_log", False))})
    return deployment.bind(asdict(s))
