"""create-user --dry-run on a table with integer ids takes no value from the id's sequence:
the user it shows has the id the real run then gets."""

from __future__ import annotations

import asyncio
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from usersctl.engine import create_engine

MODEL = """
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTable
    from sqlalchemy import Identity, Integer
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class User(SQLAlchemyBaseUserTable[int], Base):
        __tablename__ = "user"

        id: Mapped[int] = mapped_column(Integer, {identity}primary_key=True)
"""


async def _fetch(url: str, sql: str) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return (await connection.execute(text(sql))).all()
    finally:
        await engine.dispose()


@pytest.mark.parametrize("identity", ["", "Identity(), "], ids=["serial", "identity"])
def test_a_dry_run_takes_no_id(usersctl: Any, tmp_path: Path, identity: str) -> None:
    name = f"int_models_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODEL.format(identity=identity)))
    model = ("--model", f"{name}:User")
    usersctl.ok(*model, "init-db")

    def create(*args: str) -> Any:
        result = usersctl.ok(*args, "--generate-password", "-o", "json")
        return json.loads(result.stdout)

    for args in (model, ()):  # the app's model, and the table read from the database
        for _ in range(3):
            shown = create(*args, "create-user", "ann@example.com", "--dry-run")
            assert (shown["id"], shown["status"]) == (1, "would create")
    assert asyncio.run(_fetch(usersctl.url, 'SELECT count(*) FROM "user"')) == [(0,)]
    if usersctl.url.startswith("postgresql"):
        sequence = "SELECT last_value, is_called FROM user_id_seq"
        assert asyncio.run(_fetch(usersctl.url, sequence)) == [(1, False)]

    assert create("create-user", "ann@example.com")["id"] == 1
    assert create(*model, "create-user", "bob@example.com", "--dry-run")["id"] == 2
    assert create("create-user", "bob@example.com")["id"] == 2
    assert asyncio.run(_fetch(usersctl.url, 'SELECT id, email FROM "user" ORDER BY id')) == [
        (1, "ann@example.com"),
        (2, "bob@example.com"),
    ]
