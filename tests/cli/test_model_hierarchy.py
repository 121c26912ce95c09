"""A user class that inherits from a parent table (joined-table inheritance): the app's ``User``
is a ``Principal``, whose ``principals`` table holds the id, the discriminator ``type``, and
``created_at``/``updated_at``; the user table's id is a foreign key to it. With --model usersctl
writes both rows as the app's ORM does; without, it reads the hierarchy from the database and
refuses to write. Checked with plain SQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from harness import Cli, Usersctl, is_mysql, sql_engine

#: The app's models: a user class inheriting from a principals table.
PRINCIPAL_MODELS = (
    Path(__file__).resolve().parents[1] / "e2e" / "principal_app_model.py"
).read_text()


async def _sql(url: str, statement: str) -> Any:
    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return result.all() if result.returns_rows else None
    finally:
        await engine.dispose()


def sql(url: str, statement: str) -> Any:
    return asyncio.run(_sql(url, statement))


def moment(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def principals(url: str) -> dict[uuid.UUID, Any]:
    rows = sql(url, "SELECT id, type, created_at, updated_at FROM principals")
    return {uuid.UUID(str(row.id)): row for row in rows}


def users(url: str) -> dict[str, uuid.UUID]:
    return {row.email: uuid.UUID(str(row.id)) for row in sql(url, 'SELECT id, email FROM "user"')}


def app_model(cli: Cli | Usersctl, tmp_path: Path) -> str:
    """Write the app's models where usersctl runs, and create its tables with init-db."""
    name = f"principal_app_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(PRINCIPAL_MODELS)
    model = f"{name}:User"
    created = cli.ok("--model", model, "init-db").stderr
    assert created.index("Created table principals") < created.index("Created table user")
    return model


def argon2_hash() -> str:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    return PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),)).hash("pw")


def test_create_update_delete_write_both_rows(
    usersctl: Any, database_url: str, tmp_path: Path
) -> None:
    model = app_model(usersctl, tmp_path)

    # Create: no --set id (the parent's default gives it), the discriminator set
    created = json.loads(
        usersctl.ok(
            "--model", model, "create-user", "ann@example.com", "--generate-password",
            "--set", "nickname=Ann", "-o", "json",
        ).stdout
    )  # fmt: skip
    ann = uuid.UUID(created["id"])
    assert users(database_url) == {"ann@example.com": ann}
    parent = principals(database_url)[ann]
    assert parent.type == "user"
    assert created["type"] == "user"  # the parent's columns are shown too
    first_update = moment(parent.updated_at)

    # Update: a change to the user fills the parent's onupdate column. MySQL's DATETIME keeps
    # whole seconds, so there the update waits until a second after the stored one.
    if is_mysql(database_url):
        time.sleep(max(0.0, first_update.timestamp() + 1.05 - time.time()))
    else:
        time.sleep(0.05)
    usersctl.ok("--model", model, "update-user", "ann@example.com", "--set", "nickname=Annie")
    after = principals(database_url)[ann]
    assert moment(after.updated_at) > first_update
    assert moment(after.created_at) == moment(parent.created_at)
    assert sql(database_url, 'SELECT nickname FROM "user"') == [("Annie",)]

    # Delete: both rows go
    usersctl.ok("--model", model, "create-user", "bo@example.com", "--generate-password")
    usersctl.ok("--model", model, "delete-user", "ann@example.com", "--yes")
    left = users(database_url)
    assert list(left) == ["bo@example.com"]
    assert list(principals(database_url)) == [left["bo@example.com"]]


def test_import_and_export_through_the_hierarchy(
    empty_cli: Cli, database_url: str, tmp_path: Path
) -> None:
    model = app_model(empty_cli, tmp_path)
    hashed = argon2_hash()
    rows = [
        {"email": "ann@example.com", "hashed_password": hashed, "nickname": "Ann"},
        {"email": "bo@example.com", "hashed_password": hashed},
    ]
    (tmp_path / "new.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    empty_cli.ok("--model", model, "import-users", "new.jsonl")
    ids = users(database_url)
    assert sorted(ids) == ["ann@example.com", "bo@example.com"]
    parents = principals(database_url)
    assert set(parents) == set(ids.values())  # a parent row for each, with the same id
    assert {row.type for row in parents.values()} == {"user"}

    # Export includes the parent's columns; the export comes back exactly
    empty_cli.ok("--model", model, "export-users", "all.jsonl", "--include-hashes")
    exported = (tmp_path / "all.jsonl").read_text()
    first = json.loads(exported.splitlines()[0])
    assert {"type", "created_at", "updated_at"} <= first.keys()
    sql(database_url, 'DELETE FROM "user"')
    sql(database_url, "DELETE FROM principals")
    empty_cli.ok("--model", model, "import-users", "all.jsonl")
    assert principals(database_url).keys() == parents.keys()
    empty_cli.ok("--model", model, "export-users", "again.jsonl", "--include-hashes")
    assert (tmp_path / "again.jsonl").read_text() == exported

    # An update by import fills the parent's onupdate column, and keeps created_at
    before = principals(database_url)[ids["bo@example.com"]]
    time.sleep(1.05 if is_mysql(database_url) else 0.05)  # MariaDB's DATETIME keeps whole seconds
    update = json.dumps({"email": "bo@example.com", "hashed_password": hashed, "nickname": "Bo"})
    empty_cli.ok("--model", model, "import-users", "-", "--on-conflict", "update", input=update)
    after = principals(database_url)[ids["bo@example.com"]]
    assert moment(after.updated_at) > moment(before.updated_at)
    assert moment(after.created_at) == moment(before.created_at)


def test_without_model_the_hierarchy_is_read_but_not_written(
    empty_cli: Cli, database_url: str, tmp_path: Path
) -> None:
    model = app_model(empty_cli, tmp_path)
    empty_cli.ok("--model", model, "create-user", "ann@example.com", "--generate-password")

    # Reads join the parent table: its columns are shown
    listed = json.loads(empty_cli.ok("list-users", "-o", "json").stdout)
    assert [user["email"] for user in listed] == ["ann@example.com"]
    assert listed[0]["type"] == "user"
    assert {"created_at", "updated_at"} <= listed[0].keys()

    # Writes need the app's model, which sets the discriminator and the updated_at its code
    # maintains: without it, exit 2 naming the parent table, and nothing written
    for command in (
        ("create-user", "bo@example.com", "--generate-password"),
        ("update-user", "ann@example.com", "--superuser"),
        ("delete-user", "ann@example.com", "--yes"),
        ("import-users", "-", "--format", "jsonl"),
    ):
        message = empty_cli.fails(2, *command, input='{"email": "cy@example.com"}\n')
        assert "the 'user' table takes its ids from the 'principals' table" in message
        assert "--model module.path:ClassName" in message
    assert list(users(database_url)) == ["ann@example.com"]
    assert len(principals(database_url)) == 1
