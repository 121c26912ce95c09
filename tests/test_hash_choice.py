"""usersctl.hash_choice and usersctl.passwords: which scheme new hashes get, and hashing in it, with FastAPI Users' own
PasswordHelper (the installed, current version) as the oracle."""

from __future__ import annotations

import bcrypt
import pytest
from argon2 import PasswordHasher
from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.bcrypt import BcryptHasher

from usersctl.hash_choice import choose_early, choose_from_table
from usersctl.passwords import (
    ARGON2,
    BCRYPT,
    Hashing,
    hash_many,
    hash_password,
    hash_scheme,
    is_disabled_marker,
    verify_and_update,
)

PASSWORD = "pässwörd with accents"


def test_the_table_decides_auto() -> None:
    assert choose_from_table(set()).hashing == ARGON2  # an empty table: what FastAPI Users writes
    assert choose_from_table({"argon2"}).hashing == ARGON2
    assert choose_from_table({"argon2", "bcrypt"}).hashing == ARGON2
    only_bcrypt = choose_from_table({"bcrypt"})
    assert only_bcrypt.hashing == BCRYPT
    assert only_bcrypt.note and "none Argon2" in only_bcrypt.note


def test_a_named_scheme_is_decided_before_the_table() -> None:
    assert choose_early("bcrypt") is not None and choose_early("bcrypt").hashing == BCRYPT
    assert choose_early("argon2") is not None and choose_early("argon2").hashing == ARGON2
    # FastAPI Users 15 is installed here: it reads Argon2, so the table decides.
    assert choose_early("auto") is None
    helper = Hashing("app", PasswordHelper(), "app:helper")
    assert choose_early("auto", helper) is not None
    assert choose_early("auto", helper).hashing is helper


def test_bcrypt_hashes_are_fastapi_users_bcrypt() -> None:
    hashed = hash_password(PASSWORD, BCRYPT)
    assert hashed.startswith("$2b$12$") and hash_scheme(hashed) == "bcrypt"
    assert PasswordHelper().verify_and_update(PASSWORD, hashed)[0]
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())


def test_hash_many_in_bcrypt() -> None:
    passwords = [f"{PASSWORD} {n}" for n in range(3)]
    hashes = list(hash_many(passwords, hashing=BCRYPT))
    assert all(h.startswith("$2b$12$") for h in hashes)
    assert all(
        bcrypt.checkpw(p.encode(), h.encode()) for p, h in zip(passwords, hashes, strict=True)
    )


def test_rehash_goes_toward_the_chosen_scheme() -> None:
    argon2 = PasswordHasher().hash(PASSWORD)
    current_bcrypt = hash_password(PASSWORD, BCRYPT)
    # Under bcrypt, Argon2 is replaced by bcrypt and a current bcrypt hash stays.
    matched, new = verify_and_update(PASSWORD, argon2, BCRYPT)
    assert matched and new is not None and hash_scheme(new) == "bcrypt"
    assert verify_and_update(PASSWORD, current_bcrypt, BCRYPT) == (True, None)
    # Under Argon2, as FastAPI Users does, bcrypt is replaced.
    matched, new = verify_and_update(PASSWORD, current_bcrypt, ARGON2)
    assert matched and new is not None and new.startswith("$argon2id$")


def test_the_apps_helper_identifies_without_hashing() -> None:
    bcrypt_only = Hashing("app", PasswordHelper(PasswordHash((BcryptHasher(),))), "app:helper")
    argon2 = PasswordHasher().hash(PASSWORD)
    assert bcrypt_only.identifies(hash_password(PASSWORD, BCRYPT)) is True
    assert bcrypt_only.identifies(argon2) is False
    as_pwdlib = Hashing("app", PasswordHash((BcryptHasher(),)), "app:hash")
    assert as_pwdlib.identifies(argon2) is False
    assert ARGON2.identifies(argon2) is None  # no helper: usersctl's own rules apply
    assert verify_and_update(PASSWORD, argon2, bcrypt_only) == (False, None)  # as the app's login


class _FastAPIUsers12Helper:
    """FastAPI Users 12's ``PasswordHelper`` as far as usersctl reads it: passlib's
    ``CryptContext`` of bcrypt alone, in ``context``, and no pwdlib hashers."""

    def __init__(self) -> None:
        from passlib.context import CryptContext

        self.context = CryptContext(schemes=["bcrypt"], deprecated="auto")


#: passlib, as FastAPI Users 12 pins it, imports the standard library's crypt (gone in 3.13).
@pytest.mark.filterwarnings("ignore:'crypt' is deprecated:DeprecationWarning")
def test_a_fastapi_users_12_helper_identifies_through_passlib() -> None:
    on_12 = Hashing("app", _FastAPIUsers12Helper(), "app:helper")
    assert on_12.identifies(hash_password(PASSWORD, BCRYPT)) is True
    # Passlib's answer for a hash of no scheme of its own is "not mine", never an error.
    assert on_12.identifies(PasswordHasher().hash(PASSWORD)) is False
    # A helper whose ``context`` is something else cannot be asked: no answer.
    helper = _FastAPIUsers12Helper()
    helper.context = "bcrypt"  # type: ignore[assignment]
    bcrypt_hash = hash_password(PASSWORD, BCRYPT)
    assert Hashing("app", helper, "app:helper").identifies(bcrypt_hash) is None


def test_disabled_markers() -> None:
    for marker in ("", "!", "!DISABLED!", "*", "!$2b$12$locked"):
        assert is_disabled_marker(marker), marker
    assert not is_disabled_marker(hash_password(PASSWORD, BCRYPT))
