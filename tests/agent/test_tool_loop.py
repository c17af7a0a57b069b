"""The assistant's own tools next to the client's, through the real server and official client.

The fake upstream plays the model: it is scripted to call tools, and records every request,
so the tests see exactly what the model was given.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Server, gateway_config
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import sse_data, user

WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(
        gateway_config(
            openai_upstream.url,
            gateway=False,
            extra="""
[agent.aliases]
m = "openai/fake-model"
""",
        )
    )


@pytest.fixture
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)


def chat_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.path == "/v1/chat/completions"]


def offered(body: dict[str, Any]) -> list[str]:
    return [t["function"]["name"] for t in body.get("tools", [])]


def save_fact(server: Server, fake: FakeOpenAI, fact: str) -> None:
    """A native session in which the model saves a fact to MEMORY.md."""
    fake.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("memory_save", [json.dumps({"content": fact, "target": "memory"})])
            ]
        ),
        Script(text=["Saved."]),
    )
    resp = httpx.post(f"{server.url}/api/chat", json={"message": "remember this"}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json()["response"] == "Saved."
    assert resp.json()["tool_calls"][0]["name"] == "memory_save"


def test_server_tools_run_in_the_server_and_the_client_sees_only_text(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "x"}'])]),
        Script(text=["Found ", "nothing."]),
    )
    resp = client.chat.completions.create(model="m", messages=user("what do you know?"))
    choice = resp.choices[0]
    assert choice.message.content == "Found nothing." and choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert resp.usage is not None and resp.usage.total_tokens == 36  # both model calls
    first, second = chat_requests(openai_upstream)
    assert {"memory_search", "memory_get", "memory_save", "web_fetch"} <= set(offered(first))
    assert "bash" not in offered(first) and "write_file" not in offered(first)
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "memory_search"
    assert second["messages"][-1]["role"] == "tool"


def test_a_fact_saved_in_one_session_is_found_in_another_and_over_v1(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    save_fact(server, openai_upstream, "The user's dog is called Biscuit.")
    openai_upstream.reset()
    search = Script(tool_calls=[FakeCall("memory_search", ['{"query": "name of my pet"}'])])
    openai_upstream.script("fake-model", search, Script(text=["Biscuit."]))
    resp = httpx.post(
        f"{server.url}/api/chat", json={"message": "what's my dog's name?"}, timeout=60
    )
    assert resp.json()["response"] == "Biscuit."
    assert "Biscuit" in chat_requests(openai_upstream)[-1]["messages"][-1]["content"]
    openai_upstream.reset()
    openai_upstream.script("fake-model", search, Script(text=["Biscuit."]))
    client.chat.completions.create(model="m", messages=user("what's my dog's name?"))
    assert "Biscuit" in chat_requests(openai_upstream)[-1]["messages"][-1]["content"]
    # MEMORY.md is also part of every system prompt, so the fact is there from the start.
    assert "Biscuit" in chat_requests(openai_upstream)[0]["messages"][0]["content"]


def test_client_and_server_tools_in_one_turn(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("memory_search", ['{"query": "home town"}'], id="call_srv"),
                FakeCall("get_weather", ['{"city": "Lyon"}'], id="call_cli"),
            ]
        ),
        Script(text=["Sunny in Lyon."]),
    )
    first = client.chat.completions.create(
        model="m", messages=user("weather at home?"), tools=WEATHER
    )  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("call_cli", "get_weather")]
    history = [
        *user("weather at home?"),
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_cli", "content": "sunny"},
    ]
    second = client.chat.completions.create(
        model="m",
        messages=history,  # type: ignore[arg-type]
        tools=WEATHER,
    )  # type: ignore[arg-type]
    assert second.choices[0].message.content == "Sunny in Lyon."
    sent = chat_requests(openai_upstream)[-1]["messages"]
    # The server's own call and its result are back in place, next to the client's.
    assistant = next(m for m in sent if m["role"] == "assistant")
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_srv", "call_cli"]
    results = {m["tool_call_id"]: m["content"] for m in sent if m["role"] == "tool"}
    assert set(results) == {"call_srv", "call_cli"} and results["call_cli"] == "sunny"


def test_stream_with_server_tools_sends_keepalives_and_only_standard_chunks(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "q"}'])]),
        Script(text=["done"]),
    )
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=60,
        json={
            "model": "m",
            "messages": user("x"),
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert ": keep-alive\n\n" in resp.text
    body = "\n\n".join(e for e in resp.text.split("\n\n") if e and not e.startswith(":"))
    data = sse_data(body + "\n\n")
    chunks = [json.loads(d) for d in data[:-1]]
    allowed = {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert all(set(c) <= allowed for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert all(set(d) <= {"role", "content", "tool_calls"} for d in deltas)
    assert not any("tool_calls" in d for d in deltas)  # server calls are not the client's
    assert [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    ] == ["stop"]
    assert chunks[-1]["usage"]["total_tokens"] == 36


def test_memory_get_refuses_paths_outside_the_workspace(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    (server.home / "secret.txt").write_text("TOP SECRET")
    workspace = server.home / "data" / "localgpt" / "workspace"
    (workspace / "link.md").symlink_to(server.home / "secret.txt")
    for path in (
        "../../../secret.txt",
        str(server.home / "secret.txt"),
        "link.md",
        "../workspace/../../../secret.txt",
    ):
        openai_upstream.reset()
        openai_upstream.script(
            "fake-model",
            Script(tool_calls=[FakeCall("memory_get", [json.dumps({"path": path})])]),
            Script(text=["ok"]),
        )
        client.chat.completions.create(model="m", messages=user("read it"))
        result = chat_requests(openai_upstream)[-1]["messages"][-1]
        assert result["role"] == "tool"
        assert "TOP SECRET" not in result["content"] and "Error" in result["content"], path


def test_repeated_identical_calls_are_stopped(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    same = Script(tool_calls=[FakeCall("memory_search", ['{"query": "loop"}'])])
    openai_upstream.script("fake-model", same, same, same, same, Script(text=["gave up"]))
    resp = client.chat.completions.create(model="m", messages=user("x"))
    assert resp.choices[0].message.content == "gave up"
    results = [
        m["content"] for m in chat_requests(openai_upstream)[-1]["messages"] if m["role"] == "tool"
    ]
    assert len(results) == 4 and results[-1].startswith("Blocked")
    assert not any(r.startswith("Blocked") for r in results[:3])


def test_a_client_tool_of_the_same_name_wins(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    mine = [
        {
            "type": "function",
            "function": {
                "name": "web_fetch",
                "parameters": {"type": "object", "properties": {"url": {"type": "string"}}},
            },
        }
    ]
    openai_upstream.script(
        "fake-model", Script(tool_calls=[FakeCall("web_fetch", ['{"url": "https://example.com"}'])])
    )
    resp = client.chat.completions.create(model="m", messages=user("x"), tools=mine)  # type: ignore[arg-type]
    assert resp.choices[0].finish_reason == "tool_calls"
    assert offered(chat_requests(openai_upstream)[-1]).count("web_fetch") == 1


def test_earlier_server_turns_are_restored_before_a_client_call(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "city"}'], id="call_s1")]),
        Script(
            text=["Checking. "],
            tool_calls=[FakeCall("get_weather", ['{"city": "Graz"}'], id="call_c1")],
        ),
        Script(text=["Mild in Graz."]),
    )
    first = client.chat.completions.create(model="m", messages=user("weather?"), tools=WEATHER)  # type: ignore[arg-type]
    message = first.choices[0].message
    assert message.content == "Checking. "
    assert [c.id for c in message.tool_calls or []] == ["call_c1"]
    client.chat.completions.create(
        model="m",
        tools=WEATHER,
        messages=[  # type: ignore[arg-type]
            *user("weather?"),
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": "call_c1", "content": "mild"},
        ],
    )
    sent = chat_requests(openai_upstream)[-1]["messages"]
    flow = [
        (m["role"], [c["id"] for c in m.get("tool_calls") or []] or m.get("tool_call_id"))
        for m in sent[1:]
    ]
    assert flow == [
        ("user", None),
        ("assistant", ["call_s1"]),
        ("tool", "call_s1"),
        ("assistant", ["call_c1"]),
        ("tool", "call_c1"),
    ]


def test_server_results_behind_a_text_answer_are_restored(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "plans"}'], id="call_p")]),
        Script(text=["You plan to hike."]),
        Script(text=["ok"]),
    )
    answer = client.chat.completions.create(model="m", messages=user("my plans?"))
    text = answer.choices[0].message.content
    client.chat.completions.create(
        model="m",
        messages=[*user("my plans?"), {"role": "assistant", "content": text}, *user("thanks")],
    )
    sent = chat_requests(openai_upstream)[-1]["messages"]
    assert [m["role"] for m in sent[1:]] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent[3]["tool_call_id"] == "call_p"


def test_the_same_answer_in_another_conversation_gets_nothing_restored(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "alice"}'], id="call_a")]),
        Script(text=["Done."]),
        Script(text=["ok"]),
    )
    client.chat.completions.create(model="m", messages=user("alice's secret plans?"))
    # Bob's client shows the same short answer to another question in its history.
    client.chat.completions.create(
        model="m",
        messages=[*user("turn on the lights"), {"role": "assistant", "content": "Done."}],
    )
    sent = chat_requests(openai_upstream)[-1]["messages"]
    assert [m["role"] for m in sent[1:]] == ["user", "assistant"]
    assert "call_a" not in json.dumps(sent)


def test_a_tool_that_keeps_failing_is_blocked(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    failing = [
        Script(tool_calls=[FakeCall("memory_get", [json.dumps({"path": f"no{i}.md"})])])
        for i in range(4)
    ]
    openai_upstream.script("fake-model", *failing, Script(text=["sorry"]))
    resp = client.chat.completions.create(model="m", messages=user("x"))
    assert resp.choices[0].message.content == "sorry"
    sent = chat_requests(openai_upstream)
    results = [m["content"] for m in sent[-1]["messages"] if m["role"] == "tool"]
    assert [r.startswith("Error") for r in results[:3]] == [True, True, True]
    assert results[3].startswith("Blocked: memory_get failed 3 times")
    assert "memory_get" not in offered(sent[-1])  # no longer offered to the model


def test_a_request_larger_than_the_context_is_refused(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    small = gateway_config(openai_upstream.url, gateway=False).replace(
        "[agent]\n", "[agent]\ncontext_window = 3000\n", 1
    )
    server = servers(small)
    resp = httpx.post(
        f"{server.url}/v1/chat/completions",
        timeout=30,
        json={"model": "openai/fake-model", "messages": user("word " * 20000)},
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded"
    assert not [r for r in openai_upstream.requests if r.path == "/v1/chat/completions"]


def test_web_fetch_through_the_assistant_refuses_the_machines_own_network(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    for url in (
        f"{openai_upstream.url}/v1/models",
        "http://169.254.169.254/latest/",
        "http://10.0.0.1/",
        "http://localhost:1/",
    ):
        openai_upstream.reset()
        openai_upstream.script(
            "fake-model",
            Script(tool_calls=[FakeCall("web_fetch", [json.dumps({"url": url})])]),
            Script(text=["ok"]),
        )
        client.chat.completions.create(model="m", messages=user("fetch it"))
        result = chat_requests(openai_upstream)[-1]["messages"][-1]
        assert result["role"] == "tool" and "refused" in result["content"], url
        assert not [r for r in openai_upstream.requests if r.path == "/v1/models"]


def test_a_tool_failing_unexpectedly_is_an_error_result_not_a_failed_request(
    server: Server, client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    # The daily log's folder is a file: saving fails with an OS error, not a ToolError.
    memory = server.home / "data" / "localgpt" / "workspace" / "memory"
    shutil.rmtree(memory, ignore_errors=True)
    memory.write_text("not a folder")
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_save", ['{"content": "a fact"}'])]),
        Script(text=["could not save"]),
    )
    resp = client.chat.completions.create(model="m", messages=user("log a fact"))
    assert resp.choices[0].message.content == "could not save"
    result = chat_requests(openai_upstream)[-1]["messages"][-1]
    assert result["role"] == "tool" and result["content"].startswith("Error: ")


def test_every_model_call_of_the_tool_loop_takes_a_provider_slot(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    # One slot, no queue: while the loop's second model call runs, another request is
    # turned away with 503 queue_full rather than overloading the provider.
    server = servers(
        gateway_config(openai_upstream.url, gateway=False).replace(
            'base_url = "', 'max_concurrency = 1\nmax_queue = 0\nbase_url = "', 1
        )
    )
    openai_upstream.script(
        "fake-model",
        Script(tool_calls=[FakeCall("memory_search", ['{"query": "x"}'])]),
        Script(text=["slow", " final", " answer"], delay=0.7),
    )
    body = {"model": "openai/fake-model", "messages": user("look it up")}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(httpx.post, f"{server.url}/v1/chat/completions", json=body, timeout=60)
        deadline = time.monotonic() + 20
        while len(chat_requests(openai_upstream)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(chat_requests(openai_upstream)) == 2
        turned_away = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
        assert first.result().json()["choices"][0]["message"]["content"] == "slow final answer"
    assert turned_away.status_code == 503
    assert turned_away.json()["error"]["code"] == "queue_full"
    assert len(chat_requests(openai_upstream)) == 2
