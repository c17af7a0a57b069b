"""``GET /v1/models`` and ``GET /v1/models/{id}``; ids may contain ``/``."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from localgpt.api.errors import APIError
from localgpt.api.state import AppState
from localgpt.providers.catalog import ModelEntry

router = APIRouter()


def _model(entry: ModelEntry) -> dict[str, object]:
    return {"id": entry.id, "object": "model", "created": entry.created, "owned_by": entry.owned_by}


@router.get("/v1/models", summary="List models", response_class=Response)
async def list_models(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    data = [_model(e) for e in await state.catalog.entries()]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


@router.get("/v1/models/{model_id:path}", summary="Retrieve a model", response_class=Response)
async def get_model(model_id: str, request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    entry = await state.catalog.find(model_id)
    if entry is None:
        raise APIError(
            404, f"The model '{model_id}' does not exist", param="model", code="model_not_found"
        )
    return Response(orjson.dumps(_model(entry)), media_type="application/json")
