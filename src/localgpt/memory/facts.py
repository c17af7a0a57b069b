"""MEMORY.md's facts, one list item each: when a new one repeats or updates an old one.

A fact about the same thing as an older one ("the user's dentist is ...") replaces it when
the two also mean nearly the same (cosine similarity of their embeddings at least
``UPDATE_SIMILARITY``): "the user's son is allergic to nuts" and "the user's son is 7" share
a subject but are both kept. A fact worded as an older one (the same words, or a similarity
of at least ``SAME_SIMILARITY``) is not added again. Measured with MiniLM: a changed name,
code or city under the same subject scores 0.6-0.92, two facts about a subject's different
sides about 0.5, a rewording 0.99; so similarity alone cannot tell an update from a
duplicate, and the subject decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UPDATE_SIMILARITY = 0.6
SAME_SIMILARITY = 0.97

_SUBJECT = re.compile(
    r"^(?P<subject>.+?)\s+(?:is|are|was|were|has|have|lives|works|ends|starts|takes|likes|"
    r"loves|prefers|drives|uses|costs|goes|plays|studies)\b",
    re.IGNORECASE,
)
_GENERIC = frozenset({"the user", "the user's", "it", "this", "that", "they", "he", "she", "i"})
ITEM = re.compile(r"^\s{0,3}[-*+]\s+(?P<text>.*\S)\s*$")


def subject_of(fact: str) -> str | None:
    """What a fact is about ("the user's dentist"), when it names something more specific
    than the user."""
    found = _SUBJECT.match(fact.strip())
    if found is None:
        return None
    subject = " ".join(found.group("subject").lower().split())
    if subject in _GENERIC or len(subject.split()) > 8:
        return None
    return subject


def normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


@dataclass(frozen=True)
class Line:
    """A list item of MEMORY.md: its 1-based line number and its text."""

    number: int
    text: str
    similarity: float | None = None  # to the new fact, where an embedder is at hand


@dataclass(frozen=True)
class Decision:
    action: str  # "add", "update" or "exists"
    line: Line | None = None  # the line updated, or the one that already says it


def decide(fact: str, lines: list[Line]) -> Decision:
    """Add ``fact``, update one of ``lines`` with it, or leave it: it is already there."""
    words = normalised(fact)
    subject = subject_of(fact)
    best: Line | None = None
    for line in lines:
        if normalised(line.text) == words or (
            line.similarity is not None and line.similarity >= SAME_SIMILARITY
        ):
            return Decision("exists", line)
        if subject is None or subject_of(line.text) != subject:
            continue
        if line.similarity is not None and line.similarity < UPDATE_SIMILARITY:
            continue
        if best is None or (line.similarity or 0.0) > (best.similarity or 0.0):
            best = line
    return Decision("update", best) if best is not None else Decision("add")


def items(text: str) -> list[Line]:
    """The list items of a markdown text (their first lines)."""
    found = []
    for number, line in enumerate(text.split("\n"), 1):
        match = ITEM.match(line)
        if match:
            found.append(Line(number, match.group("text")))
    return found
