"""list-users: filters, a literal --search, keyset pages that add up to the whole, a footer."""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness import Cli, Database


def seed_people(db: Database) -> None:
    db.seed("admin@example.com", is_superuser=True, is_verified=True)
    db.seed("Old-Admin@example.com", is_superuser=True, is_active=False)
    db.seed("alice@example.com", "Bob@example.org", is_verified=True)
    db.seed("carol@example.com", "dave@example.org")
    db.seed("mallory@example.com", is_active=False)


def test_filters(cli: Cli, db: Database) -> None:
    seed_people(db)
    everyone = [
        "admin@example.com",
        "alice@example.com",
        "Bob@example.org",
        "carol@example.com",
        "dave@example.org",
        "mallory@example.com",
        "Old-Admin@example.com",
    ]
    assert cli.emails() == everyone  # in the order of the lowercased email
    assert cli.emails("--active") == [
        e for e in everyone if e not in ("mallory@example.com", "Old-Admin@example.com")
    ]
    assert cli.emails("--inactive") == ["mallory@example.com", "Old-Admin@example.com"]
    assert cli.emails("--superuser") == ["admin@example.com", "Old-Admin@example.com"]
    assert cli.emails("--no-superuser") == [
        "alice@example.com",
        "Bob@example.org",
        "carol@example.com",
        "dave@example.org",
        "mallory@example.com",
    ]
    assert cli.emails("--verified") == ["admin@example.com", "alice@example.com", "Bob@example.org"]
    assert cli.emails("--unverified", "--active") == ["carol@example.com", "dave@example.org"]
    assert cli.emails("--superuser", "--active") == ["admin@example.com"]
    assert cli.emails("--search", "EXAMPLE.ORG") == ["Bob@example.org", "dave@example.org"]
    assert cli.emails("--search", "admin", "--inactive") == ["Old-Admin@example.com"]
    assert cli.emails("--search", "nobody") == []


def test_search_takes_percent_and_underscore_literally(cli: Cli, db: Database) -> None:
    db.seed("a_b@example.com", "axb@example.com", "100%done@example.com", "1000done@example.com")
    assert cli.emails("--search", "_") == ["a_b@example.com"]
    assert cli.emails("--search", "A_B") == ["a_b@example.com"]
    assert cli.emails("--search", "%") == ["100%done@example.com"]
    assert cli.emails("--search", "0%d") == ["100%done@example.com"]
    assert cli.emails("--search", "\\") == []


def footer(stderr: str) -> tuple[int, int, str | None]:
    """(shown, matching, the --after value of the next page) from list-users' footer."""
    match = re.fullmatch(
        r"(\d+) shown of (\d+) matching users?\.(?: Next page: --after (.+))?\n", stderr
    )
    assert match, stderr
    after = shlex.split(match.group(3))[0] if match.group(3) else None
    return int(match.group(1)), int(match.group(2)), after


def test_pages_follow_the_footer_and_add_up_to_everything(cli: Cli, db: Database) -> None:
    emails = [f"{name}{n}@example.com" for n in range(5) for name in ("Zed", "amy", "Bo", "o'neil")]
    db.seed(*emails)
    expected = sorted(emails, key=str.lower)
    assert cli.emails() == expected

    pages: list[list[str]] = []
    args: list[str] = []
    while True:
        result = cli.ok("list-users", "--limit", "3", *args, "-o", "json")
        shown, matching, after = footer(result.stderr)
        page = [row["email"] for row in json.loads(result.stdout)]
        assert shown == len(page) and matching == len(emails)
        pages.append(page)
        if after is None:
            break
        assert after == page[-1]
        args = ["--after", after]
    assert [email for page in pages for email in page] == expected
    assert [len(page) for page in pages] == [3] * 6 + [2]

    # With a filter, the count and the pages are the filtered ones.
    first = cli.ok("list-users", "--search", "amy", "--limit", "4", "-o", "jsonl")
    assert footer(first.stderr)[:2] == (4, 5)
    rest = cli.ok(
        "list-users", "--search", "amy", "--limit", "4", "--after", footer(first.stderr)[2] or ""
    )
    assert footer(rest.stderr) == (1, 5, None)


def test_footer_goes_to_stderr_and_limits_are_checked(cli: Cli, db: Database) -> None:
    db.seed("only@example.com")
    result = cli.ok("list-users", "-o", "json")
    assert json.loads(result.stdout)[0]["email"] == "only@example.com"
    assert footer(result.stderr) == (1, 1, None)
    empty = cli.ok("list-users", "--search", "nobody", "-o", "csv")
    assert empty.stdout.splitlines()[0].startswith("id,email,")
    assert footer(empty.stderr) == (0, 0, None)
    for bad in ("0", "-1", "many"):
        assert cli("list-users", "--limit", bad).exit_code == 2
