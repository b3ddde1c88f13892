"""Whole-exchange invariants over random command sequences on the Venue.

After every step: no book is crossed at rest and its best-price pointers are
right; every live order is where the index says; each player's exposure equals
a brute force over every winner set the market allows; matched P&L nets to zero
across players in every outcome (every fill's back and lay agree); wallets hold
exactly the markets' exposures, no reservation is left open, and available is
never negative; money is conserved to the minor unit (balances + commission =
deposits - withdrawals). A refused command changes nothing. Settlement pays
exactly the brute-force result. At the end, replaying the journal rebuilds the
same state, and every event and result round-trips through JSON and msgpack.
"""

from __future__ import annotations

import itertools

from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from exchange.domain import codes, ladder, messages as m
from exchange.domain.context import Context
from exchange.domain.money import back_profit
from exchange.domain.venue import Venue

PLAYERS = ("p0", "p1", "p2", "p3")
RUNNERS = (11, 12, 13, 14)
MID = ladder.parse_price("3.0")
VALID_PRICES = st.integers(MID - 5, MID + 5).map(ladder.price_text)
PRICES = st.one_of(
    VALID_PRICES, VALID_PRICES, VALID_PRICES, VALID_PRICES,
    st.sampled_from(["1.01", "1000", "3.01", "0", "abc", "2.5"]),
)
SIZES = st.sampled_from([100, 100, 150, 200, 200, 333, 500, 500, 1000, 2500, 99, 0, -5])
LATE = 20  # steps before closing and settling are allowed: let the books fill first
AMOUNTS = st.sampled_from([1, 100, 1000, 5000, 20000, 0, -1])


def brute_force(events, state, player_id):
    """(exposure, matched P&L by winner set) from the market's own events."""
    active = [state.runners[r] for r in state.active]
    runner_of = {}
    fills = []  # (runner, is_back, tick, size)
    for e in events:
        if isinstance(e, m.OrderPlaced):
            runner_of[e.bet_id] = (e.runner_id, e.player_id, e.side == "BACK")
            for f in e.fills:
                if e.player_id == player_id:
                    fills.append((e.runner_id, e.side == "BACK", f.price_tick, f.size))
                if f.maker_player_id == player_id:
                    fills.append((e.runner_id, e.side != "BACK", f.price_tick, f.size))
    unmatched = [
        (state.runners[o.runner_index], o.is_back, o.tick, o.remaining)
        for o in state.orders.values()
        if o.player_id == player_id
    ]
    k = min(state.number_of_winners, len(active))
    matched_pnl = {}
    worst = 0
    for winners in itertools.combinations(active, k):
        def pnl(runner, is_back, tick, size):
            if runner not in active:
                return 0  # void
            won = back_profit(size, tick) if runner in winners else -size
            return won if is_back else -won
        matched = sum(pnl(*f) for f in fills)
        matched_pnl[winners] = matched
        total = matched + sum(min(0, pnl(*u)) for u in unmatched)
        worst = min(worst, total)
    return -worst, matched_pnl


class VenueMachine(RuleBasedStateMachine):
    @initialize()
    def setup(self):
        self.venue = Venue()
        self.clock = 1_000
        self.counter = 0
        self.steps = 0
        self.markets: list[str] = []
        for player in PLAYERS:
            self.run(m.Deposit(command_id=self.cid(), wallet_id=player, amount=10_000))
        self.new_market(winners=1)

    # ------------------------------------------------------------ helpers

    def cid(self) -> str:
        self.counter += 1
        return f"c{self.counter}"

    def ctx(self) -> Context:
        self.steps += 1
        self.clock += 7
        return Context(self.clock)

    def run(self, cmd):
        before = self.venue.snapshot()
        result = self.venue.execute(cmd, self.ctx())
        assert result.status in ("SUCCESS", "FAILURE")
        event(f"{type(cmd).__name__} {result.error_code or 'SUCCESS'}")
        if any(getattr(e, "fills", None) for e in result.events):
            event("matched")
        if result.status == "FAILURE" and result.error_code != codes.PROCESSED_WITH_ERRORS:
            assert self.venue.snapshot() == before, (cmd, result)
            assert result.events == []
        for r in result.reports:
            assert (r.status == "SUCCESS") == (r.error_code is None)
        assert m.result_json.decode(m.json_encoder.encode(result)) == result
        assert m.result_msgpack.decode(m.msgpack_encoder.encode(result)) == result
        return result

    def market_events(self, market_id):
        return [e for e in self.venue.journal if isinstance(e, m.MARKET_EVENTS) and e.market_id == market_id]

    def open_markets(self):
        return [k for k in self.markets if self.venue.markets[k].settlement is None]

    # ------------------------------------------------------------ rules

    @precondition(lambda self: len(self.markets) < 4)
    @rule(winners=st.sampled_from([1, 1, 2]))
    def new_market(self, winners):
        market_id = f"1.{len(self.markets) + 1}"
        self.markets.append(market_id)
        self.run(m.DefineMarket(command_id=self.cid(), market_id=market_id, runners=list(RUNNERS[: 3 + (winners > 1)]),
                                number_of_winners=winners))
        self.run(m.OpenMarket(command_id=self.cid(), market_id=market_id))

    @rule(player=st.sampled_from(PLAYERS), amount=AMOUNTS)
    def deposit(self, player, amount):
        self.run(m.Deposit(command_id=self.cid(), wallet_id=player, amount=amount))

    @rule(player=st.sampled_from(PLAYERS), amount=AMOUNTS)
    def withdraw(self, player, amount):
        self.run(m.Withdraw(command_id=self.cid(), wallet_id=player, amount=amount))

    @rule(data=st.data(), orders=st.integers(1, 6))
    def place(self, data, orders):
        for _ in range(orders):
            self.place_one(data)

    @rule(data=st.data(), size=SIZES, fok=st.sampled_from([None, None, "FILL_OR_KILL"]), deeper=st.integers(0, 2))
    def cross(self, data, size, fok, deeper):
        """Take a resting order (and maybe the levels behind it) from another player."""
        resting = [o for k in self.open_markets() for o in self.venue.markets[k].orders.values()]
        if not resting:
            self.place_one(data)
            return
        maker = data.draw(st.sampled_from(resting))
        market_id = next(k for k in self.markets if self.venue.markets[k].orders.get(maker.bet_id) is maker)
        state = self.venue.markets[market_id]
        player = data.draw(st.sampled_from([p for p in PLAYERS if p != maker.player_id]))
        tick = ladder.shift(maker.tick, deeper if maker.is_back else -deeper)
        min_fill = 100 if fok else None
        ins = m.PlaceInstruction(runner_id=state.runners[maker.runner_index], side="LAY" if maker.is_back else "BACK",
                                 price=ladder.price_text(tick), size=size, time_in_force=fok, min_fill_size=min_fill)
        self.run(m.PlaceOrders(command_id=self.cid(), market_id=market_id, player_id=player, instructions=[ins]))

    def place_one(self, data):
        market_id = data.draw(st.sampled_from(self.open_markets() or self.markets))
        player = data.draw(st.sampled_from(PLAYERS))
        runner = data.draw(st.sampled_from(RUNNERS[:3] * 3 + (14, 99)))
        side = data.draw(st.sampled_from(["BACK", "LAY"]))
        price = data.draw(PRICES)
        size = data.draw(SIZES)
        persistence = data.draw(st.sampled_from(["LAPSE", "PERSIST", "MARKET_ON_CLOSE"]))
        fok = data.draw(st.sampled_from([None, None, None, "FILL_OR_KILL"]))
        ref = data.draw(st.sampled_from([None, None, None, "r1", "r2"]))
        count = data.draw(st.sampled_from([1, 1, 1, 2]))
        min_fill = data.draw(st.sampled_from([None, 100, 300])) if fok else None
        ins = m.PlaceInstruction(runner_id=runner, side=side, price=price, size=size, persistence=persistence,
                                 time_in_force=fok, min_fill_size=min_fill, customer_ref=ref)
        second = m.PlaceInstruction(runner_id=RUNNERS[0], side="LAY" if side == "BACK" else "BACK", price=price, size=200)
        self.run(m.PlaceOrders(command_id=self.cid(), market_id=market_id, player_id=player,
                               instructions=[ins, second][:count]))

    @rule(data=st.data(), player=st.sampled_from(PLAYERS), reduction=st.sampled_from([None, None, 50, 100, 0, 10**6]))
    def cancel(self, data, player, reduction):
        market_id = data.draw(st.sampled_from(self.markets))
        state = self.venue.markets[market_id]
        bet_id = data.draw(st.integers(0, state.next_bet_id))
        self.run(m.CancelOrders(command_id=self.cid(), market_id=market_id, player_id=player,
                                instructions=[m.CancelInstruction(bet_id=bet_id, size_reduction=reduction)]))

    @rule(data=st.data(), player=st.sampled_from(PLAYERS))
    def cancel_all(self, data, player):
        market_id = data.draw(st.sampled_from(self.markets))
        self.run(m.CancelOrders(command_id=self.cid(), market_id=market_id, player_id=player))

    @rule(data=st.data(), price=PRICES)
    def replace(self, data, price):
        market_id = data.draw(st.sampled_from(self.markets))
        state = self.venue.markets[market_id]
        live = list(state.orders.values())
        order = data.draw(st.sampled_from(live)) if live else None
        player, bet_id = (order.player_id, order.bet_id) if order else ("p0", 1)
        self.run(m.ReplaceOrders(command_id=self.cid(), market_id=market_id, player_id=player,
                                 instructions=[m.ReplaceInstruction(bet_id=bet_id, new_price=price)]))

    @rule(data=st.data(), persistence=st.sampled_from(["LAPSE", "PERSIST", "MARKET_ON_CLOSE", "NEVER"]))
    def update(self, data, persistence):
        market_id = data.draw(st.sampled_from(self.markets))
        state = self.venue.markets[market_id]
        live = list(state.orders.values())
        order = data.draw(st.sampled_from(live)) if live else None
        player, bet_id = (order.player_id, order.bet_id) if order else ("p0", 1)
        self.run(m.UpdateOrders(command_id=self.cid(), market_id=market_id, player_id=player,
                                instructions=[m.UpdateInstruction(bet_id=bet_id, new_persistence=persistence)]))

    @rule(data=st.data(), kind=st.sampled_from(["suspend", "open", "open", "in_play", "remove", "close"]))
    def lifecycle(self, data, kind):
        if kind == "close" and self.steps < LATE:
            kind = "open"
        market_id = data.draw(st.sampled_from(self.markets))
        c = dict(command_id=self.cid(), market_id=market_id)
        cmd = {
            "suspend": lambda: m.SuspendMarket(**c),
            "open": lambda: m.OpenMarket(**c),
            "in_play": lambda: m.TurnInPlay(**c, bet_delay_ms=data.draw(st.sampled_from([0, 5000, -1]))),
            "remove": lambda: m.RemoveRunner(**c, runner_id=data.draw(st.sampled_from(RUNNERS))),
            "close": lambda: m.CloseMarket(**c),
        }[kind]()
        self.run(cmd)

    @precondition(lambda self: self.steps >= LATE)
    @rule(data=st.data())
    def settle(self, data):
        market_id = data.draw(st.sampled_from(self.markets))
        state = self.venue.markets[market_id]
        active = [state.runners[r] for r in state.active]
        places = state.number_of_winners
        how = data.draw(st.sampled_from(["win", "win", "dead_heat", "void", "bad"]))
        if how == "void":
            self.run(m.VoidMarket(command_id=self.cid(), market_id=market_id))
            return
        if how == "bad":
            self.run(m.SettleMarket(command_id=self.cid(), market_id=market_id, winners=[99]))
            return
        shuffled = data.draw(st.permutations(active))
        if how == "win" or len(active) < 2:
            winners, tied = shuffled[: min(places, len(active))], []
        else:
            clear = data.draw(st.integers(0, min(places, len(active) - 1) - 1)) if places > 1 else 0
            rest = shuffled[clear:]
            tied = rest[: data.draw(st.integers(places - clear + 1, len(rest)))] if len(rest) > places - clear else []
            winners = shuffled[:clear] if tied else shuffled[: min(places, len(active))]
        discounts = data.draw(st.dictionaries(st.sampled_from(PLAYERS), st.sampled_from([0, 2500, 10000]), max_size=2))
        events = self.market_events(market_id)
        expected = {p: brute_force(events, state, p)[1] for p in state.positions}
        exposures = {p: state.exposure_of(p) for p in state.positions}
        result = self.run(m.SettleMarket(command_id=self.cid(), market_id=market_id, winners=list(winners),
                                         dead_heat=list(tied), discounts_bp=discounts))
        if result.status != "SUCCESS":
            return
        settled = result.events[-1]
        assert isinstance(settled, m.MarketSettled)
        assert sum(r.pnl for r in settled.results) == 0
        for r in settled.results:
            # the brute force of the matched bets (unmatched lapse at close)
            pnls = expected[r.player_id]
            if not tied:
                assert r.pnl == pnls[tuple(sorted(winners, key=active.index))], r
            else:
                places_left = places - len(winners)
                sets = [w for w in pnls if set(winners) <= set(w) and set(w) - set(winners) <= set(tied)]
                assert len(sets) == len(list(itertools.combinations(tied, places_left)))
                total = sum(pnls[w] for w in sets)
                # the exact average over the tied sets, to within one minor unit
                assert total // len(sets) <= r.pnl <= total // len(sets) + 1, (r, total, len(sets))
            assert r.pnl >= -exposures[r.player_id]  # nobody loses more than was held
            assert 0 <= r.commission <= max(0, r.pnl) // 20

    # ------------------------------------------------------------ invariants

    @invariant()
    def books_are_never_crossed_and_pointers_are_right(self):
        for state in self.venue.markets.values():
            for ri, book in enumerate(state.books):
                backs = [t for t, q in enumerate(book.backs) if q]
                lays = [t for t, q in enumerate(book.lays) if q]
                assert book.best_back == (backs[0] if backs else ladder.TICKS)
                assert book.best_lay == (lays[-1] if lays else -1)
                assert book.best_back > book.best_lay
                for order in book.resting():
                    assert order.remaining > 0 and state.orders[order.bet_id] is order
                    assert order.runner_index == ri and order.time_in_force is None
            resting = sum(1 for b in state.books for _ in b.resting())
            assert resting == len(state.orders)

    @invariant()
    def exposure_equals_brute_force_and_fills_net_to_zero(self):
        for market_id in self.markets:
            state = self.venue.markets[market_id]
            if state.settlement is not None:
                continue
            events = self.market_events(market_id)
            net = {}
            for player in state.positions:
                exposure, matched = brute_force(events, state, player)
                assert state.exposure_of(player) == exposure, (market_id, player)
                for outcome, pnl in matched.items():
                    net[outcome] = net.get(outcome, 0) + pnl
            assert all(v == 0 for v in net.values()), net

    @invariant()
    def wallets_hold_the_markets_exposure_and_money_is_conserved(self):
        deposited = withdrawn = held = 0
        for player, w in self.venue.wallets.items():
            assert w.available >= 0, player
            assert w.total_reserved == 0 and w.reservations == {}
            for market_id, state in self.venue.markets.items():
                assert w.exposures.get(market_id, 0) == state.exposure_of(player), (player, market_id)
            assert w.total_exposure == sum(w.exposures.values())
            deposited += w.deposited
            withdrawn += w.withdrawn
            held += w.balance + w.commission_paid
        assert held == deposited - withdrawn

    def teardown(self):
        if not hasattr(self, "venue"):
            return
        replayed = Venue.replay(self.venue.journal)
        assert replayed.snapshot() == self.venue.snapshot()
        for event in self.venue.journal:
            assert m.event_json.decode(m.json_encoder.encode(event)) == event
            assert m.event_msgpack.decode(m.msgpack_encoder.encode(event)) == event


TestVenue = VenueMachine.TestCase
