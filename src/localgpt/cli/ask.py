"""``localgpt ask`` and ``localgpt chat``: through the running server when one answers on the
configured address (one copy of the model in memory), else in this process, saying so."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from localgpt.cli.common import ConfigOption, LocalOption, UrlOption, fail, load

if TYPE_CHECKING:
    from localgpt.config import Config
    from localgpt.providers.messages import ChatMessage


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
        raise fail(f"no LocalGPT server answers at {url} (is `localgpt serve` running?)")
    return None


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
    messages: list[ChatMessage] = []
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
    remote: Any, fallback: str, model: str | None, messages: list[ChatMessage]
) -> int:
    from localgpt.providers.errors import ProviderError

    try:
        chosen = model or await remote.default_model(fallback)
        async for text in remote.ask(chosen, messages):
            sys.stdout.write(text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    except ProviderError as exc:
        raise fail(exc.message, 1) from None


async def _ask(config: Config, model: str, messages: list[ChatMessage]) -> int:
    from localgpt.agent.build import build
    from localgpt.cli.chat import load_model
    from localgpt.cli.remote import server_url
    from localgpt.providers.errors import ProviderError
    from localgpt.providers.events import TextDelta

    assistant = build(config)
    try:
        await load_model(assistant.router, model, server_url(config))
        if assistant.memory is not None:
            await assistant.memory.start(watch=False)
        _route, batches = await assistant.agent.open_stream(model, messages, {})
        async for batch in batches:
            for event in batch:
                if isinstance(event, TextDelta):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    except ProviderError as exc:
        raise fail(exc.message, 1) from None
    finally:
        await assistant.aclose()


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
