"""Email validation and normal form: what FastAPI Users' ``EmailStr`` would store."""

from __future__ import annotations

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
