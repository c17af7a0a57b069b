"""The stream invariants of OPENAI-COMPAT.md, checked on raw bytes and with the official client."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import sse_data, stream_chunks, user

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
]


def stream(server: Server, **body: Any) -> list[dict[str, Any]]:
    body = {"model": "openai/fake-model", "messages": user("hello world"), "stream": True, **body}
    resp = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    return stream_chunks(resp.text)


def finish_chunks(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] is not None]


def test_invariants_of_a_text_stream(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["a", "b", "c", "d", "e"]))
    chunks = stream(gateway)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    texts = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert texts == ["a", "b", "c", "d", "e"]
    finishes = finish_chunks(chunks)
    assert len(finishes) == 1 and finishes[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] is finishes[0]
    # Without include_usage: no usage chunk and no usage field.
    assert all("usage" not in c for c in chunks)


def test_usage_chunk_only_when_asked(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    chunks = stream(gateway, stream_options={"include_usage": True})
    *body, last = chunks
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert all(c["usage"] is None for c in body)
    assert len(finish_chunks(chunks)) == 1


def test_tool_call_deltas_follow_openai(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("get_weather", ['{"ci', 'ty": "Pa', 'ris"}'], id="call_a"),
                FakeCall("get_time", ['{"tz":', ' "CET"}'], id="call_b"),
            ]
        ),
    )
    chunks = stream(gateway, tools=TOOLS)
    deltas = [d for c in chunks for d in c["choices"][0]["delta"].get("tool_calls", [])]
    firsts = [d for d in deltas if "id" in d]
    assert firsts == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": ""},
        },
    ]
    rest = [d for d in deltas if "id" not in d]
    assert all(
        set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest
    )
    args = {i: "".join(d["function"]["arguments"] for d in rest if d["index"] == i) for i in (0, 1)}
    assert json.loads(args[0]) == {"city": "Paris"} and json.loads(args[1]) == {"tz": "CET"}
    assert len(rest) == 5  # the pieces arrive as the upstream sent them
    finishes = finish_chunks(chunks)
    assert [f["choices"][0]["finish_reason"] for f in finishes] == ["tool_calls"]


def test_finish_reason_is_tool_calls_even_if_upstream_says_stop(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("get_time", ['{"tz": "UTC"}'])], finish_reason="stop"),
    )
    chunks = stream(gateway, tools=TOOLS)
    assert [f["choices"][0]["finish_reason"] for f in finish_chunks(chunks)] == ["tool_calls"]


def test_official_client_streaming_helper_assembles_tool_calls(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("get_weather", ['{"city":', ' "Oslo"}']),
                FakeCall("get_time", ['{"tz": "CET"}']),
            ]
        ),
    )
    client = openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    with client.chat.completions.stream(
        model="openai/fake-model",
        messages=user("x"),
        tools=TOOLS,  # type: ignore[arg-type]
    ) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    calls = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_time", {"tz": "CET"}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_official_client_stream_text(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    client = openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="openai/fake-model", messages=user("one two three"), stream=True
        )
        if c.choices
    ]
    assert "".join(pieces) == "You said: one two three"
    assert len([p for p in pieces if p]) == 5


def test_error_after_the_stream_started_is_an_error_event(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            text=["partial"],
            delay=0.05,
            mid_stream_error={"error": {"message": "boom", "type": "server_error"}},
        ),
    )
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "openai/fake-model", "messages": user("x"), "stream": True},
        timeout=30,
    )
    data = sse_data(resp.text)
    assert "[DONE]" not in data
    last = json.loads(data[-1])
    assert set(last) == {"error"} and "boom" in last["error"]["message"]
    assert not any(json.loads(d).get("choices", [{}])[0].get("finish_reason") for d in data[:-1])
    client = openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match="boom"):
        for _ in client.chat.completions.create(
            model="openai/fake-model", messages=user("x"), stream=True
        ):
            pass


def test_stream_cut_mid_way_is_an_error_event_not_a_stop(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("fake-model", Script(text=["a", "b", "c", "d"], cut_after=3, delay=0.05))
    resp = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": "openai/fake-model", "messages": user("x"), "stream": True},
        timeout=30,
    )
    data = sse_data(resp.text)
    assert data[-1] != "[DONE]"
    error = json.loads(data[-1])["error"]
    assert error["code"] == "upstream_stream_cut"
    assert [json.loads(d)["choices"][0]["delta"].get("content") for d in data[:-1]] == [
        "",
        "a",
        "b",
    ]


def test_tokens_are_forwarded_as_they_arrive(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["a", "b", "c", "d"], delay=0.25))
    arrivals = []
    body = {"model": "openai/fake-model", "messages": user("x"), "stream": True}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body, timeout=30) as resp:
        start = time.monotonic()
        for line in resp.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 4
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(g > 0.15 for g in gaps), gaps


def test_n_streams_each_choice_with_its_own_finish(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    chunks = stream(gateway, n=1)
    assert {c["choices"][0]["index"] for c in chunks} == {0}
    # Two choices, interleaved by the upstream: each gets its role chunk, its text and one
    # finish; the usage chunk comes once, after both.
    chunks = stream(gateway, n=2, stream_options={"include_usage": True})
    for index in (0, 1):
        mine = [
            c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["index"] == index
        ]
        assert mine[0]["delta"].get("role") == "assistant"
        assert sum(1 for m in mine if m["delta"].get("role")) == 1
        assert "".join(m["delta"].get("content") or "" for m in mine) == "You said: hello world"
        assert [m["finish_reason"] for m in mine if m["finish_reason"]] == ["stop"]
    assert [c for c in chunks if not c["choices"]] == [chunks[-1]] and chunks[-1]["usage"]
    assert len({c["id"] for c in chunks}) == 1
