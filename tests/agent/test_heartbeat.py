"""The heartbeat and [[jobs]] in-process, on a scripted provider and a clock the test moves."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from localgpt.agent.agent import Agent
from localgpt.agent.heartbeat import HEARTBEAT_OK, Autonomy, has_tasks
from localgpt.agent.schedule import Cron, RunLog, within
from localgpt.agent.sessions import SessionStore
from localgpt.config import ActiveHours, Paths, parse_config
from localgpt.memory.manager import Memory
from localgpt.providers.base import ChatRequest
from localgpt.providers.events import StreamEvent
from tests.scripted import ScriptedProvider, calls, scripted_config, scripted_router, text

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
TASKS = "# Heartbeat\n\n- Every morning: note the day's plan in the log\n"


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    def advance(self, **delta: float) -> None:
        self.t += timedelta(**delta)


class Gated(ScriptedProvider):
    """Holds each answer until the test opens the gate: a slow model."""

    def __init__(self, *replies: Any) -> None:
        super().__init__(*replies)
        self.gate = asyncio.Event()

    async def stream(self, request: ChatRequest) -> Any:  # type: ignore[override]
        self.requests.append(request)
        await self.gate.wait()
        for batch in self._next():
            yield list[StreamEvent](batch)


def _autonomy(
    tmp_path: Path, provider: ScriptedProvider, clock: Clock, **sections: Any
) -> tuple[Autonomy, Memory, SessionStore, RunLog]:
    jobs = sections.pop("jobs", [])
    config = scripted_config(
        {"memory": {"workspace": str(tmp_path / "ws"), "embedding_provider": "none"}, **sections}
    )
    if jobs:
        config = parse_config({**config.model_dump(exclude_none=True), "jobs": jobs})
    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "cache", tmp_path / "s")
    memory = Memory(config, paths)
    memory.workspace.ensure()
    agent = Agent(config, scripted_router(config, provider), memory)
    store = SessionStore(tmp_path / "sessions")
    runs = RunLog(tmp_path / "runs.jsonl")
    return Autonomy(config, agent, store, runs, clock), memory, store, runs


def _offered(request: ChatRequest) -> list[str]:
    return [t["function"]["name"] for t in request.params.get("tools", [])]


def test_a_due_task_is_done_the_file_updated_then_the_next_cycle_is_ok(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        calls(("memory_save", {"content": "Plan for 2 March: review the budget."})),
        text("Noted the day's plan in the log."),
        text("should not be asked"),
    )
    autonomy, memory, store, runs = _autonomy(
        tmp_path, provider, Clock(), heartbeat={"enabled": True}
    )
    (memory.workspace.root / "HEARTBEAT.md").write_text(TASKS)

    async def run() -> None:
        try:
            first = await autonomy.scheduler.run_now("heartbeat", "heartbeat")
            assert first.outcome == "acted", first
            assert first.tools == ["memory_save"]
            assert "Noted the day's plan" in first.detail
            # "Every morning" is due on its face: the model is asked only to do it, with
            # the heartbeat's tools and no others.
            prompt = provider.requests[0].messages[-1]["content"]
            assert "Every morning: note the day's plan" in prompt and "due now" in prompt
            assert set(_offered(provider.requests[0])) == {"memory_save", "memory_search"}
            stamp = START.astimezone(None).strftime("%Y-%m-%d %H:%M")
            assert (memory.workspace.root / "HEARTBEAT.md").read_text() == (
                "# Heartbeat\n\n- Every morning: note the day's plan in the log"
                f" (last done: {stamp})\n"
            )
            daily = list((memory.workspace.root / "memory").glob("*.md"))
            assert any("review the budget" in p.read_text() for p in daily)
            session = store.get(first.session_id or "")
            assert session is not None and session.title.startswith("Heartbeat ")
            assert session.messages[0]["role"] == "user"

            second = await autonomy.scheduler.run_now("heartbeat", "heartbeat")
            assert second.outcome == "ok" and second.detail == HEARTBEAT_OK
            assert len(provider.requests) == 2  # done today: not asked again
            assert second.session_id is None
            assert len(store.all()) == 1  # a quiet cycle is not a conversation
            assert [r.outcome for r in runs.recent("heartbeat")] == ["ok", "acted"]
            assert autonomy.status()["last_run"]["outcome"] == "ok"
        finally:
            await memory.aclose()

    asyncio.run(run())


def test_the_model_judges_what_the_calendar_cannot(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        text("No."),  # "when the soil is dry": not now, says the model
        text("Yes"),  # the one-off task: due
        calls(("memory_save", {"content": "The MOT is due on 12 May.", "target": "memory"})),
        text("Saved the MOT date."),
    )
    autonomy, memory, _, _ = _autonomy(tmp_path, provider, Clock(), heartbeat={"enabled": True})
    (memory.workspace.root / "HEARTBEAT.md").write_text(
        "# Heartbeat\n\n- Water the ferns when the soil is dry\n"
        "- [ ] Save to memory that the MOT is due on 12 May\n"
        "- Every Friday: tidy the notes\n"  # not on a Monday: not asked
    )

    async def run() -> None:
        try:
            result = await autonomy.scheduler.run_now("heartbeat", "heartbeat")
        finally:
            await memory.aclose()
        assert result.outcome == "acted" and result.tools == ["memory_save"]
        asked = [r.messages[-1]["content"] for r in provider.requests]
        assert "Is this task due now" in asked[0] and "ferns" in asked[0]
        assert "Is this task due now" in asked[1] and "MOT" in asked[1]
        assert len(asked) == 4 and not any("tidy" in a for a in asked)
        assert provider.requests[0].params.get("tools") is None
        text_now = (memory.workspace.root / "HEARTBEAT.md").read_text()
        assert "- [x] Save to memory that the MOT is due on 12 May (done 2026-03-02)" in text_now
        assert "- Water the ferns when the soil is dry\n" in text_now
        assert "12 May" in (memory.workspace.root / "MEMORY.md").read_text()

    asyncio.run(run())


def test_a_file_without_tasks_is_ok_without_the_model(tmp_path: Path) -> None:
    provider = ScriptedProvider(text("should not be asked"))
    autonomy, memory, _, _ = _autonomy(tmp_path, provider, Clock(), heartbeat={"enabled": True})

    async def run() -> None:
        try:
            result = await autonomy.scheduler.run_now("heartbeat", "heartbeat")
        finally:
            await memory.aclose()
        assert result.outcome == "ok" and provider.requests == []

    asyncio.run(run())
    assert not has_tasks("# Heartbeat\n\nTasks to check on periodically, one per line. None yet.\n")
    assert has_tasks("# Heartbeat\n\nwater the plants on Fridays\n")


def test_outside_the_active_hours_a_cycle_is_skipped(tmp_path: Path) -> None:
    clock = Clock(START.replace(hour=16))
    provider = ScriptedProvider(text(HEARTBEAT_OK))
    hours = {"start": "09:00", "end": "17:00", "timezone": "Europe/Paris"}
    autonomy, memory, _, runs = _autonomy(
        tmp_path,
        provider,
        clock,
        heartbeat={"enabled": True, "interval": "1h", "active_hours": hours},
    )
    (memory.workspace.root / "HEARTBEAT.md").write_text(TASKS)

    async def run() -> None:
        try:
            assert autonomy.scheduler.tick() == []  # the first tick sets the time only
            clock.advance(hours=1)  # 17:00 UTC is 18:00 in Paris: outside
            assert autonomy.scheduler.tick() == []
            assert [r.outcome for r in runs.recent("heartbeat")] == ["skipped"]
            assert provider.requests == []
            clock.advance(hours=15)  # 08:00 UTC, 09:00 in Paris: inside
            started = autonomy.scheduler.tick()
            assert len(started) == 1
            assert (await started[0]).outcome == "acted"
            assert len(provider.requests) == 1
        finally:
            await memory.aclose()

    asyncio.run(run())
    night = ActiveHours(start="22:00", end="06:00")
    assert within(night, datetime(2026, 3, 2, 23, 30).astimezone())
    assert not within(night, datetime(2026, 3, 2, 12, 0).astimezone())


def test_a_slow_cycle_is_not_overlapped_and_a_stuck_one_times_out(tmp_path: Path) -> None:
    clock = Clock()
    provider = Gated(text(HEARTBEAT_OK))
    autonomy, memory, _, runs = _autonomy(
        tmp_path, provider, clock, heartbeat={"enabled": True, "interval": "10m"}
    )
    (memory.workspace.root / "HEARTBEAT.md").write_text(TASKS)

    async def run() -> None:
        try:
            autonomy.scheduler.tick()
            clock.advance(minutes=10)
            (first,) = autonomy.scheduler.tick()
            await asyncio.sleep(0.05)
            assert len(provider.requests) == 1  # the model is working on it
            clock.advance(minutes=10)
            assert autonomy.scheduler.tick() == []  # due again, but the first still runs
            assert (await autonomy.scheduler.run_now("heartbeat", "heartbeat")).outcome == "busy"
            assert [r.outcome for r in runs.recent("heartbeat")] == ["busy"]
            provider.gate.set()
            assert (await first).outcome == "acted"
            assert len(provider.requests) == 1
        finally:
            await memory.aclose()

    asyncio.run(run())

    stuck = Gated(text(HEARTBEAT_OK))
    autonomy, memory, _, _ = _autonomy(
        tmp_path / "2", stuck, Clock(), heartbeat={"enabled": True, "timeout": "1s"}
    )
    (memory.workspace.root / "HEARTBEAT.md").write_text(TASKS)

    async def timed_out() -> None:
        try:
            result = await autonomy.scheduler.run_now("heartbeat", "heartbeat")
        finally:
            await memory.aclose()
        assert result.outcome == "timeout" and 1.0 <= result.seconds < 3.0

    asyncio.run(timed_out())


def test_a_job_runs_on_time_once_in_a_fresh_session_and_missed_runs_are_not_replayed(
    tmp_path: Path,
) -> None:
    clock = Clock()
    provider = ScriptedProvider(text("Here is your digest."))
    job = {
        "name": "digest",
        "prompt": "Write my morning digest.",
        "every": "30m",
        "tools": ["memory_search"],
    }
    autonomy, memory, store, _ = _autonomy(tmp_path, provider, clock, jobs=[job])
    assert autonomy.wanted

    async def run() -> None:
        try:
            assert autonomy.scheduler.tick() == []
            clock.advance(minutes=29)
            assert autonomy.scheduler.tick() == []
            clock.advance(minutes=1)
            started = autonomy.scheduler.tick()
            assert len(started) == 1
            assert autonomy.scheduler.tick() == []  # the same moment: not again
            result = await started[0]
            assert result.outcome == "acted" and result.detail == "Here is your digest."
            assert _offered(provider.requests[0]) == ["memory_search"]  # its allowlist
            session = store.get(result.session_id or "")
            assert session is not None and session.title.startswith("Job digest ")
            clock.advance(hours=3)  # six runs missed while "down": one run, not six
            assert len(autonomy.scheduler.tick()) == 1
            await asyncio.sleep(0.05)
            assert len(provider.requests) == 2
            assert [j["name"] for j in autonomy.jobs()] == ["digest"]
        finally:
            await memory.aclose()

    asyncio.run(run())
    assert json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0])["kind"] == "job"


def test_cron_times_follow_their_zone() -> None:
    weekday_8am_paris = Cron("0 8 * * mon-fri", "Europe/Paris")
    friday_evening = datetime(2026, 3, 6, 18, 0, tzinfo=UTC)
    assert weekday_8am_paris.next_after(friday_evening) == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)


def test_due_by_the_calendar() -> None:
    from localgpt.agent.due import due_by_rule

    monday = datetime(2026, 11, 30, 9, 30)
    cases = {
        "- Every Friday: note the wins": False,
        "- Every weekday: check the calendar": True,
        "- Weekends: call grandma": False,
        "- [x] Save the plumber's number": False,
        "- Every day: drink water (last done: 2026-11-30 08:00)": False,
        "- Every day: drink water (last done: 2026-11-29 08:00)": True,
        "- Every day at 08:00: stretch": True,
        "- On 24 December: buy wrapping paper": False,
        "- On 30 November: buy stamps": True,
        "- By 1 December: renew the passport": True,
        "- By 29 November: renew the passport": False,
        "- In January: renew the insurance": False,
        "- Today: call the bank": True,
        "- Tomorrow: call the bank": False,
        "- [ ] Save that the MOT is due on 12 May": None,  # a date in the task, not its time
        "- Water the ferns when the soil is dry": None,
    }
    assert {task: due_by_rule(task, monday) for task in cases} == cases
