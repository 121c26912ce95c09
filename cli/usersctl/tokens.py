"""Tokens the app accepts, made as FastAPI Users makes them: reset-password and verification
tokens (``BaseUserManager.forgot_password``/``request_verify``), and access tokens of its two
strategies (``JWTStrategy.write_token``, a row of ``DatabaseStrategy``'s table).

The JWTs are written with PyJWT, FastAPI Users' own library, imported only here.
"""

from __future__ import annotations

import re
import secrets
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from usersctl.errors import Conflict, InvalidInput

if TYPE_CHECKING:
    from collections.abc import Callable

    from usersctl.users import UserContext

RESET_AUDIENCE = "fastapi-users:reset"
VERIFY_AUDIENCE = "fastapi-users:verify"
AUTH_AUDIENCE = "fastapi-users:auth"
#: FastAPI Users' default lifetime of reset and verification tokens, and of its examples' JWTs.
DEFAULT_LIFETIME = 3600
ALGORITHM = "HS256"
#: The HMAC algorithms a shared secret can sign with (RS/ES keys are not taken here).
ALGORITHMS = ("HS256", "HS384", "HS512")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UserInactive(Conflict):
    """The user is inactive: FastAPI Users gives them no reset link and no access token."""


class UserAlreadyVerified(Conflict):
    """The user is verified already: there is nothing for a verification link to do."""


def parse_lifetime(text: str) -> int:
    """Seconds from ``3600``, ``90s``, ``15m``, ``1h`` or ``2d``; raises ``InvalidInput``."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", text.lower())
    if not match or int(match.group(1)) == 0:
        raise InvalidInput(
            f"lifetime {text!r} is not a positive number of seconds, or of minutes, hours or "
            "days (90s, 15m, 1h, 2d)"
        )
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def _jwt(data: dict[str, Any], secret: str, lifetime: int | None, algorithm: str) -> str:
    """``fastapi_users.jwt.generate_jwt``'s token: the claims, and ``exp`` after ``lifetime``."""
    import jwt

    if algorithm not in ALGORITHMS:
        raise InvalidInput(f"algorithm {algorithm!r} is not one of {', '.join(ALGORITHMS)}")
    if not secret:
        raise InvalidInput("the secret is empty")
    payload = dict(data)
    if lifetime:
        payload["exp"] = datetime.now(timezone.utc) + timedelta(seconds=lifetime)
    with warnings.catch_warnings():
        # PyJWT warns of a short key on stderr with its source line; the command says it.
        warnings.simplefilter("ignore")
        return jwt.encode(payload, secret, algorithm=algorithm)


def reset_token(
    user: Any,
    secret: str,
    *,
    fingerprint: Callable[[str], str],
    lifetime: int = DEFAULT_LIFETIME,
    audience: str = RESET_AUDIENCE,
    force: bool = False,
) -> str:
    """The token ``POST /auth/reset-password`` takes: ``sub`` (the id), ``password_fgpt`` (a hash,
    by ``fingerprint``, of the stored hash, so the token dies with the password) and ``aud``.

    An inactive user gets none (``UserInactive``), as from the app, unless ``force``."""
    if not user.is_active and not force:
        raise UserInactive(
            f"{user.email} is inactive: the app would refuse the reset (--force makes the link "
            "anyway; the app still refuses it until the user is activated)"
        )
    if not isinstance(user.hashed_password, str):
        raise Conflict(
            f"{user.email} has no password (an OAuth-only user): FastAPI Users cannot make or "
            "check a reset token for them; set one with set-password"
        )
    claims = {"sub": str(user.id), "password_fgpt": fingerprint(user.hashed_password)}
    return _jwt({**claims, "aud": audience}, secret, lifetime, ALGORITHM)


def verify_token(
    user: Any, secret: str, *, lifetime: int = DEFAULT_LIFETIME, audience: str = VERIFY_AUDIENCE
) -> str:
    """The token ``POST /auth/verify`` takes: ``sub``, ``email`` and ``aud``. An inactive user
    (``UserInactive``) or a verified one (``UserAlreadyVerified``) gets none, as from the app."""
    if not user.is_active:
        raise UserInactive(f"{user.email} is inactive: the app would refuse to verify them")
    if user.is_verified:
        raise UserAlreadyVerified(f"{user.email} is already verified")
    claims = {"sub": str(user.id), "email": user.email, "aud": audience}
    return _jwt(claims, secret, lifetime, ALGORITHM)


def access_jwt(
    user: Any,
    secret: str,
    *,
    lifetime: int | None = DEFAULT_LIFETIME,
    algorithm: str = ALGORITHM,
    audience: str = AUTH_AUDIENCE,
) -> str:
    """A bearer token as ``JWTStrategy.write_token`` writes it: ``sub`` and ``aud`` (a list)."""
    _require_active(user)
    return _jwt({"sub": str(user.id), "aud": [audience]}, secret, lifetime, algorithm)


def _require_active(user: Any) -> None:
    if not user.is_active:
        raise UserInactive(f"{user.email} is inactive: the app refuses their access tokens")


@dataclass(frozen=True)
class IssuedToken:
    """A database access token, and when it was made."""

    token: str
    created_at: datetime


async def issue_database_token(ctx: UserContext, user: Any) -> IssuedToken:
    """Insert an access token for ``user`` into the app's token table, as ``DatabaseStrategy``
    does (``secrets.token_urlsafe()``); its lifetime is the strategy's, counted from now.

    A creation-time column that has no default of its own (a table read from the database,
    where the app's Python default is unknown) gets the current time in UTC."""
    _require_active(user)
    table = ctx.model.token_table
    if table is None:
        raise InvalidInput(
            "the database has no access token table (accesstoken); with --model, the model's "
            "metadata must define it (usersctl init-db --access-tokens creates FastAPI Users')"
        )
    now = datetime.now(timezone.utc)
    values: dict[str, Any] = {"token": secrets.token_urlsafe(), "user_id": user.id}
    for column in table.columns:
        if column.name in values or column.default is not None or column.server_default:
            continue
        if _is_datetime(column.type) and not column.nullable:
            aware = bool(getattr(column.type, "timezone", False))
            values[column.name] = now if aware else now.replace(tzinfo=None)
    await ctx.session.execute(table.insert().values(values))
    return IssuedToken(values["token"], now)


def _is_datetime(column_type: Any) -> bool:
    try:
        return column_type.python_type is datetime
    except NotImplementedError:
        return False
