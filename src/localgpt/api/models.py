"""``GET /v1/models`` and ``GET /v1/models/{id}``; ids may contain ``/``.

Anthropic's clients (the SDK's ``models.list``, Claude Code's model discovery) call the same
path with an ``anthropic-version`` header and read Anthropic's shape; they get it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from localgpt.api.errors import APIError
from localgpt.api.state import AppState
from localgpt.providers.catalog import ModelEntry

router = APIRouter()


def _model(entry: ModelEntry) -> dict[str, object]:
    return {"id": entry.id, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


def _anthropic_model(entry: ModelEntry) -> dict[str, object]:
    created = datetime.fromtimestamp(entry.created, UTC).isoformat().replace("+00:00", "Z")
    return {"id": entry.id, "type": "model", "display_name": entry.id, "created_at": created}


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


@router.get("/v1/models", summary="List models", response_class=Response)
async def list_models(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    entries = await state.catalog.entries()
    if _anthropic(request):
        data = [_anthropic_model(e) for e in entries]
        page: dict[str, object] = {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
        return Response(orjson.dumps(page), media_type="application/json")
    data = [_model(e) for e in entries]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


@router.get("/v1/models/{model_id:path}", summary="Retrieve a model", response_class=Response)
async def get_model(model_id: str, request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    entry = await state.catalog.find(model_id)
    if entry is None:
        raise APIError(
            404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )
    shaped = _anthropic_model(entry) if _anthropic(request) else _model(entry)
    return Response(orjson.dumps(shaped), media_type="application/json")
