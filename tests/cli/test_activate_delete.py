"""activate-user, deactivate-user and delete-user: several users at once, idempotent, guarded."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness import Cli, Database


def statuses(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {row["email"]: row["status"] for row in rows}


def test_deactivate_and_activate_report_what_changed(cli: Cli, db: Database) -> None:
    db.seed("admin@example.com", is_superuser=True)
    db.seed("mallory@example.com", "eve@example.com")
    db.seed("gone@example.com", is_active=False)
    rows = cli.json("deactivate-user", "mallory@example.com", "EVE@example.com", "gone@example.com")
    assert statuses(rows) == {
        "mallory@example.com": "deactivated",
        "eve@example.com": "deactivated",
        "gone@example.com": "already inactive",
    }
    assert db.emails("NOT is_active") == [
        "eve@example.com",
        "gone@example.com",
        "mallory@example.com",
    ]
    # Again: nothing to do, and that is success.
    again = cli.json("deactivate-user", "mallory@example.com", "eve@example.com")
    assert set(statuses(again).values()) == {"already inactive"}
    # The same user twice is one user.
    mallory_id = str(db.user("mallory@example.com")["id"])
    rows = cli.json("activate-user", "mallory@example.com", mallory_id, "admin@example.com")
    assert statuses(rows) == {
        "mallory@example.com": "activated",
        "admin@example.com": "already active",
    }
    assert db.flag("mallory@example.com", "is_active") is True


def test_activation_is_all_or_nothing_and_has_a_dry_run(cli: Cli, db: Database) -> None:
    db.seed("mallory@example.com", "eve@example.com")
    # One unknown user: exit 3 and nobody changes.
    message = cli.fails(3, "deactivate-user", "mallory@example.com", "nobody@example.com")
    assert "nobody@example.com" in message
    cli.fails(2, "deactivate-user", "mallory@example.com", "not-an-id")
    assert db.emails("NOT is_active") == []
    rows = cli.json("deactivate-user", "mallory@example.com", "--dry-run")
    assert statuses(rows) == {"mallory@example.com": "would be deactivated"}
    assert db.emails("NOT is_active") == []
    cli.ok("deactivate-user", "eve@example.com")
    rows = cli.json("activate-user", "eve@example.com", "--dry-run")
    assert statuses(rows) == {"eve@example.com": "would be activated"}
    assert db.emails("NOT is_active") == ["eve@example.com"]
    assert cli("deactivate-user").exit_code == 2  # at least one user


def test_deactivating_the_last_active_superuser_needs_force(cli: Cli, db: Database) -> None:
    db.seed("root@example.com", "backup@example.com", is_superuser=True)
    # One of two may go; both at once may not.
    assert "--force" in cli.fails(4, "deactivate-user", "root@example.com", "backup@example.com")
    assert db.emails("NOT is_active") == []
    cli.ok("deactivate-user", "backup@example.com")
    cli.fails(4, "deactivate-user", "root@example.com")
    cli.fails(4, "deactivate-user", "root@example.com", "--dry-run")
    rows = cli.json("deactivate-user", "root@example.com", "--force")
    assert statuses(rows) == {"root@example.com": "deactivated"}
    # activate-user has nothing to guard.
    cli.ok("activate-user", "root@example.com")


def test_delete_user_removes_oauth_accounts_and_access_tokens(cli: Cli, db: Database) -> None:
    cli.ok("init-db", "--oauth", "--access-tokens")
    mallory, eve, keep = db.seed("mallory@example.com", "eve@example.com", "keep@example.com")
    now = dt.datetime.now(dt.timezone.utc)
    for user in (mallory, eve, keep):
        db.insert(
            "oauth_account",
            {
                "id": str(uuid.uuid4()),
                "user_id": user["id"],
                "oauth_name": "github",
                "access_token": "token",
                "account_id": str(user["id"]),
                "account_email": user["email"],
            },
        )
        db.insert(
            "accesstoken", {"token": uuid.uuid4().hex, "user_id": user["id"], "created_at": now}
        )
    rows = cli.json("delete-user", "mallory@example.com", "EVE@example.com", "--yes")
    assert statuses(rows) == {"mallory@example.com": "deleted", "eve@example.com": "deleted"}
    assert db.emails() == ["keep@example.com"]
    assert db.count("oauth_account") == 1
    assert db.count("accesstoken") == 1
    cli.fails(3, "show-user", "mallory@example.com")


def test_delete_user_missing_users_and_dry_run(cli: Cli, db: Database) -> None:
    db.seed("mallory@example.com", "eve@example.com")
    # An unknown user is exit 3, and nobody is deleted ...
    cli.fails(3, "delete-user", "mallory@example.com", "gone@example.com", "--yes")
    assert db.count() == 2
    # ... unless --missing-ok.
    rows = cli.json(
        "delete-user", "mallory@example.com", "gone@example.com", "--missing-ok", "--yes"
    )
    assert statuses(rows) == {"mallory@example.com": "deleted", "gone@example.com": "not found"}
    assert cli.json("delete-user", "gone@example.com", "--missing-ok", "--yes") == [
        {"id": None, "email": "gone@example.com", "status": "not found"}
    ]
    # --dry-run asks nothing, reports, and keeps the user.
    rows = cli.json("delete-user", "eve@example.com", "--dry-run")
    assert statuses(rows) == {"eve@example.com": "would delete"}
    assert db.emails() == ["eve@example.com"]


def test_delete_user_without_a_terminal_needs_yes(cli: Cli, db: Database) -> None:
    db.seed("mallory@example.com")
    message = cli.fails(2, "delete-user", "mallory@example.com", input="y\n")
    assert "--yes" in message
    assert db.emails() == ["mallory@example.com"]


def test_deleting_the_last_active_superuser_needs_force(cli: Cli, db: Database) -> None:
    db.seed("root@example.com", is_superuser=True)
    db.seed("retired@example.com", is_superuser=True, is_active=False)
    # An inactive superuser is not the guard's concern.
    cli.ok("delete-user", "retired@example.com", "--yes")
    assert "--force" in cli.fails(4, "delete-user", "root@example.com", "--yes")
    cli.fails(4, "delete-user", "root@example.com", "--dry-run")
    assert db.count() == 1
    cli.ok("delete-user", "root@example.com", "--yes", "--force")
    assert db.count() == 0


# On a terminal, delete-user asks first --------------------------------------------------------


#: The question is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_delete_user_asks_on_a_terminal(spawn: Any, db: Database, cli: Cli) -> None:
    import pexpect

    db.seed("mallory@example.com", "eve@example.com")
    # "n": nothing is deleted, exit 1.
    child = spawn("delete-user", "mallory@example.com")
    child.expect(r"Delete 1 user\(s\): mallory@example.com\? \[y/N\]")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "nothing was deleted" in (child.before or "")
    assert db.count() == 2
    # "y": deleted.
    child = spawn("delete-user", "mallory@example.com", "eve@example.com", "-o", "json")
    child.expect(r"Delete 2 user\(s\): mallory@example.com, eve@example.com\? \[y/N\]")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert db.count() == 0
