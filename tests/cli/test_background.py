"""``localgpt heartbeat`` and ``localgpt jobs`` against a running server, and the HTTP API
behind them; the fake upstream plays the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.cli.test_cli import run
from tests.conftest import Server, gateway_config
from tests.fakes import FakeCall, Script
from tests.fakes.openai_fake import FakeOpenAI

EXTRA = """
[heartbeat]
enabled = true
interval = "1h"

[[jobs]]
name = "digest"
every = "6h"
prompt = "Write my digest."
tools = ["memory_search"]
"""


def test_heartbeat_and_jobs_from_the_command_line(
    tmp_path: Path, servers: Callable[[str], Server], openai_upstream: FakeOpenAI
) -> None:
    server = servers(gateway_config(openai_upstream.url, gateway=False, extra=EXTRA))
    port = int(server.url.rsplit(":", 1)[1])
    config = tmp_path / "cli.toml"
    config.write_text(
        f"{gateway_config(openai_upstream.url, gateway=False)}\n[server]\nport = {port}\n"
    )
    workspace = server.home / "data" / "localgpt" / "workspace"
    (workspace / "HEARTBEAT.md").write_text("# Heartbeat\n\n- Check the backups ran.\n")

    save = FakeCall("memory_save", [json.dumps({"content": "Backups: checked."})])
    openai_upstream.script(
        "fake-model",
        Script(text=["Yes."]),  # due? (the task names no day: the model says)
        Script(tool_calls=[save]),
        Script(text=["Checked the backups."]),
    )
    done = run(tmp_path, "heartbeat", "run", "--json", "--config", str(config))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["outcome"] == "acted" and result["tools"] == ["memory_save"]
    asked = openai_upstream.last_body()["messages"]
    assert any("Check the backups ran." in str(m.get("content")) for m in asked)

    done = run(tmp_path, "heartbeat", "status", "--json", "--config", str(config))
    status = json.loads(done.stdout)
    assert status["enabled"] and status["next_run"] and status["last_run"]["outcome"] == "acted"
    sessions = httpx.get(f"{server.url}/api/sessions", timeout=10).json()
    assert any(s["title"].startswith("Heartbeat ") for s in sessions)

    asked = len(openai_upstream.requests)
    done = run(tmp_path, "heartbeat", "run", "--config", str(config))
    assert done.returncode == 0 and "ok" in done.stdout
    assert len(openai_upstream.requests) == asked  # done today, as the file now says
    assert "(last done: " in (workspace / "HEARTBEAT.md").read_text()

    jobs = json.loads(run(tmp_path, "jobs", "list", "--json", "--config", str(config)).stdout)
    assert [(j["name"], j["schedule"]) for j in jobs] == [("digest", "every 6h")]
    openai_upstream.script("fake-model", Script(text=["Your digest."]))
    done = run(tmp_path, "jobs", "run", "digest", "--json", "--config", str(config))
    assert json.loads(done.stdout)["detail"] == "Your digest."
    assert [t["function"]["name"] for t in openai_upstream.last_body()["tools"]] == [
        "memory_search"
    ]
    missing = run(tmp_path, "jobs", "run", "nope", "--config", str(config))
    assert missing.returncode == 1 and "nope" in missing.stderr
