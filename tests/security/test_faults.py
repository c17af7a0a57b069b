"""Faults: slow and broken upstreams, SIGTERM, and kill -9 in the middle of writes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import Server, gateway_config, start_server
from tests.fakes import FakeCall, Script, wait_for
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import assert_index_consistent, indexed_files, sse_data, user, write_notes


def test_a_stream_is_bounded_by_the_whole_request_timeout(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(gateway_config(openai_upstream.url, extra="timeout = 1.5\n"))
    openai_upstream.script("dribble", Script(text=[f"t{i}" for i in range(40)], delay=0.2))
    started = time.monotonic()
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=30,
        json={"model": "openai/dribble", "messages": user("x"), "stream": True},
    )
    elapsed = time.monotonic() - started
    data = sse_data(resp.text)
    assert json.loads(data[-1])["error"]["code"] == "upstream_timeout"
    assert 1.0 < elapsed < 5


def test_sigterm_lets_the_stream_in_flight_finish_then_exits_0(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    server = start_server(gateway_config(openai_upstream.url), tmp_path / "home")
    openai_upstream.script("slow", Script(text=[f"t{i} " for i in range(10)], delay=0.2))
    result: dict[str, str] = {}

    def consume() -> None:
        with httpx.stream(
            "POST",
            f"{server.url}/v1/chat/completions",
            timeout=30,
            json={"model": "openai/slow", "messages": user("x"), "stream": True},
        ) as resp:
            result["body"] = "".join(resp.iter_text())

    reader = threading.Thread(target=consume)
    reader.start()
    assert wait_for(lambda: len(openai_upstream.requests) >= 1, 5)
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = False
    try:
        httpx.get(f"{server.url}/health", timeout=2)
    except httpx.HTTPError:
        refused = True
    assert refused  # no new connections once shutting down
    reader.join(15)
    assert server.process.wait(15) == 0
    assert result["body"].endswith("data: [DONE]\n\n")
    assert "t9" in result["body"]


def test_kill_9_during_a_stream_and_a_memory_write_loses_nothing_stored(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    home = tmp_path / "home"
    workspace = home / "data" / "localgpt" / "workspace"
    workspace.mkdir(parents=True)
    memory_md = workspace / "MEMORY.md"
    # memory_save replaces the whole file: at 7 MB that takes tens of milliseconds, a window
    # the kill below lands in. Keyword search only, so indexing 7 MB takes a second.
    old = "# Memory\n\n" + "".join(f"Old fact {i}: kept across crashes.\n" for i in range(200_000))
    memory_md.write_text(old)
    fact = "A durable fact saved at the moment of the crash."
    new = f"{old}{fact}\n"
    config = gateway_config(
        openai_upstream.url, gateway=False, extra='[memory]\nembedding_provider = "none"\n'
    )
    first = start_server(config, home)
    try:
        sid = httpx.post(
            f"{first.url}/api/chat", json={"message": "first turn"}, timeout=30
        ).json()["session_id"]
        saved = httpx.post(
            f"{first.url}/api/chat", timeout=30, json={"session_id": sid, "message": "remember"}
        )
        assert saved.status_code == 200
        # The first index is done: the save will not queue behind it.
        assert wait_for(
            lambda: httpx.get(f"{first.url}/api/memory/stats", timeout=30).json()["files"] >= 3, 60
        )
        openai_upstream.script(
            "fake-model",
            Script(
                tool_calls=[
                    FakeCall("memory_save", [json.dumps({"content": fact, "target": "memory"})])
                ]
            ),
            Script(text=[f"w{i} " for i in range(50)], delay=0.1),
        )
        names = set(os.listdir(workspace))
        before = memory_md.stat()

        def chat() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server dies mid-answer
                httpx.post(
                    f"{first.url}/api/chat/stream",
                    timeout=30,
                    json={"session_id": sid, "message": "save this and talk"},
                )

        talker = threading.Thread(target=chat)
        talker.start()

        def writing() -> bool:
            """A temporary file beside MEMORY.md (an atomic write under way), or MEMORY.md
            itself changed (a write in place would be caught part-way here)."""
            now = memory_md.stat()
            changed = (now.st_size, now.st_mtime_ns) != (before.st_size, before.st_mtime_ns)
            return changed or bool(set(os.listdir(workspace)) - names)

        deadline = time.monotonic() + 30
        while not (seen := writing()) and time.monotonic() < deadline:
            pass  # no sleep: the write lasts only tens of milliseconds
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        talker.join(30)
    finally:
        first.stop()
    assert seen, "memory_save never started writing"
    content = memory_md.read_text()
    assert content in (old, new), f"torn MEMORY.md: {len(content)} characters"
    second = start_server(config, home)
    try:
        session = httpx.get(f"{second.url}/api/sessions/{sid}", timeout=10).json()
        assert [m["content"] for m in session["messages"] if m["role"] == "user"] == [
            "first turn",
            "remember",
        ]  # the turn in flight is lost, nothing else
        # The index catches up with the workspace on start-up; the killed write's temporary
        # file, if any, is hidden and stays out of it.
        assert wait_for(
            lambda: httpx.get(f"{second.url}/api/memory/stats", timeout=30).json()["files"] == 3,
            60,
        )
        hits = httpx.get(
            f"{second.url}/api/memory/search", params={"q": "Old fact 199999"}, timeout=30
        ).json()["results"]
        assert hits and hits[0]["path"] == "MEMORY.md"
    finally:
        second.stop()


def test_sigterm_during_the_first_reindex_exits_0_at_once_and_the_next_start_finishes_it(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    home = tmp_path / "home"
    workspace = home / "data" / "localgpt" / "workspace"
    write_notes(workspace / "knowledge", 600, repeat=2)  # about 8 s of indexing on 2 cores

    def indexed() -> int:
        return indexed_files(home)

    def poll(predicate: Callable[[], bool], timeout: float) -> bool:
        """``wait_for``, but gentle: fast polling would slow the indexing it waits on."""
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                return False
            time.sleep(0.2)
        return True

    config = gateway_config(openai_upstream.url, gateway=False)
    first = start_server(config, home)
    try:
        assert poll(lambda: indexed() > 20, 60)
        first.process.send_signal(signal.SIGTERM)
        # Without a stop, closing the index waits for the whole reindex (over 8 s here).
        assert first.process.wait(5) == 0, first.log()
    finally:
        first.stop()
    total = len(list(workspace.rglob("*.md")))  # the notes and the starter files
    at_exit = indexed()
    assert 0 < at_exit < total, at_exit  # stopped part-way, not finished before exiting
    assert_index_consistent(home)
    second = start_server(config, home)
    try:
        assert poll(lambda: indexed() == total, 120)
        counts = httpx.post(f"{second.url}/api/memory/reindex", json={}, timeout=60).json()
        assert counts["files_indexed"] == 0 and counts["files_unchanged"] == total
    finally:
        second.stop()


def test_upstream_answers_held_in_memory_are_capped(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(
        gateway_config(
            openai_upstream.url,
            extra="""
[server]
max_buffered_bytes = 4000
""",
        )
    )
    openai_upstream.script("huge", Script(text=["x" * 20000]))
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=30,
        json={"model": "openai/huge", "messages": user("x")},
    )
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "server_busy"
    openai_upstream.script("small", Script(text=["fine"]))
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=30,
        json={"model": "openai/small", "messages": user("x")},
    )
    assert resp.status_code == 200  # the budget was given back
