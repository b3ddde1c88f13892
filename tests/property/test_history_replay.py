"""The history read model (exchange/domain/history.py) over random exchange histories.

Runs the Venue machine's random commands and feeds every event to a HistoryProjection
the way the projector does (one batch per aggregate per step). After every step: each
wallet's last statement balance is its balance in the venue; in every completed market
each bet's rows add up (settled or voided + cancelled + lapsed = its size) and, without
a dead heat, each player's SETTLED profits add up to exactly his settlement result (with
one, to within one minor unit per bet). At the end, the whole journal fed again with
random batch boundaries, every batch sent twice and some batches sent again later (a
host's replay), into a fresh projection gives exactly the same rows.
"""

from __future__ import annotations

import random

from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule

from exchange.domain import messages as m
from exchange.domain.history import CANCELLED, LAPSED, SETTLED, VOIDED, HistoryProjection

from tests.property.test_venue_stateful import VenueMachine


def _aggregate(e) -> tuple[str, str]:
    return ("market", e.market_id) if isinstance(e, m.MARKET_EVENTS) else ("wallet", e.wallet_id)


def _feed(projection: HistoryProjection, kind: str, aggregate_id: str, events: list):
    if kind == "market":
        return projection.market_batch(aggregate_id, events[0].seq, events)
    return projection.wallet_batch(aggregate_id, events[0].seq, events)


class HistoryMachine(VenueMachine):
    def run(self, cmd):
        if not hasattr(self, "projection"):
            self.projection = HistoryProjection()
            self.fed = 0
            self.cleared: dict[tuple, object] = {}
            self.items: dict[tuple, object] = {}
            self.results: dict[str, m.MarketSettled] = {}
        result = super().run(cmd)
        new, self.fed = self.venue.journal[self.fed:], len(self.venue.journal)
        groups: dict[tuple[str, str], list] = {}
        for e in new:
            groups.setdefault(_aggregate(e), []).append(e)
            if isinstance(e, m.MarketSettled):
                self.results[e.market_id] = e
        for (kind, aggregate_id), events in groups.items():
            applied = _feed(self.projection, kind, aggregate_id, events)
            assert applied.fresh == len(events) and not applied.gap
            for c in applied.cleared:
                key = (c.market_id, c.bet_id, c.bet_status)
                assert key not in self.cleared
                self.cleared[key] = c
            for i in applied.items:
                key = (i.account_id, i.seq, i.part)
                assert key not in self.items
                self.items[key] = i
        return result

    @rule(seed=st.integers(0, 2**32 - 1))
    def replay_everything_with_duplicates(self, seed):
        """A fresh projection fed the whole journal in random, duplicated batches agrees."""
        rng = random.Random(seed)
        journal = self.venue.journal
        by_aggregate: dict[tuple[str, str], list] = {}
        for e in journal:
            by_aggregate.setdefault(_aggregate(e), []).append(e)
        batches = []
        for key, events in by_aggregate.items():
            i = 0
            while i < len(events):
                j = i + rng.randint(1, 4)
                batches.append((key, events[i:j]))
                i = j
        # keep each aggregate's order, interleave aggregates, send each batch twice and some again later
        stream = []
        for batch in batches:
            stream.append(batch)
            stream.append(batch)
            if stream and rng.random() < 0.2:
                stream.append(rng.choice(stream))
        fresh = HistoryProjection()
        cleared, items = {}, {}
        for (kind, aggregate_id), events in stream:
            applied = _feed(fresh, kind, aggregate_id, events)
            for c in applied.cleared:
                assert (c.market_id, c.bet_id, c.bet_status) not in cleared
                cleared[c.market_id, c.bet_id, c.bet_status] = c
            for it in applied.items:
                assert (it.account_id, it.seq, it.part) not in items
                items[it.account_id, it.seq, it.part] = it
        assert cleared == self.cleared
        assert items == self.items

    @invariant()
    def statements_end_at_the_wallets_balance(self):
        if not hasattr(self, "projection"):
            return
        last: dict[str, tuple] = {}
        for (account, seq, part), item in self.items.items():
            if (seq, part) > last.get(account, (0, -1))[:2]:
                last[account] = (seq, part, item.balance)
        for wallet_id, state in self.venue.wallets.items():
            expected = state.balance
            assert last.get(wallet_id, (0, 0, 0))[2] == expected, wallet_id
            assert self.projection.wallets[wallet_id][1] == expected

    @invariant()
    def completed_markets_add_up_bet_by_bet_and_player_by_player(self):
        if not hasattr(self, "projection"):
            return
        bets: dict[tuple[str, int], dict[str, object]] = {}
        for (market_id, bet_id, status), row in self.cleared.items():
            bets.setdefault((market_id, bet_id), {})[status] = row
        for (market_id, bet_id), rows in bets.items():
            any_row = next(iter(rows.values()))
            settled = rows[SETTLED].size_settled if SETTLED in rows else 0
            voided = rows[VOIDED].size_settled if VOIDED in rows else 0
            assert not (settled and voided)
            taken = sum(rows[s].size_cancelled for s in (CANCELLED, LAPSED) if s in rows)
            assert settled + voided + taken == any_row.size, rows
        for market_id, settled in self.results.items():
            profits: dict[str, int] = {}
            count: dict[str, int] = {}
            for (mid, _, status), row in self.cleared.items():
                if mid == market_id and status == SETTLED:
                    profits[row.player_id] = profits.get(row.player_id, 0) + row.profit
                    count[row.player_id] = count.get(row.player_id, 0) + 1
            for r in settled.results:
                got = profits.get(r.player_id, 0)
                if settled.dead_heat:
                    assert abs(got - r.pnl) <= count.get(r.player_id, 0), (r, got)
                else:
                    assert got == r.pnl, (market_id, r, got)


TestHistory = HistoryMachine.TestCase
