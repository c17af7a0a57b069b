"""``localgpt chat``: an interactive session in the terminal, streamed, with memory and tools.

Slash commands: ``/new`` starts a new session, ``/compact`` compacts this one, ``/model
[name]`` shows or sets its model, ``/context`` shows how much of the context it uses,
``/quit`` leaves (as do Ctrl-D and Ctrl-C at the prompt). Ctrl-C while a reply streams
stops that reply, and the chat goes on.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncGenerator, Coroutine, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape

from localgpt.agent.agent import Agent
from localgpt.agent.conversation import Conversations
from localgpt.agent.events import AgentEvent, ToolEnd, ToolStart
from localgpt.agent.sessions import Session, SessionStore
from localgpt.agent.tools import Permissions
from localgpt.config import Paths
from localgpt.memory.manager import Memory
from localgpt.providers.base import ProviderError, TextDelta
from localgpt.providers.router import Router

if TYPE_CHECKING:
    from localgpt.config import Config

HELP = "/new  /compact  /model [name]  /context  /quit"
T = TypeVar("T")


class Interrupted(Exception):
    """Ctrl-C stopped what was running."""


class ChatApp:
    def __init__(self, config: Config, console: Console, model: str | None) -> None:
        self.config = config
        self.console = console
        self.router = Router(config)
        self.memory = Memory(config)
        self.agent = Agent(config, self.router, self.memory)
        self.conversations = Conversations(
            self.agent, SessionStore(Paths.from_env().state_dir / "sessions")
        )
        # The person at the terminal may let the assistant run local tools, if enabled.
        self.permissions = Permissions(write_memory=True, local_tools=True)
        self.model = model

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
                    # Conversations.turn keeps the question and the text said so far.
                    self.console.print(f"[yellow]{escape('[stopped]')}[/]", highlight=False)
                    continue
                if next_session is None:
                    return
                session = next_session
        finally:
            try:
                loop.run_until_complete(self.close())
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

    async def start(self, session_id: str | None) -> Session:
        await self.memory.start(watch=False)
        store = self.conversations.store
        found = store.get(session_id) if session_id else None
        if session_id and found is None:
            self.console.print(f"[yellow]no session {escape(session_id)}; starting a new one[/]")
        session = found if found is not None else await asyncio.to_thread(store.create, self.model)
        self.console.print(
            f"[dim]session {session.id} · model "
            f"{escape(self.conversations.model_of(session, self.model))} · {escape(HELP)} · "
            "Ctrl-C stops a reply[/]"
        )
        return session

    async def close(self) -> None:
        try:
            await self.memory.aclose()
        finally:
            await self.router.aclose()

    async def handle(self, session: Session, line: str) -> Session | None:
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

    async def ask(self, session: Session, text: str) -> None:
        conversations = self.conversations
        model = conversations.model_of(session, self.model)
        try:
            if await conversations.needs_compaction(session, model):
                self.console.print("[dim]compacting the session first...[/]")
                await conversations.compact(session, model, self.permissions)
            _route, stream = await conversations.turn(session, text, model, self.permissions)
            try:
                await self.show(stream)
            finally:
                await stream.aclose()
        except ProviderError as exc:
            self.console.print(f"\n[bold red]error:[/] {escape(exc.message)}", highlight=False)

    async def show(self, stream: AsyncGenerator[Sequence[AgentEvent], None]) -> None:
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

    async def _stream(
        self, stream: AsyncGenerator[Sequence[AgentEvent], None], view: Live | None
    ) -> None:
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

    async def command(self, session: Session, line: str) -> Session | None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        conversations = self.conversations
        if name in ("/quit", "/exit"):
            return None
        if name == "/new":
            session = await asyncio.to_thread(conversations.store.create, self.model)
            self.console.print(f"[dim]new session {session.id}[/]")
        elif name == "/compact":
            result = await conversations.compact(session, self.model, self.permissions)
            self.console.print(
                f"[dim]{result.messages_before} → {result.messages_after} "
                f"messages, about {result.tokens_before} → {result.tokens_after}"
                f" tokens; {result.flushed} memory saves[/]"
            )
        elif name == "/model":
            if arg:
                try:
                    self.router.resolve(arg)
                except ProviderError as exc:
                    self.console.print(f"[red]{escape(exc.message)}[/]")
                    return session
                session.model = arg
                self.model = None
                await asyncio.to_thread(conversations.store.rewrite, session)
            self.console.print(
                f"[dim]model {escape(conversations.model_of(session, self.model))}[/]"
            )
        elif name == "/context":
            model = conversations.model_of(session, self.model)
            window = self.router.context_window(model) or 0
            used = await conversations.tokens(session, model)
            self.console.print(
                f"[dim]about {used} of {window} tokens "
                f"({used / max(window, 1):.0%}); {len(session.messages)} "
                f"messages; compacts past {conversations.limit(model)}[/]"
            )
        else:
            self.console.print(f"[dim]{escape(HELP)}[/]")
        return session
