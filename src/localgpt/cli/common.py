"""What every command shares: its options, loading the config, and one-line errors.

Heavy modules are imported inside commands, not at the top of a module, so that ``localgpt
--help`` and shell completion stay instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from localgpt.config import Config

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


def fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console
    from rich.markup import escape

    # One line, however long: the terminal wraps it, a log or a test reads it whole.
    Console(stderr=True, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}", highlight=False
    )
    return typer.Exit(code)


def progress(*columns: Any) -> Any:
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
        raise fail(str(exc)) from None
    console = Console(stderr=True)
    for warning in warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return config


def when(timestamp: float, seconds: bool = False) -> str:
    import time

    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return time.strftime(shape, time.localtime(timestamp))
