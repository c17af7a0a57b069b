"""Errors in Anthropic's shape, for ``/v1/messages`` and ``/v1/messages/count_tokens``.

Anthropic's clients read ``{"type": "error", "error": {"type", "message"}, "request_id"}``
(not OpenAI's ``{"error": {...}}``), pick their exception class by HTTP status, and Claude
Code matches some messages by wording. The real API validates
with pydantic and words a bad field as ``<dotted location>: <pydantic message>``, keeping the
tags of tagged unions and dropping union branch names:
``messages.0.content.1.image.source.base64.media_type: Input should be 'image/jpeg', ...``,
``tools.0.custom.name: String should match ...``, ``max_tokens: Field required``. The
models of ``anthropic.protocol`` are laid out so that pydantic's locations read the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from localgpt.api.errors import APIError
from localgpt.api.requests import Wording

# HTTP status -> Anthropic error type (as the anthropic SDK maps them).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP status (other 4xx are invalid requests)."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(
    status: int, type: str | None, message: str, request_id: str | None = None
) -> dict[str, Any]:
    """The error body; ``type`` ``None`` means the one that goes with ``status``."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": type or error_type(status), "message": message},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body


class AnthropicError(APIError):
    """An error worded for Anthropic's clients: ``type`` is Anthropic's (``not_found_error``).
    Raised as any ``APIError``; on ``/v1/messages`` paths every error is answered by
    ``response`` (see ``api.errors.speak``)."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, type=type or error_type(status), headers=headers)

    def body(self, request_id: str | None = None) -> dict[str, Any]:
        return anthropic_error(self.status, self.type, self.message, request_id)

    def response(self, request_id: str | None = None) -> Response:
        """The error; ``request_id`` goes in the body (the gate sends the header)."""
        headers = dict(self.headers or {})
        headers["x-should-retry"] = (
            "true" if self.status in (408, 409, 429, 503, 529) or (self.status >= 500) else "false"
        )
        return Response(
            orjson.dumps(self.body(request_id)),
            status_code=self.status,
            headers=headers,
            media_type="application/json",
        )

    @classmethod
    def from_api_error(cls, exc: APIError) -> AnthropicError:
        """An error raised in OpenAI's terms (a provider's, the gate's, a shared helper's),
        re-shaped; a named parameter leads the message as Anthropic's do."""
        if isinstance(exc, AnthropicError):
            return exc
        message = exc.message
        if exc.param and not message.startswith(exc.param):
            message = f"{exc.param}: {message}"
        return cls(exc.status, message, headers=exc.headers)


def shape(error: APIError) -> Response:
    """Any error on a Messages path, in Anthropic's shape (``api.errors.speak``)."""
    from localgpt.api.gate import request_id as current

    found = current.get()
    return AnthropicError.from_api_error(error).response(found if found != "-" else None)


# --- pydantic errors, worded as Anthropic words them ----------------------------------------

_BRANCHES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def location(loc: Sequence[int | str]) -> str:
    """``('messages', 0, 'content', 'list[...]', 1, 'text', 'text')`` ->
    ``messages.0.content.1.text.text``: union branches (``str``, ``list[...]``,
    ``function-after[...]``, class names) dropped, tagged-union tags kept."""
    parts = []
    for part in loc:
        if isinstance(part, str) and (
            "[" in part or part in _BRANCHES or part[:1].isupper() or part.startswith("function-")
        ):
            continue
        parts.append(str(part))
    return ".".join(parts)


def validation_error(errors: Sequence[Any]) -> AnthropicError:
    """One 400 naming the field, from pydantic's error list (the deepest error is the
    most specific one: for ``str | list`` it is the list branch)."""
    if not errors:
        return AnthropicError(400, "Invalid request.")
    err = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = tuple(err.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    message = str(err.get("msg", "Invalid value")).removeprefix("Value error, ")
    where = location(loc)
    return AnthropicError(400, f"{where}: {message}" if where else message)


def decode(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or Anthropic's 400."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AnthropicError(400, f"The request body is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise AnthropicError(400, "The request body is not valid JSON: expected an object")
    return raw


def validate(raw: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``raw`` checked against ``model``; the dict that comes back is what the client sent
    (so the conversions see exactly that), or an ``AnthropicError``."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None
    return raw


# Request bodies on these paths are refused in Anthropic's words, and validated whole: the
# pairing of tool_use and tool_result spans the messages.
ANTHROPIC_WORDING = Wording(decode, validation_error, sliced=False)
