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
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import time
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import orjson
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localgpt.agent.tools import Permissions
from localgpt.api.errors import APIError, backend_down, error_response
from localgpt.api.metrics import Metrics
from localgpt.api.requests import PERMISSIONS_KEY
from localgpt.api.state import MODEL_KEY
from localgpt.config import Config, KeyConfig
from localgpt.shared.errors import BackendDown

if TYPE_CHECKING:
    from localgpt.shared.hot import HotState

log = logging.getLogger("localgpt.access")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# The page, its files and the API reference: nothing in them is private, and a browser
# cannot send a key when it navigates to them.
PUBLIC = frozenset({"/health", "/", "/favicon.ico", "/docs", "/openapi.json"})
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"
PUBLIC_PREFIXES = ("/static/",)
ANTHROPIC_PREFIX = "/v1/messages"
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
SHARED_CLIENT = "localgpt.limit_client"  # the rate-limit bucket to take from Redis
SCOPES: dict[str, Permissions] = {
    "gateway": Permissions(assistant=False, write_memory=False),
    "assistant": Permissions(write_memory=False),
    "full": Permissions(),
    "admin": Permissions(local_tools=True),
    "metrics": Permissions(assistant=False, write_memory=False),  # /metrics and /ready only
}
NATIVE_SCOPES = frozenset({"full", "admin"})
READ_ONLY_NATIVE = ("/api/memory/search", "/api/memory/file", "/api/memory/stats", "/api/status")


LOCALHOST_ORIGIN = re.compile(LOCALHOST_ORIGINS.encode())


def _mcp_servers(key: KeyConfig) -> frozenset[str] | None:
    """The MCP servers whose tools a key's assistant may use: those it names, else all for a
    full or admin key and none for the others."""
    if key.mcp is not None:
        return frozenset(key.mcp)
    return None if key.scope in ("full", "admin") else frozenset()


def caller_of(key: str) -> str:
    """A key's identity where it is stored (session files, stash keys): not the key."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _host_name(host: bytes) -> str:
    """The name in a Host header, without its port and brackets, lowercased."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text[1:]
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


def _is_json(kind: bytes) -> bool:
    media = kind.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


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
    def __init__(
        self, app: ASGIApp, config: Config, metrics: Metrics, hot: HotState | None = None
    ) -> None:
        self.app = app
        self.hot = hot  # [state] url: the buckets are in Redis, shared by every process
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
        allowed = config.server.allowed_hosts
        self.any_host = "*" in allowed
        self.hosts = frozenset({"localhost", *(h.lower() for h in allowed)})
        self.origins = frozenset(o.encode() for o in config.server.cors_origins)
        self.keys: list[tuple[bytes, KeyConfig]] = [
            (k.key.encode(), k) for k in config.server.api_keys()
        ]
        # Rate-limit buckets by the key's identity (a hash, as sessions are): names may repeat,
        # and with Redis the buckets are shared by replicas whose key lists may be ordered
        # differently.
        self.key_labels = {id(k): caller_of(k.key) for _, k in self.keys}
        # What each key may do, and who it is: its tool turns and sessions are its own. The
        # identity is a hash of the key, so it survives a reordered or renamed key list.
        self.grants = {
            id(k): replace(
                SCOPES[k.scope],
                caller=caller_of(k.key),
                admin=k.scope == "admin",
                mcp=_mcp_servers(k),
            )
            for _, k in self.keys
        }
        self.max_body = config.server.max_request_body
        limit = config.server.rate_limit
        self.limit = limit
        self.limiter = (
            TokenBucket(limit.requests_per_minute, limit.burst)
            if limit.enabled and hot is None
            else None
        )
        self.shared_limit = limit.enabled and hot is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        auth = rid = length = origin = host = kind = b""
        chunked = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value
            elif name == b"x-api-key":  # Anthropic's clients send their key here
                auth = auth or b"Bearer " + value
            elif name == b"x-request-id":
                rid = value
            elif name == b"content-length":
                length = value
            elif name == b"origin":
                origin = value
            elif name == b"host":
                host = value
            elif name == b"content-type":
                kind = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        browser = self._browser_refusal(scope, host, origin, kind, length, chunked)
        if browser is not None:
            await _respond(scope, receive, browser, send)
            return
        if origin and scope["method"] == "OPTIONS":
            await self.cors(scope, receive, send)  # a preflight: it carries no key
            return
        rid_text = rid.decode() if rid and _SANE_ID.fullmatch(rid) else os.urandom(8).hex()
        token = request_id.set(rid_text)
        status = 500
        rid_headers = [(b"x-request-id", rid_text.encode())]
        if scope["path"].startswith(ANTHROPIC_PREFIX):  # where Anthropic's clients look
            rid_headers.append((b"request-id", rid_text.encode()))

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *rid_headers]
            await send(message)

        try:
            refusal = self._admit(scope, auth, length)
            if refusal is None and SHARED_CLIENT in scope:
                refusal = await self._take_shared(scope[SHARED_CLIENT])
            if refusal is not None:
                await _respond(scope, receive, refusal, send_with_id)
                return
            if not length and scope["method"] in ("POST", "PUT", "PATCH"):
                buffered = await self._buffered(receive)
                if buffered is None:
                    await _respond(scope, receive, BodyTooLarge(self.max_body), send_with_id)
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

    def _browser_refusal(
        self,
        scope: Scope,
        host: bytes,
        origin: bytes,
        kind: bytes,
        length: bytes,
        chunked: bool,
    ) -> APIError | None:
        """What a web page must not make this server do, with or without keys.

        - A ``Host`` that names the server by a name it was not given (DNS rebinding: a
          page's own name made to point at 127.0.0.1) is refused; IP addresses, localhost
          and ``[server] allowed_hosts`` are not names an attacker can point here.
        - A request from a page whose ``Origin`` is neither allowed (localhost pages,
          ``cors_origins``) nor this server itself is refused: without keys, a form or
          ``fetch`` from any site would otherwise run the assistant and write its memory.
        - A body that is not JSON is refused: browsers send ``text/plain`` and form bodies
          cross-site without asking first, and no API here takes them.
        """
        if self.any_host is False and host and not self._host_allowed(host):
            name = host.decode("latin-1")
            return APIError(
                403,
                f"This server does not answer to the host name '{name}'. Add it to "
                "[server] allowed_hosts if it is yours (a reverse proxy or a LAN name).",
                type="permission_error",
                code="forbidden_host",
            )
        if origin and not self._origin_allowed(origin, host):
            return APIError(
                403,
                f"Requests from web pages at {origin.decode('latin-1')} are not allowed; add "
                "the origin to [server] cors_origins if it is yours.",
                type="permission_error",
                code="forbidden_origin",
            )
        method = scope["method"]
        if (
            method in ("POST", "PUT", "PATCH")
            and (chunked or (length and length != b"0"))
            and not _is_json(kind)
        ):
            shown = kind.decode("latin-1") or "none"
            return APIError(
                415,
                f"Request bodies must be JSON (Content-Type: application/json); got {shown}.",
                code="unsupported_media_type",
            )
        return None

    def _host_allowed(self, host: bytes) -> bool:
        name = _host_name(host)
        if name in self.hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _origin_allowed(self, origin: bytes, host: bytes) -> bool:
        if origin in self.origins or LOCALHOST_ORIGIN.fullmatch(origin):
            return True
        # The server's own pages (the chat page, /docs) fetch with their own origin.
        scheme, _, rest = origin.partition(b"://")
        return bool(rest) and rest.lower() == host.lower() and scheme in (b"http", b"https")

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
                    "Incorrect API key provided. Send it as 'Authorization: Bearer <key>' (or "
                    "'x-api-key: <key>').",
                    code="invalid_api_key",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if path == "/metrics" and key.scope not in ("admin", "metrics"):
                return _scope_error(key, path, ": /metrics needs an admin or a metrics key")
            if key.scope == "metrics" and path not in ("/metrics", "/ready"):
                return _scope_error(key, path)
            if path == "/mcp" and key.scope == "gateway":
                return _scope_error(key, path, ": the memory's MCP server needs an assistant key")
            if (
                path.startswith("/api/")
                and key.scope not in NATIVE_SCOPES
                and not (key.scope == "assistant" and path in READ_ONLY_NATIVE)
            ):
                return _scope_error(key, path)
            scope[PERMISSIONS_KEY] = self.grants[id(key)]
        if (self.limiter is not None or self.shared_limit) and path not in PUBLIC:
            client = (
                self.key_labels[id(key)]
                if key is not None
                else f"ip:{(scope.get('client') or ('-',))[0]}"
            )
            if self.limiter is None:
                scope[SHARED_CLIENT] = client  # taken from Redis, next
                return None
            wait = self.limiter.take(client, time.monotonic())
            if wait:
                return _limited(wait)
        return None

    async def _take_shared(self, client: str) -> APIError | None:
        assert self.hot is not None
        try:
            wait = await self.hot.take(client, self.limit.requests_per_minute, self.limit.burst)
        except BackendDown as exc:
            return backend_down(exc)
        return _limited(wait) if wait else None

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


def _limited(wait: float) -> APIError:
    return APIError(
        429,
        f"Rate limit reached for requests; retry after {wait:.1f} s.",
        type="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(max(1, round(wait + 0.5)))},
    )


def _scope_error(key: KeyConfig, path: str, why: str = "") -> APIError:
    return APIError(
        403,
        f"This key's scope ({key.scope}) does not allow {path}{why}.",
        type="permission_error",
        code="insufficient_scope",
    )


async def _respond(scope: Scope, receive: Receive, error: APIError, send: Send) -> None:
    await error_response(scope["path"], error)(scope, receive, send)


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
