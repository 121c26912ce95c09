"""Exact filters shared by list-users and export-users (--email, --email-domain, --id,
--created-after/--created-before), and export-users writing users in list-users' order, so two
exports of the same users are the same bytes. In-process, and one test through the installed
entry point."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING

import pytest

from harness import is_mysql, is_sqlite

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl


def listed(cli: Cli | Usersctl, *args: str) -> list[str]:
    """The emails list-users prints, in order."""
    result = cli.ok("list-users", "--limit", "10000", *args, "-o", "json")
    return [row["email"] for row in json.loads(result.stdout)]


def exported(cli: Cli | Usersctl, *args: str) -> list[str]:
    """The emails export-users writes, in order."""
    result = cli.ok("export-users", "-", "-o", "jsonl", *args)
    return [json.loads(line)["email"] for line in result.stdout.splitlines()]


def both(cli: Cli | Usersctl, *args: str) -> list[str]:
    """What list-users and export-users select with the same filters: the same users, in the
    same order."""
    shown = listed(cli, *args)
    assert exported(cli, *args) == shown, args
    return shown


def test_email_domain_is_the_exact_domain_in_any_case(cli: Cli, db: Database) -> None:
    db.seed(
        "ann@old-corp.net",
        "Bob@Old-Corp.NET",
        "x@old-corp.net.evil.com",  # another domain that starts with it
        "y@sub.old-corp.net",  # a subdomain
        "z@xold-corp.net",  # a domain that ends with it
        "old-corp.net@elsewhere.com",  # the local part
        "zoe@bücher.de",
        "carl@xn--bcher-kva.de",  # the same domain, stored in its ASCII form
    )
    expected = ["ann@old-corp.net", "Bob@Old-Corp.NET"]
    assert both(cli, "--email-domain", "old-corp.net") == expected
    assert both(cli, "--email-domain", "OLD-CORP.Net") == expected
    assert both(cli, "--email-domain", "@old-corp.net") == expected
    # Normalised as addresses are (IDNA): the Unicode and ASCII forms name one domain.
    for domain in ("bücher.de", "BÜCHER.DE", "xn--bcher-kva.de"):
        assert both(cli, "--email-domain", domain) == [
            "carl@xn--bcher-kva.de",
            "zoe@bücher.de",
        ]
    assert both(cli, "--email-domain", "corp.net") == []
    # With the other filters: every condition holds.
    assert both(cli, "--email-domain", "old-corp.net", "--search", "bob") == ["Bob@Old-Corp.NET"]
    for bad in ("old corp.net", "old-corp.net.", "a@old-corp.net", ""):
        error = cli.fails(2, "list-users", "--email-domain", bad)
        assert error.startswith("Error: invalid email domain"), error
        cli.fails(2, "export-users", "-", "--email-domain", bad)


def test_exact_addresses_and_ids_combine_with_the_other_filters(
    cli: Cli, usersctl: Usersctl, db: Database
) -> None:
    """In-process, but for the first check: this file's one run of the installed entry point."""
    admin, alice, _bob, mallory = db.seed(
        "admin@example.com", "Alice@example.com", "bob@example.org", "mallory@example.com"
    )
    db.execute("UPDATE \"user\" SET is_superuser = true WHERE email = 'admin@example.com'")
    db.execute("UPDATE \"user\" SET is_active = false WHERE email = 'mallory@example.com'")
    # Exact addresses, in any case; repeated, any of them.
    assert both(usersctl, "--email", "alice@EXAMPLE.com") == ["Alice@example.com"]
    assert both(cli, "--email", "alice@example.co") == []  # not a substring match
    assert both(cli, "--email", "bob@example.org", "--email", "ALICE@example.com") == [
        "Alice@example.com",
        "bob@example.org",
    ]
    # Ids, repeated.
    ids = ["--id", str(admin["id"]), "--id", str(mallory["id"])]
    assert both(cli, *ids) == ["admin@example.com", "mallory@example.com"]
    # Different filters all hold (AND), with --active/--superuser/--search too.
    assert both(cli, *ids, "--active") == ["admin@example.com"]
    assert both(cli, *ids, "--no-superuser") == ["mallory@example.com"]
    assert both(cli, *ids, "--email", "Alice@example.com") == []
    assert both(cli, "--id", str(alice["id"]), "--email", "alice@example.com") == [
        "Alice@example.com"
    ]
    assert both(cli, "--email", "admin@example.com", "--search", "min", "--superuser") == [
        "admin@example.com"
    ]
    error = cli.fails(2, "list-users", "--id", "7")
    assert error == "Error: --id '7': not a valid UUID id", error
    error = cli.fails(2, "export-users", "-", "--email", "nobody")
    assert error == "Error: --email 'nobody': not an email address", error


def add_column(db: Database, name: str, sql_type: str) -> None:
    db.execute(f'ALTER TABLE "user" ADD COLUMN {name} {sql_type}')


def test_created_after_and_before_on_the_creation_time_column(cli: Cli, db: Database) -> None:
    # PostgreSQL: a timestamptz column; SQLite and MariaDB: a naive one (UTC)
    aware = not is_sqlite(db.url) and not is_mysql(db.url)
    naive = "DATETIME(6)" if is_mysql(db.url) else "TIMESTAMP"
    add_column(db, "created_at", "TIMESTAMP WITH TIME ZONE" if aware else naive)

    def at(text: str) -> dt.datetime:
        moment = dt.datetime.fromisoformat(text)
        return moment.replace(tzinfo=dt.timezone.utc) if aware else moment

    for email, created in (
        ("dec@example.com", at("2023-12-31T23:59:59")),
        ("midnight@example.com", at("2024-01-01T00:00:00")),
        ("jan@example.com", at("2024-01-31T12:00:00")),
        ("feb@example.com", at("2024-02-01T00:00:00")),
        ("unknown@example.com", None),
    ):
        db.seed(email, created_at=created)
    # After is inclusive, before exclusive: consecutive ranges neither overlap nor leave gaps.
    january = ["--created-after", "2024-01-01", "--created-before", "2024-02-01"]
    assert both(cli, *january) == ["jan@example.com", "midnight@example.com"]
    assert both(cli, "--created-before", "2024-01-01") == ["dec@example.com"]
    assert both(cli, "--created-after", "2024-02-01T00:00:00Z") == ["feb@example.com"]
    assert both(cli, "--created-after", "2024-01-31T12:00:00.000001") == ["feb@example.com"]
    assert both(cli, *january, "--search", "mid") == ["midnight@example.com"]
    error = cli.fails(2, "list-users", "--created-after", "last week")
    assert error.startswith("Error: --created-after 'last week': not an ISO 8601 date"), error
    cli.fails(2, "export-users", "-", "--created-before", "2024-13-01")


def test_created_filters_need_one_creation_time_column(cli: Cli, db: Database) -> None:
    db.seed("ann@example.com")
    error = cli.fails(2, "list-users", "--created-after", "2024-01-01")
    assert error == (
        "Error: the user table has no creation time column (a date-and-time column named "
        "created_at, created, date_joined, created_on)"
    ), error
    add_column(db, "created", "VARCHAR(20)")
    error = cli.fails(2, "export-users", "-", "--created-before", "2024-01-01")
    assert "; created is VARCHAR(20), not a date and time" in error, error
    add_column(db, "created_at", "TIMESTAMP")
    add_column(db, "date_joined", "TIMESTAMP")
    error = cli.fails(2, "list-users", "--created-after", "2024-01-01")
    assert error == (
        "Error: the user table has several creation time columns (created_at, date_joined); "
        "--created-after/--created-before cannot tell which one to use"
    ), error
    # Without those filters, such a table lists as ever.
    assert listed(cli) == ["ann@example.com"]


SCRAMBLED = [f"{name}{n}@example.com" for n in (3, 1, 2) for name in ("zed", "Amy", "bo", "Cy")]


def test_exports_come_in_list_users_order_and_repeat_byte_for_byte(cli: Cli, db: Database) -> None:
    db.seed(*SCRAMBLED)  # stored in an order that is not the email's
    db.execute("UPDATE \"user\" SET is_verified = true WHERE email LIKE 'bo%'")  # moves rows (PG)
    order = sorted(SCRAMBLED, key=str.lower)
    assert listed(cli) == order
    for fmt in ("jsonl", "json", "csv"):
        first = cli.ok("export-users", "-", "-o", fmt).stdout
        assert cli.ok("export-users", "-", "-o", fmt).stdout == first, fmt
        if fmt == "jsonl":
            assert [json.loads(line)["email"] for line in first.splitlines()] == order
        elif fmt == "json":
            assert [row["email"] for row in json.loads(first)] == order
        else:
            assert [line.split(",")[1] for line in first.splitlines()[1:]] == order


def test_unordered_exports_come_as_the_database_reads_them(cli: Cli, db: Database) -> None:
    """--unordered drops list-users' order (no lookup of each row through the email index): the
    same users, with the filters, in the order a plain SELECT without ORDER BY reads them."""
    db.seed(*SCRAMBLED)  # stored in an order that is not the email's
    stored = [
        row["email"] for row in db.query('SELECT email, hashed_password FROM "user"')
    ]  # no index covers it
    assert stored != sorted(SCRAMBLED, key=str.lower)  # else this test could not fail
    assert exported(cli, "--unordered") == stored
    assert exported(cli) == sorted(SCRAMBLED, key=str.lower)
    inactive = [email for email in stored if email != SCRAMBLED[1]]
    db.execute(f"UPDATE \"user\" SET is_active = false WHERE email <> '{SCRAMBLED[1]}'")
    assert exported(cli, "--unordered", "--inactive") == [
        row["email"]
        for row in db.query('SELECT email, hashed_password FROM "user" WHERE NOT is_active')
    ]
    assert sorted(exported(cli, "--unordered", "--inactive")) == sorted(inactive)


def test_python_rendered_exports_keep_the_order_too(cli: Cli, db: Database) -> None:
    """A column the database does not render in its form (a time) is written by Python."""
    add_column(db, "created_at", "TIMESTAMP")
    for index, email in enumerate(SCRAMBLED):
        db.seed(email, created_at=dt.datetime(2024, 1, 1 + index))
    order = sorted(SCRAMBLED, key=str.lower)
    for fmt in ("jsonl", "csv"):
        first = cli.ok("export-users", "-", "-o", fmt, "--include-hashes").stdout
        assert cli.ok("export-users", "-", "-o", fmt, "--include-hashes").stdout == first
    assert exported(cli, "--created-after", "2024-01-02") == [
        email for email in order if email != SCRAMBLED[0]
    ]
    assert exported(cli) == order


@pytest.mark.parametrize("limit", ["1", "3"])
def test_addresses_differing_only_in_case_keep_one_order_and_every_page(
    cli: Cli, db: Database, limit: str
) -> None:
    """In a table without the unique lower(email) index, users whose addresses differ only in
    case come in id order, and a page never ends inside such a run: paging sees them all."""
    if is_mysql(db.url):  # there the unique index on email, in its _ci collation, is the one
        db.execute('DROP INDEX ix_user_email ON "user"')
    else:
        db.execute("DROP INDEX ix_user_email_lower")
    seeded = db.seed("b@example.com", "Dup@example.com", "DUP@example.com", "dup@example.com")
    db.seed("a@example.com", "e@example.com")
    runs = sorted(
        (row for row in seeded if row["email"].lower() == "dup@example.com"),
        key=lambda row: str(row["id"]),
    )
    order = ["a@example.com", "b@example.com", *(row["email"] for row in runs), "e@example.com"]
    assert listed(cli) == order
    assert exported(cli) == order
    seen: list[str] = []
    after: list[str] = []
    for _ in range(10):
        result = cli.ok("list-users", "--limit", limit, *after, "-o", "json")
        seen += [row["email"] for row in json.loads(result.stdout)]
        if "Next page: --after " not in result.stderr:
            break
        after = ["--after", result.stderr.split("Next page: --after ")[1].strip().strip("'")]
    assert seen == order
