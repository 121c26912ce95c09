"""import-users for ops scripts: a dry run of plaintext passwords hashes one of them (the app's
helper here counts its hashes in a file), and --on-conflict update takes rows without a
password, leaving existing users' hashes alone; through the installed entry point, checked with
plain SQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from harness import Cli, Database, Usersctl
from usersctl.passwords import verify_password

#: The app's password helper (cheap Argon2), which writes a line to hashes.log beside it for
#: each hash it makes; BROKEN_HELPER cannot hash at all.
COUNTING_HELPER = """
from pathlib import Path

from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

LOG = Path(__file__).with_name("hashes.log")


class CountingHelper(PasswordHelper):
    def hash(self, password):
        with LOG.open("a") as log:
            log.write("hashed\\n")
        return super().hash(password)


password_helper = CountingHelper(
    PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
)


class BrokenHelper(PasswordHelper):
    def hash(self, password):
        raise RuntimeError("the hasher is broken")


broken_helper = BrokenHelper()
"""
HELPER = ("--password-helper", "app_hashing:password_helper")
NOW = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def cli(empty_cli: Cli) -> Cli:
    """The database with FastAPI Users' user and access token tables (``db`` uses it too)."""
    empty_cli.ok("init-db", "--access-tokens")
    return empty_cli


@pytest.fixture
def app(usersctl: Usersctl, db: Database) -> Usersctl:
    """The installed entry point, run from the app's folder (its hashing module importable)."""
    Path(usersctl.cwd, "app_hashing.py").write_text(COUNTING_HELPER)
    return usersctl


def hashes_made(app: Usersctl) -> int:
    """How many hashes the app's helper has made so far."""
    log = Path(app.cwd, "hashes.log")
    return len(log.read_text().splitlines()) if log.exists() else 0


def write_jsonl(path: Path, *records: dict[str, Any]) -> str:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def add_session(db: Database, email: str) -> None:
    user = db.user(email)
    db.insert("accesstoken", {"token": f"{email}-1", "user_id": user["id"], "created_at": NOW})


def users_as_stored(db: Database) -> list[dict[str, Any]]:
    return db.query(
        'SELECT email, hashed_password, is_active, is_verified FROM "user" ORDER BY email'
    )


#: Hashing is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dry_run_hashes_one_password_and_reports_as_the_import(
    app: Usersctl, db: Database, tmp_path: Path
) -> None:
    db.seed("old1@example.com", "old2@example.com")
    add_session(db, "old1@example.com")
    before = users_as_stored(db)
    file = write_jsonl(
        tmp_path / "users.jsonl",
        {"email": "old1@example.com", "password": "a rotated password 1"},
        {"email": "OLD2@example.com", "password": "a rotated password 2"},
        *({"email": f"new{n}@example.com", "password": f"new password {n}"} for n in range(40)),
    )
    args = ("import-users", file, "--on-conflict", "update", "-o", "json")
    expected = {
        "created": 40,
        "updated": 2,
        "skipped": 0,
        "invalid": 0,
        "revoked_tokens": 1,
    }

    dry = app.ok(*HELPER, *args, "--dry-run")
    assert json.loads(dry.stdout) == {**expected, "dry_run": True}
    assert dry.stderr == "Dry run: nothing was written.\n"
    assert hashes_made(app) == 1  # the sample that shows the hashing works
    assert users_as_stored(db) == before
    assert db.count("accesstoken") == 1

    done = app.ok(*HELPER, *args)
    assert json.loads(done.stdout) == {**expected, "dry_run": False}
    assert hashes_made(app) == 1 + 42
    assert verify_password("new password 39", db.stored_hash("new39@example.com"))
    assert verify_password("a rotated password 2", db.stored_hash("old2@example.com"))
    assert db.count("accesstoken") == 0


def test_a_broken_hasher_still_fails_the_dry_run(
    app: Usersctl, db: Database, tmp_path: Path
) -> None:
    file = write_jsonl(
        tmp_path / "users.jsonl",
        *({"email": f"new{n}@example.com", "password": f"new password {n}"} for n in range(3)),
    )
    broken = ("--password-helper", "app_hashing:broken_helper")
    result = app(*broken, "import-users", file, "--dry-run")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the hasher is broken" in result.stderr
    assert "Traceback" not in result.stderr
    assert db.count() == 0


def test_update_rows_without_a_password_keep_the_users_hashes(
    usersctl: Usersctl, db: Database, tmp_path: Path
) -> None:
    db.seed("alice@example.com", "bob@example.com", "carol@example.com")
    add_session(db, "alice@example.com")
    hashes = {row["email"]: row["hashed_password"] for row in users_as_stored(db)}
    # CSV: an empty cell is "not given", so Bob's row gives a password and Alice's does not.
    csv = tmp_path / "changes.csv"
    csv.write_text(
        "email,password,is_verified,is_active\n"
        "alice@example.com,,true,\n"
        "bob@example.com,bob's new password,,false\n"
    )
    result = usersctl.ok("import-users", str(csv), "--on-conflict", "update", "-o", "json")
    assert json.loads(result.stdout) == {
        "created": 0,
        "updated": 2,
        "skipped": 0,
        "invalid": 0,
        "revoked_tokens": 0,
        "dry_run": False,
    }
    stored = {row["email"]: row for row in users_as_stored(db)}
    assert stored["alice@example.com"]["hashed_password"] == hashes["alice@example.com"]
    assert (
        bool(stored["alice@example.com"]["is_verified"]),
        bool(stored["alice@example.com"]["is_active"]),
    ) == (True, True)
    assert verify_password("bob's new password", stored["bob@example.com"]["hashed_password"])
    assert not stored["bob@example.com"]["is_active"]
    assert stored["carol@example.com"]["hashed_password"] == hashes["carol@example.com"]
    # Alice kept her password, so she keeps her session.
    assert db.count("accesstoken") == 1


def test_a_new_user_without_a_password_is_still_refused(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    db.seed("alice@example.com")
    before = users_as_stored(db)
    file = write_jsonl(
        tmp_path / "users.jsonl",
        {"email": "alice@example.com", "is_verified": True},
        {"email": "newcomer@example.com", "is_verified": True},
        {"email": "other@example.com", "password": "a good new password"},
    )
    message = cli.fails(2, "import-users", file, "--on-conflict", "update")
    assert message == (
        "Error: 1 row is invalid, nothing was written: line 2: password or hashed_password is "
        "missing; only a row that updates an existing user may leave them out"
    )
    assert cli.fails(2, "import-users", file, "--on-conflict", "update", "--dry-run")
    assert users_as_stored(db) == before
    # Under the other rules, a row without a password is invalid as ever, existing user or not.
    for rule in ("fail", "skip"):
        message = cli.fails(2, "import-users", file, "--on-conflict", rule)
        assert message.startswith("Error: 2 rows are invalid, nothing was written: line 1: "), (
            message
        )
        assert "line 1: password or hashed_password is missing; line 2:" in message
    assert users_as_stored(db) == before
