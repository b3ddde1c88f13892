"""The wallet's direct paths against decide-then-evolve, over random histories.

``wallet.handle`` sends a ReserveExposure or an ApplyMarketExposure for an existing
wallet straight to its kind's decision and applies the one event with that event's
own evolve function. This machine feeds the same random commands (valid and not: junk
amounts, repeated and foreign ids, releases of unknown, foreign-market and repeated
reservations, stale reports, another wallet's commands, settlements) to two wallets:
one through ``handle``, one through a reference that does it the plain way: the two
kinds' rules written out here (the oracle), ``decide`` for the rest, then ``evolve``
each event.

After every step both give equal results (status, code, events) and equal states, and
replaying the direct wallet's events through ``evolve`` rebuilds its state exactly.
"""

from __future__ import annotations

import copy

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from exchange.domain import wallet
from exchange.domain import messages as m
from exchange.domain.context import Context

W = "w1"
MARKETS = ("1.1", "1.2")
AMOUNTS = st.one_of(st.integers(0, 5_000), st.sampled_from([-1, True, "10", 10**16, 2.5]))


def reference_decide(state, cmd, ctx):
    """The two kinds' rules as written out before the direct paths (the oracle); the
    other kinds through ``wallet.decide``."""
    kind = type(cmd)
    if kind not in (m.ReserveExposure, m.ApplyMarketExposure) or (
            state is not None and cmd.wallet_id != state.wallet_id):
        return wallet.decide(state, cmd, ctx)
    seq = (state.seq if state is not None else 0) + 1
    if kind is m.ReserveExposure:
        if state is not None and state.is_known(cmd.command_id):
            return "DUPLICATE_TRANSACTION"
        if type(cmd.amount) is not int or not 0 <= cmd.amount <= wallet.MAX_AMOUNT:
            return "INVALID_AMOUNT"
        if state is None or cmd.amount > state.available:
            return "INSUFFICIENT_FUNDS"
        return [m.ExposureReserved(wallet_id=cmd.wallet_id, seq=seq, at=ctx.now_ms, reservation_id=cmd.command_id,
                                   market_id=cmd.market_id, amount=cmd.amount)]
    if type(cmd.exposure) is not int or not 0 <= cmd.exposure <= wallet.MAX_AMOUNT \
            or type(cmd.market_seq) is not int:
        return "INVALID_AMOUNT"
    if state is None:
        return "INSUFFICIENT_FUNDS" if cmd.exposure else []
    release = [r for r in dict.fromkeys(cmd.release) if state.reservations.get(r, ("",))[0] == cmd.market_id]
    current = cmd.market_id not in state.settled and cmd.market_seq > state.market_seqs.get(cmd.market_id, -1)
    if not release and not current:
        return []
    return [m.MarketExposureApplied(wallet_id=cmd.wallet_id, seq=seq, at=ctx.now_ms, market_id=cmd.market_id,
                                    exposure=cmd.exposure if current else None, market_seq=cmd.market_seq,
                                    released=release)]


def reference_handle(state, cmd, ctx):
    out = reference_decide(state, cmd, ctx)
    if type(out) is str:
        return state, m.CommandResult(command_id=cmd.command_id, status=m.FAILURE, error_code=out)
    for event in out:
        state = wallet.evolve(state, event)
    return state, m.CommandResult(command_id=cmd.command_id, status=m.SUCCESS, events=out)


class DirectPathsMatchThePlainWay(RuleBasedStateMachine):
    @initialize(funds=st.integers(0, 20_000))
    def open_wallets(self, funds):
        self.now = 1_000
        self.n = 0
        self.ids: list[str] = []            # reservation and payment ids used so far
        self.seqs = {mk: 0 for mk in MARKETS}
        self.fast = self.plain = None
        self.events: list = []
        if funds:
            self.step(m.Deposit(command_id="d0", wallet_id=W, amount=funds))

    def fresh(self) -> str:
        self.n += 1
        return f"c{self.n}"

    def step(self, cmd, advance: int = 0):
        self.now += advance
        ctx = Context(self.now)
        plain_before = copy.deepcopy(self.plain)
        self.fast, got = wallet.handle(self.fast, cmd, ctx)
        self.plain, want = reference_handle(plain_before, cmd, ctx)
        assert (got.status, got.error_code, got.events) == (want.status, want.error_code, want.events), cmd
        assert (self.fast.snapshot() if self.fast else None) == (self.plain.snapshot() if self.plain else None)
        self.events.extend(got.events)
        return got

    @rule(amount=AMOUNTS, market=st.sampled_from(MARKETS), reuse=st.booleans(), other=st.booleans(),
          advance=st.sampled_from([0, 1, 60_000, wallet.RESERVATION_IDS_KEPT_MS]))
    def reserve(self, amount, market, reuse, other, advance):
        rid = self.ids[-1] if reuse and self.ids else self.fresh()
        got = self.step(m.ReserveExposure(command_id=rid, wallet_id="w2" if other else W, market_id=market,
                                          amount=amount), advance)
        if got.status == m.SUCCESS:
            self.ids.append(rid)

    @rule(exposure=AMOUNTS, market=st.sampled_from(MARKETS), seq_step=st.sampled_from([1, 1, 0, -1]),
          picks=st.lists(st.integers(0, 30), max_size=3), unknown=st.booleans(),
          junk_seq=st.booleans())
    def report(self, exposure, market, seq_step, picks, unknown, junk_seq):
        self.seqs[market] += seq_step
        release = [self.ids[-1 - i % len(self.ids)] for i in picks] if self.ids else []
        if unknown:
            release.append("never-reserved")
        self.step(m.ApplyMarketExposure(command_id=self.fresh(), wallet_id=W, market_id=market, exposure=exposure,
                                        market_seq="7" if junk_seq else self.seqs[market], release=release))

    @rule(amount=st.integers(1, 3_000))
    def move_money(self, amount):
        rid = self.fresh()
        got = self.step(m.Withdraw(command_id=rid, wallet_id=W, amount=amount) if amount % 2 else
                        m.Deposit(command_id=rid, wallet_id=W, amount=amount))
        if got.status == m.SUCCESS:
            self.ids.append(rid)

    @rule(market=st.sampled_from(MARKETS), pnl=st.integers(-2_000, 2_000))
    def settle(self, market, pnl):
        self.step(m.ApplySettlement(command_id=self.fresh(), wallet_id=W, market_id=market, pnl=pnl,
                                    commission=max(0, pnl) // 20))

    @invariant()
    def replay_rebuilds_the_state(self):
        state = None
        for event in self.events:
            state = wallet.evolve(state, event)
        assert (state.snapshot() if state else None) == (self.fast.snapshot() if self.fast else None)


TestDirectPathsMatchThePlainWay = DirectPathsMatchThePlainWay.TestCase
