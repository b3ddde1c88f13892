"""The OpenAPI 3.1 document of the API, generated from the msgspec types in wire.py.

Owns the table of operations (endpoint, JSON-RPC method, params type, result type)
and its rendering: every JSON-RPC endpoint is one POST path whose body is one of the
operations' envelopes (``method`` a constant, ``params`` the operation's type) and
whose reply is the result or a JSON-RPC error. Must never be hand-edited into drift:
the schemas come from the same types the app decodes with.
"""

from __future__ import annotations

import msgspec

from exchange.api import wire

BETTING = "/exchange/betting/json-rpc/v1"
ACCOUNT = "/exchange/account/json-rpc/v1"
OPERATOR = "/exchange/operator/json-rpc/v1"

#: (endpoint, method, params type, result type)
OPERATIONS: list[tuple[str, str, type, object]] = [
    (BETTING, "SportsAPING/v1.0/listEventTypes", wire.ListEventTypesParams, list[wire.EventTypeResult]),
    (BETTING, "SportsAPING/v1.0/listEvents", wire.ListEventsParams, list[wire.EventResult]),
    (BETTING, "SportsAPING/v1.0/listMarketCatalogue", wire.ListMarketCatalogueParams, list[wire.MarketCatalogue]),
    (BETTING, "SportsAPING/v1.0/listMarketBook", wire.ListMarketBookParams, list[wire.MarketBook]),
    (BETTING, "SportsAPING/v1.0/placeOrders", wire.PlaceOrdersParams, wire.PlaceExecutionReport),
    (BETTING, "SportsAPING/v1.0/cancelOrders", wire.CancelOrdersParams, wire.CancelExecutionReport),
    (BETTING, "SportsAPING/v1.0/replaceOrders", wire.ReplaceOrdersParams, wire.ReplaceExecutionReport),
    (BETTING, "SportsAPING/v1.0/updateOrders", wire.UpdateOrdersParams, wire.UpdateExecutionReport),
    (BETTING, "SportsAPING/v1.0/listCurrentOrders", wire.ListCurrentOrdersParams, wire.CurrentOrderSummaryReport),
    (BETTING, "SportsAPING/v1.0/listMarketProfitAndLoss", wire.ListMarketProfitAndLossParams,
     list[wire.MarketProfitAndLoss]),
    (BETTING, "SportsAPING/v1.0/listClearedOrders", wire.ListClearedOrdersParams, wire.ClearedOrderSummaryReport),
    (ACCOUNT, "AccountAPING/v1.0/getAccountFunds", wire.GetAccountFundsParams, wire.AccountFundsResponse),
    (ACCOUNT, "AccountAPING/v1.0/getAccountDetails", wire.GetAccountDetailsParams, wire.AccountDetailsResponse),
    (ACCOUNT, "AccountAPING/v1.0/getAccountStatement", wire.GetAccountStatementParams, wire.AccountStatementReport),
    (OPERATOR, "OperatorAPING/v1.0/createAccount", wire.CreateAccountParams, wire.CreatedAccount),
    (OPERATOR, "OperatorAPING/v1.0/unlockAccount", wire.UsernameParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/deposit", wire.DepositParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/createEvent", wire.CreateEventParams, wire.CreatedEvent),
    (OPERATOR, "OperatorAPING/v1.0/createMarket", wire.CreateMarketParams, wire.CreatedMarket),
    (OPERATOR, "OperatorAPING/v1.0/openMarket", wire.MarketIdParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/suspendMarket", wire.MarketIdParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/turnInPlay", wire.TurnInPlayParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/removeRunner", wire.RemoveRunnerParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/closeMarket", wire.MarketIdParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/settleMarket", wire.SettleMarketParams, wire.OperatorReport),
    (OPERATOR, "OperatorAPING/v1.0/voidMarket", wire.MarketIdParams, wire.OperatorReport),
]

_HEADERS = [
    {"name": "X-Application", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "application key (any non-empty key; a session is bound to the key it logged in with)"},
    {"name": "X-Authentication", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "session token from POST /api/login"},
]


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(jurisdiction: str = "us-nj") -> dict:
    types = [t for _, _, params, result in OPERATIONS for t in (params, result)]
    types += [wire.JsonRpcError, wire.LoginResponse]
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    by_type = dict(zip(types, schemas))
    paths: dict = {}
    for endpoint in (BETTING, ACCOUNT, OPERATOR):
        requests, results = [], []
        for ep, method, params, result in OPERATIONS:
            if ep != endpoint:
                continue
            requests.append({
                "title": method.rsplit("/", 1)[1], "type": "object", "additionalProperties": False,
                "required": ["jsonrpc", "method"],
                "properties": {"jsonrpc": {"const": "2.0"}, "method": {"const": method},
                               "params": by_type[params], "id": {"type": ["integer", "string", "null"]}}})
            results.append({"title": method.rsplit("/", 1)[1], "type": "object",
                            "properties": {"jsonrpc": {"const": "2.0"}, "id": {},
                                           "result": by_type[result]}})
        results.append({"title": "error", "type": "object",
                        "properties": {"jsonrpc": {"const": "2.0"}, "id": {},
                                       "error": _ref("JsonRpcError")}})
        paths[endpoint] = {"post": {
            "summary": f"JSON-RPC 2.0: {', '.join(r['title'] for r in requests)}",
            "parameters": _HEADERS,
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": {"oneOf": requests}}}},
            "responses": {
                "200": {"description": "a result, or a JSON-RPC error (-32700, -32600, -32601, -32602, "
                                       "or -32099 with data.APINGException)",
                        "content": {"application/json": {"schema": {"oneOf": results}}}},
                "413": {"description": "REQUEST_SIZE_EXCEEDS_LIMIT"},
                "429": {"description": "TOO_MANY_REQUESTS (per IP or per account); see Retry-After"}}}}
    form = {"type": "object", "required": ["username", "password"], "additionalProperties": False,
            "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}
    for route, summary in (("/api/login", "interactive login: a session token"),
                           ("/api/keepAlive", "extend the session"), ("/api/logout", "end the session")):
        op = {"summary": summary,
              "parameters": [_HEADERS[0]] + ([] if route == "/api/login" else [_HEADERS[1]]),
              "responses": {"200": {"description": "status SUCCESS or FAIL with error",
                                    "content": {"application/json": {"schema": _ref("LoginResponse")}}},
                            "429": {"description": "TEMPORARY_BAN_TOO_MANY_REQUESTS"}}}
        if route == "/api/login":
            op["requestBody"] = {"required": True,
                                 "content": {"application/x-www-form-urlencoded": {"schema": form}}}
        paths[route] = {"post": op}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"exchange API-NG ({jurisdiction})", "version": "1.0",
                 "description": "Betfair API-NG shaped JSON-RPC. Prices and sizes are decimal numbers "
                                "(sizes in currency units, two decimals at most; prices on the ladder)."},
        "paths": paths,
        "components": {"schemas": components},
    }
