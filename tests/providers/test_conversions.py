"""Property tests (hypothesis) of the translations every provider makes, and of the stream
normaliser that sits behind all of them."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localgpt.api.render.openai import ChatChunks
from localgpt.providers import anthropic, ollama
from localgpt.providers.errors import UnsupportedParameter
from localgpt.providers.events import Finish, StreamEvent, TextDelta, ToolCallDelta, Usage
from localgpt.providers.messages import text_of
from localgpt.providers.openai_format import parse_chunk

text = st.text(min_size=1, max_size=40)
call_ids = st.uuids().map(lambda u: f"call_{u.hex[:12]}")  # unique, as real call ids are
names = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)
arguments = st.dictionaries(names, st.one_of(st.integers(), text), max_size=3).map(json.dumps)
parts = st.lists(
    st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, text),
        st.builds(
            lambda d: {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{d}"}},
            st.from_regex(r"[A-Za-z0-9]{4,12}", fullmatch=True),
        ),
    ),
    min_size=1,
    max_size=3,
)


@st.composite
def conversations(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid OpenAI conversations: systems, users, assistant tool calls and their results."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append(
            {"role": draw(st.sampled_from(["system", "developer"])), "content": draw(text)}
        )
    for _ in range(draw(st.integers(1, 4))):
        messages.append({"role": "user", "content": draw(st.one_of(text, parts))})
        if draw(st.booleans()):
            ids = draw(st.lists(call_ids, min_size=1, max_size=3, unique=True))
            messages.append(
                {
                    "role": "assistant",
                    "content": draw(st.one_of(st.none(), text)),
                    "tool_calls": [
                        {
                            "id": i,
                            "type": "function",
                            "function": {"name": draw(names), "arguments": draw(arguments)},
                        }
                        for i in ids
                    ],
                }
            )
            messages += [{"role": "tool", "tool_call_id": i, "content": draw(text)} for i in ids]
        elif draw(st.booleans()):
            messages.append({"role": "assistant", "content": draw(text)})
    return messages


@given(conversations())
@settings(max_examples=200, deadline=None)
def test_anthropic_translation_keeps_every_turn_and_pairs_results(
    messages: list[dict[str, Any]],
) -> None:
    system, out = anthropic.convert_messages(messages)
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(out))
    seen_calls: set[str] = set()
    for message in out:
        for block in message["content"]:
            if block["type"] == "tool_use":
                seen_calls.add(block["id"])
            if block["type"] == "tool_result":
                assert block["tool_use_id"] in seen_calls
    joined = json.dumps(out)
    for message in messages:
        if message["role"] in ("system", "developer"):
            assert message["content"] in system
        elif message["role"] == "user":
            for chunk in [text_of(message["content"])] if text_of(message["content"]) else []:
                for piece in (
                    [p["text"] for p in message["content"] if p["type"] == "text"]
                    if isinstance(message["content"], list)
                    else [chunk]
                ):
                    assert json.dumps(piece)[1:-1] in joined


@given(conversations())
@settings(max_examples=200, deadline=None)
def test_ollama_translation_names_every_tool_result(messages: list[dict[str, Any]]) -> None:
    out = ollama.convert_messages(messages)
    assert len(out) == len(messages)
    called = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls", [])}
    for original, converted in zip(messages, out, strict=True):
        assert converted["role"] == (
            "system" if original["role"] == "developer" else original["role"]
        )
        if original["role"] == "tool":
            assert converted["tool_name"] == called[original["tool_call_id"]]
        if isinstance(original.get("content"), list):
            images = [p for p in original["content"] if p["type"] == "image_url"]
            assert len(converted.get("images", [])) == len(images)
        for call in converted.get("tool_calls", []):
            assert isinstance(call["function"]["arguments"], dict)


@given(st.text(max_size=30).filter(lambda s: s.strip() and not s.strip().startswith("{")))
def test_invalid_tool_arguments_are_refused_by_name(bad: str) -> None:
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": bad}}
            ],
        },
    ]
    for convert in (anthropic.convert_messages, ollama.convert_messages):
        try:
            convert(messages)
        except UnsupportedParameter as exc:
            assert exc.param == "messages[1].tool_calls[0].function.arguments"
        else:
            raise AssertionError(f"{bad!r} was accepted")


events = st.one_of(
    st.builds(TextDelta, text, st.integers(0, 1)),
    st.builds(
        lambda i, a, fresh, c: ToolCallDelta(
            i, a, f"call_{i}" if fresh else None, f"tool{i}" if fresh else None, c
        ),
        st.integers(0, 2),
        st.text(max_size=8),
        st.booleans(),
        st.integers(0, 1),
    ),
    st.builds(Finish, st.sampled_from(["stop", "length", "tool_calls"]), st.integers(0, 1)),
    st.builds(Usage, st.integers(0, 99), st.integers(0, 99)),
)


@given(st.lists(st.lists(events, max_size=5), max_size=8), st.booleans())
@settings(max_examples=300, deadline=None)
def test_any_event_sequence_renders_a_valid_openai_stream(
    batches: list[list[StreamEvent]], include_usage: bool
) -> None:
    renderer = ChatChunks("m", include_usage)
    raw = b"".join(renderer.render(batch) for batch in batches) + renderer.end()
    data = [line[6:] for line in raw.decode().split("\n\n") if line]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    by_choice: dict[int, list[dict[str, Any]]] = {}
    for chunk in chunks:
        assert chunk["object"] == "chat.completion.chunk"
        assert ("usage" in chunk) == include_usage
        for choice in chunk["choices"]:
            by_choice.setdefault(choice["index"], []).append(choice)
    usage_chunks = [c for c in chunks if not c["choices"]]
    assert len(usage_chunks) == (1 if include_usage else 0)
    for choices in by_choice.values():
        assert choices[0]["delta"] == {"role": "assistant", "content": ""}
        finishes = [c["finish_reason"] for c in choices if c["finish_reason"]]
        assert len(finishes) == 1 and choices[-1]["finish_reason"] == finishes[0]
        started: set[int] = set()
        for choice in choices:
            for call in choice["delta"].get("tool_calls", []):
                if call["index"] not in started:
                    assert {"id", "type", "function"} <= set(call)
                    assert call["function"]["arguments"] == ""
                    started.add(call["index"])
                else:
                    assert set(call) == {"index", "function"}
        if started:
            assert finishes[0] in ("tool_calls", "length")


@given(
    st.dictionaries(
        st.sampled_from(["choices", "usage", "error", "id"]),
        st.one_of(
            st.none(),
            st.integers(),
            st.lists(
                st.dictionaries(
                    st.sampled_from(["index", "delta", "finish_reason"]),
                    st.one_of(
                        st.none(),
                        st.integers(),
                        text,
                        st.dictionaries(st.sampled_from(["content"]), text),
                    ),
                )
            ),
        ),
    )
)
def test_parsing_odd_upstream_chunks_never_crashes_uncontrolled(chunk: dict[str, Any]) -> None:
    try:
        parse_chunk(chunk)
    except (TypeError, AttributeError, KeyError, ValueError):
        pass  # the provider turns these into a clean 502; anything else would be a bug


decision = st.one_of(
    st.builds(
        lambda n, a: {"tool": n, "arguments": a},
        names,
        st.dictionaries(names, st.one_of(text, st.integers(), st.lists(text)), max_size=3),
    ),
    st.lists(
        st.builds(
            lambda n, a: {"tool": n, "arguments": a},
            names,
            st.dictionaries(names, text, max_size=2),
        ),
        min_size=2,
        max_size=3,
    ),
    st.just({"tool": "none"}),
)


@given(decision, st.lists(st.integers(1, 7), min_size=1, max_size=40), st.booleans())
@settings(max_examples=300, deadline=None)
def test_a_streamed_decision_yields_exactly_its_calls(
    value: Any, cuts: list[int], spaced: bool
) -> None:
    """However the model's decision is split into tokens, the streamed argument pieces join
    into exactly the arguments of the final decision."""
    from localgpt.providers.local.decisions import CallStream

    raw = json.dumps(value, indent=2 if spaced else None, ensure_ascii=False)
    stream = CallStream()
    names_seen: dict[int, str] = {}
    pieces: dict[int, str] = {}
    position = 0
    turn = 0
    while position < len(raw):
        cut = cuts[turn % len(cuts)]
        turn += 1
        for index, name, args in stream.feed(raw[position : position + cut]):
            if name is not None:
                assert index not in names_seen
                names_seen[index] = name
            pieces[index] = pieces.get(index, "") + args
        position += cut
    calls = stream.calls()
    expected = [v for v in (value if isinstance(value, list) else [value]) if v["tool"] != "none"]
    assert [n for n, _ in calls] == [v["tool"] for v in expected]
    assert [names_seen[i] for i in sorted(names_seen)] == [v["tool"] for v in expected]
    for i, (_, arguments) in enumerate(calls):
        assert json.loads(arguments) == expected[i]["arguments"]
        assert pieces[i] == arguments


def test_a_tool_message_may_carry_the_functions_name() -> None:
    # OpenAI's own examples send it; it repeats what tool_call_id already says.
    messages = [
        {"role": "user", "content": "x"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "name": "f", "content": "done"},
    ]
    _system, converted = anthropic.convert_messages(messages)
    assert converted[-1]["content"][0]["tool_use_id"] == "c1"
    assert ollama.convert_messages(messages)[-1]["tool_name"] == "f"


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:11434/v1", True),
        ("http://localhost:8080/v1", True),
        ("http://192.168.1.20:8000/v1", True),
        ("http://ollama:11434/v1", True),
        ("http://gpu-box.local:8000/v1", True),
        ("http://[::1]:8000/v1", True),
        ("https://api.openai.com/v1", False),
        ("https://my-resource.openai.azure.com/openai", False),
        ("https://openrouter.ai/api/v1", False),
        ("https://8.8.8.8/v1", False),
    ],
)
def test_max_tokens_is_mirrored_only_to_servers_nearby(url: str, local: bool) -> None:
    from localgpt.providers.openai import is_local_server

    assert is_local_server(url) is local
