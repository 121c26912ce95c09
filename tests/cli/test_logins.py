"""OAuth accounts and access tokens in the tables init-db made (read from the database)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from harness import Cli, Database

SECRET = "ya29.secret-oauth-token"


def oauth_row(user_id: str, provider: str, account_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "user_id": uuid.UUID(user_id),
        "oauth_name": provider,
        "access_token": SECRET,
        "refresh_token": SECRET + "-refresh",
        "expires_at": None,
        "account_id": account_id,
        "account_email": f"{account_id}@{provider}.example",
    }


def token_row(user_id: str, token: str) -> dict[str, Any]:
    return {
        "token": token,
        "user_id": uuid.UUID(user_id),
        "created_at": dt.datetime.now(dt.timezone.utc),
    }


def tokens_of(db: Database, email: str) -> int:
    """How many access tokens the user of ``email`` has, counted with SQL."""
    (row,) = db.query(
        'SELECT count(t.token) AS n FROM "user" u LEFT JOIN accesstoken t ON t.user_id = u.id '
        "WHERE u.email = :email",
        email=email,
    )
    return int(row["n"])


def providers_of(db: Database, email: str) -> list[str]:
    """The OAuth providers the user of ``email`` is linked to, read with SQL."""
    found = db.query(
        'SELECT o.oauth_name FROM "user" u JOIN oauth_account o ON o.user_id = u.id '
        "WHERE u.email = :email ORDER BY o.oauth_name",
        email=email,
    )
    return [row["oauth_name"] for row in found]


@pytest.fixture
def cli(empty_cli: Cli) -> Cli:
    """The CLI on a database with FastAPI Users' three tables (``db`` uses it too)."""
    empty_cli.ok("init-db", "--oauth", "--access-tokens")
    return empty_cli


@pytest.fixture
def people(db: Database) -> dict[str, dict[str, Any]]:
    """Alice (superuser, two OAuth accounts, two tokens) and Bob (one token)."""
    alice, bob = db.seed_specs(
        {"email": "alice@example.com", "is_superuser": True}, {"email": "bob@example.com"}
    )
    db.insert(
        "oauth_account",
        oauth_row(str(alice["id"]), "google", "g-100"),
        oauth_row(str(alice["id"]), "github", "gh-7"),
    )
    db.insert(
        "accesstoken",
        token_row(str(alice["id"]), "alice-token-1"),
        token_row(str(alice["id"]), "alice-token-2"),
        token_row(str(bob["id"]), "bob-token-1"),
    )
    return {"alice": alice, "bob": bob}


def test_show_user_lists_oauth_accounts_and_counts_tokens_never_showing_secrets(
    cli: Cli, people: dict[str, Any]
) -> None:
    shown = cli.user("alice@example.com")
    assert shown["oauth_accounts"] == [
        {"provider": "github", "account_id": "gh-7", "account_email": "gh-7@github.example"},
        {"provider": "google", "account_id": "g-100", "account_email": "g-100@google.example"},
    ]
    assert shown["access_tokens"] == 2
    assert cli.user("bob@example.com")["oauth_accounts"] == []
    table = cli.ok("show-user", "alice@example.com").stdout
    assert "github:gh-7 (gh-7@github.example), google:g-100 (g-100@google.example)" in table
    assert "access_tokens" in table
    for output in (table, cli.ok("show-user", "alice@example.com", "-o", "json").stdout):
        assert SECRET not in output
        assert "alice-token" not in output


def test_show_user_without_oauth_or_token_tables_shows_neither(empty_cli: Cli) -> None:
    empty_cli.ok("init-db")
    Database(empty_cli.url).seed("carol@example.com")
    shown = empty_cli.user("carol@example.com")
    assert "oauth_accounts" not in shown
    assert "access_tokens" not in shown


def test_deactivate_user_revokes_access_tokens_unless_kept_or_dry_run(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    # --dry-run counts but keeps them
    result = cli.ok("deactivate-user", "bob@example.com", "--dry-run", "-o", "json")
    assert "Would revoke 1 access token of bob@example.com." in result.stderr
    assert db.count("accesstoken") == 3
    # --keep-sessions leaves them alone
    rows = cli.json("deactivate-user", "bob@example.com", "--keep-sessions")
    assert rows == [
        {"id": str(people["bob"]["id"]), "email": "bob@example.com", "status": "deactivated"}
    ]
    assert db.count("accesstoken") == 3
    # Locking out a user already inactive still ends their sessions
    result = cli.ok("deactivate-user", "bob@example.com", "-o", "json")
    assert "Revoked 1 access token of bob@example.com." in result.stderr
    assert '"revoked_tokens": 1' in result.stdout
    assert '"status": "already inactive"' in result.stdout
    assert db.count("accesstoken") == 2
    # Activating touches no tokens
    cli.ok("activate-user", "bob@example.com")
    assert db.count("accesstoken") == 2
    assert tokens_of(db, "alice@example.com") == 2


def test_an_import_update_revokes_the_tokens_of_users_it_locks_out_or_gives_a_password(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    import json

    bob_hash = db.stored_hash("bob@example.com")
    rows = [
        {"email": "alice@example.com", "password": "a new one"},  # a new password
        {"email": "bob@example.com", "hashed_password": bob_hash},  # the same hash: no change
    ]
    summary = cli.json(
        "import-users",
        "-",
        "--format",
        "jsonl",
        "--on-conflict",
        "update",
        "-o",
        "json",
        input="".join(json.dumps(row) + "\n" for row in rows),
    )
    assert summary["updated"] == 2 and summary["revoked_tokens"] == 2
    assert tokens_of(db, "alice@example.com") == 0
    assert tokens_of(db, "bob@example.com") == 1

    deactivate = json.dumps({**rows[1], "is_active": False}) + "\n"
    args = ("import-users", "-", "--format", "jsonl", "--on-conflict", "update", "-o", "json")
    assert cli.json(*args, "--dry-run", input=deactivate)["revoked_tokens"] == 1
    assert cli.json(*args, "--keep-sessions", input=deactivate)["revoked_tokens"] == 0
    assert db.count("accesstoken") == 1
    cli.ok("activate-user", "bob@example.com")
    assert cli.json(*args, input=deactivate)["revoked_tokens"] == 1
    assert db.count("accesstoken") == 0


def test_set_password_revokes_the_users_tokens_only(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    result = cli.ok("set-password", "alice@example.com", "--password-stdin", input="new pw 123\n")
    assert "Revoked 2 access tokens of alice@example.com." in result.stderr
    assert tokens_of(db, "alice@example.com") == 0
    assert tokens_of(db, "bob@example.com") == 1
    row = cli.json(
        "set-password",
        "bob@example.com",
        "--password-stdin",
        "--keep-sessions",
        input="pw 4567 and more\n",
    )
    assert "revoked_tokens" not in row
    assert tokens_of(db, "bob@example.com") == 1


def test_unlink_oauth_removes_one_link_and_says_when_there_is_none(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    dry = cli.json("unlink-oauth", "alice@example.com", "github", "--dry-run")
    assert dry[0]["status"] == "would unlink"
    assert db.count("oauth_account") == 2
    rows = cli.json("unlink-oauth", "alice@example.com", "github")
    assert rows == [
        {
            "id": str(people["alice"]["id"]),
            "email": "alice@example.com",
            "provider": "github",
            "account_id": "gh-7",
            "account_email": "gh-7@github.example",
            "status": "unlinked",
        }
    ]
    assert providers_of(db, "alice@example.com") == ["google"]

    message = cli.fails(3, "unlink-oauth", "alice@example.com", "github")
    assert "github" in message
    assert "google:g-100" in message
    assert "g-999" in cli.fails(
        3, "unlink-oauth", "alice@example.com", "google", "--account-id", "g-999"
    )
    cli.fails(3, "unlink-oauth", "nobody@example.com", "google")
    assert db.count("oauth_account") == 1


def test_delete_user_removes_oauth_accounts_and_tokens_in_one_go(
    cli: Cli, db: Database, people: dict[str, Any]
) -> None:
    cli.ok("delete-user", "alice@example.com", "--yes", "--force")
    assert db.count("user") == 1
    assert db.count("oauth_account") == 0
    assert db.count("accesstoken") == 1  # Bob's
