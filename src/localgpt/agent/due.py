"""Whether a heartbeat task is due, where its words say so plainly: a ticked box, a date or a
weekday, what was done today. ``None`` leaves the question to the model.

Only the words before a task's first colon (or its first five words) are read for when it is
due ("Every Friday: ...", "By 1 December: ..."); a date in what is to be done is not a
schedule.

A 1.5B model asked "is this task due now?" answered yes to 15 of 16 tasks, the ones for
Friday on a Monday and the ones ticked done among them (``bench/eval_heartbeat.py``). A date,
a weekday and a tick are facts a calendar reads better than a small model; what they do not
settle ("every other week", "when the roses bloom") the model still judges.
"""

from __future__ import annotations

import re
from datetime import date, datetime

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH = r"(january|february|march|april|may|june|july|august|september|october|november|december)"
_DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b(?:\s+(\d{{4}}))?")
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?")
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_IN_MONTH = re.compile(rf"\b(?:in|during|every)\s+{_MONTH}\b")
_TICKED = re.compile(r"^\s*(?:[-*+]|\d+[.)])?\s*\[[xX]\]")
_DONE_MARK = re.compile(r"\((?:last )?done:?\s*(\d{4}-\d{2}-\d{2})[^)]*\)", re.IGNORECASE)
_WEEKDAYS = re.compile(r"\b(week ?days?|weekends?)\b")
_DAY_NAMES = re.compile(r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday)s?\b")


def _marks_removed(text: str) -> str:
    return _DONE_MARK.sub("", text)


def _schedule_part(text: str) -> str:
    """The words that say when: before the first colon that is not a time's ("On 24
    December: buy paper"), or, without one, the first five words ("on 24 December buy
    paper"), so a date in what is to be done ("save that the MOT is due on 12 May") is not
    read as a schedule."""
    colon = re.search(r"(?<!\d):(?!\d)", text)
    if colon is not None:
        return text[: colon.start()]
    body = re.sub(r"^\s*(?:[-*+]|\d+[.)])?\s*(?:\[[ xX]\]\s*)?", "", text)
    return " ".join(body.split()[:5])


def _dates(text: str, today: date) -> list[tuple[int, date | None]]:
    """Each date the text names, at its position; a day and month without a year is this
    year's (None when the day does not exist)."""
    found: list[tuple[int, date | None]] = []
    for m in _DAY_MONTH.finditer(text):
        found.append((m.start(), _date(m.group(3), m.group(2), m.group(1), today)))
    for m in _MONTH_DAY.finditer(text):
        found.append((m.start(), _date(m.group(3), m.group(1), m.group(2), today)))
    for m in _ISO.finditer(text):
        try:
            found.append((m.start(), date(int(m.group(1)), int(m.group(2)), int(m.group(3)))))
        except ValueError:
            found.append((m.start(), None))
    return found


def _date(year: str | None, month: str, day: str, today: date) -> date | None:
    try:
        return date(int(year) if year else today.year, MONTHS.index(month) + 1, int(day))
    except ValueError:
        return None


def due_by_rule(task: str, now: datetime) -> bool | None:
    """True or False when the task's words settle it, else None."""
    if _TICKED.match(task):
        return False
    today = now.date()
    done = [date.fromisoformat(d) for d in _DONE_MARK.findall(task)]
    if any(d >= today for d in done):
        return False  # done today already (or later, by a clock that moved)
    text = _schedule_part(_marks_removed(task).lower())
    if re.search(r"\btomorrow\b", text):
        return False
    if re.search(r"\btoday\b|\btonight\b", text):
        return True
    dates = [(at, d) for at, d in _dates(text, today) if d is not None]
    if dates:
        at, when = dates[0]
        before = text[max(0, at - 12) : at]
        if re.search(r"\b(by|before|until)\s+(the\s+)?$", before):
            return today <= when  # a deadline: due until it passes
        return when == today
    month = _IN_MONTH.search(text)
    if month is not None:
        return MONTHS.index(month.group(1)) + 1 == today.month
    weekday = DAYS[today.weekday()]
    groups = _WEEKDAYS.findall(text)
    names = _DAY_NAMES.findall(text)
    if groups or names:
        wanted = set(names)
        for group in groups:
            wanted |= set(DAYS[:5]) if group.startswith("week") and "end" not in group else set()
            wanted |= set(DAYS[5:]) if "end" in group else set()
        return weekday in wanted
    if re.search(r"\b(every ?day|daily|each day|every (morning|evening|night))\b", text):
        return True  # not done today, or the mark above would have said so
    return None
