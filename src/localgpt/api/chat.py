"""``POST /v1/chat/completions``: OpenAI's Chat Completions, stream and non-stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from localgpt.api.errors import APIError
from localgpt.api.protocol import IGNORED_FIELDS, ChatCompletionRequest
from localgpt.api.render import StreamRenderer, render_completion, render_stream
from localgpt.api.requests import openapi_body, parse_body, permissions
from localgpt.api.state import AppState
from localgpt.api.streaming import DisconnectWatch, EventStreamResponse

router = APIRouter()

_NOT_PARAMS = IGNORED_FIELDS | {"model", "messages"}


def check_chat(raw: dict[str, Any]) -> dict[str, Any]:
    """The rules between a chat request's fields, worded as OpenAI words them."""
    if raw.get("stream_options") is not None and not raw.get("stream"):
        raise APIError(
            400,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    choice = raw.get("tool_choice")
    if choice is not None and choice != "none" and choice != "auto":
        _check_tool_choice(choice, raw.get("tools") or [])
    return raw


def _check_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> None:
    """A choice that names or requires tools the request does not offer, refused as OpenAI
    refuses it, rather than left to each provider to fail in its own words."""
    if not tools:
        raise APIError(
            400,
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
            code="invalid_value",
        )
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name not in {(t.get("function") or {}).get("name") for t in tools}:
            raise APIError(
                400,
                f"Invalid value for 'tool_choice': function '{name}' is not in 'tools'.",
                param="tool_choice",
                code="invalid_value",
            )


def request_params(raw: dict[str, Any]) -> dict[str, Any]:
    params = {k: v for k, v in raw.items() if v is not None and k not in _NOT_PARAMS}
    if "max_completion_tokens" in params:
        params.pop("max_tokens", None)  # max_completion_tokens wins when both are set
    return params


@router.post(
    "/v1/chat/completions",
    openapi_extra=openapi_body(ChatCompletionRequest),
    summary="Create a chat completion",
    response_class=Response,
)
async def chat_completions(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    body = await request.body()
    raw = check_chat(
        await parse_body(body, ChatCompletionRequest, state.config.server.max_messages)
    )
    model: str = raw["model"]
    messages: list[dict[str, Any]] = raw["messages"]
    params = request_params(raw)
    watch = DisconnectWatch(request.receive)
    started = time.perf_counter()
    if raw.get("stream"):
        try:
            route, batches = await state.agent.open_stream(
                model, messages, params, permissions(request)
            )
            include_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
            renderer = StreamRenderer(route.id, include_usage)
            observe = state.observer(route.id, True, request.scope)
            chunks = render_stream(batches, renderer, observe, started)
            return await EventStreamResponse.started(chunks, watch)
        except asyncio.CancelledError:
            if watch.absorb():
                return Response(status_code=499)
            raise
        except BaseException:
            watch.stop()
            raise
    try:
        route, completion = await state.agent.complete(
            model, messages, params, permissions(request)
        )
    except asyncio.CancelledError:
        if watch.absorb():
            return Response(status_code=499)
        raise
    finally:
        watch.stop()
    state.observer(route.id, False, request.scope)(time.perf_counter() - started, completion.usage)
    return Response(render_completion(completion, route.id), media_type="application/json")
