"""The workspace: starter files, prompt context, path confinement, atomic appends, listing."""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from localgpt.memory.workspace import (
    READ_MAX_BYTES,
    READ_MAX_LINES,
    TRUNCATED,
    Workspace,
    WorkspaceError,
    split_lines,
)

TODAY = date(2025, 3, 14)
ROOT = Path(__file__).resolve().parent.parent.parent


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
    (root / "SOUL.md").write_text("Be brief.\n")
    (root / "MEMORY.md").write_text("# Memory\n\n- Likes tea.\n")
    context = ws.context(TODAY)
    # What changes least comes first; HEARTBEAT.md is for the heartbeat, not every chat.
    order = [
        "IDENTITY.md",
        "USER.md",
        "SOUL.md",
        "MEMORY.md",
        f"memory/{TODAY - timedelta(days=1)}.md",
        f"memory/{TODAY}.md",
    ]
    positions = [context.index(f'<file path="{name}">\n') for name in order]
    assert positions == sorted(positions)
    assert "too old" not in context and "TOOLS.md" not in context
    assert "HEARTBEAT.md" not in context
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


def test_starter_files_nobody_wrote_in_are_left_out(ws: Workspace) -> None:
    """They say nothing the assistant's own prompt does not, and would cost every turn."""
    ws.ensure()
    assert ws.context(TODAY) == ""
    (ws.root / "SOUL.md").write_text((ws.root / "SOUL.md").read_text() + "- Use metric units.\n")
    assert '<file path="SOUL.md">' in ws.context(TODAY)


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


def test_read_caps_lines_with_a_note_saying_how_to_read_on(ws: Workspace) -> None:
    total = READ_MAX_LINES * 2 + 500
    (ws.root / "long.md").write_text("".join(f"line {i}\n" for i in range(1, total + 1)))
    *lines, note = ws.read("long.md").splitlines()
    assert lines == [f"line {i}" for i in range(1, READ_MAX_LINES + 1)]
    assert note.startswith(f"[... cut: showing lines 1-{READ_MAX_LINES} of {total};")
    assert f"start_line={READ_MAX_LINES + 1}." in note
    *lines, note = ws.read("long.md", READ_MAX_LINES + 1, total).splitlines()
    assert lines[0] == f"line {READ_MAX_LINES + 1}" and len(lines) == READ_MAX_LINES
    assert f"start_line={2 * READ_MAX_LINES + 1} and end_line={total}." in note
    rest = ws.read("long.md", 2 * READ_MAX_LINES + 1).splitlines()
    assert rest == [f"line {i}" for i in range(2 * READ_MAX_LINES + 1, total + 1)]  # no note
    assert ws.read("long.md", 10, 12) == "line 10\nline 11\nline 12\n"


def test_read_caps_bytes_and_over_long_lines(ws: Workspace) -> None:
    row = "é" * 99 + "x"  # 199 bytes, 200 with the newline
    (ws.root / "wide.md").write_text(f"{row}\n" * 1000)
    out = ws.read("wide.md")
    *lines, note = out.splitlines()
    assert len(lines) == READ_MAX_BYTES // 200 and all(line == row for line in lines)
    assert len(out.encode()) < READ_MAX_BYTES + 300
    assert f"start_line={len(lines) + 1}." in note and "of 1000;" in note
    (ws.root / "one.md").write_text("short\n" + "x" * (3 * READ_MAX_BYTES) + "\nnext\n")
    assert ws.read("one.md").startswith("short\n[... cut: showing line 1 of 3;")
    first, note = ws.read("one.md", 2).splitlines()
    assert first == "x" * READ_MAX_BYTES
    assert "line 2 is longer than" in note and "start_line=3." in note
    assert ws.read("one.md", 3) == "next\n"
    (ws.root / "exact.md").write_text("y" * (READ_MAX_BYTES - 1) + "\n")
    assert ws.read("exact.md") == "y" * (READ_MAX_BYTES - 1) + "\n"  # at the limit: whole


@pytest.mark.parametrize(
    "path", [".secret.md", ".git/config", "memory/../.git/config", "notes/.draft.md", "alias.md"]
)
def test_read_refuses_hidden_files_and_folders(ws: Workspace, path: str) -> None:
    (ws.root / ".secret.md").write_text("secret")
    (ws.root / ".git").mkdir()
    (ws.root / ".git" / "config").write_text("[remote]")
    (ws.root / "notes").mkdir()
    (ws.root / "notes" / ".draft.md").write_text("draft")
    (ws.root / "alias.md").symlink_to(ws.root / ".secret.md")  # a visible name for it
    with pytest.raises(WorkspaceError, match="hidden files and folders"):
        ws.read(path)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(range(256)),  # an image
        "caf\xe9 au lait\n".encode("latin-1"),  # text, but not UTF-8
        b"text\0with a NUL\n",
    ],
)
def test_read_refuses_files_that_are_not_utf8_text(ws: Workspace, data: bytes) -> None:
    (ws.root / "blob.md").write_bytes(data)
    for lines in ((None, None), (1, None), (1, 1)):
        with pytest.raises(WorkspaceError, match="not a text file"):
            ws.read("blob.md", *lines)


def test_read_refuses_binary_data_past_the_first_lines(ws: Workspace) -> None:
    (ws.root / "mixed.md").write_bytes(b"fine\n" * 20000 + b"\xff\xfe\n")
    assert ws.read("mixed.md", 1, 2) == "fine\nfine\n"  # the text part is readable
    with pytest.raises(WorkspaceError, match="not a text file"):
        ws.read("mixed.md", 20001)
    (ws.root / "nul.md").write_bytes(b"fine line\n" * 1000 + b"\0\n")  # past the first 8 KB
    for lines in ((None, None), (1001, None)):
        with pytest.raises(WorkspaceError, match="not a text file"):
            ws.read("nul.md", *lines)


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


KILLED_APPENDER = textwrap.dedent(
    """
    import sys
    from datetime import date
    from pathlib import Path
    from localgpt.memory.workspace import Workspace

    workspace, tag = Workspace(Path(sys.argv[1])), sys.argv[2]
    print("ready", flush=True)
    n = 0
    while True:  # what memory_save does, over and over until killed
        workspace.append("memory", f"fact {tag}-{n}", date.today())
        n += 1
    """
)


def test_append_killed_at_random_moments_leaves_the_old_file_or_the_new(ws: Workspace) -> None:
    memory = ws.root / "MEMORY.md"
    # Each append rewrites 3 MB, a few milliseconds between the temporary file and the rename.
    memory.write_text("# Memory\n\n" + "".join(f"Old fact {i}.\n" for i in range(200_000)))
    content = memory.read_text()
    rng = random.Random(1)
    mid_write = 0
    for round in range(12):
        child = subprocess.Popen(
            [sys.executable, "-c", KILLED_APPENDER, str(ws.root), str(round)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.1))  # some appends done
        deadline = time.monotonic() + 0.1  # a write in place would have no temporary file
        while time.monotonic() < deadline and not any(
            name.startswith(".MEMORY.md.") for name in os.listdir(ws.root)
        ):
            pass
        offset = time.perf_counter() + rng.uniform(0.0, 0.004)  # somewhere inside that write
        while time.perf_counter() < offset:
            pass
        child.kill()
        child.wait(10)
        child.stdout.close()
        now = memory.read_text()
        kept = now.startswith(content)
        assert kept, f"round {round}: the old content was torn ({len(now)} characters)"
        added = now[len(content) :]
        whole = "".join(f"fact {round}-{n}\n" for n in range(added.count("\n")))
        assert added == whole, f"round {round}: a partial append: {added[-80:]!r}"
        content = now
        leftovers = [p for p in ws.root.iterdir() if p.name.startswith(".MEMORY.md.")]
        mid_write += bool(leftovers)  # killed between the temporary file and the rename
        for path in leftovers:
            path.unlink()
    assert mid_write >= 4, mid_write  # the kills did land inside writes


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


# --- what a crash leaves --------------------------------------------------------------------


def leftover(folder: Path, name: str, age: float = 120) -> Path:
    """A temporary file as ``atomic_write`` makes them, last written ``age`` seconds ago."""
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.write(fd, b"half a file")
    os.close(fd)
    then = time.time() - age
    os.utime(temp, (then, then))
    return Path(temp)


def test_ensure_removes_temporary_files_a_crash_left(
    ws: Workspace, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = ws.root
    (root / "knowledge" / "deep").mkdir()
    stale = [
        leftover(root, "MEMORY.md"),
        leftover(root / "memory", f"{TODAY}.md"),
        leftover(root / "knowledge" / "deep", "notes.md"),
    ]
    in_flight = leftover(root, "USER.md", age=5)  # another process may be writing it now
    mine = root / ".draft.tmp"  # the user's own file, not named like ours
    mine.write_text("keep")
    os.utime(mine, (0, 0))
    outside = tmp_path / "outside"
    outside.mkdir()
    beyond = leftover(outside, "secret.md")
    (root / "linked").symlink_to(outside)  # a symlinked folder is not followed
    link = root / ".MEMORY.md.abcd1234.tmp"  # a symlink named like ours is not removed
    link.symlink_to(beyond)
    with caplog.at_level("INFO", logger="localgpt.memory"):
        ws.ensure()
    assert not any(path.exists() for path in stale)
    assert in_flight.exists() and mine.exists() and beyond.exists() and link.is_symlink()
    for path in stale:
        assert f"removed {path}, left by an interrupted write" in caplog.text
    assert str(beyond) not in caplog.text
