"""Stored responses: what ``GET /v1/responses/{id}``, its ``input_items`` and
``previous_response_id`` read.

``ResponseStore`` is the interface a shared store implements too; ``SQLiteResponseStore``
keeps them in ``$XDG_STATE_HOME/localgpt/responses.sqlite3`` (mode 0600). ``put`` returns
once the response is committed to the write-ahead log, so a response the client has seen
survives a crash of the server (``kill -9``). Unlike a session turn, the log is not synced
to the disk on every commit (``synchronous=NORMAL``): a power cut may lose the last moments'
responses, and in exchange a stored response costs about 0.02 ms rather than the 0.5 ms of a
sync (measured here), which ``make bench`` showed as half a millisecond added to every
request. Puts that arrive together share one commit, on the store's one thread. Responses older than
``[responses] retention_days`` are deleted at start-up and hourly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

log = logging.getLogger("localgpt.api")
PURGE_EVERY = 3600.0  # seconds between two retention sweeps


@dataclass(slots=True)
class StoredResponse:
    """A response as it was answered, with the input it answered."""

    id: str
    created_at: float
    response: dict[str, Any]  # the Response object
    input_items: list[dict[str, Any]] = field(default_factory=list)
    owner: str | None = None  # the key that made it, when keys are in use

    @property
    def previous_response_id(self) -> str | None:
        found = self.response.get("previous_response_id")
        return str(found) if found else None

    @property
    def output(self) -> list[dict[str, Any]]:
        return list(self.response.get("output") or ())

    def visible_to(self, caller: str | None, admin: bool = False) -> bool:
        """As sessions: a key sees what it made; an admin key, and everyone for what was made
        without a key, sees all."""
        return admin or self.owner is None or self.owner == caller


class ResponseStore(Protocol):
    """Where responses are kept. ``put`` returns once the response is durable; reads see
    every ``put`` that returned."""

    async def open(self) -> None:
        """Ready the store and sweep what is past its retention; run at start-up."""
        ...

    async def put(self, record: StoredResponse) -> None: ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def find_items(
        self, item_ids: Sequence[str], caller: str | None = None, admin: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Items (input or output) of the stored responses ``caller`` may see, by id, for
        ``item_reference``; the latest response's where several hold the same id. Item ids
        may be the client's own: another key's item of the same id is not found."""
        ...

    async def delete(self, response_id: str) -> bool: ...

    async def purge(self, before: float) -> int:
        """Delete the responses created before ``before`` (epoch seconds); how many."""
        ...

    async def aclose(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    owner TEXT,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_created ON responses(created);
CREATE TABLE IF NOT EXISTS items (
    response TEXT NOT NULL REFERENCES responses(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    created REAL NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (response, id)
);
CREATE INDEX IF NOT EXISTS items_id ON items(id, created);
"""


class SQLiteResponseStore:
    def __init__(self, path: Path, retention_days: float) -> None:
        self.path = path
        self.retention = retention_days * 86400.0
        self._lock = threading.Lock()
        self._queue: list[tuple[StoredResponse, asyncio.Future[None]]] = []
        self._writing = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="responses")
        self._db: sqlite3.Connection | None = None
        self._last_purge = 0.0

    # --- the connection, used by the store's one thread only ---------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            self._db = db
        return self._db

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # --- writes ---------------------------------------------------------------------------

    async def put(self, record: StoredResponse) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._queue.append((record, done))
            start = not self._writing
            self._writing = True
        if start:
            self._executor.submit(self._drain, loop)
        await done

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit everything queued, one transaction per batch, until the queue is empty."""
        while True:
            with self._lock:
                batch, self._queue = self._queue, []
                if not batch:
                    self._writing = False
                    return
            error: BaseException | None = None
            try:
                self._write([record for record, _ in batch])
            except Exception as exc:
                log.exception("could not store %d response(s)", len(batch))
                error = exc
            for _, done in batch:
                loop.call_soon_threadsafe(_settle, done, error)
            self._maybe_purge()

    def _write(self, batch: list[StoredResponse]) -> None:
        db = self._conn()
        rows = []
        items = []
        for record in batch:
            body = orjson.dumps({"response": record.response, "input_items": record.input_items})
            rows.append((record.id, record.created_at, record.owner, body))
            for item in [*record.input_items, *record.output]:
                if item.get("id"):
                    items.append((record.id, item["id"], record.created_at, orjson.dumps(item)))
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?)", rows)
            db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)", items)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def delete(self, response_id: str) -> bool:
        return bool(await self._run(self._delete, response_id))

    def _delete(self, response_id: str) -> bool:
        cursor = self._conn().execute("DELETE FROM responses WHERE id = ?", (response_id,))
        return cursor.rowcount > 0

    async def purge(self, before: float) -> int:
        return int(await self._run(self._purge, before))

    def _purge(self, before: float) -> int:
        self._last_purge = time.time()
        cursor = self._conn().execute("DELETE FROM responses WHERE created < ?", (before,))
        if cursor.rowcount:
            log.info("deleted %d stored response(s) past their retention", cursor.rowcount)
        return cursor.rowcount

    def _maybe_purge(self) -> None:
        now = time.time()
        if now - self._last_purge > PURGE_EVERY:
            try:
                self._purge(now - self.retention)
            except sqlite3.Error:
                log.exception("could not delete old stored responses")

    # --- reads ----------------------------------------------------------------------------

    async def get(self, response_id: str) -> StoredResponse | None:
        return await self._run(self._get, response_id)  # type: ignore[no-any-return]

    def _get(self, response_id: str) -> StoredResponse | None:
        row = (
            self._conn()
            .execute("SELECT id, created, owner, body FROM responses WHERE id = ?", (response_id,))
            .fetchone()
        )
        if row is None:
            return None
        data = orjson.loads(row[3])
        return StoredResponse(row[0], row[1], data["response"], data["input_items"], row[2])

    async def find_items(
        self, item_ids: Sequence[str], caller: str | None = None, admin: bool = False
    ) -> dict[str, dict[str, Any]]:
        return await self._run(self._find_items, list(item_ids), caller, admin)  # type: ignore[no-any-return]

    def _find_items(
        self, item_ids: list[str], caller: str | None, admin: bool
    ) -> dict[str, dict[str, Any]]:
        db = self._conn()
        found: dict[str, dict[str, Any]] = {}
        for item_id in item_ids:
            row = db.execute(
                "SELECT i.body FROM items i JOIN responses r ON r.id = i.response"
                " WHERE i.id = ? AND (? OR r.owner IS NULL OR r.owner = ?)"
                " ORDER BY i.created DESC LIMIT 1",
                (item_id, admin, caller),
            ).fetchone()
            if row is not None:
                found[item_id] = orjson.loads(row[0])
        return found

    # --- lifetime -------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file and sweep what is past its retention; run at start-up."""
        await self.purge(time.time() - self.retention)

    async def aclose(self) -> None:
        """Wait for the writes in flight, then close."""
        # One thread runs the store's work in order: the close comes after every drain
        # submitted before it, and a drain runs until the queue is empty.
        await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return  # its request was cancelled meanwhile
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
