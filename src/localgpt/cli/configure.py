"""``localgpt config init | show | reference``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from localgpt.cli.common import ConfigOption, fail, load

config_app = typer.Typer(help="Write or show the configuration.", no_args_is_help=True)


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
        raise fail(f"{target} exists; use --force to overwrite it")
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
