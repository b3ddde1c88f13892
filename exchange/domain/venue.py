"""The venue: markets and wallets wired together the way the actors wire them.

Owns nothing of its own but the routing: a pure, single-threaded reference
model of the whole exchange. Property tests check whole-exchange invariants on
it (money conservation, available never negative, replay), and the actor layer
follows the same steps across processes:

- place / replace, per instruction: the market pre-checks the instruction
  (pure ``decide``); the player's wallet reserves the order's maximum loss
  (INSUFFICIENT_FUNDS if it cannot); the market handles it; every player the
  command touched gets the market's new exposure, the taker's releasing the
  reservation.
- cancel / update: the market handles it, exposures are applied.
- lifecycle: the market handles it and exposures are applied; settlement and
  void then apply each player's result to his wallet.

Every event goes to ``journal`` in order; ``Venue.replay(journal)`` rebuilds
the same state. Ids: the venue derives instruction and reservation ids from the
command id and the instruction index.

Must never do I/O or read a clock: ``ctx`` comes with every call.
"""

from __future__ import annotations

from . import codes, market, wallet
from .context import Context
from .messages import (
    FAILURE,
    SUCCESS,
    ApplyMarketExposure,
    ApplySettlement,
    CommandResult,
    Deposit,
    InstructionReport,
    MarketSettled,
    MarketVoided,
    PlaceOrders,
    ReplaceOrders,
    ReserveExposure,
    Withdraw,
    MARKET_COMMANDS,
    MARKET_EVENTS,
)
from .money import max_loss


class Venue:
    def __init__(self) -> None:
        self.markets: dict[str, market.MarketState] = {}
        self.wallets: dict[str, wallet.WalletState] = {}
        self.journal: list = []

    # ------------------------------------------------------------ reading

    def available(self, player_id: str) -> int:
        w = self.wallets.get(player_id)
        return w.available if w is not None else 0

    def snapshot(self) -> dict:
        return {
            "markets": {k: m.snapshot() for k, m in sorted(self.markets.items())},
            "wallets": {k: w.snapshot() for k, w in sorted(self.wallets.items())},
        }

    @classmethod
    def replay(cls, events) -> "Venue":
        venue = cls()
        for event in events:
            venue._evolve(event)
        return venue

    def _evolve(self, event) -> None:
        self.journal.append(event)
        if isinstance(event, MARKET_EVENTS):
            self.markets[event.market_id] = market.evolve(self.markets.get(event.market_id), event)
        else:
            self.wallets[event.wallet_id] = wallet.evolve(self.wallets.get(event.wallet_id), event)

    # ------------------------------------------------------------ commands

    def execute(self, cmd, ctx: Context) -> CommandResult:
        kind = type(cmd)
        if kind in (Deposit, Withdraw):
            return self._wallet(cmd, ctx)
        if kind in (PlaceOrders, ReplaceOrders):
            return self._place_like(cmd, ctx)
        if kind in MARKET_COMMANDS:
            return self._market(cmd, ctx)
        return CommandResult(command_id=cmd.command_id, status=FAILURE, error_code=codes.INVALID_MARKET_ID)

    def _wallet(self, cmd, ctx: Context) -> CommandResult:
        state, result = wallet.handle(self.wallets.get(cmd.wallet_id), cmd, ctx)
        if state is not None:
            self.wallets[cmd.wallet_id] = state
        self.journal.extend(result.events)
        return result

    def _market(self, cmd, ctx: Context) -> CommandResult:
        state, result = market.handle(self.markets.get(cmd.market_id), cmd, ctx)
        if state is not None:
            self.markets[cmd.market_id] = state
        self.journal.extend(result.events)
        self._apply_exposures(cmd.market_id, result, ctx, release={})
        for event in result.events:
            if type(event) in (MarketSettled, MarketVoided):
                for r in event.results:
                    self._wallet(
                        ApplySettlement(
                            command_id=f"{cmd.command_id}/{r.player_id}",
                            wallet_id=r.player_id,
                            market_id=event.market_id,
                            pnl=r.pnl,
                            commission=r.commission,
                        ),
                        ctx,
                    )
        return result

    def _apply_exposures(self, market_id: str, result: CommandResult, ctx: Context, release: dict) -> None:
        exposures = dict(result.exposures)
        for player_id in release:  # a reservation is released even if nothing changed
            if player_id not in exposures:
                exposures[player_id] = self.markets[market_id].exposure_of(player_id)
        for player_id, amount in exposures.items():
            if player_id not in self.wallets:
                continue
            self._wallet(
                ApplyMarketExposure(
                    command_id=f"{result.command_id}/x/{player_id}",
                    wallet_id=player_id,
                    market_id=market_id,
                    exposure=amount,
                    market_seq=result.market_seq,
                    release=release.get(player_id, []),
                ),
                ctx,
            )

    def _place_like(self, cmd, ctx: Context) -> CommandResult:
        """Place or replace instruction by instruction, each with its own reservation."""
        state = self.markets.get(cmd.market_id)
        if state is None:
            return self._market(cmd, ctx)  # the market refuses: INVALID_MARKET_ID
        is_place = type(cmd) is PlaceOrders
        count = len(cmd.instructions)
        if not 0 < count <= market.MAX_INSTRUCTIONS or market._status_refusal(state) is not None or (
            cmd.market_version is not None and cmd.market_version != state.version
        ):
            return self._market(cmd, ctx)  # refused as a whole by the market
        player_id = cmd.player_id
        reports: list[InstructionReport] = []
        events: list = []
        failed = 0
        last_code = None
        for index, ins in enumerate(cmd.instructions):
            sub_id = f"{cmd.command_id}/{index}"
            if is_place:
                out = market.decide_place(state, player_id, ins, ctx.now_ms, state.seq)
            else:
                out = market.decide_replace(state, player_id, ins, ctx.now_ms, state.seq)
            code = out if type(out) is str else None
            if code is None:
                placed = out[0] if is_place else out[1]  # replace: OrderCancelled, OrderPlaced
                amount = max_loss(placed.side, placed.size, placed.price_tick)
                reserved = self._wallet(
                    ReserveExposure(command_id=sub_id, wallet_id=player_id, market_id=cmd.market_id, amount=amount),
                    ctx,
                )
                if reserved.status != SUCCESS:
                    code = reserved.error_code
            if code is not None:
                failed += 1
                last_code = code
                reports.append(InstructionReport(index=index, status=FAILURE, error_code=code))
                continue
            single = type(cmd)(
                command_id=sub_id,
                market_id=cmd.market_id,
                player_id=player_id,
                instructions=[ins],
            )
            state, result = market.handle(state, single, ctx)
            self.journal.extend(result.events)
            events.extend(result.events)
            self._apply_exposures(cmd.market_id, result, ctx, release={player_id: [sub_id]})
            report = result.reports[0]
            reports.append(
                InstructionReport(
                    index=index,
                    status=report.status,
                    error_code=report.error_code,
                    bet_id=report.bet_id,
                    size_matched=report.size_matched,
                    matched_value=report.matched_value,
                )
            )
        if failed == 0:
            status, error = SUCCESS, None
        else:
            status = FAILURE
            error = last_code if count == 1 else codes.PROCESSED_WITH_ERRORS
        return CommandResult(
            command_id=cmd.command_id,
            status=status,
            error_code=error,
            reports=reports,
            events=events,
            market_seq=state.seq,
        )


__all__ = ["Venue", "Context"]
