"""OpenAI's Responses API stream: ``response.created`` and ``response.in_progress``, then each
output item (``output_item.added``, its content or argument deltas, ``output_item.done``),
then exactly one terminal event: ``response.completed``, ``response.incomplete`` (the
output was cut at ``max_output_tokens``) or ``response.failed`` (never a completed
response after an upstream failure). Every event carries the next ``sequence_number``.

Items get their ``output_index`` in the order they begin: a message when text first
arrives, a function call when it is introduced. The items still open when the model
finishes are closed then; the terminal event's ``response.output`` holds every item, as
the SDK's accumulator and Codex rebuild the answer from it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from localgpt.agent.events import AgentEvent, ToolEnd, ToolStart
from localgpt.api.render import StreamRenderer
from localgpt.api.responses.objects import (
    function_call_item,
    message_id,
    message_item,
    response_object,
    status_of,
    usage_object,
)
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Finish, ToolCall, Usage

EMPTY_PART = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}


def usage_of(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage(0, 0)
    return usage_object(
        usage.prompt_tokens, usage.completion_tokens, cached_tokens=usage.cached_tokens or 0
    )


def failure_code(exc: ProviderError) -> str:
    """The ``error.code`` of a failed response (Codex retries all but the first two)."""
    if exc.code == "context_length_exceeded":
        return "context_length_exceeded"
    if exc.status == 429:
        return "rate_limit_exceeded"
    if 400 <= exc.status < 500:
        return "invalid_prompt"
    return "server_error"


class _Message:
    __slots__ = ("id", "index", "parts", "prefix")

    def __init__(self, item_id: str, index: int) -> None:
        self.id = item_id
        self.index = index
        self.parts: list[str] = []
        head = orjson.dumps({"item_id": item_id, "output_index": index, "content_index": 0})
        # The delta events, pre-rendered up to the delta itself: the hot path.
        self.prefix = (
            b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
            + head[1:-1]
            + b',"delta":'
        )


class _Call:
    __slots__ = ("call", "index", "open")

    def __init__(self, call: ToolCall, index: int) -> None:
        self.call = call
        self.index = index
        self.open = True


class ResponseEvents(StreamRenderer):
    """One response as Responses API events; ``response`` is the final Response object
    (completed, incomplete or failed) once the stream has ended."""

    def __init__(self, request: Mapping[str, Any], response_id: str, created_at: int) -> None:
        super().__init__()
        self.request = request
        self.id = response_id
        self.created_at = created_at
        self.response: dict[str, Any] | None = None
        self._sequence = 0
        self._started = False
        self._items: list[dict[str, Any]] = []  # the output, by output_index
        self._message: _Message | None = None  # the message item open, if any
        self._calls: dict[int, _Call] = {}  # by position among the reply's calls
        self._finish: str | None = None

    # --- framing --------------------------------------------------------------------------

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        data = {"type": kind, **data, "sequence_number": self._sequence}
        self._sequence += 1
        self.emit(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    def _response(self, **fields: Any) -> dict[str, Any]:
        return response_object(self.request, id=self.id, created_at=self.created_at, **fields)

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``, which may go before the model's
        first word (see ``api.streaming.early``)."""
        return self.render(())

    def _begin(self) -> None:
        self._started = True
        running = self._response(text=None, finish_reason=None)
        self._event("response.created", {"response": running})
        self._event("response.in_progress", {"response": running})

    def render(self, events: Sequence[AgentEvent]) -> bytes:
        if not self._started:
            self._begin()
        return super().render(events)

    # --- items ----------------------------------------------------------------------------

    def _open_message(self) -> _Message:
        index = len(self._items)
        item_id = message_id(self.id) if index == 0 else f"{message_id(self.id)}_{index}"
        message = self._message = _Message(item_id, index)
        self._items.append(message_item(None, id=item_id, status="in_progress"))
        self._event("response.output_item.added", {"output_index": index, "item": self._items[-1]})
        self._event(
            "response.content_part.added",
            {"item_id": item_id, "output_index": index, "content_index": 0, "part": EMPTY_PART},
        )
        return message

    def _close_message(self, status: str) -> None:
        message = self._message
        if message is None:
            return
        self._message = None
        text = "".join(message.parts)
        where = {"item_id": message.id, "output_index": message.index, "content_index": 0}
        self._event("response.output_text.done", {**where, "text": text, "logprobs": []})
        item = message_item(text, id=message.id, status=status)  # type: ignore[arg-type]
        self._event("response.content_part.done", {**where, "part": item["content"][0]})
        self._items[message.index] = item
        self._event("response.output_item.done", {"output_index": message.index, "item": item})

    def _close_call(self, open_call: _Call, status: str) -> None:
        open_call.open = False
        call = open_call.call
        item = function_call_item(call.id, call.name, call.arguments, status=status)  # type: ignore[arg-type]
        self._items[open_call.index] = item
        self._event(
            "response.function_call_arguments.done",
            {
                "item_id": item["id"],
                "output_index": open_call.index,
                "name": call.name,
                "arguments": call.arguments,
            },
        )
        self._event("response.output_item.done", {"output_index": open_call.index, "item": item})

    def _close_all(self, status: str) -> None:
        self._close_message(status)
        for open_call in self._calls.values():
            if open_call.open:
                self._close_call(open_call, status)

    # --- the reply's events -----------------------------------------------------------------

    def on_text(self, choice: int, text: str, logprobs: Any) -> None:
        message = self._message or self._open_message()
        message.parts.append(text)
        self._sequence += 1
        self._out.append(
            message.prefix
            + orjson.dumps(text)
            + b',"logprobs":[],"sequence_number":'
            + str(self._sequence - 1).encode()
            + b"}\n\n"
        )

    def on_call(self, choice: int, position: int, call: ToolCall, piece: str, first: bool) -> None:
        if first:
            self._close_message("completed")  # text before a call is finished
            index = len(self._items)
            self._calls[position] = _Call(call, index)
            item = function_call_item(call.id, call.name, "", status="in_progress")
            self._items.append(item)
            self._event("response.output_item.added", {"output_index": index, "item": item})
        open_call = self._calls[position]
        if piece and open_call.open:
            self._event(
                "response.function_call_arguments.delta",
                {
                    "item_id": self._items[open_call.index]["id"],
                    "output_index": open_call.index,
                    "delta": piece,
                },
            )

    def on_finish(self, choice: int, reason: str) -> None:
        self._finish = reason
        self._close_all("incomplete" if status_of(reason) == "incomplete" else "completed")

    def on_usage(self, usage: Usage) -> None:
        pass  # summed by the fold, sent with the terminal event

    def on_tool_start(self, event: ToolStart) -> None:
        pass  # the server's own tools are not the client's items

    def on_tool_end(self, event: ToolEnd) -> None:
        pass

    def on_keepalive(self) -> None:
        self.emit(b": keep-alive\n\n")

    # --- the end --------------------------------------------------------------------------

    def final(self, **fields: Any) -> dict[str, Any]:
        """The Response object as it stands, with the items as they were streamed."""
        response = self._response(text=None, usage=usage_of(self.reply.usage), **fields)
        response["output"] = list(self._items)
        return response

    def end(self) -> bytes:
        if not self._started:
            self._begin()
        if not self._items:  # a finished response always says something, if only ""
            self._open_message()
        if not self.reply.finished(0):
            self.reply.feed(Finish("stop"))
        else:
            self._close_all(
                "incomplete" if status_of(self._finish) == "incomplete" else "completed"
            )
        response = self.final(finish_reason=self._finish or "stop")
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        self._event(kind, {"response": response})
        self.response = response
        return self.render(())

    def error(self, exc: ProviderError) -> bytes:
        if not self._started:
            self._begin()
        self._close_all("incomplete")
        response = self.final(error=(failure_code(exc), exc.message), completed_at=None)
        self._event("response.failed", {"response": response})
        self.response = response
        return self.render(())


def completed_response(
    request: Mapping[str, Any],
    response_id: str,
    created_at: int,
    text: str | None,
    calls: Sequence[tuple[str, str, str]],
    finish_reason: str,
    usage: Usage | None,
) -> dict[str, Any]:
    """The non-streamed Response object of a whole reply."""
    return response_object(
        request,
        id=response_id,
        created_at=created_at,
        text=text,
        calls=calls,
        finish_reason=finish_reason,
        usage=usage_of(usage),
        completed_at=int(time.time()),
    )
