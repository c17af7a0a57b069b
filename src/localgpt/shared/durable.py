"""Durable state in PostgreSQL, for workers and replicas: sessions and stored responses.

The tables are created when a store opens (``CREATE ... IF NOT EXISTS``: a second replica
starting at the same moment is harmless). A session turn is one transaction that locks the
session's row and appends its messages after the last one, so two turns on one session
through two processes both land, in the order they committed. Sessions are read from the
database every time: another process may have changed them. Connection failures are
``BackendDown`` (a 503), and the pool reconnects when PostgreSQL is back.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from localgpt.agent.sessions import _ID, ROLES, Session, _title
from localgpt.providers.messages import ChatMessage
from localgpt.shared.errors import BackendDown

log = logging.getLogger("localgpt.shared")
PURGE_EVERY = 3600.0  # seconds between two retention sweeps of stored responses

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    model TEXT,
    title TEXT,
    compactions INTEGER NOT NULL DEFAULT 0,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS session_messages (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message JSONB NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created DOUBLE PRECISION NOT NULL,
    owner TEXT,
    body JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses(created);
CREATE TABLE IF NOT EXISTS response_items (
    response TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    body JSONB NOT NULL,
    PRIMARY KEY (response, id)
);
CREATE INDEX IF NOT EXISTS response_items_id ON response_items(id, created);
"""


def _down(exc: Exception) -> BackendDown:
    return BackendDown("storage", f"PostgreSQL did not answer: {exc}".strip())


def create_schema(dsn: str) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            # Replicas starting together: one creates, the others wait on the lock.
            conn.execute("SELECT pg_advisory_lock(727274)")
            try:
                conn.execute(SCHEMA)
            finally:
                conn.execute("SELECT pg_advisory_unlock(727274)")
    except psycopg.OperationalError as exc:
        raise _down(exc) from None


class PgSessionStore:
    """``SessionStore``'s interface on PostgreSQL (called from threads, as the file store
    is)."""

    def __init__(self, dsn: str, pool_size: int = 10) -> None:
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=5,
            kwargs={"connect_timeout": 5},
            check=ConnectionPool.check_connection,
        )

    def open(self) -> None:
        create_schema(self.dsn)
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _down(exc) from None

    def ping(self) -> None:
        with self._conn() as conn:
            conn.execute("SELECT 1")

    def create(self, model: str | None = None, owner: str | None = None) -> Session:
        now = time.time()
        session = Session(uuid.uuid4().hex, now, now, model, owner=owner)
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO sessions (id, created, updated, model, title, compactions, owner)"
                " VALUES (%s, %s, %s, %s, %s, 0, %s)",
                (session.id, now, now, model, None, owner),
            )
        return session

    def get(self, session_id: str) -> Session | None:
        if not _ID.fullmatch(session_id):
            return None
        with self._conn() as conn:
            head = conn.execute(
                "SELECT id, created, updated, model, title, compactions, owner FROM sessions"
                " WHERE id = %s",
                (session_id,),
            ).fetchone()
            if head is None:
                return None
            rows = conn.execute(
                "SELECT message FROM session_messages WHERE session_id = %s ORDER BY seq",
                (session_id,),
            ).fetchall()
        messages: list[ChatMessage] = [r[0] for r in rows if r[0].get("role") in ROLES]
        return Session(head[0], head[1], head[2], head[3], head[4], messages, head[5], head[6])

    def all(self) -> list[Session]:
        with self._conn() as conn:
            ids = conn.execute("SELECT id FROM sessions ORDER BY updated DESC").fetchall()
        found = [self.get(row[0]) for row in ids]
        return [s for s in found if s is not None]

    def append(self, session: Session, messages: list[ChatMessage]) -> bool:
        """A turn's messages after the session's last, in one transaction that holds the
        session's row; False when the session was deleted meanwhile."""
        if not messages:
            return True
        now = time.time()
        title = session.title
        if title is None:
            first = next((m for m in messages if m.get("role") == "user"), None)
            title = _title(first.get("content")) if first is not None else None
        from psycopg.types.json import Jsonb

        with self._conn() as conn, conn.transaction():
            locked = conn.execute(
                "SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session.id,)
            ).fetchone()
            if locked is None:
                log.warning("session %s was deleted; its new messages are not saved", session.id)
                return False
            (last,) = conn.execute(
                "SELECT COALESCE(MAX(seq), -1) FROM session_messages WHERE session_id = %s",
                (session.id,),
            ).fetchone()
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO session_messages (session_id, seq, message) VALUES (%s, %s, %s)",
                    [(session.id, last + 1 + i, Jsonb(m)) for i, m in enumerate(messages)],
                )
            conn.execute(
                "UPDATE sessions SET updated = %s, title = COALESCE(title, %s) WHERE id = %s",
                (now, title, session.id),
            )
        session.messages.extend(messages)
        session.title = session.title or title
        session.updated = now
        return True

    def rewrite(self, session: Session, create: bool = False) -> bool:
        """Replace the whole session (compaction, a model change) in one transaction."""
        from psycopg.types.json import Jsonb

        session.updated = time.time()
        with self._conn() as conn, conn.transaction():
            if create:
                conn.execute(
                    "INSERT INTO sessions (id, created, updated, model, title, compactions,"
                    " owner) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    (
                        session.id,
                        session.created,
                        session.updated,
                        session.model,
                        session.title,
                        session.compactions,
                        session.owner,
                    ),
                )
            updated = conn.execute(
                "UPDATE sessions SET updated = %s, model = %s, title = %s, compactions = %s"
                " WHERE id = %s",
                (session.updated, session.model, session.title, session.compactions, session.id),
            ).rowcount
            if not updated:
                log.warning("session %s was deleted; its new messages are not saved", session.id)
                return False
            conn.execute("DELETE FROM session_messages WHERE session_id = %s", (session.id,))
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO session_messages (session_id, seq, message) VALUES (%s, %s, %s)",
                    [(session.id, i, Jsonb(m)) for i, m in enumerate(session.messages)],
                )
        return True

    def delete(self, session_id: str) -> bool:
        if not _ID.fullmatch(session_id):
            return False
        with self._conn() as conn:
            return bool(conn.execute("DELETE FROM sessions WHERE id = %s", (session_id,)).rowcount)


class PgResponseStore:
    """``ResponseStore`` on PostgreSQL."""

    def __init__(self, dsn: str, retention_days: float, pool_size: int = 10) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.dsn = dsn
        self.retention = retention_days * 86400.0
        self._last_purge = time.time()
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=5,
            kwargs={"connect_timeout": 5},
            check=AsyncConnectionPool.check_connection,
        )

    async def open(self) -> None:
        import asyncio

        await asyncio.to_thread(create_schema, self.dsn)
        await self.pool.open(wait=False)
        await self.purge(time.time() - self.retention)

    async def aclose(self) -> None:
        await self.pool.close()

    def _conn(self) -> Any:
        return _AsyncConn(self.pool)

    async def put(self, record: Any) -> None:
        from psycopg.types.json import Jsonb

        if time.time() - self._last_purge > PURGE_EVERY:  # retention, as SQLite's store keeps it
            self._last_purge = time.time()
            await self.purge(time.time() - self.retention)

        body = {"response": record.response, "input_items": record.input_items}
        items = [
            (record.id, item["id"], record.created_at, Jsonb(item))
            for item in [*record.input_items, *record.output]
            if item.get("id")
        ]
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO responses (id, created, owner, body) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
                (record.id, record.created_at, record.owner, Jsonb(body)),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO response_items (response, id, created, body)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (response, id) DO NOTHING",
                    items,
                )

    async def get(self, response_id: str) -> Any:
        from localgpt.api.responses.store import StoredResponse

        async with self._conn() as conn:
            cur = await conn.execute(
                "SELECT id, created, owner, body FROM responses WHERE id = %s", (response_id,)
            )
            row = await cur.fetchone()
        if row is None:
            return None
        body = row[3]
        return StoredResponse(row[0], row[1], body["response"], body["input_items"], row[2])

    async def find_items(
        self, item_ids: Sequence[str], caller: str | None = None, admin: bool = False
    ) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        async with self._conn() as conn:
            for item_id in item_ids:
                cur = await conn.execute(
                    "SELECT i.body FROM response_items i JOIN responses r ON r.id = i.response"
                    " WHERE i.id = %s AND (%s OR r.owner IS NULL OR r.owner = %s)"
                    " ORDER BY i.created DESC LIMIT 1",
                    (item_id, admin, caller),
                )
                row = await cur.fetchone()
                if row is not None:
                    found[item_id] = row[0]
        return found

    async def delete(self, response_id: str) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute("DELETE FROM responses WHERE id = %s", (response_id,))
            return bool(cur.rowcount)

    async def purge(self, before: float) -> int:
        async with self._conn() as conn:
            cur = await conn.execute("DELETE FROM responses WHERE created < %s", (before,))
            return int(cur.rowcount)

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.execute("SELECT 1")


class _AsyncConn:
    """A pooled connection whose failures are ``BackendDown``."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._cm: Any = None

    async def __aenter__(self) -> Any:
        import psycopg
        from psycopg_pool import PoolTimeout

        self._cm = self.pool.connection()
        try:
            return await self._cm.__aenter__()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise _down(exc) from None

    async def __aexit__(self, kind: Any, error: Any, trace: Any) -> None:
        import psycopg

        try:
            await self._cm.__aexit__(kind, error, trace)
        except psycopg.OperationalError as exc:
            raise _down(exc) from None
        if isinstance(error, psycopg.OperationalError):
            raise _down(error) from None
