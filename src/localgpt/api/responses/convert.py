"""The Responses API in terms of the chat request the rest of the server runs.

Pure functions over *validated* request dicts: what ``requests.parse_body(body,
ResponsesRequest)`` returns, i.e. the JSON the client sent, so absent fields are absent and
defaults are applied here, not by the models. Nothing here touches a store: items that
earlier responses produced come in as ``history`` (already in Responses item form), and
``item_reference`` ids are resolved against ``history`` plus an optional ``items`` mapping
the route fills from its store (``referenced_ids`` says which ids to fetch).

Chat shape produced (see ``api.protocol``): ``instructions`` first as a system message;
message items to messages of the same role; consecutive ``function_call`` items to one
assistant message with several ``tool_calls`` (joined to the assistant message just
before them, as the model produced text then calls); ``function_call_output`` to tool
messages. Images in a tool output cannot go in a chat tool message, so they follow the
group of tool messages as one user message, which keeps every tool message right after
its calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from localgpt.api.errors import APIError
from localgpt.api.responses.items import DROPPED_ITEM_TYPES

Item = Mapping[str, Any]

# Prefixes of the ids that input_items() gives items which came without one.
_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "reasoning": "rs",
    "custom_tool_call": "ctc",
}


def item_type(item: Item) -> str:
    """An item's type; the easy message form and bare references have none."""
    kind = item.get("type")
    if kind is not None:
        return str(kind)
    return "item_reference" if "role" not in item and "id" in item else "message"


def input_list(request: Item) -> list[Item]:
    """The request's ``input`` as items (a string is one user message)."""
    value = request.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value)


def referenced_ids(request: Item) -> list[str]:
    """The ids this request's ``item_reference`` items name, for the route to look up."""
    return [item["id"] for item in input_list(request) if item_type(item) == "item_reference"]


def dropped_tools(request: Item) -> list[str]:
    """The types of the tools accepted but not offered to the model (hosted, custom...)."""
    return _unique(t["type"] for t in request.get("tools") or () if t["type"] != "function")


def dropped_items(request: Item) -> list[str]:
    """The types of the input items accepted but not shown to the model (reasoning...)."""
    return _unique(
        kind for kind in map(item_type, input_list(request)) if kind in DROPPED_ITEM_TYPES
    )


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# --- the chat request -----------------------------------------------------------------------


def to_chat(
    request: Item,
    history: Sequence[Item] = (),
    items: Mapping[str, Item] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chat ``(messages, params)`` of a Responses request.

    ``history``: the input items and output items of the previous responses in the
    ``previous_response_id`` chain, oldest first (without their instructions, which are not
    inherited). ``items``: stored items by id, for ``item_reference``; ids in ``history``
    are found without it.
    """
    lookup: dict[str, Item] = {item["id"]: item for item in history if item.get("id")}
    lookup.update(items or {})
    transcript = _Transcript()
    if request.get("instructions"):
        transcript.append({"role": "system", "content": request["instructions"]})
    for item in history:
        transcript.add(_resolve(item, lookup, None))
    for i, item in enumerate(input_list(request)):
        transcript.add(_resolve(item, lookup, f"input[{i}]"))
    transcript.flush()
    return transcript.messages, chat_params(request)


def _resolve(item: Item, lookup: Mapping[str, Item], where: str | None) -> Item:
    if item_type(item) != "item_reference":
        return item
    found = lookup.get(item["id"])
    if found is None or item_type(found) == "item_reference":
        if where is None:  # the route stores resolved items: a reference here is a bug
            raise ValueError(f"unresolved item_reference {item['id']!r} in history")
        raise APIError(
            400,
            f"Item with id '{item['id']}' not found.",
            param=f"{where}.id",
            code="invalid_value",
        )
    return found


class _Transcript:
    """Chat messages being built, with the state that item order needs."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.images: list[dict[str, Any]] = []  # from tool outputs, after the tool group
        self.assistant: dict[str, Any] | None = None  # the one function calls may join

    def append(self, message: dict[str, Any]) -> None:
        if message["role"] != "tool":
            self.flush()
        self.messages.append(message)
        self.assistant = message if message["role"] == "assistant" else None

    def flush(self) -> None:
        if self.images:
            images, self.images = self.images, []
            self.messages.append({"role": "user", "content": images})
            self.assistant = None

    def add(self, item: Item) -> None:
        kind = item_type(item)
        if kind == "message":
            self.append(_message(item))
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            if self.images:
                self.flush()
            if self.assistant is None:
                self.append({"role": "assistant", "content": None, "tool_calls": [call]})
            else:
                self.assistant.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            content, images = _tool_output(item["output"])
            self.append({"role": "tool", "tool_call_id": item["call_id"], "content": content})
            self.images.extend(images)
        # Anything else (reasoning, hosted and freeform tool calls...) is not for the model.


def _message(item: Item) -> dict[str, Any]:
    role, content = item["role"], item["content"]
    if isinstance(content, str):
        return {"role": role, "content": content}
    if role != "assistant":
        return {"role": role, "content": [_part(part) for part in content]}
    text = "".join(p["text"] for p in content if p["type"] in ("output_text", "input_text"))
    refusals = [p["refusal"] for p in content if p["type"] == "refusal"]
    if not refusals:
        return {"role": "assistant", "content": text}
    parts = [{"type": "text", "text": text}] if text else []
    parts += [{"type": "refusal", "refusal": r} for r in refusals]
    return {"role": "assistant", "content": parts}


def _part(part: Item) -> dict[str, Any]:
    """An input part as a chat part (validation left only text and URL images)."""
    if part["type"] == "input_image":
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("auto", "low", "high"):  # chat has no "original"
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    return {"type": "text", "text": part["text"]}


def _tool_output(output: str | Sequence[Item]) -> tuple[Any, list[dict[str, Any]]]:
    if isinstance(output, str):
        return output, []
    texts = [{"type": "text", "text": p["text"]} for p in output if p["type"] == "input_text"]
    images = [_part(p) for p in output if p["type"] == "input_image"]
    return (texts or ""), images


# --- params ---------------------------------------------------------------------------------

_PASSED = ("temperature", "top_p", "user", "metadata", "safety_identifier", "prompt_cache_key")


def chat_params(request: Item) -> dict[str, Any]:
    """The chat params of a Responses request; the rest is echoed or ignored."""
    params: dict[str, Any] = {k: request[k] for k in _PASSED if request.get(k) is not None}
    if request.get("max_output_tokens") is not None:
        params["max_completion_tokens"] = request["max_output_tokens"]
    fmt = (request.get("text") or {}).get("format")
    if fmt is not None and fmt["type"] == "json_object":
        params["response_format"] = {"type": "json_object"}
    elif fmt is not None and fmt["type"] == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    choice = request.get("tool_choice")
    tools = [t for t in request.get("tools") or () if t["type"] == "function"]
    if isinstance(choice, Mapping) and choice["type"] == "allowed_tools":
        allowed = {t.get("name") for t in choice["tools"] if t.get("type") == "function"}
        tools = [t for t in tools if t["name"] in allowed]
        choice = choice["mode"]
    if not tools:
        return params  # no tool_choice or parallel_tool_calls without tools, as in chat
    params["tools"] = [_chat_tool(t) for t in tools]
    if isinstance(choice, Mapping):
        params["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None:
        params["tool_choice"] = choice
    if request.get("parallel_tool_calls") is not None:
        params["parallel_tool_calls"] = request["parallel_tool_calls"]
    return params


def _chat_tool(tool: Item) -> dict[str, Any]:
    function = {"name": tool["name"]}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


# --- input items, as GET /v1/responses/{id}/input_items lists them --------------------------


def new_id(prefix: str) -> str:
    """``prefix`` + 48 hex digits, the form of OpenAI's ids."""
    return f"{prefix}_{os.urandom(24).hex()}"


def input_items(request: Item, items: Mapping[str, Item] | None = None) -> list[dict[str, Any]]:
    """The request's input as stored items: each with an ``id`` (the client's, or a new
    ``msg_``/``fc_``/``fco_``/``rs_`` one) and a ``status``, references resolved (from
    ``items``; an unknown id is a 400), parts in their listed form. Store these with the
    response: they are its ``input_items`` and, with its output, the ``history`` of any
    response that continues it."""
    lookup = items or {}
    out = []
    for i, item in enumerate(input_list(request)):
        found = _resolve(item, lookup, f"input[{i}]")
        out.append(dict(found) if found is not item else _listed(item))
    return out


def _listed(item: Item) -> dict[str, Any]:
    kind = item_type(item)
    item_id = item.get("id") or new_id(_ID_PREFIXES.get(kind, "item"))
    status = item.get("status") or "completed"
    if kind == "message":
        return _listed_message(item, item_id, status)
    keys: tuple[str, ...]
    if kind == "function_call":
        keys = ("call_id", "name", "arguments")
    elif kind == "function_call_output":
        keys = ("call_id", "output")
    else:  # a dropped item: kept as sent, for the listing
        return {**item, "id": item_id}
    return {"id": item_id, "type": kind, **{k: item[k] for k in keys}, "status": status}


def _listed_message(item: Item, item_id: str, status: str) -> dict[str, Any]:
    role, content = item["role"], item["content"]
    head = {"id": item_id, "type": "message", "role": role, "status": status}
    if role != "assistant":
        if isinstance(content, str):
            return {**head, "content": [{"type": "input_text", "text": content}]}
        parts = []
        for part in content:
            if part["type"] == "input_image":
                part = {**part, "detail": part.get("detail") or "auto"}
            parts.append(dict(part))
        return {**head, "content": parts}
    if isinstance(content, str):
        content = [{"type": "output_text", "text": content}]
    parts = []
    for part in content:
        if part["type"] == "refusal":
            parts.append({"type": "refusal", "refusal": part["refusal"]})
            continue
        text: dict[str, Any] = {"type": "output_text", "text": part["text"]}
        text["annotations"] = part.get("annotations") or []
        if part.get("logprobs") is not None:
            text["logprobs"] = part["logprobs"]
        parts.append(text)
    if item.get("phase") is not None:
        head["phase"] = item["phase"]
    return {**head, "content": parts}
