"""listClearedOrders and getAccountStatement at the edge: params decode strictly, history rows
become API-NG's shapes in currency units, and the OpenAPI document carries both operations."""

from datetime import datetime, timezone

import msgspec
import pytest

from exchange.api import convert, wire
from exchange.api.openapi import ACCOUNT, BETTING, openapi_document

ENCODER = msgspec.json.Encoder(decimal_format="number")
CLEARED = msgspec.json.Decoder(wire.ListClearedOrdersParams)
STATEMENT = msgspec.json.Decoder(wire.GetAccountStatementParams)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
T1 = datetime(2024, 5, 1, 14, 30, tzinfo=timezone.utc)


def test_cleared_orders_params_need_a_bet_status_and_refuse_unknown_fields():
    p = CLEARED.decode(b'{"betStatus": "SETTLED", "groupBy": "MARKET", '
                       b'"settledDateRange": {"from": "2024-05-01T00:00:00Z"}}')
    assert (p.bet_status, p.group_by, p.include_item_description, p.settled_date_range.from_) == (
        "SETTLED", "MARKET", False, datetime(2024, 5, 1, tzinfo=timezone.utc))
    for body, reason in ((b'{}', "betStatus"), (b'{"betStatus": "OPEN"}', "$.betStatus"),
                         (b'{"betStatus": "SETTLED", "recordCount": 1001}', "$.recordCount"),
                         (b'{"betStatus": "SETTLED", "runnerIds": [-1]}', "$.runnerIds[0]"),
                         (b'{"betStatus": "SETTLED", "customerStrategyRefs": ["x"]}', "unknown field")):
        with pytest.raises(msgspec.ValidationError, match=reason.replace("$", r"\$").replace("[", r"\[")):
            CLEARED.decode(body)


def test_statement_params_page_at_most_a_hundred():
    assert STATEMENT.decode(b'{}').include_item is None
    assert STATEMENT.decode(b'{"includeItem": "EXCHANGE", "wallet": "UK"}').include_item == "EXCHANGE"
    with pytest.raises(msgspec.ValidationError, match=r"\$.recordCount"):
        STATEMENT.decode(b'{"recordCount": 101}')
    assert convert.INCLUDE_ITEM_KINDS["EXCHANGE"] == ["SETTLEMENT", "COMMISSION"]


def cleared_row(**kw) -> dict:
    row = {"market_id": "1.100000007", "bet_id": 3, "bet_status": "SETTLED", "selection_id": 1, "side": "BACK",
           "persistence": "LAPSE", "price_tick": 0, "placed_at": T0, "settled_at": T1, "last_matched_at": T0,
           "size_settled": 400, "matched_value": 400 * 300 + 200 * 310, "size_matched": 600, "profit": 1220,
           "size_cancelled": 0, "customer_ref": "r1", "outcome": "WON", "event_type_id": "1", "event_id": "100000002",
           "market_name": "Match Odds", "market_type": "MATCH_ODDS", "market_start_time": T0,
           "number_of_winners": 1, "event_name": "A v B", "event_type_name": "Soccer", "runner_name": "Home"}
    row.update(kw)
    return row


def test_a_cleared_row_becomes_a_cleared_order_summary():
    from exchange.domain.ladder import parse_price

    summary = convert.cleared_row_to_summary(cleared_row(price_tick=parse_price("3.0")), with_description=True)
    doc = msgspec.json.decode(ENCODER.encode(summary))
    assert doc["betId"] == "100000007000000003" and doc["priceRequested"] == 3.0
    assert (doc["sizeSettled"], doc["profit"], doc["priceMatched"], doc["betCount"]) == (4.0, 12.2, 3.03, 1)
    assert doc["settledDate"] == "2024-05-01T14:30:00Z" and doc["betOutcome"] == "WON"
    assert doc["itemDescription"] == {"eventTypeDesc": "Soccer", "eventDesc": "A v B", "marketDesc": "Match Odds",
                                      "marketType": "MATCH_ODDS", "marketStartTime": "2024-05-01T12:00:00Z",
                                      "runnerDesc": "Home", "numberOfWinners": 1}
    assert "commission" not in doc                        # per market, never per bet
    plain = msgspec.json.decode(ENCODER.encode(convert.cleared_row_to_summary(cleared_row(
        bet_status="CANCELLED", size_settled=0, profit=0, size_cancelled=250, size_matched=0, matched_value=0,
        outcome=None, event_type_id=None, event_id=None))))
    assert (plain["sizeCancelled"], plain["profit"]) == (2.5, 0)
    assert not {"priceMatched", "betOutcome", "eventId", "eventTypeId", "itemDescription"} & set(plain)


def statement_row(**kw) -> dict:
    row = {"ref_id": "1.100000007", "item_at": T1, "amount": 2000, "balance": 12_000, "kind": "SETTLEMENT",
           "seq": 3, "part": 0, "market_name": "Match Odds", "market_type": "MATCH_ODDS",
           "market_start_time": T0, "event_id": "100000002", "commission_bp": 500, "event_type_id": "1",
           "event_name": "A v B"}
    row.update(kw)
    return row


def test_statement_rows_become_statement_items_with_legacy_data():
    won = msgspec.json.decode(ENCODER.encode(convert.statement_row_to_item(statement_row())))
    assert (won["refId"], won["amount"], won["balance"], won["itemClass"]) == ("1.100000007", 20.0, 120.0, "UNKNOWN")
    legacy = won["legacyData"]
    assert (legacy["winLose"], legacy["marketName"], legacy["fullMarketName"], legacy["eventId"],
            legacy["eventTypeId"], legacy["transactionType"]) == (
        "RESULT_WON", "Match Odds", "A v B / Match Odds", 100000002, 1, "ACCOUNT_CREDIT")
    assert msgspec.json.decode(won["itemClassData"]["unknownStatementItem"]) == legacy
    commission = convert.statement_row_to_item(statement_row(kind="COMMISSION", amount=-100, balance=11_900, part=1))
    assert (commission.legacy_data.market_name, commission.legacy_data.commission_rate,
            commission.legacy_data.transaction_type) == ("Commission", "5%", "ACCOUNT_DEBIT")
    deposit = convert.statement_row_to_item(statement_row(
        kind="DEPOSIT", ref_id="dep-1", amount=10_000, balance=10_000, market_name=None, market_type=None,
        market_start_time=None, event_id=None, commission_bp=None, event_type_id=None, event_name=None))
    assert (deposit.legacy_data.market_name, deposit.legacy_data.win_lose, deposit.legacy_data.event_id) == (
        "Deposit", "RESULT_NOT_APPLICABLE", None)


def test_the_openapi_document_has_both_operations():
    doc = openapi_document("us-nj")
    methods = {path: {e["properties"]["method"]["const"] for e in
                      doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]}
               for path in (BETTING, ACCOUNT)}
    assert "SportsAPING/v1.0/listClearedOrders" in methods[BETTING]
    assert "AccountAPING/v1.0/getAccountStatement" in methods[ACCOUNT]
    assert doc["components"]["schemas"]["ListClearedOrdersParams"]["required"] == ["betStatus"]
    report = doc["components"]["schemas"]["ClearedOrderSummaryReport"]
    assert set(report["properties"]) == {"clearedOrders", "moreAvailable"}
