"""The tool loop: the model's turns, the server's tools between them, until an answer.

- a model turn that calls only server tools: they run here, their results go back to the
  model, and the loop goes on; the client sees only the text, and keep-alives meanwhile;
- a turn that calls client tools, alone or with server tools: the server tools run, and the
  client gets its calls with ``finish_reason: "tool_calls"``;
- usage is summed over every model call of the loop.

What the reply adds to the conversation (the server's calls and results, and the answer)
goes to a ``History``: kept in the stash for a client that owns its history, appended to a
stored session otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from localgpt.agent.budget import ToolBudget, fit
from localgpt.agent.events import (
    AgentBatches,
    AgentEvent,
    KeepAlive,
    ToolEnd,
    ToolStart,
    tool_message,
)
from localgpt.agent.stash import Found, Stash, last_question, splice, stash_key
from localgpt.agent.tools import Toolbox, ToolError
from localgpt.agent.turn import Turn
from localgpt.config import Config
from localgpt.providers.base import ChatRequest, EventBatches
from localgpt.providers.events import Finish, ToolCall
from localgpt.providers.messages import ChatMessage, ChatParams, FunctionCallDict, text_of
from localgpt.providers.router import Route, Router
from localgpt.providers.stops import StopWatch

log = logging.getLogger("localgpt.agent")
MAX_TURNS = 8


class History(Protocol):
    """Who owns the conversation, and so where the server's part of a reply is kept."""

    async def load(self, messages: list[ChatMessage]) -> None:
        """Look up what ``restore`` will need (in Redis, for a shared stash)."""
        ...

    def restore(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The conversation as the model had it."""
        ...

    def keep(self, segment: list[ChatMessage], shown: ChatMessage, asked: Any) -> None:
        """Keep what a reply added (``segment``), which the client sees as ``shown``."""
        ...

    async def flush(self) -> None:
        """Make what ``keep`` kept available to the next request, wherever it lands."""
        ...


class ClientHistory:
    """The client owns the history (Chat Completions): the server tool turns it cannot hold
    are kept in the stash, for this caller, and put back in its next request."""

    def __init__(self, stash: Stash, caller: str | None) -> None:
        self.stash = stash
        self.caller = caller
        self._found: Found = {}
        self._pending: list[tuple[str, list[ChatMessage]]] = []

    async def load(self, messages: list[ChatMessage]) -> None:
        self._found = await self.stash.fetch(messages, self.caller)

    def restore(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        return splice(messages, self.caller, self._found)

    def keep(self, segment: list[ChatMessage], shown: ChatMessage, asked: Any) -> None:
        if len(segment) > 1:  # server tools ran: the client's history will lack them
            self._pending.append((stash_key(self.caller, asked, shown), segment))

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        for key, segment in pending:
            await self.stash.store(key, segment)


class SessionHistory:
    """The server owns the history (native sessions): a reply's messages are appended to
    ``record``, which the session saves once the reply is complete."""

    def __init__(self) -> None:
        self.record: list[ChatMessage] = []

    async def load(self, messages: list[ChatMessage]) -> None:
        pass

    def restore(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        return messages

    def keep(self, segment: list[ChatMessage], shown: ChatMessage, asked: Any) -> None:
        self.record += segment

    async def flush(self) -> None:
        pass


class ToolLoop:
    def __init__(
        self,
        config: Config,
        router: Router,
        toolbox: Toolbox | None,
        server_tools: set[str],
        history: History,
        stops: StopWatch | None = None,
    ) -> None:
        self.config = config
        self.router = router
        self.toolbox = toolbox
        self.server_tools = server_tools
        self.history = history
        self.stops = stops

    async def run(
        self,
        route: Route,
        stream: EventBatches,
        transcript: list[ChatMessage],
        params: ChatParams,
    ) -> AgentBatches:
        added: list[ChatMessage] = []  # what the server added to the client's history
        repeats: dict[tuple[str, str], int] = {}
        errors: dict[str, int] = {}
        budget = ToolBudget.of(self.config)
        window = self.router.context_window(route.id)
        asked = last_question(transcript)
        for turn_number in range(MAX_TURNS + 1):
            turn = Turn(self.server_tools)
            try:
                async for batch in stream:
                    out = turn.feed(batch)
                    if out:
                        yield out
            finally:
                await stream.aclose()
            if turn.server and turn_number >= MAX_TURNS:
                turn.withdraw_server_calls()  # tools were withdrawn for this last call
            if not turn.server:
                self._keep([*added, turn.message()], turn, asked)
                await self.history.flush()
                yield [Finish("tool_calls" if turn.client else turn.reason)]
                return
            assistant = turn.message()
            calls = list(turn.server)
            run, refused = budget.admit(calls)
            starts: list[AgentEvent] = [ToolStart(c.id, c.name, c.arguments) for c in calls]
            yield [*starts, KeepAlive(), *refused]
            outputs = {done.id: done.output for done in refused}
            async for done in self._run_tools(run, repeats, errors):
                if isinstance(done, ToolEnd):
                    done.output = budget.clip(done.output)
                    outputs[done.id] = done.output
                yield [done]
            results = [tool_message(c.id, outputs[c.id]) for c in calls]
            added += [assistant, *results]
            if turn.client:
                self._keep(added, turn, asked)
                await self.history.flush()
                yield [Finish("tool_calls")]
                return
            transcript = [*transcript, assistant, *results]
            next_params = self._next_params(params, errors, turn_number)
            trim = self.config.agent.context_overflow == "trim"
            fitted = fit(transcript, next_params.get("tools"), window, trim)
            if fitted is None:
                # The results do not fit the model's context: end the reply here, as cut.
                self._keep(added, turn, asked)
                await self.history.flush()
                yield [Finish("length")]
                return
            transcript = fitted
            stream = await self.router.stream_on(
                route, ChatRequest(route.model, transcript, next_params, self.stops)
            )

    def _next_params(
        self, params: ChatParams, errors: dict[str, int], turn_number: int
    ) -> ChatParams:
        """The next call's parameters: tools that kept failing are withdrawn, and all tools
        for the last allowed call, which must answer."""
        limit = self.config.agent.max_tool_errors
        blocked = {name for name, count in errors.items() if count >= limit}
        tools = [t for t in params.get("tools", []) if t["function"]["name"] not in blocked]
        if turn_number + 1 >= MAX_TURNS or not tools:
            out: ChatParams = {**params}
            out.pop("tools", None)
            out.pop("tool_choice", None)
            out.pop("parallel_tool_calls", None)
            return out
        return {**params, "tools": tools}

    def _keep(self, segment: list[ChatMessage], turn: Turn, asked: Any) -> None:
        """Hand the reply's messages to the history, with the message the client saw: its
        first call, or all the text of the reply."""
        shown: ChatMessage = {"role": "assistant"}
        if turn.client:
            first = turn.client[0]
            function: FunctionCallDict = {"name": first.name, "arguments": first.arguments}
            shown["tool_calls"] = [{"id": first.id, "type": "function", "function": function}]
        else:
            shown["content"] = "".join(
                text_of(m.get("content")) for m in segment if m["role"] == "assistant"
            )
        self.history.keep(segment, shown, asked)

    async def _run_tools(
        self,
        calls: list[ToolCall],
        repeats: dict[tuple[str, str], int],
        errors: dict[str, int],
    ) -> AsyncGenerator[AgentEvent, None]:
        """Run one turn's server calls at once; keep-alives flow while they take long."""
        limits = self.config.agent
        toolbox = self.toolbox
        assert toolbox is not None

        async def one(call: ToolCall) -> ToolEnd:
            key = (call.name, call.arguments)
            repeats[key] = repeats.get(key, 0) + 1
            if repeats[key] > limits.max_tool_repeats:
                return ToolEnd(
                    call.id,
                    call.name,
                    "Blocked: this exact call already ran "
                    f"{limits.max_tool_repeats} times; use its earlier results.",
                    True,
                )
            if errors.get(call.name, 0) >= limits.max_tool_errors:
                return ToolEnd(
                    call.id,
                    call.name,
                    f"Blocked: {call.name} failed {limits.max_tool_errors} times in a row.",
                    True,
                )
            try:
                output = await toolbox.run(call.name, call.arguments)
            except ToolError as exc:
                errors[call.name] = errors.get(call.name, 0) + 1
                return ToolEnd(call.id, call.name, f"Error: {exc}", True)
            except Exception as exc:
                # A failing disk or an odd file is the tool's failure, not the request's: the
                # model hears of it and may try another way.
                log.exception("tool %s failed", call.name)
                errors[call.name] = errors.get(call.name, 0) + 1
                return ToolEnd(call.id, call.name, f"Error: {type(exc).__name__}: {exc}", True)
            errors[call.name] = 0
            return ToolEnd(call.id, call.name, output)

        tasks = [asyncio.ensure_future(one(c)) for c in calls]
        try:
            pending = set(tasks)
            while pending:
                _done, pending = await asyncio.wait(
                    pending, timeout=self.config.server.keepalive_interval
                )
                if pending:
                    yield KeepAlive()
            for task in tasks:
                yield task.result()
        finally:
            for task in tasks:
                task.cancel()
