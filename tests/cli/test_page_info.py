"""list-users --page-info: one JSON document with the page and the cursor of the next, for
scripts that page without reading the footer. The first page comes through the installed entry
point, the rest in-process."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl


def page(cli: Cli | Usersctl, *args: str) -> dict[str, Any]:
    result = cli.ok("list-users", *args, "-o", "json", "--page-info")
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_pages_follow_next_after_until_null(usersctl: Usersctl, cli: Cli, db: Database) -> None:
    emails = ["d@example.com", "B@example.com", "a@example.com", "e@example.com", "c@example.com"]
    db.seed(*emails)
    seen: list[str] = []
    cursors: list[str | None] = []
    args: list[str] = []
    while True:
        document = page(cli if seen else usersctl, "--limit", "2", *args)
        assert list(document) == ["users", "next_after"]
        seen += [user["email"] for user in document["users"]]
        cursors.append(document["next_after"])
        if document["next_after"] is None:
            break
        args = ["--after", document["next_after"]]
    assert seen == sorted(emails, key=str.lower)
    assert cursors == ["B@example.com", "d@example.com", None]
    # The users are those -o json prints, field for field.
    plain = json.loads(cli.ok("list-users", "--limit", "2", "-o", "json").stdout)
    assert page(cli, "--limit", "2")["users"] == plain
    # The last page, a filtered page, and no page at all end with null.
    assert page(cli, "--limit", "5")["next_after"] is None
    assert page(cli, "--search", "b@")["users"][0]["email"] == "B@example.com"
    assert page(cli, "--search", "nobody") == {"users": [], "next_after": None}


def test_page_info_needs_json(cli: Cli, db: Database) -> None:
    db.seed("a@example.com")
    for fmt in ("table", "jsonl", "csv"):
        error = cli.fails(2, "list-users", "--page-info", "-o", fmt)
        assert error == "Error: --page-info needs -o json", error
