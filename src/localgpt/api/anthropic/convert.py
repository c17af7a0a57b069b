"""Anthropic's Messages API in terms of the chat request the rest of the server runs, and
the Message object back (shapes checked against the anthropic SDK's types).

Pure functions over *validated* request dicts (``anthropic.errors.validate`` returns the
JSON the client sent). The chat shape produced is the one of ``api.protocol``:

* ``system`` (a string or text blocks) becomes one system message, blocks joined by a
  blank line; the ``x-anthropic-billing-header: ...`` block Claude Code puts first is
  dropped (it changes between conversations and would spoil the prompt-prefix cache, as
  vLLM found); a mid-conversation ``system`` message stays a system message in place.
* a user turn's ``tool_result`` blocks become tool messages, first (chat needs them right
  after the calls), then the rest of the turn as one user message: text parts, images as
  ``image_url`` parts (base64 as data URLs), text documents and search results inlined as
  text, and any images the tool results held (a chat tool message takes text only).
  Empty text blocks are dropped rather than refused: Claude Code's history has them.
* an assistant turn becomes one assistant message: its text, and its ``tool_use`` blocks
  as ``tool_calls`` (``input`` as a JSON string); thinking and server-side blocks are
  dropped. A last assistant turn is a prefill: the model continues it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

Block = Mapping[str, Any]

BILLING_HEADER = "x-anthropic-billing-header"
# Where the arguments of a tool call that are not a JSON object go (see tool_input).
INVALID_ARGUMENTS = "_invalid_json_arguments"


def to_chat(request: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The chat ``(messages, params)`` of a Messages or count_tokens request."""
    messages: list[dict[str, Any]] = []
    system = system_text(request.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in request["messages"]:
        messages += _message(message)
    return messages, chat_params(request)


def system_text(system: str | Sequence[Block] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts = [b["text"] for b in system if not b["text"].lstrip().startswith(BILLING_HEADER)]
    return "\n\n".join(text for text in texts if text)


def dropped_tools(request: Mapping[str, Any]) -> list[str]:
    """The types of the server/versioned tools accepted but not offered to the model."""
    kinds = (t["type"] for t in request.get("tools") or () if t.get("type") not in (None, "custom"))
    return list(dict.fromkeys(kinds))


def _message(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    role, content = message["role"], message["content"]
    if isinstance(content, str):
        return [{"role": role, "content": content}] if content else []
    if role == "system":
        text = "\n\n".join(b["text"] for b in content if b["text"])
        return [{"role": "system", "content": text}] if text else []
    if role == "assistant":
        return _assistant(content)
    tools: list[dict[str, Any]] = []
    tool_images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        if block["type"] == "tool_result":
            text, images = _tool_result(block)
            tools.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            tool_images += images
        else:
            parts += _parts(block)
    parts = tool_images + parts
    return tools + ([{"role": "user", "content": parts}] if parts else [])


def _assistant(content: Sequence[Block]) -> list[dict[str, Any]]:
    text = "".join(b["text"] for b in content if b["type"] == "text")
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": orjson.dumps(b["input"]).decode()},
        }
        for b in content
        if b["type"] == "tool_use"
    ]
    if not calls:
        return [{"role": "assistant", "content": text}] if text else []
    return [{"role": "assistant", "content": text or None, "tool_calls": calls}]


def _parts(block: Block) -> list[dict[str, Any]]:
    """A user block (or a tool result's) as chat parts; blocks with nothing for the model
    (empty text, tool references, browser state) give none."""
    kind = block["type"]
    if kind == "text":
        return [{"type": "text", "text": block["text"]}] if block["text"].strip() else []
    if kind == "image":
        return [_image(block["source"])]
    if kind == "document":
        source = block["source"]
        inner: list[dict[str, Any]] = []
        if source["type"] == "text":
            body = source["data"]
        elif isinstance(source["content"], str):
            body = source["content"]
        else:
            inner = [p for b in source["content"] for p in _parts(b)]
            body = "\n".join(p["text"] for p in inner if p["type"] == "text")
        text = "\n\n".join(t for t in (block.get("title"), block.get("context"), body) if t)
        images = [p for p in inner if p["type"] == "image_url"]
        return ([{"type": "text", "text": text}] if text else []) + images
    if kind == "search_result":
        body = "\n".join(b["text"] for b in block["content"] if b["text"])
        return [{"type": "text", "text": "\n".join((block["title"], block["source"], body))}]
    return []


def _image(source: Block) -> dict[str, Any]:
    if source["type"] == "base64":
        url = f"data:{source['media_type']};base64,{source['data']}"
    else:
        url = source["url"]
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: Block) -> tuple[str, list[dict[str, Any]]]:
    """A tool result's text and its images. ``is_error`` prefixes the text with
    ``Error: ``, the only way a chat tool message can say the call failed."""
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    else:
        parts = [p for b in content for p in _parts(b)]
        text = "\n".join(p["text"] for p in parts if p["type"] == "text")
        images = [p for p in parts if p["type"] == "image_url"]
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return text, images


# --- params ---------------------------------------------------------------------------------


def chat_params(request: Mapping[str, Any]) -> dict[str, Any]:
    """The chat params; ``thinking``, ``output_config.effort``, caching hints and the
    other accepted fields have no chat equivalent and are not passed."""
    params: dict[str, Any] = {}
    if request.get("max_tokens"):  # 0 asks for no generation: the route answers itself
        params["max_completion_tokens"] = request["max_tokens"]
    if request.get("stop_sequences"):
        params["stop"] = list(request["stop_sequences"])
    for key in ("temperature", "top_p", "top_k"):  # top_k: the chat extension param
        if request.get(key) is not None:
            params[key] = request[key]
    user = (request.get("metadata") or {}).get("user_id")
    if user is not None:
        params["user"] = user
    fmt = (request.get("output_config") or {}).get("format")
    if fmt is not None:
        schema = {"name": "output", "schema": fmt["schema"]}
        params["response_format"] = {"type": "json_schema", "json_schema": schema}
    tools = [t for t in request.get("tools") or () if t.get("type") in (None, "custom")]
    if not tools:
        return params
    params["tools"] = [_chat_tool(t) for t in tools]
    choice = request.get("tool_choice")
    if choice is not None:
        kind = choice["type"]
        if kind == "tool":
            params["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
        else:
            params["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
        if choice.get("disable_parallel_tool_use"):
            params["parallel_tool_calls"] = False
    return params


def _chat_tool(tool: Block) -> dict[str, Any]:
    """``input_schema`` -> ``parameters`` (``type: object`` when missing, as vLLM does).
    Anthropic's beta ``strict`` is not passed: its schema rules are not OpenAI's, and an
    OpenAI upstream would refuse schemas Anthropic accepts."""
    schema = dict(tool["input_schema"])
    schema.setdefault("type", "object")
    function: dict[str, Any] = {"name": tool["name"], "parameters": schema}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


# --- the Message object ---------------------------------------------------------------------


def message_id() -> str:
    return "msg_" + os.urandom(12).hex()


def tool_use_id(call_id: str) -> str:
    """A ``toolu_`` id for a chat call id, derived so that a stream renderer and
    ``message_object`` agree. Clients echo it in ``tool_result``; ``to_chat`` then uses it
    as the chat call id on both sides, so no mapping back is needed."""
    return call_id if call_id.startswith("toolu_") else "toolu_" + call_id.removeprefix("call_")


def tool_input(arguments: str) -> dict[str, Any]:
    """A call's JSON arguments as the object ``tool_use.input`` must be. Arguments that are
    not a JSON object are not repaired or dropped: they go, as text, under
    ``INVALID_ARGUMENTS``, so the client's schema check fails visibly and the model sees
    what it sent, rather than a tool running with an invented ``{}``."""
    if not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {INVALID_ARGUMENTS: arguments}
    return value if isinstance(value, dict) else {INVALID_ARGUMENTS: arguments}


def stop_reason(finish_reason: str | None, stop_sequence: str | None = None) -> str | None:
    """Anthropic's ``stop_reason`` for a chat finish reason (``None``: still running).

    ``stop_sequence`` is the stop string that *matched*, when the engine says which one
    did. OpenAI-style engines do not (``finish_reason`` is ``"stop"`` for the end of turn
    and for a stop string alike, and the string is cut from the text), so with only a
    ``"stop"`` the answer is ``end_turn``: reporting ``stop_sequence`` because one was
    requested would claim a match that may not have happened.
    """
    if finish_reason is None:
        return None
    if finish_reason in ("tool_calls", "function_call"):
        return "tool_use"
    if finish_reason == "length":
        return "max_tokens"
    if finish_reason == "content_filter":
        return "refusal"
    return "stop_sequence" if stop_sequence is not None else "end_turn"


def usage_object(
    input_tokens: int, output_tokens: int, *, cached_tokens: int = 0
) -> dict[str, Any]:
    """Anthropic usage from chat counts: ``input_tokens`` is the whole prompt (chat's
    ``prompt_tokens``); Anthropic's ``input_tokens`` excludes the cached part, which goes
    in ``cache_read_input_tokens`` (their sum is the prompt, which Claude Code's context
    meter reads). Nothing is written to a cache Anthropic's way: creation counts are 0."""
    return {
        "input_tokens": input_tokens - cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached_tokens,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def message_object(
    *,
    model: str,
    usage: Mapping[str, Any],
    text: str | None = None,
    calls: Sequence[tuple[str, str, str]] = (),
    finish_reason: str | None = "stop",
    stop_sequence: str | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    """The full Message JSON.

    ``model``: the name the client asked for. ``text``: the final text (a text block when
    non-empty). ``calls``: ``(call_id, name, arguments)``, as ``tool_use`` blocks after the
    text. ``finish_reason``: the chat one (``None`` for ``message_start``'s message, whose
    content is empty and stop_reason null); any call makes it ``tool_use`` unless the
    output was cut (``length``: a cut call's input may be partial). ``stop_sequence``: the
    matched string, only if the engine reported it (see ``stop_reason``).
    """
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "text", "text": text})
    for call_id, name, arguments in calls:
        content.append(
            {
                "type": "tool_use",
                "id": tool_use_id(call_id),
                "name": name,
                "input": tool_input(arguments),
            }
        )
    reason = stop_reason(finish_reason, stop_sequence)
    if calls and reason not in (None, "max_tokens"):
        reason = "tool_use"
    return {
        "id": id or message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": stop_sequence if reason == "stop_sequence" else None,
        "usage": dict(usage),
    }
