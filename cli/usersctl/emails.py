"""Email validation and normal form: what FastAPI Users' ``EmailStr`` would store."""

from __future__ import annotations

from typing import Any

from usersctl.errors import InvalidInput

MAX_EMAIL_LENGTH = 320  # the width of the user table's email column


class InvalidEmail(InvalidInput):
    """The address is not a valid email address."""


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
        raise InvalidEmail(f"invalid email address {value!r}: {reason}") from None
    normalized: str = result.normalized
    if len(normalized) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"email address is longer than {MAX_EMAIL_LENGTH} characters")
    return normalized


# Characters that send an address down the canonical path (quoting, literals, line breaks, NUL).
_PLAIN_CHARACTERS = frozenset('\r\n\x00"[]')


class EmailNormalizer:
    """``normalize_email`` for many addresses: the same rules and messages, one domain check per domain.

    email-validator spends most of its time checking the domain (IDNA); an import of a million
    users has few distinct domains, so each is checked once here and the result reused. Anything
    but a plain ``local@domain`` address goes through ``normalize_email`` itself. A property
    test holds the two to the same answers.
    """

    def __init__(self) -> None:
        # Imported once here, not per call: at a million calls the imports alone would cost seconds.
        from email_validator import EmailNotValidError, ValidatedEmail
        from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
        from email_validator.syntax import (
            split_email,
            validate_email_domain_name,
            validate_email_length,
            validate_email_local_part,
        )

        self._error = EmailNotValidError
        self._validated: Any = ValidatedEmail
        self._case_insensitive = CASE_INSENSITIVE_MAILBOX_NAMES
        self._split: Any = split_email
        self._check_local: Any = validate_email_local_part
        self._check_domain: Any = validate_email_domain_name
        self._check_length: Any = validate_email_length
        self._domains: dict[str, dict[str, str] | InvalidEmail] = {}

    def __call__(self, raw: str) -> str:
        value = raw.strip()
        if (
            not value
            or len(value) > MAX_EMAIL_LENGTH
            or value.count("@") != 1
            or not _PLAIN_CHARACTERS.isdisjoint(value)
        ):
            return normalize_email(raw)
        try:
            local, domain, quoted = self._split(value)
            if quoted:
                return normalize_email(raw)
            info = self._check_local(
                local, allow_smtputf8=True, allow_empty_local=False, quoted_local_part=False
            )
            domain_info = self._domain(domain)
            result = self._validated()
            result.local_part = info["local_part"]
            result.ascii_local_part = info["ascii_local_part"]
            result.smtputf8 = info["smtputf8"]
            if (
                result.ascii_local_part is not None
                and result.ascii_local_part.lower() in self._case_insensitive
            ):
                result.ascii_local_part = result.ascii_local_part.lower()
                result.local_part = result.local_part.lower()
            result.domain = domain_info["domain"]
            result.ascii_domain = domain_info["ascii_domain"]
            result.normalized = f"{result.local_part}@{result.domain}"
            result.ascii_email = (
                None if result.smtputf8 else f"{result.ascii_local_part}@{result.ascii_domain}"
            )
            self._check_length(result)
        except (self._error, InvalidEmail):
            return normalize_email(raw)  # the canonical path words the error
        normalized: str = result.normalized
        if len(normalized) > MAX_EMAIL_LENGTH:
            return normalize_email(raw)
        return normalized

    def _domain(self, domain: str) -> dict[str, str]:
        cached = self._domains.get(domain)
        if cached is None:
            try:
                cached = self._check_domain(
                    domain, test_environment=False, globally_deliverable=True
                )
            except self._error as exc:
                cached = InvalidEmail(str(exc))
            if len(self._domains) < 100_000:
                self._domains[domain] = cached
        if isinstance(cached, InvalidEmail):
            raise cached
        return cached
