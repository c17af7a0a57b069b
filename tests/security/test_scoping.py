"""What one key's requests leave behind is its own: server tool turns kept for a client's
next request, and sessions."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.conftest import Server, gateway_config
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import user

ALICE, BOB, ROOT = "alice-key-0123456789", "bob-key-0123456789", "root-key-0123456789"
WEATHER = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(
        gateway_config(
            openai_upstream.url,
            gateway=False,
            extra=f'[server]\nauth_token = ["{ALICE}", "{BOB}", '
            f'{{ key = "{ROOT}", scope = "admin" }}]',
        )
    )


def client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_a_reused_call_id_restores_nothing_across_keys(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    """Alice's server tool result, kept under her client call's id, must not be spliced into
    Bob's request that carries the same id."""
    openai_upstream.script(
        "fake-model",
        Script(
            tool_calls=[
                FakeCall("memory_search", [json.dumps({"query": "secret"})], id="call_srv"),
                FakeCall("get_weather", ["{}"], id="call_1"),
            ]
        ),
    )
    question = user("what is the weather?")
    first = client(server, ALICE).chat.completions.create(
        model="openai/fake-model", messages=question, tools=WEATHER
    )
    assert first.choices[0].message.tool_calls[0].id == "call_1"  # type: ignore[index]
    follow_up = [
        *question,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    openai_upstream.script("fake-model", Script(text=["ok"]))
    for key, restored in ((BOB, False), (ALICE, True)):
        client(server, key).chat.completions.create(
            model="openai/fake-model",
            messages=follow_up,  # type: ignore[arg-type]
            tools=WEATHER,
        )
        sent = openai_upstream.last_body()["messages"]
        has_search = any(
            c["function"]["name"] == "memory_search"
            for m in sent
            for c in m.get("tool_calls") or ()
        )
        assert has_search is restored, key


def test_sessions_belong_to_the_key_that_made_them(server: Server) -> None:
    def api(key: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(
            method,
            f"{server.url}{path}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )

    made = api(ALICE, "POST", "/api/chat", json={"message": "alice's note"}).json()
    sid = made["session_id"]
    assert sid in [s["id"] for s in api(ALICE, "GET", "/api/sessions").json()]
    assert sid not in [s["id"] for s in api(BOB, "GET", "/api/sessions").json()]
    for method, path in (
        ("GET", f"/api/sessions/{sid}"),
        ("GET", f"/api/sessions/{sid}/messages"),
        ("POST", f"/api/sessions/{sid}/clear"),
        ("DELETE", f"/api/sessions/{sid}"),
    ):
        assert api(BOB, method, path).status_code == 404, path
    resp = api(BOB, "POST", "/api/chat", json={"message": "mine now", "session_id": sid})
    assert resp.status_code == 404
    # An admin key sees every key's sessions.
    assert sid in [s["id"] for s in api(ROOT, "GET", "/api/sessions").json()]
    messages = api(ALICE, "GET", f"/api/sessions/{sid}").json()["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["alice's note"]
