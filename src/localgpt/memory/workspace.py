"""The user's workspace: the markdown files that are LocalGPT's memory (upstream's layout).

``MEMORY.md`` holds lasting facts, ``memory/YYYY-MM-DD.md`` the day's log, ``SOUL.md`` and
friends shape the assistant; all of them are plain files the user may edit. Every path that
comes from a model or a user is confined to the root by ``resolve``, symlinks included.
Writes replace the file atomically, so a crash leaves the old content or the new, never half.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from datetime import date, timedelta
from pathlib import Path, PurePosixPath

# The system-prompt context, in order; {today} and {yesterday} are ISO dates.
WORKSPACE_FILES = (
    "IDENTITY.md",
    "USER.md",
    "SOUL.md",
    "AGENTS.md",
    "TOOLS.md",
    "MEMORY.md",
    "memory/{today}.md",
    "memory/{yesterday}.md",
    "HEARTBEAT.md",
)
TRUNCATED = "[... truncated]"
NEW_FILE_MODE = 0o600

STARTERS = {
    "MEMORY.md": (
        "# Memory\n\n"
        "Lasting facts about the user, their preferences, projects and decisions. Keep it\n"
        "short and current; the day's events go in memory/YYYY-MM-DD.md.\n"
    ),
    "SOUL.md": (
        "# Soul\n\n"
        "How the assistant behaves. Edit it to taste.\n\n"
        "- Be direct and concise; say so when unsure.\n"
        "- Ask before anything destructive or irreversible.\n"
        "- Write down what is worth remembering: lasting facts in MEMORY.md, the day's\n"
        "  events in the daily log.\n"
    ),
    "HEARTBEAT.md": ("# Heartbeat\n\nTasks to check on periodically, one per line. None yet.\n"),
}


class WorkspaceError(Exception):
    """A refused or failed workspace operation, worded to show a user or a model."""


def daily_path(day: date) -> str:
    return f"memory/{day.isoformat()}.md"


def workspace_files(today: date) -> list[str]:
    """``WORKSPACE_FILES`` for ``today``, present or not."""
    yesterday = today - timedelta(days=1)
    return [
        name.format(today=today.isoformat(), yesterday=yesterday.isoformat())
        for name in WORKSPACE_FILES
    ]


def split_lines(text: str) -> list[str]:
    """Lines as an editor numbers them: split on ``\\n`` only, ``\\r`` dropped, no phantom
    line after a final newline. The index and ``Workspace.read`` share this numbering."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


class Workspace:
    """The workspace folder; every path its methods take is relative to ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self._write_lock = threading.Lock()  # appends read, then replace: one at a time

    def ensure(self) -> None:
        """Create the folders and starter files that are missing; never overwrite a file."""
        for folder in (self.root, self.root / "memory", self.root / "knowledge"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, text in STARTERS.items():
            try:
                fd = os.open(self.root / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
            except FileExistsError:
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)

    # --- reading --------------------------------------------------------------------------

    def context(self, today: date, cap: int = 4000) -> str:
        """The present files of ``workspace_files(today)``, each as ``<file path="...">``
        block, at most ``cap`` characters of each. Empty and unreadable files are left out;
        unchanged files give byte-identical output, which keeps a prompt cache warm."""
        blocks = []
        for name in workspace_files(today):
            try:
                path = self.resolve(name)
                text = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""
            except (WorkspaceError, OSError):
                continue
            text = text.strip()
            if not text:
                continue
            if len(text) > cap:
                text = f"{text[:cap].rstrip()}\n{TRUNCATED}"
            blocks.append(f'<file path="{name}">\n{text}\n</file>')
        return "\n\n".join(blocks)

    def resolve(self, relative: str) -> Path:
        """The real path of ``relative`` inside the workspace, which need not exist yet.

        Refused: empty or absolute paths, and anything that lands outside the root once
        ``..`` and symlinks (of the file or of any parent folder) are followed.
        """
        if not relative or "\0" in relative:
            raise WorkspaceError("empty or invalid path")
        if PurePosixPath(relative).is_absolute() or Path(relative).is_absolute():
            raise WorkspaceError(
                f"{relative}: absolute paths are not allowed; give a path relative to the workspace"
            )
        root = self.root.resolve()
        target = (root / relative).resolve()
        if not target.is_relative_to(root):
            raise WorkspaceError(f"{relative}: path escapes the workspace")
        if target == root:
            raise WorkspaceError(f"{relative}: is the workspace itself, not a file")
        return target

    def read(
        self, relative: str, start_line: int | None = None, end_line: int | None = None
    ) -> str:
        """The file's text, or its lines ``start_line..end_line`` (1-based, inclusive)."""
        path = self.resolve(relative)
        if not path.is_file():
            raise WorkspaceError(f"{relative}: no such file in the workspace")
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")  # newlines as stored
        except OSError as exc:
            raise WorkspaceError(f"{relative}: cannot read: {exc.strerror}") from exc
        if start_line is None and end_line is None:
            return text
        lines = split_lines(text)
        first = 1 if start_line is None else start_line
        last = len(lines) if end_line is None else end_line
        if first < 1 or (end_line is not None and end_line < first):
            raise WorkspaceError(f"{relative}: invalid line range {first}-{last}")
        if first > len(lines):
            raise WorkspaceError(f"{relative}: line {first} is past the end ({len(lines)} lines)")
        return "\n".join(lines[first - 1 : last]) + "\n"

    def markdown_files(self) -> list[Path]:
        """Every ``*.md`` under the root, sorted. Hidden files and folders are skipped, and so
        are symlinks to folders (not followed) and symlinked files that leave the root."""
        root = self.root.resolve()
        found = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                path = Path(folder) / name
                if self._indexable(path, root):
                    found.append(path)
        return sorted(found)

    def markdown_file(self, relative: str) -> Path | None:
        """The file at ``relative`` if ``markdown_files`` would list it, else None."""
        parts = PurePosixPath(os.path.normpath(relative)).parts
        if not parts or any(part.startswith((".", "/")) for part in parts):
            return None  # absolute, escaping, hidden, or the root itself
        root = self.root.resolve()
        path = root.joinpath(*parts)
        if path.parent.resolve() != path.parent:
            return None  # under a symlinked folder, which markdown_files does not walk
        return path if self._indexable(path, root) else None

    @staticmethod
    def _indexable(path: Path, root: Path) -> bool:
        if path.name.startswith(".") or path.suffix.lower() != ".md":
            return False
        if path.is_symlink():
            target = path.resolve()
            return target.is_relative_to(root) and target.is_file()
        return path.is_file()

    # --- writing --------------------------------------------------------------------------

    def append(self, target: str, text: str, today: date) -> Path:
        """Append ``text`` to today's log (``target="daily"``) or to MEMORY.md (``"memory"``)
        and return its path under ``root``. A new daily log starts with a ``# YYYY-MM-DD``
        heading."""
        if target == "daily":
            relative, header = daily_path(today), f"# {today.isoformat()}\n\n"
        elif target == "memory":
            relative, header = "MEMORY.md", "# Memory\n\n"
        else:
            raise WorkspaceError(f"unknown memory target {target!r}; use 'daily' or 'memory'")
        with self._write_lock:
            path = self.resolve(relative)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                old = path.read_bytes().decode("utf-8") if path.exists() else header
            except (OSError, UnicodeDecodeError) as exc:
                raise WorkspaceError(f"{relative}: cannot read: {exc}") from exc
            if old and not old.endswith("\n"):
                old += "\n"
            new = old + text if text.endswith("\n") else f"{old}{text}\n"
            try:
                atomic_write(path, new.encode("utf-8"))
            except OSError as exc:
                raise WorkspaceError(f"{relative}: cannot write: {exc.strerror}") from exc
        return self.root / relative


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash at any moment leaves the old file or
    the new one: write a temporary file beside it, fsync, rename over, fsync the folder.
    An existing file keeps its permissions; a new one is private (0600)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = NEW_FILE_MODE
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
