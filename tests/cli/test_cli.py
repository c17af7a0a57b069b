"""The command line: ask streams an answer, models lists, errors are one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port, gateway_config, isolated_env
from tests.fakes import Script
from tests.fakes.openai_fake import FakeOpenAI


def run(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "localgpt", *args],
        capture_output=True,
        text=True,
        env=isolated_env(home),
        timeout=60,
        input=stdin,
    )


def write_config(home: Path, url: str) -> Path:
    """A config on a free port: no server answers there, so the command runs in-process."""
    path = home / "config.toml"
    path.write_text(gateway_config(url, gateway=False) + f"[server]\nport = {free_port()}\n")
    return path


def test_ask_streams_the_answer(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    config = write_config(tmp_path, openai_upstream.url)
    done = run(tmp_path, "ask", "--config", str(config), "what is up")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "You said: what is up\n"
    assert openai_upstream.last_body()["stream"] is True
    assert openai_upstream.last_body()["messages"][0]["content"].startswith("You are LocalGPT")
    done = run(tmp_path, "ask", "--config", str(config), "-", stdin="from stdin")
    assert done.stdout == "You said: from stdin\n"


def test_ask_reports_provider_errors(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    openai_upstream.script(
        "fake-model",
        Script(
            status=401,
            error={
                "error": {
                    "message": "Incorrect API key provided",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        ),
    )
    config = write_config(tmp_path, openai_upstream.url)
    done = run(tmp_path, "ask", "--config", str(config), "hi")
    assert done.returncode == 1
    assert "Incorrect API key provided" in done.stderr and "Traceback" not in done.stderr


def test_models_json(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    config = write_config(tmp_path, openai_upstream.url)
    done = run(tmp_path, "models", "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    ids = [m["id"] for m in json.loads(done.stdout)]
    assert ids[0] == "openai/fake-model" and "gpt" in ids


def test_chat_session_with_slash_commands(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    config = write_config(tmp_path, openai_upstream.url)
    lines = "hello there\n/context\n/model gpt\n/new\nsecond\n/quit\n"
    done = run(tmp_path, "chat", "--config", str(config), stdin=lines)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "You said: hello there" in out and "You said: second" in out
    assert "tokens" in out and "model gpt" in out and "new session" in out
    sessions = list((tmp_path / "state" / "localgpt" / "sessions").glob("*.jsonl"))
    assert len(sessions) == 2


def test_memory_commands(tmp_path: Path) -> None:
    notes = tmp_path / "data" / "localgpt" / "workspace" / "knowledge"
    notes.mkdir(parents=True)
    (notes / "car.md").write_text("The car is due for its inspection in March.\n")
    done = run(tmp_path, "memory", "reindex")
    assert done.returncode == 0 and "indexed" in done.stdout, done.stderr
    found = run(tmp_path, "memory", "search", "vehicle check-up", "--json")
    assert json.loads(found.stdout)[0]["path"] == "knowledge/car.md"
    (notes / "bike.md").write_text("The bike needs new brakes.\n")
    again = run(tmp_path, "memory", "reindex", "--json")
    assert again.returncode == 0, again.stderr
    reindexed = json.loads(again.stdout)
    assert reindexed["files_indexed"] == 1 and reindexed["files_unchanged"] == 4
    assert reindexed["chunks_total"] >= 5 and reindexed["stopped"] is False
    stats = json.loads(run(tmp_path, "memory", "stats", "--json").stdout)
    assert stats["files"] == 5 and stats["model"] == "all-minilm-l6-v2"
    assert isinstance(stats["last_reindex"], float)  # JSON keeps the unix time
    text = run(tmp_path, "memory", "stats").stdout
    shown = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stats["last_reindex"]))
    assert f"\nlast_reindex: {shown}\n" in text  # the terminal gets a local date and time


def test_version(tmp_path: Path) -> None:
    from localgpt import __version__

    done = run(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"localgpt {__version__}\n"


def test_doctor_reports_and_says_what_to_fix(tmp_path: Path, openai_upstream: FakeOpenAI) -> None:
    from tests.conftest import free_port

    config = tmp_path / "c.toml"
    config.write_text(
        gateway_config(openai_upstream.url, gateway=False)
        + f"""
[providers.down]
type = "openai"
base_url = "http://127.0.0.1:{free_port()}/v1"
"""
    )
    done = run(tmp_path, "doctor", "--config", str(config), "--json")
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    assert done.returncode == 1  # a provider is down
    assert checks["provider openai"]["status"] == "ok"
    assert checks["provider down"]["status"] == "fail" and checks["provider down"]["fix"]
    assert checks["default model"]["status"] == "ok"
    assert checks["embedder"]["status"] == "ok" and checks["access"]["status"] == "ok"
    readable = run(tmp_path, "doctor", "--config", str(config))
    assert "provider down" in readable.stdout and "→" in readable.stdout
