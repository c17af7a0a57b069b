"""Shared fixtures: fake upstreams on loopback, and the real server as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_fake import FakeAnthropic
from tests.fakes.ollama_fake import FakeOllama
from tests.fakes.openai_fake import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated_env(home: Path) -> dict[str, str]:
    """An environment whose HOME and XDG folders are all inside ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "LOCALGPT_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    home: Path

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(config: str, home: Path, extra_args: tuple[str, ...] = ()) -> Server:
    home.mkdir(parents=True, exist_ok=True)
    config_path = home / "config.toml"
    config_path.write_text(config)
    port = free_port()
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "localgpt",
                "serve",
                "--config",
                str(config_path),
                "--port",
                str(port),
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=isolated_env(home),
            cwd=home,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path, home)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become healthy:\n{server.log()}")


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI().start()
    yield fake
    fake.stop()


@pytest.fixture
def openai_upstream(fake_openai: FakeOpenAI) -> FakeOpenAI:
    fake_openai.reset()
    return fake_openai


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic().start()
    yield fake
    fake.stop()


@pytest.fixture
def anthropic_upstream(fake_anthropic: FakeAnthropic) -> FakeAnthropic:
    fake_anthropic.reset()
    return fake_anthropic


@pytest.fixture(scope="session")
def fake_ollama() -> Iterator[FakeOllama]:
    fake = FakeOllama().start()
    yield fake
    fake.stop()


@pytest.fixture
def ollama_upstream(fake_ollama: FakeOllama) -> FakeOllama:
    fake_ollama.reset()
    return fake_ollama


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Server]]:
    """Start (once per distinct config) a real server; all stop at the end of the session."""
    running: dict[str, Server] = {}

    def get(config: str) -> Server:
        server = running.get(config)
        if server is None or server.process.poll() is not None:
            home = tmp_path_factory.mktemp("home")
            server = running[config] = start_server(config, home)
        return server

    yield get
    for server in running.values():
        server.stop()


def gateway_config(upstream_url: str, *, gateway: bool = True, extra: str = "") -> str:
    return f"""
[agent]
default_model = "openai/fake-model"
gateway_mode = {"true" if gateway else "false"}

[providers.openai]
api_key = "sk-test-upstream"
base_url = "{upstream_url}/v1"
{extra}
"""


@pytest.fixture
def gateway(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    """A server in gateway mode in front of the fake OpenAI upstream."""
    return servers(gateway_config(openai_upstream.url))


@pytest.fixture
def assistant(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    """A server with the assistant layer on, in front of the fake OpenAI upstream."""
    return servers(gateway_config(openai_upstream.url, gateway=False))


SMOLLM = "local/smollm2-135m-instruct"


def local_config(model: str = SMOLLM, *, gateway: bool = False, extra: str = "") -> str:
    """A server on the embedded model; one thread, so tests do not starve each other."""
    return f"""
[agent]
default_model = "{model}"
gateway_mode = {"true" if gateway else "false"}
[providers.local]
threads = 1
context_size = 4096
{extra}
"""


@pytest.fixture
def local(servers: Callable[[str], Server]) -> Server:
    """A gateway in front of SmolLM2-135M: fast, for tests of the provider, not of answers."""
    return servers(local_config(gateway=True))


def every_provider_config(
    openai_url: str,
    anthropic_url: str,
    ollama_url: str,
    *,
    gateway: bool = True,
    extra: str = "",
) -> str:
    """One server with every kind of provider: the fakes, and the embedded SmolLM2."""
    return f"""
[agent]
default_model = "openai/fake-model"
gateway_mode = {"true" if gateway else "false"}

[providers.openai]
api_key = "sk-test-upstream"
base_url = "{openai_url}/v1"

[providers.anthropic]
api_key = "sk-ant-test"
base_url = "{anthropic_url}"

[providers.ollama]
endpoint = "{ollama_url}"
model = "llama3"

[providers.local]
threads = 1
context_size = 4096
{extra}
"""


# A model of each provider, as a client names it.
EVERY_PROVIDER = ["openai/fake-model", "anthropic/claude-fake-1", "ollama/llama3", SMOLLM]
