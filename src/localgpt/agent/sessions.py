"""Native chat sessions, kept as JSONL files (one header line, then one line per message).

Files live in ``$XDG_STATE_HOME/localgpt/sessions/`` with mode 0600. A turn's new messages are
appended in one write and fsynced; anything that rewrites a session (compaction, clearing,
a model change) writes a temporary file and renames it over the old one; one that a crash
left behind is removed when the store is next opened. A process killed at any moment
therefore loses at most the turn in flight: a line that does not parse (a torn last line) is
skipped on load with a warning, and the next append starts on a new line, so turns saved
after it are never hidden by it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from localgpt.memory.workspace import atomic_write, remove_stale_temp_files
from localgpt.providers.messages import ChatMessage

_ID = re.compile(r"[0-9a-f]{32}")
VERSION = 1

log = logging.getLogger("localgpt.agent")


@dataclass
class Session:
    id: str
    created: float
    updated: float
    model: str | None = None
    title: str | None = None
    messages: list[ChatMessage] = field(default_factory=list)
    compactions: int = 0
    owner: str | None = None  # the key that made it, when keys are in use

    def header(self) -> dict[str, Any]:
        return {
            "type": "session",
            "version": VERSION,
            "id": self.id,
            "created": self.created,
            "updated": self.updated,
            "model": self.model,
            "title": self.title,
            "compactions": self.compactions,
            "owner": self.owner,
        }

    def visible_to(self, caller: str | None, admin: bool = False) -> bool:
        """A key sees the sessions it made; an admin key, and everyone for sessions made
        without a key, sees them all."""
        return admin or self.owner is None or self.owner == caller

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "model": self.model,
            "created": int(self.created),
            "updated": int(self.updated),
            "message_count": len(self.messages),
            "compactions": self.compactions,
        }


class Sessions(Protocol):
    """Where sessions are kept: JSONL files (``SessionStore``), or PostgreSQL
    (``shared.durable.PgSessionStore``) for several server processes. Called from threads."""

    def create(self, model: str | None = None, owner: str | None = None) -> Session: ...

    def get(self, session_id: str) -> Session | None: ...

    def all(self) -> list[Session]: ...

    def append(self, session: Session, messages: list[ChatMessage]) -> bool: ...

    def rewrite(self, session: Session, create: bool = False) -> bool: ...

    def delete(self, session_id: str) -> bool: ...


class SessionStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, Session] = {}
        remove_stale_temp_files(folder)  # a crash in the middle of a rewrite leaves one

    def _path(self, session_id: str) -> Path:
        return self.folder / f"{session_id}.jsonl"

    def _ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def create(self, model: str | None = None, owner: str | None = None) -> Session:
        now = time.time()
        session = Session(uuid.uuid4().hex, now, now, model, owner=owner)
        self.rewrite(session, create=True)
        return session

    def get(self, session_id: str) -> Session | None:
        if not _ID.fullmatch(session_id):
            return None  # never let an id become a path outside the folder
        cached = self._cache.get(session_id)
        if cached is not None:
            return cached
        path = self._path(session_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a folder named like a session, a file we may not read
            log.warning("session %s: %s; skipped", session_id, exc.strerror or exc)
            return None
        # Split on "\n" only: str.splitlines would also break at U+2028 and other separators
        # that json.dumps leaves unescaped inside a message.
        lines = data.decode("utf-8", errors="replace").split("\n")
        session = _parse(session_id, lines)
        if session is None:
            return None
        # Two threads may have read the file at once: the first copy cached is the one every
        # caller shares (and appends to), never replaced by a later, possibly older, read.
        return self._cache.setdefault(session_id, session)

    def all(self) -> list[Session]:
        if not self.folder.is_dir():
            return []
        found = [self.get(p.stem) for p in self.folder.glob("*.jsonl")]
        return sorted((s for s in found if s is not None), key=lambda s: s.updated, reverse=True)

    def append(self, session: Session, messages: list[ChatMessage]) -> bool:
        """Add a turn's messages: one write, then fsync. False (with a warning, nothing
        written) when the session's file is gone, deleted since it was loaded: appending
        would bring it back as a file without its header line."""
        if not messages:
            return True
        path = self._path(session.id)
        if session.title is None:
            first = next((m for m in messages if m.get("role") == "user"), None)
            if first is not None:
                if not path.exists():
                    return _gone(session)
                session.title = _title(first.get("content"))
                session.messages.extend(messages)
                session.updated = time.time()
                self.rewrite(session)  # the header changed: rewrite once
                return True
        data = "".join(
            json.dumps({"type": "message", **m}, ensure_ascii=False) + "\n" for m in messages
        ).encode("utf-8")
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND)  # never O_CREAT, see above
        except FileNotFoundError:
            return _gone(session)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end a torn last line: it is skipped on load
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        session.messages.extend(messages)
        session.updated = time.time()
        return True

    def rewrite(self, session: Session, create: bool = False) -> bool:
        """Replace the whole file atomically (temporary file, fsync, rename). False (with a
        warning, nothing written) when the session was deleted meanwhile, unless creating:
        a late compaction or model change must not bring a deleted session back."""
        self._ensure_folder()
        if not create and not self._path(session.id).exists():
            return _gone(session)
        session.updated = time.time()
        lines = [json.dumps(session.header(), ensure_ascii=False)]
        lines += [
            json.dumps({"type": "message", **m}, ensure_ascii=False) for m in session.messages
        ]
        atomic_write(self._path(session.id), ("\n".join(lines) + "\n").encode("utf-8"))
        self._cache[session.id] = session
        return True

    def delete(self, session_id: str) -> bool:
        if self.get(session_id) is None:
            return False
        self._path(session_id).unlink(missing_ok=True)
        self._cache.pop(session_id, None)
        return True


def _title(content: Any) -> str:
    text = content if isinstance(content, str) else json.dumps(content)
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."


def _gone(session: Session) -> bool:
    log.warning("session %s was deleted; its new messages are not saved", session.id)
    return False


def _parse(session_id: str, lines: list[str]) -> Session | None:
    """The session in a file's lines; None unless the first line is its header. A line that
    does not parse (torn by a crash, or damaged) is skipped with a warning: the lines after
    it were appended later and stand."""
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if number == 1:
                return None  # not even a header: not a session file
            log.warning("session %s: line %d is damaged; skipped", session_id, number)
            continue
        records.append(record)
    if not records or records[0].get("type") != "session":
        return None
    head = records[0]
    # Read as written; which keys a message may carry was checked when it was written.
    messages = [
        cast(ChatMessage, {k: v for k, v in r.items() if k != "type"})
        for r in records[1:]
        if r.get("type") == "message" and r.get("role") in ROLES
    ]
    if len(messages) < len(records) - 1:
        log.warning("session %s: records without a known role are skipped", session_id)
    # A header edited by hand or damaged keeps what is sound: a wrong field is not a 500.
    return Session(
        session_id,
        _number(head.get("created")),
        _number(head.get("updated")),
        _text(head.get("model")),
        _text(head.get("title")),
        messages,
        int(_number(head.get("compactions"))),
        _text(head.get("owner")),
    )


ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
