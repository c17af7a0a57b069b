"""The assistant layer between the API and the providers.

Every request gets LocalGPT's system prompt first (identity, safety, then the workspace
context); the client's own system messages follow it. The memory takes its part before the
model answers (``agent.recall``), and with a memory the assistant offers its server tools next
to the client's and runs the tool loop (``agent.loop``), keeping what its tools did in the
conversation's ``History``. In gateway mode, or for a caller that gets a plain proxy, it
passes requests through untouched.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from localgpt.agent.budget import check_context, estimate_tokens
from localgpt.agent.events import AgentBatches, collect_reply
from localgpt.agent.loop import ClientHistory, History, ToolLoop
from localgpt.agent.prompt import system_prompt
from localgpt.agent.recall import MemoryTurn, last_user, memory_turn
from localgpt.agent.stash import Stash, ToolStash
from localgpt.agent.tools import Permissions, Toolbox
from localgpt.config import Config
from localgpt.memory.manager import Memory
from localgpt.providers.base import (
    ChatRequest,
    EventBatches,
    TextRequest,
    WarmsUp,
    capable,
    collect,
)
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Completion
from localgpt.providers.messages import ChatMessage, ChatParams, text_of
from localgpt.providers.router import Route, Router
from localgpt.providers.stops import StopWatch

if TYPE_CHECKING:
    from localgpt.mcp.client import McpHub

log = logging.getLogger("localgpt.agent")
_MESSAGE_PARAM = re.compile(r"messages\[(\d+)\](.*)")
WEB_ADDRESS = re.compile(r"\bhttps?://\S+|\bwww\.\S+\.\S+", re.IGNORECASE)
# Server tools a small model whose tool calls are decided under a grammar is never offered.
GRAMMAR_WITHHELD = frozenset({"memory_search", "memory_get", "memory_save", "bash", "write_file"})


class Agent:
    def __init__(
        self,
        config: Config,
        router: Router,
        memory: Memory | None = None,
        mcp: McpHub | None = None,
    ) -> None:
        self.config = config
        self.router = router
        self.memory = memory
        self.mcp = mcp
        self.gateway = config.agent.gateway_mode
        self.stash: Stash = ToolStash()  # a SharedStash with [state] url
        self._identity = system_prompt()

    # --- the prompt -------------------------------------------------------------------

    def system_message(self) -> ChatMessage:
        """Identity and safety first (stable), then the workspace (stable-ish)."""
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

    def prompt(
        self,
        messages: list[ChatMessage],
        history: History | None = None,
        assistant: bool = True,
    ) -> list[ChatMessage]:
        """The messages a provider sees: ours first, then the conversation as the model had
        it (``history`` puts back what the client's history cannot hold), system messages
        included. Without ``assistant`` (gateway mode, or a gateway-scoped key) the client's
        messages pass untouched."""
        if self.gateway or not assistant:
            return messages
        past = history.restore(messages) if history is not None else messages
        return [self.system_message(), *past]

    async def _load(
        self, history: History, messages: list[ChatMessage], permissions: Permissions
    ) -> None:
        """What ``prompt`` will put back from the stash; nothing for a plain proxy."""
        if not self.gateway and permissions.assistant:
            await history.load(messages)

    # --- what the assistant does in a turn ----------------------------------------------

    def toolbox(self, permissions: Permissions, params: ChatParams) -> Toolbox | None:
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
        return Toolbox(self.config, self.memory, permissions, self.mcp)

    def offered(
        self,
        model: str,
        permissions: Permissions,
        params: ChatParams,
        turn: MemoryTurn,
        messages: list[ChatMessage],
    ) -> Toolbox | None:
        """The server tools this turn offers (``toolbox``, less ``_withheld``), or None."""
        toolbox = self.toolbox(permissions, params)
        if toolbox is None:
            return None
        toolbox = toolbox.only(set(toolbox.handlers) - self._withheld(model, turn, messages))
        return toolbox if toolbox.handlers else None

    def _withheld(self, model: str, turn: MemoryTurn, messages: list[ChatMessage]) -> set[str]:
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
            withheld |= GRAMMAR_WITHHELD
            at = last_user(messages)
            text = text_of(messages[at].get("content")) if at is not None else ""
            if not WEB_ADDRESS.search(text):
                withheld.add("web_fetch")
        return withheld

    async def memory_turn(
        self, messages: list[ChatMessage], permissions: Permissions
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
        ours = [0, *(turn.inserted if turn is not None else ())]
        if index not in ours:
            exc.param = f"messages[{index - sum(i < index for i in ours)}]{match.group(2)}"
        return exc

    # --- the entry points ---------------------------------------------------------------

    async def complete(
        self,
        model: str,
        messages: list[ChatMessage],
        params: ChatParams,
        permissions: Permissions | None = None,
        stops: StopWatch | None = None,
    ) -> tuple[Route, Completion]:
        permissions = permissions or Permissions()
        if self.toolbox(permissions, params) is None:
            turn = await self.memory_turn(messages, permissions)
            history = ClientHistory(self.stash, permissions.caller)
            await self._load(history, messages, permissions)
            prepared = turn.apply(self.prompt(messages, history, permissions.assistant))
            try:
                return await self.router.complete(
                    model, ChatRequest(model, prepared, params, stops)
                )
            except ProviderError as exc:
                raise self._client_view(exc, permissions.assistant, turn) from None
        route, batches = await self.open_stream(model, messages, params, permissions, stops=stops)
        return route, await collect_reply(batches)

    async def open_stream(
        self,
        model: str,
        messages: list[ChatMessage],
        params: ChatParams,
        permissions: Permissions | None = None,
        history: History | None = None,
        toolbox: Toolbox | None = None,
        recall: bool = True,
        stops: StopWatch | None = None,
    ) -> tuple[Route, AgentBatches]:
        """Start a reply. ``history`` owns the conversation (the client's, by default);
        ``toolbox`` overrides the server tools offered; ``recall`` lets the memory take its
        part (``memory_turn``); ``stops`` matches stop sequences in place of the provider."""
        permissions = permissions or Permissions()
        client_owned = history is None
        history = history or ClientHistory(self.stash, permissions.caller)
        await self._load(history, messages, permissions)
        turn = await self.memory_turn(messages, permissions) if recall else MemoryTurn()
        if toolbox is None:
            toolbox = self.offered(model, permissions, params, turn, messages)
        prepared = turn.apply(self.prompt(messages, history, permissions.assistant))
        client_tools: list[dict[str, Any]] = params.get("tools") or []
        check_context(prepared, client_tools or None, self.router.context_window(model))
        shadowed = {t["function"]["name"] for t in client_tools}  # the client's own win
        if toolbox is not None:
            params = {**params, "tools": [*toolbox.without(shadowed), *client_tools]}
        try:
            route, stream = await self.router.open_stream(
                model, ChatRequest(model, prepared, params, stops)
            )
        except ProviderError as exc:
            raise self._client_view(exc, permissions.assistant, turn) from None
        if toolbox is None and client_owned:
            return route, stream  # nothing to run or keep: the model's stream as it is
        server_tools = set(toolbox.handlers) - shadowed if toolbox is not None else set()
        loop = ToolLoop(self.config, self.router, toolbox, server_tools, history, stops)
        return route, loop.run(route, stream, prepared, params)

    async def count_prompt(
        self,
        model: str,
        messages: list[ChatMessage],
        params: ChatParams,
        permissions: Permissions | None = None,
    ) -> int:
        """The prompt's size as the model would get it: our system prompt and the tools on
        offer included, by the model's tokenizer where its provider has one. The notes the
        memory would add are not: which ones depends on the memory when the question is
        asked."""
        permissions = permissions or Permissions()
        history = ClientHistory(self.stash, permissions.caller)
        await self._load(history, messages, permissions)
        prepared = self.prompt(messages, history, permissions.assistant)
        tools: list[dict[str, Any]] = list(params.get("tools") or [])
        toolbox = self.offered(model, permissions, params, MemoryTurn(), messages)
        if toolbox is not None:
            tools = [*toolbox.without({t["function"]["name"] for t in tools}), *tools]
        counted = await self.router.count_tokens(model, prepared)
        if counted is None:
            return estimate_tokens(prepared, tools or None)
        return counted + (estimate_tokens([], tools) if tools else 0)

    async def open_text_stream(
        self, model: str, prompt: str | list[Any], params: ChatParams
    ) -> tuple[Route, EventBatches]:
        """A legacy text completion: raw text in, raw text out, no assistant prompt."""
        return await self.router.open_text_stream(model, TextRequest(model, prompt, params))

    async def warm_up(self) -> None:
        """Load the embedded model, and on it evaluate the assistant's prompt once.

        A CPU evaluates a prompt at some 50 tokens a second, so the system prompt and the
        workspace context cost the first request seconds. Evaluated here, at start-up, they
        sit in llama.cpp's prompt cache and the first question is answered as fast as the
        next. No tool runs: the provider is called directly.
        """
        await self.router.warm_up()
        if self.config.default_is_implicit_local or self.gateway:
            return
        model = self.config.default_model
        try:
            route = self.router.resolve(model)
            provider = self.router.provider(route.provider)
        except ProviderError:
            return
        if not capable(provider, WarmsUp):
            return
        hello: list[ChatMessage] = [{"role": "user", "content": "Hello."}]
        params: ChatParams = {"max_tokens": 1}
        toolbox = self.offered(model, Permissions(), {}, MemoryTurn(), hello)
        if toolbox is not None:  # as a first question would find it
            params["tools"] = toolbox.definitions
        messages = self.prompt(hello)
        try:
            await collect(provider.stream(ChatRequest(route.model, messages, params)))
        except ProviderError as exc:
            log.warning("could not warm the prompt cache: %s", exc.message)
