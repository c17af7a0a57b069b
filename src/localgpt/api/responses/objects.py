"""The Response object of the Responses API and its output items, from plain values.

Shapes are those the openai SDK parses strictly: every field the
SDK declares without a default is always present (strict clients and Codex refuse a
Response or usage object missing one), the request's settings are echoed with OpenAI's
defaults when unset, and item ids are derived from the response id and call ids, so that
a stream renderer and the final object agree on them without passing state around.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from localgpt.api.responses.convert import new_id

Status = Literal["completed", "incomplete", "failed", "in_progress"]
ItemStatus = Literal["completed", "incomplete", "in_progress"]

# OpenAI finish reasons that end a response early, with the reason Responses gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_id() -> str:
    """``resp_`` + 48 hex digits."""
    return new_id("resp")


def message_id(resp_id: str) -> str:
    """The id of a response's (single) message item."""
    return "msg_" + resp_id.removeprefix("resp_")


def function_call_id(call_id: str) -> str:
    """The item id of a function call: ``fc_`` + the call id without its ``call_``."""
    return "fc_" + call_id.removeprefix("call_")


def usage_object(
    input_tokens: int,
    output_tokens: int,
    *,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
) -> dict[str, Any]:
    """``ResponseUsage`` with every detail the SDK and Codex require."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": input_tokens + output_tokens,
    }


def message_item(text: str | None, *, id: str, status: ItemStatus = "completed") -> dict[str, Any]:
    """An assistant message item with one ``output_text`` part; ``text`` ``None`` gives the
    ``content: []`` of ``response.output_item.added`` (as OpenAI streams it)."""
    part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [part] if text is not None else [],
    }


def function_call_item(
    call_id: str, name: str, arguments: str, *, status: ItemStatus = "completed"
) -> dict[str, Any]:
    return {
        "id": function_call_id(call_id),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def status_of(finish_reason: str | None, failed: bool = False) -> Status:
    """A response's status from the chat finish reason (``None``: still running)."""
    if failed:
        return "failed"
    if finish_reason is None:
        return "in_progress"
    return "incomplete" if finish_reason in _INCOMPLETE else "completed"


def response_object(
    request: Mapping[str, Any],
    *,
    id: str,
    created_at: int,
    text: str | None = None,
    calls: Sequence[tuple[str, str, str]] = (),
    finish_reason: str | None = "stop",
    usage: Mapping[str, Any] | None = None,
    error: tuple[str, str] | None = None,
    completed_at: int | None = None,
) -> dict[str, Any]:
    """The full Response JSON.

    ``request``: the validated request dict, whose settings are echoed. ``text``: the
    final text (``None``: no message item; ``""`` with no calls: an empty message, so that
    a finished response always says something). ``calls``: ``(call_id, name, arguments)``
    in the order the model made them. ``finish_reason``: the chat finish reason, ``None``
    while running (for ``response.created``/``in_progress``: pass no text, no calls, no
    usage). ``usage``: from ``usage_object``. ``error``: ``(code, message)`` of a failed
    response, code from the SDK's ``ResponseError.code`` enum (``server_error``...).
    """
    status = status_of(finish_reason, failed=error is not None)
    item_status: ItemStatus = (
        "completed"
        if status == "completed"
        else "in_progress"
        if status == "in_progress"
        else "incomplete"
    )
    output: list[dict[str, Any]] = []
    if text or (text is not None and not calls):
        output.append(message_item(text, id=message_id(id), status=item_status))
    output += [function_call_item(*call, status=item_status) for call in calls]
    if status == "completed" and completed_at is None:
        completed_at = int(time.time())
    incomplete = _INCOMPLETE.get(finish_reason or "") if status == "incomplete" else None
    return {
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": completed_at if status == "completed" else None,
        "error": {"code": error[0], "message": error[1]} if error else None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "output": output,
        "usage": dict(usage) if usage is not None else None,
        **echoed(request),
    }


def echoed(request: Mapping[str, Any]) -> dict[str, Any]:
    """The request settings a Response repeats, with OpenAI's values for unset ones."""
    text = request.get("text") or {}
    reasoning = request.get("reasoning") or {}
    return {
        "background": False,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "model": request["model"],
        "parallel_tool_calls": _default(request.get("parallel_tool_calls"), True),
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "prompt_cache_retention": request.get("prompt_cache_retention"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": "default",
        "store": _default(request.get("store"), True),
        "temperature": _default(request.get("temperature"), 1.0),
        "text": {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity") or request.get("verbosity") or "medium",
        },
        "tool_choice": _default(request.get("tool_choice"), "auto"),
        "tools": list(request.get("tools") or ()),
        "top_logprobs": 0,
        "top_p": _default(request.get("top_p"), 1.0),
        "truncation": _default(request.get("truncation"), "disabled"),
        "user": request.get("user"),
        "metadata": dict(request.get("metadata") or {}),
    }


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value
