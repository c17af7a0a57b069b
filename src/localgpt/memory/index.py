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
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from localgpt.memory.embedder import Embedder
from localgpt.memory.workspace import Workspace, split_lines

log = logging.getLogger("localgpt.memory")

SCHEMA_VERSION = "2"
MODES = ("hybrid", "fts", "vector")
KEYWORD_WEIGHT = 0.25  # see relevance()
SNIPPET_CHARS = 500
EMBED_BATCH = 64  # chunks gathered across files for one embed call, then committed
MAX_QUERY_TERMS = 32
COMMON_TERM_CHUNKS = 5000  # a query word in more chunks than this is left out of the FTS query
CHARS_PER_TOKEN = 4  # the budget estimate when there is no embedder to count with
DAILY_LOG = re.compile(r"memory/(\d{4}-\d{2}-\d{2})\.md")
WORD = re.compile(r"[^\W_]+")
# Words too common to carry a keyword match; dropped from the FTS query unless nothing is
# left. Besides adding no signal, each would make BM25 score nearly every chunk.
_STOPWORDS = (
    "a about above after again all am an and any are as at be been before being below "
    "between both but by can could did do does doing down during each few for from further "
    "had has have having he her here hers him his how i if in into is it its itself just me "
    "more most my myself no nor not now of off on once only or other our ours out over own "
    "same she should so some such than that the their theirs them then there these they "
    "this those through to too under until up very was we were what when where which while "
    "who whom why will with would you your yours"
)
STOPWORDS = frozenset(_STOPWORDS.split())

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


# --- chunking -------------------------------------------------------------------------------


class TokenCounter(Protocol):
    def count_tokens(self, text: str) -> int: ...
    def split_tokens(self, text: str, limit: int) -> list[str]: ...


class CharEstimate:
    """Counts a token per 4 characters: the chunk budget when no embedder is configured."""

    def count_tokens(self, text: str) -> int:
        return -(-len(text) // CHARS_PER_TOKEN)

    def split_tokens(self, text: str, limit: int) -> list[str]:
        width = limit * CHARS_PER_TOKEN
        pieces = []
        start = 0
        while len(text) - start > width:
            space = max(
                text.rfind(" ", start, start + width), text.rfind("\t", start, start + width)
            )
            end = space + 1 if space > start else start + width
            pieces.append(text[start:end])
            start = end
        pieces.append(text[start:])
        return pieces


@dataclass(frozen=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str
    context: str = ""  # the headings above the chunk: the embedder reads them first


class _Unit(NamedTuple):
    line: int
    text: str
    tokens: int


HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LIST_ITEM = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])\s+\S")
FENCE = re.compile(r"^ {0,3}(```|~~~)")
CONTEXT_CHARS = 80  # of headings kept as a chunk's context


@dataclass
class _Segment:
    """Lines that are chunked together: one list item, or the other lines between items."""

    lines: list[tuple[int, str]]
    context: str
    item: bool


def chunk_text(text: str, counter: TokenCounter, size: int, overlap: int) -> list[Chunk]:
    """Cut markdown into chunks of whole lines, following its lists.

    A list item is a chunk of its own, with the headings above it as its context: the facts
    of MEMORY.md and the entries of a daily log are unrelated to their neighbours, and a
    chunk averaging a dozen of them matches none (a question and its fact's line have a
    cosine similarity near 0.7; the question and a 14-fact chunk holding that line, near
    0.2). Other lines are packed into chunks of at most ``size`` tokens, each repeating about
    ``overlap`` tokens of lines from the end of the one before. A line over the budget is cut
    into pieces first, so no text is left out. (Measured with ``bench/eval_memory.py``:
    cutting prose at headings as well, or giving it its headings as context, ranked worse.)
    """
    chunks: list[Chunk] = []
    for segment in _segments(text):
        budget = size
        if segment.context:
            budget = max(size // 2, size - counter.count_tokens(segment.context) - 1)
        units = _units(segment.lines, counter, budget)
        start = 0
        while start < len(units):
            end, total = start, 0
            while end < len(units) and (end == start or total + units[end].tokens <= budget):
                total += units[end].tokens
                end += 1
            chunk = _chunk(units[start:end], segment.context)
            if chunk is not None:
                chunks.append(chunk)
            if end == len(units):
                break
            start = _overlap_start(units, start, end, overlap)
    return chunks


def _segments(text: str) -> list[_Segment]:
    """The list items, and the runs of other lines between them, in order. An item goes on
    to the next blank line, heading or item; lines inside a code fence are never items."""
    segments: list[_Segment] = []
    headings: list[tuple[int, str]] = []
    current: _Segment | None = None
    fenced = False
    for number, line in enumerate(split_lines(text), 1):
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2))]
        if not fenced and LIST_ITEM.match(line):
            if current is not None:
                segments.append(current)
            context = " > ".join(title for _, title in headings)[-CONTEXT_CHARS:]
            current = _Segment([(number, line)], context, True)
            continue
        if current is not None and current.item:
            if line.strip() and not heading:
                current.lines.append((number, line))  # the item goes on
                continue
            segments.append(current)
            current = None
        if current is None:
            if not line.strip():
                continue
            current = _Segment([], "", False)
        current.lines.append((number, line))
    if current is not None:
        segments.append(current)
    return segments


def _units(lines: list[tuple[int, str]], counter: TokenCounter, size: int) -> list[_Unit]:
    units = []
    for number, line in lines:
        tokens = counter.count_tokens(line)
        if tokens <= size:
            units.append(_Unit(number, line, tokens))
            continue
        for piece in counter.split_tokens(line, size):
            if piece.strip():
                units.append(_Unit(number, piece, counter.count_tokens(piece)))
    return units


def _overlap_start(units: list[_Unit], start: int, end: int, overlap: int) -> int:
    """Where the chunk after ``units[start:end]`` begins: as far back as whole units
    worth at most ``overlap`` tokens reach, but always after ``start``."""
    first, carried = end, 0
    while first - 1 > start and carried + units[first - 1].tokens <= overlap:
        first -= 1
        carried += units[first].tokens
    return first


def _chunk(units: list[_Unit], context: str = "") -> Chunk | None:
    """The chunk of ``units`` with blank lines trimmed from both ends; None if all blank."""
    filled = [i for i, unit in enumerate(units) if unit.text.strip()]
    if not filled:
        return None
    kept = units[filled[0] : filled[-1] + 1]
    # Pieces of one cut line are joined by a newline as well: a newline separates words for
    # the embedder's tokenizer, so the chunk's token count is exactly the sum counted above.
    return Chunk(kept[0].line, kept[-1].line, "\n".join(unit.text for unit in kept), context)


# --- search helpers -------------------------------------------------------------------------


def query_terms(text: str) -> list[str]:
    """The words of free text worth matching: lowercased, deduplicated, stopwords dropped
    (unless nothing else is left)."""
    words = list(dict.fromkeys(word.lower() for word in WORD.findall(text)))
    return ([word for word in words if word not in STOPWORDS] or words)[:MAX_QUERY_TERMS]


def match_expression(terms: list[str]) -> str:
    """An FTS5 MATCH expression for ``query_terms``: each quoted, joined with OR. Those
    hold only letters and digits, so no user input can be read as FTS5 syntax."""
    return " OR ".join(f'"{term}"' for term in terms)


def _selective(counts: dict[str, int]) -> list[str]:
    """The terms found in at most ``COMMON_TERM_CHUNKS`` chunks, or the rarest one if none
    is. BM25 must score every chunk a term matches before it can rank, and a term that
    common weighs little anyway (its IDF is below ln 20 at 100k chunks against about
    ln 100000 for a rare word). ``counts`` stop at the threshold, so checking costs at most
    that many rows per term."""
    if not counts:
        return []
    kept = [term for term, n in counts.items() if n <= COMMON_TERM_CHUNKS]
    return kept or [min(counts, key=counts.__getitem__)]


def _idf(count: int, total: int) -> float:
    """BM25's inverse document frequency of a term found in ``count`` of ``total`` chunks."""
    return math.log(1 + (total - count + 0.5) / (count + 0.5))


def relevance(similarity: float | None, coverage: float, mode: str = "hybrid") -> float:
    """A chunk's score, from 0 to 1, the same scale for every query.

    Meaning counts first: the cosine similarity of the query's and the chunk's embeddings.
    Words add to it by ``KEYWORD_WEIGHT`` times the square of the share of the query's
    (IDF-weighted) words the chunk holds, within what the similarity leaves: a chunk with
    every rare word of the query scores well however its meaning is judged, a chunk sharing
    one word of several gains little. Calibrated on ``bench/eval_memory.py``'s tuning split:
    with the weight at 0 or 0.25 the paraphrased questions rank and separate alike, and the
    weight lets exact names and numbers through.
    """
    if mode == "fts" or similarity is None:
        return coverage
    meaning = max(similarity, 0.0)
    if mode == "vector":
        return meaning
    return meaning + (1.0 - meaning) * KEYWORD_WEIGHT * coverage * coverage


def _snippet(text: str) -> str:
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text.rfind(" ", 0, SNIPPET_CHARS)
    if cut < SNIPPET_CHARS * 4 // 5:
        cut = SNIPPET_CHARS
    return text[:cut].rstrip() + " ..."


def _age_days(path: str, now: float) -> float:
    """A daily log's age, from its name. Everything else (MEMORY.md, knowledge/) holds
    durable facts and does not fade, however long ago it was written."""
    match = DAILY_LOG.fullmatch(path)
    if not match:
        return 0.0
    try:
        day = date.fromisoformat(match[1])
    except ValueError:
        return 0.0
    return float(max((date.fromtimestamp(now) - day).days, 0))


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


@dataclass(frozen=True)
class SearchResult:
    path: str  # workspace-relative, with forward slashes
    start_line: int
    end_line: int
    score: float
    snippet: str


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


class MemoryIndex:
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
        if chunk_size < 1 or chunk_overlap < 0 or decay_lambda < 0:
            raise ValueError("chunk_size must be positive, chunk_overlap and decay_lambda >= 0")
        if embedder is not None and chunk_size > embedder.max_tokens - 2:
            raise ValueError(
                f"chunk_size must leave room for 2 special tokens in {embedder.max_tokens}"
            )
        self.db_path = db_path
        self.workspace = workspace
        self._embedder = embedder
        self._counter: TokenCounter = embedder if embedder is not None else CharEstimate()
        self._chunk_size = chunk_size
        # Half a chunk at most: more would index most lines many times over.
        self._chunk_overlap = min(chunk_overlap, chunk_size // 2)
        self._decay = decay_lambda
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

    # --- search -------------------------------------------------------------------------

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
        return {term: self._count_limited(term, COMMON_TERM_CHUNKS + 1) for term in terms}

    def _fts(self, counts: dict[str, int], limit: int) -> list[int]:
        terms = _selective(counts)
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
        weights = {t: _idf(n, total) for t, n in counts.items()}
        whole = sum(weights.values())
        found: dict[int, float] = {}
        marks = ",".join("?" * len(candidates))
        for term in _selective(counts):
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
        now = time.time()
        results = []
        for chunk_id, path, start, end, text in rows:
            score = scores[chunk_id]
            if self._decay:
                score *= math.exp(-self._decay * _age_days(path, now))
            results.append((chunk_id, SearchResult(path, start, end, score, _snippet(text))))
        return results

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


def embedded_text(chunk: Chunk) -> str:
    """What the embedder reads of a chunk: its headings, then its lines."""
    return f"{chunk.context}\n{chunk.text}" if chunk.context else chunk.text


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
