"""POST /v1/completions, the legacy text endpoint, on an OpenAI-compatible upstream and locally."""

from __future__ import annotations

import json
from collections.abc import Callable

import openai
import pytest

from tests.conftest import SMOLLM, Server, local_config
from tests.fakes import Script
from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import error_of, sse_data


@pytest.fixture
def client(gateway: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0)


def test_text_completion_with_suffix_through_an_upstream(
    client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    resp = client.completions.create(
        model="openai/fake-model",
        prompt="def add(a, b):",
        suffix="return c",
        max_tokens=9,
        temperature=0,
    )
    assert resp.object == "text_completion" and resp.id.startswith("cmpl-")
    assert resp.model == "openai/fake-model"
    assert resp.choices[0].text == "<, b):|return c>"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == 18
    sent = openai_upstream.last_body()
    assert (sent["prompt"], sent["suffix"], sent["max_tokens"]) == ("def add(a, b):", "return c", 9)


def test_text_stream_shape(gateway: Server, openai_upstream: FakeOpenAI) -> None:
    import httpx

    resp = httpx.post(
        f"{gateway.url}/v1/completions",
        timeout=30,
        json={
            "model": "openai/fake-model",
            "prompt": "hello",
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    data = sse_data(resp.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert len({c["id"] for c in chunks}) == 1
    texts = [c["choices"][0]["text"] for c in chunks if c["choices"]]
    assert "".join(texts) == "<hello|>"
    finishes = [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 18


def test_official_client_streams_text(client: openai.OpenAI, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script("fake-model", Script(text=["a", "b", "c"]))
    pieces = [
        c.choices[0].text
        for c in client.completions.create(model="openai/fake-model", prompt="x", stream=True)
        if c.choices
    ]
    assert "".join(pieces) == "abc" and len([p for p in pieces if p]) == 3


def test_a_text_stream_failing_midway_ends_in_an_error_event(
    client: openai.OpenAI, openai_upstream: FakeOpenAI
) -> None:
    error = {"error": {"message": "the GPU fell over", "type": "server_error"}}
    for script in (
        Script(text=["one", " two"], mid_stream_error=error, delay=0.05),
        Script(text=["one", " two", " three"], cut_after=2, delay=0.05),
    ):
        openai_upstream.script("fake-model", script)
        seen = []
        with pytest.raises(openai.APIError):
            for chunk in client.completions.create(
                model="openai/fake-model", prompt="count", stream=True
            ):
                seen.append(chunk.choices[0].text)
        assert seen[:2] == ["one", " two"] and "".join(seen) == "one two"


def test_chat_only_provider_is_404(
    servers: Callable[[str], Server], fake_anthropic: FakeAnthropic
) -> None:
    server = servers(f"""
[agent]
default_model = "anthropic/claude-fake-1"
[providers.anthropic]
base_url = "{fake_anthropic.url}"
""")
    import httpx

    resp = httpx.post(
        f"{server.url}/v1/completions",
        timeout=30,
        json={"model": "anthropic/claude-fake-1", "prompt": "x"},
    )
    assert resp.status_code == 404
    assert "chat model" in error_of(resp)["message"]


def test_bad_completion_requests(gateway: Server) -> None:
    import httpx

    for body, param in [
        ({"model": "openai/fake-model"}, "prompt"),
        ({"model": "openai/fake-model", "prompt": "x", "logprobs": 9}, "logprobs"),
        ({"model": "openai/fake-model", "prompt": "x", "messages": []}, "messages"),
    ]:
        resp = httpx.post(f"{gateway.url}/v1/completions", json=body, timeout=30)
        assert resp.status_code == 400 and error_of(resp)["param"] == param


def test_local_text_completion_streams_and_refuses_unknown_fim(
    servers: Callable[[str], Server],
) -> None:
    server = servers(local_config(gateway=True))
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=120)
    pieces = [
        c.choices[0].text
        for c in client.completions.create(
            model=SMOLLM, prompt="Once upon a time", max_tokens=12, stream=True
        )
        if c.choices
    ]
    assert len([p for p in pieces if p]) >= 6
    resp = client.completions.create(model=SMOLLM, prompt="1, 2, 3,", max_tokens=6, logprobs=2)
    logprobs = resp.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs
    assert "".join(logprobs.tokens) == resp.choices[0].text
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=SMOLLM, prompt="x", suffix="y")
    assert err.value.param == "suffix"  # type: ignore[attr-defined]
