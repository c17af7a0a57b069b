"""Shared backends: the gateway with 1 and 2 workers on Redis and PostgreSQL next to the
embedded default, and memory search at 100k chunks on pgvector next to SQLite.

Redis and PostgreSQL are started here, on loopback ports in temporary folders (the same
helpers as the tests). The gateway rows are the ``gateway`` section's scenarios with the
rate limit on (a check per request: in the process for the embedded default, one Lua call to
Redis for the shared rows), so what Redis adds is on the hot path. The pgvector rows use the
same synthetic chunks, words and vectors as ``bench/memory.py``'s SQLite rows.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import gateway, memory
from bench.gateway import ROOT, WORK, Row, free_port, running, serve_command

LIMIT = "[server.rate_limit]\nenabled = true\nrequests_per_minute = 100000000\nburst = 1000000\n"
CHUNKS = 100_000


def _gateway_rows(duration: float, redis_url: str, dsn: str) -> list[Row]:
    rows: list[Row] = []
    fake_port = free_port()
    fake = [
        sys.executable,
        str(ROOT / "bench" / "fake_upstream.py"),
        "--port",
        str(fake_port),
        "--chunks",
        "20",
    ]
    base = (
        f'[agent]\ngateway_mode = true\ndefault_model = "openai/bench-model"\n'
        f'[providers.openai]\napi_key = "x"\nbase_url = "http://127.0.0.1:{fake_port}/v1"\n'
        f"{LIMIT}"
    )
    shared = f'{base}[state]\nurl = "{redis_url}"\n[storage]\nurl = "{dsn}"\n'
    with running(fake, f"http://127.0.0.1:{fake_port}/v1/models", cpu=gateway.CLIENT_CPU):
        rows += gateway.measure("upstream direct", fake_port, "bench-model", None, duration)
        for target, text, workers in (
            ("embedded w1", base, 1),
            ("redis+pg w1", shared, 1),
            ("redis+pg w2", shared, 2),
        ):
            config = WORK / f"shared-{target.replace(' ', '-').replace('+', '-')}.toml"
            config.write_text(text)
            port = free_port()
            cmd = [*serve_command(config, port), "--workers", str(workers)]
            cpu = None if workers > 1 else gateway.SERVER_CPU
            with running(cmd, f"http://127.0.0.1:{port}/health", cpu=cpu):
                time.sleep(1.5)
                rows += gateway.measure(target, port, "openai/bench-model", None, duration)
    return rows


def _pg_search(dsn: str, embedder: Any) -> dict[str, Any]:
    """100k synthetic chunks in PostgreSQL (loaded, then the HNSW index built), searched
    with the evaluation's questions as on SQLite."""
    import psycopg

    from localgpt.memory.pgindex import PgMemoryIndex, _vector
    from localgpt.memory.workspace import Workspace

    home = Path(tempfile.mkdtemp(prefix="localgpt-bench-pg-"))
    workspace = Workspace(home / "empty")
    PgMemoryIndex(dsn, workspace, embedder).close()  # its tables, then filled directly
    rng = np.random.default_rng(CHUNKS)
    words, weights = memory._vocabulary(rng)
    per_file = CHUNKS // memory.FILES
    pending: list[tuple[int, str]] = []
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS memory_vectors_hnsw")
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY memory_chunks (id, path, start_line, end_line, hash, text) FROM STDIN"
            ) as copy,
        ):
            for start in range(0, CHUNKS, 10_000):
                n = min(10_000, CHUNKS - start)
                picks = rng.choice(len(words), size=(n, memory.WORDS_PER_CHUNK), p=weights)
                vectors = rng.standard_normal((n, embedder.dims)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                for i in range(n):
                    line = ((start + i) % per_file) * 10
                    copy.write_row(
                        (
                            start + i + 1,
                            f"synthetic/f{(start + i) // per_file}.md",
                            line + 1,
                            line + 10,
                            "",
                            " ".join(words[j] for j in picks[i]),
                        )
                    )
                    pending.append((start + i + 1, _vector(vectors[i])))
        with (
            conn.cursor() as cur,
            cur.copy("COPY memory_vectors (id, embedding) FROM STDIN") as copy,
        ):
            for row in pending:
                copy.write_row(row)
        conn.execute("SELECT setval('memory_chunks_id_seq', %s)", (CHUNKS,))
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute(
            "CREATE INDEX memory_vectors_hnsw ON memory_vectors"
            " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        conn.execute("ANALYZE memory_chunks")
        conn.execute("ANALYZE memory_vectors")
        hnsw_s = time.perf_counter() - started
    index = PgMemoryIndex(dsn, workspace, embedder)  # opened as a server opens it, after
    queries = [case["query"] for case in json.loads(memory.DATA.read_text())["cases"]]
    result: dict[str, Any] = {"chunks": CHUNKS, "load_s": load_s, "hnsw_build_s": hnsw_s}
    for mode in ("hybrid", "fts", "vector"):
        times = []
        for _ in range(memory.SEARCH_ROUNDS):
            for query in queries:
                t0 = time.perf_counter()
                index.search(query, limit=5, mode=mode)
                times.append((time.perf_counter() - t0) * 1e3)
        result[mode] = {
            "p50_ms": statistics.median(times),
            "p99_ms": float(np.percentile(times, 99)),
        }
    index.close()
    return result


def run(duration: float = 4.0) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.backends import PostgresServer, RedisServer

    from localgpt.memory.embedder import Embedder

    WORK.mkdir(exist_ok=True)
    redis_server, pg = RedisServer.create(), PostgresServer.create()
    try:
        rows = _gateway_rows(duration, redis_server.url, pg.create_database("bench_gateway"))
        home = Path(tempfile.mkdtemp(prefix="localgpt-bench-sqlite-"))
        embedder = Embedder()
        sqlite = memory.search_at(home, CHUNKS, embedder)
        postgres = _pg_search(pg.create_database("bench_memory"), embedder)
    finally:
        redis_server.stop(remove=True)
        pg.stop(remove=True)
    return {"rows": [r.__dict__ for r in rows], "search": {"sqlite": sqlite, "pgvector": postgres}}


def table(results: dict[str, Any]) -> str:
    text = gateway.table({"rows": results["rows"], "servers": {}})
    lines = [text, f"memory search at {CHUNKS} chunks, 5 results:"]
    lines.append(
        f"{'index':<10}{'hybrid p50/p99 ms':>19}{'fts p50/p99 ms':>16}{'vector p50/p99':>16}"
    )
    for name, row in results["search"].items():
        cells = "".join(
            f"{row[m]['p50_ms']:>{w - 7}.1f} /{row[m]['p99_ms']:>5.1f}"
            for m, w in (("hybrid", 19), ("fts", 16), ("vector", 16))
        )
        lines.append(f"{name:<10}{cells}")
    pg = results["search"]["pgvector"]
    lines.append(f"pgvector: COPY {pg['load_s']:.1f} s, HNSW build {pg['hnsw_build_s']:.1f} s")
    return "\n".join(lines)
