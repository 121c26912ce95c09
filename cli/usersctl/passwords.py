"""Password hashing exactly as FastAPI Users does it: Argon2id for new hashes, bcrypt still verified."""

from __future__ import annotations

import re
import secrets
import threading
from concurrent.futures import Future
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pwdlib import PasswordHash

#: Stored in ``hashed_password`` by apps to make an account impossible to log in to.
DISABLED_MARKERS = ("", "!DISABLED!")


@lru_cache(maxsize=1)
def password_hash() -> PasswordHash:
    """FastAPI Users' own ``PasswordHash``: Argon2 (argon2-cffi defaults) first, then bcrypt."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher
    from pwdlib.hashers.bcrypt import BcryptHasher

    return PasswordHash((Argon2Hasher(), BcryptHasher()))


def hash_password(password: str) -> str:
    """A new Argon2id hash of ``password``."""
    return password_hash().hash(password)


def hash_password_in_background(password: str) -> Future[str]:
    """Start hashing ``password`` in a daemon thread and return the future hash.

    Argon2 releases the GIL, so a command's imports and its connection to the database proceed
    while the ~0.1 s of hashing happens; a command that fails meanwhile does not wait for it.
    """
    future: Future[str] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return  # nobody wants it any more
        try:
            hashed = hash_password(password)
        except BaseException as exc:  # handed to whoever awaits the hash
            future.set_exception(exc)
        else:
            future.set_result(hashed)

    threading.Thread(target=work, name="usersctl-hash", daemon=True).start()
    return future


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed``; an unknown, disabled or unusable hash is no match."""
    return verify_and_update(password, hashed)[0]


def verify_and_update(password: str, hashed: str) -> tuple[bool, str | None]:
    """Check ``password`` and, on a match with a bcrypt or outdated hash, return a new Argon2 hash.

    Never raises for a bad hash: an unknown scheme, a disabled marker, or a bcrypt check of a
    password over 72 bytes (which bcrypt refuses) all mean "no match".
    """
    from pwdlib.exceptions import UnknownHashError

    if hashed in DISABLED_MARKERS:
        return False, None
    try:
        return password_hash().verify_and_update(password, hashed)
    except (UnknownHashError, ValueError, TypeError):
        return False, None


# The encodings FastAPI Users' hashers produce and accept (argon2-cffi's PHC string, modular bcrypt).
_ARGON2 = re.compile(
    r"\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}"
)
_BCRYPT = re.compile(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")


def hash_scheme(hashed: str) -> str:
    """Classify a stored hash: ``argon2``, ``argon2-outdated``, ``bcrypt`` or ``unknown``.

    ``argon2-outdated`` is an Argon2 hash whose parameters differ from today's, which FastAPI
    Users re-hashes at the next login.
    """
    if _ARGON2.fullmatch(hashed):
        current = password_hash().current_hasher
        return "argon2-outdated" if current.check_needs_rehash(hashed) else "argon2"
    if _BCRYPT.fullmatch(hashed):
        return "bcrypt"
    return "unknown"


def is_known_hash(hashed: str) -> bool:
    """Whether ``hashed`` is an Argon2 or bcrypt hash that FastAPI Users can verify."""
    return bool(_ARGON2.fullmatch(hashed) or _BCRYPT.fullmatch(hashed))


def generate_password() -> str:
    """A random password from ``secrets`` (256 bits, URL-safe), as FastAPI Users generates them."""
    return secrets.token_urlsafe(32)
