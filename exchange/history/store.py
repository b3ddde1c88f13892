"""The history tables in PostgreSQL: what the projector writes and the API reads.

Owns the schema of the history read model (created idempotently, under the same
advisory lock and PostgreSQL schema name as the platform tables of the deployment) and
every query on it:

- ``cleared_orders``: one row per (market, bet, status): exchange/domain/history.py's
  ClearedOrder, keyed by (market_id, bet_id, bet_status);
- ``statement_items``: one row per wallet money movement with the balance after it,
  keyed by (account_id, seq, part);
- ``history_positions``: per Kafka topic partition, the next offset to read;
- ``history_aggregates``: per aggregate (topic, id), the last applied sequence number
  (and a wallet's balance): the dedupe of replayed journal batches;
- ``history_open_events``: the events of markets not yet settled, so that a restarted
  projector rebuilds them without rereading Kafka from the beginning.

Exactly once: ``write_batch`` writes a batch's rows, the aggregates' new sequence
numbers and the new positions in one transaction; every insert is also idempotent
(ON CONFLICT on the row's key), so a crash at any point neither loses nor doubles a row.

Times are timestamptz (from the events' epoch ms), money bigint minor units. Must never
hold a connection across an await it does not own, or take a player id from anywhere
but its caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

from exchange.domain.history import ClearedOrder, StatementItem
from exchange.storage.platform import _LOCK_KEY, _SCHEMA_NAME, Filters

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.history_positions (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS {s}.history_aggregates (
    topic        text NOT NULL,
    aggregate_id text NOT NULL,
    seq          bigint NOT NULL,
    balance      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic, aggregate_id)
);
CREATE TABLE IF NOT EXISTS {s}.history_open_events (
    topic        text NOT NULL,
    market_id    text NOT NULL,
    seq          bigint NOT NULL,
    event        bytea NOT NULL,
    PRIMARY KEY (topic, market_id, seq)
);
CREATE TABLE IF NOT EXISTS {s}.cleared_orders (
    market_id       text NOT NULL,
    bet_id          bigint NOT NULL,
    bet_status      text NOT NULL CHECK (bet_status IN ('SETTLED', 'VOIDED', 'LAPSED', 'CANCELLED')),
    account_id      text NOT NULL,
    jurisdiction    text NOT NULL,
    selection_id    bigint NOT NULL,
    side            text NOT NULL,
    persistence     text NOT NULL,
    price_tick      integer NOT NULL,
    size            bigint NOT NULL,
    placed_at       timestamptz NOT NULL,
    settled_at      timestamptz NOT NULL,
    last_matched_at timestamptz,
    size_settled    bigint NOT NULL,
    matched_value   bigint NOT NULL,
    size_matched    bigint NOT NULL,
    profit          bigint NOT NULL,
    size_cancelled  bigint NOT NULL,
    customer_ref    text,
    outcome         text,
    PRIMARY KEY (market_id, bet_id, bet_status)
);
CREATE INDEX IF NOT EXISTS cleared_orders_by_account ON {s}.cleared_orders (account_id, bet_status, settled_at);
CREATE TABLE IF NOT EXISTS {s}.statement_items (
    account_id   text NOT NULL,
    seq          bigint NOT NULL,
    part         smallint NOT NULL,
    jurisdiction text NOT NULL,
    ref_id       text NOT NULL,
    item_at      timestamptz NOT NULL,
    amount       bigint NOT NULL,
    balance      bigint NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('DEPOSIT', 'WITHDRAWAL', 'SETTLEMENT', 'COMMISSION')),
    market_id    text,
    PRIMARY KEY (account_id, seq, part)
);
CREATE INDEX IF NOT EXISTS statement_items_by_date ON {s}.statement_items (account_id, item_at);
"""


def ms_to_time(ms: int) -> datetime:
    """Epoch ms -> an exact UTC datetime (no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


def time_to_ms(t: datetime) -> int:
    delta = t - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@dataclass
class HistoryBatch:
    """Everything one projector poll changes, written in one transaction."""

    cleared: list[ClearedOrder] = field(default_factory=list)
    items: list[StatementItem] = field(default_factory=list)
    aggregates: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)   # -> (seq, balance)
    open_events: list[tuple[str, str, int, bytes]] = field(default_factory=list)      # topic, market, seq, event
    closed_markets: set[tuple[str, str]] = field(default_factory=set)                  # (topic, market): drop events
    positions: dict[tuple[str, int], int] = field(default_factory=dict)                # -> next offset


class HistoryStore:
    """Queries on one deployment's schema through ``db`` (an asyncpg pool or connection)."""

    def __init__(self, db, schema: str):
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"not a schema name: {schema!r}")
        self.db = db
        self.s = schema

    async def create_schema(self) -> None:
        async with _connection(self.db) as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await con.execute(DDL.format(s=self.s))

    # ---------------------------------------------------------------- the projector's side

    async def positions(self, topics: list[str]) -> dict[tuple[str, int], int]:
        rows = await self.db.fetch(
            f"SELECT topic, partition, next_offset FROM {self.s}.history_positions WHERE topic = ANY($1::text[])",
            topics)
        return {(r["topic"], r["partition"]): r["next_offset"] for r in rows}

    async def open_markets(self, topic: str) -> dict[str, list[bytes]]:
        """Each open market's stored events, in order."""
        rows = await self.db.fetch(
            f"SELECT market_id, event FROM {self.s}.history_open_events WHERE topic = $1 ORDER BY market_id, seq",
            topic)
        out: dict[str, list[bytes]] = {}
        for r in rows:
            out.setdefault(r["market_id"], []).append(r["event"])
        return out

    async def aggregates(self, topic: str, ids: list[str]) -> dict[str, tuple[int, int]]:
        rows = await self.db.fetch(
            f"SELECT aggregate_id, seq, balance FROM {self.s}.history_aggregates "
            f"WHERE topic = $1 AND aggregate_id = ANY($2::text[])", topic, ids)
        return {r["aggregate_id"]: (r["seq"], r["balance"]) for r in rows}

    async def write_batch(self, batch: HistoryBatch, jurisdiction: str,
                          fail_point: Callable[[], Awaitable[None]] | None = None) -> None:
        """The batch's rows, sequence numbers and positions, all or nothing.

        ``fail_point`` (tests) runs inside the transaction after the rows and before the
        positions: whatever it raises rolls the whole batch back.
        """
        s = self.s
        async with _connection(self.db) as con, con.transaction():
            if batch.cleared:
                await con.executemany(
                    f"""INSERT INTO {s}.cleared_orders (market_id, bet_id, bet_status, account_id, jurisdiction,
                            selection_id, side, persistence, price_tick, size, placed_at, settled_at,
                            last_matched_at, size_settled, matched_value, size_matched, profit, size_cancelled,
                            customer_ref, outcome)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                                $19, $20)
                        ON CONFLICT (market_id, bet_id, bet_status) DO NOTHING""",
                    [(c.market_id, c.bet_id, c.bet_status, c.player_id, jurisdiction, c.selection_id, c.side,
                      c.persistence, c.price_tick, c.size, ms_to_time(c.placed_at), ms_to_time(c.settled_at),
                      ms_to_time(c.last_matched_at) if c.last_matched_at is not None else None, c.size_settled,
                      c.matched_value, c.size_matched, c.profit, c.size_cancelled, c.customer_ref, c.outcome)
                     for c in batch.cleared])
            if batch.items:
                await con.executemany(
                    f"""INSERT INTO {s}.statement_items (account_id, seq, part, jurisdiction, ref_id, item_at,
                            amount, balance, kind, market_id)
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                        ON CONFLICT (account_id, seq, part) DO NOTHING""",
                    [(i.account_id, i.seq, i.part, jurisdiction, i.ref_id, ms_to_time(i.at), i.amount, i.balance,
                      i.kind, i.market_id) for i in batch.items])
            if batch.aggregates:
                await con.executemany(
                    f"""INSERT INTO {s}.history_aggregates (topic, aggregate_id, seq, balance) VALUES ($1, $2, $3, $4)
                        ON CONFLICT (topic, aggregate_id) DO UPDATE SET seq = excluded.seq, balance = excluded.balance
                        WHERE {s}.history_aggregates.seq < excluded.seq""",
                    [(topic, agg, seq, balance) for (topic, agg), (seq, balance) in batch.aggregates.items()])
            opened = [e for e in batch.open_events if (e[0], e[1]) not in batch.closed_markets]
            if opened:
                await con.executemany(
                    f"""INSERT INTO {s}.history_open_events (topic, market_id, seq, event) VALUES ($1, $2, $3, $4)
                        ON CONFLICT (topic, market_id, seq) DO NOTHING""", opened)
            if batch.closed_markets:
                await con.executemany(
                    f"DELETE FROM {s}.history_open_events WHERE topic = $1 AND market_id = $2",
                    sorted(batch.closed_markets))
            if fail_point is not None:
                await fail_point()
            if batch.positions:
                await con.executemany(
                    f"""INSERT INTO {s}.history_positions (topic, partition, next_offset) VALUES ($1, $2, $3)
                        ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset""",
                    [(topic, partition, offset) for (topic, partition), offset in batch.positions.items()])

    # ---------------------------------------------------------------- the API's side

    async def cleared_orders(self, account_id: str, bet_status: str, *, market_ids: list[str] | None = None,
                             bets: list[tuple[str, int]] | None = None, runner_ids: list[int] | None = None,
                             event_ids: list[str] | None = None, event_type_ids: list[str] | None = None,
                             side: str | None = None, customer_refs: list[str] | None = None,
                             settled_from: datetime | None = None, settled_to: datetime | None = None,
                             offset: int = 0, limit: int = 1000) -> list:
        """The account's cleared orders in one status, oldest settlement first, with their
        catalogue names (None for a market the catalogue does not hold)."""
        s = self.s
        f = Filters(["c.account_id = $1", "c.bet_status = $2"], [account_id, bet_status])
        if market_ids is not None:
            f.add("c.market_id = ANY({0}::text[])", market_ids)
        if bets is not None:
            f.add("(c.market_id, c.bet_id) IN (SELECT * FROM unnest({0}::text[], {1}::bigint[]))",
                  [m for m, _ in bets], [b for _, b in bets])
        if runner_ids is not None:
            f.add("c.selection_id = ANY({0}::bigint[])", runner_ids)
        if event_ids is not None:
            f.add("m.event_id = ANY({0}::text[])", event_ids)
        if event_type_ids is not None:
            f.add("e.event_type_id = ANY({0}::text[])", event_type_ids)
        if side is not None:
            f.add("c.side = {0}", side)
        if customer_refs is not None:
            f.add("c.customer_ref = ANY({0}::text[])", customer_refs)
        if settled_from is not None:
            f.add("c.settled_at >= {0}", settled_from)
        if settled_to is not None:
            f.add("c.settled_at <= {0}", settled_to)
        offset_at, limit_at = f.param(offset), f.param(limit)
        return await self.db.fetch(
            f"""SELECT c.*, m.event_id, e.event_type_id, m.name AS market_name, m.market_type,
                       m.start_time AS market_start_time, m.number_of_winners, e.name AS event_name,
                       t.name AS event_type_name, r.name AS runner_name
                FROM {s}.cleared_orders c
                LEFT JOIN {s}.markets m ON m.market_id = c.market_id
                LEFT JOIN {s}.events e ON e.event_id = m.event_id
                LEFT JOIN {s}.event_types t ON t.event_type_id = e.event_type_id
                LEFT JOIN {s}.runners r ON r.market_id = c.market_id AND r.selection_id = c.selection_id
                WHERE {f.sql}
                ORDER BY c.settled_at, c.market_id, c.bet_id
                OFFSET {offset_at} LIMIT {limit_at}""", *f.args)

    async def statement(self, account_id: str, *, kinds: list[str] | None = None,
                        item_from: datetime | None = None, item_to: datetime | None = None,
                        offset: int = 0, limit: int = 100) -> list:
        """The account's statement items, newest first, with their market's catalogue names."""
        s = self.s
        f = Filters(["i.account_id = $1"], [account_id])
        if kinds is not None:
            f.add("i.kind = ANY({0}::text[])", kinds)
        if item_from is not None:
            f.add("i.item_at >= {0}", item_from)
        if item_to is not None:
            f.add("i.item_at <= {0}", item_to)
        offset_at, limit_at = f.param(offset), f.param(limit)
        return await self.db.fetch(
            f"""SELECT i.*, m.name AS market_name, m.market_type, m.start_time AS market_start_time,
                       m.event_id, m.commission_bp, e.event_type_id, e.name AS event_name
                FROM {s}.statement_items i
                LEFT JOIN {s}.markets m ON m.market_id = i.market_id
                LEFT JOIN {s}.events e ON e.event_id = m.event_id
                WHERE {f.sql}
                ORDER BY i.item_at DESC, i.seq DESC, i.part DESC
                OFFSET {offset_at} LIMIT {limit_at}""", *f.args)


class _connection:
    """``async with _connection(db) as con``: a pool's connection for the block, or the connection itself."""

    def __init__(self, db):
        self.db = db
        self.acquired = None

    async def __aenter__(self):
        if hasattr(self.db, "acquire"):
            self.acquired = self.db.acquire()
            return await self.acquired.__aenter__()
        return self.db

    async def __aexit__(self, *exc):
        if self.acquired is not None:
            return await self.acquired.__aexit__(*exc)
        return False


_readers: dict[tuple[int, str], HistoryStore] = {}


async def history_reader(pool, schema: str) -> HistoryStore:
    """The API's store on its platform pool: the tables are created on first use (the
    projector may not have started yet), once per pool and schema."""
    key = (id(pool), schema)
    store = _readers.get(key)
    if store is None or store.db is not pool:
        store = HistoryStore(pool, schema)
        await store.create_schema()
        _readers[key] = store
    return store
