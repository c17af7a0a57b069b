"""``POST /v1/embeddings``: the local MiniLM model (384 dimensions), in OpenAI's shape."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from localgpt.api.errors import APIError
from localgpt.api.protocol import EmbeddingRequest
from localgpt.api.requests import openapi_body, parse_body
from localgpt.api.state import AppState
from localgpt.config import EMBEDDING_MODEL

router = APIRouter()
MODEL_ID = EMBEDDING_MODEL
ALIASES = frozenset({MODEL_ID, "all-minilm-l6-v2", "all-MiniLM-L6-v2"})
MAX_INPUTS = 2048


@router.post(
    "/v1/embeddings",
    openapi_extra=openapi_body(EmbeddingRequest),
    summary="Create embeddings",
    response_class=Response,
)
async def embeddings(request: Request) -> Response:
    state: AppState = request.app.state.localgpt
    raw = await parse_body(await request.body(), EmbeddingRequest)
    if raw["model"] not in ALIASES:
        raise APIError(
            404,
            f"The model '{raw['model']}' does not exist; embeddings come from {MODEL_ID}.",
            param="model",
            code="model_not_found",
        )
    texts = _texts(raw["input"])
    if raw.get("dimensions") not in (None, 384):
        raise APIError(
            400,
            f"{MODEL_ID} has 384 dimensions; it cannot return {raw['dimensions']}.",
            param="dimensions",
            code="invalid_value",
        )
    embedder = state.embedder()
    vectors = await asyncio.to_thread(embedder.embed, texts)
    tokens = sum(min(embedder.count_tokens(t), embedder.max_tokens) for t in texts)
    as_base64 = raw.get("encoding_format") == "base64"
    data: list[dict[str, Any]] = [
        {
            "object": "embedding",
            "index": i,
            "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()
            if as_base64
            else v.tolist(),
        }
        for i, v in enumerate(vectors)
    ]
    return Response(
        orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": MODEL_ID,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        ),
        media_type="application/json",
    )


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not value:
        raise APIError(400, "'input' must not be empty.", param="input", code="invalid_value")
    if not all(isinstance(v, str) for v in value):
        raise APIError(
            400,
            "Token arrays are not supported as input: send text.",
            param="input",
            code="invalid_value",
        )
    if len(value) > MAX_INPUTS:
        raise APIError(
            400, f"At most {MAX_INPUTS} inputs per request.", param="input", code="invalid_value"
        )
    if any(not v for v in value):
        raise APIError(
            400, "'input' must not contain empty strings.", param="input", code="invalid_value"
        )
    return list(value)
