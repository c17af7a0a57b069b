"""The one ASGI layer every request passes: request id, access control, limits, metrics, log.

Written as a single pure-ASGI class rather than a stack of middlewares because it sits on
the hot path: one function call and one scan of the headers per request.

- ``x-request-id``: taken from the request (if sane) or made, sent back on every response,
  and attached to every log line written while the request runs.
- Bearer keys, compared in constant time against every configured key; every route but
  ``/health`` and the web page needs one when keys are configured. A key's scope decides
  what the assistant may do for it, and whether the native API is open to it at all.
- The request body cap: a declared ``Content-Length`` over it is refused before anything is
  read; a chunked body is counted as it arrives.
- Per-client rate limits (token buckets keyed on the key, else on the peer address).
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import os
import re
import time
from collections import OrderedDict
from typing import Any

import orjson
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localgpt.agent.tools import Permissions
from localgpt.api.chat import PERMISSIONS_KEY
from localgpt.api.errors import APIError
from localgpt.api.metrics import Metrics
from localgpt.api.state import MODEL_KEY
from localgpt.config import Config, KeyConfig

log = logging.getLogger("localgpt.access")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# The page, its files and the API reference: nothing in them is private, and a browser
# cannot send a key when it navigates to them.
PUBLIC = frozenset({"/health", "/", "/favicon.ico", "/docs", "/openapi.json"})
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
PUBLIC_PREFIXES = ("/static/",)
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
SCOPES: dict[str, Permissions] = {
    "gateway": Permissions(assistant=False, write_memory=False),
    "assistant": Permissions(write_memory=False),
    "full": Permissions(),
    "admin": Permissions(local_tools=True),
}
NATIVE_SCOPES = frozenset({"full", "admin"})
READ_ONLY_NATIVE = ("/api/memory/search", "/api/memory/file", "/api/memory/stats", "/api/status")


class BodyTooLarge(APIError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The request body is larger than {limit} bytes.", code="request_too_large"
        )


class TokenBucket:
    """Per-client buckets: ``burst`` requests at once, refilled at ``per_minute``."""

    def __init__(self, per_minute: int, burst: int, clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._clients = clients

    def take(self, client: str, now: float) -> float:
        """0 if the request may go, else the seconds until it could."""
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[client] = (tokens - 1, now)
            self._buckets.move_to_end(client)
            if len(self._buckets) > self._clients:
                self._buckets.popitem(last=False)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (1 - tokens) / self.rate


class Gate:
    def __init__(self, app: ASGIApp, config: Config, metrics: Metrics) -> None:
        self.app = app
        # CORS only matters to browsers, which send an Origin: other requests skip it.
        self.cors = CORSMiddleware(
            app,
            allow_origins=config.server.cors_origins,
            allow_origin_regex=LOCALHOST_ORIGINS,
            allow_methods=["GET", "POST", "DELETE"],
            # Origins are what is restricted; SDKs add headers of their own (x-stainless-*).
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
        self.metrics = metrics
        self.keys: list[tuple[bytes, KeyConfig]] = [
            (k.key.encode(), k) for k in config.server.api_keys()
        ]
        # Rate-limit buckets by key position: names may repeat and prefixes may be shared.
        self.key_labels = {id(k): f"key:{i}" for i, (_, k) in enumerate(self.keys)}
        self.max_body = config.server.max_request_body
        limit = config.server.rate_limit
        self.limiter = (
            TokenBucket(limit.requests_per_minute, limit.burst) if limit.enabled else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        auth = rid = length = origin = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-request-id":
                rid = value
            elif name == b"content-length":
                length = value
            elif name == b"origin":
                origin = value
        if origin and scope["method"] == "OPTIONS":
            await self.cors(scope, receive, send)  # a preflight: it carries no key
            return
        rid_text = rid.decode() if rid and _SANE_ID.fullmatch(rid) else os.urandom(8).hex()
        token = request_id.set(rid_text)
        status = 500
        rid_header = (b"x-request-id", rid_text.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            refusal = self._admit(scope, auth, length)
            if refusal is not None:
                await _respond(refusal, send_with_id)
                return
            if not length and scope["method"] in ("POST", "PUT", "PATCH"):
                buffered = await self._buffered(receive)
                if buffered is None:
                    await _respond(BodyTooLarge(self.max_body), send_with_id)
                    return
                receive = buffered
            await (self.cors if origin else self.app)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.request(scope["method"], path, status, elapsed, scope.get(MODEL_KEY, ""))
            log.info("%s %s %d %.1fms", scope["method"], scope["path"], status, elapsed * 1e3)
            request_id.reset(token)

    def _admit(self, scope: Scope, auth: bytes, length: bytes) -> APIError | None:
        """Who may come in, and under which limits; None to let the request through."""
        path: str = scope["path"]
        if length and length.isdigit() and int(length) > self.max_body:
            return BodyTooLarge(self.max_body)
        key: KeyConfig | None = None
        if self.keys and path not in PUBLIC and not path.startswith(PUBLIC_PREFIXES):
            key = self._key(auth)
            if key is None:
                return APIError(
                    401,
                    "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if (
                path.startswith("/api/")
                and key.scope not in NATIVE_SCOPES
                and not (key.scope == "assistant" and path in READ_ONLY_NATIVE)
            ):
                return APIError(
                    403,
                    f"This key's scope ({key.scope}) does not allow {path}.",
                    type="permission_error",
                    code="insufficient_scope",
                )
            scope[PERMISSIONS_KEY] = SCOPES[key.scope]
        if self.limiter is not None and path not in PUBLIC:
            client = (
                self.key_labels[id(key)]
                if key is not None
                else f"ip:{(scope.get('client') or ('-',))[0]}"
            )
            wait = self.limiter.take(client, time.monotonic())
            if wait:
                return APIError(
                    429,
                    f"Rate limit reached for requests; retry after {wait:.1f} s.",
                    type="rate_limit_error",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(1, round(wait + 0.5)))},
                )
        return None

    def _key(self, auth: bytes) -> KeyConfig | None:
        scheme, _, presented = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not presented:
            return None
        found = None
        for secret, key in self.keys:  # every key is compared: the time says nothing
            if hmac.compare_digest(secret, presented.strip()):
                found = key
        return found

    async def _buffered(self, receive: Receive) -> Receive | None:
        """A chunked body, read whole here (it is capped), so one past the cap is a 413 on
        every route before any handler sees it; None when it is past the cap."""
        parts: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client left: the handler will see it
            part = message.get("body", b"")
            total += len(part)
            if total > self.max_body:
                return None
            parts.append(part)
            if not message.get("more_body"):
                message = {"type": "http.request", "body": b"".join(parts), "more_body": False}
                break
        pending = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        return replay


async def _respond(error: APIError, send: Send) -> None:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (error.headers or {}).items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()
