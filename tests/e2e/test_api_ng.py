"""API-NG over HTTP end to end: the Serve app on the real Ray cluster, Kafka and PostgreSQL.

Every request goes through the Serve proxy as a client would send it (httpx); money
and orders go through the real hosts, accounts and sessions through PostgreSQL.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests.e2e.conftest import APP_KEY, Api

pytestmark = pytest.mark.stack


def eventually(check, timeout: float = 10.0):
    """Polls ``check`` until it returns a truthy value (wallet reports arrive after the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def aping_error(response) -> tuple[int, str, str]:
    """(JSON-RPC code, APINGException errorCode, errorDetails) of an error reply."""
    error = response.json()["error"]
    data = error.get("data") or {}
    exc = data.get(data.get("exceptionname", ""), {})
    return error["code"], exc.get("errorCode"), exc.get("errorDetails", error["message"])


def new_market(operator: Api, runners=("Home", "Away", "Draw")) -> str:
    start = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    event = operator.operator("createEvent", eventTypeId="1", eventTypeName="Soccer",
                              name=f"E2E {uuid.uuid4().hex[:6]}", countryCode="US", openDate=start)
    market = operator.operator("createMarket", eventId=event["eventId"], marketName="Match Odds",
                               marketStartTime=start, runners=[{"runnerName": r} for r in runners])
    assert operator.operator("openMarket", marketId=market["marketId"])["status"] == "SUCCESS"
    return market["marketId"]


def limit(selection: int, side: str, price, size, **extra) -> dict:
    return {"orderType": "LIMIT", "selectionId": selection, "side": side,
            "limitOrder": {"size": size, "price": price, **extra}}


def funds(client: Api) -> dict:
    return client.account("getAccountFunds")


# ---------------------------------------------------------------- documents and login


def test_openapi_document_is_served_and_generated_from_the_types(api_app, new_client):
    doc = new_client().http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/exchange/betting/json-rpc/v1", "/exchange/account/json-rpc/v1", "/api/login"} <= set(doc["paths"])
    place = doc["components"]["schemas"]["PlaceInstruction"]
    assert place["additionalProperties"] is False and "limitOrder" in place["properties"]
    methods = {r["properties"]["method"]["const"] for r in
               doc["paths"]["/exchange/betting/json-rpc/v1"]["post"]["requestBody"]["content"]
               ["application/json"]["schema"]["oneOf"]}
    assert "SportsAPING/v1.0/placeOrders" in methods and "SportsAPING/v1.0/listMarketBook" in methods


def test_the_ingress_replicas_run_on_the_jurisdictions_nodes(api_app):
    import ray
    from ray.util.state import list_actors

    replicas = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
                if a.class_name == f"ServeReplica:e2e-{api_app['tag']}:bet-ingress.us-nj"]
    assert replicas
    labels = {n["NodeID"]: n.get("Labels", {}) for n in ray.nodes()}
    assert all(labels[r.node_id].get("exchange/jurisdiction") == "us-nj" for r in replicas)


def test_login_keep_alive_and_logout(bettor):
    client = bettor(funds=None)
    token = client.token
    alive = client.http.post("/api/keepAlive", headers=client.headers()).json()
    assert alive == {"token": token, "product": APP_KEY, "status": "SUCCESS", "error": ""}
    assert funds(client)["availableToBetBalance"] == 0
    details = client.account("getAccountDetails")
    assert details == {"currencyCode": "USD", "localeCode": "en", "region": "us-nj", "timezone": "UTC",
                       "discountRate": 0, "pointsBalance": 0, "countryCode": "US"}
    code, _, why = aping_error(client.rpc("account", "AccountAPING/v1.0/getAccountDetails", {"x": 1}))
    assert code == -32602 and "unknown field `x`" in why
    assert client.http.post("/api/logout", headers=client.headers()).json()["status"] == "SUCCESS"
    code, error, _ = aping_error(client.rpc("account", "AccountAPING/v1.0/getAccountFunds", {}))
    assert (code, error) == (-32099, "INVALID_SESSION_INFORMATION")


def test_bettor_routes_refuse_requests_without_valid_credentials(api_app, bettor, new_client):
    anonymous = new_client()
    call = ("betting", "SportsAPING/v1.0/listEventTypes", {"filter": {}})
    assert aping_error(anonymous.rpc(*call))[1] == "NO_SESSION"
    anonymous.app_key = ""
    assert aping_error(anonymous.rpc(*call))[1] == "NO_APP_KEY"
    anonymous.app_key, anonymous.token = APP_KEY, "not-a-token"
    assert aping_error(anonymous.rpc(*call))[1] == "INVALID_SESSION_INFORMATION"
    client = bettor(funds=None)
    client.app_key = "another-app"
    assert aping_error(client.rpc(*call))[1] == "INVALID_APP_KEY"
    message = client.rpc("account", "AccountAPING/v1.0/getAccountFunds", {}).json()["error"]["message"]
    assert message == "AANGX-0007"          # account API errors are AccountAPINGException


def test_an_expired_session_is_refused(api_app, operator, new_client):
    import asyncio

    import asyncpg

    client = new_client()
    username = f"x{uuid.uuid4().hex[:8]}"
    operator.operator("createAccount", username=username, password="bettor-pass-1")
    assert client.login(username, "bettor-pass-1")["status"] == "SUCCESS"

    async def expire():
        con = await asyncpg.connect(api_app["dsn"])
        await con.execute(f"UPDATE {api_app['schema']}.sessions SET expires_at = now() - interval '1 second' "
                          f"WHERE account_id = (SELECT account_id FROM {api_app['schema']}.accounts "
                          f"WHERE username = $1)", username)
        await con.close()

    asyncio.run(expire())
    assert aping_error(client.rpc("account", "AccountAPING/v1.0/getAccountFunds", {}))[1] == \
        "INVALID_SESSION_INFORMATION"
    assert client.http.post("/api/keepAlive", headers=client.headers()).json()["error"] == "NO_SESSION"


def test_three_failed_logins_lock_the_account_until_an_operator_unlocks_it(bettor, operator, new_client):
    owner = bettor(funds=None)
    thief = new_client()
    errors = [thief.login(owner.username, "wrong-password")["error"] for _ in range(3)]
    assert errors == ["INVALID_USERNAME_OR_PASSWORD", "INVALID_USERNAME_OR_PASSWORD", "ACCOUNT_NOW_LOCKED"]
    assert thief.login(owner.username, "bettor-pass-1")["error"] == "ACCOUNT_ALREADY_LOCKED"
    assert new_client().login("nobody-at-all", "whatever-pass")["error"] == "INVALID_USERNAME_OR_PASSWORD"
    assert operator.operator("unlockAccount", username=owner.username)["status"] == "SUCCESS"
    assert new_client().login(owner.username, "bettor-pass-1")["status"] == "SUCCESS"


def test_login_refuses_unknown_form_fields_and_missing_app_key(bettor, new_client):
    client = new_client()
    reply = client.http.post("/api/login", data={"username": "a", "password": "b", "extra": "c"},
                             headers={"X-Application": APP_KEY, "X-Forwarded-For": client.ip}).json()
    assert reply["status"] == "FAIL" and reply["error"] == "INPUT_VALIDATION_ERROR"
    reply = client.http.post("/api/login", data={"username": "a", "password": "b"},
                             headers={"X-Forwarded-For": client.ip}).json()
    assert reply["error"] == "NO_APP_KEY"


# ---------------------------------------------------------------- limits


def test_a_client_ip_over_its_rate_gets_too_many_requests(api_app, new_client):
    noisy, quiet = new_client(), new_client()
    replies = [noisy.rpc("betting", "SportsAPING/v1.0/listEventTypes", {"filter": {}}) for _ in range(80)]
    refused = [r for r in replies if r.status_code == 429]
    assert refused, "the per-IP bucket (burst 60) never refused"
    assert aping_error(refused[0])[:2] == (-32099, "TOO_MANY_REQUESTS")
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert quiet.rpc("betting", "SportsAPING/v1.0/listEventTypes", {"filter": {}}).status_code == 200


def test_an_account_over_its_rate_gets_too_many_requests(bettor):
    client = bettor(funds="10", requestsPerSecond=1, burst=3)
    replies = [client.rpc("account", "AccountAPING/v1.0/getAccountFunds", {}) for _ in range(6)]
    codes = [r.status_code for r in replies]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
    assert aping_error(replies[-1])[1] == "TOO_MANY_REQUESTS"


def test_each_call_of_a_batch_counts_against_the_account_rate(bettor):
    client = bettor(funds="10", requestsPerSecond=1, burst=3)
    call = {"jsonrpc": "2.0", "method": "AccountAPING/v1.0/getAccountFunds", "params": {}}
    replies = client.post("/exchange/account/json-rpc/v1", [{**call, "id": n} for n in range(6)]).json()
    assert ["result" in r for r in replies[:3]] == [True, True, True]
    refused = [r for r in replies[3:] if "error" in r]
    assert refused and all(r["error"]["data"]["AccountAPINGException"]["errorCode"] == "TOO_MANY_REQUESTS"
                           for r in refused)


def test_a_body_over_the_size_limit_is_refused(bettor):
    client = bettor(funds=None)
    padding = "x" * (70 * 1024)
    reply = client.post("/exchange/betting/json-rpc/v1",
                        '{"jsonrpc": "2.0", "method": "SportsAPING/v1.0/listEventTypes", '
                        f'"params": {{"filter": {{"textQuery": "{padding}"}}}}, "id": 1}}')
    assert reply.status_code == 413
    assert aping_error(reply)[1] == "REQUEST_SIZE_EXCEEDS_LIMIT"


# ---------------------------------------------------------------- validation


def test_unknown_fields_and_wrong_types_are_refused_naming_the_field(bettor, operator):
    client = bettor(funds="10")
    market = new_market(operator)
    bad = limit(1, "BACK", 2.0, 2)
    bad["limitOrder"]["stake"] = 5
    code, error, details = aping_error(client.rpc("betting", "SportsAPING/v1.0/placeOrders",
                                                  {"marketId": market, "instructions": [bad]}))
    assert (code, error) == (-32602, "INVALID_INPUT_DATA")
    assert "unknown field `stake`" in details and "$.params.instructions[0].limitOrder" in details
    code, _, details = aping_error(client.rpc("betting", "SportsAPING/v1.0/placeOrders",
                                              {"marketId": market, "instructions": [limit("1", "BACK", 2.0, 2)]}))
    assert code == -32602 and "Expected `int`, got `str` - at `$.params.instructions[0].selectionId`" in details
    code, _, details = aping_error(client.rpc("betting", "SportsAPING/v1.0/placeOrders",
                                              {"marketId": market, "instructions": [limit(1, "BACKK", 2.0, 2)]}))
    assert code == -32602 and "$.params.instructions[0].side" in details
    code, _, details = aping_error(client.rpc("betting", "SportsAPING/v1.0/listMarketBook", {"marketIds": []}))
    assert code == -32602 and "$.params.marketIds" in details
    code, _, details = aping_error(client.rpc("betting", "SportsAPING/v1.0/listEvents", {"filter": {}, "x": 1}))
    assert code == -32602 and "unknown field `x`" in details
    body = client.post("/exchange/betting/json-rpc/v1", b'{"jsonrpc": "2.0", "method": ').json()
    assert body["error"]["code"] == -32700
    body = client.rpc("betting", "SportsAPING/v1.0/placeBets", {}).json()
    assert body["error"]["code"] == -32601
    body = client.post("/exchange/betting/json-rpc/v1", {"jsonrpc": "2.0", "method": "x", "extra": 1}).json()
    assert body["error"]["code"] == -32600 and "unknown field `extra`" in body["error"]["message"]
    assert client.account("getAccountFunds")["availableToBetBalance"] == 10       # nothing was placed


def test_a_json_rpc_batch_is_answered_call_by_call_in_order(bettor, operator):
    client = bettor(funds="10")
    market = new_market(operator)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "SportsAPING/v1.0/listMarketBook", "params": {"marketIds": [market]}},
        {"jsonrpc": "2.0", "id": 2, "method": "SportsAPING/v1.0/placeOrders",
         "params": {"marketId": market, "instructions": [limit(1, "BACK", 2.0, 2)]}},
        {"jsonrpc": "2.0", "id": 3, "method": "SportsAPING/v1.0/nope", "params": {}},
        {"jsonrpc": "2.0", "id": 4, "method": "SportsAPING/v1.0/listCurrentOrders", "params": {"x": 1}},
        {"jsonrpc": "2.0", "id": "five", "method": "SportsAPING/v1.0/listCurrentOrders",
         "params": {"marketIds": [market]}},
        17,
    ]
    replies = client.post("/exchange/betting/json-rpc/v1", batch).json()
    assert [r.get("id") for r in replies] == [1, 2, 3, 4, "five", None]
    assert replies[0]["result"][0]["marketId"] == market
    assert replies[1]["result"]["status"] == "SUCCESS"
    assert replies[2]["error"]["code"] == -32601
    assert replies[3]["error"]["code"] == -32602 and "unknown field `x`" in replies[3]["error"]["message"]
    assert [o["betId"] for o in replies[4]["result"]["currentOrders"]] == [
        replies[1]["result"]["instructionReports"][0]["betId"]]      # the calls ran in order
    assert replies[5]["error"]["code"] == -32600
    for empty_or_huge in ([], [batch[0]] * 51):
        body = client.post("/exchange/betting/json-rpc/v1", empty_or_huge).json()
        assert body["error"]["code"] == -32600 and body["id"] is None


def test_operator_routes_need_the_operator_role(bettor):
    client = bettor(funds=None)
    code, error, _ = aping_error(client.rpc("operator", "OperatorAPING/v1.0/deposit",
                                            {"username": client.username, "amount": 1000}))
    assert (code, error) == (-32099, "ACCESS_DENIED")
    assert funds(client)["availableToBetBalance"] == 0


# ---------------------------------------------------------------- trading


def test_prices_and_sizes_convert_exactly_at_the_edge(bettor, operator):
    client = bettor(funds="50")
    market = new_market(operator)
    report = client.betting("placeOrders", marketId=market, instructions=[
        limit(1, "BACK", 1.01, 2.5), limit(1, "BACK", 3.01, 2), limit(2, "BACK", 2.0, 2.555),
        limit(3, "LAY", 1000, 0.01)])
    codes = [r.get("errorCode") for r in report["instructionReports"]]
    assert codes == [None, "INVALID_ODDS", "INVALID_BET_SIZE", "INVALID_BET_SIZE"]
    assert report["status"] == "PROCESSED_WITH_ERRORS"
    book = client.betting("listMarketBook", marketIds=[market], priceProjection={"priceData": ["EX_BEST_OFFERS"]})
    assert book[0]["runners"][0]["ex"]["availableToLay"] == [{"price": 1.01, "size": 2.5}]
    assert eventually(lambda: funds(client)["availableToBetBalance"] == 47.5)


def test_current_orders_carry_the_average_price_matched(bettor, operator):
    alice, bob = bettor(funds="100"), bettor(funds="100")
    market = new_market(operator)
    bob.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 3.5, 2), limit(1, "LAY", 3.0, 10)])
    # alice's back takes 2 at 3.5, then 10 at 3.0; 2 rest at 3.0
    placed = alice.betting("placeOrders", marketId=market,
                           instructions=[limit(1, "BACK", 3.0, 14, persistenceType="PERSIST")])
    report = placed["instructionReports"][0]
    assert report["sizeMatched"] == 12 and report["averagePriceMatched"] == 3.08    # 37.00 / 12
    # then bob's lay of 1 at 3.0 takes 1 of her resting 2 (she is the maker now, at her price)
    bob.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 3.0, 1)])
    [order] = alice.betting("listCurrentOrders", marketIds=[market], orderProjection="EXECUTABLE")["currentOrders"]
    assert (order["sizeMatched"], order["sizeRemaining"], order["averagePriceMatched"]) == (13, 1, 3.08)  # 40.00 / 13
    # a complete order (from the journal's tail) carries it too: bob's lay at 3.5
    assert eventually(lambda: {o["priceSize"]["price"]: o.get("averagePriceMatched") for o in bob.betting(
        "listCurrentOrders", marketIds=[market], orderProjection="EXECUTION_COMPLETE")["currentOrders"]}
        == {3.5: 3.5, 3.0: 3.0})
    # and the market book has what traded, from the same feed
    def traded():
        [book] = alice.betting("listMarketBook", marketIds=[market], priceProjection={"priceData": ["EX_TRADED"]})
        home = book["runners"][0]
        return (book.get("totalMatched"), home.get("totalMatched"), home.get("lastPriceTraded"),
                home["ex"]["tradedVolume"], home["ex"]["availableToBack"])
    assert eventually(lambda: traded() == (13, 13, 3.0, [{"price": 3.0, "size": 11}, {"price": 3.5, "size": 2}], []))


def test_a_trading_day(bettor, operator):
    alice, bob = bettor(funds="100"), bettor(funds="100")
    market = new_market(operator)

    # the catalogue
    types = alice.betting("listEventTypes", filter={"marketIds": [market]})
    assert types == [{"eventType": {"id": "1", "name": "Soccer"}, "marketCount": 1}]
    events = alice.betting("listEvents", filter={"marketIds": [market]})
    assert len(events) == 1 and events[0]["marketCount"] == 1
    catalogue = alice.betting("listMarketCatalogue", filter={"eventIds": [events[0]["event"]["id"]]},
                              maxResults=10, marketProjection=["RUNNER_DESCRIPTION", "EVENT", "MARKET_START_TIME"])
    assert [r["runnerName"] for r in catalogue[0]["runners"]] == ["Home", "Away", "Draw"]
    assert [r["selectionId"] for r in catalogue[0]["runners"]] == [1, 2, 3]

    # bob lays 10 at 3.0 on Home; alice backs 4 of it
    lay = bob.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 3.0, 10)])
    assert lay["status"] == "SUCCESS" and lay["instructionReports"][0]["orderStatus"] == "EXECUTABLE"
    book = alice.betting("listMarketBook", marketIds=[market],
                         priceProjection={"priceData": ["EX_BEST_OFFERS"],
                                          "exBestOffersOverrides": {"bestPricesDepth": 1}})
    assert book[0]["status"] == "OPEN"
    assert book[0]["runners"][0]["ex"]["availableToBack"] == [{"price": 3.0, "size": 10.0}]
    back = alice.betting("placeOrders", marketId=market, customerRef="day-1",
                         instructions=[limit(1, "BACK", 3.0, 4, persistenceType="PERSIST")])
    report = back["instructionReports"][0]
    assert back["status"] == "SUCCESS" and report["sizeMatched"] == 4 and report["orderStatus"] == "EXECUTION_COMPLETE"
    assert report["averagePriceMatched"] == 3.0
    again = alice.betting("placeOrders", marketId=market, customerRef="day-1",
                          instructions=[limit(1, "BACK", 3.0, 4)])
    assert again["status"] == "FAILURE" and again["errorCode"] == "DUPLICATE_TRANSACTION"
    assert eventually(lambda: funds(alice) == {
        "availableToBetBalance": 96, "exposure": -4, "retainedCommission": 0, "discountRate": 0, "pointsBalance": 0, "wallet": "UK"})

    # bob moves the rest of his lay to 3.5 and makes it persist
    bet = lay["instructionReports"][0]["betId"]
    replaced = bob.betting("replaceOrders", marketId=market, instructions=[{"betId": bet, "newPrice": 3.5}])
    assert replaced["status"] == "SUCCESS", replaced
    r = replaced["instructionReports"][0]
    assert r["cancelInstructionReport"]["sizeCancelled"] == 6
    new_bet = r["placeInstructionReport"]["betId"]
    assert new_bet != bet and r["placeInstructionReport"]["instruction"]["limitOrder"]["price"] == 3.5
    updated = bob.betting("updateOrders", marketId=market,
                          instructions=[{"betId": new_bet, "newPersistenceType": "PERSIST"}])
    assert updated["status"] == "SUCCESS"
    orders = bob.betting("listCurrentOrders", marketIds=[market], orderProjection="EXECUTABLE")
    assert orders["moreAvailable"] is False
    [order] = orders["currentOrders"]
    assert (order["betId"], order["priceSize"], order["sizeRemaining"], order["persistenceType"]) == \
        (new_bet, {"price": 3.5, "size": 6}, 6, "PERSIST")
    # the replaced lay is complete: 4 matched, 6 cancelled (listed from the journal's tail)
    assert eventually(lambda: [(o["betId"], o["status"], o["sizeMatched"], o["sizeCancelled"])
                               for o in bob.betting("listCurrentOrders", marketIds=[market],
                                                    orderProjection="EXECUTION_COMPLETE")["currentOrders"]]
                      == [(bet, "EXECUTION_COMPLETE", 4, 6)])
    # matched lay 4 at 3.0 (-8 if Home wins) + unmatched lay 6 at 3.5 (-15): exposure 23
    assert eventually(lambda: funds(bob)["exposure"] == -23 and funds(bob)["availableToBetBalance"] == 77)

    # alice backs Away and cancels it in two steps
    placed = alice.betting("placeOrders", marketId=market, instructions=[limit(2, "BACK", 4.0, 2)])
    away = placed["instructionReports"][0]["betId"]
    part = alice.betting("cancelOrders", marketId=market, instructions=[{"betId": away, "sizeReduction": 0.5}])
    assert part["status"] == "SUCCESS" and part["instructionReports"][0]["sizeCancelled"] == 0.5
    rest = alice.betting("cancelOrders", marketId=market)
    assert rest["status"] == "SUCCESS" and [r["sizeCancelled"] for r in rest["instructionReports"]] == [1.5]

    # bob cancels everything he has anywhere; the operator settles: Home won
    everything = bob.betting("cancelOrders")
    assert [r["instruction"]["betId"] for r in everything["instructionReports"]] == [new_bet]
    assert bob.betting("listCurrentOrders", orderProjection="EXECUTABLE")["currentOrders"] == []
    assert operator.operator("settleMarket", marketId=market, winners=[1])["status"] == "SUCCESS"
    # settled: nothing of bob's is current any more (his matched lay is a cleared order now)
    assert eventually(lambda: bob.betting("listCurrentOrders")["currentOrders"] == [])
    book = alice.betting("listMarketBook", marketIds=[market])
    assert book[0]["status"] == "CLOSED"
    # alice wins 4 x 2.0 = 8 less 5% commission (0.40); bob loses 8
    assert funds(alice)["availableToBetBalance"] == 107.6 and funds(alice)["exposure"] == 0
    assert funds(bob)["availableToBetBalance"] == 92 and funds(bob)["exposure"] == 0


def test_insufficient_funds_and_a_suspended_market_are_refused_in_api_ng_codes(bettor, operator):
    client = bettor(funds="5")
    market = new_market(operator)
    report = client.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 5.0, 2)])  # liability 8
    assert (report["status"], report["errorCode"]) == ("FAILURE", "INSUFFICIENT_FUNDS")
    assert operator.operator("suspendMarket", marketId=market)["status"] == "SUCCESS"
    report = client.betting("placeOrders", marketId=market, instructions=[limit(1, "BACK", 2.0, 1)])
    assert report["instructionReports"][0]["errorCode"] == "MARKET_SUSPENDED"
    report = client.betting("placeOrders", marketId="1.999999999", instructions=[limit(1, "BACK", 2.0, 1)])
    assert report["errorCode"] == "INVALID_MARKET_ID"
    report = client.betting("placeOrders", marketId=market, instructions=[limit(1, "BACK", 2.0, 1)] * 201)
    assert (report["status"], report["errorCode"]) == ("FAILURE", "TOO_MANY_INSTRUCTIONS")
    code, error, _ = aping_error(client.rpc("betting", "SportsAPING/v1.0/placeOrders",
                                            {"marketId": market, "instructions": []}))
    assert (code, error) == (-32099, "INVALID_INPUT_DATA")


def test_one_bettor_can_neither_see_nor_touch_anothers_orders(bettor, operator):
    carol, mallory = bettor(funds="100"), bettor(funds="100")
    market = new_market(operator)
    placed = carol.betting("placeOrders", marketId=market,
                           instructions=[limit(2, "LAY", 2.0, 10, persistenceType="PERSIST")])
    bet = placed["instructionReports"][0]["betId"]

    assert mallory.betting("listCurrentOrders")["currentOrders"] == []
    assert mallory.betting("listCurrentOrders", betIds=[bet])["currentOrders"] == []
    book = mallory.betting("listMarketBook", marketIds=[market], orderProjection="ALL")
    assert all(r["orders"] == [] for r in book[0]["runners"])
    cancel = mallory.betting("cancelOrders", marketId=market, instructions=[{"betId": bet}])
    assert cancel["status"] == "FAILURE" and cancel["instructionReports"][0]["errorCode"] == "BET_TAKEN_OR_LAPSED"
    replace = mallory.betting("replaceOrders", marketId=market, instructions=[{"betId": bet, "newPrice": 3.0}])
    assert replace["status"] == "FAILURE"
    update = mallory.betting("updateOrders", marketId=market,
                             instructions=[{"betId": bet, "newPersistenceType": "LAPSE"}])
    assert update["status"] == "FAILURE"
    assert mallory.betting("cancelOrders")["instructionReports"] == []
    assert mallory.betting("cancelOrders", marketId=market)["instructionReports"] == []

    [order] = carol.betting("listCurrentOrders")["currentOrders"]
    assert (order["betId"], order["sizeRemaining"], order["persistenceType"]) == (bet, 10, "PERSIST")
    book = carol.betting("listMarketBook", marketIds=[market], orderProjection="EXECUTABLE")
    assert [o["betId"] for o in book[0]["runners"][1]["orders"]] == [bet]


def test_market_profit_and_loss_mirrors_a_matched_back_and_lay(bettor, operator, new_client):
    alice, bob = bettor(funds="100"), bettor(funds="100")
    market = new_market(operator)
    lay = bob.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 3.0, 10)])
    assert lay["status"] == "SUCCESS"
    back = alice.betting("placeOrders", marketId=market, instructions=[limit(1, "BACK", 3.0, 10)])
    assert back["instructionReports"][0]["sizeMatched"] == 10
    resting = alice.betting("placeOrders", marketId=market, instructions=[limit(2, "BACK", 5.0, 3)])
    assert resting["instructionReports"][0]["orderStatus"] == "EXECUTABLE"      # unmatched: no P&L

    # alice backed 10 at 3.0 on Home: +20 if Home wins, -10 otherwise; bob's lay mirrors it.
    # An unknown market is left out, as Betfair does; a market asked twice is listed once.
    mine = alice.betting("listMarketProfitAndLoss", marketIds=[market, "1.999999999", market])
    assert mine == [{"marketId": market, "profitAndLosses": [
        {"selectionId": 1, "ifWin": 20}, {"selectionId": 2, "ifWin": -10}, {"selectionId": 3, "ifWin": -10}]}]
    theirs = bob.betting("listMarketProfitAndLoss", marketIds=[market])
    assert [(r["selectionId"], r["ifWin"]) for r in theirs[0]["profitAndLosses"]] == [(1, -20), (2, 10), (3, 10)]
    net = alice.betting("listMarketProfitAndLoss", marketIds=[market], netOfCommission=True, includeBspBets=False)
    assert net[0]["commissionApplied"] == 5
    assert [r["ifWin"] for r in net[0]["profitAndLosses"]] == [19, -10, -10]          # 5% off a win only
    assert bettor(funds=None).betting("listMarketProfitAndLoss", marketIds=[market])[0]["profitAndLosses"] == [
        {"selectionId": 1, "ifWin": 0}, {"selectionId": 2, "ifWin": 0}, {"selectionId": 3, "ifWin": 0}]
    code, error, details = aping_error(alice.rpc("betting", "SportsAPING/v1.0/listMarketProfitAndLoss",
                                                 {"marketIds": []}))
    assert (code, error) == (-32602, "INVALID_INPUT_DATA") and "$.params.marketIds" in details

    # settled: left out unless includeSettledBets, which gives the lines settlement paid from
    assert operator.operator("settleMarket", marketId=market, winners=[1])["status"] == "SUCCESS"
    assert alice.betting("listMarketProfitAndLoss", marketIds=[market]) == []
    assert alice.betting("listMarketProfitAndLoss", marketIds=[market], includeSettledBets=True) == mine

    doc = new_client().http.get("/openapi.json").json()
    methods = {r["properties"]["method"]["const"] for r in
               doc["paths"]["/exchange/betting/json-rpc/v1"]["post"]["requestBody"]["content"]
               ["application/json"]["schema"]["oneOf"]}
    assert "SportsAPING/v1.0/listMarketProfitAndLoss" in methods
    assert {"MarketProfitAndLoss", "RunnerProfitAndLoss"} <= set(doc["components"]["schemas"])


def test_history_cleared_orders_and_account_statement_after_settlement(bettor, operator):
    alice, bob = bettor(funds="100"), bettor(funds="100")
    market = new_market(operator)
    # bob lays 10 at 3.0 on Home, alice backs 4 of it; bob cancels the rest; alice backs Away and cancels
    lay = bob.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 3.0, 10)])
    back = alice.betting("placeOrders", marketId=market, instructions=[limit(1, "BACK", 3.0, 4)])
    assert back["instructionReports"][0]["sizeMatched"] == 4
    away = alice.betting("placeOrders", marketId=market, instructions=[limit(2, "BACK", 5.0, 2)])
    lay_bet, back_bet = lay["instructionReports"][0]["betId"], back["instructionReports"][0]["betId"]
    away_bet = away["instructionReports"][0]["betId"]
    assert bob.betting("cancelOrders", marketId=market)["status"] == "SUCCESS"
    assert alice.betting("cancelOrders", marketId=market)["status"] == "SUCCESS"
    assert operator.operator("settleMarket", marketId=market, winners=[1])["status"] == "SUCCESS"

    # the projector writes the market's bets once it has settled (eventually: it tails the journals)
    def cleared(client, status, **params):
        return client.betting("listClearedOrders", betStatus=status, marketIds=[market], **params)["clearedOrders"]

    won = eventually(lambda: cleared(alice, "SETTLED", includeItemDescription=True), timeout=30)
    assert [(o["betId"], o["side"], o["betOutcome"], o["sizeSettled"], o["profit"], o["priceMatched"],
             o["priceRequested"], o["betCount"]) for o in won] == [(back_bet, "BACK", "WON", 4, 8, 3, 3, 1)]
    assert (won[0]["eventTypeId"], won[0]["marketId"], won[0]["selectionId"]) == ("1", market, 1)
    assert won[0]["itemDescription"]["runnerDesc"] == "Home"
    assert won[0]["itemDescription"]["marketDesc"] == "Match Odds"
    lost = cleared(bob, "SETTLED")
    assert [(o["betId"], o["side"], o["betOutcome"], o["sizeSettled"], o["profit"]) for o in lost] == [
        (lay_bet, "LAY", "LOST", 4, -8)]
    assert [(o["betId"], o["sizeCancelled"], o["profit"]) for o in cleared(bob, "CANCELLED")] == [(lay_bet, 6, 0)]
    assert [(o["betId"], o["sizeCancelled"]) for o in cleared(alice, "CANCELLED")] == [(away_bet, 2)]
    assert cleared(alice, "LAPSED") == [] and cleared(alice, "VOIDED") == []
    # a bettor sees only his own bets, whatever he asks for
    assert cleared(alice, "SETTLED", betIds=[lay_bet]) == [] and cleared(alice, "SETTLED", side="LAY") == []
    code, error, _ = aping_error(alice.rpc("betting", "SportsAPING/v1.0/listClearedOrders",
                                           {"betStatus": "SETTLED", "groupBy": "MARKET"}))
    assert (code, error) == (-32099, "INVALID_INPUT_DATA")
    code, error, details = aping_error(alice.rpc("betting", "SportsAPING/v1.0/listClearedOrders", {}))
    assert (code, error) == (-32602, "INVALID_INPUT_DATA") and "betStatus" in details

    # the statement: newest first, with the balance after each item; 5% commission on alice's 8.
    # The projector tails the wallets' journal apart from the markets': the settlement's wallet
    # items may come in after the cleared orders above
    def settled_statement(client, items: int):
        statement = client.account("getAccountStatement")
        return statement if len(statement["accountStatement"]) >= items else None

    statement = eventually(lambda: settled_statement(alice, 3), timeout=30) or alice.account("getAccountStatement")
    assert statement["moreAvailable"] is False
    assert [(i["amount"], i["balance"], i["legacyData"].get("marketName"), i["legacyData"]["winLose"])
            for i in statement["accountStatement"]] == [
        (-0.4, 107.6, "Commission", "RESULT_NOT_APPLICABLE"), (8, 108, "Match Odds", "RESULT_WON"),
        (100, 100, "Deposit", "RESULT_NOT_APPLICABLE")]
    assert statement["accountStatement"][1]["refId"] == market
    assert all(i["itemClass"] == "UNKNOWN" and "unknownStatementItem" in i["itemClassData"]
               for i in statement["accountStatement"])
    assert funds(alice)["availableToBetBalance"] == 107.6
    theirs = (eventually(lambda: settled_statement(bob, 2), timeout=30)
              or bob.account("getAccountStatement"))["accountStatement"]
    assert [(i["amount"], i["balance"]) for i in theirs] == [(-8, 92), (100, 100)]
    deposits = alice.account("getAccountStatement", includeItem="DEPOSITS_WITHDRAWALS")["accountStatement"]
    assert [i["amount"] for i in deposits] == [100]
    page = alice.account("getAccountStatement", fromRecord=1, recordCount=1)
    assert page["moreAvailable"] is True and [i["amount"] for i in page["accountStatement"]] == [8]


def test_fully_matched_orders_are_listed_as_execution_complete_until_settlement(bettor, operator):
    market = new_market(operator)
    backer, layer = bettor("100"), bettor("100")
    placed = backer.betting("placeOrders", marketId=market, customerRef="ec-1",
                            instructions=[limit(1, "BACK", 3.0, 10, persistenceType="PERSIST")])
    bet = placed["instructionReports"][0]["betId"]
    layer.betting("placeOrders", marketId=market, instructions=[limit(1, "LAY", 3.0, 10)])

    # the complete orders come from the replica's tail of the journal: a moment behind
    deadline = time.monotonic() + 15
    while True:
        done = backer.betting("listCurrentOrders", marketIds=[market],
                              orderProjection="EXECUTION_COMPLETE")["currentOrders"]
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (order,) = done
    assert (order["betId"], order["status"], order["sizeMatched"], order["sizeRemaining"]) == \
        (bet, "EXECUTION_COMPLETE", 10, 0)
    assert backer.betting("listCurrentOrders", marketIds=[market],
                          orderProjection="EXECUTABLE")["currentOrders"] == []
    everything = backer.betting("listCurrentOrders", marketIds=[market])["currentOrders"]
    assert [o["betId"] for o in everything] == [bet]
    # the layer sees only their own
    theirs = layer.betting("listCurrentOrders", marketIds=[market], orderProjection="EXECUTION_COMPLETE")
    assert bet not in {o["betId"] for o in theirs["currentOrders"]}

    # once settled they are cleared orders, no longer current
    assert operator.operator("settleMarket", marketId=market, winners=[1])["status"] == "SUCCESS"
    deadline = time.monotonic() + 15
    while backer.betting("listCurrentOrders", marketIds=[market])["currentOrders"]:
        assert time.monotonic() < deadline, "settled orders still listed as current"
        time.sleep(0.2)
