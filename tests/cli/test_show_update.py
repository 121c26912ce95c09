"""show-user and update-user: finding users by email or id; email changes; flags; the guard."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

from fastapi_users.password import PasswordHelper

if TYPE_CHECKING:
    from harness import Cli, Database


def test_show_user_by_email_in_any_case_or_by_id(cli: Cli, db: Database) -> None:
    (alice,) = db.seed("Alice@example.com", is_verified=True)
    expected = {
        "id": str(alice["id"]),
        "email": "Alice@example.com",
        "is_active": True,
        "is_superuser": False,
        "is_verified": True,
    }
    for ref in ("Alice@example.com", "alice@EXAMPLE.COM", " alice@example.com ", str(alice["id"])):
        assert cli.user(ref) == expected, ref
    assert cli.user(str(alice["id"]).upper()) == expected
    # Not found, and not even a possible id.
    assert "nobody@example.com" in cli.fails(3, "show-user", "nobody@example.com")
    cli.fails(3, "show-user", str(uuid.uuid4()))
    assert "not-an-id" in cli.fails(2, "show-user", "not-an-id")
    cli.fails(2, "show-user", "12345")


def test_update_flags_and_report_each_change(cli: Cli, db: Database) -> None:
    db.seed("admin@example.com", is_superuser=True)
    db.seed("alice@example.com")
    result = cli.ok("update-user", "alice@example.com", "--superuser", "--verified", "-o", "json")
    updated = json.loads(result.stdout)
    assert (updated["is_superuser"], updated["is_verified"], updated["status"]) == (
        True,
        True,
        "updated",
    )
    assert "is_superuser: false -> true" in result.stderr
    assert "is_verified: false -> true" in result.stderr
    assert db.flag("alice@example.com", "is_superuser") is True
    # Asking for what already is changes nothing, and is success.
    same = cli.ok("update-user", "alice@example.com", "--superuser", "-o", "json")
    assert json.loads(same.stdout)["status"] == "unchanged"
    assert same.stderr == ""
    # --dry-run reports the change and keeps the user as it was.
    dry = cli.ok(
        "update-user",
        "alice@example.com",
        "--inactive",
        "--no-superuser",
        "--dry-run",
        "-o",
        "json",
    )
    assert json.loads(dry.stdout)["status"] == "would update"
    assert "is_active: true -> false" in dry.stderr
    after = db.user("alice@example.com")
    assert (after["is_active"], after["is_superuser"]) == (True, True)
    cli.ok("update-user", "alice@example.com", "--inactive", "--unverified")
    after = db.user("alice@example.com")
    assert (after["is_active"], after["is_verified"]) == (False, False)
    cli.fails(3, "update-user", "nobody@example.com", "--verified")
    cli.fails(2, "update-user", "alice@example.com", "--email", "not an email")


def test_a_new_email_is_checked_and_unverifies(cli: Cli, db: Database) -> None:
    db.seed("alice@example.com", "bob@example.com", is_verified=True)
    # Another user's address, in any case, is a conflict; nothing changes.
    assert "already exists" in cli.fails(
        4, "update-user", "alice@example.com", "--email", "BOB@example.com"
    )
    assert db.flag("alice@example.com", "is_verified") is True
    # Changing only the case of one's own address is allowed, and keeps it verified.
    result = cli.ok(
        "update-user", "alice@example.com", "--email", "Alice@Example.com", "-o", "json"
    )
    assert "email: alice@example.com -> Alice@example.com" in result.stderr
    moved = json.loads(result.stdout)
    assert (moved["email"], moved["is_verified"]) == ("Alice@example.com", True)
    # A new address makes the user unverified ...
    result = cli.ok(
        "update-user", "alice@example.com", "--email", "alice@new.example", "-o", "json"
    )
    moved = json.loads(result.stdout)
    assert (moved["email"], moved["is_verified"]) == ("alice@new.example", False)
    assert "is_verified: true -> false" in result.stderr
    assert db.emails() == ["alice@new.example", "bob@example.com"]
    # ... unless --verified says otherwise.
    moved = cli.json(
        "update-user", "bob@example.com", "--email", "robert@example.com", "--verified"
    )
    assert (moved["email"], moved["is_verified"]) == ("robert@example.com", True)
    # The password is untouched by all this.
    assert PasswordHelper().verify_and_update(db.password, db.stored_hash("robert@example.com"))[0]


def test_the_last_active_superuser_cannot_be_demoted_or_deactivated_without_force(
    cli: Cli, db: Database
) -> None:
    db.seed("root@example.com", is_superuser=True)
    db.seed("retired@example.com", is_superuser=True, is_active=False)
    for flag in ("--no-superuser", "--inactive"):
        message = cli.fails(4, "update-user", "root@example.com", flag)
        assert "--force" in message
        cli.fails(4, "update-user", "root@example.com", flag, "--dry-run")
    assert db.flag("root@example.com", "is_superuser") is True
    # With a second active superuser it is allowed.
    cli.ok("update-user", "retired@example.com", "--active")
    cli.ok("update-user", "root@example.com", "--no-superuser")
    # --force overrides the guard.
    cli.fails(4, "update-user", "retired@example.com", "--inactive")
    forced = cli.json("update-user", "retired@example.com", "--inactive", "--force")
    assert forced["is_active"] is False
    assert db.emails("is_superuser AND is_active") == []
