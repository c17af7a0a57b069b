"""``sessions``, ``model prepare`` and their ``--json``, run in-process with an isolated HOME."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.progress import Progress, TaskID
from typer.testing import CliRunner

from localgpt.agent.sessions import Session, SessionStore
from localgpt.cli import main
from localgpt.cli import models as model_commands
from localgpt.providers.local import models as local_models
from tests.conftest import isolated_env


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key, value in isolated_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    return tmp_path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main.app, list(args), catch_exceptions=False)


def store(home: Path) -> SessionStore:
    return SessionStore(home / "state" / "localgpt" / "sessions")


def make_sessions(home: Path) -> tuple[Session, Session]:
    sessions = store(home)
    first = sessions.create("openai/gpt-4o")
    sessions.append(
        first,
        [
            {"role": "user", "content": "What is [bold]this[/]?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "memory_search", "arguments": '{"query": "x"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "nothing found"},
            {"role": "assistant", "content": "It is a test."},
        ],
    )
    second = sessions.create()
    sessions.append(second, [{"role": "user", "content": "hello"}])
    return first, second


def test_sessions_list_show_delete(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = make_sessions(home)
    listed = invoke("sessions", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [second.id, first.id]  # most recent first
    assert rows[1]["title"] == "What is [bold]this[/]?" and rows[1]["model"] == "openai/gpt-4o"
    assert rows[1]["message_count"] == 4 and rows[0]["model"] is None
    assert {"updated", "created"} <= set(rows[0])

    table = invoke("sessions", "list")  # ids are never cut, whatever the width
    assert first.id in table.stdout and second.id in table.stdout
    monkeypatch.setenv("COLUMNS", "200")
    table = invoke("sessions", "list")
    assert first.id in table.stdout and "What is [bold]this[/]?" in table.stdout  # escaped

    shown = json.loads(invoke("sessions", "show", first.id, "--json").stdout)
    assert shown["id"] == first.id and len(shown["messages"]) == 4
    assert shown["messages"][1]["tool_calls"][0]["function"]["name"] == "memory_search"

    plain = invoke("sessions", "show", first.id[:8])  # a unique start of the id will do
    assert plain.exit_code == 0, plain.output
    assert "user: What is [bold]this[/]?" in plain.stdout
    assert '-> memory_search({"query": "x"})' in plain.stdout
    assert "tool: nothing found" in plain.stdout and "assistant: It is a test." in plain.stdout

    deleted = invoke("sessions", "delete", first.id)
    assert deleted.exit_code == 0 and first.id in deleted.stdout
    assert [r["id"] for r in json.loads(invoke("sessions", "list", "--json").stdout)] == [second.id]
    missing = invoke("sessions", "delete", first.id)
    assert missing.exit_code == 1 and "no session" in missing.output
    assert invoke("sessions", "show", "f" * 32).exit_code == 1


def test_sessions_list_empty(home: Path) -> None:
    assert json.loads(invoke("sessions", "list", "--json").stdout) == []
    assert "no sessions" in invoke("sessions", "list").stdout


def test_model_prepare_json(home: Path) -> None:
    name = "smollm2-135m-instruct"
    model = local_models.PACKAGED[name]
    if not model.installed():
        pytest.skip(f"{name} is not installed")
    done = invoke("model", "prepare", name, "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data == {
        "name": name,
        "path": str(local_models.cached_path(model, home / "cache" / "localgpt")),
        "sha256": model.sha256,
    }


def test_model_prepare_progress_restarts_for_the_join(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged cached copy is hashed, then joined again: two passes, each its own 100%."""
    fake = local_models.PackagedModel("fake-model", "fake.gguf", "ab" * 32, 10, "no_such_part", 1)
    cached = home / "cache" / "localgpt" / "models" / "fake.gguf"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x" * 10)  # the right size, so prepare() verifies it first

    def prepare(model: Any, cache: Path, progress: Any) -> Path:
        for n in (4, 6):  # verifying: the checksum is wrong
            progress(n)
        for n in (5, 5):  # joining again from the packages
            progress(n)
        return cached

    seen: list[Any] = []

    class Checked(Progress):
        def update(self, task_id: TaskID, **kwargs: Any) -> None:
            super().update(task_id, **kwargs)
            task = self._tasks[task_id]
            assert task.total is not None and task.completed <= task.total
            seen.append((task.description, task.completed))

    monkeypatch.setitem(local_models.PACKAGED, "fake-model", fake)
    monkeypatch.setattr(local_models, "prepare", prepare)
    monkeypatch.setattr(
        model_commands, "progress", lambda *columns: Checked(*columns, transient=True)
    )
    done = invoke("model", "prepare", "fake-model", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["path"] == str(cached)
    assert [c for _, c in seen] == [4, 10, 5, 10]
    assert seen[0][0].startswith("verifying") and seen[-1][0].startswith("joining")
