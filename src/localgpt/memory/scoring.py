"""How well a chunk matches a query: the words worth matching, and one score on an absolute
scale (``relevance``), the same for every query, so that a threshold means something."""

from __future__ import annotations

import math
import re
from datetime import date

KEYWORD_WEIGHT = 0.25  # see relevance()
SNIPPET_CHARS = 500
MAX_QUERY_TERMS = 32
COMMON_TERM_CHUNKS = 5000  # a query word in more chunks than this is left out of the FTS query
DAILY_LOG = re.compile(r"memory/(\d{4}-\d{2}-\d{2})\.md")
WORD = re.compile(r"[^\W_]+")
# Words too common to carry a keyword match; dropped from the FTS query unless nothing is
# left. Besides adding no signal, each would make BM25 score nearly every chunk.
_STOPWORDS = (
    "a about above after again all am an and any are as at be been before being below "
    "between both but by can could did do does doing down during each few for from further "
    "had has have having he her here hers him his how i if in into is it its itself just me "
    "more most my myself no nor not now of off on once only or other our ours out over own "
    "same she should so some such than that the their theirs them then there these they "
    "this those through to too under until up very was we were what when where which while "
    "who whom why will with would you your yours"
)
STOPWORDS = frozenset(_STOPWORDS.split())


def query_terms(text: str) -> list[str]:
    """The words of free text worth matching: lowercased, deduplicated, stopwords dropped
    (unless nothing else is left)."""
    words = list(dict.fromkeys(word.lower() for word in WORD.findall(text)))
    return ([word for word in words if word not in STOPWORDS] or words)[:MAX_QUERY_TERMS]


def match_expression(terms: list[str]) -> str:
    """An FTS5 MATCH expression for ``query_terms``: each quoted, joined with OR. Those
    hold only letters and digits, so no user input can be read as FTS5 syntax."""
    return " OR ".join(f'"{term}"' for term in terms)


def selective(counts: dict[str, int], common: int | None = None) -> list[str]:
    """The terms found in at most ``COMMON_TERM_CHUNKS`` chunks, or the rarest one if none
    is. BM25 must score every chunk a term matches before it can rank, and a term that
    common weighs little anyway (its IDF is below ln 20 at 100k chunks against about
    ln 100000 for a rare word). ``counts`` stop at the threshold, so checking costs at most
    that many rows per term."""
    if not counts:
        return []
    bar = COMMON_TERM_CHUNKS if common is None else common
    kept = [term for term, n in counts.items() if n <= bar]
    return kept or [min(counts, key=counts.__getitem__)]


def idf(count: int, total: int) -> float:
    """BM25's inverse document frequency of a term found in ``count`` of ``total`` chunks."""
    return math.log(1 + (total - count + 0.5) / (count + 0.5))


def relevance(similarity: float | None, coverage: float, mode: str = "hybrid") -> float:
    """A chunk's score, from 0 to 1, the same scale for every query.

    Meaning counts first: the cosine similarity of the query's and the chunk's embeddings.
    Words add to it by ``KEYWORD_WEIGHT`` times the square of the share of the query's
    (IDF-weighted) words the chunk holds, within what the similarity leaves: a chunk with
    every rare word of the query scores well however its meaning is judged, a chunk sharing
    one word of several gains little. Calibrated on ``bench/eval_memory.py``'s tuning split:
    with the weight at 0 or 0.25 the paraphrased questions rank and separate alike, and the
    weight lets exact names and numbers through.
    """
    if mode == "fts" or similarity is None:
        return coverage
    meaning = max(similarity, 0.0)
    if mode == "vector":
        return meaning
    return meaning + (1.0 - meaning) * KEYWORD_WEIGHT * coverage * coverage


def snippet(text: str) -> str:
    if len(text) <= SNIPPET_CHARS:
        return text
    cut = text.rfind(" ", 0, SNIPPET_CHARS)
    if cut < SNIPPET_CHARS * 4 // 5:
        cut = SNIPPET_CHARS
    return text[:cut].rstrip() + " ..."


def age_days(path: str, now: float) -> float:
    """A daily log's age, from its name. Everything else (MEMORY.md, knowledge/) holds
    durable facts and does not fade, however long ago it was written."""
    match = DAILY_LOG.fullmatch(path)
    if not match:
        return 0.0
    try:
        day = date.fromisoformat(match[1])
    except ValueError:
        return 0.0
    return float(max((date.fromtimestamp(now) - day).days, 0))
