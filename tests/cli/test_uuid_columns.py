"""An app whose user id is declared with sqlalchemy's own UUID types, which SQLite keeps as 32
hex digits in a column it reflects as NUMERIC (declared UUID) or CHAR(32) (declared Uuid).

doctor passes the app's own schema, every output shows the id in one form, lookups take both
forms, and FastAPI Users' own adapter reads back the users usersctl writes.
"""

from __future__ import annotations

import asyncio
import csv
import importlib
import io
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from harness import Cli
from usersctl.engine import create_engine, session_factory

MODEL = """
    import uuid

    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTable
    from sqlalchemy import {kind}
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class User(SQLAlchemyBaseUserTable[uuid.UUID], Base):
        __tablename__ = "user"

        id: Mapped[uuid.UUID] = mapped_column({kind}, primary_key=True, default=uuid.uuid4)
"""


async def _stored_ids(url: str) -> list[Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text('SELECT id FROM "user" ORDER BY email'))
            return [row[0] for row in rows]
    finally:
        await engine.dispose()


async def _read_with_fastapi_users(url: str, user_class: Any, ids: list[uuid.UUID]) -> list[str]:
    from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase

    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            adapter = SQLAlchemyUserDatabase(session, user_class)
            found = [await adapter.get(user_id) for user_id in ids]
            return [user.email for user in found if user is not None]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["UUID", "Uuid"])
def test_uuid_declared_ids_pass_doctor_and_show_in_one_form(
    empty_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    name = f"uuid_models_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODEL.format(kind=kind)))
    model = ("--model", f"{name}:User")
    empty_cli.ok(*model, "init-db")

    # doctor checks the app's schema by the model's type, and by the table's alone
    for args in (model, ()):
        report = json.loads(empty_cli(*args, "doctor", "-o", "json").stdout)
        user_table = next(c for c in report["checks"] if c["check"] == "user table")
        assert user_table["status"] == "ok", report

    made = [
        json.loads(empty_cli.ok(*model, "create-user", "ann@example.com", "--generate-password",
                               "-o", "json").stdout)["id"],
        json.loads(empty_cli.ok("create-user", "bob@example.com", "--generate-password",
                               "-o", "json").stdout)["id"],
    ]  # fmt: skip
    ids = [uuid.UUID(made_id) for made_id in made]
    assert made == [str(user_id) for user_id in ids]  # hyphenated

    # Stored as the model's type writes them (32 hex digits on SQLite), by plain SQL
    stored = asyncio.run(_stored_ids(empty_cli.url))
    if empty_cli.url.startswith("sqlite"):
        assert stored == [user_id.hex for user_id in ids]
    else:
        assert [uuid.UUID(str(value)) for value in stored] == ids

    # One form in every output, with and without --model
    for args in (model, ()):
        listed = json.loads(empty_cli.ok(*args, "list-users", "-o", "json").stdout)
        assert [row["id"] for row in listed] == made
        lines = empty_cli.ok(*args, "export-users", "-").stdout.splitlines()
        assert [json.loads(line)["id"] for line in lines] == made
        exported = csv.DictReader(
            io.StringIO(empty_cli.ok(*args, "export-users", "-", "-o", "csv").stdout)
        )
        assert [row["id"] for row in exported] == made
        table = empty_cli.ok(*args, "list-users").stdout
        assert made[0] in table and ids[0].hex not in table
        # Lookups take either form
        for given in (made[0], ids[0].hex, ids[0].hex.upper()):
            shown = json.loads(empty_cli.ok(*args, "show-user", given, "-o", "json").stdout)
            assert (shown["id"], shown["email"]) == (made[0], "ann@example.com")

    # FastAPI Users' own adapter, with the app's model, finds both users
    monkeypatch.syspath_prepend(str(tmp_path))
    user_class = importlib.import_module(name).User
    found = asyncio.run(_read_with_fastapi_users(empty_cli.url, user_class, ids))
    assert found == ["ann@example.com", "bob@example.com"]

    # A round trip through an export keeps the ids, in the stored form
    backup = tmp_path / "backup.jsonl"
    empty_cli.ok("export-users", str(backup), "--include-hashes")
    empty_cli.ok("delete-user", *made, "--yes", "--force")
    empty_cli.ok("import-users", str(backup))
    assert asyncio.run(_stored_ids(empty_cli.url)) == stored
