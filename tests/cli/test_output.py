"""-o table|json|jsonl|csv on every command that prints users; data on stdout, messages on stderr."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness import Cli, Database

ANSI = re.compile(r"\x1b\[")

#: Each command that prints users, run so that it changes nothing (--dry-run where it would),
#: whether it prints one user or a list, and the columns it must print.
USER_COLUMNS = ["id", "email", "is_active", "is_superuser", "is_verified"]
COMMANDS: list[tuple[list[str], bool, list[str]]] = [
    (
        ["create-user", "new@example.com", "--generate-password", "--dry-run"],
        True,
        [*USER_COLUMNS, "status", "password"],
    ),
    (["list-users"], False, USER_COLUMNS),
    (["show-user", "alice@example.com"], True, USER_COLUMNS),
    (
        ["update-user", "alice@example.com", "--verified", "--dry-run"],
        True,
        [*USER_COLUMNS, "status"],
    ),
    (
        ["activate-user", "alice@example.com", "bob@example.com", "--dry-run"],
        False,
        ["id", "email", "status"],
    ),
    (
        ["deactivate-user", "alice@example.com", "bob@example.com", "--dry-run"],
        False,
        ["id", "email", "status"],
    ),
    (
        ["set-password", "alice@example.com", "--generate-password", "--dry-run"],
        True,
        ["id", "email", "status", "password"],
    ),
    (
        ["delete-user", "alice@example.com", "bob@example.com", "--dry-run"],
        False,
        ["id", "email", "status"],
    ),
]


def parse(output: str, stdout: str) -> list[dict[str, Any]]:
    """The rows a machine format printed, parsed (never grepped)."""
    if output == "json":
        parsed = json.loads(stdout)
        return parsed if isinstance(parsed, list) else [parsed]
    if output == "jsonl":
        lines = stdout.splitlines()
        assert all(line.strip() for line in lines)
        return [json.loads(line) for line in lines]
    assert output == "csv"
    return list(csv.DictReader(io.StringIO(stdout)))


@pytest.mark.parametrize("args,single,columns", COMMANDS, ids=[c[0][0] for c in COMMANDS])
def test_every_format(
    cli: Cli, db: Database, args: list[str], single: bool, columns: list[str]
) -> None:
    db.seed("alice@example.com", "bob@example.com")
    expected_rows = 1 if single else 2
    for output in ("json", "jsonl", "csv", "table"):
        result = cli(*args, "-o", output)
        assert result.exit_code == 0, result.output
        assert "hashed_password" not in result.output
        assert "$argon2" not in result.output
        assert not ANSI.search(result.output)
        if output == "table":
            lines = result.stdout.splitlines()
            if single:
                assert [line.split()[0] for line in lines] == columns
            else:
                assert lines[0].split() == columns
                assert len(lines) == 1 + expected_rows
            continue
        if output == "json":
            assert isinstance(json.loads(result.stdout), dict if single else list)
        rows = parse(output, result.stdout)
        assert len(rows) == expected_rows
        for row in rows:
            assert list(row) == columns
        if output == "csv":
            assert result.stdout.splitlines()[0] == ",".join(columns)
            if "is_active" in columns:
                assert rows[0]["is_active"] == "true"
    # Everything above was a dry run or a read.
    assert cli.emails() == ["alice@example.com", "bob@example.com"]


def test_json_values_are_typed(cli: Cli, db: Database) -> None:
    (alice,) = db.seed("alice@example.com", is_superuser=True)
    shown = cli.user("alice@example.com")
    assert shown == {
        "id": str(alice["id"]),
        "email": "alice@example.com",
        "is_active": True,
        "is_superuser": True,
        "is_verified": False,
    }


def test_extra_columns_of_the_table_are_shown(cli: Cli, db: Database) -> None:
    db.execute('ALTER TABLE "user" ADD COLUMN nickname VARCHAR(50)')
    db.seed("alice@example.com")
    db.execute('UPDATE "user" SET nickname = \'Al, "the" one\'')
    assert cli.user("alice@example.com")["nickname"] == 'Al, "the" one'
    rows = parse("csv", cli.ok("list-users", "-o", "csv").stdout)
    assert rows[0]["nickname"] == 'Al, "the" one'
    assert list(rows[0]) == [*USER_COLUMNS, "nickname"]


def test_messages_go_to_stderr_so_stdout_stays_parseable(
    cli: Cli, db: Database, tmp_path: Any
) -> None:
    db.seed("alice@example.com")
    readable = tmp_path / "pw.txt"
    readable.write_text("readable by all\n")
    readable.chmod(0o644)
    result = cli.ok(
        "set-password", "alice@example.com", "--password-file", str(readable), "-o", "json"
    )
    assert "Warning" in result.stderr
    assert json.loads(result.stdout)["status"] == "password set"
    changed = cli.ok("update-user", "alice@example.com", "--verified", "-o", "jsonl")
    assert "is_verified: false -> true" in changed.stderr
    assert json.loads(changed.stdout)["is_verified"] is True
    listed = cli.ok("list-users", "-o", "csv")
    assert "matching" in listed.stderr and "matching" not in listed.stdout
    assert "readable by all" not in result.output


def test_the_table_is_rich_on_a_terminal_and_plain_with_no_color(spawn: Any, db: Database) -> None:
    import pexpect

    db.seed("alice@example.com")
    rich = spawn("list-users")
    rich.expect(pexpect.EOF)
    assert "alice@example.com" in rich.before
    assert re.search("[┃│━─]", rich.before), rich.before

    plain = spawn("list-users", env={"NO_COLOR": "1"})
    plain.expect(pexpect.EOF)
    assert not ANSI.search(plain.before) and not re.search("[┃│━─]", plain.before), plain.before
    assert plain.before.splitlines()[0].split() == USER_COLUMNS


def test_a_table_wider_than_the_terminal_keeps_every_value_whole(
    spawn: Any, cli: Cli, db: Database
) -> None:
    import pexpect

    email = "a.rather.long.address.for.a.narrow.terminal@subdomain.example.com"
    db.seed(email)
    narrow = spawn("list-users", dimensions=(24, 80))
    narrow.expect(pexpect.EOF)
    text = narrow.before.replace("\r\n", "\n")
    assert "…" not in text, text
    assert email in text, text
    assert cli.user(email)["id"] in text, text
