"""Which user messages ask for something to be remembered, and the fact each one saves."""

from __future__ import annotations

import pytest

from localgpt.agent.remember import about_the_user, remember_request


@pytest.mark.parametrize(
    ("message", "fact", "target"),
    [
        (
            "Remember that my dentist is Dr. Okafor and my next appointment is on 3 March.",
            "The user's dentist is Dr. Okafor and the user's next appointment is on 3 March.",
            "memory",
        ),
        (
            "Please remember: my wife's name is Ingrid.",
            "The user's wife's name is Ingrid.",
            "memory",
        ),
        ("Note that my car is a blue Skoda.", "The user's car is a blue Skoda.", "memory"),
        (
            "Don't forget that I'm allergic to penicillin.",
            "The user is allergic to penicillin.",
            "memory",
        ),
        (
            "Keep in mind that I take my pill at 8.",
            "The user takes the user's pill at 8.",
            "memory",
        ),
        ("Can you remember that my son is 7?", "The user's son is 7.", "memory"),
        ("Remember to buy milk tomorrow.", "To do: buy milk tomorrow.", "daily"),
        (
            "Remember that I have a call this afternoon.",
            "The user has a call this afternoon.",
            "daily",
        ),
        ("Save this to memory: the garage code is 7731", "The garage code is 7731.", "memory"),
        (
            "I just moved. Remember that my new address is 12 Elm Street. What's the weather?",
            "The user's new address is 12 Elm Street.",
            "memory",
        ),
        (
            "hey, remember my wifi password is hunter2",
            "The user's wifi password is hunter2.",
            "memory",
        ),
    ],
)
def test_requests_to_remember(message: str, fact: str, target: str) -> None:
    found = remember_request(message)
    assert found is not None
    assert (found.text, found.target) == (fact, target)


@pytest.mark.parametrize(
    "message",
    [
        "Do you remember my dentist?",
        "Remember when we went to Paris?",
        "remember this",
        "Save the document as PDF",
        "Note the date",
        "What do you remember about me?",
        "When is my dentist appointment?",
        "I always forget my keys.",
        "Remember when the meeting is",
    ],
)
def test_questions_and_other_requests_save_nothing(message: str) -> None:
    assert remember_request(message) is None


def test_about_the_user_keeps_tense_and_agreement() -> None:
    assert about_the_user("I go swimming on Mondays") == "The user goes swimming on Mondays."
    assert about_the_user("I parked on level 3") == "The user parked on level 3."
    assert about_the_user("I have two cats") == "The user has two cats."
    assert about_the_user("I can't eat gluten") == "The user can't eat gluten."
    assert about_the_user("call me Sam") == "Call the user Sam."
