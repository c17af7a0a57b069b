"""Native sessions: the server keeps the history, and compacts it when it grows too long.

Compaction happens when the history passes ``context_window - reserve_tokens``: the model
first gets one chance to save durable facts with ``memory_save`` (the memory flush), then
everything but the last four messages is replaced by a summary the model writes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from localgpt.agent.agent import Agent
from localgpt.agent.budget import estimate_tokens
from localgpt.agent.events import AgentEvent, collect_reply
from localgpt.agent.loop import SessionHistory
from localgpt.agent.sessions import Session, Sessions
from localgpt.agent.tools import Permissions, Toolbox
from localgpt.providers.base import ChatRequest
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import TextDelta
from localgpt.providers.messages import ChatMessage
from localgpt.providers.router import Route
from localgpt.shared.hot import LockBusy

if TYPE_CHECKING:
    from localgpt.shared.hot import HotState

log = logging.getLogger("localgpt.agent")

TURN_LOCK_SECONDS = 900.0  # a turn longer than this lets the next one in
KEEP_LAST = 4
FLUSH_OVERHEAD = 1024  # tokens: the flush prompt, memory_save's definition, its reply
SUMMARY_HEADER = "Summary of the earlier conversation:"
FLUSH_PROMPT = (
    "The older part of this conversation is about to be replaced by a summary. Before that "
    "happens, save any durable facts worth remembering (about the user, decisions, things to "
    "do) with memory_save. Save nothing that is already in memory. Reply 'done' when finished."
)
SUMMARY_PROMPT = (
    "Summarise the conversation below for your own future reference: keep facts, decisions, "
    "open questions, names, numbers and anything the user asked you to remember. Be concise; "
    "write plain text, no preamble."
)


@dataclass
class Compaction:
    compacted: bool
    messages_before: int
    messages_after: int
    tokens_before: int
    tokens_after: int
    flushed: int  # memory_save calls made by the flush

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Conversations:
    def __init__(self, agent: Agent, store: Sessions, hot: HotState | None = None) -> None:
        self.agent = agent
        self.store = store
        self.hot = hot  # [state] url: a session's turns are serialised across processes
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, session_id: str) -> AbstractAsyncContextManager[Any]:
        """One turn (or deletion, compaction) of a session at a time: in this process, and
        with Redis in every process."""
        local = self._locks.setdefault(session_id, asyncio.Lock())
        if self.hot is None:
            return local
        return _both(local, self.hot.lock(f"session:{session_id}", TURN_LOCK_SECONDS))

    async def busy(self, session_id: str) -> bool:
        """Whether a turn of the session is under way, here or (with Redis) anywhere."""
        local = self._locks.get(session_id)
        if local is not None and local.locked():
            return True
        if self.hot is None:
            return False
        try:
            async with self.hot.lock(f"session:{session_id}", 5, wait=0):
                return False
        except LockBusy:
            return True

    def model_of(self, session: Session, model: str | None = None) -> str:
        return model or session.model or self.agent.config.default_model

    async def tokens(self, session: Session, model: str) -> int:
        """The session's prompt length: the model's own count where its provider has a
        tokenizer (the embedded model), about four characters a token otherwise."""
        prepared = self.agent.prompt(session.messages)
        counted = await self.agent.router.count_tokens(model, prepared)
        return counted if counted is not None else estimate_tokens(prepared)

    def window(self, model: str) -> int:
        return self.agent.router.context_window(model) or self.agent.config.agent.context_window

    def limit(self, model: str) -> int:
        """Where compaction starts: the window less room for the reply. The reserve is
        capped at a quarter of the window, so the default 8,000 (sized for 128k-token
        models) leaves a small local model's 8k window usable."""
        window = self.window(model)
        return window - min(self.agent.config.agent.reserve_tokens, window // 4)

    async def needs_compaction(self, session: Session, model: str) -> bool:
        """Only when compacting would shrink something: a history that is just a summary
        and the last few messages is left alone, however long, rather than re-summarised
        before every turn."""
        split = _split(session.messages)
        if split <= 0 or (split == 1 and _is_summary(session.messages[0])):
            return False
        return await self.tokens(session, model) > self.limit(model)

    async def turn(
        self, session: Session, text: str, model: str | None, permissions: Permissions
    ) -> tuple[Route, AsyncGenerator[Sequence[AgentEvent], None]]:
        """Start one user turn; the history is saved when the reply is complete."""
        model = self.model_of(session, model)
        user: ChatMessage = {"role": "user", "content": text}
        history = SessionHistory()
        try:
            route, stream = await self.agent.open_stream(
                model, [*session.messages, user], {}, permissions, history=history
            )
        except ProviderError:
            # The model failed before a word: the question stays in the session (no empty
            # session is left behind, and the user's text is not lost).
            await asyncio.to_thread(self.store.append, session, [user])
            raise

        async def run() -> AsyncGenerator[Sequence[AgentEvent], None]:
            complete = stopped = False
            shown: list[str] = []  # the reply's text as the user saw it
            try:
                async for batch in stream:
                    shown += (e.text for e in batch if isinstance(e, TextDelta))
                    yield batch
                complete = True
            except (GeneratorExit, asyncio.CancelledError):
                stopped = True
                raise
            except ProviderError:
                await asyncio.shield(asyncio.to_thread(self.store.append, session, [user]))
                raise
            finally:
                await stream.aclose()
                if complete:
                    await asyncio.to_thread(self.store.append, session, [user, *history.record])
                elif stopped and "".join(shown).strip():
                    # Stopped by the user: the question and what was said so far are kept,
                    # as a chat app keeps them; the tool calls of an unfinished turn are not.
                    reply: ChatMessage = {"role": "assistant", "content": "".join(shown)}
                    await asyncio.shield(
                        asyncio.to_thread(self.store.append, session, [user, reply])
                    )

        return route, run()

    async def compact(
        self, session: Session, model: str | None, permissions: Permissions
    ) -> Compaction:
        """Memory flush, then a summary of all but the last messages; saved atomically."""
        model = self.model_of(session, model)
        before = len(session.messages)
        tokens_before = await self.tokens(session, model)
        split = _split(session.messages)
        if split <= 0:
            return Compaction(False, before, before, tokens_before, tokens_before, 0)
        older, recent = session.messages[:split], session.messages[split:]
        # The older part can itself be longer than the window (a long paste, or a smaller
        # model than the one the session started with): then the model sees the earlier
        # summary and the latest part. The budget is the window less the system prompt, the
        # flush's instructions and room for its reply.
        system = estimate_tokens(self.agent.prompt([]))
        older = _fit(older, self.window(model) - system - FLUSH_OVERHEAD)
        try:
            flushed = await self._flush(older, model, permissions)
        except ProviderError as exc:
            # A failed flush loses a chance to save facts, not the session: summarise anyway.
            log.warning("memory flush before compaction failed: %s", exc.message)
            flushed = 0
        try:
            summary = await self._summarise(older, model)
        except ProviderError as exc:
            if exc.code != "context_length_exceeded":
                raise
            # The estimate was short of the model's own count: half as much, once more.
            summary = await self._summarise(_fit(older, estimate_tokens(older) // 2), model)
        session.messages = [
            {"role": "system", "content": f"{SUMMARY_HEADER}\n{summary}"},
            *recent,
        ]
        session.compactions += 1
        await asyncio.to_thread(self.store.rewrite, session)
        tokens_after = await self.tokens(session, model)
        return Compaction(True, before, len(session.messages), tokens_before, tokens_after, flushed)

    async def _flush(self, older: list[ChatMessage], model: str, permissions: Permissions) -> int:
        if self.agent.memory is None or not permissions.write_memory:
            return 0
        toolbox = Toolbox(self.agent.config, self.agent.memory, permissions).only({"memory_save"})
        history = SessionHistory()
        _, stream = await self.agent.open_stream(
            model,
            [*older, ChatMessage(role="user", content=FLUSH_PROMPT)],
            {},
            permissions,
            history=history,
            toolbox=toolbox,
            recall=False,
        )
        await collect_reply(stream)
        return sum(
            len(m.get("tool_calls") or ()) for m in history.record if m["role"] == "assistant"
        )

    async def _summarise(self, older: list[ChatMessage], model: str) -> str:
        """A plain model call: no assistant prompt, no tools, just the transcript."""
        transcript = "\n".join(_line(m) for m in older)
        request = ChatRequest(
            model,
            [
                {"role": "system", "content": SUMMARY_PROMPT},
                {"role": "user", "content": transcript},
            ],
        )
        _, completion = await self.agent.router.complete(model, request)
        return (completion.choices[0].content or "").strip()


def _split(messages: list[ChatMessage]) -> int:
    """Where the kept tail starts: the last few messages, never a tool result cut off from
    the call it answers."""
    split = len(messages) - KEEP_LAST
    while split > 0 and messages[split].get("role") == "tool":
        split -= 1
    return split


def _is_summary(message: ChatMessage) -> bool:
    content = message.get("content")
    return (
        message.get("role") == "system"
        and isinstance(content, str)
        and content.startswith(SUMMARY_HEADER)
    )


def _fit(messages: list[ChatMessage], budget: int) -> list[ChatMessage]:
    """The messages whole if they fit in about ``budget`` tokens; else the earlier summary
    (if any) and the latest messages that fit, starting at a user or system message so no
    tool result lacks its call; if not even that fits, the end as one message."""
    if estimate_tokens(messages) <= budget:
        return messages
    head = messages[:1] if messages and _is_summary(messages[0]) else []
    rest = messages[len(head) :]
    budget -= estimate_tokens(head) if head else 0
    start = len(rest) - 1
    while start > 0 and estimate_tokens(rest[start - 1 :]) <= budget:
        start -= 1
    while start < len(rest) and rest[start].get("role") not in ("user", "system"):
        start += 1
    kept = rest[start:]
    if kept and estimate_tokens(kept) <= budget:
        return [*head, *kept]
    text = "\n".join(_line(m) for m in rest)
    tail = text[-max(budget, 64) * 3 :]
    return [*head, {"role": "user", "content": "[earlier conversation, cut]\n" + tail}]


def _line(message: ChatMessage) -> str:
    content = message.get("content")
    text = content if isinstance(content, str) else json.dumps(content) if content else ""
    if message.get("tool_calls"):
        calls = ", ".join(
            f"{c['function']['name']}({c['function']['arguments']})" for c in message["tool_calls"]
        )
        text = f"{text} [called {calls}]".strip()
    return f"{message.get('role')}: {text}"


@asynccontextmanager
async def _both(
    local: asyncio.Lock, shared: AbstractAsyncContextManager[Any]
) -> AsyncIterator[None]:
    async with local, shared:
        yield
