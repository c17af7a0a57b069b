"""``/v1/responses``: OpenAI's Responses API over every provider and the assistant layer.

A request becomes the chat request the agent runs (``convert.to_chat``, with the items of
the ``previous_response_id`` chain before its own input), and the reply becomes a Response
(``render.responses``). Stored responses are kept by a ``store.ResponseStore``; like
sessions, a key sees the responses it made.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from localgpt.agent.events import AgentBatches
from localgpt.agent.tools import Permissions
from localgpt.api.errors import APIError
from localgpt.api.render import stream_when_open
from localgpt.api.render.responses import ResponseEvents, completed_response
from localgpt.api.requests import openapi_body, parse_body, permissions
from localgpt.api.responses.convert import input_items, referenced_ids, to_chat
from localgpt.api.responses.objects import response_id
from localgpt.api.responses.protocol import ResponsesRequest
from localgpt.api.responses.store import ResponseStore, StoredResponse
from localgpt.api.state import AppState
from localgpt.api.streaming import DisconnectWatch, EventStreamResponse
from localgpt.providers.messages import ChatMessage, ChatParams

router = APIRouter()
MAX_CHAIN = 1000  # previous_response_id links followed at most


def not_found(response_id: str) -> APIError:
    return APIError(404, f"Response with id '{response_id}' not found.")


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


async def history(
    store: ResponseStore | None, previous: str | None, caller: Permissions
) -> list[dict[str, Any]]:
    """The items of the conversation ``previous`` ends, oldest first: each response's input
    then its output. The chain stops where an older response is gone (deleted, expired)."""
    if not previous:
        return []
    chain: list[StoredResponse] = []
    current: str | None = previous
    while current and len(chain) < MAX_CHAIN:
        record = await store.get(current) if store is not None else None
        if record is None or not record.visible_to(caller.caller, caller.admin):
            if current == previous:
                raise APIError(
                    400,
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            break
        chain.append(record)
        current = record.previous_response_id
    items: list[dict[str, Any]] = []
    for record in reversed(chain):
        items += record.input_items
        items += record.output
    return items


@router.post(
    "/v1/responses",
    openapi_extra=openapi_body(ResponsesRequest),
    summary="Create a model response",
    response_class=Response,
)
async def create_response(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    raw = await parse_body(await request.body(), ResponsesRequest, state.config.server.max_messages)
    caller = permissions(request)
    store = state.responses
    past = await history(store, raw.get("previous_response_id"), caller)
    wanted = referenced_ids(raw)
    found = (
        await store.find_items(wanted, caller.caller, caller.admin)
        if wanted and store is not None
        else {}
    )
    chat, params = to_chat(raw, past, found)
    messages: list[ChatMessage] = chat  # type: ignore[assignment]
    chat_params: ChatParams = params  # type: ignore[assignment]
    kept = input_items(raw, found)
    keep = store is not None and raw.get("store") is not False
    rid, created = response_id(), int(time.time())

    async def save(response: dict[str, Any]) -> None:
        if keep and store is not None:
            await store.put(StoredResponse(rid, time.time(), response, kept, caller.caller))

    model: str = raw["model"]
    watch = DisconnectWatch(request.receive)
    started = time.perf_counter()
    if raw.get("stream"):
        renderer = ResponseEvents(raw, rid, created)
        try:

            async def opening() -> tuple[str, AgentBatches]:
                route, batches = await state.agent.open_stream(model, messages, chat_params, caller)
                return route.id, batches

            body = await stream_when_open(
                opening(),
                renderer,
                lambda served: state.observer(served, True, request.scope),
                started,
                state.config.server.keepalive_interval,
            )
            return await EventStreamResponse.started(_saved(body, renderer, save), watch)
        except asyncio.CancelledError:
            if watch.absorb():
                return Response(status_code=499)
            raise
        except BaseException:
            watch.stop()
            raise
    try:
        route, completion = await state.agent.complete(model, messages, chat_params, caller)
    except asyncio.CancelledError:
        if watch.absorb():
            return Response(status_code=499)
        raise
    finally:
        watch.stop()
    state.observer(route.id, False, request.scope)(time.perf_counter() - started, completion.usage)
    choice = completion.choices[0]
    response = completed_response(
        raw,
        rid,
        created,
        choice.content,
        [(c.id, c.name, c.arguments) for c in choice.tool_calls],
        choice.finish_reason,
        completion.usage,
    )
    await save(response)
    return _json(response)


async def _saved(
    body: AsyncGenerator[bytes, None], renderer: ResponseEvents, save: Any
) -> AsyncGenerator[bytes, None]:
    """The stream, with its response stored before the terminal event goes out: the chunk
    that holds it is the one after which the renderer has a final ``response``."""
    saved = False
    try:
        async for chunk in body:
            if renderer.response is not None and not saved:
                saved = True
                await save(renderer.response)
            yield chunk
    finally:
        await body.aclose()


async def _stored(request: Request, response_id: str) -> tuple[ResponseStore, StoredResponse]:
    state: AppState = request.app.state.localgpt
    caller = permissions(request)
    store = state.responses
    record = await store.get(response_id) if store is not None else None
    if store is None or record is None or not record.visible_to(caller.caller, caller.admin):
        raise not_found(response_id)
    return store, record


@router.get("/v1/responses/{response_id}", summary="Get a stored response")
async def get_response(
    request: Request,
    response_id: str,
    stream: bool = False,
    include: list[str] | None = Query(None),
) -> Response:
    if stream:
        raise APIError(
            400,
            "Streaming a stored response is for background responses, which this server "
            "does not run; get it without 'stream'.",
            param="stream",
            code="invalid_value",
        )
    _, record = await _stored(request, response_id)
    return _json(record.response)


@router.delete("/v1/responses/{response_id}", summary="Delete a stored response")
async def delete_response(request: Request, response_id: str) -> Response:
    store, _ = await _stored(request, response_id)
    await store.delete(response_id)
    return _json({"id": response_id, "object": "response.deleted", "deleted": True})


@router.get("/v1/responses/{response_id}/input_items", summary="List a response's input items")
async def list_input_items(
    request: Request,
    response_id: str,
    limit: int = Query(20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
    before: str | None = None,
    include: list[str] | None = Query(None),
) -> Response:
    _, record = await _stored(request, response_id)
    items = list(record.input_items)
    if order == "desc":
        items.reverse()
    ids = [item.get("id") for item in items]
    start, stop = 0, len(items)
    if after is not None:
        start = ids.index(after) + 1 if after in ids else len(items)
    if before is not None:
        stop = ids.index(before) if before in ids else stop
    page = items[start:stop][:limit]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + len(page) < stop,
        }
    )
