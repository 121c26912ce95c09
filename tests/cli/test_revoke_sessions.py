"""revoke-sessions: ends users' database sessions (their access tokens), named by email, id or
on stdin, or everyone's with --all; idempotent, all or nothing, through the installed entry point.
Tokens are seeded and counted with plain SQL. (That a token issued by issue-token then stops
working in the app is shown in tests/e2e/test_e2e_app_rules.py.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from harness import Cli, Database, Usersctl, is_mysql, sql

NO_TABLE = (
    "The database has no access token table: there are no database sessions to revoke (JWTs "
    "cannot be revoked; the app refuses them for an inactive user)."
)


def add_tokens(url: str, email: str, *tokens: str, table: str = "accesstoken") -> None:
    """Sessions of the user of ``email``, inserted with SQL as the app's DatabaseStrategy would."""
    users = '"user"' if table == "accesstoken" else "users"
    for token in tokens:
        asyncio.run(
            sql(
                url,
                f"INSERT INTO {table} (token, user_id, created_at) "
                f"SELECT :token, id, CURRENT_TIMESTAMP FROM {users} WHERE email = :email",
                token=token,
                email=email,
            )
        )


def tokens_by_email(db: Database) -> dict[str, list[str]]:
    """Every session left, by its user's email, read with SQL."""
    found: dict[str, list[str]] = {}
    for row in db.query(
        'SELECT u.email, t.token FROM accesstoken t JOIN "user" u ON u.id = t.user_id '
        "ORDER BY t.token"
    ):
        found.setdefault(row["email"], []).append(row["token"])
    return found


ALL_TOKENS = {
    "alice@example.com": ["alice-1", "alice-2"],
    "bob@example.com": ["bob-1"],
    "carol@example.com": ["carol-1", "carol-2"],
}


@pytest.fixture
def cli(empty_cli: Cli) -> Cli:
    """The database with FastAPI Users' user and access token tables (``db`` uses it too)."""
    empty_cli.ok("init-db", "--access-tokens")
    return empty_cli


@pytest.fixture
def people(db: Database) -> dict[str, dict[str, Any]]:
    """Alice (two sessions), Bob (one) and Carol (two), whom no test here names."""
    alice, bob, carol = db.seed("alice@example.com", "bob@example.com", "carol@example.com")
    for email, tokens in ALL_TOKENS.items():
        add_tokens(db.url, email, *tokens)
    assert tokens_by_email(db) == ALL_TOKENS
    return {"alice": alice, "bob": bob, "carol": carol}


def test_one_by_email_and_one_by_id_and_again_nothing(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    bob_id = str(people["bob"]["id"])
    result = cli.ok("revoke-sessions", "ALICE@example.com", bob_id, "-o", "json")
    assert json.loads(result.stdout) == {
        "revoked": 3,
        "all": False,
        "dry_run": False,
        "token_table": "accesstoken",
        "users": [
            {"id": str(people["alice"]["id"]), "email": "alice@example.com", "revoked": 2},
            {"id": bob_id, "email": "bob@example.com", "revoked": 1},
        ],
        "missing": [],
    }
    assert result.stderr.splitlines() == [
        "Revoked 2 sessions of alice@example.com.",
        "Revoked 1 session of bob@example.com.",
        "3 sessions in all, of 2 users.",
    ]
    assert tokens_by_email(db) == {"carol@example.com": ["carol-1", "carol-2"]}

    # Again: nothing left to revoke, and that is success.
    again = cli.ok("revoke-sessions", "alice@example.com", bob_id)
    assert again.stdout.split() == [
        "id", "email", "revoked",
        str(people["alice"]["id"]), "alice@example.com", "0",
        bob_id, "bob@example.com", "0",
    ]  # fmt: skip
    assert "Revoked 0 sessions of alice@example.com." in again.stderr
    assert tokens_by_email(db) == {"carol@example.com": ["carol-1", "carol-2"]}


def test_a_dry_run_counts_and_revokes_nothing(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    result = cli.ok("revoke-sessions", "alice@example.com", "--dry-run", "-o", "json")
    assert json.loads(result.stdout)["revoked"] == 2
    assert json.loads(result.stdout)["dry_run"] is True
    assert result.stderr == "Would revoke 2 sessions of alice@example.com.\n"
    assert tokens_by_email(db) == ALL_TOKENS


def test_a_missing_user_revokes_nothing_unless_missing_ok(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    named = ("alice@example.com", "gone@example.com", "bob@example.com", "lost@example.com")
    message = cli.fails(3, "revoke-sessions", *named)
    assert message == (
        "Error: no user 'gone@example.com', 'lost@example.com'; nothing was revoked "
        "(--missing-ok skips them)"
    )
    assert tokens_by_email(db) == ALL_TOKENS

    result = cli.ok("revoke-sessions", *named, "--missing-ok", "-o", "json")
    summary = json.loads(result.stdout)
    assert summary["revoked"] == 3
    assert [user["email"] for user in summary["users"]] == ["alice@example.com", "bob@example.com"]
    assert summary["missing"] == ["gone@example.com", "lost@example.com"]
    assert "No user 'gone@example.com': skipped." in result.stderr.splitlines()
    assert "No user 'lost@example.com': skipped." in result.stderr.splitlines()
    assert tokens_by_email(db) == {"carol@example.com": ["carol-1", "carol-2"]}


def test_users_read_from_stdin_one_a_line(
    cli: Cli, usersctl: Usersctl, db: Database, people: dict[str, Any]
) -> None:
    """The first run through the installed entry point, the rest in-process."""
    lines = f"\nalice@example.com\n\n  {people['bob']['id']}  \n\n"
    result = usersctl.ok("revoke-sessions", "-", "-o", "csv", input=lines)
    assert result.stdout.splitlines() == [
        "id,email,revoked",
        f"{people['alice']['id']},alice@example.com,2",
        f"{people['bob']['id']},bob@example.com,1",
    ]
    assert tokens_by_email(db) == {"carol@example.com": ["carol-1", "carol-2"]}
    # A missing user on stdin is a missing user; nothing else on stdin is a mistake.
    assert "'nobody@example.com'" in cli.fails(
        3, "revoke-sessions", "-", input="carol@example.com\nnobody@example.com\n"
    )
    assert "no users on stdin" in cli.fails(2, "revoke-sessions", "-", input="\n \n")
    assert "give it alone" in cli.fails(
        2, "revoke-sessions", "carol@example.com", "-", input="bob@example.com\n"
    )
    assert tokens_by_email(db) == {"carol@example.com": ["carol-1", "carol-2"]}


def test_all_needs_a_yes_without_a_terminal(cli: Cli, db: Database, people: dict[str, Any]) -> None:
    message = cli.fails(2, "revoke-sessions", "--all")
    assert message == (
        "Error: refusing to revoke every user's sessions without confirmation: no terminal to "
        "ask on; pass --yes"
    )
    assert "name no users" in cli.fails(2, "revoke-sessions", "--all", "alice@example.com")
    assert "or pass --all" in cli.fails(2, "revoke-sessions")
    dry = cli.ok("revoke-sessions", "--all", "--dry-run")
    assert dry.stderr == "Would revoke every user's sessions: 5 sessions in all.\n"
    assert tokens_by_email(db) == ALL_TOKENS

    result = cli.ok("revoke-sessions", "--all", "--yes", "-o", "json")
    assert json.loads(result.stdout) == {
        "revoked": 5,
        "all": True,
        "dry_run": False,
        "token_table": "accesstoken",
        "users": [],
        "missing": [],
    }
    assert result.stderr == "Revoked every user's sessions: 5 sessions in all.\n"
    assert db.count("accesstoken") == 0
    again = cli.ok("revoke-sessions", "--all", "--yes")
    assert (again.stdout, again.stderr) == (
        "",
        "Revoked every user's sessions: 0 sessions in all.\n",
    )


#: The question is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_all_asks_on_a_terminal(spawn: Any, db: Database, people: dict[str, Any]) -> None:
    import pexpect

    child = spawn("revoke-sessions", "--all")
    child.expect(r"Revoke all 5 sessions, of every user\? \[y/N\]")
    child.sendline("n")
    child.expect("aborted; no session was revoked")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert tokens_by_email(db) == ALL_TOKENS

    child = spawn("revoke-sessions", "--all")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect("Revoked every user's sessions: 5 sessions in all.")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert db.count("accesstoken") == 0


def test_an_email_is_escaped_for_the_terminal_and_exact_in_json(cli: Cli, db: Database) -> None:
    (user,) = db.seed("eve\x1b]0;owned\x07@example.com")
    add_tokens(db.url, "eve\x1b]0;owned\x07@example.com", "eve-1")
    result = cli.ok("revoke-sessions", str(user["id"]), "-o", "json")
    assert result.stderr == "Revoked 1 session of eve\\x1b]0;owned\\x07@example.com.\n"
    assert json.loads(result.stdout)["users"][0]["email"] == "eve\x1b]0;owned\x07@example.com"
    assert db.count("accesstoken") == 0


def test_without_a_token_table_there_is_nothing_to_revoke(
    empty_cli: Cli, database_at: type[Database]
) -> None:
    usersctl = empty_cli
    usersctl.ok("init-db")  # the user table alone
    database_at(usersctl.url).seed("alice@example.com")
    result = usersctl.ok("revoke-sessions", "alice@example.com", "-o", "json")
    assert result.stderr == NO_TABLE + "\n"
    summary = json.loads(result.stdout)
    assert (summary["revoked"], summary["token_table"]) == (0, None)
    assert summary["users"][0]["revoked"] == 0
    assert usersctl.ok("revoke-sessions", "--all", "--yes").stderr == NO_TABLE + "\n"
    usersctl.fails(3, "revoke-sessions", "nobody@example.com")  # a missing user is still missing


def test_a_renamed_token_table_is_found_by_its_foreign_key(
    usersctl: Usersctl, database_url: str
) -> None:
    """An app's ``users`` and ``user_sessions`` tables, and a table named ``accesstoken`` that
    has the columns but belongs to something else: only the one that references users goes."""
    serial = "INTEGER PRIMARY KEY" if database_url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    if is_mysql(database_url):  # SERIAL is BIGINT UNSIGNED there: INTEGER keys could not refer
        serial = "INTEGER PRIMARY KEY AUTO_INCREMENT"
    for statement in (
        f"CREATE TABLE users (id {serial}, email VARCHAR(320) NOT NULL, "
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)",
        f"CREATE TABLE device (id {serial}, name VARCHAR(50))",
        "CREATE TABLE user_sessions (token VARCHAR(43) PRIMARY KEY, created_at TIMESTAMP NOT "
        "NULL, user_id INTEGER NOT NULL REFERENCES users(id))",
        "CREATE TABLE accesstoken (token VARCHAR(43) PRIMARY KEY, created_at TIMESTAMP, "
        "user_id INTEGER REFERENCES device(id))",
        "INSERT INTO users (email, hashed_password, is_active, is_superuser, is_verified) "
        "VALUES ('ann@example.com', 'x', true, false, false), "
        "('ben@example.com', 'x', true, false, false)",
        "INSERT INTO device (name) VALUES ('printer')",
        "INSERT INTO accesstoken (token, created_at, user_id) VALUES "
        "('device-1', CURRENT_TIMESTAMP, 1)",
    ):
        asyncio.run(sql(database_url, statement))
    add_tokens(database_url, "ann@example.com", "ann-1", "ann-2", table="user_sessions")
    add_tokens(database_url, "ben@example.com", "ben-1", table="user_sessions")

    def left(table: str) -> list[str]:
        return [row[0] for row in asyncio.run(sql(database_url, f"SELECT token FROM {table}"))]

    result = usersctl.ok("revoke-sessions", "1", "-o", "json")  # ann, by her integer id
    summary = json.loads(result.stdout)
    assert (summary["revoked"], summary["token_table"]) == (2, "user_sessions")
    assert summary["users"] == [{"id": 1, "email": "ann@example.com", "revoked": 2}]
    assert left("user_sessions") == ["ben-1"]
    usersctl.ok("revoke-sessions", "--all", "--yes")
    assert left("user_sessions") == []
    assert left("accesstoken") == ["device-1"]
