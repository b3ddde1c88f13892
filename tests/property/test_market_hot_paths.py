"""The market's fused hot paths against decide-then-evolve, over random histories.

``market.handle`` decides and evolves a one-instruction PlaceOrders or
CancelOrders in one pass (``_place_one``, ``_cancel_one``). This machine feeds
the same random commands (valid and not: junk prices, sizes, runners, refs,
self-matches, FILL_OR_KILL, partial cancels, suspensions, in-play, runner
removal, multi-winner markets) to two markets: one through ``handle``, one
through a reference that does it the plain way, the way ``handle`` did before
the paths were fused: ``decide_place``/``decide_cancel``, then ``evolve`` each
event, then read each touched player's exposure with ``exposure_of``.

After every step both give equal results (events, reports, exposures in the
same order, sequence) and equal states; replaying the fast market's events
through ``evolve`` rebuilds its state exactly.
"""

from __future__ import annotations

import pickle

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from exchange.domain import ladder, market
from exchange.domain import messages as m
from exchange.domain.context import Context

MARKET = "1.777"
PLAYERS = ("p0", "p1", "p2")
MID = ladder.parse_price("3.0")
PRICES = st.integers(MID - 6, MID + 6).map(ladder.price_text)
SIZES = st.integers(1, 60).map(lambda n: n * 50)
PERSISTENCES = st.sampled_from(["LAPSE", "LAPSE", "PERSIST", "MARKET_ON_CLOSE"])
REFS = st.sampled_from([None, None, None, None, None, "r1", "r2", "r3"])
JUNK = {  # one field of a placement at a time: what a client may get wrong
    "price": st.sampled_from(["3.00", "3.000", " 3.5", "3.01", "abc", "1.01", "1000", 3]),
    "size": st.sampled_from([99, 100, 0, -5, "100", True, 10**7]),
    "side": st.sampled_from(["X", "back"]),
    "runner_id": st.sampled_from([99, "101", True]),
    "persistence": st.sampled_from(["NEVER"]),
    "customer_ref": st.sampled_from(["", "x" * 33, 7]),
    "time_in_force": st.sampled_from(["FILL_OR_KILL", "FILL_OR_KILL", "GOOD_TILL"]),
    "min_fill_size": st.sampled_from([100, 0]),
}


def reference_handle(state, cmd, ctx):
    """``handle`` without its fused hot paths: decide, evolve, then read the exposures."""
    kind = type(cmd)
    if (
        state is not None
        and kind in (m.PlaceOrders, m.CancelOrders)
        and len(cmd.instructions) == 1
        and cmd.market_id == state.market_id
        and (kind is m.CancelOrders or cmd.market_version is None)
    ):
        decide = market.decide_place if kind is m.PlaceOrders else market.decide_cancel
        seq = state.seq
        out = decide(state, cmd.player_id, cmd.instructions[0], ctx.now_ms, seq)
        if type(out) is str:
            report = m.InstructionReport(index=0, status=m.FAILURE, error_code=out)
            return state, m.CommandResult(
                command_id=cmd.command_id, status=m.FAILURE, error_code=out, reports=[report], market_seq=seq
            )
        for e in out:
            state = market.evolve(state, e)
        fills = out[0].fills if kind is m.PlaceOrders else []
        touched = [cmd.player_id] + [f.maker_player_id for f in fills]
        report = m.InstructionReport(
            index=0, status=m.SUCCESS, bet_id=out[0].bet_id, size_matched=sum(f.size for f in fills),
            matched_value=sum(f.size * ladder.PRICES[f.price_tick] for f in fills),
        )
        return state, m.CommandResult(
            command_id=cmd.command_id,
            status=m.SUCCESS,
            reports=[report],
            events=out,
            exposures={p: state.exposure_of(p) for p in touched},
            market_seq=state.seq,
        )
    return market.handle(state, cmd, ctx)


class HotPathMachine(RuleBasedStateMachine):
    @initialize(runners=st.integers(2, 5), winners=st.sampled_from([1, 1, 2]), min_stake=st.sampled_from([100, 50]))
    def define(self, runners, winners, min_stake):
        self.runners = [101 + r for r in range(runners)]
        self.fast = None
        self.ref = None
        self.events: list = []
        self.clock = 1_000
        self.counter = 0
        winners = min(winners, runners)
        self.step(m.DefineMarket(command_id=self.cid(), market_id=MARKET, runners=list(self.runners),
                                 number_of_winners=winners, min_stake=min_stake))
        self.step(m.OpenMarket(command_id=self.cid(), market_id=MARKET))

    def cid(self) -> str:
        self.counter += 1
        return f"c{self.counter}"

    def step(self, cmd):
        self.clock += 3
        ctx = Context(self.clock)
        fast_before = self.fast
        self.fast, got = market.handle(self.fast, cmd, ctx)
        self.ref, want = reference_handle(self.ref, cmd, ctx)
        event(f"{type(cmd).__name__} {got.error_code or 'SUCCESS'}")
        if any(getattr(e, "fills", None) for e in got.events):
            event("matched")
        assert got == want, (cmd, got, want)
        assert list(got.exposures) == list(want.exposures)  # the taker first, then the makers
        assert (fast_before is None) or (self.fast is fast_before)  # evolved in place
        self.events.extend(got.events)

    # ------------------------------------------------------------ rules

    @rule(data=st.data(), player=st.sampled_from(PLAYERS), side=st.sampled_from(["BACK", "LAY"]), price=PRICES,
          size=SIZES, persistence=PERSISTENCES, ref=REFS, junk=st.sampled_from([None] * 3 + sorted(JUNK)))
    def place(self, data, player, side, price, size, persistence, ref, junk):
        fields = dict(runner_id=data.draw(st.sampled_from(self.runners)), side=side, price=price, size=size,
                      persistence=persistence, customer_ref=ref)
        if junk is not None:
            fields[junk] = data.draw(JUNK[junk])
            if junk == "time_in_force":
                fields["min_fill_size"] = data.draw(st.sampled_from([None, None, 100, 300, 0]))
        version = data.draw(st.sampled_from([None] * 9 + [self.fast.version, self.fast.version + 1]))
        self.step(m.PlaceOrders(command_id=self.cid(), market_id=MARKET, player_id=player,
                                instructions=[m.PlaceInstruction(**fields)], market_version=version))

    @rule(data=st.data(), size=st.integers(1, 40).map(lambda n: n * 100), deeper=st.integers(0, 3))
    def sweep(self, data, size, deeper):
        """Take the best of one side from another player, maybe a few levels deep."""
        live = list(self.fast.orders.values())
        if not live:
            return
        maker = data.draw(st.sampled_from(live))
        player = data.draw(st.sampled_from(PLAYERS))  # sometimes the maker himself: a self-match
        tick = ladder.shift(maker.tick, deeper if maker.is_back else -deeper)
        ins = m.PlaceInstruction(runner_id=self.runners[maker.runner_index], side="LAY" if maker.is_back else "BACK",
                                 price=ladder.price_text(tick), size=size)
        self.step(m.PlaceOrders(command_id=self.cid(), market_id=MARKET, player_id=player, instructions=[ins]))

    @rule(data=st.data(), reduction=st.sampled_from([None, None, None, 50, 100, 0, -1, 10**6, "5"]))
    def cancel(self, data, reduction):
        live = list(self.fast.orders.values())
        if live and data.draw(st.integers(0, 3)):
            order = data.draw(st.sampled_from(live))
            player = data.draw(st.sampled_from([order.player_id] * 6 + list(PLAYERS)))
            bet_id = order.bet_id
        else:
            player = data.draw(st.sampled_from(PLAYERS))
            bet_id = data.draw(st.one_of(st.integers(-1, self.fast.next_bet_id + 1), st.just("1")))
        self.step(m.CancelOrders(command_id=self.cid(), market_id=MARKET, player_id=player,
                                 instructions=[m.CancelInstruction(bet_id=bet_id, size_reduction=reduction)]))

    @rule(player=st.sampled_from(PLAYERS), price=PRICES)
    def two_instructions(self, player, price):
        """The general path, between hot-path steps."""
        ins = [m.PlaceInstruction(runner_id=self.runners[0], side=s, price=price, size=200) for s in ("BACK", "LAY")]
        self.step(m.PlaceOrders(command_id=self.cid(), market_id=MARKET, player_id=player, instructions=ins))

    @rule(player=st.sampled_from(PLAYERS))
    def other_market(self, player):
        ins = m.PlaceInstruction(runner_id=self.runners[0], side="BACK", price="3", size=200)
        self.step(m.PlaceOrders(command_id=self.cid(), market_id="1.888", player_id=player, instructions=[ins]))

    @rule(data=st.data(), kind=st.sampled_from(["none"] * 12 + ["suspend", "open", "open", "in_play", "remove", "close"]))
    def lifecycle(self, data, kind):
        """Now and then: the rules that depend on the market's status and runners."""
        if kind == "none" or (kind == "close" and data.draw(st.integers(0, 3)) != 0):
            return
        c = dict(command_id=self.cid(), market_id=MARKET)
        if kind == "suspend":
            cmd = m.SuspendMarket(**c)
        elif kind == "open":
            cmd = m.OpenMarket(**c)
        elif kind == "in_play":
            cmd = m.TurnInPlay(**c, bet_delay_ms=0)
        elif kind == "remove":
            cmd = m.RemoveRunner(**c, runner_id=data.draw(st.sampled_from(self.runners)))
        else:
            cmd = m.CloseMarket(**c)
        self.step(cmd)

    # ------------------------------------------------------------ invariants

    @invariant()
    def both_markets_are_the_same_and_replay_rebuilds_it(self):
        if self.fast is None:
            return
        snapshot = self.fast.snapshot()
        assert snapshot == self.ref.snapshot()
        assert market.replay(self.events).snapshot() == snapshot
        # a host's snapshot is a pickle (positions packed by MarketState.__getstate__)
        restored = pickle.loads(pickle.dumps(self.fast, protocol=pickle.HIGHEST_PROTOCOL))
        assert restored.snapshot() == snapshot
        for order in restored.orders.values():
            book = restored.books[order.runner_index]
            level = (book.backs if order.is_back else book.lays)[order.tick]
            assert any(o is order for o in level), "the book queues the order index's own objects"


TestHotPaths = HotPathMachine.TestCase
