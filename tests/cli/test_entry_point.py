"""Every command through the installed ``usersctl`` entry point, as a script in CI would run it."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from harness import is_mysql, is_sqlite
from usersctl.passwords import verify_password

if TYPE_CHECKING:
    from harness import Database, Usersctl


def test_a_script_administers_users_through_the_entry_point(
    usersctl: Usersctl, database_at: type[Database]
) -> None:
    db = database_at(usersctl.url or "")
    # init-db
    assert "Created table user" in usersctl.ok("init-db").stderr

    # create-user: a generated password for the admin, stdin for ops
    admin = json.loads(
        usersctl.ok(
            "create-user", "admin@example.com", "--superuser", "--generate-password", "-o", "json"
        ).stdout
    )
    assert verify_password(admin["password"], db.stored_hash("admin@example.com"))
    ops = usersctl.ok(
        "create-user", "ops@example.com", "--password-stdin", "-o", "jsonl", input="ops pass\n"
    )
    assert json.loads(ops.stdout)["status"] == "created"
    assert "ops pass" not in ops.stdout + ops.stderr

    # list-users
    listed = usersctl.ok("list-users", "-o", "csv")
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert [row["email"] for row in rows] == ["admin@example.com", "ops@example.com"]
    assert "2 shown of 2 matching users." in listed.stderr

    # show-user, update-user
    assert (
        json.loads(usersctl.ok("show-user", "OPS@example.com", "-o", "json").stdout)["is_verified"]
        is False
    )
    updated = usersctl.ok("update-user", "ops@example.com", "--verified", "-o", "json")
    assert json.loads(updated.stdout)["is_verified"] is True
    assert "is_verified: false -> true" in updated.stderr

    # deactivate-user, activate-user
    table = usersctl.ok("deactivate-user", "ops@example.com")
    assert table.stdout.splitlines()[0].split() == ["id", "email", "status"]
    assert "deactivated" in table.stdout
    activated = json.loads(usersctl.ok("activate-user", "ops@example.com", "-o", "json").stdout)
    assert [row["status"] for row in activated] == ["activated"]

    # set-password from a file
    password_file = usersctl.cwd / "new-password.txt"
    password_file.write_text("from a file\n")
    password_file.chmod(0o600)
    usersctl.ok("set-password", "ops@example.com", "--password-file", str(password_file))
    assert verify_password("from a file", db.stored_hash("ops@example.com"))

    # delete-user: refused without a terminal and without --yes; then deleted
    usersctl.fails(2, "delete-user", "ops@example.com")
    deleted = json.loads(
        usersctl.ok("delete-user", "ops@example.com", "--yes", "-o", "json").stdout
    )
    assert [row["status"] for row in deleted] == ["deleted"]
    assert "ops@example.com" in usersctl.fails(3, "show-user", "ops@example.com")


def test_batch_options_through_the_entry_point(usersctl: Usersctl, db: Database) -> None:
    """Issue 12's options once each through the installed entry point (the other tests of each
    run them in-process): exact filters, --columns, several users, stdin with --missing-ok,
    -q, updates without a password, a root option after the command."""
    # PostgreSQL: a timestamptz column; SQLite and MariaDB: a naive one (UTC)
    aware = not is_sqlite(db.url) and not is_mysql(db.url)
    naive = "DATETIME(6)" if is_mysql(db.url) else "TIMESTAMP"
    db.execute(
        'ALTER TABLE "user" ADD COLUMN created_at '
        + ("TIMESTAMP WITH TIME ZONE" if aware else naive)
    )
    ann, bob, _evil = db.seed("ann@old-corp.net", "Bob@Old-Corp.NET", "x@old-corp.net.evil.com")
    db.execute(
        "UPDATE \"user\" SET created_at = '2024-01-15 00:00:00' WHERE email = 'ann@old-corp.net'",
        "UPDATE \"user\" SET created_at = '2024-03-01 00:00:00' WHERE email <> 'ann@old-corp.net'",
    )

    def emails(*args: str) -> list[str]:
        return [row["email"] for row in json.loads(usersctl.ok(*args, "-o", "json").stdout)]

    # Exact filters, on list-users and export-users
    assert emails("list-users", "--email-domain", "OLD-CORP.net") == [
        "ann@old-corp.net",
        "Bob@Old-Corp.NET",
    ]
    assert emails("export-users", "-", "--created-before", "2024-02-01") == ["ann@old-corp.net"]
    # --columns picks and orders the fields
    shown = json.loads(
        usersctl.ok("show-user", str(bob["id"]), "--columns", "email,id", "-o", "json").stdout
    )
    assert list(shown) == ["email", "id"]
    # Several users in one update (one transaction); show-user shows each
    usersctl.ok("update-user", "ann@old-corp.net", str(bob["id"]), "--verified")
    assert sorted((r["email"], r["is_verified"]) for r in db.rows()) == [
        ("Bob@Old-Corp.NET", True),
        ("ann@old-corp.net", True),
        ("x@old-corp.net.evil.com", False),
    ]
    both = json.loads(
        usersctl.ok("show-user", "ann@old-corp.net", "bob@old-corp.net", "-o", "json").stdout
    )
    assert [user["email"] for user in both] == ["ann@old-corp.net", "Bob@Old-Corp.NET"]
    # Users from stdin, a missing one skipped with --missing-ok, and -q says nothing but errors
    quiet = usersctl.ok(
        "deactivate-user", "-", "--missing-ok", "-q", input=f"{ann['id']}\nnobody@example.com\n"
    )
    assert quiet.stderr == ""
    assert [r["email"] for r in db.query('SELECT email FROM "user" WHERE NOT is_active')] == [
        "ann@old-corp.net"
    ]
    # An update row without a password keeps the user's hash
    before = db.stored_hash("Bob@Old-Corp.NET")
    row = json.dumps({"email": "Bob@Old-Corp.NET", "is_superuser": True}) + "\n"
    usersctl.ok("import-users", "-", "--format", "jsonl", "--on-conflict", "update", input=row)
    assert db.stored_hash("Bob@Old-Corp.NET") == before
    # A root option after the command name
    after = usersctl("list-users", "-d", usersctl.url or "", "--superuser", "-o", "json", url=False)
    assert after.returncode == 0, after.stderr
    assert [user["id"] for user in json.loads(after.stdout)] == [str(bob["id"])]
