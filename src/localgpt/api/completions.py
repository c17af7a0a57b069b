"""``POST /v1/completions``: the legacy text endpoint, with ``suffix`` for fill-in-the-middle.

Editors such as Continue use it for autocomplete. It takes raw text and gives raw text back:
no assistant prompt is added, whatever the mode.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from localgpt.api.chat import request_params
from localgpt.api.protocol import CompletionRequest
from localgpt.api.render import render_stream
from localgpt.api.render.openai import TextChunks, collect_text
from localgpt.api.requests import openapi_body, parse_body
from localgpt.api.state import AppState
from localgpt.api.streaming import DisconnectWatch, EventStreamResponse

router = APIRouter()


@router.post(
    "/v1/completions",
    openapi_extra=openapi_body(CompletionRequest),
    summary="Create a text completion",
    response_class=Response,
)
async def completions(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    raw = await parse_body(await request.body(), CompletionRequest)
    params = request_params({k: v for k, v in raw.items() if k != "prompt"})
    watch = DisconnectWatch(request.receive)
    started = time.perf_counter()
    try:
        route, batches = await state.agent.open_text_stream(raw["model"], raw["prompt"], params)
        if raw.get("stream"):
            include_usage = bool((raw.get("stream_options") or {}).get("include_usage"))
            renderer = TextChunks(route.id, include_usage)
            observe = state.observer(route.id, True, request.scope)
            stream = render_stream(batches, renderer, observe, started)
            return await EventStreamResponse.started(stream, watch)
        body = await collect_text(
            batches, route.id, state.observer(route.id, False, request.scope), started
        )
    except asyncio.CancelledError:
        if watch.absorb():
            return Response(status_code=499)
        raise
    except BaseException:
        watch.stop()
        raise
    watch.stop()
    return Response(body, media_type="application/json")
