"""The agent's parts in-process, on a scripted provider: the turn, the stash, the budget
and the tool loop, with no server, socket or model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from localgpt.agent.agent import Agent
from localgpt.agent.budget import TRIMMED, ToolBudget, check_context, estimate_tokens, fit
from localgpt.agent.events import AgentEvent, KeepAlive, ToolEnd, ToolStart
from localgpt.agent.loop import SessionHistory
from localgpt.agent.stash import ToolStash, stash_key
from localgpt.agent.tools import Permissions
from localgpt.agent.turn import Turn
from localgpt.config import Paths
from localgpt.memory.manager import Memory
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Finish, TextDelta, ToolCall, ToolCallDelta, Usage
from localgpt.providers.messages import ChatMessage
from tests.scripted import ScriptedProvider, calls, scripted_config, scripted_router, text

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


# --- the turn ------------------------------------------------------------------------------


def test_a_turn_keeps_server_calls_and_renumbers_the_clients() -> None:
    turn = Turn({"memory_get"})
    out: list[AgentEvent] = []
    out += turn.feed([TextDelta("Let me look. ")])
    out += turn.feed([ToolCallDelta(0, "", "call_s", "memory_get"), ToolCallDelta(0, '{"pa')])
    out += turn.feed([ToolCallDelta(1, "", "call_c", "get_weather"), ToolCallDelta(1, '{"ci')])
    out += turn.feed([ToolCallDelta(0, 'th": "x"}'), ToolCallDelta(1, 'ty": "Oslo"}')])
    out += turn.feed([Finish("tool_calls"), Usage(3, 4)])
    assert out == [
        TextDelta("Let me look. "),
        ToolCallDelta(0, "", "call_c", "get_weather"),  # the client's first call: index 0
        ToolCallDelta(0, '{"ci'),
        ToolCallDelta(0, 'ty": "Oslo"}'),
        Usage(3, 4),
    ]
    assert [c.name for c in turn.server] == ["memory_get"]
    assert turn.server[0].arguments == '{"path": "x"}'
    assert [c.id for c in turn.order] == ["call_s", "call_c"]
    assert turn.reason == "tool_calls"
    message = turn.message()
    assert message["content"] == "Let me look. "
    assert [c["id"] for c in message["tool_calls"]] == ["call_s", "call_c"]


def test_withdrawn_server_calls_leave_a_plain_answer() -> None:
    turn = Turn({"memory_get"})
    turn.feed([ToolCallDelta(0, "{}", "call_s", "memory_get"), Finish("stop")])
    turn.withdraw_server_calls()
    assert turn.server == [] and turn.order == [] and turn.reason == "stop"


# --- the stash -----------------------------------------------------------------------------


def test_the_stash_restores_only_for_the_same_caller_and_question() -> None:
    stash = ToolStash()
    shown: ChatMessage = {"role": "assistant", "content": "Done."}
    segment: list[ChatMessage] = [
        {"role": "assistant", "content": None, "tool_calls": []},
        {"role": "tool", "tool_call_id": "x", "content": "result"},
        shown,
    ]
    stash.put(stash_key("key:a", "save it", shown), segment)
    history: list[ChatMessage] = [{"role": "user", "content": "save it"}, shown]
    assert stash.restore(history, "key:a") == [history[0], *segment]
    assert stash.restore(history, "key:b") == history  # another caller
    other: list[ChatMessage] = [{"role": "user", "content": "something else"}, shown]
    assert stash.restore(other, "key:a") == other  # the same words, another conversation


def test_the_stash_forgets_after_its_ttl_and_beyond_its_size() -> None:
    stash = ToolStash(size=2, ttl=-1)
    stash.put("k", [])
    assert stash.get("k") is None
    stash = ToolStash(size=2)
    for key in ("a", "b", "c"):
        stash.put(key, [])
    assert stash.get("a") is None and stash.get("c") == []


# --- the budget ----------------------------------------------------------------------------


def test_the_context_is_fitted_by_trimming_the_oldest_results() -> None:
    transcript: list[ChatMessage] = [{"role": "user", "content": "read"}]
    for i in range(4):
        transcript += [
            {"role": "assistant", "content": None, "tool_calls": []},
            {"role": "tool", "tool_call_id": str(i), "content": "x" * 400},
        ]
    window = estimate_tokens(transcript) - 150
    fitted = fit(transcript, None, window, trim=True)
    assert fitted is not None and estimate_tokens(fitted) <= window
    results = [m["content"] for m in fitted if m["role"] == "tool"]
    assert results[:2] == [TRIMMED, TRIMMED] and results[-1] == "x" * 400
    assert fit(transcript, None, window, trim=False) is None
    assert fit(transcript, None, 10, trim=True) is None  # cannot fit at all
    with pytest.raises(ProviderError) as refused:
        check_context(transcript, None, 10)
    assert refused.value.code == "context_length_exceeded"


def test_the_tool_budget_caps_calls_and_bytes() -> None:
    budget = ToolBudget(per_turn=2, per_request=3, result_bytes=10, total_bytes=25)
    batch = [ToolCall(f"c{i}", "t", "{}") for i in range(4)]
    run, refused = budget.admit(batch)
    assert [c.id for c in run] == ["c0", "c1"] and [r.id for r in refused] == ["c2", "c3"]
    run, refused = budget.admit(batch[:2])
    assert [c.id for c in run] == ["c0"] and "made its 3 tool calls" in refused[0].output
    assert budget.clip("short") == "short"
    assert budget.clip("x" * 30).startswith("x" * 10 + "\n[... cut: 20 more bytes")
    assert budget.clip("y" * 30).startswith("y" * 10)
    assert "reached their limit of 25 bytes" in budget.clip("z")


# --- the loop ------------------------------------------------------------------------------


def _assistant(tmp_path: Path, provider: ScriptedProvider) -> tuple[Agent, Memory]:
    config = scripted_config(
        {"memory": {"workspace": str(tmp_path / "ws"), "embedding_provider": "none"}}
    )
    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "cache", tmp_path / "s")
    memory = Memory(config, paths)
    memory.workspace.ensure()
    (memory.workspace.root / "note.md").write_text("The boiler is serviced by Heatwise.\n")
    return Agent(config, scripted_router(config, provider), memory), memory


async def _drain(batches: Any) -> list[AgentEvent]:
    seen: list[AgentEvent] = []
    async for batch in batches:
        seen += batch
    return seen


def test_the_loop_runs_server_tools_and_answers(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        calls(("memory_get", {"path": "note.md"})), text("Heatwise", " it is.")
    )
    agent, memory = _assistant(tmp_path, provider)

    async def run() -> None:
        try:
            _, batches = await agent.open_stream(
                "scripted/model", [{"role": "user", "content": "who?"}], {}, recall=False
            )
            seen = await _drain(batches)
        finally:
            await memory.aclose()
        kinds = [type(e).__name__ for e in seen if not isinstance(e, Usage)]
        assert kinds[:3] == ["ToolStart", "KeepAlive", "ToolEnd"]
        assert [e.text for e in seen if isinstance(e, TextDelta)] == ["Heatwise", " it is."]
        assert seen[-1] == Finish("stop")
        assert sum(e.prompt_tokens for e in seen if isinstance(e, Usage)) == 20  # both calls
        second = provider.requests[1].messages
        assert second[-1]["role"] == "tool" and "Heatwise" in str(second[-1]["content"])
        assert second[-2]["tool_calls"][0]["function"]["name"] == "memory_get"

    asyncio.run(run())


def test_a_client_call_ends_the_loop_and_the_next_request_gets_the_server_turn_back(
    tmp_path: Path,
) -> None:
    provider = ScriptedProvider(
        calls(("memory_get", {"path": "note.md"}), ("get_weather", {"city": "Oslo"}),
              ids=["call_srv", "call_cli"]),
        text("It is sunny."),
    )  # fmt: skip
    agent, memory = _assistant(tmp_path, provider)
    question: list[ChatMessage] = [{"role": "user", "content": "weather and boiler?"}]

    async def run() -> None:
        try:
            _, batches = await agent.open_stream(
                "scripted/model", question, {"tools": [WEATHER]}, recall=False
            )
            seen = await _drain(batches)
            client_calls = [e for e in seen if isinstance(e, ToolCallDelta)]
            assert client_calls[0].index == 0 and client_calls[0].name == "get_weather"
            assert seen[-1] == Finish("tool_calls")
            follow_up: list[ChatMessage] = [
                *question,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_cli",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_cli", "content": "sunny"},
            ]
            _, batches = await agent.open_stream(
                "scripted/model", follow_up, {"tools": [WEATHER]}, recall=False
            )
            await _drain(batches)
        finally:
            await memory.aclose()
        sent = provider.requests[-1].messages
        restored = [c["id"] for m in sent for c in m.get("tool_calls") or ()]
        assert restored == ["call_srv", "call_cli"]  # the server's call is back in place
        assert any(m["role"] == "tool" and m.get("tool_call_id") == "call_srv" for m in sent)

    asyncio.run(run())


def test_a_session_history_records_the_whole_reply(tmp_path: Path) -> None:
    provider = ScriptedProvider(calls(("memory_get", {"path": "note.md"})), text("Done."))
    agent, memory = _assistant(tmp_path, provider)
    history = SessionHistory()

    async def run() -> None:
        try:
            _, batches = await agent.open_stream(
                "scripted/model",
                [{"role": "user", "content": "read"}],
                {},
                Permissions(),
                history=history,
                recall=False,
            )
            await _drain(batches)
        finally:
            await memory.aclose()

    asyncio.run(run())
    roles = [m["role"] for m in history.record]
    assert roles == ["assistant", "tool", "assistant"]
    assert history.record[-1]["content"] == "Done."


def test_tool_events_are_started_kept_alive_and_ended() -> None:
    start = ToolStart("c", "t", "{}")
    end = ToolEnd("c", "t", "out")
    assert (start.name, end.output, KeepAlive()) == ("t", "out", KeepAlive())
