"""``localgpt migrate``: this machine's sessions and stored responses into PostgreSQL, or
back. Nothing is deleted from the source; what the destination holds already (the same id)
is left as it is, so a second run copies nothing twice."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson

from localgpt.agent.sessions import SessionStore
from localgpt.config import Config, StorageConfig
from localgpt.shared.durable import PgSessionStore, create_schema


@dataclass
class Moved:
    sessions: int = 0
    sessions_there: int = 0
    responses: int = 0
    responses_there: int = 0
    index_chunks: int = 0  # the memory index, built from the workspace where it now lives


def reindex(config: Config, to: str) -> int:
    """The memory index rebuilt from the workspace (its source) in the new place: the
    shared PostgreSQL one, or this machine's SQLite one."""
    from localgpt.memory.manager import Memory, open_index

    if to == "local":
        config = config.model_copy(update={"storage": StorageConfig()})
    memory = Memory(config)
    embedder = memory.embedder() if config.memory.embedding_provider == "local" else None
    index = open_index(config, memory.workspace, memory.db_path, embedder)
    try:
        return index.reindex().chunks_total
    finally:
        index.close()


def to_shared(dsn: str, sessions_dir: Path, responses_db: Path) -> Moved:
    import psycopg
    from psycopg.types.json import Jsonb

    create_schema(dsn)
    moved = Moved()
    files = SessionStore(sessions_dir)
    with psycopg.connect(dsn) as conn:
        for session in files.all():
            with conn.transaction():
                inserted = conn.execute(
                    "INSERT INTO sessions (id, created, updated, model, title, compactions, owner)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                    (
                        session.id,
                        session.created,
                        session.updated,
                        session.model,
                        session.title,
                        session.compactions,
                        session.owner,
                    ),
                ).rowcount
                if not inserted:
                    moved.sessions_there += 1
                    continue
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO session_messages (session_id, seq, message)"
                        " VALUES (%s, %s, %s)",
                        [(session.id, i, Jsonb(m)) for i, m in enumerate(session.messages)],
                    )
                moved.sessions += 1
        if responses_db.exists():
            source = sqlite3.connect(responses_db)
            try:
                for rid, created, owner, body in source.execute(
                    "SELECT id, created, owner, body FROM responses"
                ):
                    with conn.transaction():
                        inserted = conn.execute(
                            "INSERT INTO responses (id, created, owner, body)"
                            " VALUES (%s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                            (rid, created, owner, Jsonb(orjson.loads(body))),
                        ).rowcount
                        if not inserted:
                            moved.responses_there += 1
                            continue
                        items = source.execute(
                            "SELECT id, created, body FROM items WHERE response = ?", (rid,)
                        ).fetchall()
                        with conn.cursor() as cur:
                            cur.executemany(
                                "INSERT INTO response_items (response, id, created, body)"
                                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                                [(rid, i, c, Jsonb(orjson.loads(b))) for i, c, b in items],
                            )
                        moved.responses += 1
            finally:
                source.close()
    return moved


def to_local(dsn: str, sessions_dir: Path, responses_db: Path) -> Moved:
    import psycopg

    from localgpt.api.responses.store import _SCHEMA

    moved = Moved()
    pg = PgSessionStore(dsn)
    files = SessionStore(sessions_dir)
    pg.pool.open(wait=True)
    try:
        for session in pg.all():
            if files.get(session.id) is not None:
                moved.sessions_there += 1
                continue
            files.rewrite(session, create=True)
            moved.sessions += 1
    finally:
        pg.close()
    responses_db.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = sqlite3.connect(responses_db, isolation_level=None)
    try:
        target.executescript(_SCHEMA)
        with psycopg.connect(dsn) as conn:
            rows = conn.execute("SELECT id, created, owner, body FROM responses").fetchall()
            for rid, created, owner, body in rows:
                there = target.execute("SELECT 1 FROM responses WHERE id = ?", (rid,)).fetchone()
                if there:
                    moved.responses_there += 1
                    continue
                items = conn.execute(
                    "SELECT id, created, body FROM response_items WHERE response = %s", (rid,)
                ).fetchall()
                target.execute("BEGIN")
                target.execute(
                    "INSERT INTO responses VALUES (?, ?, ?, ?)",
                    (rid, created, owner, orjson.dumps(body)),
                )
                target.executemany(
                    "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?)",
                    [(rid, i, c, orjson.dumps(b)) for i, c, b in items],
                )
                target.execute("COMMIT")
                moved.responses += 1
    finally:
        target.close()
    return moved
