"""Native chat sessions, kept as JSONL files (one header line, then one line per message).

Files live in ``$XDG_STATE_HOME/localgpt/sessions/`` with mode 0600. A turn's new messages are
appended in one write and fsynced; anything that rewrites a session (compaction, clearing,
a model change) writes a temporary file and renames it over the old one. A process killed at
any moment therefore loses at most the turn in flight: a torn last line is ignored on load.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localgpt.memory.workspace import atomic_write

_ID = re.compile(r"[0-9a-f]{32}")
VERSION = 1


@dataclass
class Session:
    id: str
    created: float
    updated: float
    model: str | None = None
    title: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    compactions: int = 0

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
        }

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


class SessionStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._cache: dict[str, Session] = {}

    def _path(self, session_id: str) -> Path:
        return self.folder / f"{session_id}.jsonl"

    def _ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def create(self, model: str | None = None) -> Session:
        now = time.time()
        session = Session(uuid.uuid4().hex, now, now, model)
        self.rewrite(session)
        return session

    def get(self, session_id: str) -> Session | None:
        if not _ID.fullmatch(session_id):
            return None  # never let an id become a path outside the folder
        cached = self._cache.get(session_id)
        if cached is not None:
            return cached
        path = self._path(session_id)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        session = _parse(session_id, lines)
        if session is not None:
            self._cache[session_id] = session
        return session

    def all(self) -> list[Session]:
        if not self.folder.is_dir():
            return []
        found = [self.get(p.stem) for p in self.folder.glob("*.jsonl")]
        return sorted((s for s in found if s is not None), key=lambda s: s.updated, reverse=True)

    def append(self, session: Session, messages: list[dict[str, Any]]) -> None:
        """Add a turn's messages: one write, then fsync."""
        if not messages:
            return
        if session.title is None:
            first = next((m for m in messages if m.get("role") == "user"), None)
            if first is not None:
                session.title = _title(first.get("content"))
                session.messages.extend(messages)
                session.updated = time.time()
                self.rewrite(session)  # the header changed: rewrite once
                return
        data = "".join(
            json.dumps({"type": "message", **m}, ensure_ascii=False) + "\n" for m in messages
        )
        fd = os.open(self._path(session.id), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        session.messages.extend(messages)
        session.updated = time.time()

    def rewrite(self, session: Session) -> None:
        """Replace the whole file atomically (temporary file, fsync, rename)."""
        self._ensure_folder()
        session.updated = time.time()
        lines = [json.dumps(session.header(), ensure_ascii=False)]
        lines += [
            json.dumps({"type": "message", **m}, ensure_ascii=False) for m in session.messages
        ]
        atomic_write(self._path(session.id), ("\n".join(lines) + "\n").encode("utf-8"))
        self._cache[session.id] = session

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


def _parse(session_id: str, lines: list[str]) -> Session | None:
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a torn last line from a crash: everything before it stands
    if not records or records[0].get("type") != "session":
        return None
    head = records[0]
    messages = [
        {k: v for k, v in r.items() if k != "type"}
        for r in records[1:]
        if r.get("type") == "message"
    ]
    return Session(
        session_id,
        head.get("created", 0.0),
        head.get("updated", 0.0),
        head.get("model"),
        head.get("title"),
        messages,
        head.get("compactions", 0),
    )
