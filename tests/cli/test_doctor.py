"""usersctl doctor: checks as a table or JSON, exit 6 when one fails, --fix for what is safe."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from harness import Cli, Database, execute, is_mysql

SQLITE_USER_TABLE = """
CREATE TABLE "user" (
    id CHAR(36) PRIMARY KEY, email VARCHAR(320) NOT NULL, hashed_password VARCHAR(1024) NOT NULL,
    is_active BOOLEAN NOT NULL, is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL
)"""
POSTGRES_USER_TABLE = SQLITE_USER_TABLE.replace("CHAR(36)", "UUID")
#: What FastAPI Users' own create_all makes: a unique index on email, none on lower(email).
CASE_SENSITIVE_INDEX = 'CREATE UNIQUE INDEX ix_user_email ON "user" (email)'
#: On MySQL/MariaDB that index, in the column's _ci collation, is usersctl's email index itself;
#: a table that lacks it (made by hand, or an app's that dropped it) is the one that lets case
#: duplicates in, so there the app's table has only a plain index on email.
MYSQL_PLAIN_INDEX = 'CREATE INDEX ix_user_email ON "user" (email)'


def user_insert(email: str, hashed: str = "$2b$12$" + "a" * 53) -> str:
    return (
        'INSERT INTO "user" (id, email, hashed_password, is_active, is_superuser, is_verified) '
        f"VALUES ('{uuid.uuid4()}', '{email}', '{hashed}', true, false, false)"
    )


def doctor(cli: Cli, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Exit code, the checks by name, and stderr, of ``doctor -o json``."""
    result = cli("doctor", *args, "-o", "json")
    assert "Traceback" not in result.output
    report = json.loads(result.stdout)
    assert report["passed"] is (result.exit_code == 0)
    return result.exit_code, {check["check"]: check for check in report["checks"]}, result.stderr


@pytest.fixture
def app_table(empty_cli: Cli) -> Cli:
    """A user table as FastAPI Users' create_all leaves it: no lower(email) index."""
    if empty_cli.sqlite_path is not None:
        execute(empty_cli.url, SQLITE_USER_TABLE, CASE_SENSITIVE_INDEX)
    elif is_mysql(empty_cli.url):
        execute(empty_cli.url, SQLITE_USER_TABLE, MYSQL_PLAIN_INDEX)
    else:
        execute(empty_cli.url, POSTGRES_USER_TABLE, CASE_SENSITIVE_INDEX)
    return empty_cli


def test_a_database_made_by_init_db_passes_every_check(cli: Cli, db: Database) -> None:
    db.seed("alice@example.com", "bob@example.com")
    result = cli.ok("doctor")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["check", "status", "detail"]
    assert [line.split()[0] for line in lines[1:]] == [
        "model", "user", "oauth_account", "accesstoken", "email", "case", "password", "orphan",
    ]  # fmt: skip
    assert all(" ok " in line for line in lines[1:]), result.stdout
    assert "2 argon2, 0 argon2-outdated, 0 bcrypt, 0 unknown, 0 disabled" in result.stdout
    assert result.stderr.startswith("All checks passed on ")
    code, checks, _ = doctor(cli)
    assert code == 0
    assert checks["model"]["detail"] == "read from the database; table 'user', UUID ids"
    assert checks["oauth_account table"]["detail"] == "no 'oauth_account' table (not used)"


def test_a_missing_user_table_fails_the_check(empty_cli: Cli) -> None:
    if empty_cli.sqlite_path is not None:
        # SQLite: no file at all is a database problem, as for every command
        assert "does not exist" in empty_cli.fails(5, "doctor")
        empty_cli.sqlite_path.touch()
    code, checks, stderr = doctor(empty_cli)
    assert code == 6
    assert checks["user table"]["status"] == "fail"
    assert "usersctl init-db" in checks["user table"]["detail"]
    assert checks["email index"]["status"] == "skip"
    assert stderr.startswith("Error: 1 check(s) failed on ")
    assert stderr.rstrip().endswith(": user table")


def test_a_user_table_without_fastapi_users_columns_fails_the_check(empty_cli: Cli) -> None:
    if empty_cli.sqlite_path is not None:
        empty_cli.sqlite_path.touch()
    execute(empty_cli.url, 'CREATE TABLE "user" (id INTEGER PRIMARY KEY, email VARCHAR(320))')
    code, checks, _ = doctor(empty_cli)
    assert code == 6
    assert checks["user table"]["status"] == "fail"
    assert "hashed_password, is_active, is_superuser, is_verified" in checks["user table"]["detail"]
    assert checks["password hashes"]["status"] == "skip"


def test_case_duplicates_are_listed_and_block_the_index_until_resolved(app_table: Cli) -> None:
    execute(
        app_table.url,
        user_insert("Bob@example.com"),
        user_insert("bob@example.com"),
        user_insert("BOB@EXAMPLE.COM"),
        user_insert("carol@example.com"),
    )
    code, checks, stderr = doctor(app_table)
    assert code == 6
    duplicates = checks["case duplicates"]
    assert duplicates["status"] == "fail"
    assert "1 address(es) used by 3 users" in duplicates["detail"]
    assert sorted(duplicates["items"][0].split(" = ")) == sorted(
        ["BOB@EXAMPLE.COM", "Bob@example.com", "bob@example.com"]
    )
    assert checks["email index"]["status"] == "fail"
    assert "must be resolved" in checks["email index"]["detail"]
    assert "case duplicates, email index" in stderr or "email index, case duplicates" in stderr

    # --fix changes no user, so the index stays blocked
    code, checks, _ = doctor(app_table, "--fix")
    assert code == 6
    assert checks["email index"]["status"] == "fail"
    assert Database(app_table.url).count() == 4

    # An address in a case none of them has names no one: exit 4, listing them with their ids
    message = app_table.fails(4, "show-user", "bOB@example.com")
    assert "3 users have the address 'bOB@example.com' in different case" in message
    for user in app_table.json("list-users", "--search", "bob@"):
        assert f"{user['email']} (id {user['id']})" in message
    assert "already exists" in app_table.fails(
        4, "create-user", "bOB@example.com", "--generate-password"
    )
    # Named exactly, each is found, even where normalising would lowercase the domain
    assert app_table.user("BOB@EXAMPLE.COM")["email"] == "BOB@EXAMPLE.COM"
    unchanged = app_table.json(
        "create-user", "BOB@EXAMPLE.COM", "--if-not-exists", "--generate-password"
    )
    assert (unchanged["email"], unchanged["status"]) == ("BOB@EXAMPLE.COM", "unchanged")
    # Resolved as the README says, the index can be built
    app_table.ok("delete-user", "bob@example.com", "--yes")
    app_table.ok("update-user", "BOB@EXAMPLE.COM", "--email", "robert@example.com")
    assert app_table.user("Bob@example.com")["email"] == "Bob@example.com"
    code, checks, _ = doctor(app_table, "--fix")
    assert code == 0, checks
    assert checks["email index"]["status"] == "fixed"
    assert "ix_user_email_lower" in checks["email index"]["detail"]
    if is_mysql(app_table.url):  # the same name, on email in its _ci collation
        assert "unique index ix_user_email_lower on email" in checks["email index"]["detail"]
    assert checks["case duplicates"]["status"] == "ok"
    assert doctor(app_table)[1]["email index"]["status"] == "ok"
    with pytest.raises(Exception, match=r"(?i)unique|duplicate entry"):
        execute(app_table.url, user_insert("CAROL@example.com"))


#: A _ci collation, and so FastAPI Users' login on MySQL/MariaDB, makes rené@ and rene@ one address.
@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_addresses_one_to_the_collation_are_one_group_of_duplicates(app_table: Cli) -> None:
    execute(
        app_table.url,
        user_insert("rené@example.com"),
        user_insert("rene@example.com"),
        user_insert("RENE@example.com"),
    )
    code, checks, _ = doctor(app_table)
    assert code == 6
    duplicates = checks["case duplicates"]
    assert "1 address(es) used by 3 users differing only in case or accents" in duplicates["detail"]
    assert sorted(duplicates["items"][0].split(" = ")) == sorted(
        ["RENE@example.com", "rene@example.com", "rené@example.com"]
    )


def test_password_hashes_are_counted_by_scheme(cli: Cli, db: Database) -> None:
    from pwdlib.hashers.argon2 import Argon2Hasher

    db.seed("current@example.com")
    outdated = Argon2Hasher(time_cost=1, memory_cost=8192).hash("pw")
    execute(
        cli.url,
        user_insert("old-argon@example.com", outdated),
        user_insert("bcrypt@example.com", "$2b$12$" + "a" * 53),
        user_insert("disabled@example.com", "!DISABLED!"),
        user_insert("empty@example.com", ""),
        user_insert("bang@example.com", "!"),
        user_insert("md5@example.com", "5f4dcc3b5aa765d61d8327deb882cf99"),
    )
    code, checks, _ = doctor(cli)
    assert code == 0  # a warning is not a failure
    hashes = checks["password hashes"]
    assert hashes["counts"] == {
        "argon2": 1,
        "argon2-outdated": 1,
        "bcrypt": 1,
        "unknown": 1,
        "disabled": 3,
    }
    # Disabled markers lock their accounts on purpose; only the unknown hash is a problem.
    assert hashes["status"] == "warn"
    detail = hashes["detail"]
    assert "1 user(s) cannot log in: FastAPI Users cannot verify their hashes (1 unknown)" in detail


def test_orphaned_oauth_and_token_rows_are_found_and_removed(empty_cli: Cli) -> None:
    empty_cli.ok("init-db", "--oauth", "--access-tokens")
    db = Database(empty_cli.url)
    (alice,) = db.seed("alice@example.com")
    gone = uuid.uuid4()
    execute(
        empty_cli.url,
        "INSERT INTO accesstoken (token, user_id, created_at) "
        f"VALUES ('kept', '{alice['id']}', CURRENT_TIMESTAMP)",
        "INSERT INTO accesstoken (token, user_id, created_at) "
        f"VALUES ('orphan', '{gone}', CURRENT_TIMESTAMP)",
        "INSERT INTO oauth_account (id, user_id, oauth_name, access_token, account_id, "
        f"account_email) VALUES ('{uuid.uuid4()}', '{gone}', 'google', 't', 'g-1', 'x@y.z')",
        foreign_keys=False,
    )
    code, checks, _ = doctor(empty_cli)
    assert code == 6
    assert checks["orphan rows"]["status"] == "fail"
    assert checks["orphan rows"]["counts"] == {"oauth_account": 1, "accesstoken": 1}

    code, checks, _ = doctor(empty_cli, "--fix")
    assert code == 0, checks
    assert checks["orphan rows"]["status"] == "fixed"
    assert "1 from oauth_account, 1 from accesstoken" in checks["orphan rows"]["detail"]
    assert db.count("accesstoken") == 1  # alice's
    assert db.count("oauth_account") == 0
    assert db.count("user") == 1


def leave_an_invalid_email_index(app_table: Cli) -> None:
    """What a concurrent index build that failed leaves behind: an index marked invalid, which
    serves no query and holds the name."""
    execute(app_table.url, user_insert("dan@example.com"), user_insert("DAN@example.com"))
    with pytest.raises(Exception, match=r"(?i)duplicate|unique"):
        execute(
            app_table.url,
            'CREATE UNIQUE INDEX CONCURRENTLY ix_user_email_lower ON "user" (lower(email))',
        )
    execute(app_table.url, "DELETE FROM \"user\" WHERE email = 'DAN@example.com'")


#: CREATE INDEX CONCURRENTLY and invalid indexes are PostgreSQL's.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_init_db_replaces_an_invalid_email_index(app_table: Cli) -> None:
    leave_an_invalid_email_index(app_table)
    result = app_table.ok("init-db")
    assert "Created index ix_user_email_lower" in result.stderr
    _, checks, _ = doctor(app_table)
    assert checks["email index"]["status"] == "ok", checks["email index"]
    assert "Nothing to do" in app_table.ok("init-db").stderr


#: CREATE INDEX CONCURRENTLY and invalid indexes are PostgreSQL's.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_interrupted_concurrent_index_build_is_rebuilt(app_table: Cli) -> None:
    leave_an_invalid_email_index(app_table)
    code, checks, _ = doctor(app_table)
    assert code == 6
    assert "invalid" in checks["email index"]["detail"]
    code, checks, _ = doctor(app_table, "--fix")
    assert code == 0, checks
    assert checks["email index"]["status"] == "fixed"
    assert "concurrently" in checks["email index"]["detail"]


#: Indexes that hold usersctl's index name without being a unique index on lower(email).
IMPOSTOR_INDEXES = {
    "not unique": 'CREATE INDEX ix_user_email_lower ON "user" (lower(email))',
    "not on lower(email)": 'CREATE UNIQUE INDEX ix_user_email_lower ON "user" (email, id)',
    "partial": 'CREATE UNIQUE INDEX ix_user_email_lower ON "user" (lower(email)) '
    "WHERE email LIKE '%@example.com'",
}
#: The same on MySQL/MariaDB, whose email index is on email itself (no expression indexes); they
#: have no partial indexes, and the nearest thing, an index on a prefix of the column, is one.
MYSQL_IMPOSTOR_INDEXES = {
    "not unique": 'CREATE INDEX ix_user_email_lower ON "user" (email)',
    "not on lower(email)": 'CREATE UNIQUE INDEX ix_user_email_lower ON "user" (email, id)',
    "partial": 'CREATE UNIQUE INDEX ix_user_email_lower ON "user" (email(12))',
}


@pytest.mark.parametrize("impostor", list(IMPOSTOR_INDEXES))
@pytest.mark.parametrize("repair", ["init-db", "doctor --fix"])
def test_an_index_with_the_name_but_not_the_shape_fails_and_is_replaced(
    app_table: Cli, impostor: str, repair: str
) -> None:
    mysql = is_mysql(app_table.url)
    execute(app_table.url, (MYSQL_IMPOSTOR_INDEXES if mysql else IMPOSTOR_INDEXES)[impostor])
    code, checks, _ = doctor(app_table)
    assert code == 6, checks
    assert checks["email index"]["status"] == "fail"
    shape = "email" if mysql else "lower(email)"
    assert (
        f"ix_user_email_lower is not a unique index on {shape}" in (checks["email index"]["detail"])
    )

    if repair == "init-db":
        assert "Created index ix_user_email_lower" in app_table.ok("init-db").stderr
    else:
        code, checks, _ = doctor(app_table, "--fix")
        assert code == 0, checks
        assert checks["email index"]["status"] == "fixed"
    assert doctor(app_table)[1]["email index"]["status"] == "ok"
    execute(app_table.url, user_insert("erin@other.org"))
    with pytest.raises(Exception, match=r"(?i)unique|duplicate entry"):
        execute(app_table.url, user_insert("ERIN@other.org"))
