"""Wire types: commands in, events out, results back.

Owns every struct that crosses a process boundary: they are the Kafka records
and the HTTP bodies. Frozen, keyword-only msgspec Structs sharing a tagged base
(tag field ``"type"``, tag = class name), grouped into tagged unions with one
reusable decoder per union and format.

Schema evolution: a new field gets a default and goes at the end; a field is
never retyped or renamed; a type is never renamed (its name is its tag).

Money is int minor units; prices in commands are decimal strings (the domain
turns them into ladder ticks, off-ladder is INVALID_ODDS); prices in events are
ticks. Business validation is the domain's job, not the decoder's, so that a
bad size reaches the domain and gets INVALID_BET_SIZE rather than a decode
error: constraints here are only structural (id lengths).

Must never hold behaviour beyond construction, encoding and decoding.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import msgspec
from msgspec import Meta

Id = Annotated[str, Meta(min_length=1, max_length=64)]
Side = Literal["BACK", "LAY"]
Persistence = Literal["LAPSE", "PERSIST", "MARKET_ON_CLOSE"]
TimeInForce = Literal["FILL_OR_KILL"]
Status = Literal["SUCCESS", "FAILURE"]
MarketStatus = Literal["INACTIVE", "OPEN", "SUSPENDED", "CLOSED"]

BACK = "BACK"
LAY = "LAY"
LAPSE = "LAPSE"
PERSIST = "PERSIST"
MARKET_ON_CLOSE = "MARKET_ON_CLOSE"
FILL_OR_KILL = "FILL_OR_KILL"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"


class Wire(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True, gc=False):
    """Base of every wire type: frozen, keyword-only, tagged by class name."""


# --------------------------------------------------------------------------
# Market commands


class PlaceInstruction(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One LIMIT order: back or lay ``size`` (minor units) on a runner at ``price``.

    ``time_in_force`` FILL_OR_KILL: the price bounds the average price of the
    whole fill; at least ``min_fill_size`` (default: all of ``size``) must fill
    at once or nothing does; what does not fill expires.
    """

    runner_id: int
    side: Side
    price: str
    size: int
    persistence: Persistence = "LAPSE"
    time_in_force: TimeInForce | None = None
    min_fill_size: int | None = None
    customer_ref: str | None = None


class CancelInstruction(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Cancel a bet's unmatched part, or reduce it by ``size_reduction``."""

    bet_id: int
    size_reduction: int | None = None


class ReplaceInstruction(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Cancel a bet's unmatched part and place it again at ``new_price``."""

    bet_id: int
    new_price: str


class UpdateInstruction(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Change an unmatched bet's persistence."""

    bet_id: int
    new_persistence: Persistence


class DefineMarket(Wire, frozen=True, kw_only=True):
    command_id: Id
    market_id: Id
    runners: list[int]
    number_of_winners: int = 1
    min_stake: int = 100
    commission_rate_bp: int = 500


class OpenMarket(Wire, frozen=True, kw_only=True):
    """INACTIVE -> OPEN, or SUSPENDED -> OPEN."""

    command_id: Id
    market_id: Id


class SuspendMarket(Wire, frozen=True, kw_only=True):
    command_id: Id
    market_id: Id


class TurnInPlay(Wire, frozen=True, kw_only=True):
    """LAPSE (and MARKET_ON_CLOSE) orders lapse, PERSIST orders stay."""

    command_id: Id
    market_id: Id
    bet_delay_ms: int = 0


class RemoveRunner(Wire, frozen=True, kw_only=True):
    """The runner is withdrawn: its unmatched bets lapse, its matched bets are void."""

    command_id: Id
    market_id: Id
    runner_id: int


class CloseMarket(Wire, frozen=True, kw_only=True):
    command_id: Id
    market_id: Id


class SettleMarket(Wire, frozen=True, kw_only=True):
    """Settle on a result: ``winners`` win in full; ``dead_heat`` runners share
    the places left (number_of_winners - len(winners)) equally."""

    command_id: Id
    market_id: Id
    winners: list[int]
    dead_heat: list[int] = []
    discounts_bp: dict[str, int] = {}


class VoidMarket(Wire, frozen=True, kw_only=True):
    command_id: Id
    market_id: Id


class PlaceOrders(Wire, frozen=True, kw_only=True):
    command_id: Id
    market_id: Id
    player_id: Id
    instructions: list[PlaceInstruction]
    market_version: int | None = None


class CancelOrders(Wire, frozen=True, kw_only=True):
    """No instructions: cancel all the player's unmatched bets on the market."""

    command_id: Id
    market_id: Id
    player_id: Id
    instructions: list[CancelInstruction] = []


class ReplaceOrders(Wire, frozen=True, kw_only=True):
    command_id: Id
    market_id: Id
    player_id: Id
    instructions: list[ReplaceInstruction]
    market_version: int | None = None


class UpdateOrders(Wire, frozen=True, kw_only=True):
    command_id: Id
    market_id: Id
    player_id: Id
    instructions: list[UpdateInstruction]


MarketCommand = Union[
    DefineMarket,
    OpenMarket,
    SuspendMarket,
    TurnInPlay,
    RemoveRunner,
    CloseMarket,
    SettleMarket,
    VoidMarket,
    PlaceOrders,
    CancelOrders,
    ReplaceOrders,
    UpdateOrders,
]

# --------------------------------------------------------------------------
# Wallet commands (the wallet is the authority on money)


class Deposit(Wire, frozen=True, kw_only=True):
    command_id: Id
    wallet_id: Id
    amount: int


class Withdraw(Wire, frozen=True, kw_only=True):
    command_id: Id
    wallet_id: Id
    amount: int


class ReserveExposure(Wire, frozen=True, kw_only=True):
    """Phase 1 of a placement: hold the order's maximum loss. The command id is
    the reservation id."""

    command_id: Id
    wallet_id: Id
    market_id: Id
    amount: int


class ApplyMarketExposure(Wire, frozen=True, kw_only=True):
    """Phase 2: the market's computed exposure replaces the reservations
    ``release``. ``market_seq`` orders reports from one market: an older one
    than the last applied only releases its reservations."""

    command_id: Id
    wallet_id: Id
    market_id: Id
    exposure: int
    market_seq: int
    release: list[str] = []


class ApplySettlement(Wire, frozen=True, kw_only=True):
    """Move the market's net result into the balance and clear its exposure."""

    command_id: Id
    wallet_id: Id
    market_id: Id
    pnl: int
    commission: int


WalletCommand = Union[Deposit, Withdraw, ReserveExposure, ApplyMarketExposure, ApplySettlement]
Command = Union[MarketCommand, WalletCommand]

# --------------------------------------------------------------------------
# Market events: every one carries the market id, its sequence number in the
# market's stream (the aggregate version after applying it) and the time.


class Fill(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One match against a resting (maker) order, at the maker's price.

    Both sides stake ``size``: the back wins back_profit(size, price_tick) if
    the runner wins and loses ``size`` otherwise; the lay mirrors it exactly.
    """

    maker_bet_id: int
    maker_player_id: str
    price_tick: int
    size: int


class PlayerResult(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    player_id: str
    pnl: int
    commission: int


class MarketDefined(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    runners: list[int]
    number_of_winners: int
    min_stake: int
    commission_rate_bp: int


class MarketOpened(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    version: int


class MarketSuspended(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    version: int


class MarketTurnedInPlay(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    version: int
    bet_delay_ms: int


class RunnerRemoved(Wire, frozen=True, kw_only=True):
    """The runner's matched bets are void (listed), its unmatched bets lapsed
    (OrderLapsed events before this one)."""

    market_id: str
    seq: int
    at: int
    version: int
    runner_id: int
    voided_bet_ids: list[int] = []


class MarketClosed(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    version: int


class MarketSettled(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    version: int
    winners: list[int]
    dead_heat: list[int]
    results: list[PlayerResult]


class MarketVoided(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    version: int
    results: list[PlayerResult]


class OrderPlaced(Wire, frozen=True, kw_only=True):
    """An order was accepted and matched against the book at once (``fills``,
    best price first). Its remainder rests unless it is FILL_OR_KILL (then an
    OrderExpired follows). ``replaces``: the bet id a ReplaceOrders cancelled."""

    market_id: str
    seq: int
    at: int
    bet_id: int
    player_id: str
    runner_id: int
    side: str
    price_tick: int
    size: int
    persistence: str
    time_in_force: str | None = None
    min_fill_size: int | None = None
    customer_ref: str | None = None
    fills: list[Fill] = []
    replaces: int | None = None


class OrderCancelled(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    bet_id: int
    size_cancelled: int


class OrderLapsed(Wire, frozen=True, kw_only=True):
    """Unmatched size removed by the market, not the player: reason is
    IN_PLAY, RUNNER_REMOVED or MARKET_CLOSED."""

    market_id: str
    seq: int
    at: int
    bet_id: int
    size_lapsed: int
    reason: str


class OrderExpired(Wire, frozen=True, kw_only=True):
    """The part of a FILL_OR_KILL order that did not fill."""

    market_id: str
    seq: int
    at: int
    bet_id: int
    size_expired: int


class OrderUpdated(Wire, frozen=True, kw_only=True):
    market_id: str
    seq: int
    at: int
    bet_id: int
    persistence: str


MarketEvent = Union[
    MarketDefined,
    MarketOpened,
    MarketSuspended,
    MarketTurnedInPlay,
    RunnerRemoved,
    MarketClosed,
    MarketSettled,
    MarketVoided,
    OrderPlaced,
    OrderCancelled,
    OrderLapsed,
    OrderExpired,
    OrderUpdated,
]

# --------------------------------------------------------------------------
# Wallet events


class FundsDeposited(Wire, frozen=True, kw_only=True):
    wallet_id: str
    seq: int
    at: int
    command_id: str
    amount: int


class FundsWithdrawn(Wire, frozen=True, kw_only=True):
    wallet_id: str
    seq: int
    at: int
    command_id: str
    amount: int


class ExposureReserved(Wire, frozen=True, kw_only=True):
    wallet_id: str
    seq: int
    at: int
    reservation_id: str
    market_id: str
    amount: int


class MarketExposureApplied(Wire, frozen=True, kw_only=True):
    """``exposure`` is None when the report was older than the last applied
    (only the reservations were released)."""

    wallet_id: str
    seq: int
    at: int
    market_id: str
    exposure: int | None
    market_seq: int
    released: list[str] = []


class SettlementApplied(Wire, frozen=True, kw_only=True):
    wallet_id: str
    seq: int
    at: int
    command_id: str
    market_id: str
    pnl: int
    commission: int


WalletEvent = Union[
    FundsDeposited, FundsWithdrawn, ExposureReserved, MarketExposureApplied, SettlementApplied
]
Event = Union[MarketEvent, WalletEvent]

# --------------------------------------------------------------------------
# Results


class InstructionReport(Wire, frozen=True, kw_only=True):
    """Like API-NG's PlaceInstructionReport: one per instruction, in order."""

    index: int
    status: Status
    error_code: str | None = None
    bet_id: int | None = None
    size_matched: int = 0
    matched_value: int = 0   # sum of fill size x price in hundredths: averagePriceMatched's numerator


class CommandResult(Wire, frozen=True, kw_only=True):
    """The answer to any command. SUCCESS: every instruction succeeded. FAILURE
    with PROCESSED_WITH_ERRORS: some instructions succeeded and some failed (see
    ``reports``); FAILURE with any other code: nothing changed. A failed
    instruction never changes anything. ``events``: what to persist, in order.
    ``exposures``:
    after a market command, player id -> new exposure on the market for every
    player it touched, with ``market_seq`` to order them in the wallets."""

    command_id: str
    status: Status
    error_code: str | None = None
    reports: list[InstructionReport] = []
    events: list[Event] = []
    exposures: dict[str, int] = {}
    market_seq: int = 0


# --------------------------------------------------------------------------
# Codecs: build once, reuse (Serve deployments build their own in __init__).

json_encoder = msgspec.json.Encoder()
msgpack_encoder = msgspec.msgpack.Encoder()
command_json = msgspec.json.Decoder(Command)
command_msgpack = msgspec.msgpack.Decoder(Command)
event_json = msgspec.json.Decoder(Event)
event_msgpack = msgspec.msgpack.Decoder(Event)
result_json = msgspec.json.Decoder(CommandResult)
result_msgpack = msgspec.msgpack.Decoder(CommandResult)

MARKET_COMMANDS = MarketCommand.__args__
WALLET_COMMANDS = WalletCommand.__args__
MARKET_EVENTS = MarketEvent.__args__
WALLET_EVENTS = WalletEvent.__args__
