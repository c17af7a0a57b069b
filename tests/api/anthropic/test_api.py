"""POST /v1/messages and /v1/messages/count_tokens, driven by the official anthropic SDK and
by raw HTTP, on the real server in front of the fake upstreams."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message as SDKMessage

from tests.conftest import (
    EVERY_PROVIDER,
    Server,
    every_provider_config,
    gateway_config,
)
from tests.fakes import FakeCall, Script
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.ollama_fake import FakeOllama
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import named_events

MODEL = "openai/fake-model"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
HI = [{"role": "user", "content": "Hello there"}]


def client(server: Server, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)


def post(server: Server, body: dict[str, Any], path: str = "", **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/messages{path}", json=body, timeout=30, **kwargs)


def events_of(server: Server, body: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    resp = post(server, {**body, "stream": True}, **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    return named_events(resp.text)


def anthropic_error(resp: httpx.Response) -> dict[str, Any]:
    """The error of a response, checking Anthropic's shape and its request id."""
    body = resp.json()
    assert set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["request_id"] == resp.headers["request-id"]
    return dict(body["error"])


def blocks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The content blocks a stream builds, checking index order and contiguity."""
    out: list[dict[str, Any]] = []
    open_index: int | None = None
    for e in events:
        if e["type"] == "content_block_start":
            assert open_index is None and e["index"] == len(out), e
            open_index = e["index"]
            out.append({**e["content_block"], "_json": ""})
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index, e
            delta = e["delta"]
            if delta["type"] == "text_delta":
                out[-1]["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                out[-1]["_json"] += delta["partial_json"]
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index, e
            open_index = None
    assert open_index is None
    return out


# --- create -------------------------------------------------------------------------------


def test_a_message_as_the_sdk_reads_it(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["Hi", " there"], usage=(13, 2)))
    resp = post(gateway, {"model": MODEL, "max_tokens": 64, "messages": HI})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    message = SDKMessage.model_validate(data, strict=True)
    assert message.id.startswith("msg_") and message.model == MODEL
    assert data["content"] == [{"type": "text", "text": "Hi there"}]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 13 and message.usage.output_tokens == 2
    assert resp.headers["request-id"]


def test_what_the_upstream_is_asked(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    client(gateway).messages.create(
        model=MODEL,
        max_tokens=77,
        system=[
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=1"},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
        ],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "any"},
        extra_body={"temperature": 0.5},  # not in the SDK's current API version
    )
    body = openai_upstream.last_body()
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},  # Claude Code's billing line dropped
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "rain"},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]
    assert body["max_completion_tokens"] == 77 and body["temperature"] == 0.5
    assert body["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    assert body["tool_choice"] == "required"


def test_tool_calls_come_back_as_tool_use_blocks(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("get_weather", ['{"city": "Paris"}'], id="call_a"),
                FakeCall("get_weather", ['{"city": "Rome"}'], id="call_b"),
            ]
        ),
    )
    message = client(gateway).messages.create(
        model=MODEL,
        max_tokens=64,
        messages=HI,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert message.stop_reason == "tool_use"
    uses = [(b.id, b.name, b.input) for b in message.content if b.type == "tool_use"]
    assert uses == [
        ("toolu_a", "get_weather", {"city": "Paris"}),
        ("toolu_b", "get_weather", {"city": "Rome"}),
    ]


def test_stop_sequences_say_which_one_stopped(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    answer = ["one ", "two ", "thr", "ee ", "four"]
    openai_upstream.script("fake-model", Script(text=answer))
    stops = ["three", "four"]
    message = client(gateway).messages.create(
        model=MODEL,
        max_tokens=64,
        messages=HI,  # type: ignore[arg-type]
        stop_sequences=stops,
    )
    assert message.stop_reason == "stop_sequence" and message.stop_sequence == "three"
    assert message.content[0].text == "one two "  # type: ignore[union-attr]
    assert "stop" not in openai_upstream.last_body()  # matched here, not upstream
    events = events_of(
        gateway, {"model": MODEL, "max_tokens": 64, "messages": HI, "stop_sequences": stops}
    )
    assert blocks(events)[0]["text"] == "one two "
    delta = next(e for e in events if e["type"] == "message_delta")
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "three"}
    # Without a match the reply ends as usual.
    message = client(gateway).messages.create(
        model=MODEL,
        max_tokens=64,
        messages=HI,
        stop_sequences=["never"],  # type: ignore[arg-type]
    )
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.content[0].text == "".join(answer)  # type: ignore[union-attr]


def test_max_tokens_is_the_stop_reason_when_cut(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("fake-model", Script(text=["Once upon"], finish_reason="length"))
    message = client(gateway).messages.create(model=MODEL, max_tokens=3, messages=HI)  # type: ignore[arg-type]
    assert message.stop_reason == "max_tokens"


def test_count_tokens(gateway: Server) -> None:
    sdk = client(gateway)
    short = sdk.messages.count_tokens(model=MODEL, messages=HI)  # type: ignore[arg-type]
    longer = sdk.messages.count_tokens(
        model=MODEL,
        messages=[{"role": "user", "content": "Hello there " * 50}],
        system="Be brief.",
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    resp = post(gateway, {"model": MODEL, "messages": HI}, "/count_tokens?beta=true")
    assert resp.json() == {"input_tokens": short.input_tokens}


def test_models_and_the_probe_as_anthropic_clients_call_them(gateway: Server) -> None:
    """The SDK's models.list and Claude Code's discovery get Anthropic's shape; HEAD / is 200."""
    listed = list(client(gateway).models.list())
    assert MODEL in [m.id for m in listed]
    assert all(m.type == "model" for m in listed)
    ours = next(m for m in listed if m.id == MODEL)
    assert ours.created_at.timestamp() == 1700000000  # the upstream's own date
    assert client(gateway).models.retrieve(MODEL).id == MODEL
    openai_shape = httpx.get(f"{gateway.url}/v1/models", timeout=10).json()
    assert openai_shape["object"] == "list" and "has_more" not in openai_shape
    assert httpx.head(f"{gateway.url}/", timeout=10).status_code == 200


# --- streaming ----------------------------------------------------------------------------


def test_a_text_stream_follows_the_spec(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["Hel", "lo"], usage=(10, 2)))
    events = events_of(gateway, {"model": MODEL, "max_tokens": 64, "messages": HI})
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["model"] == MODEL
    assert start["usage"]["input_tokens"] > 0
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert [e["delta"] for e in events[2:4]] == [
        {"type": "text_delta", "text": "Hel"},
        {"type": "text_delta", "text": "lo"},
    ]
    assert events[5]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[5]["usage"]["output_tokens"] == 2 and events[5]["usage"]["input_tokens"] == 10
    with client(gateway).messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.content[0].text == "Hello" and final.usage.output_tokens == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("interleave", [False, True])
def test_parallel_tool_calls_stream_as_separate_blocks(
    gateway: Server, openai_upstream: FakeOpenAI, interleave: bool
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            text=["Checking both."],
            tool_calls=[
                FakeCall("get_weather", ['{"city":', ' "Paris"}'], id="call_p"),
                FakeCall("get_weather", ['{"city":', ' "Rome"}'], id="call_r"),
            ],
            interleave=interleave,
        ),
    )
    body = {"model": MODEL, "max_tokens": 64, "messages": HI, "tools": [WEATHER]}
    events = events_of(gateway, body)
    built = blocks(events)
    assert [b["type"] for b in built] == ["text", "tool_use", "tool_use"]
    assert [(b["id"], b["_json"]) for b in built[1:]] == [
        ("toolu_p", '{"city": "Paris"}'),
        ("toolu_r", '{"city": "Rome"}'),
    ]
    assert next(e for e in events if e["type"] == "message_delta")["delta"]["stop_reason"] == (
        "tool_use"
    )
    with client(gateway).messages.stream(**body) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert [b.input for b in final.content if b.type == "tool_use"] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]


def test_a_slow_model_gets_message_start_and_pings(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(
        gateway_config(openai_upstream.url, extra="[server]\nkeepalive_interval = 0.3\n")
    )
    openai_upstream.script("fake-model", Script(text=["late"], first_delay=1.5))
    started = time.monotonic()
    seen: list[tuple[float, str]] = []
    body = {"model": MODEL, "max_tokens": 64, "messages": HI, "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/messages", json=body, timeout=30) as resp:
        for line in resp.iter_lines():
            if line.startswith("event: "):
                seen.append((time.monotonic() - started, line[7:]))
    names = [n for _, n in seen]
    assert names[0] == "message_start" and seen[0][0] < 1.0
    assert names[1 : names.index("content_block_start")].count("ping") >= 2
    assert names[-1] == "message_stop"


# --- errors, in Anthropic's shape ---------------------------------------------------------


def test_invalid_requests(gateway: Server) -> None:
    missing = post(gateway, {"model": MODEL, "messages": HI})
    assert missing.status_code == 400
    assert anthropic_error(missing) == {
        "type": "invalid_request_error",
        "message": "max_tokens: Field required",
    }
    bad_json = httpx.post(
        f"{gateway.url}/v1/messages",
        content=b"{nope",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert bad_json.status_code == 400
    assert anthropic_error(bad_json)["message"].startswith("The request body is not valid JSON")
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(gateway).messages.create(
            model=MODEL,
            max_tokens=10,
            messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}],
        )
    assert "tool_use_id" in caught.value.message
    unknown = post(gateway, {"model": "nope/none", "max_tokens": 5, "messages": HI})
    assert unknown.status_code == 404
    assert anthropic_error(unknown)["type"] == "not_found_error"
    route = httpx.post(f"{gateway.url}/v1/messages/nope", json={}, timeout=10)
    assert route.status_code == 404 and anthropic_error(route)["type"] == "not_found_error"


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_faults(gateway: Server, openai_upstream: FakeOpenAI, stream: bool) -> None:
    openai_upstream.script(
        "fake-model",
        Script(status=429, headers={"Retry-After": "5"}),
        Script(status=500),
        Script(status=502, error={"sloppy": True}),
    )
    body = {"model": MODEL, "max_tokens": 16, "messages": HI, "stream": stream}
    limited = post(gateway, body)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "5"
    assert anthropic_error(limited)["type"] == "rate_limit_error"
    assert limited.headers["x-should-retry"] == "true"
    for _ in range(2):
        failed = post(gateway, body)
        assert failed.status_code == 502
        assert anthropic_error(failed)["type"] == "api_error"


def test_a_stream_cut_is_an_error_event(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["a ", "b ", "c"], cut_after=2))
    events = events_of(gateway, {"model": MODEL, "max_tokens": 64, "messages": HI})
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error"
    assert not any(e["type"] == "message_stop" for e in events)
    sdk = client(gateway)
    with (
        pytest.raises(anthropic.APIStatusError),
        sdk.messages.stream(model=MODEL, max_tokens=64, messages=HI) as stream,  # type: ignore[arg-type]
    ):
        stream.get_final_message()  # the same cut: the SDK raises, it does not end quietly


def test_keys_scopes_and_limits(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    keys = (
        'auth_token = ["key-full-0123456789", {key = "key-metrics-0123456789", scope = "metrics"}]'
    )
    limits = "[server.rate_limit]\nenabled = true\nrequests_per_minute = 60\nburst = 3\n"
    server = servers(gateway_config(openai_upstream.url, extra=f"[server]\n{keys}\n{limits}"))
    body = {"model": MODEL, "max_tokens": 8, "messages": HI}
    # The SDK sends its key as x-api-key; Claude Code may send a Bearer token.
    assert client(server, "key-full-0123456789").messages.create(**body).content  # type: ignore[arg-type]
    bearer = post(server, body, headers={"Authorization": "Bearer key-full-0123456789"})
    assert bearer.status_code == 200
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client(server, "wrong-key-0123456789").messages.create(**body)  # type: ignore[arg-type]
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    scoped = post(server, body, headers={"x-api-key": "key-metrics-0123456789"})
    assert scoped.status_code == 403 and anthropic_error(scoped)["type"] == "permission_error"
    for _ in range(5):
        last = post(server, body, headers={"x-api-key": "key-full-0123456789"})
    assert last.status_code == 429 and anthropic_error(last)["type"] == "rate_limit_error"
    assert float(last.headers["retry-after"]) >= 1


# --- an Anthropic upstream: passed through --------------------------------------------------


@pytest.fixture
def anthropic_gateway(
    servers: Callable[[str], Server], anthropic_upstream: FakeAnthropic
) -> Server:
    return servers(
        f"""
[agent]
default_model = "anthropic/claude-fake-1"
gateway_mode = true

[providers.anthropic]
api_key = "sk-ant-test"
base_url = "{anthropic_upstream.url}"
"""
    )


def test_an_anthropic_upstream_gets_the_request_untouched(
    anthropic_gateway: Server, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script(
        "claude-fake-1", Script(text=["Hi"], thinking=("Let me see.", "c2ln"))
    )
    body = {
        "model": "anthropic/claude-fake-1",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "First"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Earlier.", "signature": "c2lnMQ=="},
                    {"type": "text", "text": "Answer."},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Next", "cache_control": {"type": "ephemeral"}}
                ],
            },
        ],
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }
    beta = {"anthropic-beta": "interleaved-thinking-2025-05-14", "anthropic-version": "2023-06-01"}
    resp = post(anthropic_gateway, body, headers=beta)
    assert resp.status_code == 200, resp.text
    received = anthropic_upstream.requests[-1]
    assert received.body == {**body, "model": "claude-fake-1"}  # nothing lost, nothing added
    assert received.headers["anthropic-beta"] == beta["anthropic-beta"]
    assert received.headers["anthropic-version"] == "2023-06-01"
    data = resp.json()
    assert data["model"] == "anthropic/claude-fake-1"
    assert data["content"][0] == {
        "type": "thinking",
        "thinking": "Let me see.",
        "signature": "c2ln",
    }
    events = events_of(anthropic_gateway, body, headers=beta)
    assert events[0]["message"]["model"] == "anthropic/claude-fake-1"
    built = blocks(events)
    assert built[0]["type"] == "thinking" and built[1]["text"] == "Hi"
    signature = [e for e in events if e["type"] == "content_block_delta"][1]["delta"]
    assert signature == {"type": "signature_delta", "signature": "c2ln"}
    fields = {k: v for k, v in body.items() if k != "context_management"}
    with client(anthropic_gateway).messages.stream(**fields) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]


def test_passed_through_faults_and_count_tokens(
    anthropic_gateway: Server, anthropic_upstream: FakeAnthropic
) -> None:
    body = {"model": "anthropic/claude-fake-1", "max_tokens": 16, "messages": HI}
    anthropic_upstream.script(
        "claude-fake-1",
        Script(
            status=400,
            error={
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 9 tokens > 8 maximum",
                },
            },
        ),
    )
    refused = post(anthropic_gateway, body)
    assert refused.status_code == 400
    assert anthropic_error(refused)["message"] == "prompt is too long: 9 tokens > 8 maximum"
    anthropic_upstream.script("claude-fake-1", Script(text=["a", "b", "c"], cut_after=4))
    events = events_of(anthropic_gateway, body)
    assert events[-1]["type"] == "error" and not any(e["type"] == "message_stop" for e in events)
    counted = post(
        anthropic_gateway, {"model": "anthropic/claude-fake-1", "messages": HI}, "/count_tokens"
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
    assert anthropic_upstream.requests[-1].path == "/v1/messages/count_tokens"
    assert anthropic_upstream.requests[-1].body["model"] == "claude-fake-1"


# --- every provider, and the assistant layer ----------------------------------------------


@pytest.fixture
def every_assistant(
    servers: Callable[[str], Server],
    openai_upstream: FakeOpenAI,
    anthropic_upstream: FakeAnthropic,
    ollama_upstream: FakeOllama,
) -> Server:
    """Every provider behind the assistant layer (an Anthropic model is translated then)."""
    return servers(
        every_provider_config(
            openai_upstream.url, anthropic_upstream.url, ollama_upstream.url, gateway=False
        )
    )


@pytest.mark.parametrize("model", EVERY_PROVIDER)
def test_every_provider_answers(every_assistant: Server, model: str) -> None:
    sdk = client(every_assistant)
    message = sdk.messages.create(model=model, max_tokens=16, messages=HI)  # type: ignore[arg-type]
    assert message.content and message.content[0].text.strip()  # type: ignore[union-attr]
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with sdk.messages.stream(model=model, max_tokens=16, messages=HI) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.content[0].text.strip()  # type: ignore[union-attr]


def test_the_assistant_layer_is_on_for_messages_too(
    assistant: Server, openai_upstream: FakeOpenAI
) -> None:
    client(assistant).messages.create(model=MODEL, max_tokens=16, messages=HI)  # type: ignore[arg-type]
    messages = openai_upstream.last_body()["messages"]
    assert messages[0]["role"] == "system" and "LocalGPT" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Hello there"}
