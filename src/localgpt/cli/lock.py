"""One server per state folder: ``localgpt serve`` holds ``server.lock`` while it runs.

Two servers on the same folders would both append to the sessions and both rewrite the
memory index; the second one is refused with the first one's pid and address, which the
holder writes into the lock file. The lock is ``flock``: the kernel releases it when the
process ends, however it ends, so a crash never leaves a stale lock behind. The file itself
stays (removing it would let a third server lock a new file while a second still waits on
the old one).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock; worded for the user."""


class ServerLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, url: str) -> None:
        """Take the lock and write our pid and ``url`` into it, or raise ``LockHeld``."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LockHeld(
                f"another LocalGPT server ({holder}) already uses the data in "
                f"{self.path.parent}; stop it first, or use that one"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "url": url}).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # truncated first: no one reads a finished server's pid
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _holder(fd: int) -> str:
    """``pid N at URL`` from the lock file, as far as the holder has written it."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        pid, url = data.get("pid"), data.get("url")
    except (OSError, ValueError, AttributeError):
        pid = url = None
    if pid is None:
        return "pid unknown"
    return f"pid {pid} at {url}" if url else f"pid {pid}"
