"""Every error leaves the server in its API's shape, with the status that API would use:
OpenAI's by default; an API mounted under another prefix registers its own (``speak``),
and the handlers here and the gate answer through ``error_response``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from localgpt.providers.errors import ProviderError
from localgpt.shared.errors import BackendDown

log = logging.getLogger("localgpt.api")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> Response:
        return Response(
            orjson.dumps(self.body()),
            status_code=self.status,
            headers=self.headers,
            media_type="application/json",
        )

    @classmethod
    def from_provider(cls, exc: ProviderError) -> APIError:
        headers = {"Retry-After": exc.retry_after} if exc.retry_after else None
        return cls(
            exc.status,
            exc.message,
            type=exc.type,
            param=exc.param,
            code=exc.code,
            headers=headers,
        )


# --- the shape of an error, by path ---------------------------------------------------------

Shaper = Callable[[APIError], Response]
_dialects: list[tuple[str, Shaper]] = []


def speak(prefix: str, shaper: Shaper) -> None:
    """Errors on paths under ``prefix`` are answered by ``shaper`` (Anthropic's Messages)."""
    _dialects.append((prefix, shaper))


def error_response(path: str, error: APIError) -> Response:
    for prefix, shaper in _dialects:
        if path.startswith(prefix):
            return shaper(error)
    return error.response()


# --- pydantic errors, worded as OpenAI words them -------------------------------------------

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "dict_type": "an object",
    "list_type": "an array",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "int_from_float": "an integer",
}


def _param(loc: Sequence[int | str]) -> str:
    """``('messages', 0, 'user', 'content')`` -> ``messages[0].content``.

    pydantic puts union branches (``str``, ``list[...]``, model class names) and the tags of
    discriminated unions (a message's role, a part's type) into locations: they are dropped.
    """
    out = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        if "[" in part or part[:1].isupper() or part in _BRANCHES:
            continue
        before = [p for p in parts[:i] if not (isinstance(p, str) and "[" in p)]
        if before and _is_tag_position(before):
            continue
        out += f".{part}" if out else part
    return out


_BRANCHES = frozenset(
    {
        "str",
        "int",
        "float",
        "bool",
        "list",
        "dict",
        "function-after",
        "function-before",
        "function-wrap",
    }
)


def _is_tag_position(before: list[int | str]) -> bool:
    """True where the next location element is a discriminator tag."""
    last = before[-1]
    if last == "response_format":
        return True
    return isinstance(last, int) and len(before) >= 2 and before[-2] in ("messages", "content")


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def validation_error(errors: Sequence[Any]) -> APIError:
    """Turn pydantic's error list into one OpenAI-style 400 naming the parameter."""
    if not errors:
        return APIError(400, "Invalid request.")
    # The deepest location is the most specific: for 'str | list' it is the list branch.
    rule = next((e for e in errors if e.get("type") == "field_rule"), None)
    if rule is not None:  # a rule between fields (``api.protocol.field_error``)
        ctx = rule.get("ctx") or {}
        return APIError(400, rule["msg"], param=ctx.get("param"), code=ctx.get("code"))
    err = max(errors, key=lambda e: len(e.get("loc", ())))
    loc = tuple(err.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    param = _param(loc) or None
    kind = err.get("type", "")
    value = err.get("input")
    if kind == "extra_forbidden":
        if len(loc) == 1:
            message = f"Unrecognized request argument supplied: {loc[0]}"
        else:
            message = f"Additional properties are not allowed ('{loc[-1]}' was unexpected)."
        return APIError(400, message, param=param, code="unknown_parameter")
    if kind == "missing":
        return APIError(
            400,
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind in ("union_tag_invalid", "literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected_tags") or err.get("ctx", {}).get("expected")
        tag = err.get("ctx", {}).get("tag", value)
        message = f"Invalid value: '{tag}'."
        if expected:
            message += f" Supported values are: {expected}."
        if kind == "union_tag_invalid":
            field = err.get("ctx", {}).get("discriminator", "").strip("'")
            if field:
                param = f"{param}.{field}" if param else field
        return APIError(400, message, param=param, code="invalid_value")
    if kind == "union_tag_not_found":
        field = err.get("ctx", {}).get("discriminator", "").strip("'")
        param = f"{param}.{field}" if param else field
        return APIError(
            400,
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    if kind in _TYPE_NAMES or kind.endswith("_type"):
        expected = _TYPE_NAMES.get(kind, kind.removesuffix("_type"))
        return APIError(
            400,
            f"Invalid type for '{param}': expected {expected}, but got {_describe(value)}.",
            param=param,
            code="invalid_type",
        )
    if kind == "json_invalid":
        return APIError(
            400,
            "We could not parse the JSON body of your request. (HINT: This "
            "likely means you aren't using your HTTP library correctly. The OpenAI "
            "API expects a JSON payload.)",
            code="invalid_json",
        )
    message = err.get("msg", "invalid value").removeprefix("Value error, ")
    return APIError(400, f"Invalid '{param}': {message}.", param=param, code="invalid_value")


# --- handlers -------------------------------------------------------------------------------

_STATUS_TYPES = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", None),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", None),
}


def backend_down(exc: BackendDown) -> APIError:
    """A shared backend that does not answer: 503, retry soon; nothing was done."""
    which = "Redis ([state])" if exc.backend == "state" else "PostgreSQL ([storage])"
    # The details (hosts, ports, users) are for the server's log, not for every client.
    logging.getLogger("localgpt.shared").warning("%s", exc.message)
    return APIError(
        503,
        f"The server's shared {which} is unavailable; try again shortly.",
        type="server_error",
        code="backend_unavailable",
        headers={"Retry-After": "1"},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return error_response(request.url.path, exc)

    @app.exception_handler(ProviderError)
    async def _provider_error(request: Request, exc: ProviderError) -> Response:
        return error_response(request.url.path, APIError.from_provider(exc))

    @app.exception_handler(BackendDown)
    async def _backend_down(request: Request, exc: BackendDown) -> Response:
        return error_response(request.url.path, backend_down(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        bad = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad is not None and request.url.path.startswith("/api/"):
            # OpenAI's wording is for its own clients; the native API says what is wrong.
            where = bad.get("loc", ())[-1]
            detail = (bad.get("ctx") or {}).get("error") or "it does not parse"
            return APIError(
                400,
                f"The request body is not valid JSON ({detail} at character {where}); send "
                'a JSON object such as {"message": "Hello"}.',
                code="invalid_json",
            ).response()
        return error_response(request.url.path, validation_error(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        etype, code = _STATUS_TYPES.get(exc.status_code, ("invalid_request_error", None))
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"Unknown request URL: {request.method} {request.url.path}."
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed for {request.url.path}."
        else:
            message = str(exc.detail)
        if exc.status_code >= 500:
            etype = "server_error"
        headers = dict(exc.headers) if exc.headers else None
        error = APIError(exc.status_code, message, type=etype, code=code, headers=headers)
        return error_response(request.url.path, error)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = APIError(
            500,
            "The server had an error while processing your request.",
            type="server_error",
            code="internal_error",
        )
        return error_response(request.url.path, error)
