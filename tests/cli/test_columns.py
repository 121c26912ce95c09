"""--columns on list-users, show-user and export-users: the fields chosen, in the order given,
in every output format; an unknown one is exit 2 naming it and the fields there are. Run
through the installed entry point."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl

AVAILABLE = "id, email, is_active, is_superuser, is_verified"


def by_format(
    cli: Cli | Usersctl, *args: str
) -> dict[str, list[list[str]] | list[dict[str, object]]]:
    """What a command prints in each format: JSON and JSON lines as objects (their keys in
    order), CSV and the plain table as rows of cells, the header first."""
    out = {fmt: cli.ok(*args, "-o", fmt).stdout for fmt in ("json", "jsonl", "csv", "table")}
    document = json.loads(out["json"])
    return {
        "json": document if isinstance(document, list) else [document],
        "jsonl": [json.loads(line) for line in out["jsonl"].splitlines()],
        "csv": list(csv.reader(io.StringIO(out["csv"]))),
        "table": [line.split() for line in out["table"].splitlines()],
    }


def test_list_users_prints_the_chosen_fields_in_order(cli: Cli, db: Database) -> None:
    alice, bob = db.seed("alice@example.com", "bob@example.com", is_verified=True)
    printed = by_format(cli, "list-users", "--columns", "is_verified,email, id")
    expected = [
        {"is_verified": True, "email": "alice@example.com", "id": str(alice["id"])},
        {"is_verified": True, "email": "bob@example.com", "id": str(bob["id"])},
    ]
    for fmt in ("json", "jsonl"):
        assert printed[fmt] == expected, fmt
        assert [list(row) for row in printed[fmt]] == [["is_verified", "email", "id"]] * 2, fmt
    cells = [["is_verified", "email", "id"]] + [
        ["true", row["email"], row["id"]] for row in expected
    ]
    assert printed["csv"] == cells
    assert printed["table"] == cells
    one = cli.ok("list-users", "--columns", "email", "-o", "csv").stdout
    assert one == "email\nalice@example.com\nbob@example.com\n"


def test_show_user_prints_the_chosen_fields_in_order(cli: Cli, db: Database) -> None:
    (alice,) = db.seed("alice@example.com")
    printed = by_format(cli, "show-user", "alice@example.com", "--columns", "email,id")
    assert printed["json"] == [{"email": "alice@example.com", "id": str(alice["id"])}]
    assert list(printed["json"][0]) == ["email", "id"]  # type: ignore[arg-type]
    assert printed["jsonl"] == printed["json"]
    assert printed["csv"] == [["email", "id"], ["alice@example.com", str(alice["id"])]]
    assert printed["table"] == [["email", "alice@example.com"], ["id", str(alice["id"])]]


def test_export_users_writes_the_chosen_fields_in_order(
    cli: Cli, usersctl: Usersctl, db: Database
) -> None:
    """In-process, but for the first export: this file's run of the installed entry point."""
    (alice,) = db.seed("alice@example.com", is_superuser=True)
    db.execute('ALTER TABLE "user" ADD COLUMN created_at TIMESTAMP')
    db.execute("UPDATE \"user\" SET created_at = '2024-01-02 03:04:05'")

    def export(fmt: str, columns: str, *args: str, through: Cli | Usersctl = cli) -> str:
        return through.ok("export-users", "-", "-o", fmt, "--columns", columns, *args).stdout

    # Rendered by the database (text, booleans, ids) and by Python (a time).
    expected = f'{{"is_superuser":true,"id":"{alice["id"]}"}}\n'
    assert export("jsonl", "is_superuser,id", through=usersctl) == expected
    assert export("csv", "email,is_superuser") == "email,is_superuser\nalice@example.com,true\n"
    assert json.loads(export("json", "created_at,email")) == [
        {"created_at": "2024-01-02T03:04:05", "email": "alice@example.com"}
    ]
    assert export("csv", "created_at,id") == f"created_at,id\n2024-01-02T03:04:05,{alice['id']}\n"
    hashed = json.loads(export("jsonl", "email,hashed_password", "--include-hashes"))
    assert list(hashed) == ["email", "hashed_password"]
    assert hashed["hashed_password"] == db.stored_hash("alice@example.com")


def test_unknown_or_repeated_columns_are_refused(cli: Cli, db: Database) -> None:
    db.seed("alice@example.com")
    for command in (["list-users"], ["show-user", "alice@example.com"], ["export-users", "-"]):
        error = cli.fails(2, *command, "--columns", "email,nickname")
        assert error == f"Error: --columns: unknown column 'nickname'; the columns are {AVAILABLE}"
        error = cli.fails(2, *command, "--columns", "email,id,email")
        assert error == "Error: --columns: 'email' is named twice"
        error = cli.fails(2, *command, "--columns", "email,")
        assert error.startswith("Error: --columns: an empty column name; the columns are ")
    # The hash is a field of exports with --include-hashes alone, never of list-users.
    error = cli.fails(2, "export-users", "-", "--columns", "email,hashed_password")
    assert error == "Error: --columns: hashed_password is exported only with --include-hashes"
    error = cli.fails(2, "list-users", "--columns", "hashed_password")
    assert "unknown column 'hashed_password'" in error
