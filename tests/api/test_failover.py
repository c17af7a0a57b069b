"""Failover through fallback_models: retryable failures move on, others fail at once."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import Server
from tests.fakes import Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of, post_chat, sse_data, user


@pytest.fixture
def failover(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(f"""
[agent]
gateway_mode = true
default_model = "openai/primary"
fallback_models = ["openai/backup"]
[providers.openai]
base_url = "{openai_upstream.url}/v1"
""")


def models_called(fake: FakeOpenAI) -> list[str]:
    return [r.body["model"] for r in fake.requests if r.path == "/v1/chat/completions"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retryable_failure_moves_to_the_fallback_then_cools_down(
    failover: Server, openai_upstream: FakeOpenAI, status: int
) -> None:
    # Each case uses its own primary so the cooldown of one does not leak into the next.
    primary = f"primary-{status}"
    openai_upstream.script(primary, Script(status=status))
    openai_upstream.script("backup", Script(text=["from backup"]))
    body = {"model": f"openai/{primary}", "messages": user("x")}
    resp = post_chat(failover.url, body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "openai/backup"
    assert resp.json()["choices"][0]["message"]["content"] == "from backup"
    assert models_called(openai_upstream) == [primary, "backup"]
    # Cooling down: the next request goes to the fallback first.
    post_chat(failover.url, body)
    assert models_called(openai_upstream) == [primary, "backup", "backup"]


def test_non_retryable_failure_fails_at_once(failover: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "primary",
        Script(
            status=400,
            error={
                "error": {
                    "message": "bad thing",
                    "type": "invalid_request_error",
                    "param": "x",
                    "code": None,
                }
            },
        ),
    )
    resp = post_chat(failover.url, {"model": "openai/primary", "messages": user("x")})
    assert resp.status_code == 400 and error_of(resp)["message"] == "bad thing"
    assert models_called(openai_upstream) == ["primary"]


def test_all_failing_gives_the_last_error(failover: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("p-all", Script(status=500))
    openai_upstream.script("backup", Script(status=429, headers={"Retry-After": "3"}))
    resp = post_chat(failover.url, {"model": "openai/p-all", "messages": user("x")})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "3"
    assert "all 2 models failed" in error_of(resp)["message"]


def test_stream_fails_over_before_the_first_byte(
    failover: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("p-stream", Script(text=["x"], cut_after=0))
    openai_upstream.script("backup", Script(text=["saved"]))
    resp = post_chat(
        failover.url, {"model": "openai/p-stream", "messages": user("x"), "stream": True}
    )
    assert resp.status_code == 200
    chunks = [json.loads(d) for d in sse_data(resp.text)[:-1]]
    assert {c["model"] for c in chunks} == {"openai/backup"}
    assert "saved" in [c["choices"][0]["delta"].get("content") for c in chunks]


def test_stream_failing_after_the_first_byte_gets_an_error_event(
    failover: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("p-late", Script(text=["a", "b", "c"], cut_after=2, delay=0.05))
    resp = httpx.post(
        f"{failover.url}/v1/chat/completions",
        timeout=30,
        json={"model": "openai/p-late", "messages": user("x"), "stream": True},
    )
    data = sse_data(resp.text)
    assert "error" in json.loads(data[-1])
    assert models_called(openai_upstream) == ["p-late"]
