"""When background work runs: the heartbeat and ``[[jobs]]``, on a clock that tests control.

A scheduled task runs when it is due, never twice at once (a run still going when the next is
due is skipped, and the skip recorded), and its next time is counted from now: runs missed
while the server was down, or while a slow run went on, are not replayed in a burst. Every
outcome goes to a small log (``runs.jsonl`` in the state folder) that the API, the page and
the command line read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol
from zoneinfo import ZoneInfo

from localgpt.config import ActiveHours
from localgpt.shared.hot import LockBusy

if TYPE_CHECKING:
    from localgpt.shared.hot import HotState

log = logging.getLogger("localgpt.schedule")

Outcome = Literal["ok", "acted", "skipped", "busy", "timeout", "error"]
LOG_KEEP = 1000  # runs kept in the log; it is cut back to these when it doubles


class Clock(Protocol):
    """The time, and a way to wait: the system's, or a test's."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def zone(name: str | None) -> ZoneInfo | None:
    """An IANA zone; None for the machine's local time."""
    return ZoneInfo(name) if name else None


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def within(hours: ActiveHours | None, moment: datetime) -> bool:
    """Whether ``moment`` falls in the active hours (an end before the start wraps past
    midnight: 22:00 to 06:00)."""
    if hours is None:
        return True
    local = moment.astimezone(zone(hours.timezone))
    now, start, end = local.hour * 60 + local.minute, _minutes(hours.start), _minutes(hours.end)
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end


class Schedule(Protocol):
    def next_after(self, moment: datetime) -> datetime: ...


@dataclass(frozen=True)
class Every:
    """Every so many seconds, on the epoch's grid (a 30m job at :00 and :30), so that every
    replica computes the same times and one of them claims each (``Scheduler._timed``)."""

    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        slot = math.floor(moment.timestamp() / self.seconds) + 1
        return datetime.fromtimestamp(slot * self.seconds, UTC)


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str | None = None

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        local = moment.astimezone(zone(self.timezone))
        found: datetime = croniter(self.expression, local).get_next(datetime)
        return found.astimezone(UTC)


@dataclass
class Run:
    """One run's outcome, as the log keeps it."""

    kind: Literal["heartbeat", "job"]
    name: str
    started: str  # ISO 8601, UTC
    outcome: Outcome
    seconds: float = 0.0
    detail: str = ""  # the reply, or why it was skipped or failed
    session_id: str | None = None
    tools: list[str] = field(default_factory=list)
    model: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class RunLog:
    """The outcomes of background runs: a JSON-lines file, newest last, bounded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, run: Run) -> None:
        line = json.dumps(run.as_dict(), ensure_ascii=False) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            self._trim()

    def _trim(self) -> None:
        if self.path.stat().st_size < 4096 * 64:
            return
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        if len(lines) > 2 * LOG_KEEP:
            from localgpt.memory.workspace import atomic_write

            atomic_write(self.path, "".join(lines[-LOG_KEEP:]).encode())

    def recent(
        self, kind: str | None = None, name: str | None = None, limit: int = 20
    ) -> list[Run]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out: list[Run] = []
        for line in reversed(lines):
            try:
                run = Run(**json.loads(line))
            except (ValueError, TypeError):
                continue  # a torn last line after a crash
            if (kind is None or run.kind == kind) and (name is None or run.name == name):
                out.append(run)
                if len(out) >= limit:
                    break
        return out


RunFn = Callable[[], Awaitable[Run]]


@dataclass
class Task:
    """Something the scheduler runs: the heartbeat or one job."""

    kind: Literal["heartbeat", "job"]
    name: str
    schedule: Schedule
    run: RunFn
    timeout: float
    enabled: bool = True
    allowed: Callable[[datetime], bool] | None = None  # the heartbeat's active hours
    next_at: datetime | None = None
    running: asyncio.Task[Run] | None = None
    last: Run | None = None

    def outcome(self, at: datetime, outcome: Outcome, detail: str) -> Run:
        """A run that did not get to do its work: skipped, busy, timed out, failed."""
        return Run(self.kind, self.name, at.isoformat(), outcome, detail=detail)

    @property
    def busy(self) -> bool:
        return self.running is not None and not self.running.done()


class Scheduler:
    def __init__(self, clock: Clock, runs: RunLog, hot: HotState | None = None) -> None:
        self.clock = clock
        self.runs = runs
        self.hot = hot  # [state] url: a run holds a lock every replica's scheduler sees
        self.tasks: dict[tuple[str, str], Task] = {}
        self._loop: asyncio.Task[None] | None = None

    def add(self, task: Task) -> None:
        self.tasks[(task.kind, task.name)] = task

    def find(self, kind: str, name: str) -> Task | None:
        return self.tasks.get((kind, name))

    def start(self) -> None:
        self._loop = asyncio.create_task(self.run_forever(), name="scheduler")

    async def aclose(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
        running = [t.running for t in self.tasks.values() if t.running is not None and t.busy]
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    async def run_forever(self) -> None:
        while True:
            self.tick()
            now = self.clock.now()
            upcoming = [t.next_at for t in self.tasks.values() if t.enabled and t.next_at]
            wait = min(((at - now).total_seconds() for at in upcoming), default=60.0)
            await self.clock.sleep(min(max(wait, 0.05), 60.0))

    def tick(self) -> list[asyncio.Task[Run]]:
        """Start what is due now; the runs started. The first tick only sets the times: a
        server starting is not a reason to run everything at once."""
        now = self.clock.now()
        started: list[asyncio.Task[Run]] = []
        for task in self.tasks.values():
            if not task.enabled:
                continue
            if task.next_at is None:
                task.next_at = task.schedule.next_after(now)
                continue
            if task.next_at > now:
                continue
            due = task.next_at
            task.next_at = task.schedule.next_after(now)  # from now: no burst of missed runs
            if task.allowed is not None and not task.allowed(now):
                self._record(task.outcome(now, "skipped", "outside the active hours"))
                continue
            if task.busy:
                self._record(task.outcome(now, "busy", "the previous run is still going"))
                continue
            started.append(self._launch(task, due))
        return started

    def _launch(self, task: Task, due: datetime | None = None) -> asyncio.Task[Run]:
        task.running = asyncio.create_task(self._timed(task, due), name=f"{task.kind}:{task.name}")
        return task.running

    async def run_now(self, kind: str, name: str) -> Run:
        """One run now (``localgpt heartbeat run``, ``jobs run NAME``), unless one is going."""
        task = self.tasks[(kind, name)]
        if task.busy:
            return task.outcome(self.clock.now(), "busy", "a run is going already")
        return await self._launch(task)

    async def _timed(self, task: Task, due: datetime | None = None) -> Run:
        started = self.clock.now()
        t0 = time.monotonic()
        if self.hot is not None and due is not None:
            # Every replica's scheduler finds the run due; the first to claim it runs it.
            occurrence = f"due:{task.kind}:{task.name}:{int(due.timestamp())}"
            try:
                mine = await self.hot.claim(occurrence, max(task.timeout, 60.0) * 2)
            except Exception as exc:
                mine = False
                log.warning("could not claim %s %s: %s", task.kind, task.name, exc)
            if not mine:
                return task.outcome(started, "skipped", "another server process runs this one")
        try:
            if self.hot is None:
                run = await asyncio.wait_for(task.run(), task.timeout)
            else:
                async with self.hot.lock(f"run:{task.kind}:{task.name}", task.timeout + 30, 0):
                    run = await asyncio.wait_for(task.run(), task.timeout)
        except LockBusy:
            run = task.outcome(started, "busy", "another server process is running it")
        except TimeoutError:
            run = task.outcome(started, "timeout", f"stopped after {task.timeout:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a background run must not take the server down
            log.exception("%s %s failed", task.kind, task.name)
            run = task.outcome(started, "error", f"{type(exc).__name__}: {exc}")
        run.started = started.isoformat()
        run.seconds = round(time.monotonic() - t0, 3)
        self._record(run)
        return run

    def _record(self, run: Run) -> None:
        task = self.tasks.get((run.kind, run.name))
        if task is not None:
            task.last = run
        log.info(
            "%s %s: %s in %.1f s %s", run.kind, run.name, run.outcome, run.seconds, run.detail[:200]
        )
        try:
            self.runs.append(run)
        except OSError as exc:
            log.warning("could not write the run log: %s", exc)
