"""The Anthropic provider, through the real server, against a fake Messages API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import Server
from tests.fakes import FakeCall, Script
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.helpers import error_of, post_chat, stream_chunks, user

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather now",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def server(servers: Callable[[str], Server], anthropic_upstream: FakeAnthropic) -> Server:
    return servers(f"""
[agent]
default_model = "anthropic/claude-fake-1"
max_tokens = 1234
[providers.anthropic]
api_key = "sk-ant-test"
base_url = "{anthropic_upstream.url}"
""")


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def test_text_and_system_prompts(client: openai.OpenAI, anthropic_upstream: FakeAnthropic) -> None:
    resp = client.chat.completions.create(
        model="claude-fake-1",
        messages=[
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": "Use French."},
            *user("hello"),
        ],
    )
    assert resp.choices[0].message.content == "You said: hello"
    assert resp.model == "anthropic/claude-fake-1"
    assert resp.usage and (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 7)
    sent = anthropic_upstream.last_body()
    assert sent["max_tokens"] == 1234  # [agent] max_tokens when the client sets none
    system = sent["system"]
    assert system.startswith("You are LocalGPT")  # ours first...
    assert system.index("Be terse.") < system.index("Use French.")  # ...then the client's
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    headers = anthropic_upstream.requests[-1].headers
    assert "sk-ant-test" in (headers.get("x-api-key", "") + headers.get("authorization", ""))


IMAGE = "data:image/png;base64,AAAA"


def named_conversation() -> list[dict[str, Any]]:
    """Participant names on every kind of message, with text and list-of-parts content."""
    return [
        {"role": "system", "content": "Be terse.", "name": "ops"},
        {"role": "user", "content": "hello", "name": "ann"},
        {"role": "assistant", "content": [{"type": "text", "text": "hi ann"}], "name": "bot"},
        {
            "role": "user",
            "name": "ann",
            "content": [
                {"type": "image_url", "image_url": {"url": IMAGE}},
                {"type": "text", "text": "what is this?"},
            ],
        },
    ]


def test_participant_names_are_written_into_the_text(
    server: Server, anthropic_upstream: FakeAnthropic
) -> None:
    body = {"model": "anthropic/claude-fake-1", "messages": named_conversation()}
    resp = post_chat(server.url, body)
    assert resp.status_code == 200, resp.text
    sent = anthropic_upstream.last_body()
    assert sent["system"].endswith("ops: Be terse.")
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "ann: hello"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "bot: hi ann"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "ann: "},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                },
                {"type": "text", "text": "what is this?"},
            ],
        },
    ]


def test_parameters_are_translated(
    client: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    client.chat.completions.create(
        model="anthropic/claude-fake-1",
        messages=user("x"),
        temperature=1.0,
        stop="END",
        max_completion_tokens=99,
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
        user="someone",
    )
    sent = anthropic_upstream.last_body()
    # Since API version 2026-10-21 Anthropic refuses sampling parameters, even its own
    # default: temperature 1 is honoured by sending nothing.
    assert "temperature" not in sent
    assert anthropic_upstream.requests[-1].headers["anthropic-version"] >= "2026-10-21"
    assert sent["stop_sequences"] == ["END"] and sent["max_tokens"] == 99
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather now",
            "input_schema": TOOLS[0]["function"]["parameters"],
        }
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_mapping(
    client: openai.OpenAI, anthropic_upstream: FakeAnthropic, choice: Any, expected: Any
) -> None:
    client.chat.completions.create(
        model="anthropic/claude-fake-1", messages=user("x"), tools=TOOLS, tool_choice=choice
    )
    assert anthropic_upstream.last_body()["tool_choice"] == expected


def test_json_schema_becomes_output_config(
    client: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    client.chat.completions.create(
        model="anthropic/claude-fake-1",
        messages=user("x"),
        response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    )
    assert anthropic_upstream.last_body()["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


def test_tool_calls_and_results_round_trip(
    client: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script(
        "claude-fake-1",
        Script(tool_calls=[FakeCall("get_weather", ['{"city": "Rome"}'], id="toolu_1")]),
    )
    first = client.chat.completions.create(
        model="anthropic/claude-fake-1", messages=user("weather?"), tools=TOOLS
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = (choice.message.tool_calls or [])[0]
    assert (call.id, call.function.name) == ("toolu_1", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Rome"}
    anthropic_upstream.script("claude-fake-1", Script(text=["Warm."]))
    history = [
        *user("weather?"),
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "toolu_1", "content": "25C"},
        *user("and tomorrow?"),
    ]
    second = client.chat.completions.create(
        model="anthropic/claude-fake-1", messages=history, tools=TOOLS
    )
    assert second.choices[0].message.content == "Warm."
    sent = anthropic_upstream.last_body()["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Rome"}}
        ],
    }
    # The tool result and the next user turn merge into one user message, result first.
    assert sent[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "25C"},
            {"type": "text", "text": "and tomorrow?"},
        ],
    }


def test_stream_turns_input_json_delta_into_argument_deltas(
    server: Server, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script(
        "claude-fake-1",
        Script(
            text=["Let me check."],
            tool_calls=[FakeCall("get_weather", ['{"ci', 'ty": ', '"Rome"}'], id="toolu_2")],
        ),
    )
    resp = post_chat(
        server.url,
        {
            "model": "anthropic/claude-fake-1",
            "messages": user("x"),
            "tools": TOOLS,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    chunks = stream_chunks(resp.text)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert {"content": "Let me check."} in deltas
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_2",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert [c["function"]["arguments"] for c in calls[1:]] == ['{"ci', 'ty": ', '"Rome"}']
    finishes = [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["tool_calls"]
    assert chunks[-1]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_max_tokens_stop_reason_is_length(
    client: openai.OpenAI, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script("claude-fake-1", Script(text=["cut"], finish_reason="length"))
    resp = client.chat.completions.create(model="anthropic/claude-fake-1", messages=user("x"))
    assert resp.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"seed": 1}, "seed"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"temperature": 0.2}, "temperature"),
        ({"top_p": 0.5}, "top_p"),
        ({"top_k": 5}, "top_k"),
        ({"min_p": 0.1}, "min_p"),
    ],
)
def test_what_anthropic_cannot_honour_is_refused_by_name(
    server: Server, anthropic_upstream: FakeAnthropic, extra: dict[str, Any], param: str
) -> None:
    body = {"model": "anthropic/claude-fake-1", "messages": user("x"), **extra}
    resp = post_chat(server.url, body)
    assert resp.status_code == 400
    assert error_of(resp)["param"] == param
    assert anthropic_upstream.requests == []


def test_neutral_values_are_accepted(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="anthropic/claude-fake-1", messages=user("x"), n=1, logprobs=False, presence_penalty=0
    )
    assert resp.choices[0].message.content


def test_upstream_errors_keep_status(server: Server, anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.script(
        "claude-fake-1",
        Script(
            status=429,
            headers={"retry-after": "9"},
            error={"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
        ),
    )
    resp = post_chat(server.url, {"model": "anthropic/claude-fake-1", "messages": user("x")})
    assert resp.status_code == 429 and resp.headers["retry-after"] == "9"
    assert error_of(resp)["message"] == "slow down"
    anthropic_upstream.script("claude-fake-1", Script(status=529))
    resp = post_chat(
        server.url, {"model": "anthropic/claude-fake-1", "messages": user("x"), "stream": True}
    )
    assert resp.status_code == 502
    anthropic_upstream.script(
        "claude-nope",
        Script(
            status=404,
            error={
                "type": "error",
                "error": {"type": "not_found_error", "message": "model: claude-nope"},
            },
        ),
    )
    resp = post_chat(server.url, {"model": "anthropic/claude-nope", "messages": user("x")})
    assert resp.status_code == 404 and error_of(resp)["code"] == "model_not_found"


def test_mid_stream_error_event(server: Server, anthropic_upstream: FakeAnthropic) -> None:
    anthropic_upstream.script(
        "claude-fake-1",
        Script(
            text=["a", "b"],
            delay=0.05,
            mid_stream_error={"error": {"type": "overloaded_error", "message": "Overloaded"}},
        ),
    )
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="anthropic/claude-fake-1", messages=user("x"), stream=True
        ):
            pass


def test_models_are_listed(server: Server, anthropic_upstream: FakeAnthropic) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    ids = {m.id: m for m in client.models.list()}
    assert "anthropic/claude-fake-1" in ids and "opus" in ids and "sonnet" in ids
    assert ids["anthropic/claude-fake-1"].created == 1739923200


def test_sampling_parameters_with_an_older_api_version(
    servers: Callable[[str], Server], anthropic_upstream: FakeAnthropic
) -> None:
    server = servers(f"""
[agent]
default_model = "old/claude-fake-1"
[providers.old]
type = "anthropic"
base_url = "{anthropic_upstream.url}"
api_version = "2023-06-01"
""")
    body = {
        "model": "old/claude-fake-1",
        "messages": user("x"),
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 7,
    }
    assert post_chat(server.url, body).status_code == 200
    sent = anthropic_upstream.last_body()
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.3, 0.9, 7)
    assert anthropic_upstream.requests[-1].headers["anthropic-version"] == "2023-06-01"
    body["temperature"] = 1.5
    resp = post_chat(server.url, body)
    assert resp.status_code == 400 and error_of(resp)["param"] == "temperature"
