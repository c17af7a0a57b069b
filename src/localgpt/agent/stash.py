"""Server tool turns a client's history cannot hold, kept to be put back in its next request.

On ``/v1/chat/completions`` the client owns the history, and OpenAI's format has no place for
calls the server made and ran itself. So the server keeps them, for six hours, under a key
the client's next request will carry (``stash_key``), and puts them back where the client's
assistant message stands: the model sees exactly the conversation it had.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol

from localgpt.providers.messages import ChatMessage

if TYPE_CHECKING:
    from localgpt.shared.hot import HotState


class Stash(Protocol):
    """Where server turns wait for the client's next request: this process, or Redis."""

    async def fetch(self, messages: list[ChatMessage], caller: str | None) -> Found: ...

    async def store(self, key: str, messages: list[ChatMessage]) -> None: ...


class ToolStash:
    """Server tool calls and results of finished requests, to put back into the next one."""

    def __init__(self, size: int = 1024, ttl: float = 6 * 3600) -> None:
        self._items: OrderedDict[str, tuple[float, list[ChatMessage]]] = OrderedDict()
        self._size = size
        self._ttl = ttl

    def put(self, key: str, messages: list[ChatMessage]) -> None:
        self._items[key] = (time.monotonic() + self._ttl, messages)
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, key: str) -> list[ChatMessage] | None:
        found = self._items.get(key)
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def restore(self, messages: list[ChatMessage], caller: str | None = None) -> list[ChatMessage]:
        """Replace each assistant message the stash knows, for this caller, with the full
        turn(s) it stood for."""
        if not self._items:
            return messages
        found = {k: v for k in wanted(messages, caller) if (v := self.get(k)) is not None}
        return splice(messages, caller, found)

    # The interface the tool loop uses, which a shared stash implements too.

    async def fetch(self, messages: list[ChatMessage], caller: str | None) -> Found:
        if not self._items:
            return {}  # the usual case: nothing to look up, no key to hash
        return {k: v for k in wanted(messages, caller) if (v := self.get(k)) is not None}

    async def store(self, key: str, messages: list[ChatMessage]) -> None:
        self.put(key, messages)


Found = dict[str, list[ChatMessage]]


class SharedStash:
    """The stash in Redis: a follow-up that lands on another worker or replica finds the
    server turns of the request before it."""

    def __init__(self, hot: HotState, ttl: float = 6 * 3600) -> None:
        self.hot = hot
        self.ttl = ttl

    async def fetch(self, messages: list[ChatMessage], caller: str | None) -> Found:
        if not any(m["role"] == "assistant" for m in messages):
            return {}
        return await self.hot.stash_get(wanted(messages, caller))

    async def store(self, key: str, messages: list[ChatMessage]) -> None:
        await self.hot.stash_put(key, messages, self.ttl)


def wanted(messages: list[ChatMessage], caller: str | None) -> list[str]:
    """The stash keys of a conversation's assistant messages."""
    keys: list[str] = []
    asked: Any = None
    for message in messages:
        if message["role"] == "user":
            asked = message.get("content")
        elif message["role"] == "assistant":
            keys.append(stash_key(caller, asked, message))
    return keys


def splice(messages: list[ChatMessage], caller: str | None, found: Found) -> list[ChatMessage]:
    """The conversation with each assistant message ``found`` knows replaced by the full
    turn(s) it stood for."""
    if not found:
        return messages
    out: list[ChatMessage] = []
    asked: Any = None
    for message in messages:
        segment = None
        if message["role"] == "user":
            asked = message.get("content")
        elif message["role"] == "assistant":
            segment = found.get(stash_key(caller, asked, message))
        out.extend(segment if segment is not None else [message])
    return out


def stash_key(caller: str | None, asked: Any, message: ChatMessage) -> str:
    """Where the server turns behind an assistant message are kept: its first tool call's
    id, or its text, with the question it answered and the caller who asked. A call id is
    the client's to choose (it reused ``call_1`` in another key's request), and the same
    words end many conversations ("Done."): neither alone may put one caller's or one
    conversation's tool results into another's."""
    calls = message.get("tool_calls") or ()
    anchor = f"call:{calls[0]['id']}" if calls else f"text:{_plain(message.get('content'))}"
    text = json.dumps([caller or "", _plain(asked), anchor])
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content)


def last_question(messages: list[ChatMessage]) -> Any:
    return next((m.get("content") for m in reversed(messages) if m["role"] == "user"), None)
