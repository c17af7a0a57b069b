"""The ASGI application: routes, error handlers and the shared state's lifetime."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from localgpt import __version__
from localgpt.api import (
    chat,
    completions,
    embeddings,
    errors,
    heartbeat,
    mcp_endpoint,
    models,
    native,
    page,
)
from localgpt.api.anthropic import routes as anthropic
from localgpt.api.anthropic.protocol import CountTokensRequest, MessagesRequest
from localgpt.api.errors import APIError
from localgpt.api.gate import Gate
from localgpt.api.metrics import CONTENT_TYPE, Metrics
from localgpt.api.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from localgpt.api.responses import routes as responses
from localgpt.api.responses.protocol import ResponsesRequest
from localgpt.api.state import AppState, backends_down
from localgpt.config import Config
from localgpt.providers.errors import ProviderError
from localgpt.providers.http import BUDGET

log = logging.getLogger("localgpt.api")
# "service" tells `localgpt ask` and `chat` that a LocalGPT server answers here.
HEALTH = b'{"status":"ok","service":"localgpt","version":"' + __version__.encode() + b'"}'


def create_app(config: Config) -> FastAPI:
    metrics = Metrics()
    hot = None
    if config.state.url is not None:
        from localgpt.shared.hot import HotState

        hot = HotState(config.state.url)  # the Gate's buckets and the assistant's state

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.build(config, hot)
        state.metrics = metrics
        state.router.on_error = lambda route, exc, failover: metrics.provider_error(
            route.provider, exc.code, failover, route.id
        )
        state.router.on_wait = lambda name, seconds: metrics.queue_wait.labels(name).observe(
            seconds
        )
        metrics.watch_queues(state.router.queues)
        BUDGET.limit = config.server.max_buffered_bytes
        app.state.localgpt = state
        # Everything loaded so far lives as long as the server: keep it out of the garbage
        # collector's scans, which otherwise add milliseconds to the tail of request latency.
        gc.collect()
        gc.freeze()

        async def warm_up() -> None:
            try:
                await state.agent.warm_up()
            except ProviderError as exc:
                state.unavailable = exc.message
                log.error("the default model cannot answer: %s", exc.message)
            except Exception as exc:
                state.unavailable = f"{type(exc).__name__}: {exc}"
                log.exception("warming up the default model failed")
            else:
                state.ready.set()

        background = [asyncio.create_task(warm_up())]
        if state.assistant is not None:
            await state.assistant.open()  # PostgreSQL's tables, with [storage] url
        if state.responses is not None:
            await state.responses.open()
        if state.memory is not None:
            state.memory.workspace.ensure()  # a few small files: there before the first request
            background.append(asyncio.create_task(state.memory.start()))
        if state.mcp is not None:
            state.mcp.start()
        if state.autonomy is not None and state.autonomy.wanted:
            state.autonomy.scheduler.start()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await mcp_server.aclose()
            await state.aclose()

    app = FastAPI(
        title="LocalGPT",
        version=__version__,
        lifespan=lifespan,
        description="A local-first AI assistant with an OpenAI-compatible API.",
        docs_url=None,  # served by page.install from installed files, not a CDN
        redoc_url=None,
    )
    errors.install(app)
    app.include_router(chat.router)
    app.include_router(completions.router)
    app.include_router(responses.router)
    app.include_router(anthropic.router)
    app.include_router(embeddings.router)
    app.include_router(native.router)
    page.install(app)
    app.include_router(models.router)
    app.include_router(heartbeat.router)
    mcp_server = mcp_endpoint.install(app, enabled=not config.agent.gateway_mode)

    @app.get("/ready", summary="Readiness: the default model can answer", response_class=Response)
    async def ready(request: Request) -> Response:
        state: AppState = request.app.state.localgpt
        if state.ready.is_set():
            down = await backends_down(state)
            if down is not None:
                return APIError(
                    503,
                    f"A shared backend is unavailable: {down}",
                    type="server_error",
                    code="backend_unavailable",
                ).response()
            why = await state.default_unreachable()
            if why is None:
                if state.mcp is None:
                    return Response(b'{"status":"ready"}', media_type="application/json")
                # MCP servers down do not make the assistant unready: it goes on without them.
                body = {"status": "ready", "mcp": state.mcp.status()}
                return Response(orjson.dumps(body), media_type="application/json")
            return APIError(
                503,
                f"The default model cannot answer: {why}",
                type="server_error",
                code="model_unavailable",
            ).response()
        if state.unavailable:
            return APIError(
                503,
                f"The default model cannot answer: {state.unavailable}",
                type="server_error",
                code="model_unavailable",
            ).response()
        return APIError(
            503, "The default model is still loading.", type="server_error", code="not_ready"
        ).response()

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/health", summary="Liveness", response_class=Response)
    async def health() -> Response:
        return Response(HEALTH, media_type="application/json")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (
                ChatCompletionRequest,
                CompletionRequest,
                EmbeddingRequest,
                ResponsesRequest,
                MessagesRequest,
                CountTokensRequest,
            ):
                ref = "#/components/schemas/{model}"
                schemas.update(model.model_json_schema(ref_template=ref).get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(Gate, config=config, metrics=metrics, hot=hot)
    return app
