"""A Messages request for an Anthropic provider, passed through untouched.

When the assistant layer stays out of a request (gateway mode, or a gateway-scoped key) and
every model it may be routed to is served by a provider that speaks Anthropic's API itself
(``providers.base.ForwardsMessages``), the client's body goes upstream as it came, with only
``model`` changed to the upstream's name, and the upstream's answer comes back as it was,
with only ``model`` changed back: cache control, thinking blocks and their signatures,
citations, server tools and the client's ``anthropic-beta`` all survive, which no
translation through the chat format can promise. The router still picks the provider, fails
over and holds a capacity slot; the stream is read only to count its usage for ``/metrics``
and to notice an upstream that stops before ``message_stop``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

import orjson
from starlette.requests import Request

from localgpt.agent.tools import Permissions
from localgpt.api.anthropic.errors import error_type
from localgpt.api.render import Observer
from localgpt.api.render.anthropic import event
from localgpt.api.state import AppState
from localgpt.providers.base import ForwardsMessages, Provider
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Usage
from localgpt.providers.router import Route

PASSED_HEADERS = ("anthropic-version", "anthropic-beta")
CUT = (
    b'event: error\ndata: {"type":"error","error":{"type":"api_error","message":'
    b'"the upstream ended the stream before it was complete"}}\n\n'
)


def forwardable(state: AppState, model: str, caller: Permissions) -> bool:
    if not (state.agent.gateway or not caller.assistant):
        return False
    return state.router.all_can(model, ForwardsMessages)


def upstream_headers(request: Request) -> dict[str, str]:
    return {name: request.headers[name] for name in PASSED_HEADERS if name in request.headers}


def upstream_path(request: Request, path: str) -> str:
    """``path`` with the client's ``?beta=true``, which selects Anthropic's beta features."""
    beta = request.query_params.get("beta")
    return f"{path}?beta={beta}" if beta else path


def _messages(provider: Provider) -> ForwardsMessages:
    return cast(ForwardsMessages, provider)


async def forward(
    state: AppState, request: Request, raw: Mapping[str, Any], path: str
) -> tuple[Route, dict[str, Any]]:
    """A non-streamed call (a message or a token count) through the router."""
    headers = upstream_headers(request)
    target = upstream_path(request, path)

    async def call(provider: Provider, route: Route) -> dict[str, Any]:
        body = {**raw, "model": route.model}
        return await _messages(provider).messages(body, headers, target)

    return await state.router.forward(raw["model"], call)


async def open_stream(
    state: AppState, request: Request, raw: Mapping[str, Any]
) -> tuple[Route, AsyncGenerator[bytes, None]]:
    headers = upstream_headers(request)

    def make(provider: Provider, route: Route) -> AsyncGenerator[bytes, None]:
        return _messages(provider).messages_stream({**raw, "model": route.model}, headers)

    return await state.router.open_native(raw["model"], make)


def usage_of(usage: Mapping[str, Any] | None) -> Usage:
    usage = usage or {}
    cached = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(
        int(usage.get("input_tokens") or 0) + cached + written,
        int(usage.get("output_tokens") or 0),
        cached or None,
    )


async def relay(
    chunks: AsyncGenerator[bytes, None], model: str, observe: Observer, started: float
) -> AsyncGenerator[bytes, None]:
    """The upstream's events as they come, with ``message_start``'s model renamed; usage
    and the time to the first content delta reported to ``observe``."""
    pending = b""
    usage: dict[str, Any] = {}
    first: float | None = None
    ended = False
    try:
        try:
            async for chunk in chunks:
                pending += chunk
                cut = pending.rfind(b"\n\n")
                if cut < 0:
                    continue
                ready, pending = pending[: cut + 2], pending[cut + 2 :]
                out = []
                for block in ready.split(b"\n\n")[:-1]:
                    kind = _event_name(block)
                    if kind == b"message_start":
                        block, found = _renamed(block, model)
                        usage.update(found)
                    elif kind == b"message_delta":
                        usage.update(_data(block).get("usage") or {})
                    elif kind == b"content_block_delta" and first is None:
                        first = time.perf_counter() - started
                    elif kind in (b"message_stop", b"error"):
                        ended = True
                    out.append(block + b"\n\n")
                yield b"".join(out)
        except ProviderError as exc:  # the upstream failed mid-way: a half event is dropped
            error = {"type": error_type(exc.status), "message": exc.message}
            yield event("error", {"error": error})
            return
        if not ended:
            yield CUT  # never a silent end
    finally:
        await chunks.aclose()
        observe(first, usage_of(usage))


def _event_name(block: bytes) -> bytes:
    for line in block.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip()
    return b""


def _data(block: bytes) -> dict[str, Any]:
    lines = [line[5:].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
    try:
        found = orjson.loads(b"\n".join(lines))
    except orjson.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


def _renamed(block: bytes, model: str) -> tuple[bytes, dict[str, Any]]:
    """``message_start`` with the model the client asked for, and its usage."""
    data = _data(block)
    message = data.get("message")
    if not isinstance(message, dict):
        return block, {}
    message["model"] = model
    return b"event: message_start\ndata: " + orjson.dumps(data), message.get("usage") or {}
