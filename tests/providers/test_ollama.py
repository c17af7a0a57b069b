"""The Ollama provider (native /api/chat), through the real server, against a fake Ollama."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import Server
from tests.fakes import FakeCall, Script
from tests.fakes.ollama_fake import FakeOllama
from tests.helpers import error_of, post_chat, stream_chunks, user

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def server(servers: Callable[[str], Server], ollama_upstream: FakeOllama) -> Server:
    return servers(f"""
[agent]
default_model = "ollama/llama3"
[providers.ollama]
endpoint = "{ollama_upstream.url}"
model = "llama3"
""")


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


def test_participant_names_are_written_into_the_text(
    server: Server, ollama_upstream: FakeOllama
) -> None:
    messages = [
        {"role": "system", "content": "Be terse.", "name": "ops"},
        {"role": "user", "content": "hello", "name": "ann"},
        {"role": "assistant", "content": "hi ann", "name": "bot"},
        {
            "role": "user",
            "name": "ann",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "what is this?"},
            ],
        },
    ]
    resp = post_chat(server.url, {"model": "ollama/llama3", "messages": messages})
    assert resp.status_code == 200, resp.text
    sent = ollama_upstream.last_body()["messages"]
    assert {"role": "system", "content": "ops: Be terse."} in sent
    assert [m for m in sent if m["role"] != "system"] == [
        {"role": "user", "content": "ann: hello"},
        {"role": "assistant", "content": "bot: hi ann"},
        {"role": "user", "content": "ann: what is this?", "images": ["AAAA"]},
    ]


def test_bare_names_route_to_ollama_with_options(
    client: openai.OpenAI, ollama_upstream: FakeOllama
) -> None:
    resp = client.chat.completions.create(
        model="llama3",
        messages=user("hi"),
        temperature=0.2,
        top_p=0.7,
        seed=5,
        stop="X",
        max_tokens=33,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        extra_body={"top_k": 3, "min_p": 0.05, "repeat_penalty": 1.1},
        response_format={"type": "json_object"},
    )
    assert resp.model == "ollama/llama3"
    assert resp.choices[0].message.content == "You said: hi"
    assert resp.usage and resp.usage.total_tokens == 18
    sent = ollama_upstream.last_body()
    # In assistant mode the reply streams inside (the tool loop), whatever the client asked.
    assert sent["format"] == "json"
    assert sent["options"] == {
        "temperature": 0.2,
        "top_p": 0.7,
        "seed": 5,
        "stop": ["X"],
        "num_predict": 33,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "top_k": 3,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
    }
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][0]["content"].startswith("You are LocalGPT")


def test_json_schema_is_sent_as_format(client: openai.OpenAI, ollama_upstream: FakeOllama) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    client.chat.completions.create(
        model="ollama/llama3",
        messages=user("x"),
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    )
    assert ollama_upstream.last_body()["format"] == schema


def test_images_go_inline(client: openai.OpenAI, ollama_upstream: FakeOllama) -> None:
    client.chat.completions.create(
        model="ollama/llama3",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
    )
    assert ollama_upstream.last_body()["messages"][-1] == {
        "role": "user",
        "content": "what",
        "images": ["AAAA"],
    }


def test_tool_calls_round_trip(client: openai.OpenAI, ollama_upstream: FakeOllama) -> None:
    ollama_upstream.script(
        "llama3", Script(tool_calls=[FakeCall("get_weather", ['{"city": "Lima"}'])])
    )
    first = client.chat.completions.create(model="ollama/llama3", messages=user("w?"), tools=TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = (choice.message.tool_calls or [])[0]
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lima"}
    # The assistant's own tools come first, the client's after them, unchanged.
    assert ollama_upstream.last_body()["tools"][-1:] == TOOLS
    ollama_upstream.script("llama3", Script(text=["Mild."]))
    second = client.chat.completions.create(
        model="ollama/llama3",
        tools=TOOLS,
        messages=[
            *user("w?"),
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "18C"},
        ],
    )
    assert second.choices[0].message.content == "Mild."
    sent = ollama_upstream.last_body()["messages"]
    assert sent[-2]["tool_calls"] == [
        {"function": {"name": "get_weather", "arguments": {"city": "Lima"}}}
    ]
    assert sent[-1] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}


def test_stream_text_and_tool_calls(server: Server, ollama_upstream: FakeOllama) -> None:
    ollama_upstream.script(
        "llama3",
        Script(
            text=["Checking", "..."], tool_calls=[FakeCall("get_weather", ['{"city": "Quito"}'])]
        ),
    )
    resp = post_chat(
        server.url,
        {
            "model": "ollama/llama3",
            "messages": user("x"),
            "tools": TOOLS,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    chunks = stream_chunks(resp.text)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d["content"] for d in deltas if d.get("content")] == ["Checking", "..."]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert json.loads(calls[1]["function"]["arguments"]) == {"city": "Quito"}
    assert [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    ] == ["tool_calls"]
    assert chunks[-1]["usage"]["total_tokens"] == 18


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": "required", "tools": TOOLS}, "tool_choice"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url",
        ),
    ],
)
def test_what_ollama_cannot_honour_is_refused(
    server: Server, ollama_upstream: FakeOllama, extra: dict[str, Any], param: str
) -> None:
    resp = post_chat(server.url, {"model": "ollama/llama3", "messages": user("x"), **extra})
    assert resp.status_code == 400 and error_of(resp)["param"] == param
    assert ollama_upstream.requests == []


def test_tool_choice_none_sends_no_tools(
    client: openai.OpenAI, ollama_upstream: FakeOllama
) -> None:
    client.chat.completions.create(
        model="ollama/llama3", messages=user("x"), tools=TOOLS, tool_choice="none"
    )
    assert "tools" not in ollama_upstream.last_body()


def test_errors(server: Server, ollama_upstream: FakeOllama) -> None:
    ollama_upstream.script("nope", Script(status=404, error={"error": "model 'nope' not found"}))
    resp = post_chat(server.url, {"model": "ollama/nope", "messages": user("x")})
    assert resp.status_code == 404
    assert error_of(resp) == {
        "message": "model 'nope' not found",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    ollama_upstream.script("llama3", Script(text=["a", "b"], cut_after=1, delay=0.05))
    resp = post_chat(server.url, {"model": "ollama/llama3", "messages": user("x"), "stream": True})
    assert "error" in resp.text.strip().split("\n\n")[-1]


def test_models_listed_from_tags(client: openai.OpenAI) -> None:
    ids = {m.id: m for m in client.models.list()}
    assert "ollama/llama3:latest" in ids and "ollama/llama3" in ids
    assert ids["ollama/llama3:latest"].created == 1746086400


@pytest.mark.parametrize(
    "bad_line",
    [
        {"message": "not an object"},
        {"message": {"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}},
        ["a", "list"],
    ],
)
def test_a_malformed_stream_line_is_a_bad_gateway_not_a_crash(
    server: Server, ollama_upstream: FakeOllama, bad_line: Any
) -> None:
    ollama_upstream.script("llama3", Script(text=[], mid_stream_error=bad_line))
    resp = post_chat(server.url, {"model": "ollama/llama3", "messages": user("x"), "stream": True})
    assert resp.status_code == 502, resp.text
    assert error_of(resp)["code"] == "upstream_bad_response"
