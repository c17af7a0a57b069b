"""The memory index on PostgreSQL with pgvector, for replicas that share one memory.

The same index as ``MemoryIndex`` (``index.py``), on the server every replica reaches: the
workspace's markdown is still the truth, chunked by the same rules and embedded by the same
model; full-text search is PostgreSQL's (``to_tsvector('english', ...)``, a GIN index:
stemmed, as FTS5's porter tokenizer stems), vectors are pgvector's with an HNSW index
(cosine). A search scores its candidates with the same absolute scale (``scoring.relevance``:
cosine similarity plus the IDF-weighted share of the query's words), so a score means what it
means on SQLite and the same thresholds apply. One replica at a time reindexes: the reindex
holds a PostgreSQL advisory lock, and a replica that finds it taken skips its run (the other
one is bringing the index up to date).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from localgpt.memory.chunking import chunk_text, embedded_text
from localgpt.memory.embedder import Embedder
from localgpt.memory.index import EMBED_BATCH, ReindexStats
from localgpt.memory.scoring import (
    idf,
    selective,
)
from localgpt.memory.search import Search, SearchResult
from localgpt.memory.workspace import Workspace
from localgpt.shared.errors import BackendDown

log = logging.getLogger("localgpt.memory")
REINDEX_LOCK = 727275  # the advisory lock one reindexing replica holds
EF_SEARCH = 200
# Words in more chunks than this are left out of the text query, as on SQLite with 5,000: a
# PostgreSQL text search reads every matching row's tsvector to rank it (FTS5 ranks from its
# index), so the bar is lower here. A word in 1% of 100k chunks weighs little anyway.
COMMON_TERM_CHUNKS = 1000

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS memory_files (
    path TEXT PRIMARY KEY, hash TEXT NOT NULL, mtime BIGINT NOT NULL, size BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS memory_chunks (
    id BIGSERIAL PRIMARY KEY,
    path TEXT NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    hash TEXT NOT NULL,
    text TEXT NOT NULL,
    context TEXT NOT NULL DEFAULT '',
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', text || ' ' || context)) STORED
);
CREATE INDEX IF NOT EXISTS memory_chunks_path ON memory_chunks(path);
CREATE INDEX IF NOT EXISTS memory_chunks_tsv ON memory_chunks USING gin (tsv);
CREATE TABLE IF NOT EXISTS memory_vectors (
    id BIGINT PRIMARY KEY REFERENCES memory_chunks(id) ON DELETE CASCADE,
    embedding vector({dims}) NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_vectors_hnsw ON memory_vectors
    USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
"""
# The vectors have a table of their own: 1.5 kB a chunk inline made every text search read
# 200 MB of pages at 100k chunks (bench/shared.py: hybrid p50 134 ms).


def _vector(values: npt.NDArray[np.float32]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in values.tolist()) + "]"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PgMemoryIndex(Search):
    """``MemoryIndex``'s interface (reindex, index_file, remove_file, search, stats) on
    PostgreSQL. ``Search.search`` ranks, over this class's queries; calls are serialised by
    a lock, as on SQLite."""

    def __init__(
        self,
        dsn: str,
        workspace: Workspace,
        embedder: Embedder | None,
        chunk_size: int = 240,
        chunk_overlap: int = 40,
        decay_lambda: float = 0.0,
    ) -> None:
        import psycopg

        self.dsn = dsn
        self.workspace = workspace
        self._chunking(embedder, chunk_size, chunk_overlap, decay_lambda)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pool = None  # embeds queries while the text queries run, see Search.search
        # No server-side prepared statements: their generic plans (psycopg prepares after 5
        # runs) picked slow scans for the text queries, whose best plan depends on the word.
        try:
            self._pg = psycopg.connect(
                dsn, autocommit=True, connect_timeout=5, prepare_threshold=None
            )
        except psycopg.OperationalError as exc:
            raise BackendDown("storage", f"PostgreSQL did not answer: {exc}") from None
        dims = embedder.dims if embedder is not None else 384
        with self._pg.transaction():
            self._pg.execute("SELECT pg_advisory_xact_lock(727274)")
            self._pg.execute(SCHEMA.format(dims=dims))
        # pgvector's default (40) missed the nearest chunk of 712 in bench/eval_memory.py
        # (an index grown by inserts); 200 found the exact top 10 for every question.
        self._pg.execute(f"SET hnsw.ef_search = {EF_SEARCH}")

    def _live(self) -> None:
        """Connect again after PostgreSQL restarted (the old connection is then closed)."""
        import psycopg

        if self._pg.closed or self._pg.broken:
            try:
                self._pg = psycopg.connect(
                    self.dsn, autocommit=True, connect_timeout=5, prepare_threshold=None
                )
                self._pg.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
            except psycopg.OperationalError as exc:
                raise BackendDown("storage", f"PostgreSQL did not answer: {exc}") from None

    def search(
        self, query: str, limit: int = 5, mode: str = "hybrid", min_score: float = 0.0
    ) -> list[SearchResult]:
        import psycopg

        self._live()
        try:
            return super().search(query, limit, mode, min_score)
        except psycopg.OperationalError as exc:
            raise BackendDown("storage", f"PostgreSQL failed: {exc}") from None

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        self._pg.close()

    # --- indexing -----------------------------------------------------------------------

    def reindex(self, force: bool = False, progress: Any = None) -> ReindexStats:
        self._live()
        started = time.perf_counter()
        stats = ReindexStats()
        with self._lock:
            (mine,) = self._pg.execute(
                "SELECT pg_try_advisory_lock(%s)", (REINDEX_LOCK,)
            ).fetchone()  # type: ignore[misc]
        if not mine:
            log.info("another replica is reindexing the shared memory; not this one")
            stats.stopped = True
            return stats
        try:
            with self._lock:
                known = {
                    row[0]: (row[1], row[2], row[3])
                    for row in self._pg.execute("SELECT path, hash, mtime, size FROM memory_files")
                }
            root = self.workspace.root.resolve()
            seen: set[str] = set()
            pending: list[tuple[str, str, int, int, list[Any]]] = []
            for path in self.workspace.markdown_files():
                if self._stopping.is_set():
                    break
                relative = path.relative_to(root).as_posix()
                seen.add(relative)
                found = self._read(relative, path, known.get(relative), force)
                if found is None:
                    stats.files_unchanged += 1
                    continue
                pending.append(found)
                if sum(len(p[4]) for p in pending) >= EMBED_BATCH:
                    self._write(pending, stats)
                    pending = []
            if not self._stopping.is_set():
                self._write(pending, stats)
                removed = sorted(set(known) - seen)
                with self._lock, self._pg.transaction():
                    for relative in removed:
                        self._pg.execute("DELETE FROM memory_chunks WHERE path = %s", (relative,))
                        self._pg.execute("DELETE FROM memory_files WHERE path = %s", (relative,))
                stats.files_removed = len(removed)
            stats.stopped = self._stopping.is_set()
        finally:
            with self._lock:
                self._pg.execute("SELECT pg_advisory_unlock(%s)", (REINDEX_LOCK,))
        stats.chunks_total = self._count_chunks()
        stats.seconds = time.perf_counter() - started
        return stats

    def _read(
        self,
        relative: str,
        path: Path,
        old: tuple[str, int, int] | None,
        force: bool = False,
    ) -> tuple[str, str, int, int, list[Any]] | None:
        try:
            st = path.stat()
            if not force and old and (old[1], old[2]) == (st.st_mtime_ns, st.st_size):
                return None
            data = path.read_bytes()
        except OSError:
            return None
        digest = hashlib.sha256(data).hexdigest()
        if not force and old is not None and old[0] == digest:
            with self._lock:
                self._pg.execute(
                    "UPDATE memory_files SET mtime = %s, size = %s WHERE path = %s",
                    (st.st_mtime_ns, st.st_size, relative),
                )
            return None
        text = data.decode("utf-8", errors="replace")
        chunks = chunk_text(text, self._counter, self._chunk_size, self._chunk_overlap)
        return relative, digest, st.st_mtime_ns, st.st_size, chunks

    def _write(
        self, batch: list[tuple[str, str, int, int, list[Any]]], stats: ReindexStats
    ) -> None:
        if not batch:
            return
        vectors: list[list[str | None]] = [[None] * len(chunks) for *_, chunks in batch]
        if self._embedder is not None:
            with self._lock:
                reusable: dict[str, str] = {}
                for relative, *_ in batch:
                    for chunk_hash, vector in self._pg.execute(
                        "SELECT c.hash, v.embedding::text FROM memory_chunks c"
                        " JOIN memory_vectors v ON v.id = c.id WHERE c.path = %s",
                        (relative,),
                    ):
                        reusable[chunk_hash] = vector
            missing = []
            for f, (*_, chunks) in enumerate(batch):
                for i, chunk in enumerate(chunks):
                    known = reusable.get(_hash(embedded_text(chunk)))
                    if known is not None:
                        vectors[f][i] = known
                    else:
                        missing.append((f, i))
            if missing:
                made = self._embedder.embed([embedded_text(batch[f][4][i]) for f, i in missing])
                for (f, i), vector in zip(missing, made, strict=True):
                    vectors[f][i] = _vector(vector)
        for (relative, digest, mtime, size, chunks), vecs in zip(batch, vectors, strict=True):
            rows = [
                (relative, c.start_line, c.end_line, _hash(embedded_text(c)), c.text, c.context, v)
                for c, v in zip(chunks, vecs, strict=True)
            ]
            with self._lock, self._pg.transaction():
                # Two replicas' watchers may index one file at once: one after the other.
                self._pg.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (relative,))
                self._pg.execute("DELETE FROM memory_chunks WHERE path = %s", (relative,))
                with self._pg.cursor() as cur:
                    for *chunk, vector in rows:
                        cur.execute(
                            "INSERT INTO memory_chunks (path, start_line, end_line, hash, text,"
                            " context) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                            chunk,
                        )
                        if vector is not None:
                            (chunk_id,) = cur.fetchone()  # type: ignore[misc]
                            cur.execute(
                                "INSERT INTO memory_vectors (id, embedding)"
                                " VALUES (%s, %s::vector)",
                                (chunk_id, vector),
                            )
                self._pg.execute(
                    "INSERT INTO memory_files (path, hash, mtime, size) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (path) DO UPDATE SET hash = EXCLUDED.hash,"
                    " mtime = EXCLUDED.mtime, size = EXCLUDED.size",
                    (relative, digest, mtime, size),
                )
            stats.files_indexed += 1
            stats.chunks_added += len(rows)

    def index_file(self, relative_path: str) -> bool:
        self._live()
        path = self.workspace.markdown_file(relative_path)
        if path is None:
            return self.remove_file(relative_path)
        relative = path.relative_to(self.workspace.root.resolve()).as_posix()
        with self._lock:
            row = self._pg.execute(
                "SELECT hash, mtime, size FROM memory_files WHERE path = %s", (relative,)
            ).fetchone()
        found = self._read(relative, path, row)
        if found is None:
            return False
        self._write([found], ReindexStats())
        return True

    def remove_file(self, relative_path: str) -> bool:
        with self._lock, self._pg.transaction():
            self._pg.execute("DELETE FROM memory_chunks WHERE path = %s", (relative_path,))
            return bool(
                self._pg.execute(
                    "DELETE FROM memory_files WHERE path = %s", (relative_path,)
                ).rowcount
            )

    # --- search -------------------------------------------------------------------------

    def _term_counts(self, terms: list[str]) -> dict[str, int]:
        cap = COMMON_TERM_CHUNKS + 1
        counts = {}
        for term in terms:
            (n,) = self._pg.execute(
                "SELECT count(*) FROM (SELECT 1 FROM memory_chunks"
                " WHERE tsv @@ plainto_tsquery('english', %s) LIMIT %s) s",
                (term, cap),
            ).fetchone()  # type: ignore[misc]
            counts[term] = int(n)
        return counts

    def _fts(self, counts: dict[str, int], limit: int) -> list[int]:
        terms = selective(counts, COMMON_TERM_CHUNKS)
        if not terms:
            return []
        query = " OR ".join(terms)
        rows = self._pg.execute(
            "SELECT id FROM memory_chunks, websearch_to_tsquery('english', %s) q"
            " WHERE tsv @@ q ORDER BY ts_rank_cd(tsv, q) DESC, id LIMIT %s",
            (query, limit),
        )
        return [int(row[0]) for row in rows]

    def _coverage(self, counts: dict[str, int], candidates: list[int]) -> dict[int, float]:
        if not candidates or not counts:
            return {}
        total = self._count_chunks()
        weights = {t: idf(n, total) for t, n in counts.items()}
        whole = sum(weights.values())
        found: dict[int, float] = {}
        for term in selective(counts, COMMON_TERM_CHUNKS):
            if not counts[term]:
                continue
            rows = self._pg.execute(
                "SELECT id FROM memory_chunks WHERE tsv @@ plainto_tsquery('english', %s)"
                " AND id = ANY(%s)",
                (term, candidates),
            )
            for (chunk_id,) in rows:
                found[chunk_id] = found.get(chunk_id, 0.0) + weights[term] / whole
        return found

    def _nearest(
        self, query: npt.NDArray[np.float32], limit: int, also: list[int]
    ) -> dict[int, float]:
        vector = _vector(query)
        rows = self._pg.execute(
            "SELECT id, 1 - (embedding <=> %s::vector) FROM memory_vectors"
            " ORDER BY embedding <=> %s::vector LIMIT %s",
            (vector, vector, limit),
        ).fetchall()
        found = {int(r[0]): float(r[1]) for r in rows}
        others = [c for c in also if c not in found]
        if others:
            for chunk_id, sim in self._pg.execute(
                "SELECT id, 1 - (embedding <=> %s::vector) FROM memory_vectors WHERE id = ANY(%s)",
                (vector, others),
            ):
                found[int(chunk_id)] = float(sim)
        return found

    def _chunk_total(self) -> int:
        return self._count_chunks()

    def _count_chunks(self) -> int:
        (n,) = self._pg.execute("SELECT count(*) FROM memory_chunks").fetchone()  # type: ignore[misc]
        return int(n)

    def _results(self, scores: dict[int, float]) -> list[tuple[int, SearchResult]]:
        if not scores:
            return []
        rows = self._pg.execute(
            "SELECT id, path, start_line, end_line, text FROM memory_chunks WHERE id = ANY(%s)",
            (list(scores),),
        )
        return self._scored(rows.fetchall(), scores)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            files = self._pg.execute("SELECT count(*) FROM memory_files").fetchone()
            embedded = self._pg.execute("SELECT count(*) FROM memory_vectors").fetchone()
            return {
                "files": int(files[0]) if files else 0,
                "chunks": self._count_chunks(),
                "embedded_chunks": int(embedded[0]) if embedded else 0,
                "backend": "postgresql",
                "model": self._embedder.model_id if self._embedder is not None else "none",
                "chunk_size": self._chunk_size,
                "chunk_overlap": self._chunk_overlap,
                "last_reindex": None,
            }
