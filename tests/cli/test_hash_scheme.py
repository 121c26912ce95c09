"""--hash-scheme: Argon2 as FastAPI Users 13+ writes it, bcrypt for a table (or an installed
FastAPI Users) that may read bcrypt only; checked with FastAPI Users' own PasswordHelper."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import bcrypt
import pytest
from fastapi_users.password import PasswordHelper

from harness import Cli
from harness import sql as _sql

PASSWORD = "a long enough password"
BCRYPT_NOTE = "Writing bcrypt: the table's password hashes are bcrypt, none Argon2"


def stored(url: str, email: str) -> str:
    [(hashed,)] = asyncio.run(
        _sql(url, 'SELECT hashed_password FROM "user" WHERE email = :email', email=email)
    )
    assert isinstance(hashed, str)
    return hashed


def give_bcrypt_hash(url: str, email: str, password: str = PASSWORD) -> str:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    asyncio.run(
        _sql(
            url,
            'UPDATE "user" SET hashed_password = :hashed WHERE email = :email',
            hashed=hashed,
            email=email,
        )
    )
    return hashed


def logs_in(hashed: str, password: str = PASSWORD) -> bool:
    """FastAPI Users' (the installed, current version's) own check of a login."""
    verified, _ = PasswordHelper().verify_and_update(password, hashed)
    return verified


@pytest.fixture
def bcrypt_table(db: Any, cli: Cli) -> Cli:
    """A table whose one user has a bcrypt hash, as an app on FastAPI Users 12 leaves it."""
    db.seed("old@example.com")
    give_bcrypt_hash(cli.url, "old@example.com")
    return cli


def test_auto_writes_argon2_on_an_empty_table(db: Any, cli: Cli) -> None:
    result = cli.ok("create-user", "a@example.com", "--password-stdin", input=PASSWORD)
    assert "bcrypt" not in result.stderr
    hashed = stored(cli.url, "a@example.com")
    assert hashed.startswith("$argon2id$") and logs_in(hashed)


def test_auto_writes_bcrypt_beside_bcrypt_hashes_and_says_so(bcrypt_table: Any) -> None:
    # Create
    result = bcrypt_table.ok("create-user", "new@example.com", "--password-stdin", input=PASSWORD)
    assert BCRYPT_NOTE in result.stderr
    hashed = stored(bcrypt_table.url, "new@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed)
    # Set a password
    result = bcrypt_table.ok("set-password", "old@example.com", "--password-stdin", input="x" * 12)
    assert BCRYPT_NOTE in result.stderr
    hashed = stored(bcrypt_table.url, "old@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed, "x" * 12)
    # Import plaintext passwords
    rows = json.dumps({"email": "imported@example.com", "password": PASSWORD}) + "\n"
    result = bcrypt_table.ok("import-users", "-", "--format", "jsonl", input=rows)
    assert BCRYPT_NOTE in result.stderr
    hashed = stored(bcrypt_table.url, "imported@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed)


def test_an_explicit_scheme_wins_over_the_table(bcrypt_table: Any) -> None:
    bcrypt_table.ok(
        "--hash-scheme",
        "argon2",
        "create-user",
        "a@example.com",
        "--password-stdin",
        input=PASSWORD,
    )
    assert stored(bcrypt_table.url, "a@example.com").startswith("$argon2id$")
    # Once the table holds an Argon2 hash, auto writes Argon2 again.
    result = bcrypt_table.ok("create-user", "b@example.com", "--password-stdin", input=PASSWORD)
    assert "bcrypt" not in result.stderr
    assert stored(bcrypt_table.url, "b@example.com").startswith("$argon2id$")


def test_the_variable_and_a_wrong_value(db: Any, usersctl: Any) -> None:
    usersctl.ok(
        "create-user",
        "a@example.com",
        "--password-stdin",
        input=PASSWORD,
        env={"USERSCTL_HASH_SCHEME": "bcrypt"},
    )
    hashed = stored(usersctl.url, "a@example.com")
    assert hashed.startswith("$2b$12$") and logs_in(hashed)
    result = usersctl(
        "--hash-scheme", "md5", "create-user", "b@example.com", "--password-stdin", input=PASSWORD
    )
    assert result.returncode == 2 and "md5" in result.stderr, result.stderr
    assert asyncio.run(_sql(usersctl.url, 'SELECT count(*) FROM "user"')) == [(1,)]


def test_rehash_keeps_bcrypt_in_a_bcrypt_table(bcrypt_table: Any) -> None:
    old = stored(bcrypt_table.url, "old@example.com")
    result = bcrypt_table.ok(
        "verify-password", "old@example.com", "--password-stdin", input=PASSWORD
    )
    assert "replaces it at the next login" not in result.stderr
    assert "--rehash replaces it with a bcrypt one" in result.stderr
    result = bcrypt_table.ok(
        "verify-password", "old@example.com", "--password-stdin", "--rehash", input=PASSWORD
    )
    new = stored(bcrypt_table.url, "old@example.com")
    # Never an Argon2 hash, which no user of this table has; the 4-round hash gets 12 rounds.
    assert new.startswith("$2b$12$") and new != old and logs_in(new)
    assert "new bcrypt hash" in result.stderr


def test_rehash_writes_argon2_when_the_table_has_argon2(db: Any, cli: Cli) -> None:
    db.seed("argon@example.com", "old@example.com")
    give_bcrypt_hash(cli.url, "old@example.com")
    result = cli.ok("verify-password", "old@example.com", "--password-stdin", input=PASSWORD)
    # FastAPI Users 15 is installed here: its default PasswordHelper does replace bcrypt.
    assert "the app replaces it at the next login, as --rehash does" in result.stderr
    cli.ok("verify-password", "old@example.com", "--password-stdin", "--rehash", input=PASSWORD)
    new = stored(cli.url, "old@example.com")
    assert new.startswith("$argon2id$") and logs_in(new)
