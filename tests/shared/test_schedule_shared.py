"""Scheduled runs on several replicas: every scheduler finds a run due, one runs it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from localgpt.shared.hot import HotState
from tests.agent.test_heartbeat import START, Clock, _autonomy
from tests.backends import RedisServer
from tests.scripted import ScriptedProvider, text


def test_a_job_due_on_two_replicas_runs_once(tmp_path: Path, redis_server: RedisServer) -> None:
    redis_server.flush()
    job = {"name": "digest", "prompt": "Write my digest.", "every": "30m"}
    clock = Clock(START + timedelta(minutes=7))  # the replicas started at other times
    late = Clock(START + timedelta(minutes=19))
    providers = [ScriptedProvider(text("Digest.")), ScriptedProvider(text("Digest."))]
    replicas: list[Any] = []

    async def run() -> None:
        for i, (provider, each) in enumerate(zip(providers, (clock, late), strict=True)):
            autonomy, memory, _, _ = _autonomy(tmp_path / f"r{i}", provider, each, jobs=[job])
            autonomy.scheduler.hot = HotState(redis_server.url)
            replicas.append((autonomy, memory))
        try:
            for autonomy, _ in replicas:
                assert autonomy.scheduler.tick() == []  # sets each one's next time
            # On the epoch's grid, both found the same next time, 08:30.
            times = {a.scheduler.find("job", "digest").next_at for a, _ in replicas}
            assert times == {START + timedelta(minutes=30)}
            clock.t = late.t = START + timedelta(minutes=30)
            started = [t for a, _ in replicas for t in a.scheduler.tick()]
            outcomes = sorted([(await t).outcome for t in started])
            assert outcomes == ["acted", "skipped"]
            assert sum(len(p.requests) for p in providers) == 1
        finally:
            for autonomy, memory in replicas:
                await autonomy.scheduler.hot.aclose()
                await memory.aclose()

    asyncio.run(run())
