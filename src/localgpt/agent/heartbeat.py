"""The assistant on its own: the heartbeat (HEARTBEAT.md, every ``interval``) and ``[[jobs]]``.

A heartbeat cycle reads HEARTBEAT.md and takes its tasks (list items) one at a time: the
model is asked whether the task is due now (a yes or a no: the date, the weekday, what is
marked done or was last done); each task that is due is then done in a turn of its own, with
the memory tools (and the MCP servers' tools, and web_fetch when the task names an address),
and marked in the file: a checkbox ticked with the date, any other task given the time it
was last done, which the next cycle's question reads. A cycle with nothing due answers
``HEARTBEAT_OK``; a file with no tasks does so without calling the model. Only a cycle that
did something is kept as a session (titled "Heartbeat ..."); a quiet one is a line in the run
log.

Measured on the embedded 1.5B model (``bench/eval_heartbeat.py``), one prompt that showed
the whole file and asked the model to do what is due, or answer HEARTBEAT_OK, did 3 of 8 due
tasks: it answered HEARTBEAT_OK to most of them. Asked task by task, the question a small
model gets wrong least is "is this due?", and one thing to do is one it does.

A job is a prompt on a schedule, run in a fresh session each time, with the server tools its
``tools`` list allows. Both wait for a free model slot before they start, so a busy server's
requests go first.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from localgpt.agent.agent import WEB_ADDRESS, Agent
from localgpt.agent.due import due_by_rule
from localgpt.agent.events import collect_reply
from localgpt.agent.loop import SessionHistory
from localgpt.agent.schedule import (
    Clock,
    Cron,
    Every,
    Run,
    RunLog,
    Scheduler,
    Task,
    within,
)
from localgpt.agent.sessions import Sessions
from localgpt.agent.tools import Permissions, Toolbox
from localgpt.config import Config, JobConfig, parse_duration
from localgpt.providers.base import ChatRequest
from localgpt.providers.messages import ChatMessage

if TYPE_CHECKING:
    from localgpt.shared.hot import HotState

HEARTBEAT_OK = "HEARTBEAT_OK"
HEARTBEAT_FILE = "HEARTBEAT.md"
# The background runs act for the user who configured them: every tool the config enables.
UNATTENDED = Permissions(write_memory=True, local_tools=True)
HEARTBEAT_TOOLS = frozenset({"memory_save", "memory_search"})
DUE_PROMPT = (
    "It is {now}. One task from your list of periodic tasks:\n\n{task}\n\n"
    "Is this task due now, to be done in this check? It is not due if it is marked done ([x]), "
    'if it was already done in its current period (see "last done"), or if it is for a later '
    "date, another weekday or a time that has not come yet. A task for every day, for today, "
    "for this weekday, or with no date, that has not been done today, is due. "
    "Answer yes or no."
)
ACT_PROMPT = (
    "It is {now}. This task from your heartbeat list is due now; no user is present:\n\n"
    "{task}\n\nDo it now with your tools (a note or reminder for the user goes to today's log "
    "with memory_save), then say in one short sentence what you did."
)
_NOT_TASKS = re.compile(
    r"^\s*(#.*|<!--.*-->|tasks to check on periodically.*|none yet\.?)?\s*$", re.IGNORECASE
)
_ITEM = re.compile(r"^(\s*(?:[-*+]|\d+[.)])\s+)(.*\S)\s*$")
_BOX = re.compile(r"^\[( |x|X)\]\s*")
_LAST_DONE = re.compile(r"\s*\((?:last )?done:? [^)]*\)\s*$", re.IGNORECASE)


def has_tasks(text: str) -> bool:
    """Whether HEARTBEAT.md lists anything: headings, comments and the template's own
    sentence are not tasks."""
    return any(not _NOT_TASKS.match(line) for line in text.splitlines())


def tasks_of(text: str) -> list[int]:
    """The lines that are tasks: the list items, or, in a file without any, every line that
    is not a heading, a comment or blank."""
    lines = text.splitlines()
    items = [i for i, line in enumerate(lines) if _ITEM.match(line)]
    return items or [i for i, line in enumerate(lines) if not _NOT_TASKS.match(line)]


def mark_done(line: str, now: datetime) -> str:
    """The task line once done: a checkbox ticked with the date; any other task with the
    time it was last done (replacing an older mark)."""
    match = _ITEM.match(line)
    prefix, body = (match.group(1), match.group(2)) if match else ("", line.strip())
    box = _BOX.match(body)
    if box is not None and box.group(1) == " ":
        return f"{prefix}[x] {_BOX.sub('', body)} (done {now:%Y-%m-%d})"
    return f"{prefix}{_LAST_DONE.sub('', body)} (last done: {now:%Y-%m-%d %H:%M})"


def _yes(text: str) -> bool:
    words = re.findall(r"[a-z]+", text.lower())
    return bool(words) and words[0] in ("yes", "due", "true")


@dataclass
class Cycle:
    """What one heartbeat cycle did, task by task."""

    done: list[str] = field(default_factory=list)  # the tasks acted on
    replies: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    record: list[ChatMessage] = field(default_factory=list)  # the conversation kept


class Autonomy:
    """The heartbeat and the jobs of one configuration, on one scheduler."""

    def __init__(
        self,
        config: Config,
        agent: Agent,
        sessions: Sessions,
        runs: RunLog,
        clock: Clock,
        hot: HotState | None = None,
    ) -> None:
        self.config = config
        self.agent = agent
        self.sessions = sessions
        self.scheduler = Scheduler(clock, runs, hot)
        self.clock = clock
        beat = config.heartbeat
        self.scheduler.add(
            Task(
                "heartbeat",
                "heartbeat",
                Every(beat.seconds),
                self.heartbeat,
                beat.timeout_seconds,
                enabled=beat.enabled,
                allowed=lambda now: within(beat.active_hours, now),
            )
        )
        for job in config.jobs:
            schedule = (
                Cron(job.cron, job.timezone) if job.cron else Every(parse_duration(job.every or ""))
            )

            async def run(job: JobConfig = job) -> Run:
                return await self.job(job)

            self.scheduler.add(
                Task("job", job.name, schedule, run, parse_duration(job.timeout), job.enabled)
            )

    @property
    def wanted(self) -> bool:
        """Whether anything runs on a schedule (else the scheduler is not started)."""
        return self.config.heartbeat.enabled or any(j.enabled for j in self.config.jobs)

    # --- the heartbeat ----------------------------------------------------------------

    async def heartbeat(self) -> Run:
        memory = self.agent.memory
        assert memory is not None
        model = self.config.heartbeat.model or self.config.default_model
        now = self.clock.now().astimezone(None)
        started = now.isoformat()
        try:
            content = await memory.read(HEARTBEAT_FILE)
        except Exception:
            content = ""
        lines = content.splitlines()
        tasks = tasks_of(content)
        if not tasks:
            return Run("heartbeat", "heartbeat", started, "ok", detail=HEARTBEAT_OK, model=model)
        await self.agent.router.wait_free(model)
        when = now.strftime("%A %d %B %Y, %H:%M")
        cycle = Cycle()
        for index in tasks:
            task = lines[index].strip()
            due = due_by_rule(task, now)
            if due is None:
                due = await self._due(model, task, when)
            if not due:
                continue
            reply, record = await self._act(model, task, when)
            cycle.done.append(task)
            cycle.replies.append(reply.strip())
            cycle.tools += _tools_called(record)
            cycle.record += record
            lines[index] = mark_done(lines[index], now)
            content = await self._write_back(content, lines)
        if not cycle.done:
            return Run("heartbeat", "heartbeat", started, "ok", detail=HEARTBEAT_OK, model=model)
        title = f"Heartbeat {now:%Y-%m-%d %H:%M}"
        session_id = await self._keep(title, model, cycle.record)
        report = "\n".join(f"{t} -> {r}" for t, r in zip(cycle.done, cycle.replies, strict=True))
        return Run(
            "heartbeat",
            "heartbeat",
            started,
            "acted",
            detail=report[:2000],
            session_id=session_id,
            tools=cycle.tools,
            model=model,
        )

    async def _due(self, model: str, task: str, when: str) -> bool:
        """The model's yes or no: is this task due now? A short answer, no tools."""
        messages: list[ChatMessage] = [
            {"role": "user", "content": DUE_PROMPT.format(now=when, task=task)}
        ]
        _, completion = await self.agent.router.complete(
            model, ChatRequest(model, messages, {"max_tokens": 4, "temperature": 0})
        )
        return bool(completion.choices) and _yes(completion.choices[0].content or "")

    async def _act(self, model: str, task: str, when: str) -> tuple[str, list[ChatMessage]]:
        memory = self.agent.memory
        assert memory is not None
        toolbox = Toolbox(self.config, memory, UNATTENDED, self.agent.mcp)
        names = set(HEARTBEAT_TOOLS) | {n for n in toolbox.handlers if n.startswith("mcp_")}
        if WEB_ADDRESS.search(task):
            names.add("web_fetch")
        names |= {n for n in ("bash", "write_file") if n in toolbox.handlers}
        prompt = ACT_PROMPT.format(now=when, task=task)
        reply, record = await self._converse(model, prompt, toolbox.only(names), recall=False)
        return reply, [{"role": "user", "content": prompt}, *record]

    async def _write_back(self, expected: str, lines: list[str]) -> str:
        """HEARTBEAT.md with the tasks marked; what it now holds. A file edited while the
        cycle ran is left as its editor wrote it."""
        from localgpt.memory.workspace import atomic_write

        memory = self.agent.memory
        assert memory is not None
        path = memory.workspace.resolve(HEARTBEAT_FILE)
        text = "\n".join(lines) + "\n"

        def write() -> str:
            current = path.read_text(encoding="utf-8")
            if current != expected:
                return current
            atomic_write(path, text.encode("utf-8"))
            return text

        return await asyncio.to_thread(write)

    # --- jobs -------------------------------------------------------------------------

    async def job(self, job: JobConfig) -> Run:
        memory = self.agent.memory
        assert memory is not None
        model = job.model or self.config.default_model
        started = self.clock.now().isoformat()
        toolbox = Toolbox(self.config, memory, UNATTENDED, self.agent.mcp)
        if job.tools is not None:
            toolbox = toolbox.only(set(job.tools))
        reply, record = await self._converse(model, job.prompt, toolbox, recall=True)
        title = f"Job {job.name} {self.clock.now().astimezone(None):%Y-%m-%d %H:%M}"
        record = [{"role": "user", "content": job.prompt}, *record]
        session_id = await self._keep(title, model, record)
        return Run(
            "job",
            job.name,
            started,
            "acted",
            detail=reply.strip()[:2000],
            session_id=session_id,
            tools=_tools_called(record),
            model=model,
        )

    # --- shared -----------------------------------------------------------------------

    async def _converse(
        self, model: str, prompt: str, toolbox: Toolbox, recall: bool
    ) -> tuple[str, list[ChatMessage]]:
        await self.agent.router.wait_free(model)
        history = SessionHistory()
        messages: list[ChatMessage] = [{"role": "user", "content": prompt}]
        _, batches = await self.agent.open_stream(
            model,
            messages,
            {},
            UNATTENDED,
            history=history,
            toolbox=toolbox if toolbox.handlers else None,
            recall=recall,
        )
        completion = await collect_reply(batches)
        reply = completion.choices[0].content or "" if completion.choices else ""
        return reply, history.record

    async def _keep(self, title: str, model: str, record: list[ChatMessage]) -> str:
        def write() -> str:
            session = self.sessions.create(model)
            session.title = title
            self.sessions.append(session, record)
            return session.id

        return await asyncio.to_thread(write)

    def status(self) -> dict[str, Any]:
        beat = self.config.heartbeat
        task = self.scheduler.find("heartbeat", "heartbeat")
        assert task is not None
        recent = self.scheduler.runs.recent("heartbeat", limit=10)
        hours = beat.active_hours
        return {
            "enabled": beat.enabled,
            "interval": beat.interval,
            "timeout_seconds": beat.timeout_seconds,
            "active_hours": hours.model_dump() if hours else None,
            "running": task.busy,
            "next_run": _iso(task.next_at) if beat.enabled else None,
            "last_run": recent[0].as_dict() if recent else None,
            "recent": [r.as_dict() for r in recent],
        }

    def jobs(self) -> list[dict[str, Any]]:
        out = []
        for job in self.config.jobs:
            task = self.scheduler.find("job", job.name)
            assert task is not None
            recent = self.scheduler.runs.recent("job", job.name, limit=1)
            out.append(
                {
                    "name": job.name,
                    "schedule": f"cron {job.cron}" if job.cron else f"every {job.every}",
                    "enabled": job.enabled,
                    "model": job.model or self.config.default_model,
                    "tools": job.tools,
                    "running": task.busy,
                    "next_run": _iso(task.next_at) if job.enabled else None,
                    "last_run": recent[0].as_dict() if recent else None,
                }
            )
        return out


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _tools_called(record: list[ChatMessage]) -> list[str]:
    return [
        call["function"]["name"]
        for message in record
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or ()
    ]
