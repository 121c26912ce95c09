"""--password-helper: an app on FastAPI Users 15 with its own PasswordHelper (bcrypt only) gets
every hash from it; verify-password and doctor judge hashes as that helper does. With
--user-manager alone, the manager's own password_helper does all of it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher
from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.bcrypt import BcryptHasher

from harness import sql as _sql

# The app's hashing helper, the same whatever the database: on SQLite only (the databases'
# halves of the commands are tested elsewhere).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

PASSWORD = "the app's own hashing"
HELPER = "app_security:password_helper"
#: The app's module, as such an app configures FastAPI Users (its own test copy, not an app's).
APP_SECURITY = """
from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.bcrypt import BcryptHasher

password_helper = PasswordHelper(PasswordHash((BcryptHasher(),)))
password_hash = PasswordHash((BcryptHasher(),))
"""
#: The same app's user manager (--user-manager), whose password_helper is that bcrypt helper.
APP_USERS = """
from fastapi_users import BaseUserManager, UUIDIDMixin

from app_security import password_helper


class UserManager(UUIDIDMixin, BaseUserManager):
    reset_password_token_secret = verification_token_secret = "a secret of 32 bytes or more...."

    def __init__(self, user_db):
        super().__init__(user_db, password_helper)


async def get_user_manager(user_db):
    yield UserManager(user_db)
"""
#: An app whose manager hashes Argon2 with parameters of its own (cheaper than FastAPI Users').
APP_ARGON2 = """
from fastapi_users import BaseUserManager, UUIDIDMixin
from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

hasher = Argon2Hasher(time_cost=2, memory_cost=8192, parallelism=1)


class UserManager(UUIDIDMixin, BaseUserManager):
    reset_password_token_secret = verification_token_secret = "a secret of 32 bytes or more...."

    def __init__(self, user_db):
        super().__init__(user_db, PasswordHelper(PasswordHash((hasher,))))
"""


def the_apps_helper() -> PasswordHelper:
    """The oracle: the same helper the app's login uses."""
    return PasswordHelper(PasswordHash((BcryptHasher(),)))


def stored(url: str, email: str) -> str:
    [(hashed,)] = asyncio.run(
        _sql(url, 'SELECT hashed_password FROM "user" WHERE email = :email', email=email)
    )
    assert isinstance(hashed, str)
    return hashed


def store(url: str, email: str, hashed: str) -> None:
    asyncio.run(
        _sql(url, 'UPDATE "user" SET hashed_password = :h WHERE email = :e', h=hashed, e=email)
    )


def logs_in(hashed: str, password: str = PASSWORD) -> bool:
    verified, _ = the_apps_helper().verify_and_update(password, hashed)
    return verified


def in_app_folder(runner: Any) -> Any:
    """usersctl run from the app's folder (its module importable)."""
    Path(runner.cwd, "app_security.py").write_text(APP_SECURITY)
    return runner


@pytest.fixture
def app(db: Any, cli: Any) -> Any:
    """usersctl in-process, run from the app's folder. The app's modules have one content
    whatever the test, so one imported by an earlier test is the same module."""
    return in_app_folder(cli)


@pytest.fixture
def app_entry_point(db: Any, usersctl: Any) -> Any:
    """The installed entry point, run from the app's folder."""
    return in_app_folder(usersctl)


def test_every_new_hash_comes_from_the_apps_helper(app_entry_point: Any) -> None:
    app = app_entry_point
    # Create
    app.ok(
        "--password-helper",
        HELPER,
        "create-user",
        "a@example.com",
        "--password-stdin",
        input=PASSWORD,
    )
    hashed = stored(app.url, "a@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed)
    # Set a password, the helper named by the variable (a pwdlib PasswordHash this time)
    env = {"USERSCTL_PASSWORD_HELPER": "app_security:password_hash"}
    app.ok("set-password", "a@example.com", "--password-stdin", input="n" * 12, env=env)
    hashed = stored(app.url, "a@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed, "n" * 12)
    # Import plaintext passwords
    rows = json.dumps({"email": "imported@example.com", "password": PASSWORD}) + "\n"
    app.ok("--password-helper", HELPER, "import-users", "-", "--format", "jsonl", input=rows)
    hashed = stored(app.url, "imported@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed)


def test_verify_password_answers_as_the_apps_login(app: Any, db: Any) -> None:
    db.seed("weak@example.com", "argon@example.com", "good@example.com")
    weak = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    store(app.url, "weak@example.com", weak)
    store(app.url, "argon@example.com", PasswordHasher().hash(PASSWORD))
    good = the_apps_helper().hash(PASSWORD)
    store(app.url, "good@example.com", good)

    def verify(email: str, *args: str) -> Any:
        return app(
            "--password-helper",
            HELPER,
            "verify-password",
            email,
            "--password-stdin",
            *args,
            input=PASSWORD,
        )

    # The helper would re-hash 4 rounds at the login: said, and --rehash does it, in bcrypt.
    said = verify("weak@example.com")
    assert said.returncode == 0, said.stderr
    assert "the app replaces it at the next login, as --rehash does" in said.stderr
    assert verify("weak@example.com", "--rehash").returncode == 0
    new = stored(app.url, "weak@example.com")
    assert new.startswith("$2b$12$") and new != weak and logs_in(new)
    # An Argon2 hash, which this app cannot read: no match, as its login (and nothing written).
    said = verify("argon@example.com", "--rehash")
    assert said.returncode == 6, said.stderr
    assert stored(app.url, "argon@example.com").startswith("$argon2id$")
    # A hash the helper keeps stays.
    said = verify("good@example.com", "--rehash")
    assert said.returncode == 0, said.stderr
    assert f"which stays: {HELPER} keeps it" in said.stderr
    assert stored(app.url, "good@example.com") == good


def test_doctor_fails_naming_the_users_who_cannot_log_in(app_entry_point: Any, db: Any) -> None:
    app = app_entry_point  # the real Argon2 cost (in-process tests hash at the lowest)
    db.seed(
        "a1@example.com",
        "a2@example.com",
        "b1@example.com",
        "b2@example.com",
        "b3@example.com",
        "locked@example.com",
    )
    argon2 = PasswordHasher().hash(PASSWORD)
    bcrypt_hash = the_apps_helper().hash(PASSWORD)
    for email in ("a1@example.com", "a2@example.com"):
        store(app.url, email, argon2)
    for email in ("b1@example.com", "b2@example.com", "b3@example.com"):
        store(app.url, email, bcrypt_hash)
    store(app.url, "locked@example.com", "!")

    # Without the helper, FastAPI Users' default helper reads both: all is well.
    plain = app("doctor", "-o", "json")
    assert plain.returncode == 0, plain.stdout + plain.stderr

    result = app("--password-helper", HELPER, "doctor", "-o", "json")
    assert result.returncode == 6, result.stdout + result.stderr
    [hashes] = [c for c in json.loads(result.stdout)["checks"] if c["check"] == "password hashes"]
    assert hashes["status"] == "fail"
    assert hashes["counts"] == {
        "argon2": 2, "argon2-outdated": 0, "bcrypt": 3, "unknown": 0, "disabled": 1,
    }  # fmt: skip
    assert (
        f"2 user(s) cannot log in: {HELPER} cannot identify their hashes (2 argon2)"
        in hashes["detail"]
    )
    assert "password hashes" in result.stderr


def test_a_helper_that_cannot_be_had_is_a_usage_error(app: Any) -> None:
    message = app.fails(
        2,
        "--password-helper",
        "app_security:nothing",
        "create-user",
        "a@example.com",
        "--password-stdin",
        input=PASSWORD,
    )
    assert "app_security" in message and "nothing" in message
    message = app.fails(
        2,
        "--password-helper",
        "no_such_module:helper",
        "doctor",
    )
    assert "cannot import 'no_such_module'" in message
    message = app.fails(
        2,
        "--password-helper",
        HELPER,
        "--hash-scheme",
        "argon2",
        "set-password",
        "a@example.com",
        "--password-stdin",
        input=PASSWORD,
    )
    assert "exclude each other" in message
    assert asyncio.run(_sql(app.url, 'SELECT count(*) FROM "user"')) == [(0,)]


def test_with_user_manager_the_managers_helper_hashes_and_no_other_is_taken(app: Any) -> None:
    Path(app.cwd, "app_users.py").write_text(APP_USERS)
    manager = ("--user-manager", "app_users:UserManager")
    # The manager's own password_helper (bcrypt only) makes every new hash.
    app.ok(*manager, "create-user", "a@example.com", "--password-stdin", input=PASSWORD)
    hashed = stored(app.url, "a@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed)
    app.ok(*manager, "set-password", "a@example.com", "--password-stdin", input="n" * 12)
    hashed = stored(app.url, "a@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed, "n" * 12)
    rows = json.dumps({"email": "imported@example.com", "password": PASSWORD}) + "\n"
    app.ok(*manager, "import-users", "-", "--format", "jsonl", input=rows)
    hashed = stored(app.url, "imported@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed)

    # Another hasher beside it is refused (exit 2), not silently ignored; nothing is written.
    for option in (("--password-helper", HELPER), ("--hash-scheme", "argon2")):
        message = app.fails(
            2, *manager, *option, "create-user", "b@example.com", "--password-stdin", input=PASSWORD
        )
        assert message == (
            f"Error: {option[0]} and --user-manager exclude each other: the manager's "
            "password_helper hashes"
        )
    assert asyncio.run(_sql(app.url, 'SELECT count(*) FROM "user"')) == [(2,)]


def test_verify_password_with_user_manager_answers_as_the_managers_helper(app: Any) -> None:
    Path(app.cwd, "app_users.py").write_text(APP_USERS)
    manager = ("--user-manager", "app_users:get_user_manager")

    def verify(email: str, password: str, *args: str) -> Any:
        return app(*manager, "verify-password", email, "--password-stdin", *args, input=password)

    # A user created through the manager (bcrypt, its helper's only scheme)
    app.ok(*manager, "create-user", "a@example.com", "--password-stdin", input=PASSWORD)
    made = stored(app.url, "a@example.com")
    assert made.startswith("$2b$12$")
    said = verify("a@example.com", PASSWORD)
    assert said.returncode == 0, said.stderr
    assert "It has a bcrypt hash, which stays: app_users:get_user_manager keeps it." in said.stderr
    assert verify("a@example.com", "not the password").returncode == 6
    # --rehash keeps what the manager keeps: no Argon2 hash its login could not read.
    assert verify("a@example.com", PASSWORD, "--rehash").returncode == 0
    assert stored(app.url, "a@example.com") == made and logs_in(made)

    # An Argon2 hash, which this app cannot read: no match, as at its login.
    app.ok(*manager, "create-user", "b@example.com", "--password-stdin", input=PASSWORD)
    store(app.url, "b@example.com", PasswordHasher().hash(PASSWORD))
    assert (
        app("verify-password", "b@example.com", "--password-stdin", input=PASSWORD).returncode == 0
    )
    said = verify("b@example.com", PASSWORD)
    assert said.returncode == 6, said.stderr
    assert stored(app.url, "b@example.com").startswith("$argon2id$")


def test_doctor_with_user_manager_judges_hashes_as_the_managers_helper(app: Any) -> None:
    Path(app.cwd, "app_users.py").write_text(APP_USERS)
    manager = ("--user-manager", "app_users:get_user_manager")
    for email in ("b1@example.com", "b2@example.com"):
        app.ok(*manager, "create-user", email, "--password-stdin", input=PASSWORD)

    def hashes(*args: str, code: int) -> dict[str, Any]:
        result = app(*args, "doctor", "-o", "json")
        assert result.returncode == code, result.stdout + result.stderr
        [check] = [
            c for c in json.loads(result.stdout)["checks"] if c["check"] == "password hashes"
        ]
        return dict(check)

    # The manager's bcrypt hashes are what it reads.
    assert hashes(*manager, code=0)["status"] == "ok"
    # An Argon2 hash it cannot read fails the check, naming the manager; FastAPI Users' default
    # helper (no --user-manager) would read it.
    app.ok(
        "--hash-scheme",
        "argon2",
        "create-user",
        "a1@example.com",
        "--password-stdin",
        input=PASSWORD,
    )
    assert stored(app.url, "a1@example.com").startswith("$argon2id$")
    assert hashes(code=0)["status"] == "ok"
    check = hashes(*manager, code=6)
    assert check["status"] == "fail"
    assert check["counts"] == {
        "argon2": 1, "argon2-outdated": 0, "bcrypt": 2, "unknown": 0, "disabled": 0,
    }  # fmt: skip
    assert check["detail"].endswith(
        "1 user(s) cannot log in: app_users:get_user_manager cannot identify their hashes "
        "(1 argon2)"
    )
    # Beside --password-helper the manager's helper is the one: refused, as for create-user.
    assert "exclude each other" in app.fails(2, *manager, "--password-helper", HELPER, "doctor")


def test_argon2_parameters_of_the_managers_own_are_current_not_outdated(
    app_entry_point: Any,
) -> None:
    app = app_entry_point  # the real Argon2 cost (in-process tests hash at the lowest)
    Path(app.cwd, "app_argon2.py").write_text(APP_ARGON2)
    manager = ("--user-manager", "app_argon2:UserManager")
    app.ok(*manager, "create-user", "app@example.com", "--password-stdin", input=PASSWORD)
    assert "$m=8192,t=2,p=1$" in stored(app.url, "app@example.com")
    for email in ("default@example.com", "another@example.com"):
        app.ok("create-user", email, "--password-stdin", input=PASSWORD)
        assert "$m=65536,t=3,p=4$" in stored(app.url, email)

    def counts(*args: str) -> dict[str, int]:
        result = app.ok(*args, "doctor", "-o", "json")
        [check] = [
            c for c in json.loads(result.stdout)["checks"] if c["check"] == "password hashes"
        ]
        assert check["status"] == "ok", check
        return {scheme: n for scheme, n in check["counts"].items() if n}

    # FastAPI Users' parameters are current by default, the app's by its manager.
    assert counts() == {"argon2": 2, "argon2-outdated": 1}
    assert counts(*manager) == {"argon2": 1, "argon2-outdated": 2}
    # Which is which: verify-password says the app's own hash stays, the default one is replaced.
    said = app(*manager, "verify-password", "app@example.com", "--password-stdin", input=PASSWORD)
    assert said.returncode == 0, said.stderr
    assert "Argon2" not in said.stderr
    said = app(
        *manager, "verify-password", "default@example.com", "--password-stdin", input=PASSWORD
    )
    assert said.returncode == 0, said.stderr
    assert (
        "It has an outdated Argon2 hash; the app replaces it at the next login, as --rehash does."
        in said.stderr
    )
    said = app("verify-password", "app@example.com", "--password-stdin", input=PASSWORD)
    assert "It has an outdated Argon2 hash" in said.stderr
