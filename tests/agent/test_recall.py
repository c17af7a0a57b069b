"""Memory before the model answers: notes about the question are recalled into its context,
and what the user asks to be remembered is saved by the server, every time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from localgpt.agent.recall import RECALL_HEADER
from tests.conftest import Server, gateway_config
from tests.fakes.openai_fake import FakeOpenAI
from tests.helpers import user

BOILER = "# Boiler\n\nThe boiler is serviced by Heatwise (phone 020 7946 0321).\n"


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    # A server of its own: these tests write to its memory.
    return servers(gateway_config(openai_upstream.url, gateway=False, extra="# recall tests"))


def workspace(server: Server) -> Path:
    return server.home / "data" / "localgpt" / "workspace"


def ask(server: Server, text: str, **extra: Any) -> str:
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    resp = client.chat.completions.create(model="openai/fake-model", messages=user(text), **extra)
    return resp.choices[0].message.content or ""


def sent(fake: FakeOpenAI) -> list[dict[str, Any]]:
    return list(fake.last_body()["messages"])


def recall_blocks(messages: list[dict[str, Any]]) -> list[str]:
    return [
        str(m["content"])
        for m in messages
        if m["role"] == "system" and str(m["content"]).startswith(RECALL_HEADER)
    ]


def test_a_note_about_the_question_is_recalled_before_it(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    note = workspace(server) / "knowledge" / "boiler.md"
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(BOILER)
    httpx.post(f"{server.url}/api/memory/reindex", json={}, timeout=60).raise_for_status()
    ask(server, "Which company services my boiler?")
    messages = sent(openai_upstream)
    blocks = recall_blocks(messages)
    assert len(blocks) == 1
    assert "[1] (knowledge/boiler.md:1-3) Boiler: The boiler is serviced by Heatwise" in blocks[0]
    # After the cached prefix: right before the question, which stays the last message.
    assert messages[-2]["content"] == blocks[0]
    assert messages[-1] == {"role": "user", "content": "Which company services my boiler?"}
    assert messages[0]["content"].startswith("You are LocalGPT")


def test_a_question_no_note_answers_adds_no_recall_block(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    for question in ("What is the capital of France?", "Hi", "Write a haiku about autumn."):
        ask(server, question)
        assert recall_blocks(sent(openai_upstream)) == [], question


def test_a_short_follow_up_is_searched_with_the_question_before_it(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    note = workspace(server) / "knowledge" / "boiler.md"
    note.parent.mkdir(parents=True, exist_ok=True)
    note.write_text(BOILER)
    httpx.post(f"{server.url}/api/memory/reindex", json={}, timeout=60).raise_for_status()
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    client.chat.completions.create(
        model="openai/fake-model",
        messages=[
            *user("My boiler is making a noise again."),
            {"role": "assistant", "content": "That sounds annoying."},
            *user("Who do I call about it?"),
        ],
    )
    blocks = recall_blocks(sent(openai_upstream))
    assert blocks and "Heatwise" in blocks[0]


def test_what_the_user_asks_to_remember_is_saved_updated_and_not_repeated(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    memory = workspace(server) / "MEMORY.md"
    ask(server, "Remember that my gym locker code is 5309.")
    assert "- The user's gym locker code is 5309." in memory.read_text()
    body = openai_upstream.last_body()
    note = body["messages"][-1]
    assert note["role"] == "system"
    assert "You saved this to the user's memory (MEMORY.md)" in note["content"]
    assert "I'll remember that your gym locker code is 5309." in note["content"]
    assert body["messages"][-2]["content"] == "Remember that my gym locker code is 5309."
    offered = [t["function"]["name"] for t in body.get("tools", [])]
    assert "memory_save" not in offered and "memory_search" in offered  # saved already

    ask(server, "Please remember: my gym locker code is 8812.")
    text = memory.read_text()
    assert "8812" in text and "5309" not in text  # the old code is replaced, not kept
    assert "is now" in sent(openai_upstream)[-1]["content"]

    ask(server, "Don't forget that my gym locker code is 8812.")
    assert memory.read_text().count("8812") == 1
    assert "already in the user's memory" in sent(openai_upstream)[-1]["content"]

    ask(server, "What's the code for my gym locker?")
    blocks = recall_blocks(sent(openai_upstream))
    assert blocks and "(MEMORY.md:" in blocks[0] and "8812" in blocks[0]


def test_a_passing_note_goes_to_todays_log(server: Server) -> None:
    from datetime import date

    ask(server, "Remember to buy oat milk tomorrow.")
    log = workspace(server) / "memory" / f"{date.today().isoformat()}.md"
    assert "- To do: buy oat milk tomorrow." in log.read_text()


def test_asking_whether_it_remembers_saves_nothing(server: Server) -> None:
    memory = workspace(server) / "MEMORY.md"
    before = memory.read_text() if memory.exists() else ""
    ask(server, "Do you remember my favourite colour?")
    assert (memory.read_text() if memory.exists() else "") == before


def test_a_read_only_caller_saves_nothing(
    servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    config = gateway_config(
        openai_upstream.url,
        gateway=False,
        extra='[server]\nauth_token = [{key = "assistant-key-1", scope = "assistant"}]',
    )
    server = servers(config)
    client = openai.OpenAI(base_url=server.base_url, api_key="assistant-key-1", max_retries=0)
    client.chat.completions.create(
        model="openai/fake-model", messages=user("Remember that my bike is red.")
    )
    memory = workspace(server) / "MEMORY.md"
    assert "bike" not in (memory.read_text() if memory.exists() else "")
    assert all("saved this" not in str(m["content"]) for m in sent(openai_upstream))


def test_structured_answers_get_no_server_tools(
    server: Server, openai_upstream: FakeOpenAI
) -> None:
    """A small model offered tools besides a JSON schema filled the schema with tool names."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    for response_format in (
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    ):
        ask(server, "Ada is 36.", response_format=response_format)
        assert "tools" not in openai_upstream.last_body()
    ask(server, "Ada is 36.")
    assert "tools" in openai_upstream.last_body()  # otherwise they are offered
