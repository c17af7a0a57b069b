"""What every route does with a request before its own work: read and validate the JSON body,
describe it in /openapi.json, and learn what the caller may do.

Bodies are validated into the wire models of ``api.protocol`` (unknown fields and wrong types
are OpenAI's 400s), and the decoded dict is what travels on. A large body is validated a
slice of messages at a time, letting the event loop serve other requests between slices: one
call validating 200,000 messages held the loop for 0.4 s, and five of them stalled /health
for seconds. ``[server] max_messages`` bounds the work a request may ask for, and a body with
more messages than that is refused before it is decoded.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError

from localgpt.agent.tools import Permissions
from localgpt.api.errors import APIError, validation_error

BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
)
SLICE = 1000  # messages validated between two turns of the event loop
HEAVY = 1 << 20  # bytes: a body this large is decoded with care (see parse_body)
PERMISSIONS_KEY = "localgpt.permissions"
FULL = Permissions()


def decode(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or OpenAI's 400."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise APIError(400, BAD_JSON, code="invalid_json") from None
    if not isinstance(raw, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    return raw


@dataclass(frozen=True, slots=True)
class Wording:
    """How an API words a body it cannot take: the JSON error, the validation error, and
    whether its messages may be validated a slice at a time (not when a rule spans them)."""

    bad_json: Callable[[bytes], dict[str, Any]]
    invalid: Callable[[Sequence[Any]], Exception]
    sliced: bool = True


OPENAI = Wording(decode, validation_error)


def validate(raw: dict[str, Any], model: type[BaseModel], wording: Wording = OPENAI) -> None:
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        raise wording.invalid(exc.errors(include_url=False)) from None


async def parse_body(
    body: bytes,
    model: type[BaseModel],
    max_messages: int | None = None,
    wording: Wording = OPENAI,
) -> dict[str, Any]:
    """Decode and validate a request; the dict that comes back is what the client sent."""
    if len(body) < HEAVY:
        return await _parse(body, model, max_messages, wording)
    if max_messages is not None:
        # Each message has a "role" key; inside a string the quotes would be escaped.
        _check_count(body.count(b'"role"'), max_messages)
    # Decoding holds the interpreter for up to ~70 ms at the body cap (no thread helps: the
    # parser never lets go of it), and a body's objects make the garbage collector's full
    # passes longer while they live. So large bodies are parsed one at a time, with a turn
    # of the event loop before each and between slices of their messages.
    async with _heavy_lock():
        await asyncio.sleep(0)
        return await _parse(body, model, max_messages, wording)


async def _parse(
    body: bytes, model: type[BaseModel], max_messages: int | None, wording: Wording
) -> dict[str, Any]:
    raw = wording.bad_json(body)
    messages = raw.get("messages")
    if isinstance(messages, list):
        if max_messages is not None:
            _check_count(len(messages), max_messages)
        if wording.sliced and len(messages) > SLICE and "messages" in model.model_fields:
            await _validate_messages(messages, model)
            validate({**raw, "messages": messages[:1]}, model, wording)
            return raw
    validate(raw, model, wording)
    return raw


def _check_count(found: int, limit: int) -> None:
    if found > limit:
        raise APIError(
            400,
            f"The request has {found} messages; this server takes at most {limit} "
            "([server] max_messages).",
            param="messages",
            code="too_many_messages",
        )


_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


def _heavy_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _locks.get(loop)
    if lock is None:
        lock = _locks[loop] = asyncio.Lock()
    return lock


async def _validate_messages(messages: list[Any], model: type[BaseModel]) -> None:
    """The messages, a slice at a time, yielding to the event loop between slices; errors
    name the message as a whole-body validation would."""
    adapter = _messages_adapter(model)
    for start in range(0, len(messages), SLICE):
        try:
            adapter.validate_python(messages[start : start + SLICE])
        except ValidationError as exc:
            errors = []
            for error in exc.errors(include_url=False):
                loc = error.get("loc", ())
                if loc and isinstance(loc[0], int):
                    loc = (loc[0] + start, *loc[1:])
                errors.append({**error, "loc": ("messages", *loc)})
            raise validation_error(errors) from None
        await asyncio.sleep(0)


@functools.cache
def _messages_adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    annotation: Any = model.model_fields["messages"].annotation
    return TypeAdapter(annotation)


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """The request body schema for /openapi.json; the handlers read raw bytes themselves."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def permissions(request: Request) -> Permissions:
    """What this caller may let the assistant do: its key's scope, full without keys."""
    found: Permissions = request.scope.get(PERMISSIONS_KEY, FULL)
    return found
