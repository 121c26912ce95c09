"""A value PostgreSQL itself refuses (SQLSTATE class 22: a numeric overflow, a NUL in JSON) is bad
input: exit 2 with one ``Error:`` line, and nothing written. SQLite stores such values as given,
so these tests mean PostgreSQL alone."""

from __future__ import annotations

import json

import pytest

from harness import Cli, Database, stored_hash

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

#: Values usersctl converts by the column's type and passes on; PostgreSQL refuses them.
REFUSED = {
    "price": ("12345.67", "numeric field overflow"),  # NUMERIC(5, 2) holds at most 999.99
    "profile": ('{"note": "a\\u0000b"}', "unsupported Unicode escape sequence"),  # JSONB
}


@pytest.fixture
def app_columns(cli: Cli, db: Database) -> Database:
    db.execute('ALTER TABLE "user" ADD COLUMN price NUMERIC(5, 2), ADD COLUMN profile JSONB')
    db.seed("alice@example.com")
    return db


@pytest.mark.parametrize("column", list(REFUSED))
def test_update_user_with_a_value_postgres_refuses_is_exit_2(
    cli: Cli, app_columns: Database, column: str
) -> None:
    value, reason = REFUSED[column]
    message = cli.fails(2, "update-user", "alice@example.com", "--set", f"{column}={value}")
    assert message.startswith("Error: the database refused a value"), message
    assert reason in message
    (row,) = app_columns.query(f'SELECT {column} FROM "user"')
    assert row[column] is None


@pytest.mark.parametrize("column", list(REFUSED))
def test_create_user_with_a_value_postgres_refuses_is_exit_2(
    cli: Cli, app_columns: Database, column: str
) -> None:
    value, reason = REFUSED[column]
    message = cli.fails(
        2, "create-user", "bob@example.com", "--generate-password", "--set", f"{column}={value}"
    )
    assert reason in message
    assert app_columns.emails() == ["alice@example.com"]


def test_an_import_with_a_value_postgres_refuses_is_exit_2_and_writes_nothing(
    cli: Cli, app_columns: Database
) -> None:
    rows = [
        {"email": "carol@example.com", "hashed_password": stored_hash(), "price": "9.99"},
        {"email": "dave@example.com", "hashed_password": stored_hash(), "price": "12345.67"},
    ]
    result = cli(
        "import-users", "-", "--format", "jsonl", input="".join(json.dumps(r) + "\n" for r in rows)
    )
    assert result.exit_code == 2, result.output
    assert "numeric field overflow" in result.stderr
    assert "Traceback" not in result.output
    assert app_columns.emails() == ["alice@example.com"]
