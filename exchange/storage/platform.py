"""Platform data in PostgreSQL: accounts, sessions, event types, events, markets, runners.

Owns the schema (created idempotently on start, under one PostgreSQL schema name so
that a test or a jurisdiction can have its own) and every query on it. Money and
orders are never here: they live in the host actors and their Kafka journal.

Sessions are stored by the SHA-256 of their token, never the token itself. Login
failures are counted in the account row; the row locks itself (``locked_until``)
after ``max_failures`` in a row, in one UPDATE, so concurrent replicas agree.

Must never hold a connection across an await it does not own (the pool does).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_LOCK_KEY = 0x65786368616E6765      # pg_advisory_xact_lock key for schema creation ("exchange")

DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.accounts (
    account_id    text PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    role          text NOT NULL CHECK (role IN ('BETTOR', 'OPERATOR')),
    jurisdiction  text NOT NULL,
    currency      text NOT NULL,
    requests_per_second integer,
    burst         integer,
    failed_logins integer NOT NULL DEFAULT 0,
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.sessions (
    token_hash  bytea PRIMARY KEY,
    account_id  text NOT NULL REFERENCES {s}.accounts ON DELETE CASCADE,
    app_key     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON {s}.sessions (expires_at);
CREATE TABLE IF NOT EXISTS {s}.event_types (
    event_type_id text PRIMARY KEY,
    name          text NOT NULL
);
CREATE TABLE IF NOT EXISTS {s}.events (
    event_id      text PRIMARY KEY,
    event_type_id text NOT NULL REFERENCES {s}.event_types,
    name          text NOT NULL,
    country_code  text,
    timezone      text,
    open_date     timestamptz NOT NULL,
    jurisdiction  text NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS {s}.catalogue_ids START 100000001;
CREATE TABLE IF NOT EXISTS {s}.markets (
    market_id     text PRIMARY KEY,
    event_id      text NOT NULL REFERENCES {s}.events,
    name          text NOT NULL,
    market_type   text NOT NULL,
    start_time    timestamptz NOT NULL,
    jurisdiction  text NOT NULL,
    number_of_winners integer NOT NULL,
    min_stake     bigint NOT NULL,
    commission_bp integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {s}.runners (
    market_id     text NOT NULL REFERENCES {s}.markets ON DELETE CASCADE,
    selection_id  bigint NOT NULL,
    name          text NOT NULL,
    sort_priority integer NOT NULL,
    PRIMARY KEY (market_id, selection_id)
);
"""


@dataclass(frozen=True)
class Account:
    account_id: str
    username: str
    role: str
    jurisdiction: str
    currency: str
    requests_per_second: int | None
    burst: int | None


@dataclass(frozen=True)
class LoginOutcome:
    """``error`` is Betfair's login error code, None on success."""

    account: Account | None
    error: str | None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _account(row) -> Account:
    return Account(row["account_id"], row["username"], row["role"], row["jurisdiction"],
                   row["currency"], row["requests_per_second"], row["burst"])


class Filters:
    """A WHERE clause grown from optional filters, each value an asyncpg parameter ($1, $2, ...).

    ``add("x = ANY({0}::text[])", values)`` numbers its values in order; ``param(v)`` adds a
    value for elsewhere in the query (OFFSET, LIMIT) and gives its placeholder.
    """

    def __init__(self, clauses: list[str], args: list):
        self.clauses, self.args = list(clauses), list(args)

    def param(self, value) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def add(self, clause: str, *values) -> None:
        self.clauses.append(clause.format(*(self.param(v) for v in values)))

    @property
    def sql(self) -> str:
        return " AND ".join(self.clauses)


class PlatformStore:
    def __init__(self, pool: asyncpg.Pool, schema: str):
        self.pool = pool
        self.s = schema

    @classmethod
    async def connect(cls, dsn: str, schema: str = "platform", min_size: int = 1,
                      max_size: int = 4) -> "PlatformStore":
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"not a schema name: {schema!r}")
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        store = cls(pool, schema)
        await store.create_schema()
        return store

    async def create_schema(self) -> None:
        async with self.pool.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await con.execute(DDL.format(s=self.s))

    async def drop_schema(self) -> None:
        await self.pool.execute(f"DROP SCHEMA IF EXISTS {self.s} CASCADE")

    async def close(self) -> None:
        await self.pool.close()

    # ---------------------------------------------------------------- accounts

    async def create_account(self, username: str, password_hash: str, role: str, jurisdiction: str,
                             currency: str, requests_per_second: int | None = None,
                             burst: int | None = None) -> Account | None:
        """The new account, or None when the username is taken."""
        row = await self.pool.fetchrow(
            f"""INSERT INTO {self.s}.accounts (account_id, username, password_hash, role, jurisdiction,
                    currency, requests_per_second, burst)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (username) DO NOTHING RETURNING *""",
            "acc-" + secrets.token_hex(8), username, password_hash, role, jurisdiction, currency,
            requests_per_second, burst)
        return _account(row) if row is not None else None

    async def account_by_username(self, username: str) -> Account | None:
        row = await self.pool.fetchrow(f"SELECT * FROM {self.s}.accounts WHERE username = $1", username)
        return _account(row) if row is not None else None

    async def login_record(self, username: str):
        """(account, password hash, locked_until) or None."""
        row = await self.pool.fetchrow(f"SELECT * FROM {self.s}.accounts WHERE username = $1", username)
        return None if row is None else (_account(row), row["password_hash"], row["locked_until"])

    async def login_failed(self, account_id: str, max_failures: int, lockout: timedelta) -> bool:
        """Counts a failure; True when this one locked the account."""
        row = await self.pool.fetchrow(
            f"""UPDATE {self.s}.accounts SET
                    locked_until = CASE WHEN failed_logins + 1 >= $2 THEN now() + $3 ELSE locked_until END,
                    failed_logins = CASE WHEN failed_logins + 1 >= $2 THEN 0 ELSE failed_logins + 1 END
                WHERE account_id = $1 RETURNING locked_until > now() AS locked""",
            account_id, max_failures, lockout)
        return bool(row and row["locked"])

    async def login_succeeded(self, account_id: str) -> None:
        await self.pool.execute(f"UPDATE {self.s}.accounts SET failed_logins = 0 WHERE account_id = $1",
                                account_id)

    async def unlock(self, username: str) -> bool:
        status = await self.pool.execute(
            f"UPDATE {self.s}.accounts SET failed_logins = 0, locked_until = NULL WHERE username = $1",
            username)
        return status.endswith(" 1")

    # ---------------------------------------------------------------- sessions

    async def create_session(self, account_id: str, app_key: str, ttl: timedelta) -> str:
        token = secrets.token_urlsafe(32)
        await self.pool.execute(
            f"INSERT INTO {self.s}.sessions (token_hash, account_id, app_key, expires_at) "
            f"VALUES ($1, $2, $3, now() + $4)", token_hash(token), account_id, app_key, ttl)
        return token

    async def session(self, token: str) -> tuple[Account, datetime, str] | None:
        """The session's account, expiry and application key, or None if unknown or expired."""
        row = await self.pool.fetchrow(
            f"""SELECT a.*, s.expires_at, s.app_key FROM {self.s}.sessions s JOIN {self.s}.accounts a USING (account_id)
                WHERE s.token_hash = $1 AND s.expires_at > now()""", token_hash(token))
        return None if row is None else (_account(row), row["expires_at"], row["app_key"])

    async def keep_alive(self, token: str, ttl: timedelta) -> bool:
        status = await self.pool.execute(
            f"UPDATE {self.s}.sessions SET expires_at = now() + $2 WHERE token_hash = $1 AND expires_at > now()",
            token_hash(token), ttl)
        return status.endswith(" 1")

    async def end_session(self, token: str) -> bool:
        status = await self.pool.execute(f"DELETE FROM {self.s}.sessions WHERE token_hash = $1",
                                         token_hash(token))
        return status.endswith(" 1")

    async def purge_sessions(self) -> None:
        await self.pool.execute(f"DELETE FROM {self.s}.sessions WHERE expires_at < now() - interval '1 day'")

    # ---------------------------------------------------------------- catalogue

    async def next_id(self) -> int:
        return await self.pool.fetchval(f"SELECT nextval('{self.s}.catalogue_ids')")

    async def create_event(self, event_type_id: str, event_type_name: str | None, name: str,
                           country_code: str | None, timezone: str | None, open_date: datetime,
                           jurisdiction: str) -> str | None:
        """The new event's id, or None when the event type is unknown and has no name."""
        async with self.pool.acquire() as con, con.transaction():
            if event_type_name is not None:
                await con.execute(
                    f"INSERT INTO {self.s}.event_types VALUES ($1, $2) ON CONFLICT (event_type_id) DO NOTHING",
                    event_type_id, event_type_name)
            elif await con.fetchval(f"SELECT 1 FROM {self.s}.event_types WHERE event_type_id = $1",
                                    event_type_id) is None:
                return None
            event_id = str(await con.fetchval(f"SELECT nextval('{self.s}.catalogue_ids')"))
            await con.execute(
                f"INSERT INTO {self.s}.events VALUES ($1, $2, $3, $4, $5, $6, $7)",
                event_id, event_type_id, name, country_code, timezone, open_date, jurisdiction)
            return event_id

    async def event_jurisdiction(self, event_id: str) -> str | None:
        return await self.pool.fetchval(f"SELECT jurisdiction FROM {self.s}.events WHERE event_id = $1",
                                        event_id)

    async def create_market(self, market_id: str, event_id: str, name: str, market_type: str,
                            start_time: datetime, jurisdiction: str, number_of_winners: int,
                            min_stake: int, commission_bp: int,
                            runners: list[tuple[int, str, int]]) -> None:
        async with self.pool.acquire() as con, con.transaction():
            await con.execute(
                f"INSERT INTO {self.s}.markets (market_id, event_id, name, market_type, start_time, "
                f"jurisdiction, number_of_winners, min_stake, commission_bp) "
                f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                market_id, event_id, name, market_type, start_time, jurisdiction, number_of_winners,
                min_stake, commission_bp)
            await con.executemany(f"INSERT INTO {self.s}.runners VALUES ($1, $2, $3, $4)",
                                  [(market_id, *r) for r in runners])

    async def markets(self, jurisdiction: str, *, text: str | None = None,
                      event_type_ids: list[str] | None = None, event_ids: list[str] | None = None,
                      market_ids: list[str] | None = None, market_types: list[str] | None = None,
                      countries: list[str] | None = None, start_from: datetime | None = None,
                      start_to: datetime | None = None, limit: int = 1000,
                      order: str = "m.start_time, m.market_id") -> list:
        """Markets of the jurisdiction matching an API-NG MarketFilter, joined with event and type."""
        f = Filters(["m.jurisdiction = $1"], [jurisdiction])
        if text:
            f.add("(m.name ILIKE {0} OR e.name ILIKE {0})", f"%{text}%")
        if event_type_ids is not None:
            f.add("e.event_type_id = ANY({0}::text[])", event_type_ids)
        if event_ids is not None:
            f.add("m.event_id = ANY({0}::text[])", event_ids)
        if market_ids is not None:
            f.add("m.market_id = ANY({0}::text[])", market_ids)
        if market_types is not None:
            f.add("m.market_type = ANY({0}::text[])", market_types)
        if countries is not None:
            f.add("e.country_code = ANY({0}::text[])", countries)
        if start_from is not None:
            f.add("m.start_time >= {0}", start_from)
        if start_to is not None:
            f.add("m.start_time <= {0}", start_to)
        limit_at = f.param(limit)
        return await self.pool.fetch(
            f"""SELECT m.*, e.name AS event_name, e.country_code, e.timezone, e.open_date,
                       e.event_type_id, t.name AS event_type_name
                FROM {self.s}.markets m JOIN {self.s}.events e USING (event_id)
                JOIN {self.s}.event_types t ON t.event_type_id = e.event_type_id
                WHERE {f.sql} ORDER BY {order} LIMIT {limit_at}""", *f.args)

    async def runners(self, market_ids: list[str]) -> dict[str, list]:
        rows = await self.pool.fetch(
            f"SELECT * FROM {self.s}.runners WHERE market_id = ANY($1::text[]) ORDER BY market_id, sort_priority",
            market_ids)
        out: dict[str, list] = {}
        for r in rows:
            out.setdefault(r["market_id"], []).append(r)
        return out

    async def market(self, market_id: str):
        return await self.pool.fetchrow(f"SELECT * FROM {self.s}.markets WHERE market_id = $1", market_id)
