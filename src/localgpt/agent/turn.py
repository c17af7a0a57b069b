"""One model call as the tool loop sees it.

The model's words go on to the client as they come; its calls are sorted as they begin: a
call to one of the server's tools stays here to be run, a call to the client's goes on,
numbered from 0 among the client's calls (the client never sees the server's). The fold
(``providers.events.Reply``) does the reading; this is one of its listeners.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from localgpt.agent.events import AgentEvent, dispatch
from localgpt.providers.events import Reply, TextDelta, ToolCall, ToolCallDelta, Usage
from localgpt.providers.messages import ChatMessage


class Turn:
    def __init__(self, server_tools: set[str]) -> None:
        self.server_tools = server_tools
        self.reply = Reply(self)
        self.server: list[ToolCall] = []
        self.client: list[ToolCall] = []
        self.order: list[ToolCall] = []  # every call, in the order they began
        self.reason = "stop"
        self._client_index: dict[int, int] = {}  # the reply's position -> the client's index
        self._out: list[AgentEvent] = []

    def feed(self, batch: Sequence[AgentEvent]) -> list[AgentEvent]:
        """Read one batch; what of it goes on to the client."""
        for event in batch:
            dispatch(event, self.reply, None)
        out, self._out = self._out, []
        return out

    @property
    def text(self) -> str:
        return self.reply.said(0).content

    # --- ReplyListener ------------------------------------------------------------------

    def on_text(self, choice: int, text: str, logprobs: Any) -> None:
        self._out.append(TextDelta(text, choice, logprobs))

    def on_call(self, choice: int, position: int, call: ToolCall, piece: str, first: bool) -> None:
        if first:
            self.order.append(call)
            if call.name in self.server_tools:
                self.server.append(call)
                return
            self._client_index[position] = len(self.client)
            self.client.append(call)
        index = self._client_index.get(position)
        if index is None:
            return  # a server call's arguments: they stay here
        self._out.append(
            ToolCallDelta(
                index,
                piece,
                call.id if first else None,
                call.name if first else None,
                choice,
            )
        )

    def on_finish(self, choice: int, reason: str) -> None:
        self.reason = reason  # the loop decides what the client is told

    def on_usage(self, usage: Usage) -> None:
        self._out.append(usage)

    # --- what the turn adds to the conversation ------------------------------------------

    def withdraw_server_calls(self) -> None:
        """Forget the server calls (written although tools were withdrawn): not run."""
        withdrawn = {id(c) for c in self.server}
        self.order = [c for c in self.order if id(c) not in withdrawn]
        self.server = []
        if self.reason == "tool_calls" and not self.client:
            self.reason = "stop"

    def message(self) -> ChatMessage:
        """The assistant message this turn stands for in the conversation."""
        message: ChatMessage = {"role": "assistant", "content": self.text or None}
        message["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments or "{}"},
            }
            for c in self.order
        ]
        return message
