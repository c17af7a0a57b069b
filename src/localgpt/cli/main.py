"""The ``localgpt`` command line: the commands, gathered from one module per group."""

from __future__ import annotations

from typing import Annotated

import typer

from localgpt.cli import ask, background, configure, memory, models, serve, sessions
from localgpt.cli.common import ConfigOption

app = typer.Typer(
    name="localgpt",
    help="A local-first AI assistant with memory and an OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode="rich",
)

app.add_typer(configure.config_app, name="config")
app.add_typer(models.model_app, name="model")
app.add_typer(memory.memory_app, name="memory")
app.add_typer(sessions.sessions_app, name="sessions")
app.add_typer(background.heartbeat_app, name="heartbeat")
app.add_typer(background.jobs_app, name="jobs")
app.command("mcp")(background.mcp)
app.command("migrate")(background.migrate)
app.command()(serve.serve)
app.command()(ask.ask)
app.command()(ask.chat)
app.command("models")(models.models_command)


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


def main() -> None:
    app()
