"""The memory search index: the workspace's markdown, chunked, in SQLite with FTS5 and vectors.

The index is a cache of the workspace, so anything wrong with it (corruption, an older
schema, another embedder or other chunk settings) is fixed by rebuilding, never by failing.
Each file is replaced in one transaction: a process killed mid-reindex leaves every file
either fully old (and still carrying its old hash, so it is redone next time) or fully new.
A reindex told to ``stop`` (the server shutting down) ends the same way, only sooner: after
the batch it is writing, with the files it did not reach left for the next run.

Search follows upstream LocalGPT: the best ``2 * limit`` chunks by BM25 and by cosine
similarity, each list scored by rank as ``1 / (1 + rank)``, fused ``0.3 * fts + 0.7 *
vector``. Vectors are float32 BLOBs, scanned exactly with numpy from a matrix cached in
memory (this sqlite3 cannot load extensions such as sqlite-vec): about 6 ms for 100k chunks
on 2 cores, and a hybrid search about 15 ms in all (``bench/memory.py``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from localgpt.memory.chunking import Chunk, chunk_text, embedded_text
from localgpt.memory.embedder import Embedder
from localgpt.memory.search import Search, SearchResult
from localgpt.memory.workspace import Workspace

log = logging.getLogger("localgpt.memory")

SCHEMA_VERSION = "2"
EMBED_BATCH = 64  # chunks gathered across files for one embed call, then committed
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    path TEXT PRIMARY KEY, hash TEXT NOT NULL, mtime INTEGER NOT NULL, size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    hash TEXT NOT NULL,
    text TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '',
    embedding BLOB
);
CREATE INDEX IF NOT EXISTS chunks_path ON chunks(path);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, context, content='chunks', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text, context) VALUES (new.id, new.text, new.context);
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text, context)
    VALUES ('delete', old.id, old.text, old.context);
END;
"""

Progress = Callable[[int, int], None]  # (files done, files to index)


class Index(Protocol):
    """A search index of the workspace: ``MemoryIndex`` (SQLite, this machine) or
    ``pgindex.PgMemoryIndex`` (PostgreSQL with pgvector, shared by replicas)."""

    def reindex(self, force: bool = False, progress: Progress | None = None) -> ReindexStats: ...

    def index_file(self, relative_path: str) -> bool: ...

    def remove_file(self, relative_path: str) -> bool: ...

    def search(
        self, query: str, limit: int = 5, mode: str = "hybrid", min_score: float = 0.0
    ) -> list[SearchResult]: ...

    def stats(self) -> dict[str, Any]: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


# --- the index ------------------------------------------------------------------------------


@dataclass
class ReindexStats:
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0
    chunks_added: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    stopped: bool = False  # ended early by ``MemoryIndex.stop``; the next run does the rest


@dataclass
class _Pending:
    """A changed file, chunked, on its way into the index."""

    path: str
    hash: str
    mtime: int
    size: int
    chunks: list[Chunk]
    vectors: list[bytes | None]  # a stored embedding to reuse, or None to compute


class _Rebuild(Exception):
    """The database is damaged or from another schema version."""


class MemoryIndex(Search):
    """The index of one workspace. Calls are serialised by a lock; the app makes them from
    one worker thread anyway, which need not be the thread that opened the index."""

    def __init__(
        self,
        db_path: Path,
        workspace: Workspace,
        embedder: Embedder | None,
        chunk_size: int = 240,
        chunk_overlap: int = 40,
        decay_lambda: float = 0.0,
    ) -> None:
        self.db_path = db_path
        self.workspace = workspace
        self._chunking(embedder, chunk_size, chunk_overlap, decay_lambda)
        self._settings = {
            "schema": SCHEMA_VERSION,
            "model": embedder.model_id if embedder is not None else "none",
            "chunk_size": str(chunk_size),
            "chunk_overlap": str(self._chunk_overlap),
        }
        self._lock = threading.Lock()
        self._matrix: npt.NDArray[np.float32] | None = None
        self._matrix_ids: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._matrix_version = -1
        self._total: int | None = None  # chunks, for IDF weights; see _chunk_total
        self._total_version = -1
        self._pool: ThreadPoolExecutor | None = None  # embeds queries, see search()
        self._stopping = threading.Event()  # set from any thread, see stop()
        self._conn = self._connect()

    # --- opening and repair -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return self._open()
        except (sqlite3.DatabaseError, _Rebuild) as exc:
            log.warning("memory index %s is unusable (%s); rebuilding it", self.db_path, exc)
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
        return self._open()

    def _open(self) -> sqlite3.Connection:
        fd = os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o600)  # notes are private
        os.close(fd)
        conn = sqlite3.connect(
            self.db_path, timeout=10, isolation_level=None, check_same_thread=False
        )
        try:
            self._prepare_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _prepare_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # Reads every page once: about 0.3 s for 100k chunks, once per process.
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise _Rebuild("; ".join(problems))
        has_meta = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        stored: dict[str, str] = (
            dict(conn.execute("SELECT key, value FROM meta")) if has_meta else {}
        )
        if has_meta and stored.get("schema") != SCHEMA_VERSION:
            raise _Rebuild(f"schema version {stored.get('schema')}, expected {SCHEMA_VERSION}")
        conn.executescript(SCHEMA)
        if all(stored.get(key) == value for key, value in self._settings.items()):
            return
        if stored:
            log.info("memory index settings changed; everything will be reindexed")
        with _transaction(conn):
            conn.execute("DELETE FROM chunks")
            conn.execute("DELETE FROM files")
            conn.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", self._settings.items()
            )

    def stop(self) -> None:
        """Make a running reindex end after the batch it is writing, and any later one at
        once; safe to call from any thread. Nothing is left half-written: each file is still
        committed whole or not at all, and those not reached keep the hash and mtime they
        had (or have no row), so the next reindex in a new process picks them up."""
        self._stopping.set()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            self._matrix = None
            if self._pool is not None:
                self._pool.shutdown()

    # --- indexing -----------------------------------------------------------------------

    def reindex(self, force: bool = False, progress: Progress | None = None) -> ReindexStats:
        """Bring the index up to date with the workspace.

        A file whose size and mtime match the index is skipped without being read; one whose
        content hash matches only has its mtime refreshed. ``force`` re-chunks and
        re-embeds every file. ``progress(done, total)`` follows the files that had to be
        read.
        """
        started = time.perf_counter()
        with self._lock:
            known = {
                row[0]: (row[1], row[2], row[3])
                for row in self._conn.execute("SELECT path, hash, mtime, size FROM files")
            }
            changed, unchanged = self._scan(known, force)
            removed = sorted(set(known) - {relative for relative, _, _ in changed} - unchanged)
            self._remove(removed)
        stats = ReindexStats(files_unchanged=len(unchanged), files_removed=len(removed))
        # The lock is taken per file, not for the whole run: a search waits at most for
        # one file's write, never for a long first index to finish.
        self._update(changed, {} if force else known, stats, progress)
        stats.stopped = self._stopping.is_set()
        with self._lock:
            if not stats.stopped:
                self._conn.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('last_reindex', ?)",
                    (str(time.time()),),
                )
            stats.chunks_total = self._count("SELECT count(*) FROM chunks")
        stats.seconds = time.perf_counter() - started
        return stats

    def _scan(
        self, known: dict[str, tuple[str, int, int]], force: bool
    ) -> tuple[list[tuple[str, Path, os.stat_result]], set[str]]:
        """The workspace's files split into those to read and those whose size and mtime
        match the index."""
        root = self.workspace.root.resolve()
        changed = []
        unchanged = set()
        for path in self.workspace.markdown_files():
            relative = path.relative_to(root).as_posix()
            try:
                st = path.stat()
            except OSError:
                continue  # gone since the listing: removed from the index below
            old = known.get(relative)
            if not force and old and (old[1], old[2]) == (st.st_mtime_ns, st.st_size):
                unchanged.add(relative)
            else:
                changed.append((relative, path, st))
        return changed, unchanged

    def _update(
        self,
        changed: list[tuple[str, Path, os.stat_result]],
        known: dict[str, tuple[str, int, int]],
        stats: ReindexStats,
        progress: Progress | None,
    ) -> None:
        """Read and chunk the changed files, and write them in batches of about
        ``EMBED_BATCH`` chunks, so the embedder sees many texts at once. ``stop`` is
        checked before each file and each batch: a stopped run drops the batch it gathered
        (nothing of it is written yet) and leaves the rest for the next run."""
        done = 0

        def tick() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, len(changed))

        batch: list[_Pending] = []
        for relative, path, st in changed:
            if self._stopping.is_set():
                return
            pending = self._read(relative, path, st, known.get(relative))
            if pending is None:
                stats.files_unchanged += 1
                tick()
                continue
            batch.append(pending)
            if sum(len(p.chunks) for p in batch) >= EMBED_BATCH:
                self._write(batch, stats, tick)
                batch = []
        if not self._stopping.is_set():
            self._write(batch, stats, tick)

    def index_file(self, relative_path: str) -> bool:
        """Index one file now (for the watcher); a path that is no longer an indexable
        markdown file is removed instead. True when the index changed."""
        path = self.workspace.markdown_file(relative_path)
        if path is None:
            return self.remove_file(relative_path)
        relative = path.relative_to(self.workspace.root.resolve()).as_posix()
        with self._lock:
            row = self._conn.execute(
                "SELECT hash, mtime, size FROM files WHERE path = ?", (relative,)
            ).fetchone()
        try:
            st = path.stat()
        except OSError:
            return False
        pending = self._read(relative, path, st, row)
        if pending is None:
            return False
        self._write([pending], ReindexStats(), lambda: None)
        return True

    def remove_file(self, relative_path: str) -> bool:
        """Drop a file from the index. True when it was indexed."""
        with self._lock:
            return self._remove([relative_path]) > 0

    def _remove(self, paths: list[str]) -> int:
        if not paths:
            return 0
        with _transaction(self._conn):
            self._conn.executemany("DELETE FROM chunks WHERE path = ?", [(p,) for p in paths])
            removed = self._conn.executemany(
                "DELETE FROM files WHERE path = ?", [(p,) for p in paths]
            )
        return removed.rowcount

    def _read(
        self, relative: str, path: Path, st: os.stat_result, old: tuple[str, int, int] | None
    ) -> _Pending | None:
        """The file chunked, or None if its content is what the index holds (or it vanished).
        The stat is the one taken before reading: a write during the read leaves a newer
        mtime on disk, so the next run looks again."""
        try:
            data = path.read_bytes()
        except OSError:
            return None
        digest = hashlib.sha256(data).hexdigest()
        if old is not None and old[0] == digest:
            with self._lock, _transaction(self._conn):
                self._conn.execute(
                    "UPDATE files SET mtime = ?, size = ? WHERE path = ?",
                    (st.st_mtime_ns, st.st_size, relative),
                )
            return None
        text = data.decode("utf-8", errors="replace")
        chunks = chunk_text(text, self._counter, self._chunk_size, self._chunk_overlap)
        if old is None:
            reusable = {}
        else:
            with self._lock:
                reusable = self._stored_vectors(relative)
        vectors = [reusable.get(_hash(embedded_text(chunk))) for chunk in chunks]
        return _Pending(relative, digest, st.st_mtime_ns, st.st_size, chunks, vectors)

    def _stored_vectors(self, relative: str) -> dict[str, bytes]:
        """The file's current embeddings by chunk hash: an edit re-embeds only what changed."""
        rows = self._conn.execute(
            "SELECT hash, embedding FROM chunks WHERE path = ? AND embedding IS NOT NULL",
            (relative,),
        )
        return {row[0]: row[1] for row in rows}

    def _write(
        self, batch: list[_Pending], stats: ReindexStats, written: Callable[[], None]
    ) -> None:
        """Embed the batch's new chunks in one call, then write each file in its own
        transaction, calling ``written`` after each."""
        if self._embedder is not None:
            missing = [(p, i) for p in batch for i, v in enumerate(p.vectors) if v is None]
            if missing:
                vectors = self._embedder.embed([embedded_text(p.chunks[i]) for p, i in missing])
                for (pending, i), vector in zip(missing, vectors, strict=True):
                    pending.vectors[i] = vector.tobytes()
        for pending in batch:
            rows = [
                (
                    pending.path,
                    c.start_line,
                    c.end_line,
                    _hash(embedded_text(c)),
                    c.text,
                    c.context,
                    v,
                )
                for c, v in zip(pending.chunks, pending.vectors, strict=True)
            ]
            with self._lock, _transaction(self._conn):
                self._conn.execute("DELETE FROM chunks WHERE path = ?", (pending.path,))
                self._conn.executemany(
                    "INSERT INTO chunks(path, start_line, end_line, hash, text, context, "
                    "embedding) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute(
                    "INSERT INTO files(path, hash, mtime, size) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(path) DO UPDATE SET hash = excluded.hash, "
                    "mtime = excluded.mtime, size = excluded.size",
                    (pending.path, pending.hash, pending.mtime, pending.size),
                )
            self._matrix = None  # data_version does not count this connection's writes
            stats.files_indexed += 1
            stats.chunks_added += len(rows)
            written()

    # --- state --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        with self._lock:
            meta = dict(self._conn.execute("SELECT key, value FROM meta"))
            last = meta.get("last_reindex")
            return {
                "files": self._count("SELECT count(*) FROM files"),
                "chunks": self._count("SELECT count(*) FROM chunks"),
                "embedded_chunks": self._count(
                    "SELECT count(*) FROM chunks WHERE embedding IS NOT NULL"
                ),
                "db_bytes": sum(
                    os.path.getsize(f"{self.db_path}{suffix}")
                    for suffix in ("", "-wal")
                    if os.path.exists(f"{self.db_path}{suffix}")
                ),
                "model": meta.get("model"),
                "chunk_size": self._chunk_size,
                "chunk_overlap": self._chunk_overlap,
                "last_reindex": float(last) if last else None,
            }

    def _count(self, sql: str) -> int:
        return int(self._conn.execute(sql).fetchone()[0])


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
