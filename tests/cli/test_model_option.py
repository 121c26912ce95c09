"""--model module.path:ClassName: the app's own user model, imported from the current folder."""

from __future__ import annotations

import asyncio
import importlib
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from harness import Cli, Database, Usersctl, is_mysql
from usersctl.engine import create_engine

#: A FastAPI Users app's models written against ``fastapi_users_db_sqlalchemy``: integer ids,
#: a required ``tenant_id`` and a ``nickname``.
INT_MODELS = """
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTable
    from sqlalchemy import Integer, String
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class Account(SQLAlchemyBaseUserTable[int], Base):
        __tablename__ = "accounts"

        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        tenant_id: Mapped[int] = mapped_column(Integer, nullable=False)
        nickname: Mapped[str | None] = mapped_column(String(30))
"""

#: FastAPI Users' guide model: UUID ids stored by fastapi_users_db_sqlalchemy's own GUID type.
UUID_MODELS = """
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID
    from sqlalchemy import String
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class User(SQLAlchemyBaseUserTableUUID, Base):
        display: Mapped[str | None] = mapped_column("display_name", String(40))
"""


def write_module(folder: Path, source: str) -> str:
    """Write ``source`` as a module with a name of its own (modules stay imported in-process)."""
    name = f"app_models_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


async def _create_all(url: str, metadata: Any) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


def create_tables(url: str, folder: Path, module: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Create the module's tables as the app would, and return the module."""
    monkeypatch.syspath_prepend(str(folder))
    imported = importlib.import_module(module)
    asyncio.run(_create_all(url, imported.Base.metadata))
    return imported


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("no_such_module_xyz:User", "cannot import 'no_such_module_xyz' (ModuleNotFoundError"),
        ("usersctl.models", "expected module.path:ClassName"),
        ("usersctl.models:Nobody", "has no 'Nobody'"),
        ("json:loads", "not a mapped SQLAlchemy class"),
        ("usersctl.builtin_tables:Base", "not a mapped SQLAlchemy class"),
        ("usersctl.builtin_tables:AccessToken", "not a FastAPI Users user table"),
    ],
)
def test_a_model_that_cannot_be_used_is_a_usage_error(bare_cli: Cli, model: str, says: str) -> None:
    message = bare_cli.fails(2, "--model", model, "list-users", url=False)
    assert says in message
    assert model in message


def test_a_module_that_fails_to_import_is_a_usage_error(
    bare_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = write_module(tmp_path, "raise RuntimeError('settings missing: SECRET_KEY')\n")
    monkeypatch.chdir(tmp_path)
    message = bare_cli.fails(2, "--model", f"{module}:User", "list-users", url=False)
    assert "RuntimeError: settings missing: SECRET_KEY" in message
    message = bare_cli.fails(
        2, "list-users", url=False, env={"USERSCTL_USER_MODEL": f"{module}:User"}
    )
    assert "settings missing" in message


def test_a_model_whose_table_is_missing_is_a_database_problem(
    empty_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Database(empty_cli.url)  # nothing created: on SQLite the file is made by init-db below
    empty_cli.ok("init-db")
    module = write_module(tmp_path, INT_MODELS)
    monkeypatch.chdir(tmp_path)
    message = empty_cli.fails(5, "--model", f"{module}:Account", "list-users")
    assert "'accounts'" in message


#: Where the model is imported from is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_model_from_the_current_folder_with_the_installed_entry_point(
    usersctl: Usersctl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = write_module(tmp_path, INT_MODELS)  # usersctl runs in tmp_path
    assert usersctl.url is not None
    if usersctl.url.startswith("sqlite"):
        Path(usersctl.url.split(":///", 1)[1]).touch()
    create_tables(usersctl.url, tmp_path, module, monkeypatch)
    model = f"{module}:Account"

    created = json.loads(
        usersctl.ok(
            "--model", model, "create-user", "ann@example.com", "--generate-password",
            "--set", "tenant_id=4", "--set", "nickname=Annie", "-o", "json",
        ).stdout
    )  # fmt: skip
    assert (created["id"], created["tenant_id"], created["nickname"]) == (1, 4, "Annie")
    # USERSCTL_USER_MODEL does the same as --model
    listed = json.loads(
        usersctl.ok("list-users", "-o", "json", env={"USERSCTL_USER_MODEL": model}).stdout
    )
    assert [(user["id"], user["email"], user["tenant_id"]) for user in listed] == [
        (1, "ann@example.com", 4)
    ]

    # The same in-process, from the same folder
    monkeypatch.chdir(tmp_path)
    cli = Cli(usersctl.url)
    message = cli.fails(2, "--model", model, "create-user", "bo@example.com", "--generate-password")
    assert "not given: tenant_id (" in message
    assert cli.json("--model", model, "show-user", "1")["nickname"] == "Annie"
    report = json.loads(cli("--model", model, "doctor", "-o", "json").stdout)
    assert report["model"].startswith(f"{model} (--model); table 'accounts', integer ids")


def test_uuid_model_of_fastapi_users_db_sqlalchemy_with_a_renamed_column(
    empty_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = write_module(tmp_path, UUID_MODELS)
    if empty_cli.sqlite_path is not None:
        empty_cli.sqlite_path.touch()
    create_tables(empty_cli.url, tmp_path, module, monkeypatch)
    monkeypatch.chdir(tmp_path)
    model = f"{module}:User"

    created = empty_cli.json(
        "--model", model, "create-user", "bo@example.com", "--generate-password",
        "--set", "display_name=Bo",
    )  # fmt: skip
    assert created["display_name"] == "Bo"
    by_id = empty_cli.json("--model", model, "show-user", created["id"])
    assert by_id["email"] == "bo@example.com"
    updated = empty_cli.json(
        "--model", model, "update-user", created["id"].upper(), "--set", "display_name=null"
    )
    assert updated["display_name"] is None
    assert "valid UUID id" in empty_cli.fails(2, "--model", model, "show-user", "12")
    # The same table read from the database gives the same users
    assert empty_cli.json("show-user", created["id"])["display_name"] is None


def test_doctor_compares_the_model_with_the_table(
    empty_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database was made by an older version of the app; the app now has another column.
    old = write_module(
        tmp_path,
        INT_MODELS
        + "        legacy_code: Mapped[str] = mapped_column(String(5), nullable=False)\n",
    )
    new = write_module(
        tmp_path, INT_MODELS + "        plan: Mapped[int] = mapped_column(Integer, nullable=True)\n"
    )
    if empty_cli.sqlite_path is not None:
        empty_cli.sqlite_path.touch()
    create_tables(empty_cli.url, tmp_path, old, monkeypatch)
    monkeypatch.chdir(tmp_path)

    def user_table_check(model: str) -> dict[str, str]:
        result = empty_cli("--model", model, "doctor", "-o", "json")
        checks = {check["check"]: check for check in json.loads(result.stdout)["checks"]}
        if is_mysql(empty_cli.url):
            # FastAPI Users' unique index on email, in a _ci collation, is the email index there.
            assert checks["email index"]["status"] == "ok"
            failed = checks["user table"]["status"] == "fail"
            assert result.exit_code == (6 if failed else 0), result.output
        else:
            assert result.exit_code == 6, result.output  # and: no lower(email) index on these
            assert checks["email index"]["status"] == "fail"
        return checks["user table"]

    assert user_table_check(f"{old}:Account")["status"] == "ok"
    check = user_table_check(f"{new}:Account")
    assert check["status"] == "fail"
    assert "column plan is missing" in check["detail"]
    assert "legacy_code is NOT NULL without a default but the model lacks it" in check["detail"]


def test_init_db_with_a_model_creates_the_apps_table_and_the_index(
    empty_cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = write_module(tmp_path, INT_MODELS)
    monkeypatch.chdir(tmp_path)
    model = f"{module}:Account"
    assert "the model has no OAuth account table" in empty_cli.fails(
        2, "--model", model, "init-db", "--oauth"
    )
    result = empty_cli.ok("--model", model, "init-db")
    assert "Created table accounts" in result.stderr
    if is_mysql(empty_cli.url):  # no lower(email) index there: the unique one on email serves
        assert "Created index ix_accounts_email\n" in result.stderr
    else:
        assert "Created index ix_accounts_email_lower" in result.stderr
    # fastapi_users_db_sqlalchemy declares no lower(email) index; init-db added it
    assert empty_cli("--model", model, "doctor").exit_code == 0
    assert empty_cli.json("--model", model, "create-user", "a@example.com", "--generate-password",
                          "--set", "tenant_id=1")["id"] == 1  # fmt: skip
