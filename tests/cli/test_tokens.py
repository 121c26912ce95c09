"""reset-link, verify-link and issue-token: tokens made as FastAPI Users makes them, read back
here with PyJWT and checked against the database with plain SQL. (That the app accepts them is
shown in tests/e2e/test_e2e_app_rules.py.)"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
import pytest
import sqlalchemy as sa
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

if TYPE_CHECKING:
    from tests.cli.conftest import Cli, Database, Usersctl

SECRET = "a secret long enough for HS512 too: sixty-four bytes or more, as RFC 7518 says"
ENV = {"APP_SECRET": SECRET}


def claims(token: str, audience: str | list[str], algorithm: str = "HS256") -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, SECRET, audience=audience, algorithms=[algorithm])
    return decoded


def rows(url: str, sql: str) -> list[Any]:
    """Plain SQL on the test database through SQLAlchemy's own engine, not usersctl's."""
    from harness import sql_engine

    async def query() -> list[Any]:
        engine = sql_engine(url)
        try:
            async with engine.connect() as connection:
                return list(await connection.execute(sa.text(sql)))
        finally:
            await engine.dispose()

    return asyncio.run(query())


def test_reset_link_is_forgot_passwords_token(cli: Cli, db: Database) -> None:
    (user,) = db.seed("alice@example.com")
    result = cli("reset-link", "alice@example.com", "--secret-env", "APP_SECRET", env=ENV)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    data = claims(token, "fastapi-users:reset")
    assert data["sub"] == str(user["id"])
    assert abs(data["exp"] - (time.time() + 3600)) < 60
    # The fingerprint is a hash of the stored hash: it no longer matches once the password changes
    assert PasswordHash((Argon2Hasher(),)).verify(
        db.stored_hash("alice@example.com"), data["password_fgpt"]
    )
    assert "valid until" in result.stderr
    assert SECRET not in result.output


def test_reset_link_options(cli: Cli, db: Database, tmp_path: Path) -> None:
    db.seed("alice@example.com")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    result = cli.ok(
        "reset-link",
        "ALICE@example.com",
        "--secret-file",
        str(secret_file),
        "--url-template",
        "https://app.example/reset?token={token}",
        "--lifetime",
        "30m",
        "--audience",
        "my-app:reset",
    )
    link = result.stdout.strip()
    assert link.startswith("https://app.example/reset?token=")
    data = claims(link.split("token=", 1)[1], "my-app:reset")
    assert abs(data["exp"] - (time.time() + 1800)) < 60

    as_json = json.loads(
        cli(
            "reset-link", "alice@example.com", "--secret-env", "APP_SECRET", "-o", "json", env=ENV
        ).stdout
    )
    assert set(as_json) == {"id", "email", "token", "expires_at"}

    # Usage errors: no secret, a template without {token}, a bad lifetime, an unset variable
    assert "--secret-env NAME or --secret-file PATH" in cli.fails(
        2, "reset-link", "alice@example.com"
    )
    assert "{token}" in cli.fails(
        2,
        "reset-link",
        "alice@example.com",
        "--secret-env",
        "APP_SECRET",
        "--url-template",
        "https://x/",
        env=ENV,
    )
    assert "lifetime" in cli.fails(
        2,
        "reset-link",
        "alice@example.com",
        "--secret-env",
        "APP_SECRET",
        "--lifetime",
        "soon",
        env=ENV,
    )
    assert "NO_SUCH_VAR" in cli.fails(
        2, "reset-link", "alice@example.com", "--secret-env", "NO_SUCH_VAR"
    )
    assert cli.fails(3, "reset-link", "nobody@example.com", "--secret-env", "APP_SECRET", env=ENV)


def test_inactive_user_gets_no_reset_link_unless_forced(cli: Cli, db: Database) -> None:
    db.seed("gone@example.com", is_active=False)
    message = cli.fails(4, "reset-link", "gone@example.com", "--secret-env", "APP_SECRET", env=ENV)
    assert "inactive" in message
    forced = cli("reset-link", "gone@example.com", "--secret-env", "APP_SECRET", "--force", env=ENV)
    assert forced.exit_code == 0, forced.output
    assert claims(forced.stdout.strip(), "fastapi-users:reset")
    assert "inactive" in forced.stderr


def test_verify_link_is_request_verifys_token(cli: Cli, db: Database) -> None:
    (user,) = db.seed("new@example.com")
    db.seed("done@example.com", is_verified=True)
    result = cli("verify-link", "new@example.com", "--secret-env", "APP_SECRET", env=ENV)
    assert result.exit_code == 0, result.output
    data = claims(result.stdout.strip(), "fastapi-users:verify")
    assert (data["sub"], data["email"]) == (str(user["id"]), "new@example.com")
    message = cli.fails(4, "verify-link", "done@example.com", "--secret-env", "APP_SECRET", env=ENV)
    assert "already verified" in message


def test_issue_token_database_inserts_one_row_and_prints_it_once(cli: Cli, db: Database) -> None:
    cli.ok("init-db", "--access-tokens")
    (user,) = db.seed("support@example.com")
    result = cli.ok("issue-token", "support@example.com", "--strategy", "database")
    token = result.stdout.strip()
    assert len(token) >= 40
    stored = rows(cli.url, "SELECT token, user_id, created_at FROM accesstoken")
    assert len(stored) == 1
    assert stored[0][0] == token
    assert str(stored[0][1]).replace("-", "") == str(user["id"]).replace("-", "")
    assert stored[0][2] is not None
    assert "not shown again" in result.stderr
    assert "--strategy jwt" in cli.fails(
        2, "issue-token", "support@example.com", "--strategy", "database", "--lifetime", "1h"
    )


def test_issue_token_jwt_is_jwt_strategys_token(cli: Cli, db: Database) -> None:
    (user,) = db.seed("robot@example.com")
    result = cli(
        "issue-token",
        "robot@example.com",
        "--strategy",
        "jwt",
        "--secret-env",
        "APP_SECRET",
        "--lifetime",
        "2d",
        "--algorithm",
        "HS512",
        "-o",
        "json",
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    data = claims(row["token"], "fastapi-users:auth", "HS512")
    assert data["aud"] == ["fastapi-users:auth"]
    assert data["sub"] == str(user["id"])
    assert abs(data["exp"] - (time.time() + 2 * 86400)) < 60
    assert "--secret-env" in cli.fails(2, "issue-token", "robot@example.com", "--strategy", "jwt")


def test_inactive_users_get_no_token_and_superusers_need_a_yes(cli: Cli, db: Database) -> None:
    cli.ok("init-db", "--access-tokens")
    db.seed("gone@example.com", is_active=False)
    db.seed("root@example.com", is_superuser=True)
    for strategy in ("database", "jwt"):
        message = (
            cli.fails(
                4,
                "issue-token",
                "gone@example.com",
                "--strategy",
                strategy,
                "--secret-env",
                "APP_SECRET",
                env=ENV,
            )
            if strategy == "jwt"
            else cli.fails(4, "issue-token", "gone@example.com", "--strategy", strategy)
        )
        assert "inactive" in message
    message = cli.fails(2, "issue-token", "root@example.com", "--strategy", "database")
    assert "--yes" in message
    assert rows(cli.url, "SELECT count(*) FROM accesstoken")[0][0] == 0
    cli.ok("issue-token", "root@example.com", "--strategy", "database", "--yes")
    assert rows(cli.url, "SELECT count(*) FROM accesstoken")[0][0] == 1


#: The question is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_superuser_token_asks_on_a_terminal(spawn: Any, usersctl: Usersctl, db: Database) -> None:
    import pexpect

    usersctl.ok("init-db", "--access-tokens")
    db.seed("root@example.com", is_superuser=True)
    child = spawn("issue-token", "root@example.com", "--strategy", "database")
    child.expect(r"root@example.com is a superuser. Issue an access token for them\? \[y/N\]")
    child.sendline("n")
    child.expect("aborted; no token was issued")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    child = spawn("issue-token", "root@example.com", "--strategy", "database")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect("not shown again")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert rows(db.url, "SELECT count(*) FROM accesstoken")[0][0] == 1


def test_tokens_through_the_entry_point(usersctl: Usersctl, database_at: type[Database]) -> None:
    usersctl.ok("init-db", "--access-tokens")
    db = database_at(usersctl.url or "")
    db.seed("alice@example.com")
    reset = usersctl.ok("reset-link", "alice@example.com", "--secret-env", "APP_SECRET", env=ENV)
    assert claims(reset.stdout.strip(), "fastapi-users:reset")["sub"]
    issued = usersctl.ok("issue-token", "alice@example.com", "--strategy", "database")
    assert rows(db.url, "SELECT token FROM accesstoken")[0][0] == issued.stdout.strip()
