"""``localgpt serve`` at its edges: a taken port, a second server on the same data, and the
lines that say when it is ready and when it has stopped."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Server, free_port, gateway_config, isolated_env, local_config
from tests.fakes import wait_for
from tests.fakes.openai_fake import FakeOpenAI

TAKEN = "is taken by another program; stop it, or set [server] port (or `localgpt serve --port`)"


def serve(home: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = home / "serve.toml"
    path.write_text(config)
    return subprocess.run(
        [sys.executable, "-m", "localgpt", "serve", "--config", str(path), *args],
        capture_output=True,
        text=True,
        env=isolated_env(home),
        timeout=60,
    )


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6"])
def test_a_taken_port_is_one_line_and_nothing_loads(tmp_path: Path, family: int) -> None:
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    with socket.socket(family) as other:
        try:
            other.bind((host, 0))
        except OSError:
            pytest.skip(f"no {host} here")
        other.listen()
        port = other.getsockname()[1]
        # The embedded model as default: loading it would take seconds and log lines.
        done = serve(tmp_path, local_config(), "--host", host, "--port", str(port))
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    assert done.returncode == 1
    assert done.stderr == f"error: {shown} {TAKEN}\n"
    assert done.stdout == ""  # no log at all: nothing was started


def test_a_second_server_on_the_same_data_is_refused(
    tmp_path: Path, openai_upstream: FakeOpenAI
) -> None:
    from tests.conftest import start_server

    home = tmp_path / "home"
    config = gateway_config(openai_upstream.url, gateway=False)
    first = start_server(config, home)
    try:
        done = serve(home, config, "--port", str(free_port()))
        assert done.returncode == 1
        state = home / "state" / "localgpt"
        assert done.stderr == (
            f"error: another LocalGPT server (pid {first.process.pid} at {first.url}) already "
            f"uses the data in {state}; stop it first, or use that one\n"
        )
        # Configured otherwise, a second one starts.
        shared = start_server(config + "[server]\nallow_shared_state = true\n", home)
        shared.stop()
        assert shared.process.returncode == 0
    finally:
        first.stop()
    # The lock went with the first server: the next one starts.
    again = start_server(config, home)
    again.stop()
    assert again.process.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_the_terminal_says_when_it_is_ready_and_when_it_stops(
    tmp_path: Path, openai_upstream: FakeOpenAI, sig: signal.Signals
) -> None:
    from tests.conftest import start_server

    server: Server = start_server(gateway_config(openai_upstream.url), tmp_path)
    try:
        ready = f"ready: API {server.url}/v1, chat page {server.url}/"
        assert wait_for(lambda: ready in server.log(), 10), server.log()
        server.process.send_signal(sig)  # Ctrl-C, or a service manager's stop
        assert server.process.wait(10) == 0
    finally:
        server.stop()
    lines = server.log().splitlines()
    assert sum(ready in line for line in lines) == 1
    assert lines[-1].endswith(" INFO localgpt.api [-] stopped; goodbye")
    assert "Traceback" not in server.log() and "Aborted" not in server.log()
