"""``localgpt chat`` on a real terminal: Ctrl-C stops the reply being streamed and the chat
goes on; Ctrl-C at the prompt ends it."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, gateway_config, isolated_env
from tests.fakes import Script, wait_for
from tests.fakes.openai_fake import FakeOpenAI

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pty")

ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>])")


class Terminal:
    """A child process whose controlling terminal is a pty we type into."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
        self.process = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**env, "TERM": "xterm", "COLUMNS": "160", "LINES": "40"},
            start_new_session=True,
            # The pty becomes the controlling terminal: Ctrl-C on it then sends SIGINT.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.raw = b""

    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", "replace")).replace("\r", "")

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.raw += os.read(self.master, 65536)
            except OSError:  # EIO: the child closed the terminal
                time.sleep(timeout)

    def expect(self, needle: str, start: int = 0, timeout: float = 60) -> int:
        """Wait until ``needle`` shows after offset ``start`` of the text; its end offset."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            at = self.text().find(needle, start)
            if at >= 0:
                return at + len(needle)
            self.read(0.05)
        raise AssertionError(f"{needle!r} did not show; the terminal had:\n{self.text()}")

    def type(self, data: str) -> None:
        os.write(self.master, data.encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


def test_ctrl_c_stops_the_reply_not_the_chat(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    question = "slow question with quite a few words so it takes a while"
    # Ten pieces a second apart: plenty of time to interrupt it after the first two.
    openai_upstream.rules.append((question, Script(delay=1.0)))
    config = tmp_path / "config.toml"
    # A free port: no server answers there, so the chat runs in this process.
    config.write_text(
        gateway_config(openai_upstream.url, gateway=False) + f"[server]\nport = {free_port()}\n"
    )
    term = Terminal(
        [sys.executable, "-m", "localgpt", "chat", "--config", str(config)],
        isolated_env(tmp_path),
    )
    try:
        at = term.expect("you>")
        term.type(question + "\n")
        at = term.expect("You said:", at)
        term.type("\x03")
        at = term.expect("[stopped]", at, timeout=20)
        at = term.expect("you>", at)
        assert "a while" not in term.text()[term.text().find("You said:") :]  # cut short
        assert wait_for(lambda: bool(openai_upstream.disconnects), 10)  # the request ended

        term.type("second one\n")
        at = term.expect("You said: second one", at)
        at = term.expect("you>", at)
        sent = openai_upstream.last_body()["messages"]
        # The stopped turn is kept as far as it went: the question and the words shown.
        kept = [m for m in sent if m["role"] in ("user", "assistant")]
        asked, partial, second = kept[-3:]
        assert (asked["role"], asked["content"]) == ("user", question)
        assert partial["role"] == "assistant" and partial["content"].startswith("You said:")
        assert "a while" not in partial["content"] and second["content"] == "second one"

        term.type("\x03")  # at the prompt: leave
        assert term.process.wait(30) == 0, term.text()
    finally:
        term.close()
    files = list((tmp_path / "state" / "localgpt" / "sessions").glob("*.jsonl"))
    assert len(files) == 1
    saved = files[0].read_text()
    assert "second one" in saved and question in saved
