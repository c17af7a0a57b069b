"""``/v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API over every
provider and the assistant layer, for the anthropic SDK and Claude Code.

A request for an Anthropic provider with no assistant layer in the way passes through
(``forward``); any other becomes the chat request the agent runs (``convert.to_chat``) and
its reply a Message (``render.anthropic``). Every error on these paths is in Anthropic's
shape (``errors.shape``), the gate's and the providers' included.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from localgpt.agent.budget import estimate_tokens
from localgpt.agent.events import AgentBatches
from localgpt.api import errors
from localgpt.api.anthropic import forward
from localgpt.api.anthropic.convert import message_id, message_object, to_chat
from localgpt.api.anthropic.errors import ANTHROPIC_WORDING, shape
from localgpt.api.anthropic.protocol import CountTokensRequest, MessagesRequest
from localgpt.api.render import stream_when_open
from localgpt.api.render.anthropic import MessageEvents, usage_of
from localgpt.api.requests import openapi_body, parse_body, permissions
from localgpt.api.state import AppState
from localgpt.api.streaming import DisconnectWatch, EventStreamResponse
from localgpt.providers.messages import ChatMessage, ChatParams
from localgpt.providers.stops import StopWatch

router = APIRouter()
PREFIX = "/v1/messages"
errors.speak(PREFIX, shape)


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _chat(raw: dict[str, Any]) -> tuple[list[ChatMessage], ChatParams]:
    messages, params = to_chat(raw)
    return cast(list[ChatMessage], messages), cast(ChatParams, params)


@router.post(
    PREFIX,
    openapi_extra=openapi_body(MessagesRequest),
    summary="Create a message (Anthropic)",
    response_class=Response,
)
async def create_message(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    raw = await parse_body(
        await request.body(), MessagesRequest, state.config.server.max_messages, ANTHROPIC_WORDING
    )
    caller = permissions(request)
    model: str = raw["model"]
    started = time.perf_counter()
    if forward.forwardable(state, model, caller):
        return await _forwarded(state, request, raw, started)
    messages, params = _chat(raw)
    stops = None
    if raw.get("stop_sequences"):
        params.pop("stop", None)  # matched here, to report which one ended the reply
        stops = StopWatch(raw["stop_sequences"])
    rid = message_id()
    if not raw["max_tokens"]:  # nothing to generate: the prompt's size is the answer
        usage = usage_of(None) | {"input_tokens": estimate_tokens(messages)}
        message = message_object(model=model, usage=usage, finish_reason="length", id=rid)
        if raw.get("stream"):
            return _empty_stream(message)
        return _json(message)
    watch = DisconnectWatch(request.receive)
    if raw.get("stream"):
        renderer = MessageEvents(model, rid, estimate_tokens(messages), stops)
        try:

            async def opening() -> tuple[str, AgentBatches]:
                route, batches = await state.agent.open_stream(
                    model, messages, params, caller, stops=stops
                )
                return route.id, batches

            body = await stream_when_open(
                opening(),
                renderer,
                lambda served: state.observer(served, True, request.scope),
                started,
                state.config.server.keepalive_interval,
            )
            return await EventStreamResponse.started(body, watch)
        except asyncio.CancelledError:
            if watch.absorb():
                return Response(status_code=499)
            raise
        except BaseException:
            watch.stop()
            raise
    try:
        route, completion = await state.agent.complete(model, messages, params, caller, stops)
    except asyncio.CancelledError:
        if watch.absorb():
            return Response(status_code=499)
        raise
    finally:
        watch.stop()
    state.observer(route.id, False, request.scope)(time.perf_counter() - started, completion.usage)
    choice = completion.choices[0]
    matched = stops.matched if stops is not None else None
    return _json(
        message_object(
            model=model,
            usage=usage_of(completion.usage),
            text=choice.content,
            calls=[(c.id, c.name, c.arguments) for c in choice.tool_calls],
            finish_reason=choice.finish_reason,
            stop_sequence=matched,
            id=rid,
        )
    )


def _empty_stream(message: dict[str, Any]) -> Response:
    """The events of a message with no content (``max_tokens: 0``)."""
    from localgpt.api.render.anthropic import event

    start = {**message, "stop_reason": None, "content": []}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    body = b"".join(
        (
            event("message_start", {"message": start}),
            event("message_delta", {"delta": delta, "usage": {"output_tokens": 0}}),
            event("message_stop", {}),
        )
    )
    return Response(body, media_type="text/event-stream")


async def _forwarded(
    state: AppState, request: Request, raw: dict[str, Any], started: float
) -> Response:
    model: str = raw["model"]
    if raw.get("stream"):
        watch = DisconnectWatch(request.receive)
        try:
            route, chunks = await forward.open_stream(state, request, raw)
            observe = state.observer(route.id, True, request.scope)
            body = forward.relay(chunks, model, observe, started)
            return await EventStreamResponse.started(body, watch)
        except asyncio.CancelledError:
            if watch.absorb():
                return Response(status_code=499)
            raise
        except BaseException:
            watch.stop()
            raise
    route, message = await forward.forward(state, request, raw, PREFIX)
    message["model"] = model
    usage = forward.usage_of(message.get("usage"))
    state.observer(route.id, False, request.scope)(time.perf_counter() - started, usage)
    return _json(message)


@router.post(
    PREFIX + "/count_tokens",
    openapi_extra=openapi_body(CountTokensRequest),
    summary="Count a message's tokens (Anthropic)",
    response_class=Response,
)
async def count_tokens(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    raw = await parse_body(
        await request.body(),
        CountTokensRequest,
        state.config.server.max_messages,
        ANTHROPIC_WORDING,
    )
    caller = permissions(request)
    if forward.forwardable(state, raw["model"], caller):
        _, counted = await forward.forward(state, request, raw, PREFIX + "/count_tokens")
        return _json(counted)
    messages, params = _chat(raw)
    tokens = await state.agent.count_prompt(raw["model"], messages, params, caller)
    return _json({"input_tokens": tokens})
