"""``localgpt memory search | reindex | stats``: the index in this process, brought up to date
first, with a progress bar on standard error."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from localgpt.cli.common import ConfigOption, JsonOption, load, progress, when

if TYPE_CHECKING:
    from localgpt.config import Config

memory_app = typer.Typer(help="Search and maintain the memory.", no_args_is_help=True)


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
    with progress(*columns) as bar:
        task = bar.add_task("indexing", total=None, visible=False)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, visible=True)

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
            value = when(value, seconds=True)  # a unix time: the local date and time
        print(f"{key}: {value}")
