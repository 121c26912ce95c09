"""A user table that inherits from another, found and read without ``--model``.

The app's ``Member`` is a joined-table subclass of its ``Account``: the ``account`` table holds
every account's id, email and creation time, the ``member`` table the rest of a member (the
password hash, the flags, a nickname), its ``id`` a foreign key to ``account.id``. Other
accounts (staff, say) have no ``member`` row. The tables are made with plain SQL, as the app's
migrations made them; usersctl reads the database (no ``--model``): it shows the parent's
columns, and refuses to write (only the app's model writes both rows as the app does; with it,
tests/cli/test_model_hierarchy.py). Effects are checked with plain SQL, on every database.
"""

from __future__ import annotations

import json
from typing import Any

from harness import Cli, Usersctl, execute, is_mysql, query, seed_hash

BOOLEANS = (
    "is_active BOOLEAN NOT NULL DEFAULT true, is_superuser BOOLEAN NOT NULL DEFAULT false, "
    "is_verified BOOLEAN NOT NULL DEFAULT false"
)


def app_tables(url: str) -> None:
    """The app's tables, a member, and an account that is not a member (ids 1 and 2)."""
    serial = (
        "INTEGER PRIMARY KEY AUTOINCREMENT" if url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    )
    # MySQL/MariaDB: SERIAL is BIGINT UNSIGNED, which member's INTEGER id could not refer to;
    # and no expression indexes: the email index is the unique one on email, in its _ci collation.
    email_index = "CREATE UNIQUE INDEX ix_account_email_lower ON account (lower(email))"
    if is_mysql(url):
        serial = "INTEGER PRIMARY KEY AUTO_INCREMENT"
        email_index = "CREATE UNIQUE INDEX ix_account_email_lower ON account (email)"
    execute(
        url,
        f"CREATE TABLE account (id {serial}, email VARCHAR(320) NOT NULL, "
        "created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        email_index,
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


def test_reads_show_the_parent_tables_columns(
    usersctl: Usersctl, empty_cli: Cli, database_url: str
) -> None:
    """The first read through the installed entry point, the others in-process."""
    app_tables(database_url)

    listed = json.loads(usersctl.ok("list-users", "-o", "json").stdout)
    assert [(user["id"], user["email"], user["nickname"]) for user in listed] == [
        (1, "ann@example.com", "Ann")
    ]  # the staff account is no member
    assert set(listed[0]) == {
        "id", "email", "is_active", "is_superuser", "is_verified", "nickname", "created_at",
    }  # fmt: skip
    assert listed[0]["created_at"]
    shown = json.loads(empty_cli.ok("show-user", "ANN@example.com", "-o", "json").stdout)
    assert (shown["email"], shown["nickname"]) == ("ann@example.com", "Ann")
    assert shown["created_at"] == listed[0]["created_at"]
    assert json.loads(empty_cli.ok("list-users", "--search", "ann", "-o", "json").stdout)
    assert json.loads(empty_cli.ok("list-users", "--superuser", "-o", "json").stdout) == []
    exported = json.loads(empty_cli.ok("export-users", "-", "-o", "jsonl").stdout)
    assert (exported["email"], exported["created_at"]) == ("ann@example.com", shown["created_at"])

    report = json.loads(empty_cli.ok("doctor", "-o", "json").stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["user table"]["status"] == "ok", checks["user table"]
    assert "'member' (with 'account', which it inherits from)" in checks["user table"]["detail"]
    assert "table 'member' (inheriting from 'account'), integer ids" in checks["model"]["detail"]
    assert "extra columns nickname, created_at" in checks["model"]["detail"]
    assert checks["email index"]["status"] == "ok"
    assert "'account'" in checks["email index"]["detail"]


def test_writes_without_the_model_are_refused_naming_the_parent(
    empty_cli: Cli, database_url: str
) -> None:
    app_tables(database_url)
    before = (accounts(database_url), members(database_url))

    # A user is a row in each table, and what the app's mapper fills there only its model
    # knows: every write is exit 2, naming the parent table and --model, and writes nothing
    row = json.dumps({"email": "cy@example.com", "hashed_password": seed_hash()}) + "\n"
    for command in (
        ("create-user", "bo@example.com", "--generate-password"),
        ("update-user", "ann@example.com", "--superuser"),
        ("deactivate-user", "ann@example.com"),
        ("set-password", "ann@example.com", "--generate-password"),
        ("delete-user", "ann@example.com", "--yes"),
        ("import-users", "-", "--format", "jsonl"),
    ):
        message = empty_cli.fails(2, *command, input=row)
        assert "the 'member' table takes its ids from the 'account' table" in message, command
        assert "--model module.path:ClassName" in message
    assert (accounts(database_url), members(database_url)) == before


def test_which_table_is_the_user_table(empty_cli: Cli, database_url: str) -> None:
    app_tables(database_url)
    # A subclass of the member table (its id references member.id) is no second user table.
    execute(
        database_url,
        "CREATE TABLE moderator (id INTEGER PRIMARY KEY REFERENCES member (id), area VARCHAR(20))",
    )
    listed = json.loads(empty_cli.ok("list-users", "-o", "json").stdout)
    assert [user["email"] for user in listed] == ["ann@example.com"]

    # Two tables that make users of accounts: --table says which.
    execute(
        database_url,
        "CREATE TABLE staff (id INTEGER PRIMARY KEY REFERENCES account (id), "
        f"hashed_password VARCHAR(1024) NOT NULL, {BOOLEANS})",
    )
    message = empty_cli.fails(2, "list-users")
    assert "several tables have FastAPI Users' user columns: member, staff" in message
    assert json.loads(empty_cli.ok("--table", "staff", "list-users", "-o", "json").stdout) == []
    # The parent table alone is not a user table.
    message = empty_cli.fails(5, "--table", "account", "list-users")
    assert "lacks the column(s) hashed_password, is_active, is_superuser, is_verified" in message


def indexes(url: str, table: str) -> set[str]:
    if url.startswith("sqlite"):
        sql = "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :table"
    elif is_mysql(url):
        sql = (
            "SELECT DISTINCT index_name AS name FROM information_schema.statistics "
            "WHERE table_schema = DATABASE() AND table_name = :table"
        )
    else:
        sql = "SELECT indexname AS name FROM pg_indexes WHERE tablename = :table"
    return {row["name"] for row in query(url, sql, table=table)}


def drop_email_index(url: str) -> None:
    on = " ON account" if is_mysql(url) else ""  # MySQL's DROP INDEX names the table
    execute(url, f"DROP INDEX ix_account_email_lower{on}")


def test_the_email_index_belongs_to_the_parent_table(empty_cli: Cli, database_url: str) -> None:
    app_tables(database_url)
    drop_email_index(database_url)
    failed = empty_cli("doctor", "-o", "json")
    assert failed.returncode == 6, failed.stderr
    report = json.loads(failed.stdout)
    index = next(check for check in report["checks"] if check["check"] == "email index")
    assert index["status"] == "fail" and "--fix creates it" in index["detail"], index

    # init-db on the user table: FastAPI Users' other tables reference it, the index goes on
    # the table that holds the email
    empty_cli.ok("--table", "member", "init-db", "--oauth", "--access-tokens")
    assert "ix_account_email_lower" in indexes(database_url, "account")
    assert not any("email" in name for name in indexes(database_url, "member"))
    report = json.loads(empty_cli.ok("doctor", "-o", "json").stdout)
    assert report["passed"] is True, report
    checks = {check["check"]: check["detail"] for check in report["checks"]}
    assert "'accesstoken' has FastAPI Users' columns" in checks["accesstoken table"]

    # doctor --fix puts it back there too
    drop_email_index(database_url)
    empty_cli.ok("doctor", "--fix")
    assert "ix_account_email_lower" in indexes(database_url, "account")
