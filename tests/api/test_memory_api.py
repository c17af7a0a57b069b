"""The memory endpoints and /v1/embeddings, through the real server with the real embedder."""

from __future__ import annotations

import base64
import math
import struct
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Server
from tests.fakes import wait_for
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of


def workspace(server: Server) -> Path:
    return server.home / "data" / "localgpt" / "workspace"


def search(server: Server, q: str, limit: int = 5) -> list[dict[str, object]]:
    resp = httpx.get(f"{server.url}/api/memory/search", params={"q": q, "limit": limit}, timeout=30)
    assert resp.status_code == 200, resp.text
    results: list[dict[str, object]] = resp.json()["results"]
    return results


def test_reindex_then_search(assistant: Server, openai_upstream: FakeOpenAI) -> None:
    notes = workspace(assistant) / "knowledge"
    notes.mkdir(exist_ok=True)
    (notes / "garden.md").write_text(
        "# Garden\n\nThe tomatoes go in the raised bed by the fence in May.\n"
    )
    # force: every file is indexed again, and the answer comes when that is done.
    resp = httpx.post(f"{assistant.url}/api/memory/reindex", json={"force": True}, timeout=60)
    assert resp.status_code == 200
    counts = resp.json()
    assert counts["files_indexed"] >= 4 and counts["files_unchanged"] == 0
    assert counts["chunks_total"] >= 4
    results = search(assistant, "where should I plant vegetables?")
    assert results and results[0]["path"] == "knowledge/garden.md"
    assert set(results[0]) == {"path", "start_line", "end_line", "score", "snippet"}
    assert results[0]["start_line"] == 1 and "tomatoes" in str(results[0]["snippet"])
    stats = httpx.get(f"{assistant.url}/api/memory/stats", timeout=10).json()
    assert stats["files"] >= 4 and stats["chunks"] >= 1


def test_the_watcher_indexes_changes_while_running(
    assistant: Server, openai_upstream: FakeOpenAI
) -> None:
    note = workspace(assistant) / "knowledge" / "bike.md"
    note.parent.mkdir(exist_ok=True)
    note.write_text("My bicycle lock code is kept in the blue notebook.\n")
    assert wait_for(
        lambda: any(
            r["path"] == "knowledge/bike.md" for r in search(assistant, "bicycle lock code")
        ),
        15,
    )
    note.unlink()
    assert wait_for(
        lambda: (
            not any(
                r["path"] == "knowledge/bike.md" for r in search(assistant, "bicycle lock code")
            )
        ),
        15,
    )


def test_memory_file_reads_lines_and_says_when_it_cut(assistant: Server) -> None:
    notes = workspace(assistant) / "knowledge" / "long.md"
    notes.parent.mkdir(exist_ok=True)
    notes.write_text("".join(f"line {i}\n" for i in range(1, 3001)))
    url = f"{assistant.url}/api/memory/file"
    some = httpx.get(url, params={"path": "knowledge/long.md", "start": 5, "end": 7}, timeout=10)
    assert some.json() == {
        "path": "knowledge/long.md",
        "start_line": 5,
        "end_line": 7,
        "lines": ["line 5", "line 6", "line 7"],
        "truncated": False,
    }
    cut = httpx.get(url, params={"path": "knowledge/long.md"}, timeout=10).json()
    assert cut["truncated"] and cut["lines"][-1] == f"line {cut['end_line']}"
    assert 1 < cut["end_line"] < 3000
    hidden = httpx.get(url, params={"path": ".secret.md"}, timeout=10)
    assert hidden.status_code == 404 and "hidden" in hidden.json()["error"]["message"]


def test_search_needs_a_query(assistant: Server) -> None:
    resp = httpx.get(f"{assistant.url}/api/memory/search", timeout=10)
    assert resp.status_code == 400 and error_of(resp)["param"] == "q"


def test_embeddings_in_openai_shape(assistant: Server) -> None:
    client = openai.OpenAI(base_url=assistant.base_url, api_key="x", max_retries=0)
    resp = client.embeddings.create(
        model="local/all-minilm-l6-v2", input=["the cat sat on the mat", "a kitten rested"]
    )
    assert resp.object == "list" and resp.model == "local/all-minilm-l6-v2"
    assert [d.index for d in resp.data] == [0, 1]
    first, second = (d.embedding for d in resp.data)
    assert len(first) == 384 and abs(math.sqrt(sum(x * x for x in first)) - 1) < 1e-3
    assert sum(a * b for a, b in zip(first, second, strict=True)) > 0.3  # similar meaning
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > 5
    raw = httpx.post(
        f"{assistant.url}/v1/embeddings",
        timeout=30,
        json={
            "model": "local/all-minilm-l6-v2",
            "input": "the cat sat on the mat",
            "encoding_format": "base64",
        },
    ).json()
    decoded = struct.unpack("<384f", base64.b64decode(raw["data"][0]["embedding"]))
    assert max(abs(a - b) for a, b in zip(decoded, first, strict=True)) < 1e-5
    ids = [m.id for m in client.models.list()]
    assert "local/all-minilm-l6-v2" in ids


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "text-embedding-3-small", "input": "x"}, 404, "model"),
        ({"model": "local/all-minilm-l6-v2", "input": "x", "dimensions": 128}, 400, "dimensions"),
        ({"model": "local/all-minilm-l6-v2", "input": []}, 400, "input"),
        ({"model": "local/all-minilm-l6-v2", "input": [[1, 2, 3]]}, 400, "input"),
        ({"model": "local/all-minilm-l6-v2"}, 400, "input"),
    ],
)
def test_embedding_errors(
    assistant: Server, body: dict[str, object], status: int, param: str
) -> None:
    resp = httpx.post(f"{assistant.url}/v1/embeddings", json=body, timeout=30)
    assert resp.status_code == status and error_of(resp)["param"] == param


def test_killing_the_server_during_a_reindex_is_repaired_on_the_next_start(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    import signal

    from tests.conftest import gateway_config, start_server
    from tests.helpers import assert_index_consistent, indexed_files, write_notes

    home = tmp_path / "home"
    notes = home / "data" / "localgpt" / "workspace" / "knowledge"
    write_notes(notes, 600, repeat=12)
    (notes / "needle.md").write_text("The spare house key is under the blue flowerpot.\n")

    config = gateway_config(openai_upstream.url, gateway=False)
    first = start_server(config, home)
    assert wait_for(lambda: indexed_files(home) > 20, 60)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    at_kill = indexed_files(home)
    assert 0 < at_kill < 604, at_kill  # killed part-way through
    assert_index_consistent(home)
    second = start_server(config, home)
    try:

        def complete() -> bool:
            stats = httpx.get(f"{second.url}/api/memory/stats", timeout=10).json()
            return bool(stats["files"] == 604)

        assert wait_for(complete, 120)
        results = search(second, "where is the spare key hidden?")
        assert results[0]["path"] == "knowledge/needle.md"
        counts = httpx.post(f"{second.url}/api/memory/reindex", json={}, timeout=60).json()
        assert counts["files_indexed"] == 0 and counts["files_unchanged"] == 604
    finally:
        second.stop()
