"""The built-in password policy, used when the app's own (``--user-manager``) is not given.

It makes the checks of Django's default validators and reports them in their words: at least 8
characters, not entirely numeric, not too similar to the email address, not a common password.
The common passwords are zxcvbn's list of the 30,000 most frequent ones, loaded only when a
password is checked.
"""

from __future__ import annotations

import re
from functools import lru_cache

from usersctl.errors import InvalidInput

MIN_LENGTH = 8
#: How alike (difflib's ratio, 0 to 1) a password and a part of the email may be, as Django.
MAX_SIMILARITY = 0.7


class WeakPassword(InvalidInput):
    """A password the policy refuses; the reasons never quote the password."""

    def __init__(
        self, reasons: list[str], *, subject: str = "the password", hint: bool = True
    ) -> None:
        self.reasons = reasons
        accepts = " (--allow-weak-password accepts it)" if hint else ""
        super().__init__(f"{subject} is too weak: {' '.join(reasons)}{accepts}")


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """zxcvbn's list of the most common passwords (lowercase), read on first use (~0.1 s)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"])


def _too_similar(password: str, value: str) -> bool:
    """Whether ``password`` is too much like ``value`` or a word of it (Django's
    UserAttributeSimilarityValidator: a part far shorter than the password is not compared)."""
    from difflib import SequenceMatcher

    lowered = password.lower()
    for part in {value, *re.split(r"\W+", value)}:
        if not part:
            continue
        if len(password) >= 10 * len(part) and len(part) < MAX_SIMILARITY / 2 * len(password):
            continue
        if SequenceMatcher(a=lowered, b=part.lower()).quick_ratio() >= MAX_SIMILARITY:
            return True
    return False


def password_problems(password: str, email: str | None = None) -> list[str]:
    """What the policy finds wrong with ``password`` for the user with ``email``, in Django's
    words; empty when it passes."""
    reasons = []
    if len(password) < MIN_LENGTH:
        reasons.append(
            f"This password is too short. It must contain at least {MIN_LENGTH} characters."
        )
    if password.isdigit():
        reasons.append("This password is entirely numeric.")
    if email and _too_similar(password, email):
        reasons.append("The password is too similar to the email address.")
    if password.lower().strip() in common_passwords():
        reasons.append("This password is too common.")
    return reasons


def check_password(password: str, email: str | None = None) -> None:
    """Raise ``WeakPassword`` with every reason when the policy refuses ``password``."""
    reasons = password_problems(password, email)
    if reasons:
        raise WeakPassword(reasons)
