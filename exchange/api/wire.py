"""API-NG wire types: the JSON bodies of the bettor and operator HTTP API.

Owns the shapes (Betfair API-NG's field names, camelCase on the wire) and their
structural validation: request types forbid unknown fields, so a typo or a field we
do not implement is refused with a reason naming it, never silently ignored.
Prices and sizes are decimal numbers in JSON, decoded exactly as ``Decimal`` (never
through a float); convert.py turns them into ladder ticks and minor units.

Schema evolution as in exchange/domain/messages.py: new fields get a default and go
at the end; nothing is renamed or retyped. Must never hold behaviour.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

# A decimal number on the wire (API-NG's Price and Size are doubles): decoded exactly.
Number = Annotated[Decimal, Meta(extra_json_schema={"type": "number", "format": "double"})]
Id = Annotated[str, Meta(min_length=1, max_length=64)]
Ref = Annotated[str, Meta(min_length=1, max_length=32)]
Name = Annotated[str, Meta(min_length=1, max_length=128)]
UtcTime = Annotated[datetime, Meta(tz=True)]
Side = Literal["BACK", "LAY"]
PersistenceType = Literal["LAPSE", "PERSIST", "MARKET_ON_CLOSE"]
OrderProjection = Literal["ALL", "EXECUTABLE", "EXECUTION_COMPLETE"]
IdList = Annotated[list[Id], Meta(max_length=1000)]


class Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel",
              omit_defaults=True):
    """Base of request bodies: unknown fields are refused (echoed in reports without defaults)."""


class Reply(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Base of replies: optional (None) fields are left out, as API-NG does."""


# --------------------------------------------------------------------------
# JSON-RPC 2.0


class JsonRpcRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    jsonrpc: Literal["2.0"]
    method: Annotated[str, Meta(max_length=128)]
    params: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"{}"))
    id: int | str | None = None


class APINGExceptionBody(msgspec.Struct, kw_only=True):
    errorCode: str
    errorDetails: str
    requestUUID: str


class JsonRpcError(msgspec.Struct, kw_only=True, omit_defaults=True):
    code: int
    message: str
    data: dict | None = None


class JsonRpcReply(msgspec.Struct, kw_only=True):
    jsonrpc: str
    id: int | str | None
    result: object = None


class JsonRpcErrorReply(msgspec.Struct, kw_only=True):
    jsonrpc: str
    id: int | str | None
    error: JsonRpcError


# --------------------------------------------------------------------------
# Betting: catalogue


class TimeRange(Request, frozen=True, kw_only=True):
    from_: UtcTime | None = msgspec.field(default=None, name="from")
    to: UtcTime | None = None


class MarketFilter(Request, frozen=True, kw_only=True):
    text_query: Annotated[str, Meta(max_length=128)] | None = None
    event_type_ids: IdList | None = None
    event_ids: IdList | None = None
    market_ids: IdList | None = None
    market_type_codes: IdList | None = None
    market_countries: IdList | None = None
    market_start_time: TimeRange | None = None


class ListEventTypesParams(Request, frozen=True, kw_only=True):
    filter: MarketFilter
    locale: str | None = None


class ListEventsParams(Request, frozen=True, kw_only=True):
    filter: MarketFilter
    locale: str | None = None


MarketProjection = Literal["COMPETITION", "EVENT", "EVENT_TYPE", "MARKET_START_TIME",
                           "MARKET_DESCRIPTION", "RUNNER_DESCRIPTION", "RUNNER_METADATA"]


class ListMarketCatalogueParams(Request, frozen=True, kw_only=True):
    filter: MarketFilter
    max_results: Annotated[int, Meta(ge=1, le=1000)]
    market_projection: list[MarketProjection] = []
    sort: Literal["MINIMUM_TRADED", "MAXIMUM_TRADED", "MINIMUM_AVAILABLE", "MAXIMUM_AVAILABLE",
                  "FIRST_TO_START", "LAST_TO_START"] | None = None
    locale: str | None = None


class EventType(Reply, kw_only=True):
    id: str
    name: str


class EventTypeResult(Reply, kw_only=True):
    event_type: EventType
    market_count: int


class Event(Reply, kw_only=True):
    id: str
    name: str
    country_code: str | None = None
    timezone: str | None = None
    open_date: datetime | None = None


class EventResult(Reply, kw_only=True):
    event: Event
    market_count: int


class RunnerCatalog(Reply, kw_only=True):
    selection_id: int
    runner_name: str
    handicap: Number
    sort_priority: int


class MarketDescription(Reply, kw_only=True):
    persistence_enabled: bool
    bsp_market: bool
    market_time: datetime | None
    suspend_time: datetime | None
    betting_type: str
    turn_in_play_enabled: bool
    market_type: str
    regulator: str
    market_base_rate: Number
    discount_allowed: bool


class MarketCatalogue(Reply, kw_only=True):
    market_id: str
    market_name: str
    market_start_time: datetime | None = None
    description: MarketDescription | None = None
    total_matched: Number | None = None
    runners: list[RunnerCatalog] | None = None
    event_type: EventType | None = None
    event: Event | None = None


# --------------------------------------------------------------------------
# Betting: prices


class ExBestOffersOverrides(Request, frozen=True, kw_only=True):
    best_prices_depth: Annotated[int, Meta(ge=1, le=10)] | None = None


class PriceProjection(Request, frozen=True, kw_only=True):
    price_data: list[Literal["EX_BEST_OFFERS", "EX_ALL_OFFERS", "EX_TRADED", "SP_AVAILABLE",
                             "SP_TRADED"]] = []
    ex_best_offers_overrides: ExBestOffersOverrides | None = None
    virtualise: bool | None = None
    rollover_stakes: bool | None = None


class ListMarketBookParams(Request, frozen=True, kw_only=True):
    market_ids: Annotated[list[Id], Meta(min_length=1, max_length=40)]
    price_projection: PriceProjection | None = None
    order_projection: OrderProjection | None = None
    match_projection: Literal["NO_ROLLUP", "ROLLED_UP_BY_PRICE", "ROLLED_UP_BY_AVG_PRICE"] | None = None
    currency_code: str | None = None
    locale: str | None = None


class PriceSize(Reply, kw_only=True):
    price: Number
    size: Number


class ExchangePrices(Reply, kw_only=True):
    available_to_back: list[PriceSize]
    available_to_lay: list[PriceSize]
    traded_volume: list[PriceSize]


class Order(Reply, kw_only=True):
    bet_id: str
    order_type: str
    status: str
    persistence_type: str
    side: str
    price: Number
    size: Number
    bsp_liability: Number
    placed_date: datetime
    size_matched: Number
    size_remaining: Number
    size_lapsed: Number
    size_cancelled: Number
    size_voided: Number
    average_price_matched: Number | None = None
    customer_order_ref: str | None = None


class Runner(Reply, kw_only=True):
    selection_id: int
    handicap: Number
    status: str
    last_price_traded: Number | None = None
    total_matched: Number | None = None
    ex: ExchangePrices | None = None
    orders: list[Order] | None = None


class MarketBook(Reply, kw_only=True):
    market_id: str
    is_market_data_delayed: bool
    status: str
    bet_delay: int
    bsp_reconciled: bool
    complete: bool
    inplay: bool
    number_of_winners: int
    number_of_runners: int
    number_of_active_runners: int
    cross_matching: bool
    runners_voidable: bool
    version: int
    runners: list[Runner]
    total_matched: Number | None = None


# --------------------------------------------------------------------------
# Betting: orders


class LimitOrder(Request, frozen=True, kw_only=True):
    size: Number
    price: Number
    persistence_type: PersistenceType = "LAPSE"
    time_in_force: Literal["FILL_OR_KILL"] | None = None
    min_fill_size: Number | None = None


class PlaceInstruction(Request, frozen=True, kw_only=True):
    order_type: Literal["LIMIT"]
    selection_id: int
    side: Side
    limit_order: LimitOrder
    handicap: Number | None = None
    customer_order_ref: Ref | None = None


class MarketVersion(Request, frozen=True, kw_only=True):
    version: int


class PlaceOrdersParams(Request, frozen=True, kw_only=True):
    market_id: Id
    instructions: Annotated[list[PlaceInstruction], Meta(max_length=1000)]
    customer_ref: Ref | None = None
    market_version: MarketVersion | None = None
    customer_strategy_ref: Annotated[str, Meta(max_length=15)] | None = None


class CancelInstruction(Request, frozen=True, kw_only=True):
    bet_id: Id
    size_reduction: Number | None = None


class CancelOrdersParams(Request, frozen=True, kw_only=True):
    market_id: Id | None = None
    instructions: Annotated[list[CancelInstruction], Meta(max_length=1000)] = []
    customer_ref: Ref | None = None


class ReplaceInstruction(Request, frozen=True, kw_only=True):
    bet_id: Id
    new_price: Number


class ReplaceOrdersParams(Request, frozen=True, kw_only=True):
    market_id: Id
    instructions: Annotated[list[ReplaceInstruction], Meta(max_length=1000)]
    customer_ref: Ref | None = None
    market_version: MarketVersion | None = None


class UpdateInstruction(Request, frozen=True, kw_only=True):
    bet_id: Id
    new_persistence_type: PersistenceType


class UpdateOrdersParams(Request, frozen=True, kw_only=True):
    market_id: Id
    instructions: Annotated[list[UpdateInstruction], Meta(max_length=1000)]
    customer_ref: Ref | None = None


class ListCurrentOrdersParams(Request, frozen=True, kw_only=True):
    bet_ids: IdList | None = None
    market_ids: IdList | None = None
    order_projection: OrderProjection | None = None
    customer_order_refs: IdList | None = None
    from_record: Annotated[int, Meta(ge=0)] | None = None
    record_count: Annotated[int, Meta(ge=0, le=1000)] | None = None


class PlaceInstructionReport(Reply, kw_only=True):
    status: str
    instruction: PlaceInstruction
    error_code: str | None = None
    order_status: str | None = None
    bet_id: str | None = None
    placed_date: datetime | None = None
    average_price_matched: Number | None = None
    size_matched: Number | None = None


class PlaceExecutionReport(Reply, kw_only=True):
    status: str
    market_id: str
    instruction_reports: list[PlaceInstructionReport]
    customer_ref: str | None = None
    error_code: str | None = None


class CancelInstructionReport(Reply, kw_only=True):
    status: str
    instruction: CancelInstruction | None = None
    error_code: str | None = None
    size_cancelled: Number | None = None
    cancelled_date: datetime | None = None


class CancelExecutionReport(Reply, kw_only=True):
    status: str
    instruction_reports: list[CancelInstructionReport]
    market_id: str | None = None
    customer_ref: str | None = None
    error_code: str | None = None


class ReplaceInstructionReport(Reply, kw_only=True):
    status: str
    error_code: str | None = None
    cancel_instruction_report: CancelInstructionReport | None = None
    place_instruction_report: PlaceInstructionReport | None = None


class ReplaceExecutionReport(Reply, kw_only=True):
    status: str
    market_id: str
    instruction_reports: list[ReplaceInstructionReport]
    customer_ref: str | None = None
    error_code: str | None = None


class UpdateInstructionReport(Reply, kw_only=True):
    status: str
    instruction: UpdateInstruction
    error_code: str | None = None


class UpdateExecutionReport(Reply, kw_only=True):
    status: str
    market_id: str
    instruction_reports: list[UpdateInstructionReport]
    customer_ref: str | None = None
    error_code: str | None = None


class CurrentOrderSummary(Reply, kw_only=True):
    bet_id: str
    market_id: str
    selection_id: int
    handicap: Number
    price_size: PriceSize
    bsp_liability: Number
    side: str
    status: str
    persistence_type: str
    order_type: str
    placed_date: datetime
    size_matched: Number
    size_remaining: Number
    size_lapsed: Number
    size_cancelled: Number
    size_voided: Number
    regulator_code: str
    average_price_matched: Number | None = None
    customer_order_ref: str | None = None


class CurrentOrderSummaryReport(Reply, kw_only=True):
    current_orders: list[CurrentOrderSummary]
    more_available: bool


# --------------------------------------------------------------------------
# Betting: profit and loss


class ListMarketProfitAndLossParams(Request, frozen=True, kw_only=True):
    market_ids: Annotated[list[Id], Meta(min_length=1, max_length=1000)]
    include_settled_bets: bool = False
    include_bsp_bets: bool = False          # accepted for API-NG clients; there are no BSP bets here
    net_of_commission: bool = False


class RunnerProfitAndLoss(Reply, kw_only=True):
    selection_id: int
    if_win: Number
    if_lose: Number | None = None           # multi-winner markets only (API-NG's ifPlace: EACH_WAY, none here)


class MarketProfitAndLoss(Reply, kw_only=True):
    market_id: str
    profit_and_losses: list[RunnerProfitAndLoss]
    commission_applied: Number | None = None


# --------------------------------------------------------------------------
# Accounts


class GetAccountFundsParams(Request, frozen=True, kw_only=True):
    wallet: Literal["UK"] | None = None


class AccountFundsResponse(Reply, kw_only=True):
    available_to_bet_balance: Number
    exposure: Number
    retained_commission: Number
    discount_rate: Number
    points_balance: int
    wallet: str
    exposure_limit: Number | None = None


class GetAccountDetailsParams(Request, frozen=True, kw_only=True):
    """No parameters (API-NG's getAccountDetails takes none)."""


class AccountDetailsResponse(Reply, kw_only=True):
    """API-NG's AccountDetailsResponse. No names are kept, so firstName and lastName are
    absent; ``region`` is the account's jurisdiction (``us-nj``), ``countryCode`` its
    country (ISO 3166-1 alpha-2, absent for a jurisdiction that is not one country)."""

    currency_code: str
    locale_code: str
    region: str
    timezone: str
    discount_rate: Number
    points_balance: int
    country_code: str | None = None


class LoginResponse(msgspec.Struct, kw_only=True):
    """Betfair's interactive login reply (also keepAlive and logout)."""

    token: str
    product: str
    status: Literal["SUCCESS", "FAIL"]
    error: str


# --------------------------------------------------------------------------
# Operator (our own, same JSON-RPC conventions; OperatorAPING/v1.0/<operation>)


class CreateEventParams(Request, frozen=True, kw_only=True):
    event_type_id: Id
    name: Name
    open_date: UtcTime
    event_type_name: Name | None = None
    country_code: Annotated[str, Meta(min_length=2, max_length=2)] | None = None
    timezone: Annotated[str, Meta(max_length=64)] | None = None


class RunnerSpec(Request, frozen=True, kw_only=True):
    runner_name: Name
    selection_id: Annotated[int, Meta(ge=1, le=2**53)] | None = None
    sort_priority: int | None = None


class CreateMarketParams(Request, frozen=True, kw_only=True):
    event_id: Id
    market_name: Name
    market_start_time: UtcTime
    runners: Annotated[list[RunnerSpec], Meta(min_length=1, max_length=200)]
    market_type: Id = "MATCH_ODDS"
    number_of_winners: Annotated[int, Meta(ge=1)] = 1
    min_stake: Number = Decimal("1")
    commission_rate: Number = Decimal("0.05")


class MarketIdParams(Request, frozen=True, kw_only=True):
    market_id: Id


class TurnInPlayParams(Request, frozen=True, kw_only=True):
    market_id: Id
    bet_delay: Annotated[int, Meta(ge=0, le=60)] = 0


class RemoveRunnerParams(Request, frozen=True, kw_only=True):
    market_id: Id
    selection_id: int


class SettleMarketParams(Request, frozen=True, kw_only=True):
    market_id: Id
    winners: Annotated[list[int], Meta(max_length=200)]
    dead_heat: Annotated[list[int], Meta(max_length=200)] = []


Username = Annotated[str, Meta(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]


class CreateAccountParams(Request, frozen=True, kw_only=True):
    username: Username
    password: Annotated[str, Meta(min_length=8, max_length=128)]
    role: Literal["BETTOR", "OPERATOR"] = "BETTOR"
    currency: Annotated[str, Meta(min_length=3, max_length=3)] | None = None
    requests_per_second: Annotated[int, Meta(ge=1, le=100_000)] | None = None
    burst: Annotated[int, Meta(ge=1, le=100_000)] | None = None


class DepositParams(Request, frozen=True, kw_only=True):
    username: Username
    amount: Number
    transaction_ref: Ref | None = None


class UsernameParams(Request, frozen=True, kw_only=True):
    username: Username


class CreatedEvent(Reply, kw_only=True):
    event_id: str


class CreatedMarket(Reply, kw_only=True):
    market_id: str
    runners: list[RunnerCatalog]


class CreatedAccount(Reply, kw_only=True):
    account_id: str
    username: str


class OperatorReport(Reply, kw_only=True):
    status: str
    error_code: str | None = None


# --------------------------------------------------------------------------
# The WebSocket stream (/stream): Betfair's Exchange Stream API requests, and our
# order entry. Each client message is one JSON object whose "op" names its type; the
# server's mcm/ocm change messages are written by exchange/api/stream.py.

StreamFields = Literal["EX_BEST_OFFERS_DISP", "EX_BEST_OFFERS", "EX_ALL_OFFERS", "EX_TRADED", "EX_TRADED_VOL",
                       "EX_LTP", "EX_MARKET_DEF", "SP_TRADED", "SP_PROJECTED"]
Clock = Annotated[str, Meta(max_length=1024)]


class StreamRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, rename="camel",
                    tag_field="op"):
    """Base of stream requests: ``id`` is echoed on the answer (and on a subscription's changes)."""

    id: int | None = None


class StreamAuthentication(StreamRequest, frozen=True, kw_only=True, tag="authentication"):
    app_key: Annotated[str, Meta(max_length=64)] | None = None
    session: Annotated[str, Meta(max_length=128)] | None = None


class StreamHeartbeat(StreamRequest, frozen=True, kw_only=True, tag="heartbeat"):
    pass


class StreamMarketFilter(Request, frozen=True, kw_only=True):
    market_ids: IdList | None = None
    event_type_ids: IdList | None = None
    event_ids: IdList | None = None
    market_types: IdList | None = None
    country_codes: IdList | None = None
    bsp_market: bool | None = None
    turn_in_play_enabled: bool | None = None
    betting_types: IdList | None = None


class StreamMarketDataFilter(Request, frozen=True, kw_only=True):
    ladder_levels: Annotated[int, Meta(ge=1, le=10)] | None = None
    fields: list[StreamFields] | None = None


class SubscriptionOptions(StreamRequest, frozen=True, kw_only=True):
    clk: Clock | None = None
    initial_clk: Clock | None = None
    heartbeat_ms: Annotated[int, Meta(ge=0, le=60_000)] | None = None
    conflate_ms: Annotated[int, Meta(ge=0, le=120_000)] | None = None
    segmentation_enabled: bool | None = None


class StreamMarketSubscription(SubscriptionOptions, frozen=True, kw_only=True, tag="marketSubscription"):
    market_filter: StreamMarketFilter | None = None
    market_data_filter: StreamMarketDataFilter | None = None


class StreamOrderFilter(Request, frozen=True, kw_only=True):
    include_overall_position: bool | None = None
    customer_strategy_refs: list[Ref] | None = None
    partition_matched_by_strategy_ref: bool | None = None
    account_ids: list[int] | None = None


class StreamOrderSubscription(SubscriptionOptions, frozen=True, kw_only=True, tag="orderSubscription"):
    order_filter: StreamOrderFilter | None = None


class StreamPlaceOrders(StreamRequest, frozen=True, kw_only=True, tag="placeOrders"):
    """Order entry on the stream (ours: Betfair has none): API-NG's params, answered by id."""

    params: PlaceOrdersParams


class StreamCancelOrders(StreamRequest, frozen=True, kw_only=True, tag="cancelOrders"):
    params: CancelOrdersParams


class StreamReplaceOrders(StreamRequest, frozen=True, kw_only=True, tag="replaceOrders"):
    params: ReplaceOrdersParams


class StreamUpdateOrders(StreamRequest, frozen=True, kw_only=True, tag="updateOrders"):
    params: UpdateOrdersParams


StreamMessage = (StreamAuthentication | StreamHeartbeat | StreamMarketSubscription | StreamOrderSubscription
                 | StreamPlaceOrders | StreamCancelOrders | StreamReplaceOrders | StreamUpdateOrders)


class StreamStatus(msgspec.Struct, kw_only=True, rename="camel", tag_field="op", tag="status",
                   omit_defaults=True):
    """The answer to a request: statusCode SUCCESS or FAILURE (errorCode, errorMessage)."""

    id: int | None
    status_code: Literal["SUCCESS", "FAILURE"]
    connection_closed: bool
    error_code: str | None = None
    error_message: str | None = None
    connection_id: str | None = None
    connections_available: int | None = None


class StreamConnection(msgspec.Struct, kw_only=True, rename="camel", tag_field="op", tag="connection"):
    connection_id: str



# --------------------------------------------------------------------------
# History: listClearedOrders and getAccountStatement (read from PostgreSQL, written by the
# jurisdiction's history projector: exchange/history/)

BetStatus = Literal["SETTLED", "VOIDED", "LAPSED", "CANCELLED"]
GroupBy = Literal["EVENT_TYPE", "EVENT", "MARKET", "SIDE", "BET", "RUNNER"]


class ListClearedOrdersParams(Request, frozen=True, kw_only=True):
    """groupBy: only BET (the default) is served; other groupings are refused (INVALID_INPUT_DATA)."""

    bet_status: BetStatus
    event_type_ids: IdList | None = None
    event_ids: IdList | None = None
    market_ids: IdList | None = None
    runner_ids: Annotated[list[Annotated[int, Meta(ge=0, le=2**53)]], Meta(max_length=1000)] | None = None
    bet_ids: IdList | None = None
    customer_order_refs: IdList | None = None
    side: Side | None = None
    settled_date_range: TimeRange | None = None
    group_by: GroupBy | None = None
    include_item_description: bool = False
    locale: str | None = None
    from_record: Annotated[int, Meta(ge=0)] | None = None
    record_count: Annotated[int, Meta(ge=0, le=1000)] | None = None


class ItemDescription(Reply, kw_only=True):
    event_type_desc: str | None = None
    event_desc: str | None = None
    market_desc: str | None = None
    market_type: str | None = None
    market_start_time: datetime | None = None
    runner_desc: str | None = None
    number_of_winners: int | None = None


class ClearedOrderSummary(Reply, kw_only=True):
    market_id: str
    selection_id: int
    handicap: Number
    bet_id: str
    placed_date: datetime
    persistence_type: str
    order_type: str
    side: str
    price_requested: Number
    settled_date: datetime
    bet_count: int
    price_reduced: bool
    size_settled: Number
    profit: Number
    size_cancelled: Number
    event_type_id: str | None = None
    event_id: str | None = None
    item_description: ItemDescription | None = None
    bet_outcome: str | None = None
    last_matched_date: datetime | None = None
    commission: Number | None = None
    price_matched: Number | None = None
    customer_order_ref: str | None = None


class ClearedOrderSummaryReport(Reply, kw_only=True):
    cleared_orders: list[ClearedOrderSummary]
    more_available: bool


IncludeItem = Literal["ALL", "DEPOSITS_WITHDRAWALS", "EXCHANGE", "POKER_ROOM"]


class GetAccountStatementParams(Request, frozen=True, kw_only=True):
    locale: str | None = None
    from_record: Annotated[int, Meta(ge=0)] | None = None
    record_count: Annotated[int, Meta(ge=0, le=100)] | None = None
    item_date_range: TimeRange | None = None
    include_item: IncludeItem | None = None
    wallet: Literal["UK"] | None = None


class StatementLegacyData(Reply, kw_only=True):
    avg_price: Number | None = None
    bet_size: Number | None = None
    bet_type: str | None = None
    bet_category_type: str | None = None
    commission_rate: str | None = None
    event_id: int | None = None
    event_type_id: int | None = None
    full_market_name: str | None = None
    gross_bet_amount: Number | None = None
    market_name: str | None = None
    market_type: str | None = None
    placed_date: datetime | None = None
    selection_id: int | None = None
    selection_name: str | None = None
    start_date: datetime | None = None
    transaction_type: str | None = None
    transaction_id: int | None = None
    win_lose: str | None = None


class StatementItem(Reply, kw_only=True):
    ref_id: str
    item_date: datetime
    amount: Number
    balance: Number
    item_class: str
    item_class_data: dict[str, str]
    legacy_data: StatementLegacyData


class AccountStatementReport(Reply, kw_only=True):
    account_statement: list[StatementItem]
    more_available: bool
