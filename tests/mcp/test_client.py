"""MCP servers' tools in the assistant: a real MCP server (written with the mcp SDK, started
by the server under test over stdio, or by the test over streamable HTTP), the real server on
loopback, and the fake upstream playing the model that calls the tools."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port, gateway_config
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI

TOY = Path(__file__).parent / "toy_server.py"
FULL = "key-full-0123456789"
ASSISTANT = "key-assistant-0123456789"
NAMED = "key-named-0123456789"


def stdio_section(name: str = "toy") -> str:
    return f"""
[mcp.servers.{name}]
command = {json.dumps(sys.executable)}
args = [{json.dumps(str(TOY))}]
timeout = 10
"""


def wait_connected(server: Server, name: str, key: str | None = None, restarts: int = 0) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = httpx.get(f"{server.url}/ready", headers=headers, timeout=5)
        if resp.status_code == 200:
            status = resp.json().get("mcp", {}).get(name, {})
            if status.get("connected") and status.get("restarts", 0) >= restarts:
                return status
        time.sleep(0.1)
    raise AssertionError(f"{name} never connected: {status}\n{server.log()[-3000:]}")


def chat(server: Server, text: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(
        f"{server.base_url}/chat/completions",
        headers=headers,
        timeout=60,
        json={"model": "openai/fake-model", "messages": [{"role": "user", "content": text}]},
    )


def upstream_bodies(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path == "/v1/chat/completions"]


def offered(body: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in body.get("tools", [])}


def tool_results(body: dict[str, Any]) -> list[str]:
    return [str(m["content"]) for m in body["messages"] if m.get("role") == "tool"]


def call(name: str, args: dict[str, Any] | None = None) -> Script:
    return Script(tool_calls=[FakeCall(name, [json.dumps(args or {})])])


@pytest.fixture
def stdio_server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    server = servers(gateway_config(openai_upstream.url, gateway=False, extra=stdio_section()))
    wait_connected(server, "toy")
    return server


def test_a_stdio_servers_tool_is_offered_called_and_its_result_used(
    stdio_server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model", call("mcp_toy_secret_word"), Script(text=["It is ", "pomegranate-42."])
    )
    resp = chat(stdio_server, "What is the secret word?")
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"] == "It is pomegranate-42."
    first, second = upstream_bodies(openai_upstream)[-2:]
    assert {"mcp_toy_secret_word", "mcp_toy_add", "mcp_toy_crash"} <= offered(first)
    tool = next(t for t in first["tools"] if t["function"]["name"] == "mcp_toy_add")
    assert tool["function"]["parameters"]["required"] == ["a", "b"]
    assert "pomegranate-42" in tool_results(second)[0]


def test_a_tools_error_goes_back_to_the_model(
    stdio_server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model", call("mcp_toy_refuse", {"reason": "no reason"}), Script(text=["Sorry."])
    )
    assert chat(stdio_server, "Try it.").status_code == 200
    result = tool_results(upstream_bodies(openai_upstream)[-1])[0]
    assert "refused: no reason" in result


def test_a_crashing_server_is_reported_and_restarted(
    stdio_server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("fake-model", call("mcp_toy_crash"), Script(text=["It broke."]))
    resp = chat(stdio_server, "Crash it.")
    assert resp.status_code == 200  # the assistant is not taken down
    result = tool_results(upstream_bodies(openai_upstream)[-1])[0]
    assert "toy" in result and ("closed" in result or "not connected" in result)
    status = wait_connected(stdio_server, "toy", restarts=1)
    assert status["tools"] == 4
    openai_upstream.script("fake-model", call("mcp_toy_secret_word"), Script(text=["Back."]))
    assert chat(stdio_server, "Again?").status_code == 200
    assert "pomegranate-42" in tool_results(upstream_bodies(openai_upstream)[-1])[0]


def test_a_server_that_cannot_start_is_reported_without_harm(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    broken = '\n[mcp.servers.broken]\ncommand = "/nonexistent/mcp-server"\n'
    server = servers(gateway_config(openai_upstream.url, gateway=False, extra=broken))
    deadline = time.monotonic() + 20
    status: dict[str, Any] = {}
    while time.monotonic() < deadline and not status.get("last_error"):
        status = httpx.get(f"{server.url}/ready", timeout=5).json().get("mcp", {}).get("broken", {})
        time.sleep(0.1)
    assert status["connected"] is False and status["last_error"], status
    openai_upstream.script("fake-model", Script(text=["Fine."]))
    resp = chat(server, "Hello")
    assert resp.status_code == 200
    assert not any(n.startswith("mcp_") for n in offered(upstream_bodies(openai_upstream)[-1]))
    assert "MCP server broken" in server.log()


@pytest.fixture
def http_toy() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(TOY), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    process.kill()
    process.wait()


def test_an_http_servers_tools_with_per_key_scopes(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI, http_toy: str
) -> None:
    keys = f"""
[server]
auth_token = ["{FULL}", {{ key = "{ASSISTANT}", scope = "assistant" }},
              {{ key = "{NAMED}", scope = "assistant", mcp = ["web"] }}]

[mcp.servers.web]
url = "{http_toy}"

{stdio_section()}
"""
    server = servers(gateway_config(openai_upstream.url, gateway=False, extra=keys))
    wait_connected(server, "web", FULL)
    wait_connected(server, "toy", FULL)

    openai_upstream.script(
        "fake-model", call("mcp_web_add", {"a": 2, "b": 40}), Script(text=["42"])
    )
    assert chat(server, "2+40?", FULL).status_code == 200
    first, second = upstream_bodies(openai_upstream)[-2:]
    assert {"mcp_web_add", "mcp_toy_add"} <= offered(first)
    assert tool_results(second) == ["42"]

    # An assistant key gets no MCP tools unless its entry names the servers.
    openai_upstream.script("fake-model", Script(text=["Hi."]))
    chat(server, "Hello", ASSISTANT)
    assert not any(n.startswith("mcp_") for n in offered(upstream_bodies(openai_upstream)[-1]))
    chat(server, "Hello", NAMED)
    names = offered(upstream_bodies(openai_upstream)[-1])
    assert "mcp_web_add" in names and not any(n.startswith("mcp_toy") for n in names)

    # Asked for a tool it was not given, the model's call is not run by the server.
    openai_upstream.script("fake-model", call("mcp_toy_secret_word"))
    before = len(upstream_bodies(openai_upstream))
    resp = chat(server, "The secret?", ASSISTANT)
    assert resp.status_code == 200
    assert len(upstream_bodies(openai_upstream)) == before + 1  # no second round with a result
    assert "pomegranate" not in resp.text
