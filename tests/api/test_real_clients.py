"""Claude Code and Codex CLI themselves (pinned in tests/clients/, installed by ``make test``)
against the real server, in front of the fake upstream: each runs one prompt to the end, as a
user would, and gets the answer."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, Server, gateway_config
from tests.fakes.openai_fake import FakeOpenAI

BIN = ROOT / ".clients" / "node_modules" / ".bin"
MODEL = "openai/fake-model"


@pytest.fixture
def server(servers: Callable[[str], Server], openai_upstream: FakeOpenAI) -> Server:
    return servers(gateway_config(openai_upstream.url, gateway=True))


def client_env(home: Path) -> dict[str, str]:
    assert (BIN / "claude").exists(), "the agent clients are missing: `make test` installs them"
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC", "OPENAI"))}
    home.mkdir(parents=True, exist_ok=True)
    return {**keep, "HOME": str(home), "DISABLE_AUTOUPDATER": "1"}


@pytest.mark.timeout(300)
def test_claude_code_answers_through_the_messages_api(
    server: Server, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    env = {
        **client_env(tmp_path / "claude"),
        "ANTHROPIC_BASE_URL": server.url,
        "ANTHROPIC_AUTH_TOKEN": "unused-on-loopback",
        "ANTHROPIC_MODEL": MODEL,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": MODEL,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": MODEL,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": MODEL,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    before = len(server.log())  # the server is shared with other tests: read only ours
    done = subprocess.run(
        [str(BIN / "claude"), "-p", "Say hello there", "--output-format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["is_error"] is False and result["subtype"] == "success"
    assert result["result"].endswith("Say hello there")  # the fake echoes the question
    sent = openai_upstream.last_body()
    assert sent["messages"][0]["role"] == "system"  # Claude Code's system blocks, joined
    assert sent["stream"] is True
    assert any(t["function"]["name"] == "Bash" for t in sent.get("tools", []))
    ours = server.log()[before:]
    assert "POST /v1/messages 200" in ours and "POST /v1/messages 4" not in ours


@pytest.mark.timeout(300)
def test_codex_cli_answers_through_the_responses_api(
    server: Server, openai_upstream: FakeOpenAI, tmp_path: Path
) -> None:
    codex_home = tmp_path / "codex" / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(
        f'model = "{MODEL}"\nmodel_provider = "localgpt"\n\n[model_providers.localgpt]\n'
        f'name = "LocalGPT"\nbase_url = "{server.url}/v1"\nwire_api = "responses"\n'
    )
    env = {**client_env(tmp_path / "codex"), "CODEX_HOME": str(codex_home)}
    before = len(server.log())  # the server is shared with other tests: read only ours
    done = subprocess.run(
        [str(BIN / "codex"), "exec", "--skip-git-repo-check", "Say hello there"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("You said: Say hello there")
    sent = openai_upstream.last_body()
    assert sent["messages"][0]["role"] in ("system", "developer")  # Codex's instructions
    assert sent["messages"][-1] == {"role": "user", "content": "Say hello there"} or (
        "Say hello there" in str(sent["messages"][-1]["content"])
    )
    ours = server.log()[before:]
    assert "POST /v1/responses 200" in ours and "POST /v1/responses 4" not in ours
