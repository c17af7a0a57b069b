"""``localgpt sessions list | show | delete``: the saved chat sessions of this machine."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from localgpt.cli.common import JsonOption, fail, when

sessions_app = typer.Typer(
    help="List, show and delete the saved chat sessions.", no_args_is_help=True
)


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
        raise fail(f"{session_id} is the start of {len(matches)} session ids; give more of it", 1)
    raise fail(f"no session {session_id} (see `localgpt sessions list`)", 1)


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
            when(s.updated),
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
    print(f"created {when(session.created)}, updated {when(session.updated)}")
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
