"""Non-stream Chat Completions through the real server, with the official client and raw HTTP."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import Server
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import post_chat, user


@pytest.fixture
def client(gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0)


def test_completion_shape_through_official_client(
    client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    before = int(time.time())
    resp = client.chat.completions.create(model="openai/fake-model", messages=user("hi there"))
    assert resp.id.startswith("chatcmpl-")
    assert resp.object == "chat.completion"
    assert before - 1 <= resp.created <= time.time() + 1
    assert resp.model == "openai/fake-model"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said: hi there"
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (11, 7)
    assert resp.usage.total_tokens == 18


def test_raw_shape_has_exactly_openai_fields(gateway: Server) -> None:
    resp = post_chat(gateway.url, {"model": "openai/fake-model", "messages": user("x")})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage"}
    assert set(body["choices"][0]) == {"index", "message", "logprobs", "finish_reason"}
    assert body["choices"][0]["logprobs"] is None


def test_every_sampling_field_reaches_the_upstream(
    client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    client.chat.completions.create(
        model="openai/fake-model",
        messages=user("x"),
        temperature=0.3,
        top_p=0.9,
        stop=["END"],
        seed=42,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logprobs=True,
        top_logprobs=2,
        user="u1",
        max_tokens=50,
        max_completion_tokens=60,
        response_format={"type": "json_object"},
        parallel_tool_calls=False,
        tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        tool_choice={"type": "function", "function": {"name": "f"}},
        store=True,
        metadata={"k": "v"},
        service_tier="auto",
        extra_body={"top_k": 5, "min_p": 0.1},
    )
    body = openai_upstream.last_body()
    for key, value in {
        "temperature": 0.3,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "logprobs": True,
        "top_logprobs": 2,
        "user": "u1",
        "max_completion_tokens": 60,
        # max_completion_tokens wins; a server other than OpenAI gets it as max_tokens too,
        # as Ollama's /v1 and llama-cpp-python read only that.
        "max_tokens": 60,
        "response_format": {"type": "json_object"},
        "parallel_tool_calls": False,
        "top_k": 5,
        "min_p": 0.1,
        "tool_choice": {"type": "function", "function": {"name": "f"}},
    }.items():
        assert body[key] == value, key
    assert body["tools"][0]["function"]["name"] == "f"
    # Fields that cannot change the answer are not forwarded.
    for key in ("store", "metadata", "service_tier", "stream"):
        assert key not in body, key


def test_content_parts_are_accepted_and_forwarded(
    client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    parts = [
        {"type": "text", "text": "what is"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "text", "text": "this"},
    ]
    resp = client.chat.completions.create(
        model="openai/fake-model", messages=[{"role": "user", "content": parts}]
    )
    assert resp.choices[0].message.content == "You said: what is this"
    assert openai_upstream.last_body()["messages"][-1]["content"] == parts


def test_client_tool_call_reaches_client_and_results_continue(
    client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("get_weather", ['{"city": ', '"Paris"}'], id="call_w1")]),
        Script(text=["It is sunny."]),
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    first = client.chat.completions.create(
        model="openai/fake-model", messages=user("weather in Paris?"), tools=tools
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert (call.id, call.type, call.function.name) == ("call_w1", "function", "get_weather")
    assert call.function.arguments == '{"city": "Paris"}'
    history = [
        *user("weather in Paris?"),
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 24C"},
    ]
    second = client.chat.completions.create(
        model="openai/fake-model", messages=history, tools=tools
    )
    assert second.choices[0].message.content == "It is sunny."
    sent = openai_upstream.last_body()["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == "call_w1"
    assert sent[-1] == {"role": "tool", "tool_call_id": "call_w1", "content": "sunny, 24C"}


def test_n_returns_several_choices(client: openai.OpenAI, openai_upstream: FakeOpenAI) -> None:
    resp = client.chat.completions.create(model="openai/fake-model", messages=user("x"), n=3)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert openai_upstream.last_body()["n"] == 3


def test_length_finish_reason_is_kept(client: openai.OpenAI, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["cut"], finish_reason="length"))
    resp = client.chat.completions.create(model="openai/fake-model", messages=user("x"))
    assert resp.choices[0].finish_reason == "length"


def test_upstream_api_key_is_sent_not_the_clients(
    client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    client.chat.completions.create(model="openai/fake-model", messages=user("x"))
    assert openai_upstream.requests[-1].headers["authorization"] == "Bearer sk-test-upstream"


def test_a_tool_message_may_carry_the_functions_name(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    # Not in the OpenAPI spec, but in OpenAI's function-calling guide, and api.openai.com
    # accepts it: agent frameworks send it on every tool result.
    messages = [
        *user("weather?"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "w", "content": "sunny"},
    ]
    resp = post_chat(gateway.url, {"model": "openai/fake-model", "messages": messages})
    assert resp.status_code == 200, resp.text
    assert openai_upstream.last_body()["messages"][-1]["name"] == "w"
