"""What a request may cost: its size in the model's context, and what its server tools may do.

The context is checked before every model call, not only the first: tool results grow a
conversation mid-request (50 reads of a file sent 120 MB upstream before these limits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from localgpt.agent.events import ToolEnd
from localgpt.config import Config
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import ToolCall
from localgpt.providers.messages import ChatMessage

TRIMMED = "[Removed: this result no longer fits the model's context.]"


def estimate_tokens(messages: list[ChatMessage], tools: Any = None) -> int:
    """About four characters a token, plus a few per message for the chat template."""
    chars = 0
    for message in messages:
        content = message.get("content")
        chars += len(content or "") if isinstance(content, str) else len(json.dumps(content))
        if message.get("tool_calls"):
            chars += len(json.dumps(message.get("tool_calls")))
    if tools:
        chars += len(json.dumps(tools))
    return chars // 4 + 4 * len(messages)


def context_exceeded(window: int, needed: int) -> ProviderError:
    return ProviderError(
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in about {needed} tokens. Please reduce the length of the messages.",
        status=400,
        type="invalid_request_error",
        code="context_length_exceeded",
        param="messages",
    )


def check_context(messages: list[ChatMessage], tools: Any, window: int | None) -> None:
    """OpenAI's 400 for a request that cannot fit the model's context, before any call."""
    if window is None:
        return
    needed = estimate_tokens(messages, tools)
    if needed > window:
        raise context_exceeded(window, needed)


def fit(
    transcript: list[ChatMessage], tools: Any, window: int | None, trim: bool
) -> list[ChatMessage] | None:
    """The transcript for the next model call, within the model's context: with ``trim``
    the oldest tool results are replaced by a note until it fits; None when it cannot (or
    without ``trim``)."""
    if window is None or estimate_tokens(transcript, tools) <= window:
        return transcript
    if not trim:
        return None
    fitted = list(transcript)
    for i, message in enumerate(fitted):
        if message["role"] != "tool" or message.get("content") == TRIMMED:
            continue
        fitted[i] = {**message, "content": TRIMMED}
        if estimate_tokens(fitted, tools) <= window:
            return fitted
    return None


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
