"""The history projector against the real Kafka and PostgreSQL (and, last, as a Ray actor
behind real hosts): exactly once across crashes, replays and restarts.

The journals are written the way hosts write them (exchange/journal: group-committed
Kafka transactions of EventBatch records, one transactional writer per partition) from
a Venue run (the pure reference exchange), so the expected rows are the pure
projection of the same events. Each test has its own topic prefix and schema.
"""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from exchange.domain import messages as m
from exchange.domain.context import Context
from exchange.domain.history import HistoryProjection
from exchange.domain.venue import Venue
from exchange.history.projector import HistoryProjector
from exchange.history.store import HistoryStore, ms_to_time
from exchange.journal import Journal, JournalConfig, JournalFailed, ensure_topics
from exchange.journal.records import EventBatch, batch_encoder

pytestmark = pytest.mark.stack

JURISDICTION = "us-nj"
PARTITIONS = 2        # of the 8: the journals write to these two


# ---------------------------------------------------------------- a day on the reference exchange


class Day:
    """A Venue driven by commands, with a test clock; its journal is what hosts would write."""

    def __init__(self):
        self.venue = Venue()
        self.clock = 1_700_000_000_000
        self.n = 0
        self.written = 0

    def run(self, cmd):
        self.clock += 1000
        result = self.venue.execute(cmd, Context(self.clock))
        assert result.status == "SUCCESS", (cmd, result)
        return result

    def cid(self) -> str:
        self.n += 1
        return f"cmd-{self.n}"

    def deposit(self, who, amount):
        self.run(m.Deposit(command_id=self.cid(), wallet_id=who, amount=amount))

    def market(self) -> str:
        market_id = f"1.{uuid.uuid4().int % 10**9}"
        self.run(m.DefineMarket(command_id=self.cid(), market_id=market_id, runners=[1, 2, 3]))
        self.run(m.OpenMarket(command_id=self.cid(), market_id=market_id))
        return market_id

    def bet(self, market_id, who, side, price, size, runner=1, **kw):
        return self.run(m.PlaceOrders(command_id=self.cid(), market_id=market_id, player_id=who, instructions=[
            m.PlaceInstruction(runner_id=runner, side=side, price=price, size=size, **kw)]))

    def operate(self, cls, market_id, **kw):
        self.run(cls(command_id=self.cid(), market_id=market_id, **kw))

    def take_new(self) -> list:
        new, self.written = self.venue.journal[self.written:], len(self.venue.journal)
        return new


def expected_rows(journal) -> tuple[set, set]:
    """(cleared order tuples, statement item tuples) of the pure projection of ``journal``."""
    projection = HistoryProjection()
    cleared, items = set(), set()
    for e in journal:
        if isinstance(e, m.MARKET_EVENTS):
            applied = projection.market_batch(e.market_id, e.seq, [e])
        else:
            applied = projection.wallet_batch(e.wallet_id, e.seq, [e])
        cleared |= {(c.market_id, c.bet_id, c.bet_status, c.player_id, c.profit, c.size_settled, c.size_cancelled,
                     c.matched_value, ms_to_time(c.settled_at)) for c in applied.cleared}
        items |= {(i.account_id, i.seq, i.part, i.kind, i.ref_id, i.amount, i.balance, ms_to_time(i.at))
                  for i in applied.items}
    return cleared, items


async def stored_rows(pool, schema) -> tuple[list, list]:
    cleared = await pool.fetch(
        f"SELECT market_id, bet_id, bet_status, account_id, profit, size_settled, size_cancelled, matched_value, "
        f"settled_at FROM {schema}.cleared_orders")
    items = await pool.fetch(
        f"SELECT account_id, seq, part, kind, ref_id, amount, balance, item_at FROM {schema}.statement_items")
    return [tuple(r) for r in cleared], [tuple(r) for r in items]


# ---------------------------------------------------------------- the journals


class Journals:
    """The jurisdiction's market and wallet journals, written as hosts write them."""

    def __init__(self, bootstrap: str, prefix: str):
        self.bootstrap = bootstrap
        self.configs = {kind: JournalConfig(bootstrap=bootstrap, stream=f"{kind}.{JURISDICTION}", prefix=prefix)
                        for kind in ("markets", "wallets")}
        self.journals: dict[tuple[str, int], Journal] = {}

    async def start(self):
        for kind, config in self.configs.items():
            await ensure_topics(config)
            for p in range(PARTITIONS):
                journal = self.journals[kind, p] = Journal(config, p)
                await journal.start()

    async def stop(self):
        for journal in self.journals.values():
            await journal.stop()

    async def write(self, events) -> None:
        """Each aggregate's events in order, group-committed with the others."""
        from actors.directory import host_index

        futures = []
        for e in events:
            kind, aggregate = ("markets", e.market_id) if isinstance(e, m.MARKET_EVENTS) else ("wallets", e.wallet_id)
            journal = self.journals[kind, host_index(aggregate, PARTITIONS)]
            futures.append(journal.append(aggregate, [m.msgpack_encoder.encode(e)]))
        await asyncio.gather(*futures)

    async def raw(self, kind: str, batches: list[EventBatch]) -> None:
        """A record written outside the hosts' journals: a replay of old batches."""
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(self.configs[kind].events_topic, batch_encoder.encode(batches),
                                         partition=0)
        finally:
            await producer.stop()

    async def fence(self, kind: str, aggregate_id: str) -> Journal:
        """Starts a successor of the journal that holds the aggregate: that one is a zombie now."""
        from actors.directory import host_index

        p = host_index(aggregate_id, PARTITIONS)
        successor = Journal(self.configs[kind], p)
        await successor.start()
        return successor


def as_batch(aggregate_id: str, events: list) -> EventBatch:
    return EventBatch(aggregate_id, events[0].seq, [msgspec.Raw(m.msgpack_encoder.encode(e)) for e in events])


# ---------------------------------------------------------------- fixtures


@pytest.fixture
async def world(stack):
    import asyncpg

    from exchange.storage.platform import PlatformStore

    tag = uuid.uuid4().hex[:8]
    env = stack["env"]
    schema = f"hist_{tag}"
    platform = await PlatformStore.connect(env["EXCHANGE_POSTGRES_DSN"], schema)   # the catalogue the reads join
    journals = Journals(env["EXCHANGE_KAFKA_BOOTSTRAP"], f"hist{tag}")
    await journals.start()
    pool = await asyncpg.create_pool(env["EXCHANGE_POSTGRES_DSN"], min_size=1, max_size=2)
    projectors: list[asyncio.Task] = []

    def start(**kw) -> tuple[HistoryProjector, asyncio.Task]:
        projector = HistoryProjector(env["EXCHANGE_KAFKA_BOOTSTRAP"], env["EXCHANGE_POSTGRES_DSN"], JURISDICTION,
                                     schema=schema, prefix=f"hist{tag}", **kw)
        task = asyncio.get_running_loop().create_task(projector.run())
        projectors.append(task)
        return projector, task

    yield {"schema": schema, "journals": journals, "pool": pool, "start": start}
    for task in projectors:
        task.cancel()
    await asyncio.gather(*projectors, return_exceptions=True)
    await journals.stop()
    await pool.close()
    await platform.drop_schema()
    await platform.close()


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# ---------------------------------------------------------------- tests


async def test_rows_are_written_exactly_once_across_crashes_replays_and_restarts(world):
    journals, pool, schema = world["journals"], world["pool"], world["schema"]
    day = Day()
    # Arrange: a settled market, one still open, deposits; written by the journals
    for who in ("alice", "bob", "carol"):
        day.deposit(who, 10_000)
    first = day.market()
    day.bet(first, "bob", "LAY", "3.0", 1000)
    day.bet(first, "alice", "BACK", "3.0", 400)
    day.run(m.CancelOrders(command_id=day.cid(), market_id=first, player_id="bob"))
    day.bet(first, "carol", "BACK", "5.0", 200, runner=2)
    day.operate(m.SettleMarket, first, winners=[1])
    second = day.market()
    day.bet(second, "alice", "LAY", "2.0", 600, runner=2)       # 100 lapses in play
    day.bet(second, "carol", "BACK", "2.0", 300, runner=2)
    await journals.write(day.take_new())

    # Act: the first projector fails once inside a batch's transaction, after its rows
    failures = []

    async def fail_once():
        if not failures:
            failures.append(1)
            raise RuntimeError("crash after the rows, before the positions")

    projector, task = world["start"](max_records=1, fail_point=fail_once)
    await projector.wait_caught_up(60)

    # Assert: it restarted from PostgreSQL and nothing is missing or doubled
    assert projector.stats.restarts == 1 and failures == [1]
    cleared, items = expected_rows(day.venue.journal)
    got_cleared, got_items = await stored_rows(pool, schema)
    assert sorted(got_cleared) == sorted(cleared) and len(got_cleared) == 4
    assert sorted(got_items) == sorted(items)
    open_markets = await HistoryStore(pool, schema).open_markets(journals.configs["markets"].events_topic)
    assert list(open_markets) == [second]                      # the settled market's events are gone
    await stop(task)

    # Arrange: the open market completes, a third is voided, money moves; a host replays old
    # batches; a fenced (zombie) wallet journal tries to write a deposit nobody made
    day.bet(second, "bob", "BACK", "2.0", 200, runner=2)
    day.operate(m.TurnInPlay, second)
    day.operate(m.SettleMarket, second, winners=[3])
    third = day.market()
    day.bet(third, "alice", "LAY", "4.0", 100, runner=3, persistence="PERSIST")
    day.bet(third, "bob", "BACK", "4.0", 100, runner=3)
    day.operate(m.VoidMarket, third)
    day.run(m.Withdraw(command_id=day.cid(), wallet_id="alice", amount=1_500))
    await journals.write(day.take_new())
    first_events = [e for e in day.venue.journal if isinstance(e, m.MARKET_EVENTS) and e.market_id == first]
    alice_events = [e for e in day.venue.journal if isinstance(e, m.WALLET_EVENTS) and e.wallet_id == "alice"]
    await journals.raw("markets", [as_batch(first, first_events)])
    await journals.raw("wallets", [as_batch("alice", alice_events[:3])])
    from actors.directory import host_index

    successor = await journals.fence("wallets", "alice")
    zombie = journals.journals["wallets", host_index("alice", PARTITIONS)]
    ghost = m.FundsDeposited(wallet_id="alice", seq=len(alice_events) + 1, at=day.clock, command_id="ghost",
                             amount=10**6)
    with pytest.raises(JournalFailed):
        await zombie.append("alice", [m.msgpack_encoder.encode(ghost)])
    await successor.stop()

    # Act: a second projector is killed inside its first transaction, a third finishes
    stuck = asyncio.Event()

    async def hang():
        stuck.set()
        await asyncio.sleep(3600)

    _, killed = world["start"](max_records=1, fail_point=hang)
    await asyncio.wait_for(stuck.wait(), 60)
    await stop(killed)
    projector, task = world["start"]()
    await projector.wait_caught_up(60)

    # Assert: exactly the pure projection of the journal; the replays and the ghost left nothing
    cleared, items = expected_rows(day.venue.journal)
    got_cleared, got_items = await stored_rows(pool, schema)
    assert sorted(got_cleared) == sorted(cleared)
    assert sorted(got_items) == sorted(items)
    assert projector.stats.skipped >= len(first_events) + 3
    assert {(r[0], r[2]) for r in got_cleared} >= {(second, "SETTLED"), (second, "LAPSED"), (third, "VOIDED")}
    balances = {who: w.balance for who, w in day.venue.wallets.items()}
    for who, balance in balances.items():
        last = await pool.fetchval(f"SELECT balance FROM {schema}.statement_items WHERE account_id = $1 "
                                   f"ORDER BY seq DESC, part DESC LIMIT 1", who)
        assert last == balance, who
    assert await HistoryStore(pool, schema).open_markets(journals.configs["markets"].events_topic) == {}


async def test_the_reads_page_filter_and_join_the_catalogue(world):
    journals, pool, schema = world["journals"], world["pool"], world["schema"]
    day = Day()
    day.deposit("alice", 10_000)
    day.deposit("bob", 10_000)
    market = day.market()
    for i in range(5):
        day.bet(market, "bob", "LAY", "3.0", 100)
        day.bet(market, "alice", "BACK", "3.0", 100, customer_ref=f"r{i}")
    day.operate(m.SettleMarket, market, winners=[1])
    await journals.write(day.take_new())
    projector, _ = world["start"]()
    await projector.wait_caught_up(60)

    store = HistoryStore(pool, schema)
    rows = await store.cleared_orders("alice", "SETTLED", limit=3)
    assert [r["bet_id"] for r in rows] == [2, 4, 6] and all(r["profit"] == 200 for r in rows)
    assert [r["bet_id"] for r in await store.cleared_orders("alice", "SETTLED", offset=3)] == [8, 10]
    assert [r["bet_id"] for r in await store.cleared_orders("alice", "SETTLED", bets=[(market, 4), (market, 3)])] == [4]
    assert [r["customer_ref"] for r in await store.cleared_orders("alice", "SETTLED", customer_refs=["r1"])] == ["r1"]
    assert await store.cleared_orders("alice", "SETTLED", side="LAY") == []
    assert await store.cleared_orders("bob", "CANCELLED") == []
    assert rows[0]["market_name"] is None              # a market the catalogue does not hold: no names
    statement = await store.statement("alice")
    assert [(r["kind"], r["amount"], r["balance"]) for r in statement] == [
        ("COMMISSION", -50, 10_950), ("SETTLEMENT", 1000, 11_000), ("DEPOSIT", 10_000, 10_000)]
    assert [r["kind"] for r in await store.statement("alice", kinds=["DEPOSIT", "WITHDRAWAL"])] == ["DEPOSIT"]


async def test_a_second_projector_waits_until_the_first_lets_go(world):
    first, first_task = world["start"]()
    await asyncio.wait_for(first.ready.wait(), 60)
    second, second_task = world["start"]()
    await asyncio.sleep(2)
    assert not second.ready.is_set()               # one writer per jurisdiction and schema
    await stop(first_task)
    await asyncio.wait_for(second.ready.wait(), 30)


async def test_the_projector_actor_runs_in_the_jurisdiction_behind_real_hosts_and_survives_a_kill(
        ray_session, stack):
    import asyncpg
    import ray

    from actors.deploy import deploy_hosts, remove_hosts
    from actors.gateway import Gateway
    from actors.history_projector import ensure_projector, projector_name, remove_projector
    from exchange.storage.platform import PlatformStore

    tag = uuid.uuid4().hex[:8]
    env = stack["env"]
    namespace, prefix, schema = f"hist-{tag}", f"hist{tag}", f"hist_{tag}"
    platform = await PlatformStore.connect(env["EXCHANGE_POSTGRES_DSN"], schema)
    hosts = deploy_hosts(JURISDICTION, env["EXCHANGE_KAFKA_BOOTSTRAP"], namespace=namespace, prefix=prefix)
    pool = await asyncpg.create_pool(env["EXCHANGE_POSTGRES_DSN"], min_size=1, max_size=2)
    try:
        actor = ensure_projector(JURISDICTION, env["EXCHANGE_KAFKA_BOOTSTRAP"], env["EXCHANGE_POSTGRES_DSN"],
                                 schema=schema, namespace=namespace, prefix=prefix)
        assert ensure_projector(JURISDICTION, env["EXCHANGE_KAFKA_BOOTSTRAP"], env["EXCHANGE_POSTGRES_DSN"],
                                schema=schema, namespace=namespace, prefix=prefix)._actor_id == actor._actor_id
        stats = await actor.ready.remote()
        labels = {n["NodeID"]: n.get("Labels", {}) for n in ray.nodes()}
        assert labels[stats["node_id"]].get("exchange/jurisdiction") == JURISDICTION
        assert projector_name(JURISDICTION) == "replica/us-nj/history"

        gw = Gateway(hosts)
        alice, bob = f"alice-{tag}", f"bob-{tag}"
        await asyncio.gather(gw.deposit(alice, 10_000), gw.deposit(bob, 10_000))

        async def market() -> str:
            market_id = f"1.{uuid.uuid4().int % 10**9}"
            for cmd in (m.DefineMarket(command_id=uuid.uuid4().hex, market_id=market_id, runners=[1, 2]),
                        m.OpenMarket(command_id=uuid.uuid4().hex, market_id=market_id)):
                assert (await gw.operate(cmd)).status == "SUCCESS"
            return market_id

        async def matched_pair(market_id: str) -> None:
            for who, side in ((bob, "LAY"), (alice, "BACK")):
                result = await gw.place_orders(m.PlaceOrders(
                    command_id=uuid.uuid4().hex, market_id=market_id, player_id=who,
                    instructions=[m.PlaceInstruction(runner_id=1, side=side, price="3.0", size=1000)]))
                assert result.status == "SUCCESS", result

        one = await market()
        await matched_pair(one)
        assert (await gw.operate(m.SettleMarket(command_id=uuid.uuid4().hex, market_id=one,
                                                winners=[1]))).status == "SUCCESS"
        await gw.quiesce()
        await actor.wait_caught_up.remote(60)
        before = (await actor.stats.remote())["pid"]

        # Act: kill the actor's process; Ray restarts it and it goes on from PostgreSQL
        two = await market()
        await matched_pair(two)
        ray.kill(actor, no_restart=False)
        assert (await gw.operate(m.SettleMarket(command_id=uuid.uuid4().hex, market_id=two,
                                                winners=[2]))).status == "SUCCESS"
        await gw.quiesce()
        for _ in range(60):
            try:
                await actor.ready.remote()
                break
            except ray.exceptions.RayActorError:
                await asyncio.sleep(1)
        await actor.wait_caught_up.remote(60)
        assert (await actor.stats.remote())["pid"] != before

        # Assert: both markets' bets, each once; the statement ends at the wallets' balances
        rows = await pool.fetch(f"SELECT market_id, account_id, bet_status, profit FROM {schema}.cleared_orders "
                                f"ORDER BY market_id, account_id")
        assert sorted((r["market_id"], r["account_id"], r["profit"]) for r in rows) == sorted([
            (one, alice, 2000), (one, bob, -2000), (two, alice, -1000), (two, bob, 1000)])
        funds = await gw.balances([alice, bob])
        for who in (alice, bob):
            items = await pool.fetch(f"SELECT kind, amount, balance FROM {schema}.statement_items "
                                     f"WHERE account_id = $1 ORDER BY seq, part", who)
            assert items[-1]["balance"] == funds[who]["balance"]
            assert sum(i["amount"] for i in items) == funds[who]["balance"]
            assert [i["kind"] for i in items].count("SETTLEMENT") == 2
    finally:
        remove_projector(JURISDICTION, namespace)
        remove_hosts(hosts)
        await pool.close()
        await platform.drop_schema()
        await platform.close()
