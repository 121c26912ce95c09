"""MySQL/MariaDB: the email column's collation decides what one address is, since MariaDB has no
index on lower(email): a case-insensitive collation makes the unique index on email do its work."""

from __future__ import annotations

import json

import pytest

from harness import Cli, Database

pytestmark = pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)

EMAIL_INDEXES = """
SELECT s.INDEX_NAME AS name, s.NON_UNIQUE AS non_unique, c.COLLATION_NAME AS collation
FROM information_schema.STATISTICS s JOIN information_schema.COLUMNS c
  ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME
 AND c.COLUMN_NAME = s.COLUMN_NAME
WHERE s.TABLE_SCHEMA = DATABASE() AND s.TABLE_NAME = 'user' AND s.COLUMN_NAME = 'email'
"""


def test_the_unique_index_on_email_in_a_ci_collation_keeps_one_address_per_user(
    cli: Cli, db: Database
) -> None:
    # init-db: the unique index on email alone, no lower(email) index (MariaDB has none).
    (index,) = db.query(EMAIL_INDEXES)
    assert (index["name"], index["non_unique"]) == ("ix_user_email", 0)
    assert index["collation"].endswith("_ci")
    cli.ok("create-user", "rené@example.com", "--generate-password")
    # Case, and with a _ci collation accents too, make no second address.
    for other in ("RENÉ@example.com", "rene@example.com"):
        assert "already exists" in cli.fails(4, "create-user", other, "--generate-password")
    assert cli.user("RENE@EXAMPLE.COM")["email"] == "rené@example.com"
    assert [row["email"] for row in db.rows()] == ["rené@example.com"]


def test_doctor_reports_the_collation(cli: Cli, db: Database) -> None:
    db.seed("alice@example.com")
    result = cli("doctor", "-o", "json")
    assert result.exit_code == 0, result.output
    checks = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    detail = checks["email index"]["detail"]
    assert "unique index on email" in detail and "utf8mb4_general_ci" in detail, detail
    assert "accents" in detail


def test_a_case_sensitive_collation_is_refused_with_the_fix(empty_cli: Cli) -> None:
    Database(empty_cli.url).execute(
        'CREATE TABLE "user" (id CHAR(36) PRIMARY KEY, '
        "email VARCHAR(320) COLLATE utf8mb4_bin NOT NULL, hashed_password VARCHAR(1024) NOT NULL, "
        "is_active BOOL NOT NULL, is_superuser BOOL NOT NULL, is_verified BOOL NOT NULL)",
        'CREATE UNIQUE INDEX ix_user_email ON "user" (email)',
    )
    message = empty_cli.fails(5, "init-db")
    assert "case-sensitive collation utf8mb4_bin" in message
    assert "COLLATE utf8mb4_unicode_ci" in message
    result = empty_cli("doctor", "-o", "json")
    assert result.exit_code == 6, result.output
    checks = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
    assert checks["email index"]["status"] == "fail"
    assert "utf8mb4_bin" in checks["email index"]["detail"]
