"""Searching the index: candidates by BM25 and by cosine similarity, each scored on one
absolute scale (``memory.scoring.relevance``).

A mixin of ``MemoryIndex``: the index owns the database and the vectors' matrix; this is how
a query reads them. Vectors are float32 BLOBs, scanned exactly with numpy from a matrix
cached in memory (this sqlite3 cannot load extensions such as sqlite-vec): about 6 ms for
100k chunks on 2 cores, and a hybrid search about 15 ms in all (``bench/memory.py``).
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from localgpt.memory import scoring
from localgpt.memory.chunking import CharEstimate, TokenCounter
from localgpt.memory.embedder import Embedder
from localgpt.memory.scoring import (
    age_days,
    idf,
    match_expression,
    query_terms,
    relevance,
    selective,
    snippet,
)

MODES = ("hybrid", "fts", "vector")


@dataclass(frozen=True)
class SearchResult:
    path: str  # workspace-relative, with forward slashes
    start_line: int
    end_line: int
    score: float
    snippet: str

    def as_hit(self) -> dict[str, Any]:
        """As a tool result shows it to a model (ours, or an MCP client's)."""
        return {
            "path": self.path,
            "lines": f"{self.start_line}-{self.end_line}",
            "score": round(self.score, 3),
            "text": self.snippet,
        }


class Search:
    """How ``MemoryIndex`` answers a query."""

    _conn: sqlite3.Connection
    _lock: threading.Lock
    _embedder: Embedder | None
    _decay: float
    _pool: ThreadPoolExecutor | None
    _matrix: npt.NDArray[np.float32] | None
    _matrix_ids: npt.NDArray[np.int64]
    _matrix_version: int
    _total: int | None
    _total_version: int

    def _count(self, sql: str) -> int:
        return int(self._conn.execute(sql).fetchone()[0])

    def _chunking(
        self, embedder: Embedder | None, chunk_size: int, chunk_overlap: int, decay: float
    ) -> None:
        """The settings every index chunks, embeds and fades by (checked)."""
        if chunk_size < 1 or chunk_overlap < 0 or decay < 0:
            raise ValueError("chunk_size must be positive, chunk_overlap and decay_lambda >= 0")
        if embedder is not None and chunk_size > embedder.max_tokens - 2:
            raise ValueError(
                f"chunk_size must leave room for 2 special tokens in {embedder.max_tokens}"
            )
        self._embedder = embedder
        self._counter: TokenCounter = embedder if embedder is not None else CharEstimate()
        self._chunk_size = chunk_size
        # Half a chunk at most: more would index most lines many times over.
        self._chunk_overlap = min(chunk_overlap, chunk_size // 2)
        self._decay = decay

    def search(
        self, query: str, limit: int = 5, mode: str = "hybrid", min_score: float = 0.0
    ) -> list[SearchResult]:
        """The ``limit`` chunks that best match ``query``, best first, none scoring below
        ``min_score``.

        Candidates are the best ``2 * limit`` chunks by BM25 and by cosine similarity. Each is
        then scored on one absolute scale (``relevance``), not by its rank in either list: a
        score means the same for every query, so a threshold drops what matches neither the
        query's meaning nor its words, however few candidates there are. ``mode`` is
        "hybrid", "fts" or "vector"; without an embedder it is always "fts".
        """
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; use one of {', '.join(MODES)}")
        if self._embedder is None:
            mode = "fts"
        if limit < 1 or not query.strip():
            return []
        with self._lock:
            # The query is embedded on a helper thread while SQLite runs the FTS queries here:
            # both release the GIL, and neither uses more than one core.
            vector = self._helper().submit(self._embed_query, query) if mode != "fts" else None
            terms = query_terms(query)
            counts = self._term_counts(terms) if mode != "vector" else {}
            candidates = self._fts(counts, 2 * limit) if mode != "vector" else []
            similarity: dict[int, float] = {}
            if vector is not None:
                similarity = self._nearest(vector.result(), 2 * limit, candidates)
                candidates += [c for c in similarity if c not in set(candidates)]
            coverage = self._coverage(counts, candidates) if mode != "vector" else {}
            scores = {
                c: relevance(similarity.get(c), coverage.get(c, 0.0), mode) for c in candidates
            }
            results = self._results(scores)
        # Equal scores keep the order they were found in: BM25's, then the embedder's.
        order = {chunk_id: i for i, chunk_id in enumerate(candidates)}
        kept = [(chunk_id, r) for chunk_id, r in results if r.score >= min_score]
        kept.sort(key=lambda found: (-found[1].score, order[found[0]]))
        return [r for _, r in kept[:limit]]

    def _term_counts(self, terms: list[str]) -> dict[str, int]:
        """Each term's chunk count, counted up to ``COMMON_TERM_CHUNKS + 1``."""
        return {term: self._count_limited(term, scoring.COMMON_TERM_CHUNKS + 1) for term in terms}

    def _fts(self, counts: dict[str, int], limit: int) -> list[int]:
        terms = selective(counts)
        if not terms:
            return []
        rows = self._conn.execute(
            "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT ?",
            (match_expression(terms), limit),
        )
        return [row[0] for row in rows]

    def _coverage(self, counts: dict[str, int], candidates: list[int]) -> dict[int, float]:
        """How much of the query each candidate contains: the IDF-weighted share of its
        words found in the chunk (stemmed, as FTS5 matches them), from 0 to 1. A word no
        chunk holds still counts in the whole, so a half-matched query scores a half."""
        if not candidates or not counts:
            return {}
        total = self._chunk_total()
        weights = {t: idf(n, total) for t, n in counts.items()}
        whole = sum(weights.values())
        found: dict[int, float] = {}
        marks = ",".join("?" * len(candidates))
        for term in selective(counts):
            if not counts[term]:
                continue
            rows = self._conn.execute(
                f"SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? AND rowid IN ({marks})",
                (match_expression([term]), *candidates),
            )
            for (chunk_id,) in rows:
                found[chunk_id] = found.get(chunk_id, 0.0) + weights[term] / whole
        return found

    def _chunk_total(self) -> int:
        version = self._count("PRAGMA data_version")
        if self._total_version != version or self._total is None:
            self._total = self._count("SELECT count(*) FROM chunks")
            self._total_version = version
        return self._total

    def _count_limited(self, term: str, limit: int) -> int:
        row = self._conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ? LIMIT ?)",
            (match_expression([term]), limit),
        ).fetchone()
        return int(row[0])

    def _helper(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="memory-query")
        return self._pool

    def _embed_query(self, query: str) -> npt.NDArray[np.float32]:
        assert self._embedder is not None
        vector: npt.NDArray[np.float32] = self._embedder.embed([query])[0]
        return vector

    def _nearest(
        self, query: npt.NDArray[np.float32], limit: int, also: list[int]
    ) -> dict[int, float]:
        """The ``limit`` chunks most similar to ``query``, and the chunks of ``also``: their
        cosine similarity, best first."""
        matrix, ids = self._vectors()
        if not len(ids):
            return {}
        similarity = self._similarity(matrix, query)
        k = min(limit, len(ids))
        top = np.argpartition(-similarity, k - 1)[:k]
        top = top[np.argsort(-similarity[top], kind="stable")]
        found = {int(ids[i]): float(similarity[i]) for i in top}
        if also:
            # ids are sorted (the matrix is loaded in id order): find the others' rows.
            wanted = np.array([c for c in also if c not in found], dtype=np.int64)
            rows = np.searchsorted(ids, wanted)
            for chunk_id, row in zip(wanted.tolist(), rows.tolist(), strict=True):
                if row < len(ids) and ids[row] == chunk_id:
                    found[chunk_id] = float(similarity[row])
        return found

    def _similarity(
        self, matrix: npt.NDArray[np.float32], query: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.float32]:
        """``matrix @ query``, half on the helper thread and half on this one. Not numpy's
        BLAS: its threads spin for a while after each call, and on a small machine they
        took the cores of the next search's FTS query and embedding (measured on 2 cores
        at 100k chunks: hybrid p50 20 ms with BLAS, 15 ms this way)."""
        half = len(matrix) // 2
        rest = self._helper().submit(np.einsum, "ij,j->i", matrix[half:], query)
        first: npt.NDArray[np.float32] = np.einsum("ij,j->i", matrix[:half], query)
        return np.concatenate([first, rest.result()])

    def _vectors(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Every chunk embedding as one matrix, reloaded when the database has changed (by
        this connection or, as ``PRAGMA data_version`` tells, by another)."""
        version = self._count("PRAGMA data_version")
        if self._matrix is not None and version == self._matrix_version:
            return self._matrix, self._matrix_ids
        assert self._embedder is not None
        dims = self._embedder.dims
        cursor = self._conn.execute(
            "SELECT id, embedding FROM chunks WHERE length(embedding) = ? ORDER BY id",
            (dims * 4,),
        )
        ids: list[npt.NDArray[np.int64]] = []
        blocks: list[npt.NDArray[np.float32]] = []
        while rows := cursor.fetchmany(4096):
            ids.append(np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)))
            blob = b"".join(row[1] for row in rows)
            blocks.append(np.frombuffer(blob, dtype=np.float32).reshape(len(rows), dims))
        self._matrix = np.concatenate(blocks) if blocks else np.zeros((0, dims), np.float32)
        self._matrix_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
        self._matrix_version = version
        return self._matrix, self._matrix_ids

    def _results(self, scores: dict[int, float]) -> list[tuple[int, SearchResult]]:
        if not scores:
            return []
        marks = ",".join("?" * len(scores))
        rows = self._conn.execute(
            f"SELECT id, path, start_line, end_line, text FROM chunks WHERE id IN ({marks})",
            list(scores),
        )
        return self._scored(rows, scores)

    def _scored(
        self, rows: Iterable[tuple[int, str, int, int, str]], scores: dict[int, float]
    ) -> list[tuple[int, SearchResult]]:
        """The found chunks as results, daily logs faded by age where decay is set."""
        now = time.time()
        results = []
        for chunk_id, path, start, end, text in rows:
            score = scores[chunk_id]
            if self._decay:
                score *= math.exp(-self._decay * age_days(path, now))
            results.append((chunk_id, SearchResult(path, start, end, score, snippet(text))))
        return results
