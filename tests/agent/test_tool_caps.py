"""Runaway tools are bounded: calls per turn and per request, bytes per result and per request,
and the model's context checked before every call of the loop, not only the first."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from localgpt.agent.budget import TRIMMED
from tests.conftest import Server, gateway_config
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import user


def capped(url: str, overflow: str = "trim", window: int | None = None, total: int = 5000) -> str:
    config = gateway_config(
        url,
        gateway=False,
        extra=f"[tools]\nmax_result_bytes = 2000\nmax_results_bytes = {total}\n",
    )
    agent = "max_tool_calls_per_turn = 3\nmax_tool_calls = 5\n"
    if window is not None:
        agent += f'context_window = {window}\ncontext_overflow = "{overflow}"\n'
    return config.replace("[agent]\n", f"[agent]\n{agent}", 1)


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    server = servers(capped(openai_upstream.url))
    workspace = server.home / "data" / "localgpt" / "workspace"
    (workspace / "knowledge").mkdir(parents=True, exist_ok=True)
    (workspace / "knowledge" / "big.md").write_text("word " * 3000)  # 15 KB
    return server


def reads(n: int, path: str = "knowledge/big.md") -> list[FakeCall]:
    return [FakeCall("memory_get", [json.dumps({"path": path})]) for _ in range(n)]


def chat(server: Server, text: str = "read a lot") -> Any:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    return client.chat.completions.create(model="openai/fake-model", messages=user(text))


def tool_results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def test_calls_per_turn_and_per_request_are_capped(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=reads(800, "MEMORY.md")),  # one turn asking for 800 calls
        Script(tool_calls=reads(4, "MEMORY.md")),
        Script(text=["done"]),
    )
    resp = chat(server)
    assert resp.choices[0].message.content == "done"
    second = openai_upstream.requests[1].body
    results = tool_results(second)
    assert len(results) == 800  # every call the model made is answered...
    run = [r for r in results if not r.startswith("Not run")]
    assert len(run) == 3  # ...but only three of them ran
    assert "at most 3 tool calls are run per turn" in results[3]
    third = tool_results(openai_upstream.requests[2].body)[800:]
    assert len(third) == 4
    assert sum(not r.startswith("Not run") for r in third) == 2  # 5 per request in all
    assert "made its 5 tool calls" in third[2]


def test_results_are_capped_one_by_one_and_all_together(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model", Script(tool_calls=reads(3)), Script(tool_calls=reads(2)), Script(text=["ok"])
    )
    chat(server)
    first = tool_results(openai_upstream.requests[1].body)
    assert all(len(r.encode()) <= 2000 + 60 for r in first)
    assert all("more bytes not shown" in r for r in first)
    everything = tool_results(openai_upstream.requests[2].body)
    shown = sum(len(r.split("\n[... cut")[0].encode()) for r in everything if "Not shown" not in r)
    assert shown <= 5000
    assert "reached their limit of 5000 bytes" in everything[-1]


def test_the_context_is_checked_before_every_call(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    """Each result fits, but together they outgrow a 2000-token window: the oldest go."""
    for overflow in ("trim", "stop"):
        server = servers(capped(openai_upstream.url, overflow, window=2000, total=100_000))
        workspace = server.home / "data" / "localgpt" / "workspace" / "knowledge"
        workspace.mkdir(parents=True, exist_ok=True)
        for i in range(5):
            (workspace / f"n{i}.md").write_text(f"note {i} " * 280)  # 1960 bytes, ~500 tokens
        openai_upstream.reset()
        openai_upstream.script(
            "fake-model",
            *(Script(tool_calls=reads(1, f"knowledge/n{i}.md")) for i in range(5)),
            Script(text=["answer"]),
        )
        resp = chat(server)
        bodies = [r.body for r in openai_upstream.requests]
        if overflow == "trim":
            assert resp.choices[0].message.content == "answer"
            last = tool_results(bodies[-1])
            assert last[0] == TRIMMED and last[-1].startswith("note 4")
            for body in bodies:  # no call ever exceeded the window (4 chars a token)
                size = sum(len(json.dumps(m)) for m in body["messages"])
                assert size // 4 < 2000 + 500
        else:
            assert resp.choices[0].finish_reason == "length"
            assert len(bodies) < 6
