"""Email validation and normal form: what FastAPI Users' ``EmailStr`` would store."""

from __future__ import annotations

import re
from typing import Any

from usersctl.errors import InvalidInput

MAX_EMAIL_LENGTH = 320  # the width of the user table's email column


class InvalidEmail(InvalidInput):
    """The address is not a valid email address. ``reason`` says why without quoting the value,
    for messages about files whose columns may be mixed up (a password in the email column)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def normalize_email(raw: str) -> str:
    """Validate ``raw`` (syntax only, no DNS) and return its normal form: domain lowercased,
    local part kept as typed, surrounding spaces removed.

    Raises ``InvalidEmail`` naming the problem.
    """
    from email_validator import EmailNotValidError, validate_email

    value = raw.strip()
    if not value:
        raise InvalidEmail("email address is empty")
    if any(ch in value for ch in "\r\n\x00"):
        raise InvalidEmail("email address contains a line break or NUL character")
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"email address is longer than {MAX_EMAIL_LENGTH} characters")
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        raise InvalidEmail(
            f"invalid email address {value!r}: {reason}", f"not a valid email address ({reason})"
        ) from None
    normalized: str = result.normalized
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"email address is longer than {MAX_EMAIL_LENGTH} characters")
    return normalized


# A plain ASCII local part: dot-separated runs of RFC 5322 "atext" characters. Every local part
# this matches, email-validator accepts unchanged; anything else takes the canonical path.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_MAX_LOCAL = 64
_MAX_ASCII_EMAIL = 254


class EmailNormalizer:
    """``normalize_email`` for many addresses: the same answers, one domain check per domain.

    email-validator spends most of its time on the domain (IDNA). An import of a million users
    has few distinct domains, so a plain ASCII address (the common case) is answered from its
    local part, which a strict pattern checks, and its domain's result, which email-validator's
    public ``validate_email`` gives once per domain. Anything else goes through
    ``normalize_email`` itself, as do the error messages. A property test holds the two equal.
    """

    def __init__(self) -> None:
        special: Any
        try:
            from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES as special
        except ImportError:  # pragma: no cover - an email-validator without the constant
            special = None
        # postmaster@ and its kind are lowercased by email-validator: the canonical path does it.
        self._special_locals: Any = special
        self._domains: dict[str, str | None] = {}

    def __call__(self, raw: str) -> str:
        value = raw.strip()
        local, at, domain = value.rpartition("@")
        if (
            not at
            or not value.isascii()
            or len(value) > _MAX_ASCII_EMAIL
            or len(local) > _MAX_LOCAL
            or not _PLAIN_LOCAL.fullmatch(local)
            or self._special_locals is None
            or local.lower() in self._special_locals
        ):
            return normalize_email(raw)
        normal_domain = self._domain(domain)
        if normal_domain is None:
            return normalize_email(raw)  # an invalid domain: the canonical path words the error
        return f"{local}@{normal_domain}"

    def _domain(self, domain: str) -> str | None:
        if domain in self._domains:
            return self._domains[domain]
        from email_validator import EmailNotValidError, validate_email

        try:
            result: str | None = validate_email(f"a@{domain}", check_deliverability=False).domain
        except EmailNotValidError:
            result = None
        if len(self._domains) < 100_000:
            self._domains[domain] = result
        return result


def normalize_domain(raw: str) -> tuple[str, str]:
    """An address's domain (``old-corp.net``, or ``@old-corp.net``) as ``normalize_email`` writes
    it in an address (lowercased, IDNA-normalised: ``Bücher.DE`` is ``bücher.de``), and its
    ASCII form (``xn--bcher-kva.de``; the same for an ASCII domain).

    Raises ``InvalidEmail`` when no address could have it."""
    from email_validator import EmailNotValidError, validate_email

    domain = raw.strip()
    domain = domain[1:] if domain.startswith("@") else domain
    if not domain or "@" in domain or any(ch in domain for ch in "\r\n\x00"):
        raise InvalidEmail(f"invalid email domain {raw.strip()!r}")
    try:
        result = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        raise InvalidEmail(f"invalid email domain {raw.strip()!r}: {reason}") from None
    return str(result.domain), str(result.ascii_domain)
