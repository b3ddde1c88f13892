"""The WebSocket stream end to end: real Serve, real hosts, the real Kafka journal.

A client here keeps a cache the way Betfair's stream clients do (an image, then
deltas where size 0 removes a level) and the tests check that cache against what
the exchange holds: a fresh subscriber's image and API-NG's listMarketBook.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest

from tests.e2e.conftest import APP_KEY
from tests.e2e.test_api_ng import limit, new_market
from tests.stream_cache import apply_runner, new_runner

D = Decimal


class Stream:
    """One WebSocket client: requests, and a market/order cache fed by mcm/ocm."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = 0
        self.inbox: list[dict] = []
        self.markets: dict[str, dict] = {}      # market id -> {"def": ..., "rc": {sel: {...}}}
        self.orders: dict[str, dict] = {}       # bet id -> latest uo
        self.clk: dict[int, str] = {}           # subscription id -> clk
        self.initial: dict[int, str] = {}

    @classmethod
    async def open(cls, api_app, ip: str = "10.0.2.1") -> "Stream":
        import websockets

        url = api_app["base"].replace("http://", "ws://") + "/stream"
        ws = await websockets.connect(url, additional_headers={"X-Forwarded-For": ip}, max_size=2**24)
        stream = cls(ws)
        first = await stream.recv()
        assert first["op"] == "connection" and first["connectionId"]
        return stream

    async def close(self):
        await self.ws.close()

    async def recv(self, timeout: float = 15) -> dict:
        msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout), parse_float=Decimal)
        if msg.get("op") == "mcm":
            self.apply_mcm(msg)
        elif msg.get("op") == "ocm":
            self.apply_ocm(msg)
        return msg

    async def until(self, predicate, timeout: float = 15) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for i, msg in enumerate(self.inbox):
            if predicate(msg):
                return self.inbox.pop(i)
        while True:
            msg = await self.recv(max(0.05, deadline - loop.time()))
            if predicate(msg):
                return msg
            self.inbox.append(msg)

    async def request(self, op: str, **body) -> dict:
        self.ids += 1
        rid = self.ids
        await self.ws.send(json.dumps({"op": op, "id": rid, **body}, default=str))
        return await self.until(lambda m: m.get("id") == rid and m["op"] in ("status", op))

    async def authenticate(self, client) -> dict:
        return await self.request("authentication", appKey=APP_KEY, session=client.token)

    async def subscribe(self, op: str = "marketSubscription", **body) -> tuple[dict, dict]:
        status = await self.request(op, **body)
        assert status["statusCode"] == "SUCCESS", status
        kind = "mcm" if op == "marketSubscription" else "ocm"
        image = await self.until(lambda m: m["op"] == kind and m.get("id") == self.ids and "ct" in m
                                 and m["ct"] in ("SUB_IMAGE", "RESUB_DELTA"))
        return status, image

    # ---------------------------------------------------------------- the caches

    def apply_mcm(self, msg: dict) -> None:
        if "clk" in msg:
            self.clk[msg["id"]] = msg["clk"]
        if "initialClk" in msg:
            self.initial[msg["id"]] = msg["initialClk"]
        for mc in msg.get("mc", []):
            if mc.get("img"):
                self.markets[mc["id"]] = {"def": None, "rc": {}, "tv": 0}
            market = self.markets.setdefault(mc["id"], {"def": None, "rc": {}, "tv": 0})
            if "marketDefinition" in mc:
                market["def"] = mc["marketDefinition"]
            if "tv" in mc:
                market["tv"] = mc["tv"]
            for rc in mc.get("rc", []):
                apply_runner(market["rc"].setdefault(rc["id"], new_runner()), rc)

    def apply_ocm(self, msg: dict) -> None:
        if "clk" in msg:
            self.clk[msg["id"]] = msg["clk"]
        for oc in msg.get("oc", []):
            for orc in oc.get("orc", []):
                for uo in orc.get("uo", []):
                    self.orders[uo["id"]] = {**uo, "market": oc["id"], "selection": orc["id"]}

    def ladder(self, market_id: str, selection: int) -> dict:
        r = self.markets[market_id]["rc"].get(selection, {})
        return {k: r.get(k) for k in ("atb", "atl", "batb", "batl", "trd", "ltp", "tv")}


@pytest.fixture
async def stream_of(api_app):
    opened = []

    async def make(client=None, ip: str | None = None) -> Stream:
        stream = await Stream.open(api_app, ip or f"10.0.3.{len(opened) + 1}")
        opened.append(stream)
        if client is not None:
            status = await stream.authenticate(client)
            assert status["statusCode"] == "SUCCESS", status
        return stream

    yield make
    for stream in opened:
        await stream.close()


async def no_message(stream: Stream, predicate, seconds: float = 1.0) -> bool:
    try:
        await stream.until(predicate, timeout=seconds)
    except (asyncio.TimeoutError, TimeoutError):
        return True
    return False


ALL_FIELDS = ["EX_ALL_OFFERS", "EX_BEST_OFFERS", "EX_TRADED", "EX_TRADED_VOL", "EX_LTP", "EX_MARKET_DEF"]


# ---------------------------------------------------------------- the connection


async def test_the_stream_answers_heartbeats_and_refuses_until_authenticated(stream_of, bettor):
    stream = await stream_of()
    beat = await stream.request("heartbeat")
    assert beat == {"op": "status", "id": 1, "statusCode": "SUCCESS", "connectionClosed": False}
    bad = await stream.request("heartbeat", extra=1)
    assert bad["statusCode"] == "FAILURE" and bad["errorCode"] == "INVALID_INPUT"
    assert "extra" in bad["errorMessage"], bad
    refused = await stream.request("marketSubscription", marketFilter={})
    assert refused["statusCode"] == "FAILURE" and refused["errorCode"] == "NOT_AUTHORIZED"
    assert refused["connectionClosed"] is True

    stream = await stream_of()
    wrong = await stream.request("authentication", appKey=APP_KEY, session="not-a-session")
    assert (wrong["errorCode"], wrong["connectionClosed"]) == ("INVALID_SESSION_INFORMATION", True)

    client = bettor()
    stream = await stream_of()
    other_app = await stream.request("authentication", appKey="another-app", session=client.token)
    assert other_app["errorCode"] == "INVALID_APP_KEY"

    stream = await stream_of()
    entry = await stream.request("placeOrders", params={"marketId": "1.1", "instructions": []})
    assert entry["errorCode"] == "NOT_AUTHORIZED"


async def test_an_idle_subscription_gets_heartbeats_with_its_clock(stream_of, bettor, operator):
    market = new_market(operator)
    stream = await stream_of(bettor())
    _, image = await stream.subscribe(marketFilter={"marketIds": [market]}, heartbeatMs=500)
    assert image["heartbeatMs"] == 500
    beat = await stream.until(lambda m: m.get("ct") == "HEARTBEAT", timeout=5)
    assert beat["op"] == "mcm" and beat["clk"] and "mc" not in beat


# ---------------------------------------------------------------- market data


async def test_a_market_image_then_deltas_track_the_book(stream_of, bettor, operator):
    market = new_market(operator)
    backer, layer = bettor("200"), bettor("200")
    watcher = await stream_of(bettor())
    _, image = await watcher.subscribe(marketFilter={"marketIds": [market]},
                                       marketDataFilter={"fields": ALL_FIELDS, "ladderLevels": 2})
    assert image["ct"] == "SUB_IMAGE" and image["initialClk"] == image["clk"]
    (mc,) = image["mc"]
    assert mc["id"] == market and mc["img"] is True
    definition = mc["marketDefinition"]
    assert definition["status"] == "OPEN" and definition["marketType"] == "MATCH_ODDS"
    assert [r["id"] for r in definition["runners"]] == [1, 2, 3]
    assert all(r["atb"] == [] and r["atl"] == [] for r in mc["rc"])

    # a back of 10 at 3.0 rests: a layer can take it (available to lay)
    backer.betting("placeOrders", marketId=market, instructions=[limit(1, "BACK", 3.0, 10)])
    await watcher.until(lambda m: m["op"] == "mcm" and "mc" in m)
    assert watcher.ladder(market, 1)["atl"] == {D("3.00"): D("10.00")}
    assert watcher.ladder(market, 1)["batl"] == {0: (D("3.00"), D("10.00"))}
    backer.betting("placeOrders", marketId=market, instructions=[limit(1, "BACK", 3.5, 5), limit(1, "BACK", 4.0, 5)])
    # a lay of 4 at 3.0 matches: 6 left at 3.0, 4 traded at 3.0, last traded 3.0
    layer.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 3.0, 4)])
    await watcher.until(lambda m: any(rc.get("trd") for mc in m.get("mc", []) for rc in mc.get("rc", [])))
    ladder = watcher.ladder(market, 1)
    assert ladder["atl"] == {D("3.00"): D("6.00"), D("3.50"): D("5.00"), D("4.00"): D("5.00")}
    assert ladder["batl"] == {0: (D("3.00"), D("6.00")), 1: (D("3.50"), D("5.00"))}   # two levels asked
    assert ladder["trd"] == {D("3.00"): D("4.00")} and ladder["ltp"] == D("3.00") and ladder["tv"] == D("4.00")

    # cancelling the rest at 3.0 removes the level: a size 0 in the delta
    orders = backer.betting("listCurrentOrders", marketIds=[market])["currentOrders"]
    at_3 = [o["betId"] for o in orders if D(str(o["priceSize"]["price"])) == 3]
    backer.betting("cancelOrders", marketId=market, instructions=[{"betId": at_3[0]}])
    removal = await watcher.until(lambda m: any([D("3.00"), 0] in rc.get("atl", []) or [D("3.00"), D(0)]
                                                in rc.get("atl", []) for mc in m.get("mc", [])
                                                for rc in mc.get("rc", [])))
    assert removal["clk"] != image["clk"]
    assert watcher.ladder(market, 1)["atl"] == {D("3.50"): D("5.00"), D("4.00"): D("5.00")}

    # what the deltas built equals a fresh image, and API-NG's book
    fresh = await stream_of(bettor())
    await fresh.subscribe(marketFilter={"marketIds": [market]},
                          marketDataFilter={"fields": ALL_FIELDS, "ladderLevels": 2})
    for selection in (1, 2, 3):
        assert watcher.ladder(market, selection) == fresh.ladder(market, selection)
    book = backer.betting("listMarketBook", marketIds=[market],
                          priceProjection={"priceData": ["EX_BEST_OFFERS"]})[0]
    runner = next(r for r in book["runners"] if r["selectionId"] == 1)
    to_lay = {D(str(p["price"])): D(str(p["size"])) for p in runner["ex"]["availableToLay"]}
    assert to_lay == watcher.ladder(market, 1)["atl"]

    # the operator suspends: the definition arrives as a change
    operator.operator("suspendMarket", marketId=market)
    await watcher.until(lambda m: any("marketDefinition" in mc for mc in m.get("mc", [])))
    assert watcher.markets[market]["def"]["status"] == "SUSPENDED"


async def test_conflation_sends_fewer_messages_to_the_same_book(stream_of, bettor, operator):
    market = new_market(operator)
    backer = bettor("500")
    live = await stream_of(bettor())
    slow = await stream_of(bettor())
    spec = {"marketFilter": {"marketIds": [market]}, "marketDataFilter": {"fields": ALL_FIELDS}}
    await live.subscribe(**spec)
    _, image = await slow.subscribe(**spec, conflateMs=1500)
    assert image["conflateMs"] == 1500
    for i in range(6):
        backer.betting("placeOrders", marketId=market, instructions=[limit(2, "BACK", 2.0 + i / 50, 2)])
    await asyncio.sleep(2.5)
    live_msgs = [m for m in [*live.inbox, *await drain(live)] if m["op"] == "mcm" and "mc" in m]
    slow_msgs = [m for m in [*slow.inbox, *await drain(slow)] if m["op"] == "mcm" and "mc" in m]
    assert len(slow_msgs) < len(live_msgs)
    assert slow.ladder(market, 2) == live.ladder(market, 2)
    assert len(live.ladder(market, 2)["atl"]) == 6


async def drain(stream: Stream, seconds: float = 0.3) -> list[dict]:
    out = []
    while True:
        try:
            out.append(await stream.recv(seconds))
        except (asyncio.TimeoutError, TimeoutError):
            return out


async def test_a_reconnecting_client_resumes_by_clock_without_a_full_image(stream_of, bettor, operator):
    quiet, busy = new_market(operator), new_market(operator)
    backer = bettor("300")
    backer.betting("placeOrders", marketId=quiet, instructions=[limit(1, "BACK", 5.0, 3)])
    spec = {"marketFilter": {"marketIds": [quiet, busy]}, "marketDataFilter": {"fields": ALL_FIELDS}}
    first = await stream_of(bettor())
    _, image = await first.subscribe(**spec)
    assert {mc["id"] for mc in image["mc"]} == {quiet, busy}
    clk, initial = first.clk[first.ids], first.initial[first.ids]
    cache = first.markets
    await first.close()

    # while the client is away, only the busy market changes
    backer.betting("placeOrders", marketId=busy, instructions=[limit(3, "LAY", 1.5, 7)])
    await asyncio.sleep(0.5)

    again = await stream_of(bettor())
    again.markets = cache
    _, resumed = await again.subscribe(**spec, clk=clk, initialClk=initial)
    assert resumed["ct"] == "RESUB_DELTA" and resumed["initialClk"] == initial
    assert [mc["id"] for mc in resumed["mc"]] == [busy]          # the quiet market is not sent again
    assert again.ladder(busy, 3)["atb"] == {D("1.50"): D("7.00")}
    assert again.ladder(quiet, 1)["atl"] == {D("5.00"): D("3.00")}   # kept from before

    # a clock the feed cannot resume from gets a full image
    third = await stream_of(bettor())
    _, full = await third.subscribe(**spec, clk="garbage")
    assert full["ct"] == "SUB_IMAGE" and {mc["id"] for mc in full["mc"]} == {quiet, busy}


# ---------------------------------------------------------------- orders


async def test_the_order_stream_shows_a_bettors_own_orders_through_completion(stream_of, bettor, operator):
    market = new_market(operator)
    alice, bob = bettor("200"), bettor("200")
    alice.betting("placeOrders", marketId=market, instructions=[limit(1, "BACK", 2.5, 10)])
    a_stream, b_stream = await stream_of(alice), await stream_of(bob)
    _, image = await a_stream.subscribe("orderSubscription")
    (oc,) = image["oc"]
    (uo,) = oc["orc"][0]["uo"]
    assert (uo["status"], uo["side"], uo["p"], uo["s"], uo["sr"]) == ("E", "B", D("2.50"), D("10.00"), D("10.00"))
    _, b_image = await b_stream.subscribe("orderSubscription")
    assert b_image["oc"] == []                                   # never another bettor's orders

    bob.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 2.5, 4)])
    await a_stream.until(lambda m: m["op"] == "ocm" and "oc" in m)
    mine = a_stream.orders[uo["id"]]
    assert (mine["sm"], mine["sr"], mine["avp"]) == (D("4.00"), D("6.00"), D("2.50"))
    assert a_stream.markets == {}
    b_change = await b_stream.until(lambda m: m["op"] == "ocm" and "oc" in m)
    (b_order,) = [u for orc in b_change["oc"][0]["orc"] for u in orc["uo"]]
    assert b_order["status"] == "EC" and b_order["side"] == "L" and b_order["sm"] == D("4.00")
    assert uo["id"] not in b_stream.orders

    alice.betting("cancelOrders", marketId=market, instructions=[{"betId": uo["id"]}])
    await a_stream.until(lambda m: m["op"] == "ocm" and "oc" in m)
    done = a_stream.orders[uo["id"]]
    assert (done["status"], done["sc"], done["sr"], done["sm"]) == ("EC", D("6.00"), D("0.00"), D("4.00"))
    # a new image: the complete order has left; what stays is the matched position by price
    (oc,) = (await a_stream.subscribe("orderSubscription"))[1]["oc"]
    assert oc["orc"] == [{"id": 1, "fullImage": True, "mb": [[D("2.50"), D("4.00")]]}]


# ---------------------------------------------------------------- order entry


async def test_order_entry_is_pipelined_and_each_answer_carries_its_id(stream_of, bettor, operator):
    market = new_market(operator)
    client = bettor("500")
    stream = await stream_of(client)
    sent = []
    for i in range(40):
        rid = 1000 + i
        sent.append(rid)
        await stream.ws.send(json.dumps({"op": "placeOrders", "id": rid, "params": {
            "marketId": market, "customerRef": f"ws-{i}",
            "instructions": [limit(1 + i % 3, "BACK", f"{3 + (i % 5) / 10:.2f}", 2)]}}))
    answers = {}
    while len(answers) < len(sent):
        msg = await stream.until(lambda m: m["op"] == "placeOrders")
        answers[msg["id"]] = msg["result"]
    assert set(answers) == set(sent)
    assert all(r["status"] == "SUCCESS" and r["instructionReports"][0]["orderStatus"] == "EXECUTABLE"
               for r in answers.values())

    # the customerRef dedupe holds on the stream as over HTTP
    dup = await stream.request("placeOrders", params={"marketId": market, "customerRef": "ws-0",
                                                      "instructions": [limit(1, "BACK", 3, 2)]})
    assert dup["result"]["status"] == "FAILURE" and dup["result"]["errorCode"] == "DUPLICATE_TRANSACTION"
    # a refused instruction answers in API-NG's report, a malformed message names the field
    odd = await stream.request("placeOrders", params={"marketId": market,
                                                      "instructions": [limit(1, "BACK", 3.01, 2)]})
    assert odd["result"]["instructionReports"][0]["errorCode"] == "INVALID_ODDS"
    bad = await stream.request("placeOrders", params={"marketId": market, "instructions": [{"side": "UP"}]})
    assert bad["errorCode"] == "INVALID_INPUT" and "side" in bad["errorMessage"]

    # replace and cancel over the stream too
    bet = answers[1000]["instructionReports"][0]["betId"]
    moved = await stream.request("replaceOrders", params={"marketId": market,
                                                          "instructions": [{"betId": bet, "newPrice": 4.2}]})
    assert moved["result"]["status"] == "SUCCESS"
    new_bet = moved["result"]["instructionReports"][0]["placeInstructionReport"]["betId"]
    gone = await stream.request("cancelOrders", params={"marketId": market, "instructions": [{"betId": new_bet}]})
    assert gone["result"]["status"] == "SUCCESS"
    live = client.betting("listCurrentOrders", marketIds=[market])["currentOrders"]
    assert len(live) == 39 and new_bet not in {o["betId"] for o in live}
