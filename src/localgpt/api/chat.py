"""``POST /v1/chat/completions``: OpenAI's Chat Completions, stream and non-stream."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

from fastapi import APIRouter, Request
from starlette.responses import Response

from localgpt.api.protocol import IGNORED_FIELDS, ChatCompletionRequest
from localgpt.api.render import render_stream
from localgpt.api.render.openai import ChatChunks, render_completion
from localgpt.api.requests import openapi_body, parse_body, permissions
from localgpt.api.state import AppState
from localgpt.api.streaming import DisconnectWatch, EventStreamResponse
from localgpt.providers.messages import ChatMessage, ChatParams

router = APIRouter()

_NOT_PARAMS = IGNORED_FIELDS | {"model", "messages"}


def chat_input(raw: dict[str, Any]) -> tuple[str, list[ChatMessage], ChatParams]:
    """The model, messages and other fields of a validated chat request, typed."""
    return raw["model"], cast(list[ChatMessage], raw["messages"]), request_params(raw)


def request_params(raw: dict[str, Any]) -> ChatParams:
    params = {k: v for k, v in raw.items() if v is not None and k not in _NOT_PARAMS}
    if "max_completion_tokens" in params:
        params.pop("max_tokens", None)  # max_completion_tokens wins when both are set
    return cast(ChatParams, params)


@router.post(
    "/v1/chat/completions",
    openapi_extra=openapi_body(ChatCompletionRequest),
    summary="Create a chat completion",
    response_class=Response,
)
async def chat_completions(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    body = await request.body()
    raw = await parse_body(body, ChatCompletionRequest, state.config.server.max_messages)
    model, messages, params = chat_input(raw)
    watch = DisconnectWatch(request.receive)
    started = time.perf_counter()
    if raw.get("stream"):
        try:
            route, batches = await state.agent.open_stream(
                model, messages, params, permissions(request)
            )
            include_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
            renderer = ChatChunks(route.id, include_usage)
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
