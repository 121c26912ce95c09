"""An app's own defaults, and users without a password (in-process; one test through the installed
entry point).

The app here maps its user as a dataclass (``MappedAsDataclass``): a required unique
``username``, an ``id`` and a ``created_on`` made by ``default_factory``, a ``handle`` whose
column default reads the row being inserted, a ``plan`` the database fills, and a nullable
``hashed_password`` for users who log in only through OAuth. Its access token table calls the
creation time ``created_on``. Effects are checked with plain SQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from harness import Cli, is_mysql, sql_engine

APP_MODELS = '''
    import datetime as dt
    import uuid
    from typing import Any

    from fastapi_users_db_sqlalchemy.generics import GUID
    from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String
    from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column


    def utcnow() -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)


    def handle_of(context: Any) -> str:
        """A column default that reads the row being inserted."""
        return "@" + context.get_current_parameters()["username"].lower()


    class Base(MappedAsDataclass, DeclarativeBase):
        pass


    class Member(Base):
        __tablename__ = "user"

        username: Mapped[str] = mapped_column(String(40), unique=True)
        email: Mapped[str] = mapped_column(String(320), unique=True)
        hashed_password: Mapped[str | None] = mapped_column(String(1024), default=None)
        is_active: Mapped[bool] = mapped_column(Boolean, default=True)
        is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
        is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
        id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default_factory=uuid.uuid4)
        created_on: Mapped[dt.datetime] = mapped_column(
            DateTime(timezone=True), default_factory=utcnow
        )
        handle: Mapped[str] = mapped_column(String(41), init=False, insert_default=handle_of)
        plan: Mapped[str] = mapped_column(String(20), init=False, server_default="free")


    class MemberOAuth(Base):
        __tablename__ = "oauth_account"

        oauth_name: Mapped[str] = mapped_column(String(100))
        access_token: Mapped[str] = mapped_column(String(1024))
        account_id: Mapped[str] = mapped_column(String(320))
        account_email: Mapped[str] = mapped_column(String(320))
        user_id: Mapped[uuid.UUID] = mapped_column(
            GUID, ForeignKey("user.id", ondelete="cascade")
        )
        expires_at: Mapped[int | None] = mapped_column(Integer, default=None)
        refresh_token: Mapped[str | None] = mapped_column(String(1024), default=None)
        id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default_factory=uuid.uuid4)


    class MemberToken(Base):
        __tablename__ = "accesstoken"

        token: Mapped[str] = mapped_column(String(43), primary_key=True)
        user_id: Mapped[uuid.UUID] = mapped_column(
            GUID, ForeignKey("user.id", ondelete="cascade")
        )
        created_on: Mapped[dt.datetime] = mapped_column(
            DateTime(timezone=True), default_factory=utcnow
        )
'''


async def _run(url: str, sql: str, params: dict[str, Any] | None, metadata: Any = None) -> Any:
    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            if metadata is not None:
                await connection.run_sync(metadata.create_all)
                return None
            result = await connection.execute(text(sql), params or {})
            return result.all() if result.returns_rows else None
    finally:
        await engine.dispose()


def sql(url: str, statement: str, **params: Any) -> Any:
    """Run one plain SQL statement on the test database; its rows, if it returns any."""
    return asyncio.run(_run(url, statement, params))


def app_database(url: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Write the app's models into ``folder`` (where usersctl runs), create its tables as the app
    does (``create_all``), and return ``module:Member`` for --model."""
    name = f"club_app_{uuid.uuid4().hex[:10]}"  # modules stay imported in this process
    (folder / f"{name}.py").write_text(textwrap.dedent(APP_MODELS))
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(name)
    asyncio.run(_run(url, "", None, metadata=module.Base.metadata))
    return f"{name}:Member"


def moment(value: Any) -> dt.datetime:
    """A timestamp as SQLite (text, naive UTC) or PostgreSQL (aware) returns it, made aware."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def members(url: str) -> dict[str, Any]:
    """Every user row, by email, read with plain SQL."""
    rows = sql(
        url,
        'SELECT email, username, id, created_on, handle, plan, hashed_password FROM "user"',
    )
    return {row.email: row for row in rows}


def test_create_user_takes_the_dataclass_defaults_of_the_model(
    usersctl: Any, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = app_database(database_url, tmp_path, monkeypatch)
    before = dt.datetime.now(dt.timezone.utc)

    # Only the username the app requires: no --set id=, no --set created_on=
    created = json.loads(
        usersctl.ok(
            "--model", model, "create-user", "Ann@Example.com", "--generate-password",
            "--set", "username=Ann", "-o", "json",
        ).stdout
    )  # fmt: skip
    usersctl.ok(
        "--model", model, "create-user", "bo@example.com", "--generate-password",
        "--set", "username=Bo", "--set", "plan=pro",
    )  # fmt: skip
    after = dt.datetime.now(dt.timezone.utc)

    rows = members(database_url)
    ann, bo = rows["Ann@example.com"], rows["bo@example.com"]
    # id from the field's default_factory (uuid4), one per user
    assert uuid.UUID(str(ann.id)) == uuid.UUID(created["id"])
    assert uuid.UUID(str(ann.id)).version == 4
    assert uuid.UUID(str(ann.id)) != uuid.UUID(str(bo.id))
    # created_on from the field's default_factory, at the time of the command
    for row in (ann, bo):
        assert before - dt.timedelta(seconds=1) <= moment(row.created_on) <= after
    # handle: a column default that takes SQLAlchemy's context and reads the row
    assert (ann.handle, bo.handle) == ("@ann", "@bo")
    # plan: the database's server_default, unless given (an init=False field)
    assert (ann.plan, bo.plan) == ("free", "pro")

    # The username has no default of any kind: named, and nothing written
    message = usersctl.fails(
        2, "--model", model, "create-user", "cy@example.com", "--generate-password"
    )
    assert "not given: username (give them with --set FIELD=VALUE)" in message
    assert "created_on" not in message
    assert "--model" not in message.split("(give them")[1]
    assert sql(database_url, 'SELECT count(*) FROM "user"')[0][0] == 2


def test_without_model_the_apps_python_defaults_are_required_and_model_is_named(
    empty_cli: Cli, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app_database(database_url, tmp_path, monkeypatch)

    message = empty_cli.fails(
        2, "create-user", "ann@example.com", "--generate-password", "--set", "username=Ann"
    )
    # created_on and handle are NOT NULL with no server default: the app fills them in Python
    assert "not given: created_on, handle (give them with --set FIELD=VALUE)" in message
    assert "--model module.path:ClassName would supply the app's own defaults" in message
    rows = '{"email": "bo@example.com", "hashed_password": null, "username": "Bo"}\n'
    message = empty_cli.fails(2, "import-users", "-", "--format", "jsonl", input=rows)
    assert "line 1: required field(s) with no default not given: created_on" in message
    assert "--model" in message
    assert sql(database_url, 'SELECT count(*) FROM "user"')[0][0] == 0

    # Given, they are written as given
    empty_cli.ok(
        "create-user", "ann@example.com", "--generate-password", "--set", "username=Ann",
        "--set", "created_on=2020-05-06T07:08:09+00:00", "--set", "handle=@a",
    )  # fmt: skip
    row = members(database_url)["ann@example.com"]
    assert moment(row.created_on) == dt.datetime(2020, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    assert (row.handle, row.plan) == ("@a", "free")


def test_import_users_fills_the_models_defaults_as_the_app_would(
    empty_cli: Cli, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = app_database(database_url, tmp_path, monkeypatch)
    given_id = uuid.uuid4()
    hashed = argon2_hash()
    lines = [
        {"email": "ann@example.com", "hashed_password": hashed, "username": "Ann"},
        {"email": "bo@example.com", "hashed_password": None, "username": "Bo"},  # OAuth only
        {
            "email": "cy@example.com",
            "hashed_password": hashed,
            "username": "Cy",
            "id": str(given_id),
        },
    ]
    (tmp_path / "users.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "more.csv").write_text(
        f'email,username,hashed_password\ndi@example.com,Di,"{hashed}"\n'
    )
    before = dt.datetime.now(dt.timezone.utc)
    empty_cli.ok("--model", model, "import-users", "users.jsonl")
    empty_cli.ok("--model", model, "import-users", "more.csv")
    after = dt.datetime.now(dt.timezone.utc)

    rows = members(database_url)
    assert sorted(rows) == ["ann@example.com", "bo@example.com", "cy@example.com", "di@example.com"]
    ids = {email: uuid.UUID(str(row.id)) for email, row in rows.items()}
    assert ids["cy@example.com"] == given_id  # a given id is kept
    assert len(set(ids.values())) == 4  # the others: a uuid4 each, from the default_factory
    assert all(ids[email].version == 4 for email in ids)
    for row in rows.values():
        assert before - dt.timedelta(seconds=1) <= moment(row.created_on) <= after
        assert row.handle == "@" + row.username.lower()  # each row's own context
        assert row.plan == "free"
    assert rows["bo@example.com"].hashed_password is None
    assert rows["ann@example.com"].hashed_password == hashed

    # An update keeps the user's id and created_on: defaults are for new users only
    kept = rows["ann@example.com"]
    update = json.dumps({"email": "ann@example.com", "hashed_password": hashed, "username": "Anna"})
    empty_cli.ok(
        "--model", model, "import-users", "-", "--on-conflict", "update", input=update + "\n"
    )
    ann = members(database_url)["ann@example.com"]
    assert (ann.username, ann.id, ann.created_on) == ("Anna", kept.id, kept.created_on)


def argon2_hash() -> str:
    """A real Argon2 hash, made once by the library (not read back through usersctl)."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),)).hash("pw")


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_users_without_a_password_round_trip_exactly(
    empty_cli: Cli, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    model = app_database(database_url, tmp_path, monkeypatch)
    hashed = argon2_hash()
    seeds = [
        {
            "email": f"user{number}@example.com",
            "hashed_password": password,
            "username": f"u{number}",
        }
        for number, password in enumerate([hashed, None, None, hashed, hashed, None, hashed, None])
    ]
    seeded = "".join(json.dumps(seed) + "\n" for seed in seeds)
    empty_cli.ok("--model", model, "import-users", "-", "--format", "jsonl", input=seeded)
    before = sorted(tuple(row) for row in sql(database_url, 'SELECT * FROM "user"'))

    empty_cli.ok("--model", model, "export-users", f"first.{fmt}", "--include-hashes")
    exported = (tmp_path / f"first.{fmt}").read_text()
    if fmt == "jsonl":
        assert exported.splitlines()[7].count('"hashed_password":null') == 1  # line 8
    if fmt == "csv":
        # An empty cell means "not given": a user without a password is written null
        assert sum(",null," in line for line in exported.splitlines()) == 4

    sql(database_url, 'DELETE FROM "user"')
    empty_cli.ok("--model", model, "import-users", f"first.{fmt}")
    after = sorted(tuple(row) for row in sql(database_url, 'SELECT * FROM "user"'))
    assert after == before
    assert len([row for row in after if row[2] is None]) == 4
    empty_cli.ok("--model", model, "export-users", f"second.{fmt}", "--include-hashes")
    assert (tmp_path / f"second.{fmt}").read_text() == exported


def test_a_null_hash_where_the_column_forbids_it_is_refused(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")  # FastAPI Users' table: hashed_password NOT NULL
    rows = '{"email": "ann@example.com", "hashed_password": "$argon2id$x"}\n'
    rows += '{"email": "bo@example.com", "hashed_password": null}\n'
    rows += '{"email": "cy@example.com"}\n'
    message = empty_cli.fails(2, "import-users", "-", "--format", "jsonl", input=rows)
    assert "line 2: hashed_password is null, but the column does not allow NULL" in message
    assert "line 3: password or hashed_password is missing" in message
    # A null hash beside a password: the password is hashed and stored
    row = '{"email": "di@example.com", "hashed_password": null, "password": "pw-of-di-1234"}\n'
    empty_cli.ok("import-users", "-", "--format", "jsonl", input=row)
    [(stored,)] = sql(database_url, 'SELECT hashed_password FROM "user"')
    assert stored.startswith("$argon2id$")


def test_doctor_checks_the_apps_own_token_table(
    empty_cli: Cli, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = app_database(database_url, tmp_path, monkeypatch)

    def checks(*args: str, code: int) -> dict[str, Any]:
        result = empty_cli(*args, "doctor", "-o", "json")
        assert result.returncode == code, result.stdout + result.stderr
        return {check["check"]: check for check in json.loads(result.stdout)["checks"]}

    # With --model: the model's own tables; without: the columns FastAPI Users needs, where the
    # token's creation time may be called created_on. (No lower(email) index: exit 6 for that;
    # on MySQL/MariaDB the model's unique index on email, in a _ci collation, is that index.)
    mysql = is_mysql(database_url)
    for args in (("--model", model), ()):
        found = checks(*args, code=0 if mysql else 6)
        assert found["accesstoken table"]["status"] == "ok", found
        assert found["oauth_account table"]["status"] == "ok", found
        assert found["user table"]["status"] == "ok", found
        assert [name for name, check in found.items() if check["status"] == "fail"] == (
            [] if mysql else ["email index"]
        )

    # A token table without the token column fails both ways, naming it
    sql(database_url, "ALTER TABLE accesstoken RENAME COLUMN token TO value")
    for args in (("--model", model), ()):
        found = checks(*args, code=6)
        assert found["accesstoken table"]["status"] == "fail"
        assert "column token is missing" in found["accesstoken table"]["detail"]
    # Nor one without any creation time, without --model
    sql(database_url, "ALTER TABLE accesstoken RENAME COLUMN value TO token")
    sql(database_url, "ALTER TABLE accesstoken DROP COLUMN created_on")
    found = checks(code=6)
    assert (
        "no datetime column for the token's creation time" in found["accesstoken table"]["detail"]
    )
