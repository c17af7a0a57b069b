"""The assistant layer between the API and the providers.

Every request gets LocalGPT's system prompt first (identity, safety, tools, then the
workspace context); the client's own system messages follow it. With a memory, the assistant
also offers its server tools next to the client's tools and runs the tool loop:

- a model turn that calls only server tools: they run here, their results go back to the
  model, and the loop continues; the client sees only the text and keep-alives meanwhile;
- a turn that calls client tools, alone or with server tools: the server tools run, and the
  client gets its calls with ``finish_reason: "tool_calls"``. The server calls and results of
  the whole request are kept (``ToolStash``) under the client's call ids and, when the client
  sends its results back, put back in place, so the model never loses what its own tools
  found; the same holds for a plain text answer that followed server tools;
- usage is summed over every model call of the loop.

In gateway mode it passes requests through untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from localgpt.agent.events import AgentEvent, KeepAlive, ToolEnd, ToolStart, tool_message
from localgpt.agent.prompt import system_prompt
from localgpt.agent.recall import MemoryTurn, last_user, memory_turn
from localgpt.agent.tools import Permissions, Toolbox, ToolError
from localgpt.config import Config
from localgpt.memory.manager import Memory
from localgpt.providers.base import (
    ChatRequest,
    Completion,
    Finish,
    ProviderError,
    TextDelta,
    TextRequest,
    ToolCall,
    ToolCallDelta,
    collect,
    text_of,
)
from localgpt.providers.router import EventBatches, Route, Router

log = logging.getLogger("localgpt.agent")
AgentBatches = AsyncGenerator[Sequence[AgentEvent], None]
MAX_TURNS = 8
KEEPALIVE_SECONDS = 5.0
TRIMMED = "[Removed: this result no longer fits the model's context.]"


class ToolStash:
    """Server tool calls and results of finished requests, to put back into the next one."""

    def __init__(self, size: int = 1024, ttl: float = 6 * 3600) -> None:
        self._items: OrderedDict[str, tuple[float, list[dict[str, Any]]]] = OrderedDict()
        self._size = size
        self._ttl = ttl

    def put(self, key: str, messages: list[dict[str, Any]]) -> None:
        self._items[key] = (time.monotonic() + self._ttl, messages)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, key: str) -> list[dict[str, Any]] | None:
        found = self._items.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def restore(
        self, messages: list[dict[str, Any]], caller: str | None = None
    ) -> list[dict[str, Any]]:
        """Replace each assistant message the stash knows, for this caller, with the full
        turn(s) it stood for."""
        if not self._items:
            return messages
        out: list[dict[str, Any]] = []
        asked: Any = None
        for message in messages:
            segment = None
            if message.get("role") == "user":
                asked = message.get("content")
            elif message.get("role") == "assistant":
                segment = self.get(stash_key(caller, asked, message))
            out.extend(segment if segment is not None else [message])
        return out


def stash_key(caller: str | None, asked: Any, message: dict[str, Any]) -> str:
    """Where the server turns behind an assistant message are kept: its first tool call's
    id, or its text, with the question it answered and the caller who asked. A call id is
    the client's to choose (it reused ``call_1`` in another key's request), and the same
    words end many conversations ("Done."): neither alone may put one caller's or one
    conversation's tool results into another's."""
    calls = message.get("tool_calls") or ()
    anchor = f"call:{calls[0]['id']}" if calls else f"text:{_plain_text(message.get('content'))}"
    text = json.dumps([caller or "", _plain_text(asked), anchor])
    return hashlib.sha256(text.encode()).hexdigest()


def _plain_text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content)


def last_question(messages: list[dict[str, Any]]) -> Any:
    return next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), None)


@dataclass
class Turn:
    """What one model call produced, as far as the loop is concerned.

    Calls are keyed by the provider's index. Client calls end the loop, so they only occur
    in the last turn and are numbered from 0 for the client, in the order they came.
    """

    text: list[str] = field(default_factory=list)
    server: dict[int, ToolCall] = field(default_factory=dict)
    client: dict[int, ToolCall] = field(default_factory=dict)
    order: list[tuple[bool, int]] = field(default_factory=list)  # (is server call, index)
    reason: str = "stop"

    def route(self, event: AgentEvent, server_tools: set[str], out: list[AgentEvent]) -> None:
        """Sort one provider event: server tool calls stay here, the rest goes on."""
        if isinstance(event, TextDelta):
            self.text.append(event.text)
            out.append(event)
        elif isinstance(event, ToolCallDelta):
            self._call(event, server_tools, out)
        elif isinstance(event, Finish):
            self.reason = event.reason
        else:
            out.append(event)

    def _call(self, event: ToolCallDelta, server_tools: set[str], out: list[AgentEvent]) -> None:
        i = event.index
        if i in self.server:
            self.server[i].arguments += event.arguments
            return
        first = i not in self.client
        if first:
            call = ToolCall(event.id or _call_id(), event.name or "", "")
            if call.name in server_tools:
                call.arguments = event.arguments
                self.server[i] = call
                self.order.append((True, i))
                return
            self.client[i] = call
            self.order.append((False, i))
        call = self.client[i]
        call.arguments += event.arguments
        out.append(
            ToolCallDelta(
                list(self.client).index(i),
                event.arguments,
                call.id if first else None,
                call.name if first else None,
                event.choice,
            )
        )


@dataclass
class ToolBudget:
    """What server tools may do in one request: calls per model turn and in all, bytes of
    one result and of all of them. A request that asked for 800 fetches, or read a file 50
    times a turn, met no limit before these."""

    per_turn: int
    per_request: int
    result_bytes: int
    total_bytes: int
    calls: int = 0
    sent: int = 0  # bytes of results given to the model so far

    @classmethod
    def of(cls, config: Config) -> ToolBudget:
        agent, tools = config.agent, config.tools
        return cls(
            agent.max_tool_calls_per_turn,
            agent.max_tool_calls,
            tools.max_result_bytes,
            tools.max_results_bytes,
        )

    def admit(self, calls: list[ToolCall]) -> tuple[list[ToolCall], list[ToolEnd]]:
        """The calls to run, and answers for those that will not run."""
        run: list[ToolCall] = []
        refused: list[ToolEnd] = []
        for i, call in enumerate(calls):
            if i >= self.per_turn:
                why = f"at most {self.per_turn} tool calls are run per turn; make fewer at once"
            elif self.calls >= self.per_request:
                why = f"this request has made its {self.per_request} tool calls; answer now"
            else:
                self.calls += 1
                run.append(call)
                continue
            refused.append(ToolEnd(call.id, call.name, f"Not run: {why}.", True))
        return run, refused

    def clip(self, output: str) -> str:
        """The result within the per-result and per-request byte limits, with a note."""
        data = output.encode()
        room = min(self.result_bytes, self.total_bytes - self.sent)
        if room <= 0:
            return (
                "[Not shown: this request's tool results reached their limit of "
                f"{self.total_bytes} bytes.]"
            )
        if len(data) <= room:
            self.sent += len(data)
            return output
        kept = data[:room].decode(errors="ignore")
        self.sent += room
        return f"{kept}\n[... cut: {len(data) - room} more bytes not shown]"


class Agent:
    def __init__(self, config: Config, router: Router, memory: Memory | None = None) -> None:
        self.config = config
        self.router = router
        self.memory = memory
        self.gateway = config.agent.gateway_mode
        self.stash = ToolStash()
        self._identity = system_prompt()

    # --- prompt -----------------------------------------------------------------------

    def system_message(self, toolbox: Toolbox | None) -> dict[str, Any]:
        """Identity and safety first (stable), then tools and workspace (stable-ish)."""
        parts = [self._identity]
        if self.memory is not None:
            parts.append(
                "Your memory is a workspace of markdown notes about the user; notes that "
                "match a message are shown before it."
            )
            context = self.memory.context()
            if context:
                parts.append("Workspace context:\n" + context)
        return {"role": "system", "content": "\n\n".join(parts)}

    def prepare(
        self,
        messages: list[dict[str, Any]],
        toolbox: Toolbox | None = None,
        restore: bool = True,
        assistant: bool = True,
        caller: str | None = None,
    ) -> list[dict[str, Any]]:
        """The messages a provider sees: ours first, then the client's, system included.

        ``restore`` puts back server tool turns the client's history cannot hold (native
        sessions keep them themselves). Without ``assistant`` (gateway mode, or a
        gateway-scoped key) the client's messages pass untouched.
        """
        if self.gateway or not assistant:
            return messages
        history = self.stash.restore(messages, caller) if restore else messages
        return [self.system_message(toolbox), *history]

    async def warm_up(self) -> None:
        """Load the embedded model, and on it evaluate the assistant's prompt once.

        A CPU evaluates a prompt at some 50 tokens a second, so the system prompt, the tool
        listing and the workspace context cost the first request many seconds. Evaluated
        here, at start-up, they sit in llama.cpp's prompt cache and the first question is
        answered as fast as the next. No tool runs: the provider is called directly.
        """
        await self.router.warm_up()
        if self.config.default_is_implicit_local:
            return
        model = self.config.default_model
        try:
            route = self.router.resolve(model)
        except ProviderError:
            return
        config = self.router.configured(route.provider)
        if self.gateway or config is None or config.type != "local":
            return
        hello = [{"role": "user", "content": "Hello."}]
        toolbox = self.toolbox(Permissions(), {})
        if toolbox is not None:  # as a first question would find it
            toolbox = toolbox.only(
                set(toolbox.handlers) - self._withheld(model, MemoryTurn(), hello)
            )
        params: dict[str, Any] = {"max_tokens": 1}
        if toolbox is not None and toolbox.definitions:
            params["tools"] = toolbox.definitions
        messages = self.prepare(hello, toolbox)
        provider = self.router.provider(route.provider)
        try:
            await collect(provider.stream(ChatRequest(route.model, messages, params)))
        except ProviderError as exc:
            log.warning("could not warm the prompt cache: %s", exc.message)

    def toolbox(self, permissions: Permissions, params: dict[str, Any]) -> Toolbox | None:
        """Server tools for this request, unless the client steers tool use itself, or
        wants its answer as JSON: a structured answer is for the client's schema alone, and
        a small model offered tools besides fills the schema with tool names."""
        if self.gateway or not permissions.assistant or self.memory is None:
            return None
        if params.get("n", 1) != 1:
            return None
        if params.get("tool_choice") not in (None, "auto"):
            return None
        if (params.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
            return None
        return Toolbox(self.config, self.memory, permissions)

    def _withheld(self, model: str, turn: MemoryTurn, messages: list[dict[str, Any]]) -> set[str]:
        """Server tools not offered in this turn.

        The fact the user asked to remember is saved already: not memory_save. And a small
        model whose tool calls are decided under a grammar gets only the tools the turn gives
        a reason for: web_fetch when the user's message holds a web address. Measured on
        Qwen2.5-Coder-1.5B, offered memory_search or memory_get it called one on nearly every
        question (re-reading the notes the recall had just shown, or searching its notes for
        "the capital of France" and then refusing to answer); without them, it called
        web_fetch on made-up addresses instead. The recall and the saving of what the user
        asks to remember do the memory tools' work for it.
        """
        withheld = {"memory_save"} if turn.remembered is not None else set()
        if self.router.decides_tools_by_grammar(model):
            withheld |= {"memory_search", "memory_get", "memory_save", "bash", "write_file"}
            at = last_user(messages)
            text = text_of(messages[at].get("content")) if at is not None else ""
            if not WEB_ADDRESS.search(text):
                withheld.add("web_fetch")
        return withheld

    async def memory_turn(
        self, messages: list[dict[str, Any]], permissions: Permissions
    ) -> MemoryTurn:
        """The memory's part in this turn (see ``agent.recall``); none in gateway mode or for
        a caller that gets a plain proxy."""
        if self.gateway or not permissions.assistant or self.memory is None:
            return MemoryTurn()
        return await memory_turn(
            self.memory, self.config.memory, messages, permissions.write_memory
        )

    def _client_view(
        self, exc: ProviderError, assistant: bool, turn: MemoryTurn | None = None
    ) -> ProviderError:
        """Point a ``messages[i]`` parameter at the client's message, not the shifted one:
        our system message comes first, and the memory's messages sit among the client's."""
        match = _MESSAGE_PARAM.match(exc.param or "")
        if self.gateway or not assistant or not match:
            return exc
        index = int(match.group(1))
        ours = [0, *(i for i in (turn.inserted if turn is not None else ()))]
        if index not in ours:
            exc.param = f"messages[{index - sum(i < index for i in ours)}]{match.group(2)}"
        return exc

    # --- the two entry points ---------------------------------------------------------

    async def complete(
        self,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        permissions: Permissions | None = None,
    ) -> tuple[Route, Completion]:
        permissions = permissions or Permissions()
        toolbox = self.toolbox(permissions, params)
        if toolbox is None:
            assistant = permissions.assistant
            turn = await self.memory_turn(messages, permissions)
            prepared = turn.apply(
                self.prepare(messages, assistant=assistant, caller=permissions.caller)
            )
            request = ChatRequest(model, prepared, params)
            try:
                return await self.router.complete(model, request)
            except ProviderError as exc:
                raise self._client_view(exc, assistant, turn) from None
        route, batches = await self.open_stream(model, messages, params, permissions)
        return route, await collect(batches)

    async def open_stream(
        self,
        model: str,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
        permissions: Permissions | None = None,
        record: list[dict[str, Any]] | None = None,
        toolbox: Toolbox | None = None,
        recall: bool = True,
    ) -> tuple[Route, AgentBatches]:
        """Start a reply. With ``record``, the messages the reply adds to the history (server
        tool turns and the final answer) are appended to it instead of being stashed.
        ``recall`` lets the memory take its part (``memory_turn``)."""
        permissions = permissions or Permissions()
        turn = await self.memory_turn(messages, permissions) if recall else MemoryTurn()
        if toolbox is None:
            toolbox = self.toolbox(permissions, params)
            if toolbox is not None:
                toolbox = toolbox.only(
                    set(toolbox.handlers) - self._withheld(model, turn, messages)
                )
                if not toolbox.handlers:
                    toolbox = None
        prepared = turn.apply(
            self.prepare(
                messages, toolbox, record is None, permissions.assistant, permissions.caller
            )
        )
        check_context(prepared, params, self.router.context_window(model))
        client_tools: list[dict[str, Any]] = params.get("tools") or []
        shadowed = {t["function"]["name"] for t in client_tools}  # the client's own win
        if toolbox is not None:
            params = {**params, "tools": [*toolbox.without(shadowed), *client_tools]}
        try:
            route, stream = await self.router.open_stream(
                model, ChatRequest(model, prepared, params)
            )
        except ProviderError as exc:
            raise self._client_view(exc, permissions.assistant, turn) from None
        if toolbox is None:
            if record is None:
                return route, stream
            return route, _recorded(stream, record)
        server_tools = set(toolbox.handlers) - shadowed
        return route, self._loop(
            route, stream, prepared, params, toolbox, server_tools, record, permissions.caller
        )

    async def open_text_stream(
        self, model: str, prompt: str | list[Any], params: dict[str, Any]
    ) -> tuple[Route, EventBatches]:
        """A legacy text completion: raw text in, raw text out, no assistant prompt."""
        request = TextRequest(model, prompt, params)
        return await self.router.open_stream(model, request, "stream_text")

    # --- the tool loop ----------------------------------------------------------------

    async def _loop(
        self,
        route: Route,
        stream: EventBatches,
        transcript: list[dict[str, Any]],
        params: dict[str, Any],
        toolbox: Toolbox,
        server_tools: set[str],
        record: list[dict[str, Any]] | None,
        caller: str | None,
    ) -> AgentBatches:
        added: list[dict[str, Any]] = []  # what the server added to the client's history
        repeats: dict[tuple[str, str], int] = {}
        errors: dict[str, int] = {}
        budget = ToolBudget.of(self.config)
        window = self.router.context_window(route.id)
        for turn_number in range(MAX_TURNS + 1):
            turn = Turn()
            try:
                async for batch in stream:
                    out: list[AgentEvent] = []
                    for event in batch:
                        turn.route(event, server_tools, out)
                    if out:
                        yield out
            finally:
                await stream.aclose()
            if turn.server and turn_number >= MAX_TURNS:
                # Tools were withdrawn for this last call; calls written anyway are not run.
                turn.order = [(server, i) for server, i in turn.order if not server]
                turn.server = {}
                if turn.reason == "tool_calls" and not turn.client:
                    turn.reason = "stop"
            if not turn.server:
                segment = [*added, self._assistant_message(turn)]
                if record is not None:
                    record += segment
                elif added:  # server tools ran: the client's history will lack them
                    self._stash(turn, segment, last_question(transcript), caller)
                yield [Finish("tool_calls" if turn.client else turn.reason)]
                return
            assistant = self._assistant_message(turn)
            calls = list(turn.server.values())
            run, refused = budget.admit(calls)
            starts: list[AgentEvent] = [ToolStart(c.id, c.name, c.arguments) for c in calls]
            yield [*starts, KeepAlive(), *refused]
            outputs = {done.id: done.output for done in refused}
            async for done in self._run_tools(toolbox, run, repeats, errors):
                if isinstance(done, ToolEnd):
                    done.output = budget.clip(done.output)
                    outputs[done.id] = done.output
                yield [done]
            results = [tool_message(c.id, outputs[c.id]) for c in calls]
            added += [assistant, *results]
            if turn.client:
                if record is not None:
                    record += added
                else:
                    self._stash(turn, added, last_question(transcript), caller)
                yield [Finish("tool_calls")]
                return
            transcript = [*transcript, assistant, *results]
            blocked = {
                name for name, count in errors.items() if count >= self.config.agent.max_tool_errors
            }
            next_params = {
                **params,
                "tools": [t for t in params["tools"] if t["function"]["name"] not in blocked],
            }
            if turn_number + 1 >= MAX_TURNS or not next_params["tools"]:
                next_params = {
                    k: v
                    for k, v in params.items()
                    if k not in ("tools", "tool_choice", "parallel_tool_calls")
                }
            fitted = self._fit(transcript, next_params.get("tools"), window)
            if fitted is None:
                # The results do not fit the model's context: end the reply here, as cut.
                if record is not None:
                    record += added
                else:
                    self._stash(turn, added, last_question(transcript), caller)
                yield [Finish("length")]
                return
            transcript = fitted
            stream = await self.router.stream_on(
                route, ChatRequest(route.model, transcript, next_params)
            )

    def _fit(
        self, transcript: list[dict[str, Any]], tools: Any, window: int | None
    ) -> list[dict[str, Any]] | None:
        """The transcript for the next model call, within the model's context: checked
        before every call, not only the first. ``[agent] context_overflow = "trim"``
        replaces the oldest tool results by a note until it fits; None when it cannot fit
        (or with "stop")."""
        if window is None or estimate_tokens(transcript, tools) <= window:
            return transcript
        if self.config.agent.context_overflow == "stop":
            return None
        fitted = list(transcript)
        for i, message in enumerate(fitted):
            if message.get("role") != "tool" or message.get("content") == TRIMMED:
                continue
            fitted[i] = {**message, "content": TRIMMED}
            if estimate_tokens(fitted, tools) <= window:
                return fitted
        return None

    @staticmethod
    def _assistant_message(turn: Turn) -> dict[str, Any]:
        calls = [turn.server[i] if server else turn.client[i] for server, i in turn.order]
        return {
            "role": "assistant",
            "content": "".join(turn.text) or None,
            "tool_calls": [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments or "{}"},
                }
                for c in calls
            ],
        }

    def _stash(
        self, turn: Turn, segment: list[dict[str, Any]], asked: Any, caller: str | None
    ) -> None:
        """Keep the messages that stand for the client's last assistant message, under the
        key its next request will carry (``stash_key``)."""
        if turn.client:
            shown: dict[str, Any] = {"tool_calls": [{"id": next(iter(turn.client.values())).id}]}
        else:
            text = "".join(m.get("content") or "" for m in segment if m["role"] == "assistant")
            shown = {"content": text}
        self.stash.put(stash_key(caller, asked, shown), segment)

    async def _run_tools(
        self,
        toolbox: Toolbox,
        calls: list[ToolCall],
        repeats: dict[tuple[str, str], int],
        errors: dict[str, int],
    ) -> AsyncGenerator[AgentEvent, None]:
        """Run one turn's server calls at once; keep-alives flow while they take long."""
        limits = self.config.agent

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
                _done, pending = await asyncio.wait(pending, timeout=KEEPALIVE_SECONDS)
                if pending:
                    yield KeepAlive()
            for task in tasks:
                yield task.result()
        finally:
            for task in tasks:
                task.cancel()


async def _recorded(stream: EventBatches, record: list[dict[str, Any]]) -> AgentBatches:
    """Pass a plain reply through, and note the assistant message it makes."""
    turn = Turn()
    try:
        async for batch in stream:
            out: list[AgentEvent] = []
            for event in batch:
                turn.route(event, set(), out)
            out += [Finish(turn.reason)] if any(isinstance(e, Finish) for e in batch) else []
            yield out
    finally:
        await stream.aclose()
    record.append(Agent._assistant_message(turn))


def estimate_tokens(messages: list[dict[str, Any]], tools: Any = None) -> int:
    """About four characters a token, plus a few per message for the chat template."""
    chars = sum(
        len(m.get("content") or "")
        if isinstance(m.get("content"), str)
        else len(json.dumps(m.get("content")))
        for m in messages
    )
    chars += sum(len(json.dumps(m["tool_calls"])) for m in messages if m.get("tool_calls"))
    if tools:
        chars += len(json.dumps(tools))
    return chars // 4 + 4 * len(messages)


def check_context(
    messages: list[dict[str, Any]], params: dict[str, Any], window: int | None
) -> None:
    """OpenAI's 400 for a request that cannot fit the model's context, before any call."""
    if window is None:
        return
    needed = estimate_tokens(messages, params.get("tools"))
    if needed > window:
        raise ProviderError(
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in about {needed} tokens. Please reduce the length of the messages.",
            status=400,
            type="invalid_request_error",
            code="context_length_exceeded",
            param="messages",
        )


def _call_id() -> str:
    import os

    return "call_" + os.urandom(12).hex()


_MESSAGE_PARAM = re.compile(r"messages\[(\d+)\](.*)")
WEB_ADDRESS = re.compile(r"\bhttps?://\S+|\bwww\.\S+\.\S+", re.IGNORECASE)
