"""The app's own rules, end to end: usersctl run from this folder (so that ``app_rules`` imports
as the app's module would) beside a live FastAPI Users app (``app_rules``) driven over httpx, on
SQLite and PostgreSQL. usersctl runs in-process, and through the installed entry point (a
subprocess) in the tests marked ``entry_point``.

Reset and verification links go through the app's own routes; issued tokens of both strategies
reach ``/users/me``, and revoke-sessions ends the database ones; the app's hooks fire with
``--user-manager`` and not without; its password policy and the built-in one refuse weak
passwords with exit 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import app_rules
import httpx
import pytest
from sqlalchemy import select

from harness import invoke

HERE = Path(__file__).resolve().parent
PASSWORD = "first password, long enough"
NEW_PASSWORD = "second password, also long"
USER = "carol@example.com"
MANAGER = "app_rules:get_user_manager"
ENV = {"APP_SECRET": app_rules.SECRET, "APP_JWT_SECRET": app_rules.JWT_SECRET}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


@dataclass
class Story:
    url: str
    http: httpx.AsyncClient
    engine: Any
    entry_point: bool  # usersctl through its installed entry point, else in-process

    async def usersctl(self, *args: str, input: str | None = None, code: int = 0) -> Run:
        """usersctl in this folder, without a terminal; must exit ``code``."""
        if not self.entry_point:
            # In a thread: usersctl runs its own event loop, as a process of its own would.
            ran = await asyncio.to_thread(
                invoke, ["-d", self.url, *args], input=input, env=ENV, cwd=HERE
            )
            result = Run(ran.exit_code, ran.stdout, ran.stderr)
            assert result.code == code, f"exit {result.code}, expected {code}\n{ran.output}"
            assert ran.exception is None or isinstance(ran.exception, SystemExit), ran.exception
            return result
        executable = str(Path(sys.executable).with_name("usersctl"))
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("USERSCTL_") and key != "DATABASE_URL"
        }
        done = await asyncio.to_thread(
            subprocess.run,
            [executable, "-d", self.url, *args],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env={**env, **ENV},
            cwd=HERE,
            timeout=120,
        )
        result = Run(done.returncode, done.stdout, done.stderr)
        assert result.code == code, (
            f"exit {result.code}, expected {code}\n{done.stdout}{done.stderr}"
        )
        assert "Traceback" not in result.stderr
        return result

    async def hooks(self) -> list[tuple[str, str]]:
        """The hook calls recorded so far, in order, as (hook, email)."""
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(app_rules.HookCall.hook, app_rules.HookCall.email).order_by(
                    app_rules.HookCall.id
                )
            )
            return [(row.hook, row.email) for row in rows]

    async def hook_detail(self, hook: str) -> str:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                select(app_rules.HookCall.detail)
                .where(app_rules.HookCall.hook == hook)
                .order_by(app_rules.HookCall.id.desc())
            )
            detail = rows.scalars().first()
            assert detail is not None, hook
            return str(detail)

    async def user(self, email: str) -> Any:
        async with self.engine.connect() as connection:
            table = app_rules.User.__table__
            return (await connection.execute(select(table).where(table.c.email == email))).one()

    async def register(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        response = await self.http.post(
            "/auth/register", json={"email": email, "password": password}
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def login(self, email: str, password: str) -> int:
        response = await self.http.post(
            "/auth/jwt/login", data={"username": email, "password": password}
        )
        return response.status_code

    async def me(self, token: str) -> httpx.Response:
        return await self.http.get("/users/me", headers={"Authorization": f"Bearer {token}"})


@pytest.fixture
async def story(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Story]:
    app, engine = app_rules.build_app(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(app_rules.Base.metadata.create_all)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")
    try:
        entry_point = request.node.get_closest_marker("entry_point") is not None
        yield Story(database_url, http, engine, entry_point)
    finally:
        await http.aclose()
        await engine.dispose()


async def test_a_reset_link_resets_through_the_app_once(story: Story) -> None:
    await story.register(USER)
    token = (await story.usersctl("reset-link", USER, "--secret-env", "APP_SECRET")).stdout.strip()

    response = await story.http.post(
        "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert await story.login(USER, NEW_PASSWORD) == 200
    assert await story.login(USER, PASSWORD) == 400

    # The password changed: the fingerprint no longer matches, the link is dead
    again = await story.http.post(
        "/auth/reset-password", json={"token": token, "password": "a third password here"}
    )
    assert again.status_code == 400
    assert again.json()["detail"] == "RESET_PASSWORD_BAD_TOKEN"
    assert await story.login(USER, NEW_PASSWORD) == 200


async def test_a_verify_link_verifies_through_the_app(story: Story) -> None:
    await story.register(USER)
    link = (
        await story.usersctl(
            "verify-link",
            USER,
            "--secret-env",
            "APP_SECRET",
            "--url-template",
            "https://app.example/verify?token={token}",
        )
    ).stdout.strip()
    response = await story.http.post("/auth/verify", json={"token": link.split("token=")[1]})
    assert response.status_code == 200, response.text
    assert (await story.user(USER)).is_verified is True
    run = await story.usersctl("verify-link", USER, "--secret-env", "APP_SECRET", code=4)
    assert "already verified" in run.stderr


@pytest.mark.entry_point
async def test_issued_tokens_of_both_strategies_reach_users_me(story: Story) -> None:
    created = await story.register(USER)
    database = (await story.usersctl("issue-token", USER, "--strategy", "database")).stdout.strip()
    jwt = (
        await story.usersctl(
            "issue-token", USER, "--strategy", "jwt", "--secret-env", "APP_JWT_SECRET"
        )
    ).stdout.strip()
    for token in (database, jwt):
        me = await story.me(token)
        assert me.status_code == 200, me.text
        assert me.json()["id"] == created["id"]
    # A JWT signed with another secret is refused: the app checks what usersctl signed
    wrong = (
        await story.usersctl("issue-token", USER, "--strategy", "jwt", "--secret-env", "APP_SECRET")
    ).stdout.strip()
    assert (await story.me(wrong)).status_code == 401
    # Deactivating ends the database session
    await story.usersctl("deactivate-user", USER)
    assert (await story.me(database)).status_code == 401
    await story.usersctl("issue-token", USER, "--strategy", "database", code=4)


async def test_revoke_sessions_ends_issued_and_logged_in_database_sessions(story: Story) -> None:
    created = await story.register(USER)
    await story.register("dave@example.com")
    issued = (await story.usersctl("issue-token", USER, "--strategy", "database")).stdout.strip()
    login = await story.http.post("/auth/db/login", data={"username": USER, "password": PASSWORD})
    assert login.status_code == 200, login.text
    logged_in = login.json()["access_token"]
    other = await story.http.post(
        "/auth/db/login",
        data={"username": "dave@example.com", "password": PASSWORD},
    )
    jwt = (
        await story.usersctl(
            "issue-token", USER, "--strategy", "jwt", "--secret-env", "APP_JWT_SECRET"
        )
    ).stdout.strip()
    for token in (issued, logged_in, jwt):
        assert (await story.me(token)).status_code == 200

    run = await story.usersctl("revoke-sessions", created["id"])
    assert run.stderr == f"Revoked 2 sessions of {USER}.\n"
    # The app's DatabaseStrategy no longer finds them; a JWT cannot be revoked; Dave keeps his.
    assert (await story.me(issued)).status_code == 401
    assert (await story.me(logged_in)).status_code == 401
    assert (await story.me(jwt)).status_code == 200
    assert (await story.me(other.json()["access_token"])).status_code == 200
    again = await story.usersctl("revoke-sessions", USER)
    assert again.stderr == f"Revoked 0 sessions of {USER}.\n"


async def test_the_built_in_policy_refuses_weak_passwords_and_no_hook_fires(story: Story) -> None:
    run = await story.usersctl("create-user", USER, "--password-stdin", input="pw\n", code=2)
    assert "too short" in run.stderr
    await story.usersctl("create-user", USER, "--password-stdin", input=PASSWORD + "\n")
    assert await story.login(USER, PASSWORD) == 200
    await story.usersctl("update-user", USER, "--verified")
    await story.usersctl("set-password", USER, "--password-stdin", input=NEW_PASSWORD + "\n")
    await story.usersctl("delete-user", USER, "--yes")
    assert await story.hooks() == []  # without --user-manager the app's hooks do not run


async def test_the_managers_hasher_is_not_overridden_by_password_helper_or_hash_scheme(
    story: Story,
) -> None:
    # With --user-manager the manager's password_helper hashes: an option that would choose
    # another hasher beside it is refused before anything is read or written.
    file = HERE / "refused-import.jsonl"  # not written: the refusal comes before the file
    for option in (("--password-helper", "app_rules:password_helper"), ("--hash-scheme", "bcrypt")):
        for command in (
            ("create-user", USER, "--password-stdin"),
            ("set-password", USER, "--password-stdin"),
            ("import-users", str(file)),
        ):
            run = await story.usersctl(
                "--user-manager", MANAGER, *option, *command, input=PASSWORD + "\n", code=2
            )
            assert run.stderr.startswith(f"Error: {option[0]} and --user-manager exclude each")
    assert await story.hooks() == []
    async with story.engine.connect() as connection:
        table = app_rules.User.__table__
        assert (await connection.execute(select(table))).all() == []

    # The manager alone: its own helper makes the hash, and the app's login takes it.
    await story.usersctl(
        "--user-manager", MANAGER, "create-user", USER, "--password-stdin", input=PASSWORD + "\n"
    )
    assert (await story.user(USER)).hashed_password.startswith("$argon2id$")
    assert await story.login(USER, PASSWORD) == 200


@pytest.mark.entry_point
async def test_the_apps_hooks_fire_where_its_routes_would_run_them(story: Story) -> None:
    manager = ("--user-manager", MANAGER)

    # The app's validate_password, not the built-in policy: exit 2 with the app's reason
    run = await story.usersctl(
        *manager, "create-user", USER, "--password-stdin", input="nine char\n", code=2
    )
    assert "the app refused the password: Password should be at least 10 characters" in run.stderr
    run = await story.usersctl(
        *manager, "create-user", USER, "--password-stdin", input="carol's own password\n", code=2
    )
    assert "Password should not contain e-mail" in run.stderr
    assert await story.hooks() == []

    # create-user: on_after_register after the commit; the app's hasher made a hash it accepts
    await story.usersctl(*manager, "create-user", USER, "--password-stdin", input=PASSWORD + "\n")
    assert await story.hooks() == [("on_after_register", USER)]
    assert await story.login(USER, PASSWORD) == 200

    # update-user: on_after_update with the fields changed, then on_after_verify
    await story.usersctl(*manager, "update-user", USER, "--verified")
    assert (await story.hooks())[1:] == [("on_after_update", USER), ("on_after_verify", USER)]
    assert await story.hook_detail("on_after_update") == '["is_verified"]'

    # set-password: validate_password first (nothing changes), then on_after_reset_password
    await story.usersctl(
        *manager, "set-password", USER, "--password-stdin", input="short\n", code=2
    )
    await story.usersctl(
        *manager, "set-password", USER, "--password-stdin", input=NEW_PASSWORD + "\n"
    )
    assert (await story.hooks())[3:] == [("on_after_reset_password", USER)]
    assert await story.login(USER, NEW_PASSWORD) == 200

    # delete-user: on_before_delete (committed with the delete), then on_after_delete
    await story.usersctl(*manager, "delete-user", USER, "--yes")
    assert (await story.hooks())[4:] == [("on_before_delete", USER), ("on_after_delete", USER)]

    # The class works as well as the dependency
    await story.usersctl(
        "--user-manager",
        "app_rules:UserManager",
        "create-user",
        "dave@example.com",
        "--generate-password",
    )
    assert (await story.hooks())[-1] == ("on_after_register", "dave@example.com")


async def test_forgot_password_and_request_verify_go_through_the_apps_hooks(story: Story) -> None:
    await story.register(USER)
    manager = ("--user-manager", MANAGER)
    run = await story.usersctl(*manager, "forgot-password", USER)
    assert run.stdout == ""  # the token goes to the app's hook, not to the terminal
    token = await story.hook_detail("on_after_forgot_password")
    response = await story.http.post(
        "/auth/reset-password", json={"token": token, "password": NEW_PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert await story.login(USER, NEW_PASSWORD) == 200

    await story.usersctl(*manager, "request-verify", USER)
    token = await story.hook_detail("on_after_request_verify")
    response = await story.http.post("/auth/verify", json={"token": token})
    assert response.status_code == 200, response.text
    await story.usersctl(*manager, "request-verify", USER, code=4)  # verified now

    # reset-link takes the manager's secret, lifetime and hasher
    link = (await story.usersctl(*manager, "reset-link", USER)).stdout.strip()
    response = await story.http.post(
        "/auth/reset-password", json={"token": link, "password": "a third password, long"}
    )
    assert response.status_code == 200, response.text

    # Without the manager there is no app to call
    await story.usersctl("forgot-password", USER, code=2)


async def test_a_hook_that_fails_after_the_commit_is_reported(story: Story) -> None:
    run = await story.usersctl(
        "--user-manager",
        MANAGER,
        "create-user",
        "explode@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
        code=1,
    )
    assert "on_after_register hook failed" in run.stderr
    assert "the welcome email could not be sent" in run.stderr
    assert "committed" in run.stderr
    assert (await story.user("explode@example.com")).is_active is True


async def test_imports_check_every_password_with_the_app_and_register_with_hooks(
    story: Story, tmp_path: Path
) -> None:
    manager = ("--user-manager", MANAGER)
    rows = [
        {"email": "ann@example.com", "password": "a long enough one"},
        {"email": "bob@example.com", "password": "tiny"},
        {"email": "cy@example.com", "password": "cy-and-more-words"},
    ]
    path = tmp_path / "users.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run = await story.usersctl(*manager, "import-users", str(path), code=2)
    assert "line 2: the app refused the password: Password should be at least 10" in run.stderr
    assert "line 3: the app refused the password: Password should not contain e-mail" in run.stderr
    assert "tiny" not in run.stderr

    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"email": "ann@example.com", "password": "a long enough one"})
        + "\n"
        + json.dumps({"email": "bob@example.com", "password": "another long one"})
        + "\n"
    )
    await story.usersctl(*manager, "import-users", str(good))
    assert await story.hooks() == []  # without --hooks no welcome email goes out
    assert await story.login("bob@example.com", "another long one") == 200
    await story.usersctl("delete-user", "ann@example.com", "bob@example.com", "--yes")
    await story.usersctl(*manager, "import-users", str(good), "--hooks")
    assert sorted(await story.hooks()) == [
        ("on_after_register", "ann@example.com"),
        ("on_after_register", "bob@example.com"),
    ]
