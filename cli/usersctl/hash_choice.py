"""Which scheme new password hashes get: ``--hash-scheme``, the app's own helper
(``--password-helper``), the installed FastAPI Users' version, or the hashes the table holds.

FastAPI Users 13 and later write Argon2 and verify bcrypt too; 12 and older verify bcrypt only,
and an Argon2 hash makes their login fail with HTTP 500. The scheme is decided before a hash is
written (``PendingHash``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from usersctl.passwords import (
    ARGON2,
    BCRYPT,
    SCHEMES,
    Hashing,
    hash_password,
    hash_password_in_background,
)


@dataclass(frozen=True)
class HashChoice:
    """The hashing chosen for new hashes, and why, when ``auto`` did not pick Argon2."""

    hashing: Hashing
    reason: str | None = None

    @property
    def note(self) -> str | None:
        """What to tell the person when ``auto`` wrote bcrypt."""
        if self.reason is None:
            return None
        return f"Writing bcrypt: {self.reason} (--hash-scheme argon2 to write Argon2 all the same)."


@lru_cache(maxsize=1)
def fastapi_users_version() -> tuple[int, ...] | None:
    """The version of the installed ``fastapi-users`` distribution, or None without one.

    Read from the name of its ``.dist-info`` folder on ``sys.path``, in import order: what
    ``importlib.metadata`` would say, without its import (~0.1 s), which would come before
    create-user's hash could start."""
    import sys

    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            found = re.fullmatch(r"fastapi_users-(\d+(?:\.\d+)*)[^-]*\.dist-info", name)
            if found:
                return tuple(int(part) for part in found.group(1).split(".")[:3])
    return None


def app_verifies_argon2() -> bool | None:
    """Whether the installed FastAPI Users verifies Argon2 hashes (13 and later do; up to 12
    it verifies bcrypt only, and an Argon2 hash makes the login fail with HTTP 500).
    None when FastAPI Users is not installed beside usersctl."""
    version = fastapi_users_version()
    return None if version is None else version >= (13,)


def load_password_helper(path: str) -> Hashing:
    """The app's own password helper from ``module.path:attribute`` (the current folder is
    importable): a ``PasswordHelper`` or ``pwdlib.PasswordHash`` instance, or a class that makes
    one without arguments. Raises ``InvalidInput`` when it cannot be had."""
    from usersctl.app_code import load_app_attribute
    from usersctl.errors import InvalidInput

    found: Any = load_app_attribute(path, "--password-helper")
    attribute_path = path.strip().partition(":")[2]
    if isinstance(found, type):
        try:
            found = found()
        except Exception as exc:
            raise InvalidInput(
                f"--password-helper {path}: {attribute_path}() failed ({type(exc).__name__}: {exc})"
            ) from None
    if not all(callable(getattr(found, name, None)) for name in ("hash", "verify_and_update")):
        raise InvalidInput(
            f"--password-helper {path}: {attribute_path} has no hash() and verify_and_update(); "
            "expected a FastAPI Users PasswordHelper or a pwdlib PasswordHash"
        )
    return Hashing("app", found, path.strip())


def choose_early(requested: str, helper: Hashing | None = None) -> HashChoice | None:
    """The hashing for ``--hash-scheme requested`` when it can be told without the database:
    the app's own helper, a scheme asked for by name, or bcrypt for an installed FastAPI Users
    older than 13. None means ``choose_from_table`` decides."""
    if helper is not None:
        return HashChoice(helper)
    if requested in SCHEMES:
        return HashChoice(Hashing(requested))
    if app_verifies_argon2() is False:
        shown = ".".join(map(str, fastapi_users_version() or ()))
        return HashChoice(BCRYPT, f"the installed FastAPI Users {shown} verifies bcrypt only")
    return None


def choose_from_table(stored: set[str]) -> HashChoice:
    """The ``auto`` hashing for a table whose stored hashes are of the ``stored`` schemes:
    bcrypt when it holds bcrypt hashes and no Argon2 one (an app that may read bcrypt only),
    else Argon2, as FastAPI Users writes."""
    if "bcrypt" in stored and "argon2" not in stored:
        return HashChoice(
            BCRYPT,
            "the table's password hashes are bcrypt, none Argon2, so the app may verify bcrypt "
            "only",
        )
    return HashChoice(ARGON2)


class PendingHash:
    """A password hashed in a thread from the start of a command, so that the imports and the
    connection overlap the hashing. Its scheme is the one ``choose_early`` tells when it can;
    else it is hashed as Argon2, what ``auto`` writes unless the table is bcrypt only, and
    ``result`` hashes it again, in bcrypt, only when the table's choice says so."""

    def __init__(self, password: str, requested: str, helper: Hashing | None = None) -> None:
        self.password = password
        self.early = choose_early(requested, helper)
        self.started = self.early.hashing if self.early else ARGON2
        self.future = hash_password_in_background(password, self.started)

    async def result(self, choice: HashChoice) -> str:
        """The hash in ``choice``'s scheme."""
        import asyncio

        if choice.hashing == self.started:
            return await asyncio.wrap_future(self.future)
        self.cancel()
        return await asyncio.to_thread(hash_password, self.password, choice.hashing)

    def cancel(self) -> None:
        """Drop the hash if it has not started (a command that failed before needing it)."""
        self.future.cancel()
