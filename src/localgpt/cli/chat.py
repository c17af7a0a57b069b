"""``localgpt chat``: an interactive session in the terminal, streamed, with memory and tools.

Slash commands: ``/new`` starts a new session, ``/compact`` compacts this one, ``/model
[name]`` shows or sets its model, ``/context`` shows how much of the context it uses,
``/quit`` leaves (as do Ctrl-D and Ctrl-C at the prompt). Ctrl-C while a reply streams
stops that reply, and the chat goes on.

The sessions are a running server's when one answers on the configured address (one model in
memory, shared with every other client), and this process's own otherwise (``LocalChat``,
which loads the model itself).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape

from localgpt.agent.events import AgentEvent, ToolEnd, ToolStart
from localgpt.providers.errors import ProviderError
from localgpt.providers.events import TextDelta

if TYPE_CHECKING:
    from localgpt.agent.conversation import Conversations
    from localgpt.agent.sessions import Session
    from localgpt.config import Config

HELP = "/new  /compact  /model [name]  /context  /quit"
T = TypeVar("T")
Events = AsyncGenerator[Sequence[AgentEvent], None]


class Interrupted(Exception):
    """Ctrl-C stopped what was running."""


@dataclass
class ChatSession:
    id: str
    model: str | None  # the session's own model, if it has one


class Backend(Protocol):
    """Where the sessions live: this process, or a running server."""

    async def start(self) -> None: ...
    async def session(self, session_id: str | None) -> ChatSession | None: ...
    async def create(self, model: str | None) -> ChatSession: ...
    def turn(self, session: ChatSession, text: str, model: str | None) -> Events: ...
    async def compact(self, session: ChatSession, model: str | None) -> dict[str, Any]: ...
    async def set_model(self, session: ChatSession, model: str) -> None: ...
    async def context(self, session: ChatSession, model: str | None) -> dict[str, Any]: ...
    def model_of(self, session: ChatSession, model: str | None) -> str: ...
    async def close(self) -> None: ...


async def load_model(router: Any, model: str, where: str) -> None:
    """Load an embedded model in this process, saying so: it can take minutes the first
    time, and a blank terminal looks like a hang."""
    route = router.resolve(model)
    warm_up = getattr(router.provider(route.provider), "warm_up", None)
    if warm_up is None:
        return
    console = Console(stderr=True)
    console.print(
        f"[dim]no server at {where}: loading model {route.id} in this process...[/]",
        highlight=False,
    )
    with console.status(f"loading model {route.id}..."):
        await warm_up(route.model)


class LocalChat:
    """Sessions, memory and models in this process."""

    def __init__(self, config: Config, say: Callable[[str], None], where: str) -> None:
        from localgpt.agent.build import build
        from localgpt.agent.tools import Permissions

        self.assistant = build(config)
        assert self.assistant.memory is not None and self.assistant.conversations is not None
        self.router = self.assistant.router
        self.memory = self.assistant.memory
        self.conversations: Conversations = self.assistant.conversations
        # The person at the terminal may let the assistant run local tools, if enabled.
        self.permissions = Permissions(write_memory=True, local_tools=True)
        self.say = say
        self.where = where  # the server address that did not answer
        self.model: str | None = None

    async def start(self) -> None:
        await load_model(
            self.router, self.model or self.conversations.agent.config.default_model, self.where
        )
        await self.memory.start(watch=False)

    def _session(self, session: ChatSession) -> Session:
        found = self.conversations.store.get(session.id)
        if found is None:
            raise ProviderError(f"session {session.id} no longer exists", status=404)
        return found

    async def session(self, session_id: str | None) -> ChatSession | None:
        found = self.conversations.store.get(session_id) if session_id else None
        return ChatSession(found.id, found.model) if found is not None else None

    async def create(self, model: str | None) -> ChatSession:
        made = await asyncio.to_thread(self.conversations.store.create, model)
        return ChatSession(made.id, made.model)

    async def turn(self, session: ChatSession, text: str, model: str | None) -> Events:
        conversations = self.conversations
        stored = self._session(session)
        model = conversations.model_of(stored, model)
        if await conversations.needs_compaction(stored, model):
            self.say("[dim]compacting the session first...[/]")
            await conversations.compact(stored, model, self.permissions)
        _route, stream = await conversations.turn(stored, text, model, self.permissions)
        try:
            async for batch in stream:
                yield batch
        finally:
            await stream.aclose()

    async def compact(self, session: ChatSession, model: str | None) -> dict[str, Any]:
        done = await self.conversations.compact(self._session(session), model, self.permissions)
        return done.as_dict()

    async def set_model(self, session: ChatSession, model: str) -> None:
        self.router.resolve(model)  # an unknown model is refused here
        stored = self._session(session)
        stored.model = session.model = model
        await asyncio.to_thread(self.conversations.store.rewrite, stored)

    async def context(self, session: ChatSession, model: str | None) -> dict[str, Any]:
        stored = self._session(session)
        model = self.conversations.model_of(stored, model)
        return {
            "tokens": await self.conversations.tokens(stored, model),
            "window": self.router.context_window(model) or 0,
            "limit": self.conversations.limit(model),
            "messages": len(stored.messages),
        }

    def model_of(self, session: ChatSession, model: str | None) -> str:
        return model or session.model or self.conversations.agent.config.default_model

    async def close(self) -> None:
        await self.assistant.aclose()


class ServerChat:
    """Sessions on a running server (``cli.remote``)."""

    def __init__(self, remote: Any, default_model: str) -> None:
        from localgpt.cli.remote import RemoteChat

        self.remote = RemoteChat(remote)
        self.default_model = default_model

    async def start(self) -> None:
        self.default_model = await self.remote.remote.default_model(self.default_model)

    async def session(self, session_id: str | None) -> ChatSession | None:
        found = await self.remote.session(session_id, None)
        return ChatSession(found["id"], found.get("model")) if found else None

    async def create(self, model: str | None) -> ChatSession:
        made = await self.remote.create(model)
        return ChatSession(made["id"], made.get("model"))

    async def turn(self, session: ChatSession, text: str, model: str | None) -> Events:
        async for batch in self.remote.turn(session.id, text, model):
            yield batch

    async def compact(self, session: ChatSession, model: str | None) -> dict[str, Any]:
        return await self.remote.compact(session.id)

    async def set_model(self, session: ChatSession, model: str) -> None:
        session.model = await self.remote.set_model(session.id, model)

    async def context(self, session: ChatSession, model: str | None) -> dict[str, Any]:
        return await self.remote.context(session.id)

    def model_of(self, session: ChatSession, model: str | None) -> str:
        return model or session.model or self.default_model

    async def close(self) -> None:
        await self.remote.close()


class ChatApp:
    def __init__(self, console: Console, backend: Backend, model: str | None, where: str) -> None:
        self.console = console
        self.backend = backend
        self.model = model
        self.where = where  # shown at the start: "server http://..." or "this process"

    def run(self, session_id: str | None) -> None:
        """The chat loop. It owns its event loop and reads each line outside it, so Ctrl-C
        at the prompt (or Ctrl-D) ends the chat, while Ctrl-C during a reply (or a
        compaction) only stops that, and the chat goes on (see ``interruptible``)."""
        loop = asyncio.new_event_loop()
        try:
            try:
                session = self.interruptible(loop, self.start(session_id))
            except Interrupted:
                return
            except ProviderError as exc:
                self.console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
                return
            while True:
                try:
                    line = self.console.input("[bold cyan]you>[/] ").strip()
                except (EOFError, KeyboardInterrupt):
                    self.console.print()
                    return
                if not line:
                    continue
                try:
                    next_session = self.interruptible(loop, self.handle(session, line))
                except Interrupted:
                    # The turn keeps the question and the text said so far.
                    self.console.print(f"[yellow]{escape('[stopped]')}[/]", highlight=False)
                    continue
                if next_session is None:
                    return
                session = next_session
        finally:
            try:
                loop.run_until_complete(self.backend.close())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    @staticmethod
    def interruptible(loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` as a task that Ctrl-C cancels, raising ``Interrupted`` if it did.

        The SIGINT handler is installed only while the task runs: at the prompt, Ctrl-C
        raises KeyboardInterrupt as usual.
        """
        task = loop.create_task(work)
        try:
            loop.add_signal_handler(signal.SIGINT, task.cancel)
            handler = True
        except (NotImplementedError, RuntimeError, ValueError):
            handler = False  # no signal handlers here (Windows, another thread)
        try:
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            if task.cancelled():
                raise Interrupted from None
            raise
        finally:
            if handler:
                loop.remove_signal_handler(signal.SIGINT)

    async def start(self, session_id: str | None) -> ChatSession:
        backend = self.backend
        if isinstance(backend, LocalChat):
            backend.model = self.model
        await backend.start()
        found = await backend.session(session_id)
        if session_id and found is None:
            self.console.print(f"[yellow]no session {escape(session_id)}; starting a new one[/]")
        session = found if found is not None else await backend.create(self.model)
        self.console.print(
            f"[dim]session {session.id} · model {escape(backend.model_of(session, self.model))}"
            f" · {escape(self.where)} · {escape(HELP)} · Ctrl-C stops a reply[/]"
        )
        return session

    async def handle(self, session: ChatSession, line: str) -> ChatSession | None:
        """One line: a slash command or a question; the session to go on with, or None to
        leave."""
        if line.startswith("/"):
            try:
                return await self.command(session, line)
            except ProviderError as exc:  # /compact asks the model
                self.console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False)
                return session
        await self.ask(session, line)
        return session

    async def ask(self, session: ChatSession, text: str) -> None:
        stream = self.backend.turn(session, text, self.model)
        try:
            await self.show(stream)
        except ProviderError as exc:
            self.console.print(f"\n[bold red]error:[/] {escape(exc.message)}", highlight=False)
        finally:
            await stream.aclose()

    async def show(self, stream: Events) -> None:
        """On a terminal the reply is rendered as markdown while it streams; piped, it is
        printed as it comes, plain."""
        view = (
            Live(
                Markdown(""),
                console=self.console,
                refresh_per_second=12,
                vertical_overflow="visible",
            )
            if self.console.is_terminal
            else None
        )
        with view if view is not None else nullcontext():
            try:
                await self._stream(stream, view)
            finally:
                if view is None:
                    self.console.print()  # end the line, also when the reply is stopped

    async def _stream(self, stream: Events, view: Live | None) -> None:
        text = ""
        async for batch in stream:
            for event in batch:
                if isinstance(event, TextDelta):
                    text += event.text
                    if view is not None:
                        view.update(Markdown(text))
                    else:
                        self.console.print(event.text, end="", markup=False, highlight=False)
                elif isinstance(event, ToolStart):
                    self.console.print(
                        f"[dim]⚙ {escape(event.name)} {escape(event.arguments)}[/]",
                        highlight=False,
                    )
                elif isinstance(event, ToolEnd):
                    first = event.output.splitlines()[0][:100] if event.output else ""
                    self.console.print(f"[dim]  → {escape(first)}[/]", highlight=False)

    async def command(self, session: ChatSession, line: str) -> ChatSession | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        backend = self.backend
        if name in ("/quit", "/exit"):
            return None
        if name == "/new":
            session = await backend.create(self.model)
            self.console.print(f"[dim]new session {session.id}[/]")
        elif name == "/compact":
            result = await backend.compact(session, self.model)
            self.console.print(
                f"[dim]{result['messages_before']} → {result['messages_after']} "
                f"messages, about {result['tokens_before']} → {result['tokens_after']}"
                f" tokens; {result['flushed']} memory saves[/]"
            )
        elif name == "/model":
            if arg:
                try:
                    await backend.set_model(session, arg)
                except ProviderError as exc:
                    self.console.print(f"[red]{escape(exc.message)}[/]")
                    return session
                self.model = None
            self.console.print(f"[dim]model {escape(backend.model_of(session, self.model))}[/]")
        elif name == "/context":
            found = await backend.context(session, self.model)
            used, window = found["tokens"], found["window"]
            self.console.print(
                f"[dim]about {used} of {window} tokens "
                f"({used / max(window, 1):.0%}); {found['messages']} "
                f"messages; compacts past {found['limit']}[/]"
            )
        else:
            self.console.print(f"[dim]{escape(HELP)}[/]")
        return session
