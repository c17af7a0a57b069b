"""Memory before the model answers: what the user asked to be remembered is saved, and notes
about what they ask are put in front of the model.

A small model rarely decides on its own to search its memory or to save a fact, so neither
is left to it (as mem0, Letta and upstream's "active recall" do not leave it):

- recall: the user's words (with their previous message when the last one leans on it:
  "and when is it?") are searched; the hits that clear ``[memory] recall_threshold`` go in a
  short, cited block just before the user's message, within ``recall_budget`` tokens. After
  the cached prefix, so the prompt cache keeps working; nothing is added when nothing clears
  the threshold.
- remembering: a message asking for something to be remembered has its fact saved
  (``agent.remember``), and a note after it tells the model what was saved, so the answer
  can say so.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from localgpt.agent.remember import remember_request, to_the_user
from localgpt.config import MemoryConfig
from localgpt.providers.messages import ChatMessage, text_of

if TYPE_CHECKING:  # the index pulls in numpy: not in a gateway's memory
    from localgpt.memory.manager import Memory, Remembered
    from localgpt.memory.search import SearchResult

log = logging.getLogger("localgpt.agent")

RECALL_HEADER = (
    "Notes from the user's memory that may help (use them if they answer; they speak of "
    '"the user", whom you answer as "you"):'
)
# A message this short, or one that points back ("it", "that"), is searched together with
# the user's message before it.
SHORT_WORDS = 6
LEANS_BACK = re.compile(r"\b(it|its|that|this|those|these|they|them|there|he|she|him|her)\b", re.I)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,9}[.)])\s+")
MARGIN = 0.15  # hits this far below the best one are left out: they would only distract


@dataclass
class MemoryTurn:
    """What the memory adds to one turn: the recall block (before the user's message) and
    the note of what was saved (after it)."""

    recall: ChatMessage | None = None
    saved: ChatMessage | None = None
    remembered: Remembered | None = None
    inserted: list[int] = field(default_factory=list)  # where ``apply`` put them

    def apply(self, messages: list[ChatMessage]) -> list[ChatMessage]:
        """``messages`` (the prompt) with the recall block and the note put in place."""
        if self.recall is None and self.saved is None:
            return messages
        at = last_user(messages)
        if at is None:
            return messages
        out = list(messages[:at])
        if self.recall is not None:
            self.inserted.append(len(out))
            out.append(self.recall)
        out.append(messages[at])
        if self.saved is not None:
            self.inserted.append(len(out))
            out.append(self.saved)
        out += messages[at + 1 :]
        return out


def last_user(messages: list[ChatMessage]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


async def memory_turn(
    memory: Memory, config: MemoryConfig, messages: list[ChatMessage], may_write: bool
) -> MemoryTurn:
    """Save what the user's latest message asks to be remembered (when it is the last
    message: a request that carries tool results has had its turn) and recall notes for it."""
    at = last_user(messages)
    if at is None:
        return MemoryTurn()
    text = text_of(messages[at].get("content"))
    turn = MemoryTurn()
    fact = remember_request(text) if at == len(messages) - 1 else None
    if fact is not None and may_write:
        try:
            turn.remembered = await memory.remember(fact.text, fact.target)
        except Exception as exc:  # a failed save must not fail the answer: say so instead
            log.exception("could not save a fact the user asked to be remembered")
            turn.saved = _note(f"Saving to memory failed ({type(exc).__name__}). Tell the user.")
        else:
            turn.saved = _note(saved_note(turn.remembered))
        return turn  # the message tells a fact: nothing to look up for it
    if config.recall:
        hits = await recall(memory, config, query_for(messages, at))
        if hits:
            turn.recall = {"role": "system", "content": recall_block(hits)}
    return turn


def query_for(messages: list[ChatMessage], at: int) -> str:
    """The words to search with: the user's message, and the one before it when the last
    one is short or points back to it."""
    text = text_of(messages[at].get("content")).strip()
    if len(text.split()) > SHORT_WORDS and not LEANS_BACK.search(text):
        return text
    before = last_user(messages[:at])
    if before is None:
        return text
    return f"{text_of(messages[before].get('content')).strip()}\n{text}"


async def recall(memory: Memory, config: MemoryConfig, query: str) -> list[SearchResult]:
    """The notes worth showing for ``query``: above the threshold, near the best, not
    overlapping one another, within the budget."""
    if not query.strip():
        return []
    from localgpt.shared.errors import BackendDown

    try:
        found = await memory.search(query, config.recall_limit * 2, config.recall_threshold)
    except BackendDown as exc:  # the shared index is down: answer without notes, not fail
        log.warning("no recall for this turn: %s", exc.message)
        return []
    if not found:
        return []
    best = found[0].score
    kept: list[SearchResult] = []
    used = 0
    for hit in found:
        if hit.score < best - MARGIN or len(kept) == config.recall_limit:
            break
        if any(_overlaps(hit, other) for other in kept):
            continue
        cost = len(_line(len(kept) + 1, hit)) // 4 + 1
        if kept and used + cost > config.recall_budget:
            break
        kept.append(hit)
        used += cost
    return kept


def _overlaps(a: SearchResult, b: SearchResult) -> bool:
    return a.path == b.path and a.start_line <= b.end_line and b.start_line <= a.end_line


def _line(n: int, hit: SearchResult) -> str:
    where = (
        f"{hit.path}:{hit.start_line}"
        if hit.start_line == hit.end_line
        else f"{hit.path}:{hit.start_line}-{hit.end_line}"
    )
    return f"[{n}] ({where}) {plain(hit.snippet)}"


def plain(markdown: str) -> str:
    """A note's lines on one line, without heading and list marks ("# Boiler" -> "Boiler:")."""
    parts = []
    for line in markdown.split("\n"):
        heading = _HEADING.match(line)
        if heading:
            parts.append(heading.group(1).rstrip(":") + ":")
            continue
        parts.append(_ITEM.sub("", line).strip())
    return " ".join(" ".join(parts).split())


def recall_block(hits: list[SearchResult]) -> str:
    return "\n".join([RECALL_HEADER, *(_line(i, hit) for i, hit in enumerate(hits, 1))])


def saved_note(done: Remembered) -> str:
    """What the model is told of a save, with a reply to make: a small model told only
    "you saved X" answers "You saved X", about the user, to the user."""
    if done.action == "exists":
        said = to_the_user(done.previous or done.fact)
        return (
            f'This was already in the user\'s memory ({done.path}): "{done.previous}". Tell '
            f'the user in one short sentence, such as: "I already have that: {said}."'
        )
    said = to_the_user(done.fact)
    if done.action == "update":
        return (
            f'You updated the user\'s memory ({done.path}): "{done.previous}" is now '
            f'"{done.fact}". Confirm it in one short sentence, such as: "Got it, I\'ve '
            f'updated that: {said}."'
        )
    return (
        f'You saved this to the user\'s memory ({done.path}): "{done.fact}". Confirm it in '
        f'one short sentence, such as: "Got it, I\'ll remember that {said}."'
    )


def _note(text: str) -> ChatMessage:
    return {"role": "system", "content": text}
