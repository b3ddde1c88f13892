"""The wallet aggregate: one player's money, the authority on funds.

Owns the balance, the exposure held per market, the open reservations and the
idempotency of every money movement. available_to_bet = balance - sum of market
exposures - sum of open reservations; nothing the wallet accepts makes it
negative except a market's own report of exposure, which by construction never
exceeds what was reserved for it.

The two-phase placement the actors follow:
1. ``ReserveExposure``: hold the order's maximum loss (``money.max_loss``), or
   refuse with INSUFFICIENT_FUNDS.
2. ``ApplyMarketExposure``: the market's computed exposure for the player
   replaces the market's held exposure and releases the reservations named.
   Reports carry the market's sequence number; an older report than the last
   applied only releases its reservations. Matching never raises anyone's
   exposure, so a maker's report after a fill only ever releases.
``ApplySettlement`` moves a settled market's P&L less commission into the
balance and drops its exposure, once per market.

Idempotency: Deposit, Withdraw and ReserveExposure are keyed by command id, and
ApplySettlement by market id: a repeat is refused with DUPLICATE_TRANSACTION and
changes nothing. Deposit and withdrawal ids are kept for good (a payment provider's
retry must never pay twice; a wallet sees few). A reservation id is kept while its
reservation is open and for at least RESERVATION_IDS_KEPT_MS after it was made (at
most half as long again): a player placing all day would otherwise grow its wallet,
and every snapshot of it, by an id per order. The API derives a placement's command
id from its customerRef, so that is the window in which a repeated customerRef is a
duplicate (Betfair's is 60 seconds); a repeat after it is a new placement.

``decide(state, command, ctx)`` is pure; ``evolve(state, event)`` mutates and
returns the state, never validates, never raises on events ``decide`` made.
Must never do I/O or read a clock.
"""

from __future__ import annotations

from . import codes
from .context import Context
from .messages import (
    FAILURE,
    SUCCESS,
    ApplyMarketExposure,
    ApplySettlement,
    CommandResult,
    Deposit,
    ExposureReserved,
    FundsDeposited,
    FundsWithdrawn,
    MarketExposureApplied,
    ReserveExposure,
    SettlementApplied,
    Withdraw,
)

MAX_AMOUNT = 10**15  # minor units; anything larger is a typo or an attack
RESERVATION_IDS_KEPT_MS = 15 * 60_000   # at least; see the module docstring


class _Empty(dict):
    """The shared, read-only empty mapping of every wallet that has not needed its own.

    A million idle wallets would otherwise hold three million empty dicts: each wallet
    gets a real dict on its first write. Pickled by reference (snapshots stay small).
    """

    __slots__ = ()

    def __reduce__(self):
        return "EMPTY"

    def _read_only(self, *args, **kwargs):
        raise TypeError("the shared empty mapping is read-only")

    __setitem__ = __delitem__ = pop = popitem = setdefault = update = clear = _read_only


EMPTY = _Empty()
NONE_SETTLED: frozenset = frozenset()


class WalletState:
    __slots__ = (
        "wallet_id",
        "seq",
        "balance",
        "exposures",
        "market_seqs",
        "reservations",
        "total_exposure",
        "total_reserved",
        "seen",
        "reserved_ids",
        "settled",
        "deposited",
        "withdrawn",
        "commission_paid",
    )

    def __init__(self, wallet_id: str) -> None:
        self.wallet_id = wallet_id
        self.seq = 0
        self.balance = 0
        # EMPTY / NONE_SETTLED until the first write (see _Empty)
        self.exposures: dict[str, int] = EMPTY
        self.market_seqs: dict[str, int] = EMPTY
        self.reservations: dict[str, tuple[str, int]] = EMPTY  # id -> (market id, amount)
        self.total_exposure = 0
        self.total_reserved = 0
        self.seen: set[str] = set()  # command ids of deposits and withdrawals
        # recent reservation ids -> when reserved (ms), oldest first (see the module docstring)
        self.reserved_ids: dict[str, int] = EMPTY
        self.settled: set[str] | frozenset = NONE_SETTLED  # market ids
        self.deposited = 0
        self.withdrawn = 0
        self.commission_paid = 0

    def __setstate__(self, state) -> None:
        """Loads a snapshot; one pickled before reserved_ids existed has none (and its
        reservation ids in ``seen``, where they stay)."""
        self.reserved_ids = EMPTY
        slots = state[1] if isinstance(state, tuple) else state
        for name, value in (slots or {}).items():
            setattr(self, name, value)

    def is_known(self, command_id: str) -> bool:
        """Whether a deposit, withdrawal or reservation already used this id."""
        return command_id in self.seen or command_id in self.reserved_ids or command_id in self.reservations

    @property
    def available(self) -> int:
        return self.balance - self.total_exposure - self.total_reserved

    def snapshot(self) -> dict:
        return {
            "wallet_id": self.wallet_id,
            "seq": self.seq,
            "balance": self.balance,
            "exposures": dict(sorted(self.exposures.items())),
            "market_seqs": dict(sorted(self.market_seqs.items())),
            "reservations": dict(sorted(self.reservations.items())),
            "total_exposure": self.total_exposure,
            "total_reserved": self.total_reserved,
            "seen": sorted(self.seen),
            "reserved_ids": dict(sorted(self.reserved_ids.items())),
            "settled": sorted(self.settled),
            "deposited": self.deposited,
            "withdrawn": self.withdrawn,
            "commission_paid": self.commission_paid,
        }


def _amount_ok(amount, minimum: int = 1) -> bool:
    return type(amount) is int and minimum <= amount <= MAX_AMOUNT


def decide(state: WalletState | None, cmd, ctx: Context) -> list | str:
    """Events for a wallet command, or a reason code. ``state`` None: no wallet yet."""
    now = ctx.now_ms
    wallet_id = cmd.wallet_id
    if state is not None and wallet_id != state.wallet_id:
        return codes.INVALID_WALLET_ID
    seq = (state.seq if state is not None else 0) + 1
    kind = type(cmd)
    if kind is Deposit:
        if state is not None and state.is_known(cmd.command_id):
            return codes.DUPLICATE_TRANSACTION
        if not _amount_ok(cmd.amount):
            return codes.INVALID_AMOUNT
        return [FundsDeposited(wallet_id=wallet_id, seq=seq, at=now, command_id=cmd.command_id, amount=cmd.amount)]
    if kind is Withdraw:
        if state is not None and state.is_known(cmd.command_id):
            return codes.DUPLICATE_TRANSACTION
        if not _amount_ok(cmd.amount):
            return codes.INVALID_AMOUNT
        if state is None or cmd.amount > state.available:
            return codes.INSUFFICIENT_FUNDS
        return [FundsWithdrawn(wallet_id=wallet_id, seq=seq, at=now, command_id=cmd.command_id, amount=cmd.amount)]
    if kind is ReserveExposure:
        return _decide_reserve(state, cmd, now)
    if kind is ApplyMarketExposure:
        return _decide_apply(state, cmd, now)
    if kind is ApplySettlement:
        if state is None:
            return codes.INVALID_WALLET_ID
        if cmd.market_id in state.settled:
            return codes.DUPLICATE_TRANSACTION
        if type(cmd.pnl) is not int or abs(cmd.pnl) > MAX_AMOUNT or not _amount_ok(cmd.commission, 0):
            return codes.INVALID_AMOUNT
        return [
            SettlementApplied(
                wallet_id=wallet_id,
                seq=seq,
                at=now,
                command_id=cmd.command_id,
                market_id=cmd.market_id,
                pnl=cmd.pnl,
                commission=cmd.commission,
            )
        ]
    return codes.INVALID_WALLET_ID


# The two kinds a placement sends (a reservation from the gateway, the market's report
# after it): decided here for ``decide``, and called straight from ``handle``, which then
# applies their one event with its own evolve function: the same events and state as
# decide-then-evolve (tests/property/test_wallet_hot_paths.py), without the dispatch.


def _decide_reserve(state: WalletState | None, cmd: ReserveExposure, now: int) -> list | str:
    if state is not None and state.is_known(cmd.command_id):
        return codes.DUPLICATE_TRANSACTION
    if not _amount_ok(cmd.amount, 0):
        return codes.INVALID_AMOUNT
    if state is None or cmd.amount > state.available:
        return codes.INSUFFICIENT_FUNDS
    return [ExposureReserved(wallet_id=cmd.wallet_id, seq=state.seq + 1, at=now, reservation_id=cmd.command_id,
                             market_id=cmd.market_id, amount=cmd.amount)]


def _decide_apply(state: WalletState | None, cmd: ApplyMarketExposure, now: int) -> list | str:
    if not _amount_ok(cmd.exposure, 0) or type(cmd.market_seq) is not int:
        return codes.INVALID_AMOUNT
    if state is None:
        return codes.INSUFFICIENT_FUNDS if cmd.exposure else []
    market_id = cmd.market_id
    release = cmd.release
    if release:
        reservations = state.reservations
        release = [r for r in (dict.fromkeys(release) if len(release) > 1 else release)
                   if reservations.get(r, _NOT_RESERVED)[0] == market_id]
    current = market_id not in state.settled and cmd.market_seq > state.market_seqs.get(market_id, -1)
    if not release and not current:
        return []  # a repeat or a stale report: nothing to do
    return [MarketExposureApplied(wallet_id=cmd.wallet_id, seq=state.seq + 1, at=now, market_id=market_id,
                                  exposure=cmd.exposure if current else None, market_seq=cmd.market_seq,
                                  released=release)]


_NOT_RESERVED = ("",)


def _on_deposited(s: WalletState | None, e: FundsDeposited) -> WalletState:
    if s is None:
        s = WalletState(e.wallet_id)
    s.balance += e.amount
    s.deposited += e.amount
    s.seen.add(e.command_id)
    s.seq = e.seq
    return s


def _on_withdrawn(s: WalletState, e: FundsWithdrawn) -> WalletState:
    s.balance -= e.amount
    s.withdrawn += e.amount
    s.seen.add(e.command_id)
    s.seq = e.seq
    return s


def _on_reserved(s: WalletState, e: ExposureReserved) -> WalletState:
    if s.reservations is EMPTY:
        s.reservations = {}
    s.reservations[e.reservation_id] = (e.market_id, e.amount)
    s.total_reserved += e.amount
    ids = s.reserved_ids
    if ids is EMPTY:
        ids = s.reserved_ids = {}
    ids[e.reservation_id] = e.at
    # Forget ids older than the window once the oldest is half a window past it: a
    # rebuild at most every half window keeps this O(1) per reservation (deleting from
    # a dict's front one by one would slow every later look at its oldest entry)
    if e.at - ids[next(iter(ids))] > RESERVATION_IDS_KEPT_MS * 3 // 2:
        cutoff = e.at - RESERVATION_IDS_KEPT_MS
        s.reserved_ids = {r: at for r, at in ids.items() if at >= cutoff}
    s.seq = e.seq
    return s


def _on_exposure_applied(s: WalletState, e: MarketExposureApplied) -> WalletState:
    for reservation_id in e.released:
        _, amount = s.reservations.pop(reservation_id)
        s.total_reserved -= amount
    if e.exposure is not None:
        if s.exposures is EMPTY:
            s.exposures = {}
        if s.market_seqs is EMPTY:
            s.market_seqs = {}
        s.total_exposure += e.exposure - s.exposures.get(e.market_id, 0)
        if e.exposure:
            s.exposures[e.market_id] = e.exposure
        else:
            s.exposures.pop(e.market_id, None)
        s.market_seqs[e.market_id] = e.market_seq
    s.seq = e.seq
    return s


def _on_settlement_applied(s: WalletState, e: SettlementApplied) -> WalletState:
    market_id = e.market_id
    if market_id in s.exposures:
        s.total_exposure -= s.exposures.pop(market_id)
    for reservation_id in [r for r, (m, _) in s.reservations.items() if m == market_id]:
        s.total_reserved -= s.reservations.pop(reservation_id)[1]
    s.balance += e.pnl - e.commission
    s.commission_paid += e.commission
    if type(s.settled) is frozenset:      # NONE_SETTLED, or its copy from a snapshot
        s.settled = set()
    s.settled.add(market_id)
    s.seq = e.seq
    return s


_EVOLVE = {
    FundsDeposited: _on_deposited,
    FundsWithdrawn: _on_withdrawn,
    ExposureReserved: _on_reserved,
    MarketExposureApplied: _on_exposure_applied,
    SettlementApplied: _on_settlement_applied,
}


def evolve(state: WalletState | None, event) -> WalletState:
    """Apply one event (``state`` is None only before the first deposit)."""
    if state is None and type(event) is not FundsDeposited:
        state = WalletState(event.wallet_id)
    return _EVOLVE[type(event)](state, event)


def handle(state: WalletState | None, cmd, ctx: Context) -> tuple[WalletState | None, CommandResult]:
    direct = _DIRECT.get(type(cmd)) if state is not None and cmd.wallet_id == state.wallet_id else None
    if direct is not None:      # a reservation or a report: its decision and its one event's evolve
        decide_one, apply = direct
        out = decide_one(state, cmd, ctx.now_ms)
    else:
        out = decide(state, cmd, ctx)
    if type(out) is str:
        return state, CommandResult(command_id=cmd.command_id, status=FAILURE, error_code=out)
    if direct is not None:
        if out:
            apply(state, out[0])
    else:
        for event in out:
            state = evolve(state, event)
    return state, CommandResult(command_id=cmd.command_id, status=SUCCESS, events=out)


_DIRECT = {ReserveExposure: (_decide_reserve, _on_reserved),
           ApplyMarketExposure: (_decide_apply, _on_exposure_applied)}
