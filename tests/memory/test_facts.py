"""MEMORY.md's facts: a new one is added, replaces an older one about the same thing, or is
recognised as already there."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from localgpt.config import Config, MemoryConfig, Paths
from localgpt.memory.facts import Line, decide, items, subject_of
from localgpt.memory.manager import Memory


def test_subjects() -> None:
    assert subject_of("The user's dentist is Dr. Okafor.") == "the user's dentist"
    assert subject_of("The user's brother Tobias lives in Lisbon.") == "the user's brother tobias"
    assert subject_of("The user is allergic to penicillin.") is None  # too general
    assert subject_of("Likes tea.") is None


def test_decisions_without_similarities() -> None:
    lines = [Line(3, "The user's dentist is Dr. Okafor."), Line(4, "The user is vegetarian.")]
    assert decide("The user's dentist is Dr. Mensah.", lines).action == "update"
    assert decide("The user's dentist is Dr. Mensah.", lines).line == lines[0]
    assert decide("the user is Vegetarian", lines).action == "exists"
    assert decide("The user is allergic to nuts.", lines).action == "add"


def test_a_subject_s_other_side_is_added_not_replaced() -> None:
    lines = [Line(3, "The user's son is allergic to nuts.", similarity=0.53)]
    assert decide("The user's son is 7 years old.", lines).action == "add"
    lines = [Line(3, "The user's gym locker code is 5309.", similarity=0.91)]
    assert decide("The user's gym locker code is 8812.", lines).action == "update"


def test_items() -> None:
    assert items("# Memory\n\nintro\n- one\n* two\n  more\n") == [Line(4, "one"), Line(5, "two")]


@pytest.fixture
def memory(tmp_path: Path) -> Memory:
    config = Config(memory=MemoryConfig(workspace=str(tmp_path / "ws")))
    paths = Paths(tmp_path / "c", tmp_path / "d", tmp_path / "cache", tmp_path / "s")
    return Memory(config, paths)


def test_remember_adds_updates_and_keeps_one_copy(memory: Memory) -> None:
    async def run() -> None:
        try:
            first = await memory.remember("The user's dentist is Dr. Okafor.")
            assert first.action == "add" and first.path == "MEMORY.md"
            await memory.remember("The user's son is allergic to nuts.")
            again = await memory.remember("The user's dentist is Dr. Okafor.")
            assert again.action == "exists"
            changed = await memory.remember("The user's dentist is now Dr. Mensah.")
            assert changed.action == "update"
            assert changed.previous == "The user's dentist is Dr. Okafor."
            other = await memory.remember("The user's son is 7 years old.")
            assert other.action == "add"
            text = (memory.workspace.root / "MEMORY.md").read_text()
            assert "Okafor" not in text and text.count("Mensah") == 1
            assert "allergic to nuts" in text and "7 years old" in text
            # The index follows at once: the new fact is found, the old one is not.
            found = await memory.search("who is my dentist?", 1)
            assert found and "Mensah" in found[0].snippet
            daily = await memory.remember("To do: call the bank.", "daily")
            assert daily.path.startswith("memory/") and daily.action == "add"
        finally:
            await memory.aclose()

    asyncio.run(run())
