"""Every word the README gives for true and false, in CSV imports and in ``--set``, and words that
are neither (exit 2, nothing written); stored values are read back with plain SQL."""

from __future__ import annotations

import csv
import io

import pytest

from harness import Cli, Database, stored_hash

#: The README's words (import-users, --set): true/false, yes/no, 1/0, in any case.
WORDS = [
    ("true", True),
    ("True", True),
    ("TRUE", True),
    ("yes", True),
    ("Yes", True),
    ("YES", True),
    ("1", True),
    ("false", False),
    ("False", False),
    ("FALSE", False),
    ("no", False),
    ("No", False),
    ("NO", False),
    ("0", False),
]
NOT_BOOLEANS = ["2", "-1", "maybe", "tru", "yess", "nope", "1.0", "0.0", "true false", "null?"]


def csv_of(*rows: tuple[str, str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "hashed_password", "is_verified"])
    writer.writerows((email, stored_hash(), word) for email, word in rows)
    return out.getvalue()


def test_every_boolean_word_of_a_csv_import_is_stored_as_its_value(cli: Cli, db: Database) -> None:
    rows = [(f"user{index}@example.com", word) for index, (word, _) in enumerate(WORDS)]
    result = cli("import-users", "-", "--format", "csv", input=csv_of(*rows))
    assert result.exit_code == 0, result.output

    stored = {row["email"]: bool(row["is_verified"]) for row in db.rows()}
    expected = {f"user{index}@example.com": value for index, (_, value) in enumerate(WORDS)}
    assert stored == expected


def test_a_csv_word_that_is_not_a_boolean_is_an_invalid_row(cli: Cli, db: Database) -> None:
    for word in NOT_BOOLEANS:
        rows = csv_of(("good@example.com", "true"), ("bad@example.com", word))
        result = cli("import-users", "-", "--format", "csv", input=rows)
        assert result.exit_code == 2, (word, result.output)
        assert "line 3" in result.stderr and "is_verified" in result.stderr, result.stderr
        assert db.count() == 0, word


@pytest.fixture
def newsletter(cli: Cli, db: Database) -> Database:
    """A user table with an app's own boolean column, and one user."""
    db.execute('ALTER TABLE "user" ADD COLUMN newsletter BOOLEAN')
    db.seed("alice@example.com")
    return db


def stored_newsletter(db: Database) -> object:
    (row,) = db.query('SELECT newsletter FROM "user"')
    return None if row["newsletter"] is None else bool(row["newsletter"])


def test_every_boolean_word_of_set_is_stored_as_its_value(cli: Cli, newsletter: Database) -> None:
    for word, value in WORDS:
        # From the other value, so that every word changes what is stored.
        newsletter.execute(f'UPDATE "user" SET newsletter = {"false" if value else "true"}')
        cli.ok("update-user", "alice@example.com", "--set", f"newsletter={word}")
        assert stored_newsletter(newsletter) is value, word


def test_a_set_word_that_is_not_a_boolean_is_exit_2_and_changes_nothing(
    cli: Cli, newsletter: Database
) -> None:
    for word in NOT_BOOLEANS:
        message = cli.fails(2, "update-user", "alice@example.com", "--set", f"newsletter={word}")
        assert "newsletter" in message, word
        assert stored_newsletter(newsletter) is None, word
