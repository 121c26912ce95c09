"""show-user and update-user with several users: each shown (a JSON list, where one user stays
one object), all changed in one transaction or none. Run through the installed entry point."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl


def test_show_user_shows_each_user_named(cli: Cli, db: Database) -> None:
    alice, bob = db.seed("alice@example.com", "Bob@example.com")
    # In the order named, by email in any case or by id.
    refs = ["BOB@example.com", str(alice["id"])]
    listed = json.loads(cli.ok("show-user", *refs, "-o", "json").stdout)
    assert [user["email"] for user in listed] == ["Bob@example.com", "alice@example.com"]
    assert listed[1] == {
        "id": str(alice["id"]),
        "email": "alice@example.com",
        "is_active": True,
        "is_superuser": False,
        "is_verified": False,
    }
    # One user is one object, as ever; two names are a list, also of one user.
    one = json.loads(cli.ok("show-user", "alice@example.com", "-o", "json").stdout)
    assert one == listed[1]
    same = json.loads(
        cli.ok("show-user", "alice@example.com", str(alice["id"]), "-o", "json").stdout
    )
    assert same == [one]
    lines = cli.ok("show-user", *refs, "-o", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == listed
    rows = list(csv.DictReader(io.StringIO(cli.ok("show-user", *refs, "-o", "csv").stdout)))
    assert [row["id"] for row in rows] == [str(bob["id"]), str(alice["id"])]
    # Plain text: a field/value table per user, a blank line between.
    blocks = cli.ok("show-user", *refs).stdout.split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].splitlines()[1].split() == ["email", "Bob@example.com"]
    assert blocks[1].splitlines()[1].split() == ["email", "alice@example.com"]


def test_show_user_names_every_user_not_found(cli: Cli, db: Database) -> None:
    db.seed("alice@example.com")
    error = cli.fails(3, "show-user", "alice@example.com", "nobody@example.com")
    assert error == "Error: no user 'nobody@example.com'"
    error = cli.fails(3, "show-user", "ghost@example.com", "alice@example.com", "x@y.org")
    assert error == "Error: no users 'ghost@example.com', 'x@y.org'"


def test_update_user_changes_every_user_in_one_transaction(
    usersctl: Usersctl, db: Database
) -> None:
    db.seed("admin@example.com", is_superuser=True)
    db.seed("alice@example.com", "bob@example.com", "carol@example.com")
    result = usersctl.ok(
        "update-user", "alice@example.com", "BOB@example.com", "--verified", "-o", "json"
    )
    updated = json.loads(result.stdout)
    assert [(user["email"], user["is_verified"], user["status"]) for user in updated] == [
        ("alice@example.com", True, "updated"),
        ("bob@example.com", True, "updated"),
    ]
    assert result.stderr == (
        "alice@example.com: is_verified: false -> true\nbob@example.com: is_verified: false -> true\n"
    )
    assert db.emails("is_verified") == ["alice@example.com", "bob@example.com"]
    # Users already so are unchanged; the others change.
    again = usersctl.ok(
        "update-user", "alice@example.com", "carol@example.com", "--verified", "-o", "csv"
    )
    assert [row["status"] for row in csv.DictReader(io.StringIO(again.stdout))] == [
        "unchanged",
        "updated",
    ]
    # A dry run changes none.
    usersctl.ok("update-user", "alice@example.com", "bob@example.com", "--inactive", "--dry-run")
    assert db.emails("NOT is_active") == []


def test_update_user_changes_none_when_one_cannot_be_changed(cli: Cli, db: Database) -> None:
    db.seed("root@example.com", "ops@example.com", is_superuser=True)
    db.seed("alice@example.com")
    # A user not found: exit 3 naming it, nobody changed.
    error = cli.fails(3, "update-user", "alice@example.com", "nobody@example.com", "--superuser")
    assert error == "Error: no user 'nobody@example.com'"
    assert db.emails("is_superuser") == ["ops@example.com", "root@example.com"]
    # The second change is refused (no superuser would be left): the first is rolled back.
    error = cli.fails(4, "update-user", "ops@example.com", "root@example.com", "--no-superuser")
    assert "refusing to leave no active superuser" in error
    assert db.emails("is_superuser") == ["ops@example.com", "root@example.com"]
    # One new address cannot go to several users.
    error = cli.fails(
        2, "update-user", "alice@example.com", "ops@example.com", "--email", "x@example.com"
    )
    assert error == "Error: --email gives one user a new address: name one user"
    assert db.emails() == ["alice@example.com", "ops@example.com", "root@example.com"]
