"""The user's workspace: the markdown files that are LocalGPT's memory (upstream's layout).

``MEMORY.md`` holds lasting facts, ``memory/YYYY-MM-DD.md`` the day's log, ``SOUL.md`` and
friends shape the assistant; all of them are plain files the user may edit. Every path that
comes from a model or a user is confined to the root by ``resolve``, symlinks included.
Writes replace the file atomically, so a crash leaves the old content or the new, never half
(and a temporary file, removed at the next start).
Reads return at most ``READ_MAX_LINES`` lines or ``READ_MAX_BYTES`` bytes at once, and refuse
hidden files and folders and anything that is not UTF-8 text.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path, PurePosixPath
from typing import BinaryIO

log = logging.getLogger("localgpt.memory")

# The system-prompt context, in order; {today} and {yesterday} are ISO dates. The files that
# change least come first, so a change leaves the longest prefix in a model's prompt cache.
# HEARTBEAT.md is left out (upstream puts it in every prompt): it is for the heartbeat's own
# runs, and costs every chat turn its tokens.
WORKSPACE_FILES = (
    "IDENTITY.md",
    "USER.md",
    "SOUL.md",
    "AGENTS.md",
    "TOOLS.md",
    "MEMORY.md",
    "memory/{yesterday}.md",
    "memory/{today}.md",
)
TRUNCATED = "[... truncated]"
NEW_FILE_MODE = 0o600
# What one ``Workspace.read`` returns at most; more is cut at a line, with a note.
READ_MAX_LINES = 2000
READ_MAX_BYTES = 64 * 1024
CUT_NOTE = "[... cut: "  # starts the last line of a read cut at the limits
_COUNT_MAX_BYTES = 32 * 1024 * 1024  # larger files are not scanned for their line count
_SNIFF_BYTES = 8192  # a NUL byte in this much of the start marks a binary file, read or not
# atomic_write's temporary files: ".NAME." + mkstemp's eight random characters + ".tmp".
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
# A younger temporary file may be another process's write in flight, not a crash's leftover.
TEMP_MAX_AGE = 60.0

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
        """Create the folders and starter files that are missing; never overwrite a file.
        Temporary files that a crash left behind are removed."""
        for folder in (self.root, self.root / "memory", self.root / "knowledge"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        remove_stale_temp_files(self.root)
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
            if not text or text == STARTERS.get(name, "").strip():
                continue  # empty, or a starter file nobody has written in yet
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
        try:
            target = (root / relative).resolve()
        except RuntimeError:  # a symlink loop
            raise WorkspaceError(f"{relative}: a loop of symbolic links") from None
        except OSError as exc:  # a name too long, among others
            raise WorkspaceError(f"{relative}: {exc.strerror or exc}") from None
        if not target.is_relative_to(root):
            raise WorkspaceError(f"{relative}: path escapes the workspace")
        if target == root:
            raise WorkspaceError(f"{relative}: is the workspace itself, not a file")
        return target

    def read(
        self, relative: str, start_line: int | None = None, end_line: int | None = None
    ) -> str:
        """The file's text, or its lines ``start_line..end_line`` (1-based, inclusive).

        One call returns at most ``READ_MAX_LINES`` lines and ``READ_MAX_BYTES`` bytes of
        the file: a longer answer is cut after a whole line (a single longer line, after
        its first ``READ_MAX_BYTES``) and ends with a note naming the lines shown and the
        ``start_line`` to read on from. A whole file within the limits comes back as stored
        (``\\r\\n`` and a missing final newline kept); lines come back ``\\n``-ended.
        Hidden files and folders (a name starting with ".") and files that are not UTF-8
        text are refused.
        """
        path = self.resolve(relative)
        hidden = [*PurePosixPath(relative).parts, *path.relative_to(self.root.resolve()).parts]
        if any(part.startswith(".") and part not in (".", "..") for part in hidden):
            raise WorkspaceError(
                f"{relative}: hidden files and folders (names starting with '.') cannot be read"
            )
        try:
            found = path.is_file()
        except OSError as exc:
            raise WorkspaceError(f"{relative}: {exc.strerror or exc}") from None
        if not found:
            raise WorkspaceError(f"{relative}: no such file in the workspace")
        first = 1 if start_line is None else start_line
        if first < 1 or (end_line is not None and end_line < first):
            last = "" if end_line is None else end_line
            raise WorkspaceError(f"{relative}: invalid line range {first}-{last}")
        try:
            with path.open("rb") as f:
                head = f.read(_SNIFF_BYTES)
                if b"\0" in head:
                    raise WorkspaceError(_not_text(relative))
                if start_line is None and end_line is None:
                    whole = head + f.read(READ_MAX_BYTES + 1 - len(head))
                    lines = whole.count(b"\n") + (whole[-1:] not in (b"", b"\n"))
                    if len(whole) <= READ_MAX_BYTES and lines <= READ_MAX_LINES:
                        return _decode(whole, relative)  # newlines as stored
                f.seek(0)
                return _read_lines(f, relative, first, end_line, os.fstat(f.fileno()).st_size)
        except OSError as exc:
            raise WorkspaceError(f"{relative}: cannot read: {exc.strerror}") from exc

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

    def update(self, relative: str, header: str, change: Callable[[str], str | None]) -> bool:
        """Rewrite a file through ``change`` (its text, or ``header`` if it does not exist
        yet; it returns the new text, or None to leave the file as it is), atomically and
        under the write lock, so no other write slips between the read and the write."""
        with self._write_lock:
            path = self.resolve(relative)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            try:
                old = path.read_bytes().decode("utf-8") if path.exists() else header
            except (OSError, UnicodeDecodeError) as exc:
                raise WorkspaceError(f"{relative}: cannot read: {exc}") from exc
            new = change(old)
            if new is None:
                return False
            try:
                atomic_write(path, new.encode("utf-8"))
            except OSError as exc:
                raise WorkspaceError(f"{relative}: cannot write: {exc.strerror}") from exc
        return True


def _not_text(relative: str) -> str:
    return f"{relative}: not a text file (only UTF-8 text can be read)"


def _decode(data: bytes, relative: str, final: bool = True) -> str:
    """Strict UTF-8 without NUL bytes (valid UTF-8, but a sure sign of a binary file)."""
    if b"\0" in data:
        raise WorkspaceError(_not_text(relative))
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final)
    except UnicodeDecodeError:
        raise WorkspaceError(_not_text(relative)) from None


def _lines(f: BinaryIO, limit: int) -> Iterator[tuple[bytes, bool]]:
    """The file's lines (numbered as ``split_lines`` does), each as its first ``limit``
    bytes without the newline and whether that is all of it. Never holds more than
    ``limit`` bytes of one line: the rest of a longer line is skipped."""
    while line := f.readline(limit + 1):
        if line.endswith(b"\n"):
            yield line[:-1].removesuffix(b"\r"), True
        elif len(line) <= limit:
            yield line.removesuffix(b"\r"), True  # the last line, without a newline
        else:
            while (rest := f.readline(limit)) and not rest.endswith(b"\n"):
                pass  # skipped first: after the yield, the file is at the next line
            yield line[:limit], False


def _read_lines(f: BinaryIO, relative: str, first: int, end: int | None, size: int) -> str:
    """Lines ``first..end`` of ``f``, cut (with a note) at the limits of ``Workspace.read``."""
    shown: list[str] = []
    used = 0
    number = 0
    resume = 0  # the first line not shown although asked for, when the answer was cut
    long_line = False
    for number, (raw, whole) in enumerate(_lines(f, READ_MAX_BYTES), 1):
        if number < first:
            continue
        if end is not None and number > end:
            break
        if shown and (len(shown) == READ_MAX_LINES or used + len(raw) + 1 > READ_MAX_BYTES):
            resume = number
            break
        shown.append(_decode(raw, relative, final=whole))
        used += len(raw) + 1
        if not whole:
            long_line = True
            resume = number + 1
            break
    if not shown:
        raise WorkspaceError(f"{relative}: line {first} is past the end ({number} lines)")
    text = "\n".join(shown) + "\n"
    if not resume:
        return text
    total = ""
    if size <= _COUNT_MAX_BYTES:
        lines = resume - 1 + sum(1 for _ in _lines(f, READ_MAX_BYTES))
        total = f" of {lines}" if long_line else f" of {lines + 1}"
    shown_to = first + len(shown) - 1
    span = f"line {first}" if shown_to == first else f"lines {first}-{shown_to}"
    why = (
        f"line {shown_to} is longer than {READ_MAX_BYTES} bytes and only its start is shown"
        if long_line
        else f"at most {READ_MAX_LINES} lines or {READ_MAX_BYTES // 1024} KB are returned at once"
    )
    more = f"start_line={resume}" + (f" and end_line={end}" if end is not None else "")
    return f"{text}{CUT_NOTE}showing {span}{total}; {why}. To read on, ask again with {more}.]\n"


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


def remove_stale_temp_files(folder: Path, max_age: float = TEMP_MAX_AGE) -> list[Path]:
    """Remove what ``atomic_write`` leaves when its process dies before the rename: files
    named like its temporary files anywhere under ``folder``, last written more than
    ``max_age`` seconds ago. Symlinks are neither followed (a symlinked folder may lead out
    of ``folder``) nor removed. Each removal is logged; the removed paths are returned."""
    removed: list[Path] = []
    cutoff = time.time() - max_age
    for parent, _dirs, names in os.walk(folder):  # does not descend into symlinked folders
        for name in names:
            if not _TEMP_NAME.fullmatch(name):
                continue
            path = Path(parent) / name
            try:
                info = path.lstat()
                if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue  # removed meanwhile
            except OSError as exc:
                log.warning("cannot remove %s, left by an interrupted write: %s", path, exc)
                continue
            log.info("removed %s, left by an interrupted write", path)
            removed.append(path)
    return removed
