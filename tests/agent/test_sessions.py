"""Native sessions: the API, persistence across restarts, the session stream, compaction."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, gateway_config, start_server
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of


def config(url: str, extra: str = "") -> str:
    return gateway_config(url, gateway=False, extra=extra)


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(config(openai_upstream.url))


def events(raw: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in raw.strip().split("\n\n"):
        if block.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        out.append((lines["event"], data))
    return out


def test_session_api(server: Server, openai_upstream: FakeOpenAI) -> None:
    url = server.url
    created = httpx.post(f"{url}/api/sessions", json={}, timeout=10)
    assert created.status_code == 201
    sid = created.json()["id"]
    assert any(s["id"] == sid for s in httpx.get(f"{url}/api/sessions", timeout=10).json())
    reply = httpx.post(
        f"{url}/api/chat", json={"session_id": sid, "message": "hello"}, timeout=30
    ).json()
    assert reply["response"] == "You said: hello" and reply["session_id"] == sid
    messages = httpx.get(f"{url}/api/sessions/{sid}/messages", timeout=10).json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    got = httpx.get(f"{url}/api/sessions/{sid}", timeout=10).json()
    assert got["title"] == "hello" and got["message_count"] == 2
    assert (
        httpx.post(f"{url}/api/sessions/{sid}/model", json={"model": "gpt"}, timeout=10).json()[
            "model"
        ]
        == "gpt"
    )
    bad = httpx.post(f"{url}/api/sessions/{sid}/model", json={"model": "nope-x"}, timeout=10)
    assert bad.status_code == 404 and error_of(bad)["code"] == "model_not_found"
    assert httpx.post(f"{url}/api/sessions/{sid}/clear", timeout=10).json()["cleared"]
    assert httpx.get(f"{url}/api/sessions/{sid}/messages", timeout=10).json()["messages"] == []
    assert httpx.delete(f"{url}/api/sessions/{sid}", timeout=10).json()["deleted"]
    missing = httpx.get(f"{url}/api/sessions/{sid}", timeout=10)
    assert missing.status_code == 404 and error_of(missing)["code"] == "session_not_found"
    assert httpx.get(f"{url}/api/sessions/..%2F..%2Fetc", timeout=10).status_code == 404


def test_a_session_cannot_be_deleted_while_it_answers(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    url = server.url
    sid = httpx.post(f"{url}/api/sessions", json={}, timeout=10).json()["id"]
    openai_upstream.script("fake-model", Script(text=["slow", " reply", "."], delay=1.0))
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", f"{url}/api/chat/stream", json={"session_id": sid, "message": "hi"}
        ) as stream,
    ):
        lines = stream.iter_lines()
        next(lines)  # the session event: the turn holds the session
        busy = httpx.delete(f"{url}/api/sessions/{sid}", timeout=10)
        assert busy.status_code == 409 and error_of(busy)["code"] == "session_busy"
        assert "event: done" in list(lines)
    kept = httpx.get(f"{url}/api/sessions/{sid}/messages", timeout=10).json()["messages"]
    assert [m["role"] for m in kept] == ["user", "assistant"]
    assert httpx.delete(f"{url}/api/sessions/{sid}", timeout=10).status_code == 200
    assert httpx.get(f"{url}/api/sessions/{sid}", timeout=10).status_code == 404


def test_session_stream_events(server: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "q"}'])]),
        Script(text=["a", "b"]),
    )
    resp = httpx.post(f"{server.url}/api/chat/stream", json={"message": "hi"}, timeout=60)
    assert resp.headers["content-type"].startswith("text/event-stream")
    found = events(resp.text)
    kinds = [k for k, _ in found]
    assert kinds[0] == "session" and kinds[-1] == "done"
    start = next(d for k, d in found if k == "tool_start")
    assert start["name"] == "memory_search" and json.loads(start["arguments"]) == {"query": "q"}
    end = next(d for k, d in found if k == "tool_end")
    assert end["id"] == start["id"] and end["output"]
    assert "".join(d["delta"] for k, d in found if k == "content") == "ab"
    assert kinds.index("tool_start") < kinds.index("tool_end") < kinds.index("content")


def test_sessions_survive_a_restart_with_mode_0600(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    home = tmp_path / "home"
    first = start_server(config(openai_upstream.url), home)
    try:
        sid = httpx.post(f"{first.url}/api/chat", json={"message": "keep me"}, timeout=30).json()[
            "session_id"
        ]
    finally:
        first.stop()
    files = list((home / "state" / "localgpt" / "sessions").glob("*.jsonl"))
    assert [f.stem for f in files] == [sid]
    assert files[0].stat().st_mode & 0o777 == 0o600
    second = start_server(config(openai_upstream.url), home)
    try:
        messages = httpx.get(f"{second.url}/api/sessions/{sid}/messages", timeout=10).json()[
            "messages"
        ]
        assert [m["content"] for m in messages] == ["keep me", "You said: keep me"]
    finally:
        second.stop()


def test_compaction_flushes_memory_first_then_keeps_the_last_messages(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    sid = httpx.post(f"{server.url}/api/sessions", json={}, timeout=10).json()["id"]
    for i in range(6):
        httpx.post(
            f"{server.url}/api/chat",
            timeout=30,
            json={"session_id": sid, "message": f"message {i} " + "words " * 60},
        )
    before = httpx.get(f"{server.url}/api/sessions/{sid}/messages", timeout=10).json()
    openai_upstream.reset()
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("memory_save", [json.dumps({"content": "User writes long messages."})])
            ]
        ),
        Script(text=["done"]),
        Script(text=["SUMMARY: six long messages."]),
    )
    result = httpx.post(f"{server.url}/api/sessions/{sid}/compact", timeout=60).json()
    assert result["compacted"] and result["flushed"] == 1
    sent = [r.body for r in openai_upstream.requests if r.path == "/v1/chat/completions"]
    # The flush comes first and may only save memory; then the summary is written.
    assert [t["function"]["name"] for t in sent[0]["tools"]] == ["memory_save"]
    assert "summary" in sent[0]["messages"][-1]["content"].lower()
    assert "Summarise" in sent[-1]["messages"][0]["content"]
    after = httpx.get(f"{server.url}/api/sessions/{sid}/messages", timeout=10).json()
    assert after["messages"][0]["content"].endswith("SUMMARY: six long messages.")
    assert after["messages"][1:] == before["messages"][-4:]
    assert result["messages_after"] == 5 and result["tokens_after"] < result["tokens_before"]


def test_a_session_past_its_window_is_compacted_before_the_next_turn(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    small = config(openai_upstream.url).replace(
        "[agent]\n", "[agent]\ncontext_window = 2000\nreserve_tokens = 300\n", 1
    )
    server = servers(small)
    openai_upstream.rules += [
        ("Summarise the conversation", Script(text=["SUMMARY."])),
        ("about to be replaced by a summary", Script(text=["done"])),
    ]
    sid = httpx.post(f"{server.url}/api/sessions", json={}, timeout=10).json()["id"]
    for i in range(8):
        reply = httpx.post(
            f"{server.url}/api/chat",
            timeout=60,
            json={"session_id": sid, "message": f"turn {i} " + "lorem ipsum " * 40},
        )
        assert reply.status_code == 200
    session = httpx.get(f"{server.url}/api/sessions/{sid}", timeout=10).json()
    assert session["compactions"] >= 1
    assert session["messages"][0]["content"] == "Summary of the earlier conversation:\nSUMMARY."
    assert session["messages"][-1]["content"].startswith("You said: turn 7")


def test_a_provider_failure_is_an_error_event(server: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(status=500))
    resp = httpx.post(f"{server.url}/api/chat/stream", json={"message": "hi"}, timeout=30)
    found = events(resp.text)
    assert [k for k, _ in found] == ["session", "error"]
    error = found[-1][1]
    assert "HTTP 500" in error["message"] and error["error"]["code"] == "upstream_error"


# --- the JSONL store, directly ----------------------------------------------------------------


def turn(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": f"re: {text}"}]


def contents(session: Any) -> list[str]:
    return [m["content"] for m in session.messages if m["role"] == "user"]


def test_a_torn_line_hides_no_turn_appended_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from localgpt.agent.sessions import SessionStore

    store = SessionStore(tmp_path)
    session = store.create()
    store.append(session, turn("one"))
    store.append(session, turn("two"))
    path = tmp_path / f"{session.id}.jsonl"
    with path.open("ab") as f:  # a crash mid-append: half a line, torn inside a character
        f.write('{"type": "message", "role": "user", "content": "lost é'.encode()[:-1])

    reloaded = SessionStore(tmp_path).get(session.id)  # as after a restart
    assert reloaded is not None and contents(reloaded) == ["one", "two"]
    store.append(session, turn("three"))  # the tail is ended first: the new line stands alone
    assert path.read_bytes().count(b"\n") == 1 + 4 + 1 + 2
    with caplog.at_level("WARNING", logger="localgpt.agent"):
        again = SessionStore(tmp_path).get(session.id)
    assert again is not None and contents(again) == ["one", "two", "three"]
    assert "line 6 is damaged" in caplog.text
    SessionStore(tmp_path).append(again, turn("four"))
    final = SessionStore(tmp_path).get(session.id)
    assert final is not None and contents(final) == ["one", "two", "three", "four"]


def test_damaged_lines_anywhere_are_skipped_but_a_damaged_header_is_not_a_session(
    tmp_path: Path,
) -> None:
    from localgpt.agent.sessions import SessionStore

    store = SessionStore(tmp_path)
    session = store.create()
    store.append(session, turn("one"))
    path = tmp_path / f"{session.id}.jsonl"
    header, *rest = path.read_text().splitlines()
    path.write_text("\n".join([header, "{not json", "42", "", *rest, "[]"]) + "\n")
    loaded = SessionStore(tmp_path).get(session.id)
    assert loaded is not None and contents(loaded) == ["one"] and loaded.title == "one"
    path.write_text("\n".join(["{torn header", *rest]) + "\n")
    assert SessionStore(tmp_path).get(session.id) is None


def test_line_separators_inside_a_message_survive_a_reload(tmp_path: Path) -> None:
    from localgpt.agent.sessions import SessionStore

    store = SessionStore(tmp_path)
    session = store.create()
    tricky = "para\u2028graph\u2029next\x85nel\x0bvt\x0cff\x1cfs"
    store.append(session, turn("first"))
    store.append(session, turn(tricky))
    store.append(session, turn("last"))
    loaded = SessionStore(tmp_path).get(session.id)
    assert loaded is not None and contents(loaded) == ["first", tricky, "last"]


@pytest.mark.parametrize("titled", [False, True])
def test_append_to_a_deleted_session_does_not_bring_it_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, titled: bool
) -> None:
    from localgpt.agent.sessions import SessionStore

    store = SessionStore(tmp_path)
    session = store.create()
    if titled:  # later turns append; the first one rewrites the file with the title
        store.append(session, turn("one"))
    assert SessionStore(tmp_path).delete(session.id)  # e.g. from the command line
    with caplog.at_level("WARNING", logger="localgpt.agent"):
        assert store.append(session, turn("two")) is False
    assert "was deleted" in caplog.text
    assert list(tmp_path.iterdir()) == []
    assert SessionStore(tmp_path).get(session.id) is None


def test_a_late_rewrite_does_not_bring_a_deleted_session_back(tmp_path: Path) -> None:
    from localgpt.agent.sessions import SessionStore

    store = SessionStore(tmp_path)
    session = store.create()
    store.append(session, turn("one"))
    assert SessionStore(tmp_path).delete(session.id)
    session.model = "late-change"  # a compaction or a model change that was already running
    assert store.rewrite(session) is False
    assert list(tmp_path.iterdir()) == []


def test_opening_the_store_removes_temporary_files_a_crash_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import time

    from localgpt.agent.sessions import SessionStore

    session = SessionStore(tmp_path).create()
    stale = tmp_path / f".{session.id}.jsonl.k3x_9qz0.tmp"  # a rewrite killed before its rename
    fresh = tmp_path / f".{session.id}.jsonl.a1b2c3d4.tmp"  # a rewrite still running elsewhere
    for path in (stale, fresh):
        path.write_text("{half")
    os.utime(stale, (time.time() - 120, time.time() - 120))
    with caplog.at_level("INFO", logger="localgpt.memory"):
        store = SessionStore(tmp_path)
    assert not stale.exists() and fresh.exists()
    assert f"removed {stale}" in caplog.text
    assert [s.id for s in store.all()] == [session.id]


def test_the_server_removes_temporary_files_a_crash_left_at_start(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    import os

    home = tmp_path / "home"
    sessions = home / "state" / "localgpt" / "sessions"
    workspace = home / "data" / "localgpt" / "workspace"
    stale = [sessions / ".0123.jsonl.abcdefgh.tmp", workspace / "memory" / ".x.md.12345678.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
        os.utime(path, (0, 0))
    server = start_server(config(openai_upstream.url), home)
    try:
        assert not any(path.exists() for path in stale)
        for path in stale:
            assert f"removed {path}, left by an interrupted write" in server.log()
    finally:
        server.stop()
