"""What a model says, as events, and the one fold that reads them.

Every provider streams the same four kinds of event, in batches of what arrived together:
``TextDelta``, ``ToolCallDelta``, ``Finish`` and ``Usage``. Every consumer (a whole
completion, each wire format's renderer, the native chat, the assistant's turn) reads them
through ``Reply``, which keeps what the model has said per choice and reports each event,
normalised, to a ``ReplyListener``:

- a tool call is reported with its position among the choice's calls (in the order they
  began), an id (made up if the provider gave none) and its name, and ``first`` on the piece
  that introduces it; later pieces carry arguments only;
- a choice finishes once; what a provider says after that is dropped, and ``stop`` after
  tool calls is reported as ``tool_calls``;
- usage events are summed.

A new kind of event is a type error (``assert_never``) until ``Reply.feed`` handles it, and
a new listener method one until every listener implements it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never

# --- events ---------------------------------------------------------------------------------


@dataclass(slots=True)
class TextDelta:
    text: str
    choice: int = 0
    logprobs: Any = None


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a tool call. The first piece of each call carries ``id`` and ``name``."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    choice: int = 0


@dataclass(slots=True)
class Finish:
    reason: str
    choice: int = 0


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        cached = None
        if self.cached_tokens is not None or other.cached_tokens is not None:
            cached = (self.cached_tokens or 0) + (other.cached_tokens or 0)
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            cached,
        )


StreamEvent = TextDelta | ToolCallDelta | Finish | Usage


# --- a whole answer -------------------------------------------------------------------------


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Choice:
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    logprobs: Any = None
    index: int = 0


@dataclass(slots=True)
class Completion:
    choices: list[Choice]
    usage: Usage | None = None


# --- the fold -------------------------------------------------------------------------------


class ReplyListener(Protocol):
    """What a consumer of a reply hears, event by event, once ``Reply`` has normalised it."""

    def on_text(self, choice: int, text: str, logprobs: Any) -> None: ...

    def on_call(self, choice: int, position: int, call: ToolCall, piece: str, first: bool) -> None:
        """A piece of the call at ``position``; ``first`` on the piece that introduces it
        (``call`` then has its id and name), with the arguments it carried, maybe none."""
        ...

    def on_finish(self, choice: int, reason: str) -> None: ...

    def on_usage(self, usage: Usage) -> None: ...


def call_id() -> str:
    return "call_" + os.urandom(12).hex()


@dataclass(slots=True)
class Said:
    """What one choice has said so far."""

    text: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    positions: dict[int, int] = field(default_factory=dict)  # provider index -> position
    finish: str | None = None
    logprobs: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def content(self) -> str:
        return "".join(self.text)

    def choice(self, index: int) -> Choice:
        content = self.content
        return Choice(
            content=content if content or not self.calls else None,
            tool_calls=list(self.calls),
            finish_reason=self.finish or ("tool_calls" if self.calls else "stop"),
            logprobs=dict(self.logprobs) if self.logprobs else None,
            index=index,
        )


class Reply:
    """The fold over a stream's events (see the module's docstring)."""

    __slots__ = ("choices", "listener", "usage")

    def __init__(self, listener: ReplyListener | None = None) -> None:
        self.choices: dict[int, Said] = {}
        self.usage: Usage | None = None
        self.listener = listener

    def said(self, choice: int = 0) -> Said:
        found = self.choices.get(choice)
        if found is None:
            found = self.choices[choice] = Said()
        return found

    def feed(self, event: StreamEvent) -> None:
        match event:
            case TextDelta():  # the hot path: kept short
                said = self.choices.get(event.choice) or self.said(event.choice)
                if said.finish is not None:
                    return
                said.text.append(event.text)
                if event.logprobs is not None and isinstance(event.logprobs, dict):
                    for key, values in event.logprobs.items():
                        if isinstance(values, list):
                            said.logprobs.setdefault(key, []).extend(values)
                if self.listener is not None:
                    self.listener.on_text(event.choice, event.text, event.logprobs)
            case ToolCallDelta():
                self._call(event)
            case Finish():
                said = self.said(event.choice)
                if said.finish is not None:
                    return
                reason = "tool_calls" if event.reason == "stop" and said.calls else event.reason
                said.finish = reason
                if self.listener is not None:
                    self.listener.on_finish(event.choice, reason)
            case Usage():
                self.usage = event if self.usage is None else self.usage + event
                if self.listener is not None:
                    self.listener.on_usage(event)
            case _:
                assert_never(event)

    def _call(self, event: ToolCallDelta) -> None:
        said = self.said(event.choice)
        if said.finish is not None:
            return
        position = said.positions.get(event.index)
        first = position is None
        if position is None:
            position = said.positions[event.index] = len(said.calls)
            said.calls.append(ToolCall(event.id or call_id(), event.name or "", ""))
        call = said.calls[position]
        if not call.name and event.name:
            call.name = event.name
        call.arguments += event.arguments
        if self.listener is not None:
            self.listener.on_call(event.choice, position, call, event.arguments, first)

    def finished(self, choice: int = 0) -> bool:
        return self.said(choice).finish is not None

    def completion(self) -> Completion:
        """Everything said, as a whole answer (one choice at least)."""
        indices = sorted(self.choices) or [0]
        return Completion([self.said(i).choice(i) for i in indices], self.usage)
