"""The assistant on the default embedded model: a fact told in one chat is answered in the
next, and no answer ever holds the tool decision's internal text.

These run Qwen2.5-Coder-1.5B, the model a user gets with no configuration, because the
behaviour under test is the model's as much as ours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.conftest import Server
from tests.helpers import user

QWEN = "local/qwen2.5-coder-1.5b-instruct"
# Internal text: the decision's JSON, a chat template's call markup, a call written out.
LEAK = re.compile(
    r"""\{\s*"(tool|name|function)"\s*:|"arguments"\s*:|</?tool_(call|response)>"""
    r"""|\b(memory_search|memory_get|memory_save|web_fetch)\s*\(""",
    re.IGNORECASE,
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def qwen_config(gateway: bool) -> str:
    return f"""
[agent]
gateway_mode = {"true" if gateway else "false"}
[providers.local]
threads = 2
context_size = 4096
"""


@pytest.fixture(scope="module")
def qwen(servers: Callable[[str], Server]) -> Callable[[bool], Server]:
    return lambda gateway: servers(qwen_config(gateway))


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=300)


def test_a_fact_told_in_one_chat_is_answered_in_a_new_one(
    qwen: Callable[[bool], Server],
) -> None:
    server = qwen(False)
    api = client(server)
    told = api.chat.completions.create(
        model=QWEN,
        messages=user(
            "Remember that my dentist is Dr. Okafor and my next appointment is on 3 March."
        ),
        temperature=0,
    )
    said = told.choices[0].message.content or ""
    assert not LEAK.search(said), said
    memory = (server.home / "data" / "localgpt" / "workspace" / "MEMORY.md").read_text()
    assert "The user's dentist is Dr. Okafor" in memory
    # A new conversation, and no word of searching: the memory is recalled before it.
    asked = api.chat.completions.create(
        model=QWEN, messages=user("When is my dentist appointment?"), temperature=0
    )
    answer = (asked.choices[0].message.content or "").lower()
    assert re.search(r"\b3(rd)? march|march 3(rd)?\b", answer), answer
    assert not LEAK.search(answer), answer


def test_no_answer_holds_decision_text_under_any_max_tokens(
    qwen: Callable[[bool], Server],
) -> None:
    api = client(qwen(False))
    greetings = ["Hi", "Hello!", "Thanks, that's all.", "ok", "Good morning"]
    for limit in range(1, 51):
        resp = api.chat.completions.create(
            model=QWEN, messages=user(greetings[limit % len(greetings)]), max_tokens=limit
        )
        choice = resp.choices[0]
        text = choice.message.content or ""
        assert not LEAK.search(text), (limit, text)
        assert not choice.message.tool_calls
        assert choice.finish_reason in ("stop", "length")
        assert resp.usage is not None and resp.usage.completion_tokens <= limit, (limit, resp)


def _structured(api: openai.OpenAI) -> dict[str, Any]:
    """A JSON-schema answer, a JSON-object answer and a client tool's round trip."""
    found: dict[str, Any] = {}
    person = api.chat.completions.create(
        model=QWEN,
        messages=user("Ada Lovelace is 36 years old. Give her name and age."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": PERSON, "strict": True},
        },
        temperature=0,
    )
    found["person"] = json.loads(person.choices[0].message.content or "")
    city = api.chat.completions.create(
        model=QWEN,
        messages=user('Reply with a JSON object {"city": ..., "country": ...} for Paris.'),
        response_format={"type": "json_object"},
        temperature=0,
    )
    found["city"] = json.loads(city.choices[0].message.content or "")
    question = user("What's the weather in Paris right now?")
    call = api.chat.completions.create(
        model=QWEN, messages=question, tools=[WEATHER], temperature=0
    )
    calls = call.choices[0].message.tool_calls or []
    assert call.choices[0].finish_reason == "tool_calls" and len(calls) == 1
    found["call"] = (calls[0].function.name, json.loads(calls[0].function.arguments))
    after = api.chat.completions.create(
        model=QWEN,
        messages=[
            *question,
            call.choices[0].message.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"role": "tool", "tool_call_id": calls[0].id, "content": "18 C and sunny"},
        ],
        tools=[WEATHER],
        temperature=0,
    )
    answer = after.choices[0].message.content or ""
    assert after.choices[0].finish_reason == "stop" and not LEAK.search(answer), answer
    found["answer_has_result"] = "18" in answer
    return found


def test_structured_outputs_and_tool_calls_alike_in_both_modes(
    qwen: Callable[[bool], Server],
) -> None:
    gateway = _structured(client(qwen(True)))
    assistant = _structured(client(qwen(False)))
    for found in (gateway, assistant):
        assert "ada" in found["person"]["name"].lower() and found["person"]["age"] == 36
        assert found["city"]["city"] == "Paris" and "france" in found["city"]["country"].lower()
        assert found["call"][0] == "get_weather"
        assert "paris" in found["call"][1]["city"].lower()
        assert found["answer_has_result"]
    assert assistant == gateway
