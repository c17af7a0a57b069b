"""Markdown cut into chunks for the index: whole lines, each chunk small enough for the
embedder's window, following the text's lists (see ``chunk_text``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from localgpt.memory.workspace import split_lines

CHARS_PER_TOKEN = 4  # the budget estimate when there is no embedder to count with


class TokenCounter(Protocol):
    def count_tokens(self, text: str) -> int: ...
    def split_tokens(self, text: str, limit: int) -> list[str]: ...


class CharEstimate:
    """Counts a token per 4 characters: the chunk budget when no embedder is configured."""

    def count_tokens(self, text: str) -> int:
        return -(-len(text) // CHARS_PER_TOKEN)

    def split_tokens(self, text: str, limit: int) -> list[str]:
        width = limit * CHARS_PER_TOKEN
        pieces = []
        start = 0
        while len(text) - start > width:
            space = max(
                text.rfind(" ", start, start + width), text.rfind("\t", start, start + width)
            )
            end = space + 1 if space > start else start + width
            pieces.append(text[start:end])
            start = end
        pieces.append(text[start:])
        return pieces


@dataclass(frozen=True)
class Chunk:
    start_line: int  # 1-based, inclusive
    end_line: int
    text: str
    context: str = ""  # the headings above the chunk: the embedder reads them first


class _Unit(NamedTuple):
    line: int
    text: str
    tokens: int


HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
LIST_ITEM = re.compile(r"^ {0,3}([-*+]|\d{1,9}[.)])\s+\S")
FENCE = re.compile(r"^ {0,3}(```|~~~)")
CONTEXT_CHARS = 80  # of headings kept as a chunk's context


@dataclass
class _Segment:
    """Lines that are chunked together: one list item, or the other lines between items."""

    lines: list[tuple[int, str]]
    context: str
    item: bool


def chunk_text(text: str, counter: TokenCounter, size: int, overlap: int) -> list[Chunk]:
    """Cut markdown into chunks of whole lines, following its lists.

    A list item is a chunk of its own, with the headings above it as its context: the facts
    of MEMORY.md and the entries of a daily log are unrelated to their neighbours, and a
    chunk averaging a dozen of them matches none (a question and its fact's line have a
    cosine similarity near 0.7; the question and a 14-fact chunk holding that line, near
    0.2). Other lines are packed into chunks of at most ``size`` tokens, each repeating about
    ``overlap`` tokens of lines from the end of the one before. A line over the budget is cut
    into pieces first, so no text is left out. (Measured with ``bench/eval_memory.py``:
    cutting prose at headings as well, or giving it its headings as context, ranked worse.)
    """
    chunks: list[Chunk] = []
    for segment in _segments(text):
        budget = size
        if segment.context:
            budget = max(size // 2, size - counter.count_tokens(segment.context) - 1)
        units = _units(segment.lines, counter, budget)
        start = 0
        while start < len(units):
            end, total = start, 0
            while end < len(units) and (end == start or total + units[end].tokens <= budget):
                total += units[end].tokens
                end += 1
            chunk = _chunk(units[start:end], segment.context)
            if chunk is not None:
                chunks.append(chunk)
            if end == len(units):
                break
            start = _overlap_start(units, start, end, overlap)
    return chunks


def _segments(text: str) -> list[_Segment]:
    """The list items, and the runs of other lines between them, in order. An item goes on
    to the next blank line, heading or item; lines inside a code fence are never items."""
    segments: list[_Segment] = []
    headings: list[tuple[int, str]] = []
    current: _Segment | None = None
    fenced = False
    for number, line in enumerate(split_lines(text), 1):
        if FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            headings = [h for h in headings if h[0] < level] + [(level, heading.group(2))]
        if not fenced and LIST_ITEM.match(line):
            if current is not None:
                segments.append(current)
            context = " > ".join(title for _, title in headings)[-CONTEXT_CHARS:]
            current = _Segment([(number, line)], context, True)
            continue
        if current is not None and current.item:
            if line.strip() and not heading:
                current.lines.append((number, line))  # the item goes on
                continue
            segments.append(current)
            current = None
        if current is None:
            if not line.strip():
                continue
            current = _Segment([], "", False)
        current.lines.append((number, line))
    if current is not None:
        segments.append(current)
    return segments


def _units(lines: list[tuple[int, str]], counter: TokenCounter, size: int) -> list[_Unit]:
    units = []
    for number, line in lines:
        tokens = counter.count_tokens(line)
        if tokens <= size:
            units.append(_Unit(number, line, tokens))
            continue
        for piece in counter.split_tokens(line, size):
            if piece.strip():
                units.append(_Unit(number, piece, counter.count_tokens(piece)))
    return units


def _overlap_start(units: list[_Unit], start: int, end: int, overlap: int) -> int:
    """Where the chunk after ``units[start:end]`` begins: as far back as whole units
    worth at most ``overlap`` tokens reach, but always after ``start``."""
    first, carried = end, 0
    while first - 1 > start and carried + units[first - 1].tokens <= overlap:
        first -= 1
        carried += units[first].tokens
    return first


def _chunk(units: list[_Unit], context: str = "") -> Chunk | None:
    """The chunk of ``units`` with blank lines trimmed from both ends; None if all blank."""
    filled = [i for i, unit in enumerate(units) if unit.text.strip()]
    if not filled:
        return None
    kept = units[filled[0] : filled[-1] + 1]
    # Pieces of one cut line are joined by a newline as well: a newline separates words for
    # the embedder's tokenizer, so the chunk's token count is exactly the sum counted above.
    return Chunk(kept[0].line, kept[-1].line, "\n".join(unit.text for unit in kept), context)


def embedded_text(chunk: Chunk) -> str:
    """What the embedder reads of a chunk: its headings, then its lines."""
    return f"{chunk.context}\n{chunk.text}" if chunk.context else chunk.text
