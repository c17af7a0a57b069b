"""The heartbeat and scheduled jobs: their status, and one run now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from localgpt.agent.heartbeat import Autonomy
from localgpt.api.errors import APIError
from localgpt.api.state import AppState

router = APIRouter(tags=["heartbeat"])


def _autonomy(request: Request) -> Autonomy:
    state: AppState = request.app.state.localgpt
    if state.autonomy is None:
        raise APIError(
            404, "There is no heartbeat in gateway mode.", code="not_found", type="not_found_error"
        )
    return state.autonomy


@router.get("/api/heartbeat/status", summary="The heartbeat: settings, next run, recent runs")
async def heartbeat_status(request: Request) -> dict[str, Any]:
    return _autonomy(request).status()


@router.post("/api/heartbeat/run", summary="Run one heartbeat cycle now")
async def heartbeat_run(request: Request) -> dict[str, Any]:
    run = await _autonomy(request).scheduler.run_now("heartbeat", "heartbeat")
    return run.as_dict()


@router.get("/api/jobs", summary="The scheduled jobs, their next and last runs")
async def jobs(request: Request) -> dict[str, Any]:
    return {"data": _autonomy(request).jobs()}


@router.post("/api/jobs/{name}/run", summary="Run a job now")
async def job_run(name: str, request: Request) -> dict[str, Any]:
    autonomy = _autonomy(request)
    if autonomy.scheduler.find("job", name) is None:
        raise APIError(404, f"No job is named {name!r}.", code="not_found", type="not_found_error")
    run = await autonomy.scheduler.run_now("job", name)
    return run.as_dict()
