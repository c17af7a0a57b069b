"""Helpers for reading raw HTTP answers in tests."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx


def sse_data(raw: str) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking that every event is well formed."""
    assert raw.endswith("\n\n"), f"stream does not end with a blank line: {raw[-80:]!r}"
    events = raw[:-2].split("\n\n")
    out = []
    for event in events:
        assert event.startswith("data: "), f"not a data event: {event!r}"
        assert "\n" not in event, f"multi-line event: {event!r}"
        out.append(event[len("data: ") :])
    return out


def stream_chunks(raw: str) -> list[dict[str, Any]]:
    data = sse_data(raw)
    assert data[-1] == "[DONE]", f"stream does not end with [DONE]: {data[-1]!r}"
    return [json.loads(d) for d in data[:-1]]


def post_chat(url: str, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30, **kwargs)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of a response, checking its shape."""
    body = resp.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str)
    assert error["code"] is None or isinstance(error["code"], str)
    return dict(error)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def write_notes(folder: Path, count: int, repeat: int) -> None:
    """``count`` small generated notes, ``repeat`` sentences each, for indexing tests."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"note{i:04}.md").write_text(
            f"# Note {i}\n\n" + f"Entry {i} about project {i % 17} and topic {i % 29}. " * repeat
        )


def indexed_files(home: Path) -> int:
    """Files in the memory index of the server whose HOME is ``home`` (0 before it exists);
    read-only, so it never takes a lock the server needs."""
    db = home / "cache" / "localgpt" / "memory" / "index.sqlite"
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM files").fetchone()[0])
    except sqlite3.Error:
        return 0


def assert_index_consistent(home: Path) -> None:
    """SQLite's own check passes and no chunk outlives its file's row."""
    db = home / "cache" / "localgpt" / "memory" / "index.sqlite"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        orphans = conn.execute(
            "SELECT count(*) FROM chunks WHERE path NOT IN (SELECT path FROM files)"
        ).fetchone()
        assert orphans[0] == 0


def named_events(raw: str, comments: list[str] | None = None) -> list[dict[str, Any]]:
    """The events of a stream whose events are named (Responses, Anthropic): each must have
    an ``event:`` line matching its data's ``type``; SSE comments go to ``comments``."""
    assert raw.endswith("\n\n"), f"stream does not end with a blank line: {raw[-80:]!r}"
    out = []
    for block in raw[:-2].split("\n\n"):
        if block.startswith(":"):
            if comments is not None:
                comments.append(block)
            continue
        lines = block.split("\n")
        assert len(lines) == 2, f"not one event line and one data line: {block!r}"
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        data = json.loads(lines[1][len("data: ") :])
        assert data["type"] == lines[0][len("event: ") :], block
        out.append(data)
    return out
