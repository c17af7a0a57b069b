"""Memory index: indexing throughput, reindex of an unchanged workspace, search latency.

- Indexing: 1,000 generated notes (the evaluation's generator, several seeds) indexed with the
  real embedder, once as 1,000 short files and once joined 20 to a file, whose chunks come
  near the 240-token limit; chunks and embedder tokens per second, then the time to reindex
  the unchanged workspace.
- Search: indexes of 10k and 100k chunks written straight into SQLite (embedding 100k real
  chunks would take hours on a laptop CPU): text drawn from a Zipf-distributed vocabulary
  that contains the evaluation's words, and random unit vectors. They are searched with the
  evaluation's 50 questions, so each hybrid search embeds a real query; p50 and p99 of the
  whole ``search`` call, after one search has loaded the vector matrix (timed separately).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.eval_memory import DATA, generated_notes  # noqa: E402

WORK = ROOT / ".bench"
FILES = 1000
SIZES = (10_000, 100_000)
WORDS_PER_CHUNK = 120
VOCABULARY = 30_000
REINDEX_RUNS = 5
SEARCH_ROUNDS = 4


def _write_notes(root: Path, count: int, per_file: int) -> int:
    """``count`` generated notes, each in its own file or joined ``per_file`` to a file (a
    long note); returns the number of files."""
    notes: list[tuple[str, str]] = []
    seed = 0
    while len(notes) < count:
        notes += [
            (f"set{seed}/{path}", text) for path, text in generated_notes(seed, set()).items()
        ]
        seed += 1
    notes = notes[:count]
    if per_file > 1:
        notes = [
            (
                f"long/note{i // per_file:03}.md",
                "\n".join(text for _, text in notes[i : i + per_file]),
            )
            for i in range(0, count, per_file)
        ]
    for relative, text in notes:
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return len(notes)


def indexing(home: Path, embedder: Any, per_file: int) -> dict[str, Any]:
    from localgpt.memory.index import MemoryIndex
    from localgpt.memory.workspace import Workspace

    workspace = Workspace(home / f"workspace-{per_file}")
    _write_notes(workspace.root, FILES, per_file)
    index = MemoryIndex(home / f"indexing-{per_file}.sqlite", workspace, embedder)
    first = index.reindex()
    texts = [row[0] for row in sqlite3.connect(index.db_path).execute("SELECT text FROM chunks")]
    tokens = sum(embedder.count_tokens(text) for text in texts)
    unchanged = [index.reindex().seconds for _ in range(REINDEX_RUNS)]
    index.close()
    return {
        "files": first.files_indexed,
        "chunks": first.chunks_total,
        "seconds": first.seconds,
        "chunks_per_s": first.chunks_total / first.seconds,
        "tokens_per_chunk": tokens / first.chunks_total,
        "tokens_per_s": tokens / first.seconds,
        "unchanged_reindex_ms": statistics.median(unchanged) * 1e3,
    }


def _vocabulary(rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Synthetic words plus the evaluation's own, which take Zipf ranks 20-2000 so that
    questions match a realistic share of chunks; returns the words and their weights."""
    real = sorted(set(re.findall(r"[a-z]+", DATA.read_text().lower())))
    words = [f"w{i}x" for i in range(VOCABULARY)]
    ranks = rng.choice(np.arange(20, 2000), len(real), replace=False)
    for word, rank in zip(real, ranks, strict=True):
        words[rank] = word
    weights = 1.0 / np.arange(1, VOCABULARY + 1)
    return words, weights / weights.sum()


def build_synthetic(db: Path, chunks: int, embedder: Any, workspace: Any) -> None:
    """An index of ``chunks`` synthetic chunks in 1,000 files, made by MemoryIndex (so schema
    and settings are its own) and filled directly."""
    from localgpt.memory.index import MemoryIndex

    MemoryIndex(db, workspace, embedder).close()
    rng = np.random.default_rng(chunks)
    words, weights = _vocabulary(rng)
    per_file = chunks // FILES
    conn = sqlite3.connect(db)
    with conn:
        conn.executemany(
            "INSERT INTO files(path, hash, mtime, size) VALUES (?, '', ?, 0)",
            [(f"synthetic/f{i}.md", time.time_ns()) for i in range(FILES)],
        )
    for start in range(0, chunks, 10_000):
        n = min(10_000, chunks - start)
        picks = rng.choice(len(words), size=(n, WORDS_PER_CHUNK), p=weights)
        vectors = rng.standard_normal((n, embedder.dims)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        rows = [
            (
                f"synthetic/f{(start + i) // per_file}.md",
                ((start + i) % per_file) * 10 + 1,
                ((start + i) % per_file) * 10 + 10,
                " ".join(words[j] for j in picks[i]),
                vectors[i].tobytes(),
            )
            for i in range(n)
        ]
        with conn:
            conn.executemany(
                "INSERT INTO chunks(path, start_line, end_line, hash, text, embedding) "
                "VALUES (?, ?, ?, '', ?, ?)",
                rows,
            )
    conn.close()


def search_at(home: Path, chunks: int, embedder: Any) -> dict[str, Any]:
    from localgpt.memory.index import MemoryIndex
    from localgpt.memory.workspace import Workspace

    workspace = Workspace(home / f"empty-{chunks}")
    db = home / f"search-{chunks}.sqlite"
    started = time.perf_counter()
    build_synthetic(db, chunks, embedder, workspace)
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    index = MemoryIndex(db, workspace, embedder)
    open_ms = (time.perf_counter() - started) * 1e3
    queries = [case["query"] for case in json.loads(DATA.read_text())["cases"]]
    started = time.perf_counter()
    index.search(queries[0], mode="vector")
    first_ms = (time.perf_counter() - started) * 1e3
    result: dict[str, Any] = {
        "chunks": chunks,
        "build_s": build_seconds,
        "db_mb": db.stat().st_size / 2**20,
        "open_ms": open_ms,
        "first_search_ms": first_ms,
    }
    for mode in ("hybrid", "fts", "vector"):
        times = []
        for _ in range(SEARCH_ROUNDS):
            for query in queries:
                started = time.perf_counter()
                index.search(query, limit=5, mode=mode)
                times.append((time.perf_counter() - started) * 1e3)
        result[mode] = {
            "p50_ms": statistics.median(times),
            "p99_ms": float(np.percentile(times, 99)),
        }
    index.close()
    return result


def run() -> dict[str, Any]:
    from localgpt.memory.embedder import Embedder

    embedder = Embedder()
    home = Path(tempfile.mkdtemp(prefix="localgpt-bench-memory-"))
    # Other work on the machine skews every number here; the load shows whether there was.
    results: dict[str, Any] = {"load_average": os.getloadavg()[0], "cpus": os.cpu_count()}
    try:
        results["indexing"] = []
        for per_file in (1, 20):
            print(f"indexing {FILES} generated notes, {per_file} to a file...", flush=True)
            results["indexing"].append(indexing(home, embedder, per_file))
        results["search"] = []
        for chunks in SIZES:
            print(f"building a synthetic index of {chunks} chunks...", flush=True)
            results["search"].append(search_at(home, chunks, embedder))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return results


def table(results: dict[str, Any]) -> str:
    lines = [f"{results['cpus']} CPUs, load average {results['load_average']:.2f} at the start"]
    for ix in results["indexing"]:
        lines.append(
            f"indexing {ix['files']} files: {ix['chunks']} chunks of {ix['tokens_per_chunk']:.0f}"
            f" tokens in {ix['seconds']:.1f} s = {ix['chunks_per_s']:.0f} chunks/s "
            f"({ix['tokens_per_s']:.0f} embedder tokens/s); unchanged reindex "
            f"{ix['unchanged_reindex_ms']:.1f} ms"
        )
    lines.append(
        f"{'chunks':>8}{'db MB':>8}{'open ms':>9}{'1st ms':>9}"
        f"{'hybrid p50/p99 ms':>19}{'fts p50/p99 ms':>16}{'vector p50/p99 ms':>19}"
    )
    for row in results["search"]:
        cells = "".join(
            f"{row[m]['p50_ms']:>{w - 7}.1f} /{row[m]['p99_ms']:>5.1f}"
            for m, w in (("hybrid", 19), ("fts", 16), ("vector", 19))
        )
        lines.append(
            f"{row['chunks']:>8}{row['db_mb']:>8.0f}{row['open_ms']:>9.1f}"
            f"{row['first_search_ms']:>9.0f}{cells}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    out = run()
    print(table(out))
    WORK.mkdir(exist_ok=True)
    (WORK / "memory.json").write_text(json.dumps(out, indent=2))
    print(f"saved {WORK / 'memory.json'}")
