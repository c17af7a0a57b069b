"""The workspace: starter files, prompt context, path confinement, atomic appends, listing."""

from __future__ import annotations

import os
import stat
from datetime import date, timedelta
from pathlib import Path

import pytest

from localgpt.memory.workspace import TRUNCATED, Workspace, WorkspaceError, split_lines

TODAY = date(2025, 3, 14)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path / "ws")
    workspace.ensure()
    return workspace


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- ensure and context --------------------------------------------------------------------


def test_ensure_creates_layout_and_keeps_existing_files(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "MEMORY.md").write_text("# Mine\n- keep me\n")
    Workspace(root).ensure()
    assert (root / "memory").is_dir() and (root / "knowledge").is_dir()
    assert (root / "MEMORY.md").read_text() == "# Mine\n- keep me\n"
    for name in ("SOUL.md", "HEARTBEAT.md"):
        assert (root / name).read_text().startswith("# ")
        assert mode_of(root / name) == 0o600
    soul = (root / "SOUL.md").read_text()
    Workspace(root).ensure()  # a second run changes nothing
    assert (root / "SOUL.md").read_text() == soul


def test_context_order_format_and_stability(ws: Workspace) -> None:
    root = ws.root
    (root / "USER.md").write_text("Name: Ada\n")
    (root / "IDENTITY.md").write_text("I am LocalGPT.\n")
    (root / "memory" / f"{TODAY}.md").write_text("# today\n- shipped v2\n")
    (root / "memory" / f"{TODAY - timedelta(days=1)}.md").write_text("# yesterday\n")
    (root / "memory" / f"{TODAY - timedelta(days=2)}.md").write_text("# too old\n")
    (root / "TOOLS.md").write_text("   \n")  # blank: left out
    context = ws.context(TODAY)
    order = [
        "IDENTITY.md",
        "USER.md",
        "SOUL.md",
        "MEMORY.md",
        f"memory/{TODAY}.md",
        f"memory/{TODAY - timedelta(days=1)}.md",
        "HEARTBEAT.md",
    ]
    positions = [context.index(f'<file path="{name}">\n') for name in order]
    assert positions == sorted(positions)
    assert "too old" not in context and "TOOLS.md" not in context
    assert '<file path="USER.md">\nName: Ada\n</file>' in context
    assert context.count("</file>") == len(order)
    assert ws.context(TODAY) == context


def test_context_truncates_each_file(ws: Workspace) -> None:
    (ws.root / "MEMORY.md").write_text("x" * 5000)
    context = ws.context(TODAY, cap=100)
    block = context[context.index('<file path="MEMORY.md">') :]
    assert block.startswith(f'<file path="MEMORY.md">\n{"x" * 100}\n{TRUNCATED}\n</file>')


def test_context_is_empty_without_files(tmp_path: Path) -> None:
    assert Workspace(tmp_path / "none").context(TODAY) == ""


# --- confinement ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../x", "../ws2/MEMORY.md", "memory/../../x", "/etc/passwd", ""])
def test_resolve_refuses_escapes(ws: Workspace, path: str) -> None:
    with pytest.raises(WorkspaceError):
        ws.resolve(path)


def test_resolve_refuses_symlinks_leaving_the_root(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("secret")
    (ws.root / "link.md").symlink_to(outside / "secret.md")
    (ws.root / "linked_dir").symlink_to(outside)
    for path in ("link.md", "linked_dir/secret.md", "linked_dir/new.md"):
        with pytest.raises(WorkspaceError, match="escapes the workspace"):
            ws.resolve(path)
    with pytest.raises(WorkspaceError):
        ws.read("linked_dir/secret.md")


def test_resolve_allows_paths_that_stay_inside(ws: Workspace) -> None:
    (ws.root / "knowledge" / "real.md").write_text("inside")
    (ws.root / "alias.md").symlink_to(ws.root / "knowledge" / "real.md")
    assert ws.resolve("memory/../MEMORY.md") == ws.root.resolve() / "MEMORY.md"
    assert ws.resolve("alias.md") == ws.root.resolve() / "knowledge" / "real.md"
    assert ws.resolve("knowledge/not-yet.md").parent == ws.root.resolve() / "knowledge"


# --- reading -------------------------------------------------------------------------------


def test_read_whole_file_and_line_ranges(ws: Workspace) -> None:
    (ws.root / "notes.md").write_text("one\ntwo\r\nthree\nfour\n")
    assert ws.read("notes.md") == "one\ntwo\r\nthree\nfour\n"
    assert ws.read("notes.md", 2, 3) == "two\nthree\n"
    assert ws.read("notes.md", 3) == "three\nfour\n"
    assert ws.read("notes.md", None, 1) == "one\n"
    assert ws.read("notes.md", 4, 99) == "four\n"


@pytest.mark.parametrize(
    ("path", "start", "end", "message"),
    [
        ("missing.md", None, None, "no such file"),
        ("memory", None, None, "no such file"),
        ("notes.md", 5, None, "past the end"),
        ("notes.md", 0, 1, "invalid line range"),
        ("notes.md", 3, 2, "invalid line range"),
    ],
)
def test_read_errors(
    ws: Workspace, path: str, start: int | None, end: int | None, message: str
) -> None:
    (ws.root / "notes.md").write_text("one\ntwo\nthree\n")
    with pytest.raises(WorkspaceError, match=message):
        ws.read(path, start, end)


def test_split_lines_numbers_like_an_editor() -> None:
    assert split_lines("a\nb\n") == ["a", "b"]
    assert split_lines("a\r\n\nb") == ["a", "", "b"]
    assert split_lines("") == []


# --- appending -----------------------------------------------------------------------------


def test_append_daily_creates_the_log_with_a_heading(ws: Workspace) -> None:
    path = ws.append("daily", "- met Sam about the garden", TODAY)
    assert path == ws.root / "memory" / f"{TODAY}.md"
    ws.append("daily", "- ordered seeds\n", TODAY)
    assert path.read_text() == f"# {TODAY}\n\n- met Sam about the garden\n- ordered seeds\n"
    assert mode_of(path) == 0o600


def test_append_memory_keeps_content_and_permissions(ws: Workspace) -> None:
    memory = ws.root / "MEMORY.md"
    memory.write_text("# Memory\n- likes tea")  # no final newline
    memory.chmod(0o640)
    assert ws.append("memory", "- allergic to peanuts", TODAY) == memory
    assert memory.read_text() == "# Memory\n- likes tea\n- allergic to peanuts\n"
    assert mode_of(memory) == 0o640


def test_append_refuses_unknown_targets(ws: Workspace) -> None:
    with pytest.raises(WorkspaceError, match="unknown memory target"):
        ws.append("../etc", "x", TODAY)


def test_append_refuses_a_symlinked_memory_folder(ws: Workspace, tmp_path: Path) -> None:
    (ws.root / "memory").rmdir()
    (tmp_path / "elsewhere").mkdir()
    (ws.root / "memory").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(WorkspaceError, match="escapes"):
        ws.append("daily", "x", TODAY)
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_failed_replace_keeps_the_old_file(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    memory = ws.root / "MEMORY.md"
    memory.write_text("# Memory\n- old fact\n")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(WorkspaceError, match="cannot write"):
        ws.append("memory", "- new fact", TODAY)
    assert memory.read_text() == "# Memory\n- old fact\n"
    assert sorted(p.name for p in ws.root.iterdir() if p.name.startswith(".")) == []


# --- listing -------------------------------------------------------------------------------


def test_markdown_files_skips_hidden_foreign_and_escaping_files(
    ws: Workspace, tmp_path: Path
) -> None:
    root = ws.root
    (root / "knowledge" / "deep").mkdir()
    (root / "knowledge" / "deep" / "b.md").write_text("b")
    (root / "knowledge" / "a.md").write_text("a")
    (root / "knowledge" / "c.txt").write_text("not markdown")
    (root / ".git").mkdir()
    (root / ".git" / "x.md").write_text("hidden")
    (root / ".draft.md").write_text("hidden")
    (tmp_path / "out.md").write_text("outside")
    (root / "escape.md").symlink_to(tmp_path / "out.md")
    (root / "alias.md").symlink_to(root / "knowledge" / "a.md")
    (root / "outdir").symlink_to(tmp_path)
    real = root.resolve()
    names = [p.relative_to(real).as_posix() for p in ws.markdown_files()]
    assert names == [
        "HEARTBEAT.md",
        "MEMORY.md",
        "SOUL.md",
        "alias.md",
        "knowledge/a.md",
        "knowledge/deep/b.md",
    ]
    for name in names:
        assert ws.markdown_file(name) == real / name
    for name in (".draft.md", ".git/x.md", "escape.md", "outdir/out.md", "knowledge/c.txt"):
        assert ws.markdown_file(name) is None
    assert ws.markdown_file("../ws/MEMORY.md") is None
