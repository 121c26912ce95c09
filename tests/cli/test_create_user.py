"""create-user: flags, duplicates in any case, --if-not-exists, --dry-run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from usersctl.passwords import verify_password

if TYPE_CHECKING:
    from harness import Cli, Database


def test_create_superuser_with_a_generated_password(cli: Cli, db: Database) -> None:
    result = cli.ok(
        "create-user", "admin@example.com", "--superuser", "--generate-password", "-o", "json"
    )
    created = json.loads(result.stdout)
    password = created.pop("password")
    assert created == {
        "id": created["id"],
        "email": "admin@example.com",
        "is_active": True,
        "is_superuser": True,
        "is_verified": False,
        "status": "created",
    }
    # Shown once, in the output, and nowhere else; it is the password the user logs in with.
    assert len(password) >= 43
    assert result.stdout.count(password) == 1
    assert password not in result.stderr
    stored = db.stored_hash("admin@example.com")
    assert stored not in result.output
    assert verify_password(password, stored)
    assert not verify_password(password + "x", stored)
    # It is never shown again.
    shown = cli.ok("show-user", "admin@example.com", "-o", "json")
    assert password not in shown.output
    assert "password" not in json.loads(shown.stdout)


def test_create_user_flags(cli: Cli) -> None:
    plain = cli.json("create-user", "plain@example.com", "--generate-password")
    assert (plain["is_active"], plain["is_superuser"], plain["is_verified"]) == (True, False, False)
    flagged = cli.json(
        "create-user",
        "flagged@example.com",
        "--verified",
        "--inactive",
        "--superuser",
        "--password-stdin",
        input="a password\n",
    )
    assert (flagged["is_active"], flagged["is_superuser"], flagged["is_verified"]) == (
        False,
        True,
        True,
    )
    assert "password" not in flagged  # only a generated password is shown
    assert cli.user("FLAGGED@example.com") == {
        key: value for key, value in flagged.items() if key != "status"
    }


def test_an_email_taken_in_any_case_is_a_conflict(cli: Cli, db: Database) -> None:
    db.seed("alice@example.com")
    message = cli.fails(
        4, "create-user", "ALICE@Example.COM", "--password-stdin", input="a password\n"
    )
    assert "'alice@example.com' already exists" in message  # the address as it is stored
    assert db.count() == 1
    # With --if-not-exists the existing user is reported unchanged, and it is success.
    result = cli.ok("create-user", "Alice@example.com", "--if-not-exists", "--generate-password")
    assert "already exists" in result.stderr
    unchanged = cli.json(
        "create-user", "alice@EXAMPLE.com", "--if-not-exists", "--generate-password"
    )
    assert unchanged["status"] == "unchanged"
    assert unchanged["email"] == "alice@example.com"
    assert "password" not in unchanged  # nothing was set, so nothing is shown
    assert db.count() == 1


def test_create_user_dry_run_writes_nothing(cli: Cli, db: Database) -> None:
    would = cli.json(
        "create-user", "new@example.com", "--superuser", "--generate-password", "--dry-run"
    )
    assert would["status"] == "would create"
    assert would["email"] == "new@example.com" and would["is_superuser"] is True
    assert db.count() == 0
    cli.fails(3, "show-user", "new@example.com")
    # A dry run still validates: a duplicate is reported as such.
    db.seed("old@example.com")
    cli.fails(4, "create-user", "OLD@example.com", "--generate-password", "--dry-run")


def test_create_user_refuses_an_invalid_email_before_asking_for_a_password(cli: Cli) -> None:
    for bad in ("not-an-email", "two@@example.com", "", "a@b@c"):
        message = cli.fails(2, "create-user", bad, "--generate-password")
        assert "email" in message
    # No terminal and no password source: the email is still checked first.
    cli.fails(2, "create-user", "nope", input="")
