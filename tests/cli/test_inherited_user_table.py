"""A user table that inherits from another, found and written without ``--model``.

The app's ``Member`` is a joined-table subclass of its ``Account``: the ``account`` table holds
every account's id, email and creation time, the ``member`` table the rest of a member (the
password hash, the flags, a nickname), its ``id`` a foreign key to ``account.id``. Other
accounts (staff, say) have no ``member`` row. The tables are made with plain SQL, as the app's
migrations made them; usersctl reads the database (no ``--model``), and the effects are checked
with plain SQL, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import Usersctl, execute, query, seed_hash

BOOLEANS = (
    "is_active BOOLEAN NOT NULL DEFAULT true, is_superuser BOOLEAN NOT NULL DEFAULT false, "
    "is_verified BOOLEAN NOT NULL DEFAULT false"
)


def app_tables(url: str) -> None:
    """The app's tables, a member, and an account that is not a member (ids 1 and 2)."""
    serial = (
        "INTEGER PRIMARY KEY AUTOINCREMENT" if url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    )
    execute(
        url,
        f"CREATE TABLE account (id {serial}, email VARCHAR(320) NOT NULL, "
        "created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        "CREATE UNIQUE INDEX ix_account_email_lower ON account (lower(email))",
        "CREATE TABLE member (id INTEGER PRIMARY KEY REFERENCES account (id), "
        f"hashed_password VARCHAR(1024) NOT NULL, {BOOLEANS}, nickname VARCHAR(30))",
        "INSERT INTO account (email) VALUES ('ann@example.com')",
        f"INSERT INTO member (id, hashed_password, nickname) VALUES (1, '{seed_hash()}', 'Ann')",
        "INSERT INTO account (email) VALUES ('staff@example.com')",
    )


def accounts(url: str) -> dict[str, int]:
    return {row["email"]: row["id"] for row in query(url, "SELECT id, email FROM account")}


def members(url: str) -> dict[int, dict[str, Any]]:
    rows = query(url, "SELECT id, nickname, is_superuser, is_active FROM member ORDER BY id")
    return {row["id"]: row for row in rows}


def counter(url: str) -> Any:
    """Where the account id's counter stands (PostgreSQL's sequence, SQLite's sqlite_sequence)."""
    if url.startswith("sqlite"):
        return query(url, "SELECT seq FROM sqlite_sequence WHERE name = 'account'")
    return query(url, "SELECT last_value, is_called FROM account_id_seq")


def test_reads_show_the_parent_tables_columns(usersctl: Usersctl, database_url: str) -> None:
    app_tables(database_url)

    listed = json.loads(usersctl.ok("list-users", "-o", "json").stdout)
    assert [(user["id"], user["email"], user["nickname"]) for user in listed] == [
        (1, "ann@example.com", "Ann")
    ]  # the staff account is no member
    assert set(listed[0]) == {
        "id", "email", "is_active", "is_superuser", "is_verified", "nickname", "created_at",
    }  # fmt: skip
    assert listed[0]["created_at"]
    shown = json.loads(usersctl.ok("show-user", "ANN@example.com", "-o", "json").stdout)
    assert (shown["email"], shown["nickname"]) == ("ann@example.com", "Ann")
    assert shown["created_at"] == listed[0]["created_at"]
    assert json.loads(usersctl.ok("list-users", "--search", "ann", "-o", "json").stdout)
    assert json.loads(usersctl.ok("list-users", "--superuser", "-o", "json").stdout) == []
    exported = json.loads(usersctl.ok("export-users", "-", "-o", "jsonl").stdout)
    assert (exported["email"], exported["created_at"]) == ("ann@example.com", shown["created_at"])

    report = json.loads(usersctl.ok("doctor", "-o", "json").stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["user table"]["status"] == "ok", checks["user table"]
    assert "'member' (with 'account', which it inherits from)" in checks["user table"]["detail"]
    assert "table 'member' (inheriting from 'account'), integer ids" in checks["model"]["detail"]
    assert "extra columns nickname, created_at" in checks["model"]["detail"]
    assert checks["email index"]["status"] == "ok"
    assert "'account'" in checks["email index"]["detail"]


def test_writes_go_to_both_tables_in_one_transaction(
    usersctl: Usersctl, database_url: str, tmp_path: Path
) -> None:
    app_tables(database_url)

    # create-user: the account row first, its id from the account table, then the member row
    created = json.loads(
        usersctl.ok(
            "create-user", "bo@example.com", "--generate-password", "--set", "nickname=Bo",
            "-o", "json",
        ).stdout
    )  # fmt: skip
    assert created["id"] == 3
    assert accounts(database_url)["bo@example.com"] == 3
    assert members(database_url)[3]["nickname"] == "Bo"
    assert created["created_at"]  # the account table's default, shown

    # The staff account's address is taken, though it is no member: the unique index says so
    message = usersctl.fails(4, "create-user", "STAFF@example.com", "--generate-password")
    assert "already exists" in message
    assert len(accounts(database_url)) == 3 and len(members(database_url)) == 2

    # update-user: the email is the account's, the rest the member's
    usersctl.ok(
        "update-user", "bo@example.com", "--email", "bob@example.com", "--superuser",
        "--set", "nickname=Bob",
    )  # fmt: skip
    assert accounts(database_url)["bob@example.com"] == 3
    assert members(database_url)[3]["nickname"] == "Bob"
    assert members(database_url)[3]["is_superuser"] in (True, 1)
    usersctl.ok("deactivate-user", "ann@example.com")
    assert members(database_url)[1]["is_active"] in (False, 0)

    # delete-user: both rows go; the other accounts stay
    usersctl.ok("delete-user", "ann@example.com", "--yes")
    assert accounts(database_url) == {"staff@example.com": 2, "bob@example.com": 3}
    assert list(members(database_url)) == [3]

    # import-users: a row with its own id and one without; a dry run leaves the counter alone
    hashed = seed_hash()
    rows = [
        {"email": "cy@example.com", "hashed_password": hashed, "nickname": "Cy"},
        {"email": "di@example.com", "hashed_password": hashed, "id": 10},
    ]
    (tmp_path / "new.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    before = counter(database_url)
    for args in ((), ("--on-conflict", "skip")):
        usersctl.ok("import-users", "new.jsonl", "--dry-run", *args)
        assert counter(database_url) == before
    assert len(accounts(database_url)) == 2
    usersctl.ok("import-users", "new.jsonl")
    # (PostgreSQL's sequence gave 4 to the create-user refused above: Cy may have 5)
    cy = accounts(database_url)["cy@example.com"]
    assert accounts(database_url) == {
        "staff@example.com": 2, "bob@example.com": 3, "cy@example.com": cy, "di@example.com": 10,
    }  # fmt: skip
    assert cy < 10
    assert {key: row["nickname"] for key, row in members(database_url).items()} == {
        3: "Bob", cy: "Cy", 10: None,
    }  # fmt: skip
    # After an imported id, the account's counter hands out the next one
    assert (
        json.loads(
            usersctl.ok("create-user", "ed@example.com", "--generate-password", "-o", "json").stdout
        )["id"]
        == 11
    )

    # An import that updates: the account's email case and the member's nickname
    update = json.dumps({"email": "CY@example.com", "hashed_password": hashed, "nickname": "C"})
    usersctl.ok("import-users", "-", "--format", "jsonl", "--on-conflict", "update", input=update)
    assert members(database_url)[cy]["nickname"] == "C"

    # An import that fails half-way writes neither table
    bad = [
        {"email": "fay@example.com", "hashed_password": hashed},
        {"email": "gus@example.com", "hashed_password": hashed, "id": 2},  # the staff account's id
    ]
    before_accounts, before_members = accounts(database_url), members(database_url)
    usersctl.fails(
        4, "import-users", "-", "--format", "jsonl",
        input="".join(json.dumps(row) + "\n" for row in bad),
    )  # fmt: skip
    assert accounts(database_url) == before_accounts
    assert members(database_url) == before_members

    # The export comes back exactly into empty tables
    usersctl.ok("export-users", "all.jsonl", "--include-hashes")
    execute(database_url, "DELETE FROM member", "DELETE FROM account WHERE id <> 2")
    usersctl.ok("import-users", "all.jsonl")
    usersctl.ok("export-users", "again.jsonl", "--include-hashes")
    assert (tmp_path / "again.jsonl").read_text() == (tmp_path / "all.jsonl").read_text()


def test_which_table_is_the_user_table(usersctl: Usersctl, database_url: str) -> None:
    app_tables(database_url)
    # A subclass of the member table (its id references member.id) is no second user table.
    execute(
        database_url,
        "CREATE TABLE moderator (id INTEGER PRIMARY KEY REFERENCES member (id), area VARCHAR(20))",
    )
    listed = json.loads(usersctl.ok("list-users", "-o", "json").stdout)
    assert [user["email"] for user in listed] == ["ann@example.com"]

    # Two tables that make users of accounts: --table says which.
    execute(
        database_url,
        "CREATE TABLE staff (id INTEGER PRIMARY KEY REFERENCES account (id), "
        f"hashed_password VARCHAR(1024) NOT NULL, {BOOLEANS})",
    )
    message = usersctl.fails(2, "list-users")
    assert "several tables have FastAPI Users' user columns: member, staff" in message
    assert json.loads(usersctl.ok("--table", "staff", "list-users", "-o", "json").stdout) == []
    # The parent table alone is not a user table.
    message = usersctl.fails(5, "--table", "account", "list-users")
    assert "lacks the column(s) hashed_password, is_active, is_superuser, is_verified" in message


def indexes(url: str, table: str) -> set[str]:
    if url.startswith("sqlite"):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :table"
    else:
        sql = "SELECT indexname AS name FROM pg_indexes WHERE tablename = :table"
    return {row["name"] for row in query(url, sql, table=table)}


def test_the_email_index_belongs_to_the_parent_table(usersctl: Usersctl, database_url: str) -> None:
    app_tables(database_url)
    execute(database_url, "DROP INDEX ix_account_email_lower")
    failed = usersctl("doctor", "-o", "json")
    assert failed.returncode == 6, failed.stderr
    report = json.loads(failed.stdout)
    index = next(check for check in report["checks"] if check["check"] == "email index")
    assert index["status"] == "fail" and "--fix creates it" in index["detail"], index

    # init-db on the user table: FastAPI Users' other tables reference it, the index goes on
    # the table that holds the email
    usersctl.ok("--table", "member", "init-db", "--oauth", "--access-tokens")
    assert "ix_account_email_lower" in indexes(database_url, "account")
    assert not any("email" in name for name in indexes(database_url, "member"))
    report = json.loads(usersctl.ok("doctor", "-o", "json").stdout)
    assert report["passed"] is True, report
    checks = {check["check"]: check["detail"] for check in report["checks"]}
    assert "'accesstoken' has FastAPI Users' columns" in checks["accesstoken table"]

    # doctor --fix puts it back there too
    execute(database_url, "DROP INDEX ix_account_email_lower")
    usersctl.ok("doctor", "--fix")
    assert "ix_account_email_lower" in indexes(database_url, "account")
