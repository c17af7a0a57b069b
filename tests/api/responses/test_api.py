"""POST /v1/responses and the stored responses, driven by the official openai SDK and by raw
HTTP, on the real server in front of the fake upstreams."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import Response as SDKResponse
from pydantic import BaseModel

from tests.conftest import (
    EVERY_PROVIDER,
    Server,
    every_provider_config,
    gateway_config,
    start_server,
)
from tests.fakes import FakeCall, Script
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.ollama_fake import FakeOllama
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of, named_events

MODEL = "openai/fake-model"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def client(server: Server, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def post(server: Server, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/responses", json=body, timeout=30, **kwargs)


def stream_events(server: Server, body: dict[str, Any], **kwargs: Any) -> list[dict[str, Any]]:
    resp = post(server, {**body, "stream": True}, **kwargs)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/event-stream")
    return named_events(resp.text)


def strict(data: dict[str, Any]) -> SDKResponse:
    """The Response object as the SDK's own model reads it, with nothing missing."""
    return SDKResponse.model_validate(data, strict=True)


# --- create -------------------------------------------------------------------------------


def test_a_response_has_every_field_the_sdk_declares(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("fake-model", Script(text=["Hello", " there!"], usage=(21, 4)))
    resp = post(gateway, {"model": MODEL, "input": "Say hello", "metadata": {"k": "v"}})
    assert resp.status_code == 200, resp.text
    data = resp.json()
    parsed = strict(data)
    assert parsed.id.startswith("resp_") and len(parsed.id) == 5 + 48
    assert parsed.status == "completed" and parsed.completed_at is not None
    assert parsed.output_text == "Hello there!"
    item = data["output"][0]
    assert item["id"] == "msg_" + parsed.id.removeprefix("resp_")
    assert item["content"][0] == {
        "type": "output_text",
        "text": "Hello there!",
        "annotations": [],
        "logprobs": [],
    }
    assert data["usage"] == {
        "input_tokens": 21,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 4,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 25,
    }
    # The request's settings are echoed, with OpenAI's defaults for what it left out.
    assert data["model"] == MODEL and data["metadata"] == {"k": "v"}
    assert data["store"] is True and data["temperature"] == 1.0 and data["tool_choice"] == "auto"
    assert data["text"] == {"format": {"type": "text"}, "verbosity": "medium"}


def test_what_the_upstream_is_asked(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    client(gateway).responses.create(
        model=MODEL,
        instructions="Answer in French.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "What is 2+2?"}]},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
        ],
        max_output_tokens=50,
        temperature=0.2,
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    body = openai_upstream.last_body()
    assert body["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    assert body["max_completion_tokens"] == 50 and body["temperature"] == 0.2
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["tools"][0]["function"]["parameters"] == WEATHER["parameters"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False


def test_function_calls_and_their_outputs(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("get_weather", ['{"city": ', '"Paris"}'], id="call_a"),
                FakeCall("get_weather", ['{"city": "Tokyo"}'], id="call_b"),
            ]
        ),
        Script(text=["Sunny in both."]),
    )
    sdk = client(gateway)
    first = sdk.responses.create(model=MODEL, input="Weather in Paris and Tokyo?", tools=[WEATHER])  # type: ignore[list-item]
    calls = [item for item in first.output if item.type == "function_call"]
    assert [(c.id, c.call_id, c.name, c.arguments) for c in calls] == [
        ("fc_a", "call_a", "get_weather", '{"city": "Paris"}'),
        ("fc_b", "call_b", "get_weather", '{"city": "Tokyo"}'),
    ]
    assert first.status == "completed"
    # The Agents SDK's way: the history re-sent, with one output per call.
    second = sdk.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            *[c.model_dump(exclude_unset=True) for c in calls],
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_b", "output": "sunny too"},
        ],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.output_text == "Sunny in both."
    messages = openai_upstream.last_body()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["call_a", "call_b"]
    assert [(m["tool_call_id"], m["content"]) for m in messages[2:]] == [
        ("call_a", "sunny"),
        ("call_b", "sunny too"),
    ]


def test_structured_output_with_parse(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    class City(BaseModel):
        name: str
        population: int

    openai_upstream.script(
        "fake-model", Script(text=['{"name": "Oslo", ', '"population": 709000}'])
    )
    parsed = client(gateway).responses.parse(model=MODEL, input="Oslo?", text_format=City)
    assert parsed.output_parsed == City(name="Oslo", population=709000)
    fmt = openai_upstream.last_body()["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["name"] == "City"
    assert fmt["json_schema"]["schema"]["properties"]["population"] == {
        "title": "Population",
        "type": "integer",
    }


def test_max_output_tokens_makes_an_incomplete_response(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("fake-model", Script(text=["Once upon"], finish_reason="length"))
    data = post(gateway, {"model": MODEL, "input": "A story", "max_output_tokens": 16}).json()
    assert data["status"] == "incomplete" and data["completed_at"] is None
    assert data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["output"][0]["status"] == "incomplete"
    events = stream_events(gateway, {"model": MODEL, "input": "A story", "max_output_tokens": 16})
    assert events[-1]["type"] == "response.incomplete"
    assert not any(e["type"] == "response.completed" for e in events)


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("background", True, "background"),
        ("conversation", "conv_1", "conversation"),
        ("top_logprobs", 3, "top_logprobs"),
        ("max_output_tokens", 4, "max_output_tokens"),
        ("temperature", 3, "temperature"),
        ("surprise", 1, "surprise"),
    ],
)
def test_what_is_not_supported_is_a_400_naming_it(
    gateway: Server, field: str, value: Any, param: str
) -> None:
    resp = post(gateway, {"model": MODEL, "input": "hi", field: value})
    assert resp.status_code == 400, resp.text
    assert error_of(resp)["param"] == param


def test_a_tool_choice_for_a_missing_tool_is_refused(gateway: Server) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway).responses.create(
            model=MODEL,
            input="hi",
            tools=[WEATHER],
            tool_choice={"type": "function", "name": "nope"},  # type: ignore[list-item]
        )
    assert caught.value.param == "tool_choice"
    assert "nope" in caught.value.message


# --- streaming ----------------------------------------------------------------------------


def test_a_text_stream_follows_the_spec(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["Hel", "lo ", "there!"], usage=(9, 3)))
    events = stream_events(gateway, {"model": MODEL, "input": "Say hello"})
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, final = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["usage"] is None and created["id"] == final["id"]
    strict(created)
    strict(final)
    item_id = events[2]["item"]["id"]
    assert events[2]["item"] == {
        "id": item_id,
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    deltas = events[4:7]
    assert [d["delta"] for d in deltas] == ["Hel", "lo ", "there!"]
    assert all(d["item_id"] == item_id and d["output_index"] == 0 for d in deltas)
    assert events[7]["text"] == "Hello there!"
    assert final["output"] == [events[9]["item"]]
    assert final["output"][0]["content"][0]["text"] == "Hello there!"
    assert final["usage"]["input_tokens"] == 9 and final["usage"]["output_tokens"] == 3


def test_two_function_calls_stream_as_two_items(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            text=["Checking."],
            tool_calls=[
                FakeCall("get_weather", ['{"city":', ' "Paris"}'], id="call_p"),
                FakeCall("get_weather", ['{"city":', ' "Rome"}'], id="call_r"),
            ],
            interleave=True,  # the pieces of the two calls arrive mixed
        ),
    )
    events = stream_events(gateway, {"model": MODEL, "input": "weather", "tools": [WEATHER]})
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "message"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    done = {e["output_index"]: e for e in events if e["type"] == "response.output_item.done"}
    assert done[1]["item"]["arguments"] == '{"city": "Paris"}'
    assert done[2]["item"]["arguments"] == '{"city": "Rome"}'
    args: dict[int, str] = {}
    for e in events:
        if e["type"] == "response.function_call_arguments.delta":
            args[e["output_index"]] = args.get(e["output_index"], "") + e["delta"]
    assert args == {1: '{"city": "Paris"}', 2: '{"city": "Rome"}'}
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [i["id"] for i in final["output"]] == [added[0]["item"]["id"], "fc_p", "fc_r"]
    # And the SDK's own accumulator agrees.
    with client(gateway).responses.stream(model=MODEL, input="weather", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        response = stream.get_final_response()
    assert [o.type for o in response.output] == ["message", "function_call", "function_call"]


def test_the_sdk_stream_helper(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["a", "b", "c"]))
    with client(gateway).responses.stream(model=MODEL, input="abc") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["a", "b", "c"] and final.output_text == "abc"


def test_a_slow_model_gets_the_stream_started_and_kept_alive(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    extra = "[server]\nkeepalive_interval = 0.3\n"
    server = servers(gateway_config(openai_upstream.url, extra=extra))
    openai_upstream.script("fake-model", Script(text=["late"], first_delay=1.5))
    started = time.monotonic()
    seen: list[tuple[float, str]] = []
    with httpx.stream(
        "POST",
        f"{server.url}/v1/responses",
        json={"model": MODEL, "input": "hi", "stream": True},
        timeout=30,
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("event: ") or line.startswith(":"):
                seen.append((time.monotonic() - started, line))
    names = [line for _, line in seen]
    assert names[0] == "event: response.created"
    assert seen[0][0] < 1.0  # sent before the model's first word
    first_delta = names.index("event: response.output_text.delta")
    assert names[2:first_delta].count(": keep-alive") >= 2
    assert names[-1] == "event: response.completed"


def test_a_failure_after_a_late_start_is_a_failed_response(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    extra = "[server]\nkeepalive_interval = 0.2\n"
    server = servers(gateway_config(openai_upstream.url, extra=extra))
    openai_upstream.script("fake-model", Script(status=500, first_delay=0.6))
    events = stream_events(server, {"model": MODEL, "input": "hi"})
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    strict(failed)


# --- faults -------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_before_the_answer_are_http_errors(
    gateway: Server, openai_upstream: FakeOpenAI, stream: bool
) -> None:
    openai_upstream.script(
        "fake-model",
        Script(status=429, headers={"Retry-After": "7"}),
        Script(status=500),
        Script(status=503, error={"oops": "not OpenAI's shape"}),
    )
    body = {"model": MODEL, "input": "hi", "stream": stream}
    limited = post(gateway, body)
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert error_of(limited)["code"] == "rate_limit_exceeded"
    failed = post(gateway, body)
    assert failed.status_code == 502 and error_of(failed)["code"] == "upstream_error"
    sloppy = post(gateway, body)
    assert sloppy.status_code == 502 and "503" in error_of(sloppy)["message"]


def test_a_stream_cut_is_a_failed_response_never_a_completed_one(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    openai_upstream.script("fake-model", Script(text=["one ", "two ", "three"], cut_after=2))
    events = stream_events(gateway, {"model": MODEL, "input": "count"})
    assert events[-1]["type"] == "response.failed"
    assert not any(e["type"] == "response.completed" for e in events)
    failed = events[-1]["response"]
    assert (
        failed["error"]["code"] == "server_error"
        and "before it was complete" in (failed["error"]["message"])
    )
    assert failed["output"][0]["status"] == "incomplete"


def test_missing_usage_is_estimated_not_zero(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["a long enough answer"], usage=None))
    data = post(gateway, {"model": MODEL, "input": "hello there, how are you?"}).json()
    assert data["usage"]["input_tokens"] > 0 and data["usage"]["output_tokens"] > 0
    events = stream_events(gateway, {"model": MODEL, "input": "hello there"})
    usage = events[-1]["response"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


# --- stored responses ---------------------------------------------------------------------


def test_previous_response_id_continues_the_conversation(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    sdk = client(gateway)
    openai_upstream.script("fake-model", Script(text=["Nice to meet you, Ada."]))
    first = sdk.responses.create(model=MODEL, instructions="Be brief.", input="I am Ada.")
    openai_upstream.script("fake-model", Script(text=["You are Ada."]))
    second = sdk.responses.create(model=MODEL, input="Who am I?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    # The earlier turn's input and output come first; its instructions are not inherited.
    assert openai_upstream.last_body()["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "I am Ada."}]},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "Who am I?"},
    ]
    third = sdk.responses.create(
        model=MODEL, instructions="Be kind.", input="And now?", previous_response_id=second.id
    )
    messages = openai_upstream.last_body()["messages"]
    assert messages[0] == {"role": "system", "content": "Be kind."}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "assistant", "user"]
    assert sdk.responses.retrieve(third.id).previous_response_id == second.id


def test_a_streamed_response_is_stored_too(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["streamed"]))
    events = stream_events(gateway, {"model": MODEL, "input": "hi"})
    final = events[-1]["response"]
    assert client(gateway).responses.retrieve(final["id"]).output_text == "streamed"


def test_retrieve_list_input_items_and_delete(gateway: Server) -> None:
    sdk = client(gateway)
    created = sdk.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": [{"type": "input_text", "text": "three"}]},
        ],
    )
    assert sdk.responses.retrieve(created.id).model_dump() == created.model_dump()
    listed = list(sdk.responses.input_items.list(created.id, order="asc", limit=1))
    texts = [item.content[0].text for item in listed]  # type: ignore[union-attr]
    assert texts == ["one", "two", "three"]  # three pages of one, followed by the SDK
    newest = sdk.responses.input_items.list(created.id, limit=2)
    assert newest.has_more is True
    assert [item.content[0].text for item in newest.data] == ["three", "two"]  # type: ignore[union-attr]
    assert all(item.id and item.status == "completed" for item in listed)  # type: ignore[union-attr]
    sdk.responses.delete(created.id)
    for call in (
        lambda: sdk.responses.retrieve(created.id),
        lambda: sdk.responses.delete(created.id),
        lambda: sdk.responses.input_items.list(created.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body == {
            "message": f"Response with id '{created.id}' not found.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }


def test_store_false_keeps_nothing_to_continue(gateway: Server) -> None:
    sdk = client(gateway)
    unstored = sdk.responses.create(model=MODEL, input="hi", store=False)
    assert unstored.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model=MODEL, input="again", previous_response_id=unstored.id)
    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"


def test_an_item_reference_finds_a_stored_item(
    gateway: Server, openai_upstream: FakeOpenAI
) -> None:
    sdk = client(gateway)
    openai_upstream.script("fake-model", Script(text=["Paris."]))
    first = sdk.responses.create(model=MODEL, input="Capital of France?")
    answer = first.output[0].id
    sdk.responses.create(
        model=MODEL,
        input=[{"type": "item_reference", "id": answer}, {"role": "user", "content": "Sure?"}],
    )
    assert openai_upstream.last_body()["messages"][0] == {"role": "assistant", "content": "Paris."}
    missing = post(gateway, {"model": MODEL, "input": [{"type": "item_reference", "id": "msg_x"}]})
    assert missing.status_code == 400 and error_of(missing)["param"] == "input[0].id"


def test_stored_responses_survive_a_restart(tmp_path: Any, openai_upstream: FakeOpenAI) -> None:
    config = gateway_config(openai_upstream.url)
    server = start_server(config, tmp_path)
    try:
        openai_upstream.script("fake-model", Script(text=["kept"]))
        made = client(server).responses.create(model=MODEL, input="keep this")
        server.process.kill()  # no shutdown: what was answered must already be on disk
        server.process.wait()
    finally:
        server.stop()
    again = start_server(config, tmp_path)
    try:
        assert client(again).responses.retrieve(made.id).output_text == "kept"
    finally:
        again.stop()
    assert (tmp_path / "state" / "localgpt" / "responses.sqlite3").stat().st_mode & 0o777 == 0o600


def test_a_key_sees_only_its_own_responses(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    keys = 'auth_token = ["key-alice-0123456789", "key-bob-0123456789"]'
    server = servers(gateway_config(openai_upstream.url, extra=f"[server]\n{keys}\n"))
    alice, bob = client(server, "key-alice-0123456789"), client(server, "key-bob-0123456789")
    made = alice.responses.create(model=MODEL, input="private")
    assert alice.responses.retrieve(made.id).id == made.id
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError):
        bob.responses.create(model=MODEL, input="x", previous_response_id=made.id)
    with pytest.raises(openai.AuthenticationError):
        client(server, "wrong-key-0123456789").responses.create(model=MODEL, input="x")
    # Nor its items, even by an id the client chose itself.
    mine = {"type": "message", "id": "msg_shared_id", "role": "user", "content": "alice's"}
    alice.responses.create(model=MODEL, input=[mine])  # type: ignore[list-item]
    reference = [{"type": "item_reference", "id": "msg_shared_id"}]
    with pytest.raises(openai.BadRequestError):
        bob.responses.create(model=MODEL, input=reference)  # type: ignore[arg-type]
    alice.responses.create(model=MODEL, input=reference)  # type: ignore[arg-type]
    assert "alice's" in str(openai_upstream.last_body()["messages"])


# --- every provider, and the assistant layer ----------------------------------------------


@pytest.fixture
def every(
    servers: Callable[[str], Server],
    openai_upstream: FakeOpenAI,
    anthropic_upstream: FakeAnthropic,
    ollama_upstream: FakeOllama,
) -> Server:
    return servers(
        every_provider_config(openai_upstream.url, anthropic_upstream.url, ollama_upstream.url)
    )


@pytest.mark.parametrize("model", EVERY_PROVIDER)
def test_every_provider_answers(every: Server, model: str) -> None:
    sdk = client(every)
    made = sdk.responses.create(model=model, input="Say hi.", max_output_tokens=16)
    assert made.status in ("completed", "incomplete") and made.output_text.strip()
    assert made.usage is not None and made.usage.output_tokens > 0
    events = stream_events(every, {"model": model, "input": "Say hi.", "max_output_tokens": 16})
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text.strip()
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    assert events[-1]["response"]["output"][0]["content"][0]["text"] == text


def test_the_assistant_layer_is_on_for_responses_too(
    assistant: Server, openai_upstream: FakeOpenAI
) -> None:
    client(assistant).responses.create(model=MODEL, input="Hello")
    messages = openai_upstream.last_body()["messages"]
    assert messages[0]["role"] == "system" and "LocalGPT" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "Hello"}
    names = {t["function"]["name"] for t in openai_upstream.last_body().get("tools", [])}
    assert "memory_search" in names  # the server's tools are offered, and not shown back


def test_metrics_count_responses(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    client(gateway).responses.create(model=MODEL, input="count me")
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("localgpt_requests_total") and 'route="/v1/responses"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert json.dumps("openai/fake-model") in text
