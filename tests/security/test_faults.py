"""Faults: slow and broken upstreams, SIGTERM, and kill -9 in the middle of writes."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import Server, gateway_config, start_server
from tests.fakes import FakeCall, Script, wait_for
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import sse_data, user


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
    config = gateway_config(openai_upstream.url, gateway=False)
    first = start_server(config, home)
    sid = httpx.post(f"{first.url}/api/chat", json={"message": "first turn"}, timeout=30).json()[
        "session_id"
    ]
    saved = httpx.post(
        f"{first.url}/api/chat", timeout=30, json={"session_id": sid, "message": "remember"}
    )
    assert saved.status_code == 200
    big = "A durable fact. " * 20000  # a memory write big enough to be caught mid-way
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[FakeCall("memory_save", [json.dumps({"content": big, "target": "memory"})])]
        ),
        Script(text=[f"w{i} " for i in range(50)], delay=0.1),
    )
    with httpx.stream(
        "POST",
        f"{first.url}/api/chat/stream",
        timeout=30,
        json={"session_id": sid, "message": "save this and talk"},
    ) as resp:
        for line in resp.iter_lines():
            if line.startswith("event: tool_start"):
                first.process.send_signal(signal.SIGKILL)
                break
    first.process.wait(10)
    second = start_server(config, home)
    try:
        session = httpx.get(f"{second.url}/api/sessions/{sid}", timeout=10).json()
        assert [m["content"] for m in session["messages"] if m["role"] == "user"] == [
            "first turn",
            "remember",
        ]  # the turn in flight is lost, nothing else
        memory = (home / "data" / "localgpt" / "workspace" / "MEMORY.md").read_text()
        assert memory.startswith("# Memory")
        assert memory.count("A durable fact.") in (0, 20000)  # old file or new, never torn
        # The index catches up with the workspace on start-up.
        assert wait_for(
            lambda: httpx.get(f"{second.url}/api/memory/stats", timeout=30).json()["files"] >= 3, 60
        )
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
        ).replace("[providers.openai]", "[providers.openai]", 1)
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
