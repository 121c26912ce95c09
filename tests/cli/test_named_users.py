"""The commands that take several users — activate-user, deactivate-user, delete-user,
set-password, revoke-sessions — read them from stdin with ``-`` and skip missing ones with
--missing-ok, all by the same rules and words; through the installed entry point, checked with
plain SQL."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from harness import Cli, Database, Usersctl
from usersctl.passwords import verify_password

NOW = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
#: Each command, what it needs to run without a terminal, and what it says it did not do.
COMMANDS = {
    "activate-user": ([], "nobody was activated"),
    "deactivate-user": ([], "nobody was deactivated"),
    "delete-user": (["--yes"], "nothing was deleted"),
    "set-password": (["--generate-password"], "no password was set"),
    "revoke-sessions": ([], "nothing was revoked"),
}


@pytest.fixture
def cli(empty_cli: Cli) -> Cli:
    """The database with FastAPI Users' user and access token tables (``db`` uses it too)."""
    empty_cli.ok("init-db", "--access-tokens")
    return empty_cli


def seed_people(db: Database, command: str) -> dict[str, dict[str, Any]]:
    """Alice, Bob and Carol, each with a session; inactive for activate-user, so that every
    command has something to change."""
    people = db.seed(
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        is_active=command != "activate-user",
    )
    for person in people:
        db.insert(
            "accesstoken",
            {"token": f"{person['email']}-1", "user_id": person["id"], "created_at": NOW},
        )
    return {person["email"].split("@")[0]: person for person in people}


def state(db: Database) -> list[tuple[Any, ...]]:
    """Every user as stored (email, hash, active) and every session, read with SQL."""
    users = db.query('SELECT email, hashed_password, is_active FROM "user" ORDER BY email')
    tokens = db.query("SELECT token FROM accesstoken ORDER BY token")
    return [
        *((u["email"], u["hashed_password"], bool(u["is_active"])) for u in users),
        *((t["token"],) for t in tokens),
    ]


def changed(db: Database, command: str, before: list[tuple[Any, ...]], email: str) -> bool:
    """Whether ``command`` did its work on the user of ``email`` (compared with ``before``)."""
    rows = {row[0]: row for row in before if len(row) == 3}
    if command == "delete-user":
        return db.query('SELECT email FROM "user" WHERE email = :e', e=email) == []
    sessions = db.query("SELECT token FROM accesstoken WHERE token = :t", t=f"{email}-1")
    now = db.user(email)
    if command == "activate-user":
        return bool(now["is_active"]) and not rows[email][2]
    if command == "deactivate-user":
        return not now["is_active"] and sessions == []
    if command == "set-password":
        return now["hashed_password"] != rows[email][1] and sessions == []
    return sessions == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_missing_user_is_exit_3_naming_all_unless_missing_ok(
    cli: Cli, db: Database, command: str
) -> None:
    extra, nothing = COMMANDS[command]
    people = seed_people(db, command)
    before = state(db)
    named = ["alice@example.com", "gone@example.com", str(people["bob"]["id"]), "lost@example.com"]
    message = cli.fails(3, command, *named, *extra)
    assert message == (
        f"Error: no user 'gone@example.com', 'lost@example.com'; {nothing} "
        "(--missing-ok skips them)"
    )
    assert state(db) == before

    result = cli.ok(command, *named, *extra, "--missing-ok", "-o", "json")
    skipped = ["No user 'gone@example.com': skipped.", "No user 'lost@example.com': skipped."]
    assert [line for line in result.stderr.splitlines() if line.startswith("No user")] == skipped
    assert changed(db, command, before, "alice@example.com")
    assert changed(db, command, before, "bob@example.com")
    assert not changed(db, command, before, "carol@example.com")
    output = json.loads(result.stdout)
    if command == "revoke-sessions":
        assert output["missing"] == ["gone@example.com", "lost@example.com"]
    else:  # a row each, the missing ones "not found"
        assert [(row["email"], row["status"]) for row in output][2:] == [
            ("gone@example.com", "not found"),
            ("lost@example.com", "not found"),
        ]
        assert [row["email"] for row in output][:2] == ["alice@example.com", "bob@example.com"]


@pytest.mark.parametrize("command", COMMANDS)
def test_users_from_stdin_one_a_line(cli: Cli, db: Database, command: str) -> None:
    extra, nothing = COMMANDS[command]
    people = seed_people(db, command)
    before = state(db)
    # - alone; nobody on stdin; a missing user on stdin is a missing user: nothing done.
    assert cli.fails(2, command, "alice@example.com", "-", *extra, input="bob@example.com\n") == (
        "Error: - reads the users from stdin; give it alone"
    )
    assert cli.fails(2, command, "-", *extra, input="\n  \n") == (
        "Error: no users on stdin (one email or id a line)"
    )
    assert cli.fails(3, command, "-", *extra, input="alice@example.com\nnobody@example.com\n") == (
        f"Error: no user 'nobody@example.com'; {nothing} (--missing-ok skips them)"
    )
    assert state(db) == before

    lines = f"\n  ALICE@example.com\n\n{people['bob']['id']}  \nnobody@example.com\n"
    result = cli.ok(command, "-", *extra, "--missing-ok", input=lines)
    assert "No user 'nobody@example.com': skipped." in result.stderr.splitlines()
    assert changed(db, command, before, "alice@example.com")
    assert changed(db, command, before, "bob@example.com")
    assert not changed(db, command, before, "carol@example.com")


def test_list_users_piped_into_deactivate_user(usersctl: Usersctl, db: Database) -> None:
    """The ids of a list, one a line, need no xargs (jq -r .id, or cut on CSV, makes them)."""
    db.seed("admin@example.com", is_superuser=True)
    db.seed("ann@contractor.example", "ben@contractor.example", "staff@example.com")
    listed = usersctl.ok("list-users", "--search", "@contractor.example", "-o", "jsonl")
    ids = "".join(json.loads(line)["id"] + "\n" for line in listed.stdout.splitlines())
    result = usersctl.ok("deactivate-user", "-", "-o", "csv", input=ids)
    assert [line.split(",")[1:3] for line in result.stdout.splitlines()] == [
        ["email", "status"],
        ["ann@contractor.example", "deactivated"],
        ["ben@contractor.example", "deactivated"],
    ]
    assert db.emails("NOT is_active") == ["ann@contractor.example", "ben@contractor.example"]


def test_several_users_get_a_generated_password_each(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    people = seed_people(db, "set-password")
    before = state(db)
    # One password for several users is refused, whatever its source; nothing is set.
    several = "error: several users get a password each: use --generate-password"
    password_file = tmp_path / "pw.txt"
    password_file.write_text("one password for all\n")
    password_file.chmod(0o600)
    for source in ([], ["--password-stdin"], ["--password-file", str(password_file)]):
        message = cli.fails(
            2, "set-password", "alice@example.com", "bob@example.com", *source, input="pw\n"
        )
        assert message.lower().startswith(several), message
        message = cli.fails(2, "set-password", "-", *source, input="alice@example.com\n")
        assert message.lower().startswith(several), message
    assert state(db) == before

    # A dry run shows all of it and sets nothing.
    dry = cli.ok(
        "set-password",
        "alice@example.com",
        "bob@example.com",
        "--generate-password",
        "--dry-run",
        "-o",
        "json",
    )
    assert [row["status"] for row in json.loads(dry.stdout)] == ["would set password"] * 2
    assert state(db) == before

    result = cli.ok(
        "set-password", "-", "--generate-password", "-o", "json",
        input=f"alice@example.com\n{people['bob']['id']}\n",
    )  # fmt: skip
    rows = json.loads(result.stdout)
    assert [(row["email"], row["status"], row["revoked_tokens"]) for row in rows] == [
        ("alice@example.com", "password set", 1),
        ("bob@example.com", "password set", 1),
    ]
    alice, bob = (row["password"] for row in rows)
    assert alice != bob
    assert verify_password(alice, db.stored_hash("alice@example.com"))
    assert verify_password(bob, db.stored_hash("bob@example.com"))
    assert not verify_password(alice, db.stored_hash("bob@example.com"))
    assert ("carol@example.com", db.stored_hash("carol@example.com"), True) in before
    assert [row["token"] for row in db.query("SELECT token FROM accesstoken")] == [
        "carol@example.com-1"
    ]


def test_one_missing_user_with_missing_ok_is_skipped(cli: Cli, db: Database) -> None:
    """set-password of one user (the password from stdin, so no - then) skips a missing user
    too, and asks for nothing it would not use."""
    db.seed("alice@example.com")
    before = state(db)
    result = cli.ok(
        "set-password", "gone@example.com", "--password-stdin", "--missing-ok", "-o", "json",
        input="a new password for nobody\n",
    )  # fmt: skip
    assert json.loads(result.stdout) == {
        "id": None,
        "email": "gone@example.com",
        "status": "not found",
    }
    assert result.stderr == "No user 'gone@example.com': skipped.\n"
    assert state(db) == before


def test_delete_user_from_stdin_needs_yes(cli: Cli, db: Database) -> None:
    """stdin holds the users, so no answer can come from it: --yes, or exit 2 before reading."""
    db.seed("mallory@example.com")
    message = cli.fails(2, "delete-user", "-", input="mallory@example.com\ny\n")
    assert (
        message
        == "Error: refusing to delete without confirmation: no terminal to ask on; pass --yes"
    )
    assert db.emails() == ["mallory@example.com"]
