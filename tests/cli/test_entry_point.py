"""Every command through the installed ``usersctl`` entry point, as a script in CI would run it."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

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
