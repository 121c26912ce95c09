"""usersctl against a live FastAPI Users app, on SQLite and PostgreSQL.

Three apps share the stories: FastAPI Users' guide model (UUID ids, ``fastapi_users_db_sqlalchemy``)
read from the database; an app with integer ids, a required ``tenant_id`` and a ``created_at``
filled by Python, loaded with ``--model``; and that same table read from the database, where
nothing says how ``created_at`` is filled.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from e2e_clients import Client, Usersctl
from fastapi_app import RunningApp, build_app
from sqlalchemy import select, update

from harness import is_mysql

ADMIN = "admin@example.com"
PASSWORD = "first password, long enough"
NEW_PASSWORD = "second password, also long"
REGISTERED = "registered@example.com"


@dataclass(frozen=True)
class Variant:
    """An app's models and how usersctl is told about them."""

    models: str
    integer_ids: bool
    model_path: str | None
    create_fields: tuple[str, ...] = ()
    register_fields: dict[str, Any] = field(default_factory=dict)
    #: Fields create-user must name when they are left out.
    required: tuple[str, ...] = ()


VARIANTS = {
    "uuid-read": Variant("app_uuid_model", integer_ids=False, model_path=None),
    "int-model": Variant(
        "app_int_model",
        integer_ids=True,
        model_path="app_int_model:User",
        create_fields=("--set", "tenant_id=7", "--set", "first_name=Ada"),
        register_fields={"tenant_id": 7},
        required=("tenant_id",),
    ),
    "int-read": Variant(
        "app_int_model",
        integer_ids=True,
        model_path=None,
        create_fields=(
            "--set",
            "tenant_id=7",
            "--set",
            "first_name=Ada",
            "--set",
            "created_at=2024-05-01T12:00:00+00:00",
        ),
        register_fields={"tenant_id": 7},
        required=("tenant_id", "created_at"),
    ),
}


@dataclass
class Story:
    variant: Variant
    app: RunningApp
    client: Client
    usersctl: Usersctl


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    """Make a client of an ASGI app (httpx's ASGI transport); closed at the end of the test."""
    clients: list[httpx.AsyncClient] = []

    def make(asgi_app: Any) -> Client:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi_app), base_url="http://app")
        clients.append(http)
        return Client(http)

    yield make
    for http in clients:
        await http.aclose()


@pytest.fixture(params=list(VARIANTS))
async def story(
    request: pytest.FixtureRequest, database_url: str, client_for: Any
) -> AsyncIterator[Story]:
    variant = VARIANTS[request.param]
    running = build_app(
        database_url, importlib.import_module(variant.models), integer_ids=variant.integer_ids
    )
    await running.create_tables()
    try:
        yield Story(
            variant, running, client_for(running.app), Usersctl(database_url, variant.model_path)
        )
    finally:
        await running.engine.dispose()


async def test_superuser_made_by_usersctl_logs_in_and_is_locked_out_and_back(story: Story) -> None:
    client, usersctl, variant = story.client, story.usersctl, story.variant

    # Create: a required column left out is named, and nothing is written
    if variant.required:
        message = await usersctl.fails(
            2, "create-user", ADMIN, "--superuser", "--password-stdin", input=PASSWORD + "\n"
        )
        for name in variant.required:
            assert name in message
        if "created_at" not in variant.required:
            assert "created_at" not in message  # the model's Python default fills it
        assert await story.app.count("user") == 0
    created = await usersctl.json(
        "create-user",
        ADMIN,
        "--superuser",
        "--password-stdin",
        *variant.create_fields,
        input=PASSWORD + "\n",
    )
    assert created["status"] == "created"
    assert created["is_superuser"] is True
    if variant.integer_ids:
        assert isinstance(created["id"], int)
        assert created["tenant_id"] == 7
        assert created["first_name"] == "Ada"
        assert created["created_at"]

    # Log in with both strategies and reach the superuser-only route
    jwt = await client.login("jwt", ADMIN, PASSWORD)
    assert jwt is not None
    response = await client.get("/admin", jwt)
    assert response.status_code == 200, response.text
    assert response.json() == {"admin": ADMIN}
    session = await client.login("db", ADMIN, PASSWORD)
    assert session is not None
    me = await client.get("/users/me", session)
    assert me.status_code == 200, me.text
    assert me.json()["id"] == created["id"]

    # Lock out: no login, and the database session is gone (not merely refused as inactive)
    rows = await usersctl.json("deactivate-user", ADMIN, "--force")
    assert rows == [
        {"id": created["id"], "email": ADMIN, "status": "deactivated", "revoked_tokens": 1}
    ]
    assert await client.login("jwt", ADMIN, PASSWORD) is None
    assert (await client.get("/session", session)).status_code == 401
    assert (await client.get("/session", jwt)).status_code == 200  # a JWT cannot be revoked...
    assert (await client.get("/admin", jwt)).status_code == 401  # ...but is refused while inactive

    # Back in: logins work again, the revoked session stays revoked
    await usersctl.ok("activate-user", ADMIN)
    jwt = await client.login("jwt", ADMIN, PASSWORD)
    assert jwt is not None
    assert (await client.get("/admin", jwt)).status_code == 200
    assert (await client.get("/users/me", session)).status_code == 401

    # New password: the old one fails, the new one works, sessions are revoked
    session = await client.login("db", ADMIN, PASSWORD)
    assert session is not None
    result = await usersctl.ok("set-password", ADMIN, "--password-stdin", input=NEW_PASSWORD + "\n")
    assert f"Revoked 1 access token of {ADMIN}." in result.stderr
    assert await client.login("jwt", ADMIN, PASSWORD) is None
    assert await client.login("jwt", ADMIN, NEW_PASSWORD) is not None
    assert (await client.get("/session", session)).status_code == 401


@pytest.mark.parametrize("story", ["int-model"], indirect=True)
async def test_keep_sessions_leaves_database_tokens_working(story: Story) -> None:
    client, usersctl = story.client, story.usersctl
    await client.register(REGISTERED, PASSWORD, **story.variant.register_fields)
    session = await client.login("db", REGISTERED, PASSWORD)
    assert session is not None

    rows = await usersctl.json("deactivate-user", REGISTERED, "--keep-sessions")
    assert rows[0]["status"] == "deactivated"
    assert "revoked_tokens" not in rows[0]
    assert (await client.get("/session", session)).status_code == 200
    assert (await client.get("/users/me", session)).status_code == 401  # inactive

    await usersctl.ok("activate-user", REGISTERED)
    assert (await client.get("/users/me", session)).status_code == 200


async def doctor(usersctl: Usersctl, *args: str) -> tuple[int, dict[str, Any]]:
    result = await usersctl("doctor", *args, "-o", "json")
    return result.exit_code, json.loads(result.stdout)


def counts_of(report: dict[str, Any]) -> dict[str, int]:
    check = next(c for c in report["checks"] if c["check"] == "password hashes")
    counts: dict[str, int] = check["counts"]
    return counts


async def test_registered_user_is_listed_and_its_hash_counted_by_doctor(story: Story) -> None:
    client, usersctl, variant = story.client, story.usersctl, story.variant
    registered = await client.register(REGISTERED, PASSWORD, **variant.register_fields)

    listed = await usersctl.json("list-users")
    assert [user["email"] for user in listed] == [REGISTERED]
    assert listed[0]["id"] == registered["id"]
    if variant.integer_ids:
        assert listed[0]["tenant_id"] == 7
        assert listed[0]["first_name"] is None
        assert listed[0]["created_at"]  # filled by the app
    assert "hashed_password" not in listed[0]

    code, report = await doctor(usersctl)
    assert counts_of(report) == {
        "argon2": 1,
        "argon2-outdated": 0,
        "bcrypt": 0,
        "unknown": 0,
        "disabled": 0,
    }
    model = next(c for c in report["checks"] if c["check"] == "model")["detail"]
    assert (variant.model_path or "read from the database") in model
    index = next(c for c in report["checks"] if c["check"] == "email index")
    # fastapi_users_db_sqlalchemy's table has no lower(email) index: doctor fails, --fix adds it;
    # on MySQL/MariaDB its unique index on email, in a _ci collation, is the email index.
    if variant.models == "app_uuid_model" and not is_mysql(usersctl.url):
        assert code == 6, report
        assert index["status"] == "fail"
        code, report = await doctor(usersctl, "--fix")
        assert code == 0, report
        assert next(c for c in report["checks"] if c["check"] == "email index")["status"] == "fixed"
        code, report = await doctor(usersctl)
    assert code == 0, report
    others = [check for check in report["checks"] if check["status"] not in ("ok", "skip")]
    assert others == [], others


@pytest.mark.parametrize("story", ["int-model"], indirect=True)
async def test_doctor_counts_a_bcrypt_hash_until_the_app_upgrades_it(story: Story) -> None:
    from pwdlib.hashers.bcrypt import BcryptHasher

    client, usersctl = story.client, story.usersctl
    await client.register(REGISTERED, PASSWORD, **story.variant.register_fields)
    table = story.app.models.User.__table__
    async with story.app.engine.begin() as connection:
        await connection.execute(
            update(table)
            .where(table.c.email == REGISTERED)
            .values(hashed_password=BcryptHasher().hash(PASSWORD))
        )
    _, report = await doctor(usersctl)
    assert counts_of(report)["bcrypt"] == 1
    assert await client.login("jwt", REGISTERED, PASSWORD) is not None
    _, report = await doctor(usersctl)
    assert counts_of(report)["bcrypt"] == 0
    assert counts_of(report)["argon2"] == 1


async def test_oauth_accounts_shown_unlinked_and_deleted_with_tokens(story: Story) -> None:
    client, usersctl, app = story.client, story.usersctl, story.app
    registered = await client.register(REGISTERED, PASSWORD, **story.variant.register_fields)
    await app.add_oauth_account(registered["id"], "google", "g-1")
    await app.add_oauth_account(registered["id"], "github", "gh-2")
    assert await client.login("db", REGISTERED, PASSWORD) is not None

    shown = await usersctl.json("show-user", REGISTERED)
    assert shown["oauth_accounts"] == [
        {"provider": "github", "account_id": "gh-2", "account_email": "gh-2@github.example"},
        {"provider": "google", "account_id": "g-1", "account_email": "g-1@google.example"},
    ]
    assert shown["access_tokens"] == 1
    table = await usersctl.ok("show-user", REGISTERED)
    assert "github:gh-2 (gh-2@github.example)" in table.stdout
    for output in (table.stdout, json.dumps(shown)):
        assert "secret-" not in output  # OAuth tokens are never shown

    rows = await usersctl.json("unlink-oauth", REGISTERED, "google")
    assert [(row["provider"], row["status"]) for row in rows] == [("google", "unlinked")]
    message = await usersctl.fails(3, "unlink-oauth", REGISTERED, "google")
    assert "github" in message  # says which links the user does have
    assert await app.count("oauth_account") == 1

    await usersctl.ok("delete-user", REGISTERED, "--yes")
    assert await app.count("user") == 0
    assert await app.count("oauth_account") == 0
    assert await app.count("accesstoken") == 0
    async with app.engine.connect() as connection:
        users = await connection.execute(select(app.models.User.__table__.c.email))
        assert users.all() == []
