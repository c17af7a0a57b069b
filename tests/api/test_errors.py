"""Every error in OpenAI's shape with the right status: bad input, unknown models, upstreams."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server, free_port
from tests.fakes import Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of, post_chat, user

OK = {"model": "openai/fake-model", "messages": user("x")}


def chat_error(server: Server, body: Any, status: int = 400, **kwargs: Any) -> dict[str, Any]:
    if isinstance(body, bytes):
        resp = httpx.post(
            f"{server.url}/v1/chat/completions",
            content=body,
            timeout=30,
            headers={"Content-Type": "application/json"},
        )
    else:
        resp = post_chat(server.url, body, **kwargs)
    assert resp.status_code == status, resp.text
    return error_of(resp)


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": user("x")}, "model", "Missing required parameter"),
        ({"model": "openai/fake-model"}, "messages", "Missing required parameter"),
        ({**OK, "messages": []}, "messages", "Invalid"),
        ({**OK, "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "'bot'"),
        ({**OK, "messages": [{"content": "x"}]}, "messages[0].role", "Missing"),
        ({**OK, "messages": [{"role": "user"}]}, "messages[0].content", "Missing"),
        ({**OK, "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "type"),
        (
            {**OK, "messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]},
            "messages[0].content[0].type",
            "'video'",
        ),
        (
            {**OK, "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
            "Missing",
        ),
        ({**OK, "temperature": "hot"}, "temperature", "expected a number"),
        ({**OK, "temperature": 3}, "temperature", "temperature"),
        ({**OK, "n": 0}, "n", "n"),
        ({**OK, "stream": "yes"}, "stream", "expected a boolean"),
        ({**OK, "max_tokens": 1.5}, "max_tokens", "integer"),
        ({**OK, "tool_choice": "sometimes"}, "tool_choice", "sometimes"),
        ({**OK, "response_format": {"type": "xml"}}, "response_format.type", "'xml'"),
        (
            {**OK, "tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
            "name",
        ),
        ({**OK, "frobnicate": 1}, "frobnicate", "Unrecognized request argument supplied"),
        (
            {**OK, "messages": [{"role": "user", "content": "x", "mood": "happy"}]},
            "messages[0].mood",
            "not allowed",
        ),
        ({**OK, "stream_options": {"include_usage": True}}, "stream_options", "stream"),
        ({**OK, "tool_choice": "required"}, "tool_choice", "only allowed when 'tools'"),
        (
            {
                **OK,
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
            "'g' is not in 'tools'",
        ),
    ],
)
def test_bad_requests_are_400_naming_the_parameter(
    gateway: Server, body: dict[str, Any], param: str, fragment: str
) -> None:
    error = chat_error(gateway, body)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert fragment.lower() in error["message"].lower(), error


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"", b'"text"'])
def test_malformed_bodies_are_400(gateway: Server, raw: bytes) -> None:
    error = chat_error(gateway, raw)
    assert error["type"] == "invalid_request_error"


def test_fastapi_422_never_leaks(gateway: Server) -> None:
    for path in ("/v1/models/", "/v1/chat/completions"):
        resp = httpx.post(f"{gateway.url}{path}", content=b"x", timeout=10)
        assert resp.status_code != 422 and "detail" not in resp.json()


def test_unknown_model_is_404_model_not_found(gateway: Server) -> None:
    error = chat_error(gateway, {**OK, "model": "nonexistent-model"}, 404)
    assert error["code"] == "model_not_found" and "nonexistent-model" in error["message"]
    error = chat_error(gateway, {**OK, "model": "anthropic/claude-x"}, 404)
    assert "anthropic" in error["message"] and "not configured" in error["message"]


def test_unknown_route_and_method_are_openai_shaped(gateway: Server) -> None:
    resp = httpx.get(f"{gateway.url}/v1/nothing", timeout=10)
    assert resp.status_code == 404 and error_of(resp)
    resp = httpx.get(f"{gateway.url}/v1/chat/completions", timeout=10)
    assert resp.status_code == 405 and error_of(resp)


def test_official_client_raises_typed_errors(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="openai/fake-model", messages=[])
    assert bad.value.param == "messages"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=user("x"))
    assert missing.value.code == "model_not_found"


def test_upstream_429_keeps_status_message_and_retry_after(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            status=429,
            headers={"Retry-After": "7"},
            error={
                "error": {
                    "message": "Rate limit reached",
                    "type": "requests",
                    "param": None,
                    "code": "rate_limit_exceeded",
                }
            },
        ),
    )
    for stream in (False, True):
        resp = post_chat(gateway.url, {**OK, "stream": stream})
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "7"
        error = error_of(resp)
        assert error["message"] == "Rate limit reached"
        assert error["code"] == "rate_limit_exceeded"


def test_upstream_404_keeps_its_status(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "gpt-nope",
        Script(
            status=404,
            error={
                "error": {
                    "message": "The model `gpt-nope` does not exist",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
        ),
    )
    error = chat_error(gateway, {**OK, "model": "openai/gpt-nope"}, 404)
    assert error["code"] == "model_not_found" and "gpt-nope" in error["message"]


def test_upstream_400_keeps_status_and_param(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            status=400,
            error={
                "error": {
                    "message": "Unrecognized request argument supplied: top_k",
                    "type": "invalid_request_error",
                    "param": "top_k",
                    "code": None,
                }
            },
        ),
    )
    error = chat_error(gateway, {**OK, "top_k": 3}, 400)
    assert error["param"] == "top_k"


def test_upstream_500_is_502(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(status=500))
    for stream in (False, True):
        error = chat_error(gateway, {**OK, "stream": stream}, 502)
        assert error["type"] == "upstream_error"


def test_unreachable_upstream_is_502_and_timeout_is_504(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(f"""
[agent]
gateway_mode = true
default_model = "dead/x"
[providers.dead]
type = "openai"
base_url = "http://127.0.0.1:{free_port()}/v1"
[providers.slow]
type = "openai"
base_url = "{openai_upstream.url}/v1"
read_timeout = 0.5
""")
    error = chat_error(server, {**OK, "model": "dead/x"}, 502)
    assert error["code"] == "upstream_unreachable"
    openai_upstream.script("sleepy", Script(first_delay=5))
    for stream in (False, True):
        error = chat_error(server, {**OK, "model": "slow/sleepy", "stream": stream}, 504)
        assert error["code"] == "upstream_timeout"
