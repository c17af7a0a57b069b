"""LocalGPT's native API: sessions kept by the server, chat on them, memory, status.

Upstream's routes and SSE event types: ``session``, ``content`` (``delta``), ``tool_start``
(``name``, ``id``, and here also ``arguments``), ``tool_end`` (``name``, ``id``, ``output``),
``done`` and ``error``. Each event is sent both as an SSE event name and as a ``type`` field,
so clients that read either work. Errors are in OpenAI's shape, like the rest of the server.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, Body, Query, Request
from starlette.responses import Response

from localgpt import __version__
from localgpt.agent.conversation import Conversations
from localgpt.agent.events import AgentEvent
from localgpt.agent.sessions import Session
from localgpt.api.errors import APIError
from localgpt.api.protocol import ChatBody, ModelBody, NewSession, ReindexBody
from localgpt.api.render import CONTENT, Observer, render_stream
from localgpt.api.render.native import NativeEvents, event
from localgpt.api.render.openai import usage_dict
from localgpt.api.requests import permissions
from localgpt.api.state import AppState
from localgpt.api.streaming import DisconnectWatch, EventStreamResponse
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import Usage

log = logging.getLogger("localgpt.api")

router = APIRouter(prefix="/api")
ANSWERED_BY = "localgpt.answered_by"  # on the scope: the model that answered a turn
STARTED = time.time()


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.localgpt
    return state


def _conversations(request: Request) -> Conversations:
    conversations = _state(request).conversations
    if conversations is None:
        raise APIError(404, "Sessions are off in gateway mode.", code="not_found")
    return conversations


async def _session(request: Request, session_id: str) -> Session:
    """The session, if this caller may see it: another key's session is as missing as one
    that does not exist. Read on a thread: it may be a query to PostgreSQL."""
    session = await asyncio.to_thread(_conversations(request).store.get, session_id)
    caller = permissions(request)
    if session is None or not session.visible_to(caller.caller, caller.admin):
        raise APIError(
            404, f"No session '{session_id}'.", param="session_id", code="session_not_found"
        )
    return session


@asynccontextmanager
async def _locked(request: Request, session_id: str) -> AsyncIterator[Session]:
    """The session, held against turns and other changes; 404 if it is missing, also when
    it was deleted while this request waited for it."""
    await _session(request, session_id)
    async with _conversations(request).lock(session_id):
        yield await _session(request, session_id)


def _model(request: Request, model: str | None) -> str | None:
    if model is not None:
        try:
            _state(request).router.resolve(model)
        except ProviderError as exc:
            raise APIError.from_provider(exc) from None
    return model


# --- sessions -------------------------------------------------------------------------------


@router.post("/sessions", status_code=201, summary="Create a session")
async def create_session(request: Request, body: NewSession | None = Body(None)) -> Response:
    model = _model(request, body.model if body else None)
    owner = permissions(request).caller
    session = await asyncio.to_thread(_conversations(request).store.create, model, owner)
    return _json({"id": session.id, **session.summary()}, 201)


@router.get("/sessions", summary="List sessions")
async def list_sessions(request: Request) -> Response:
    caller = permissions(request)
    sessions = [
        s
        for s in await asyncio.to_thread(_conversations(request).store.all)
        if s.visible_to(caller.caller, caller.admin)
    ]
    return _json([s.summary() for s in sessions])


@router.get("/sessions/{session_id}", summary="Get a session with its messages")
async def get_session(request: Request, session_id: str) -> Response:
    session = await _session(request, session_id)
    return _json({**session.summary(), "messages": session.messages})


@router.delete("/sessions/{session_id}", summary="Delete a session")
async def delete_session(request: Request, session_id: str) -> Response:
    conversations = _conversations(request)
    await _session(request, session_id)
    if await conversations.busy(session_id):
        # Deleting under a running turn would let the turn write the file back.
        raise APIError(
            409,
            f"Session '{session_id}' is answering; stop the reply, then delete it.",
            param="session_id",
            code="session_busy",
        )
    async with conversations.lock(session_id):
        await asyncio.to_thread(conversations.store.delete, session_id)
    return _json({"id": session_id, "deleted": True})


@router.get("/sessions/{session_id}/messages", summary="A session's messages")
async def session_messages(request: Request, session_id: str) -> Response:
    return _json({"messages": (await _session(request, session_id)).messages})


@router.get("/sessions/{session_id}/context", summary="How much of its context a session uses")
async def session_context(request: Request, session_id: str) -> Response:
    conversations = _conversations(request)
    session = await _session(request, session_id)
    model = conversations.model_of(session)
    return _json(
        {
            "model": model,
            "tokens": await conversations.tokens(session, model),
            "window": conversations.window(model),
            "limit": conversations.limit(model),
            "messages": len(session.messages),
        }
    )


@router.post("/sessions/{session_id}/compact", summary="Compact a session now")
async def compact_session(request: Request, session_id: str) -> Response:
    async with _locked(request, session_id) as session:
        result = await _conversations(request).compact(session, None, permissions(request))
    return _json(result.as_dict())


@router.post("/sessions/{session_id}/clear", summary="Clear a session's messages")
async def clear_session(request: Request, session_id: str) -> Response:
    async with _locked(request, session_id) as session:
        session.messages = []
        await asyncio.to_thread(_conversations(request).store.rewrite, session)
    return _json({"id": session_id, "cleared": True})


@router.post("/sessions/{session_id}/model", summary="Set a session's model")
async def set_model(request: Request, session_id: str, body: ModelBody) -> Response:
    await _session(request, session_id)
    model = _model(request, body.model)
    async with _locked(request, session_id) as session:
        session.model = model
        await asyncio.to_thread(_conversations(request).store.rewrite, session)
    return _json({"id": session_id, "model": session.model})


# --- chat -----------------------------------------------------------------------------------


async def _session_for(request: Request, body: ChatBody) -> tuple[Session, str]:
    """The session to talk in (a new one if none is named) and its model; 4xx if wrong."""
    conversations = _conversations(request)
    model = _model(request, body.model)
    if body.session_id:
        session = await _session(request, body.session_id)
    else:
        owner = permissions(request).caller
        session = await asyncio.to_thread(conversations.store.create, model, owner)
    return session, conversations.model_of(session, model)


async def _turn(
    request: Request, session: Session, model: str, message: str
) -> AsyncGenerator[Sequence[AgentEvent], None]:
    """One turn, holding the session's lock throughout; compacts first if it must."""
    conversations = _conversations(request)
    allowed = permissions(request)
    async with conversations.lock(session.id):
        # As it is now: another process may have added a turn while this one waited.
        current = await asyncio.to_thread(conversations.store.get, session.id)
        session = current if current is not None else session
        if await conversations.needs_compaction(session, model):
            await conversations.compact(session, model, allowed)
        route, stream = await conversations.turn(session, message, model, allowed)
        request.scope[ANSWERED_BY] = route.id  # the model that answers, after any failover
        try:
            async for batch in stream:
                yield batch
        finally:
            await stream.aclose()


@router.post("/chat", summary="Chat in a session (a new one if none is given)")
async def chat(request: Request, body: ChatBody) -> Response:
    session, model = await _session_for(request, body)
    said = NativeEvents(session.id)
    started = time.perf_counter()
    first: float | None = None
    try:
        async for batch in _turn(request, session, model, body.message):
            if first is None and any(isinstance(e, CONTENT) for e in batch):
                first = time.perf_counter() - started
            said.render(batch)
    except ProviderError as exc:
        raise APIError.from_provider(exc) from None
    _observer(request, model, False)(first, said.reply.usage)
    return _json(
        {
            "session_id": session.id,
            "model": model,
            "response": said.reply.said(0).content,
            "tool_calls": list(said.tools.values()),
            "usage": usage_dict(said.reply.usage),
        }
    )


def _observer(request: Request, model: str, stream: bool) -> Observer:
    """Records a finished turn under the model that answered it (known once it has)."""

    def observe(first: float | None, usage: Usage | None) -> None:
        answered = request.scope.get(ANSWERED_BY, model)
        _state(request).observer(answered, stream, request.scope)(first, usage)

    return observe


async def _native_events(
    request: Request, session: Session, model: str, message: str
) -> AsyncGenerator[bytes, None]:
    yield event("session", session_id=session.id, model=model)
    turn = _turn(request, session, model, message)
    observe = _observer(request, model, True)
    async for data in render_stream(turn, NativeEvents(session.id), observe, time.perf_counter()):
        yield data


@router.post("/chat/stream", summary="Chat in a session, streamed as server-sent events")
async def chat_stream(request: Request, body: ChatBody) -> Response:
    session, model = await _session_for(request, body)
    watch = DisconnectWatch(request.receive)
    return EventStreamResponse(_native_events(request, session, model, body.message), watch)


# --- memory and status ----------------------------------------------------------------------


def _memory(request: Request) -> Any:
    memory = _state(request).memory
    if memory is None:
        raise APIError(404, "Memory is off in gateway mode.", code="not_found")
    return memory


@router.get("/memory/search", summary="Search the memory")
async def memory_search(
    request: Request, q: str = Query(min_length=1), limit: int = Query(5, ge=1, le=50)
) -> Response:
    results = await _memory(request).search(q, limit)
    return _json(
        {
            "results": [
                {
                    "path": r.path,
                    "start_line": r.start_line,
                    "end_line": r.end_line,
                    "score": r.score,
                    "snippet": r.snippet,
                }
                for r in results
            ]
        }
    )


@router.get("/memory/file", summary="Read lines of a workspace file")
async def memory_file(
    request: Request,
    path: str = Query(min_length=1),
    start: int = Query(1, ge=1),
    end: int | None = Query(None, ge=1),
) -> Response:
    from localgpt.memory.workspace import CUT_NOTE, WorkspaceError

    memory = _memory(request)
    try:
        text = await memory.read(path, start, end)
    except WorkspaceError as exc:
        raise APIError(404, str(exc), param="path", code="file_not_found") from None
    lines = text.removesuffix("\n").split("\n")
    # A long read is cut, with a note for the model as its last line; here it is a field.
    note = lines.pop() if len(lines) > 1 and lines[-1].startswith(CUT_NOTE) else None
    return _json(
        {
            "path": path,
            "start_line": start,
            "end_line": start + len(lines) - 1,
            "lines": lines,
            "truncated": note is not None,
        }
    )


@router.get("/memory/stats", summary="Memory index statistics")
async def memory_stats(request: Request) -> Response:
    return _json(await _memory(request).stats())


@router.post("/memory/reindex", summary="Reindex the workspace (finishes before it answers)")
async def memory_reindex(request: Request, body: ReindexBody | None = Body(None)) -> Response:
    stats = await _memory(request).reindex(force=body.force if body else False)
    return _json(stats.__dict__)


@router.get("/status", summary="Server status")
async def status(request: Request) -> Response:
    state = _state(request)
    memory = await state.memory.stats() if state.memory is not None else None
    sessions = (
        len(await asyncio.to_thread(state.conversations.store.all))
        if state.conversations is not None
        else 0
    )
    return _json(
        {
            "version": __version__,
            "default_model": state.config.default_model,
            "gateway_mode": state.config.agent.gateway_mode,
            "uptime_s": round(time.time() - STARTED, 1),
            "pid": os.getpid(),  # which worker answered, with --workers
            "memory": memory,
            "sessions": sessions,
        }
    )
