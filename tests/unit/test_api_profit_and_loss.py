"""listMarketProfitAndLoss at the edge: params decode strictly, minor units become two-decimal
numbers, and the OpenAPI document carries the operation."""

import msgspec
import pytest

from exchange.api import convert, wire
from exchange.api.openapi import BETTING, openapi_document

ENCODER = msgspec.json.Encoder(decimal_format="number")
PARAMS = msgspec.json.Decoder(wire.ListMarketProfitAndLossParams)


def test_params_default_to_api_ng_falses_and_refuse_unknown_fields():
    p = PARAMS.decode(b'{"marketIds": ["1.5"]}')
    assert (p.market_ids, p.include_settled_bets, p.include_bsp_bets, p.net_of_commission) == (["1.5"], False, False, False)
    p = PARAMS.decode(b'{"marketIds": ["1.5"], "includeSettledBets": true, "includeBspBets": true, "netOfCommission": true}')
    assert (p.include_settled_bets, p.include_bsp_bets, p.net_of_commission) == (True, True, True)
    for body, reason in ((b'{"marketIds": ["1.5"], "includeBfCommission": true}', "unknown field"),
                         (b'{"marketIds": []}', "$.marketIds"), (b'{}', "marketIds")):
        with pytest.raises(msgspec.ValidationError, match=reason.replace("$", r"\$")):
            PARAMS.decode(body)


def test_a_view_becomes_market_profit_and_loss_in_currency_units():
    one_winner = {"market_id": "1.5", "commission_bp": 500, "runners": [(1, 1900, None), (2, -1000, None)]}
    assert ENCODER.encode(convert.pnl_view_to_market_profit_and_loss(one_winner)) == (
        b'{"marketId":"1.5","profitAndLosses":[{"selectionId":1,"ifWin":19.00},{"selectionId":2,"ifWin":-10.00}],'
        b'"commissionApplied":5.00}')
    places = {"market_id": "1.6", "commission_bp": None, "runners": [(7, 5, -3)]}
    assert ENCODER.encode(convert.pnl_view_to_market_profit_and_loss(places)) == (
        b'{"marketId":"1.6","profitAndLosses":[{"selectionId":7,"ifWin":0.05,"ifLose":-0.03}]}')


def test_the_openapi_document_has_the_operation():
    doc = openapi_document("us-nj")
    envelopes = doc["paths"][BETTING]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    [envelope] = [e for e in envelopes
                  if e["properties"]["method"]["const"] == "SportsAPING/v1.0/listMarketProfitAndLoss"]
    params = doc["components"]["schemas"]["ListMarketProfitAndLossParams"]
    assert envelope["properties"]["params"] == {"$ref": "#/components/schemas/ListMarketProfitAndLossParams"}
    assert params["required"] == ["marketIds"] and params["additionalProperties"] is False
    assert set(doc["components"]["schemas"]["RunnerProfitAndLoss"]["properties"]) == {
        "selectionId", "ifWin", "ifLose"}
