"""``localgpt heartbeat status|run``, ``localgpt jobs list|run NAME`` and ``localgpt mcp``.

A run goes to the server when one answers on the configured address (it has the model
loaded and the scheduler that keeps runs from overlapping); without one, this process loads
the model and runs it. Status comes from the server, or from the run log when none runs.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from localgpt.cli.common import ConfigOption, JsonOption, LocalOption, fail, load

heartbeat_app = typer.Typer(
    help="The heartbeat: its status, or one cycle now.", no_args_is_help=True
)
jobs_app = typer.Typer(
    help="Scheduled jobs ([[jobs]]): list them, or run one now.", no_args_is_help=True
)


def _remote(config: Any, local: bool) -> Any:
    from localgpt.cli.remote import Remote, api_key, is_localgpt, server_url

    url = server_url(config)
    return None if local or not is_localgpt(url) else Remote(url, api_key(config))


def _call(remote: Any, method: str, path: str) -> Any:
    import httpx

    # A run may take as long as its timeout: no client timeout of our own.
    with httpx.Client(base_url=remote.url, timeout=None, headers=_auth(remote)) as client:
        resp = client.request(method, path)
    if resp.status_code >= 400:
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text
        raise fail(f"the server said: {message}", 1)
    return resp.json()


def _auth(remote: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {remote.key}"} if remote.key else {}


async def _local_run(config: Any, kind: str, name: str) -> dict[str, Any]:
    from localgpt.agent.build import build
    from localgpt.agent.heartbeat import Autonomy
    from localgpt.agent.schedule import RunLog, SystemClock
    from localgpt.config import Paths

    made = build(config)
    if made.memory is None or made.conversations is None:
        raise fail("there is no heartbeat in gateway mode", 2)
    made.memory.workspace.ensure()
    made.start()
    try:
        await made.memory.start(watch=False)
        if made.mcp is not None:  # give the MCP servers a moment to connect
            await asyncio.gather(*(c.wait_ready(10) for c in made.mcp.connections.values()))
        runs = RunLog(Paths.from_env().state_dir / "runs.jsonl")
        autonomy = Autonomy(
            config, made.agent, made.conversations.store, runs, SystemClock(), made.hot
        )
        return (await autonomy.scheduler.run_now(kind, name)).as_dict()
    finally:
        await made.aclose()


def _print_run(run: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print(json.dumps(run, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    colour = {"ok": "green", "acted": "cyan", "skipped": "dim", "busy": "yellow"}.get(
        run["outcome"], "red"
    )
    console.print(
        f"[{colour}]{run['outcome']}[/] in {run['seconds']:.1f} s"
        + (f" on {escape(run['model'])}" if run.get("model") else "")
        + (f", tools: {', '.join(run['tools'])}" if run.get("tools") else "")
    )
    if run.get("detail"):
        console.print(escape(run["detail"]))
    if run.get("session_id"):
        console.print(f"[dim]session {run['session_id']}[/]")


def _print_status(status: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print(json.dumps(status, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    hours = status.get("active_hours")
    window = f", {hours['start']}–{hours['end']}" if hours else ""
    state = "[green]enabled[/]" if status["enabled"] else "[dim]disabled[/]"
    console.print(f"heartbeat {state}, every {status['interval']}{window}")
    if status.get("running"):
        console.print("[yellow]a cycle is running[/]")
    if status.get("next_run"):
        console.print(f"next: {status['next_run']}")
    for run in status.get("recent", [])[:10]:
        console.print(
            f"  {run['started'][:19]}  {run['outcome']:<8} {run['seconds']:>6.1f} s  "
            f"{escape(run['detail'][:80].splitlines()[0] if run['detail'] else '')}"
        )


@heartbeat_app.command("status")
def heartbeat_status(config_path: ConfigOption = None, json_output: JsonOption = False) -> None:
    """The heartbeat's settings, its next run and its recent runs."""
    config = load(config_path)
    remote = _remote(config, False)
    if remote is not None:
        status = _call(remote, "GET", "/api/heartbeat/status")
    else:
        from localgpt.agent.schedule import RunLog
        from localgpt.config import Paths

        beat = config.heartbeat
        recent = RunLog(Paths.from_env().state_dir / "runs.jsonl").recent("heartbeat", limit=10)
        status = {
            "enabled": beat.enabled,
            "interval": beat.interval,
            "active_hours": beat.active_hours.model_dump() if beat.active_hours else None,
            "running": False,
            "next_run": None,
            "last_run": recent[0].as_dict() if recent else None,
            "recent": [r.as_dict() for r in recent],
            "server": "not running",
        }
    _print_status(status, json_output)


@heartbeat_app.command("run")
def heartbeat_run(
    config_path: ConfigOption = None, json_output: JsonOption = False, local: LocalOption = False
) -> None:
    """Run one heartbeat cycle now, whatever the time and the schedule."""
    config = load(config_path)
    remote = _remote(config, local)
    if remote is not None:
        run = _call(remote, "POST", "/api/heartbeat/run")
    else:
        run = asyncio.run(_local_run(config, "heartbeat", "heartbeat"))
    _print_run(run, json_output)
    raise typer.Exit(0 if run["outcome"] in ("ok", "acted") else 1)


@jobs_app.command("list")
def jobs_list(config_path: ConfigOption = None, json_output: JsonOption = False) -> None:
    """The configured jobs, their schedules, next and last runs."""
    config = load(config_path)
    remote = _remote(config, False)
    if remote is not None:
        jobs = _call(remote, "GET", "/api/jobs")["data"]
    else:
        from localgpt.agent.schedule import RunLog
        from localgpt.config import Paths

        log = RunLog(Paths.from_env().state_dir / "runs.jsonl")
        jobs = []
        for job in config.jobs:
            last = log.recent("job", job.name, limit=1)
            jobs.append(
                {
                    "name": job.name,
                    "schedule": f"cron {job.cron}" if job.cron else f"every {job.every}",
                    "enabled": job.enabled,
                    "model": job.model or config.default_model,
                    "tools": job.tools,
                    "next_run": None,
                    "last_run": last[0].as_dict() if last else None,
                }
            )
    if json_output:
        print(json.dumps(jobs, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not jobs:
        console.print("[dim]no jobs: add [[jobs]] tables to the config[/]")
        return
    table = Table("name", "schedule", "next", "last", box=None)
    for job in jobs:
        last = job.get("last_run")
        table.add_row(
            escape(job["name"]) + ("" if job["enabled"] else " [dim](disabled)[/]"),
            escape(job["schedule"]),
            (job.get("next_run") or "-")[:16],
            f"{last['started'][:16]} {last['outcome']}" if last else "-",
        )
    console.print(table)


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="The job's name.")],
    config_path: ConfigOption = None,
    json_output: JsonOption = False,
    local: LocalOption = False,
) -> None:
    """Run a job now, in a new session."""
    config = load(config_path)
    if name not in {j.name for j in config.jobs}:
        remote = _remote(config, local)
        if remote is None:
            raise fail(f"no job is named {name} (see `localgpt jobs list`)", 1)
    remote = _remote(config, local)
    if remote is not None:
        run = _call(remote, "POST", f"/api/jobs/{name}/run")
    else:
        run = asyncio.run(_local_run(config, "job", name))
    _print_run(run, json_output)
    raise typer.Exit(0 if run["outcome"] in ("ok", "acted") else 1)


def mcp(
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Offer search and read, not memory_save.")
    ] = False,
    config_path: ConfigOption = None,
) -> None:
    """Serve the memory over MCP on stdio, for Claude Desktop, Claude Code, Cursor..."""
    import logging

    from localgpt.mcp.server import serve_stdio

    # Logs go to standard error: standard output is the protocol's.
    logging.basicConfig(level=logging.WARNING, format="localgpt mcp: %(message)s")
    serve_stdio(read_only, config_path)


def migrate(
    to: Annotated[str, typer.Option("--to", help="shared (into [storage]) or local (back).")],
    config_path: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Copy this machine's sessions and stored responses into PostgreSQL, or back."""
    from localgpt.config import Paths
    from localgpt.shared import migrate as moving
    from localgpt.shared.errors import BackendDown

    if to not in ("shared", "local"):
        raise fail("--to is shared or local", 2)
    config = load(config_path)
    if config.storage.url is None:
        raise fail('migrate needs [storage] url = "postgresql://..." in the config', 2)
    state = Paths.from_env().state_dir
    how = moving.to_shared if to == "shared" else moving.to_local
    try:
        moved = how(config.storage.url, state / "sessions", state / "responses.sqlite3")
        moved.index_chunks = moving.reindex(config, to)
    except BackendDown as exc:
        raise fail(exc.message, 1) from None
    if json_output:
        print(json.dumps(moved.__dict__))
        return
    where = "into PostgreSQL" if to == "shared" else "into this machine's files"
    print(
        f"copied {where}: {moved.sessions} sessions ({moved.sessions_there} there already), "
        f"{moved.responses} stored responses ({moved.responses_there} there already); "
        f"the memory index rebuilt there from the workspace: {moved.index_chunks} chunks"
    )
