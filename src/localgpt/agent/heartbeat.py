"""The assistant on its own: the heartbeat (HEARTBEAT.md, every ``interval``) and ``[[jobs]]``.

A heartbeat cycle reads HEARTBEAT.md and, when it lists anything, asks the model to do what
is due with its tools, to write the list back with ``heartbeat_update`` when something
changed, and to answer exactly ``HEARTBEAT_OK`` when nothing was due. A file with no tasks
in it is ``HEARTBEAT_OK`` without calling the model. Only a cycle that did something is kept
as a session (titled "Heartbeat ..."); a quiet one is a line in the run log.

A job is a prompt on a schedule, run in a fresh session each time, with the server tools its
``tools`` list allows. Both wait for a free model slot before they start, so a busy server's
requests go first.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

from localgpt.agent.agent import WEB_ADDRESS, Agent
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
from localgpt.agent.sessions import SessionStore
from localgpt.agent.tools import Permissions, Toolbox, ToolError
from localgpt.config import Config, JobConfig, parse_duration
from localgpt.providers.messages import ChatMessage

HEARTBEAT_OK = "HEARTBEAT_OK"
HEARTBEAT_FILE = "HEARTBEAT.md"
# The background runs act for the user who configured them: every tool the config enables.
UNATTENDED = Permissions(write_memory=True, local_tools=True)
HEARTBEAT_TOOLS = frozenset({"memory_save", "memory_search", "heartbeat_update"})
HEARTBEAT_UPDATE = {
    "type": "function",
    "function": {
        "name": "heartbeat_update",
        "description": "Replace HEARTBEAT.md with an updated task list: remove a one-off task "
        "once done, or note when a recurring one was last done.",
        "parameters": {
            "type": "object",
            "properties": {"content": {"type": "string", "description": "The whole new file"}},
            "required": ["content"],
        },
    },
}
PROMPT = """It is {now}. This is a heartbeat: a periodic check you run on your own; no user \
is present. HEARTBEAT.md, your list of tasks to check on, is below.

Do each task that is due now, with your tools. If a task is done or its status changed, \
save the updated list with heartbeat_update. If nothing is due, reply with exactly \
HEARTBEAT_OK and nothing else; otherwise reply with a short report of what you did.

HEARTBEAT.md:
{content}"""
_NOT_TASKS = re.compile(
    r"^\s*(#.*|<!--.*-->|tasks to check on periodically.*|none yet\.?)?\s*$", re.IGNORECASE
)


def has_tasks(text: str) -> bool:
    """Whether HEARTBEAT.md lists anything: headings, comments and the template's own
    sentence are not tasks."""
    return any(not _NOT_TASKS.match(line) for line in text.splitlines())


class Autonomy:
    """The heartbeat and the jobs of one configuration, on one scheduler."""

    def __init__(
        self, config: Config, agent: Agent, sessions: SessionStore, runs: RunLog, clock: Clock
    ) -> None:
        self.config = config
        self.agent = agent
        self.sessions = sessions
        self.scheduler = Scheduler(clock, runs)
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
        now = self.clock.now()
        started = now.isoformat()
        try:
            content = await memory.read(HEARTBEAT_FILE)
        except Exception:
            content = ""
        if not has_tasks(content):
            return Run("heartbeat", "heartbeat", started, "ok", detail=HEARTBEAT_OK, model=model)
        toolbox = Toolbox(self.config, memory, UNATTENDED, self.agent.mcp)
        names = set(HEARTBEAT_TOOLS) | {n for n in toolbox.handlers if n.startswith("mcp_")}
        if WEB_ADDRESS.search(content):
            names.add("web_fetch")
        names |= {n for n in ("bash", "write_file") if n in toolbox.handlers}
        toolbox.add(HEARTBEAT_UPDATE, self._update)
        toolbox = toolbox.only(names)
        local = now.astimezone(None).strftime("%A %d %B %Y, %H:%M")
        prompt = PROMPT.format(now=local, content=content.strip())
        reply, record = await self._converse(model, prompt, toolbox, recall=False)
        tools = _tools_called(record)
        if HEARTBEAT_OK in reply and not tools:
            return Run("heartbeat", "heartbeat", started, "ok", detail=HEARTBEAT_OK, model=model)
        title = f"Heartbeat {now.astimezone(None):%Y-%m-%d %H:%M}"
        session_id = await self._keep(title, model, prompt, record)
        return Run(
            "heartbeat",
            "heartbeat",
            started,
            "acted",
            detail=reply.strip()[:2000],
            session_id=session_id,
            tools=tools,
            model=model,
        )

    async def _update(self, args: dict[str, Any]) -> str:
        content = args.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ToolError("'content' must be the whole new HEARTBEAT.md, not empty")
        limit = self.config.tools.memory_save_max_bytes * 4
        if len(content.encode()) > limit:
            raise ToolError(f"HEARTBEAT.md may hold at most {limit} bytes")
        from localgpt.memory.workspace import atomic_write

        memory = self.agent.memory
        assert memory is not None
        path = memory.workspace.resolve(HEARTBEAT_FILE)
        text = content.rstrip() + "\n"
        await asyncio.to_thread(atomic_write, path, text.encode("utf-8"))
        return "HEARTBEAT.md updated."

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
        session_id = await self._keep(title, model, job.prompt, record)
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

    async def _keep(self, title: str, model: str, prompt: str, record: list[ChatMessage]) -> str:
        def write() -> str:
            session = self.sessions.create(model)
            session.title = title
            self.sessions.append(session, [{"role": "user", "content": prompt}, *record])
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
