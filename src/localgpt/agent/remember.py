"""What the user asks to be remembered, found in their words and saved by the server itself.

A small model decides to call ``memory_save`` only now and then; "remember that ..." is too
important to leave to it. A user message that asks for something to be remembered ("remember
that my dentist is Dr. Okafor", "don't forget ...", "note that ...", "keep in mind ...") is
recognised here, its fact is rewritten about the user ("my" -> "the user's") and saved before
the model answers: durable facts to MEMORY.md (deduplicated, and replacing an older fact about
the same thing), passing notes (tasks, today, tomorrow) to today's log. A question ("do you
remember ...?") is not a request to save.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A request to remember, at the start of a sentence (after "please", "hey", ...); the fact
# follows. "can you remember that ...?" asks to save too; "do you remember ...?" does not.
_LEAD = r"(?:(?:ok(?:ay)?|hey|hi|so|also|and|oh|btw|please|pls|kindly)[,!]?\s+)*"
_ASK = r"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?)?"
_VERB = (
    r"(?:remember|memori[sz]e|don'?t\s+forget|do\s+not\s+forget|never\s+forget|"
    r"keep\s+in\s+mind|bear\s+in\s+mind|(?:make|take)\s+a\s+note(?:\s+of)?|"
    r"(?:note|jot|write)\s+down|note(?=\s*:|\s+that\b)|"
    r"(?:save|store|put|add|write)(?:\s+(?:this|that|it))?\s+(?:to|in|into)\s+"
    r"(?:your|my|the)?\s*memory)"
)
REQUEST = re.compile(
    rf"^\s*{_LEAD}{_ASK}{_VERB}(?:\s+(?:this|that|it)(?=\s*:))?(?:\s+for\s+me)?"
    r"(?:\s*[:,\-–]\s*|\s+that\s+|\s+the\s+fact\s+that\s+|\s+(?=\S))"
    r"(?P<fact>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_POLITE = re.compile(rf"^\s*{_LEAD}(can|could|would|will)\s+you\b", re.IGNORECASE)
_QUESTION_START = re.compile(r"^(when|what|who|how|why|which|whether|if)\b", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=\S)")
# Passing notes: things to do, or tied to today and the next few days.
_PASSING = re.compile(
    r"^to\s|\b(today|tonight|tomorrow|this\s+(morning|afternoon|evening|week)|right\s+now|"
    r"later\s+today|at\s+the\s+moment|next\s+(monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday))\b",
    re.IGNORECASE,
)
# Verbs that stay as they are after "the user" (past forms, modals).
_KEEP_VERB = re.compile(
    r"^(was|were|had|did|can|could|will|would|shall|should|may|might|must|also|never|always|"
    r"usually|often|sometimes|just|still|really|only|don't|didn't|won't|can't|\w+ed)$",
    re.IGNORECASE,
)
_PRONOUNS = [
    (r"\bI'm\b|\bI am\b", "the user is"),
    (r"\bI've\b|\bI have\b", "the user has"),
    (r"\bI'd\b", "the user would"),
    (r"\bI'll\b|\bI will\b", "the user will"),
    (r"\bmy\b", "the user's"),
    (r"\bmine\b", "the user's"),
    (r"\bmyself\b", "themselves"),
    (r"\bme\b", "the user"),
]


@dataclass(frozen=True)
class Fact:
    """A fact to save: ``text`` about the user, for ``target`` "memory" or "daily"."""

    text: str
    target: str
    said: str  # the user's own words


def remember_request(message: str) -> Fact | None:
    """The fact a user message asks to be remembered, or None. The fact runs from the
    request to the end of the message, or to the first question after it."""
    sentences = _SENTENCES.split(message.strip())
    for at, sentence in enumerate(sentences):
        found = REQUEST.match(sentence)
        if found is None:
            continue
        if sentence.rstrip().endswith("?") and not _POLITE.match(sentence):
            continue  # "remember when we ...?" asks, it does not tell
        parts = [found.group("fact")]
        for after in sentences[at + 1 :]:
            if after.rstrip().endswith("?"):
                break
            parts.append(after)
        fact = " ".join(" ".join(parts).split()).rstrip(" ?!.")
        if _QUESTION_START.match(fact):
            continue
        if len(fact.split()) < 2 and not re.search(r"\d", fact):
            continue  # "remember this", "note it": nothing to save
        target = "daily" if _PASSING.search(fact) else "memory"
        return Fact(about_the_user(fact), target, fact)
    return None


def about_the_user(fact: str) -> str:
    """The user's words about themselves, said of "the user": "my car is blue" -> "The
    user's car is blue."; "I take my pill at 8" -> "The user takes the user's pill at 8."."""
    text = fact
    if text.lower().startswith("to "):
        text = "To do: " + text[3:]  # "remember to buy milk"
    for pattern, replacement in _PRONOUNS:
        text = re.sub(pattern, replacement, text)
    text = re.sub(r"\bI\s+(\w+)", _third_person, text)
    text = re.sub(r"\bI\b", "the user", text)
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _third_person(match: re.Match[str]) -> str:
    verb = match.group(1)
    if _KEEP_VERB.match(verb):
        return f"the user {verb}"
    lower = verb.lower()
    if lower == "have":
        return "the user has"
    if lower in ("do", "go"):
        return f"the user {verb}es"
    if re.search(r"(s|sh|ch|x|z|o)$", lower):
        return f"the user {verb}es"
    if re.search(r"[^aeiou]y$", lower):
        return f"the user {verb[:-1]}ies"
    return f"the user {verb}s"


_BACK = [
    (r"\b[Tt]he user is\b", "you are"),
    (r"\b[Tt]he user was\b", "you were"),
    (r"\b[Tt]he user has\b", "you have"),
    (r"\b[Tt]he user's\b", "your"),
    (r"\bthemselves\b", "yourself"),
]


def to_the_user(fact: str) -> str:
    """A saved fact said back to the user: "The user's car is blue." -> "your car is blue"."""
    text = fact.rstrip(".")
    for pattern, replacement in _BACK:
        text = re.sub(pattern, replacement, text)
    text = re.sub(r"\b[Tt]he user (\w+)", _second_person, text)
    text = re.sub(r"\b[Tt]he user\b", "you", text)
    if text.startswith("To do: "):
        return "you want to " + text[len("To do: ") :]
    return text[:1].lower() + text[1:] if not text[:2].isupper() else text


def _second_person(match: re.Match[str]) -> str:
    verb = match.group(1)
    lower = verb.lower()
    if _KEEP_VERB.match(verb) or not lower.endswith("s") or lower.endswith("ss"):
        return f"you {verb}"
    if lower.endswith("ies"):
        return f"you {verb[:-3]}y"
    if re.search(r"(sh|ch|x|z|o|ss)es$", lower):
        return f"you {verb[:-2]}"
    return f"you {verb[:-1]}"
