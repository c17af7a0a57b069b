"""``localgpt ask`` and ``chat`` use a running server when one answers, so only one copy of
the model is in memory; without one they load it themselves and say so."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.cli.test_cli import run
from tests.conftest import SMOLLM, Server, free_port, gateway_config
from tests.fakes.openai_fake import FakeOpenAI


def cli_config(home: Path, port: int) -> Path:
    """A config whose only provider cannot be reached: the command line can answer only
    through the server on ``port``."""
    path = home / "cli.toml"
    path.write_text(
        '[agent]\ndefault_model = "openai/fake-model"\n'
        '[providers.openai]\nbase_url = "http://127.0.0.1:9/v1"\n'
        f"[server]\nport = {port}\n"
    )
    return path


def test_ask_and_chat_use_the_running_server(
    tmp_path: Path, servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(gateway_config(openai_upstream.url, gateway=False, extra="# cli"))
    port = int(server.url.rsplit(":", 1)[1])
    config = cli_config(tmp_path, port)
    done = run(tmp_path, "ask", "--config", str(config), "what is up")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "You said: what is up\n"
    assert "loading model" not in done.stderr
    sent = openai_upstream.last_body()["messages"]
    assert sent[0]["content"].startswith("You are LocalGPT")  # the server's assistant answered

    done = run(tmp_path, "chat", "--config", str(config), stdin="hello there\n/context\n/quit\n")
    assert done.returncode == 0, done.stderr
    assert "You said: hello there" in done.stdout and "tokens" in done.stdout
    assert f"server http://127.0.0.1:{port}" in " ".join(done.stdout.split())
    saved = server.home / "state" / "localgpt" / "sessions"
    assert any("hello there" in f.read_text() for f in saved.glob("*.jsonl"))
    assert not (tmp_path / "state" / "localgpt" / "sessions").exists()  # none of its own


def test_a_url_where_no_server_answers_is_an_error(tmp_path: Path) -> None:
    port = free_port()
    done = run(tmp_path, "ask", "--url", f"http://127.0.0.1:{port}", "hi")
    assert done.returncode == 2
    assert f"no LocalGPT server answers at http://127.0.0.1:{port}" in done.stderr


def test_without_a_server_ask_loads_the_model_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[agent]\ndefault_model = "{SMOLLM}"\ngateway_mode = true\n'
        f"[providers.local]\nthreads = 1\ncontext_size = 2048\n[server]\nport = {free_port()}\n"
    )
    done = run(tmp_path, "ask", "--config", str(path), "Say hi")
    assert done.returncode == 0, done.stderr
    assert f"loading model {SMOLLM} in this process" in " ".join(done.stderr.split())
    assert done.stdout.strip()
