"""Extra columns of a user table read from the database: shown everywhere, written with --set."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    func,
)

from harness import Cli, Database, is_mysql, sql_engine


async def _create_table(url: str) -> None:
    """An app's user table: FastAPI Users' columns, integer ids, and columns of its own."""
    table = Table(
        "user",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("email", String(320), nullable=False),
        Column("hashed_password", String(1024), nullable=False),
        Column("is_active", Boolean, nullable=False),
        Column("is_superuser", Boolean, nullable=False),
        Column("is_verified", Boolean, nullable=False),
        Column("tenant_id", Integer, nullable=False),
        Column("birthday", Date, nullable=True),
        Column("profile", JSON, nullable=True),
        Column("nickname", String(20), nullable=True),
        Column("newsletter", Boolean, nullable=False, server_default="0"),
    )
    from sqlalchemy import Index

    if is_mysql(url):  # no expression indexes: the unique index on email, in its _ci collation
        Index("ix_user_email", table.c.email, unique=True)
    else:
        Index("ix_user_email_lower", func.lower(table.c.email), unique=True)
    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.metadata.create_all)
    finally:
        await engine.dispose()


@pytest.fixture
def app_cli(empty_cli: Cli) -> Cli:
    if empty_cli.sqlite_path is not None:
        empty_cli.sqlite_path.touch()
    asyncio.run(_create_table(empty_cli.url))
    return empty_cli


def test_create_user_names_required_columns_and_writes_nothing(app_cli: Cli) -> None:
    message = app_cli.fails(2, "create-user", "ann@example.com", "--generate-password")
    assert "not given: tenant_id (give them with --set FIELD=VALUE)" in message
    assert Database(app_cli.url).count() == 0


def test_set_converts_each_value_to_its_column_type(app_cli: Cli) -> None:
    created = app_cli.json(
        "create-user",
        "ann@example.com",
        "--generate-password",
        "--set",
        "tenant_id=3",
        "--set",
        "birthday=1990-02-03",
        "--set",
        'profile={"langs": ["en", "fr"], "beta": true}',
        "--set",
        "nickname=Annie",
        "--set",
        "newsletter=yes",
    )
    expected = {
        "email": "ann@example.com",
        "tenant_id": 3,
        "birthday": "1990-02-03",
        "profile": {"langs": ["en", "fr"], "beta": True},
        "nickname": "Annie",
        "newsletter": True,
    }
    assert {key: created[key] for key in expected} == expected
    assert isinstance(created["id"], int)
    # Every output shows the extra columns, read back from the database
    assert {key: app_cli.user("ann@example.com")[key] for key in expected} == expected
    listed = app_cli.json("list-users")
    assert {key: listed[0][key] for key in expected} == expected
    header = app_cli.ok("list-users", "-o", "csv").stdout.splitlines()[0].split(",")
    assert header == [
        "id",
        "email",
        "is_active",
        "is_superuser",
        "is_verified",
        "tenant_id",
        "birthday",
        "profile",
        "nickname",
        "newsletter",
    ]
    assert "tenant_id" in app_cli.ok("show-user", str(created["id"])).stdout


REFUSED = [
    # (--set, the field named, what the message says)
    ("tenant_id=three", "tenant_id", "not an integer"),
    ("birthday=yesterday", "birthday", "birthday"),
    ("profile={not json", "profile", "profile"),
    ("nickname=" + "x" * 21, "nickname", "longer than 20"),
    ("newsletter=perhaps", "newsletter", "not a boolean"),
    ("tenant_id=null", "tenant_id", "may not be null"),
    ("color=blue", "color", "unknown field"),
    ("email=x@example.com", "email", "--email"),
    ("is_superuser=true", "is_superuser", "--superuser"),
    ("hashed_password=x", "hashed_password", "set-password"),
    ("tenant_id", "tenant_id", "FIELD=VALUE"),
]


def test_set_refuses_what_does_not_fit_naming_the_field(app_cli: Cli) -> None:
    # create-user and update-user read --set alike; update-user has no password to hash.
    for assignment in ("color=blue", "tenant_id=three"):
        message = app_cli.fails(
            2, "create-user", "ann@example.com", "--generate-password", "--set", assignment
        )
        assert assignment.split("=")[0] in message
    assert Database(app_cli.url).count() == 0
    app_cli.ok("create-user", "ann@example.com", "--generate-password", "--set", "tenant_id=1")
    before = Database(app_cli.url).user("ann@example.com")
    for assignment, named, says in REFUSED:
        message = app_cli.fails(2, "update-user", "ann@example.com", "--set", assignment)
        assert named in message, assignment
        assert says in message, assignment
    assert Database(app_cli.url).user("ann@example.com") == before


def test_update_user_sets_and_clears_columns_and_reports_changes(app_cli: Cli) -> None:
    app_cli.ok(
        "create-user", "ann@example.com", "--generate-password", "--set", "tenant_id=3",
        "--set", "nickname=Annie",
    )  # fmt: skip
    result = app_cli.ok(
        "update-user", "ann@example.com", "--set", "nickname=null", "--set", "tenant_id=4",
        "-o", "json",
    )  # fmt: skip
    row = json.loads(result.stdout)
    assert (row["nickname"], row["tenant_id"], row["status"]) == (None, 4, "updated")
    assert "nickname: Annie -> null" in result.stderr
    assert "tenant_id: 3 -> 4" in result.stderr
    assert Database(app_cli.url).user("ann@example.com")["nickname"] is None

    # The same values again change nothing; an id is never changed
    assert app_cli.json("update-user", "ann@example.com", "--set", "tenant_id=4")["status"] == (
        "unchanged"
    )
    assert "id" in app_cli.fails(2, "update-user", "ann@example.com", "--set", "id=99")
    dry = app_cli.json("update-user", "ann@example.com", "--set", "tenant_id=5", "--dry-run")
    assert dry["status"] == "would update"
    assert Database(app_cli.url).user("ann@example.com")["tenant_id"] == 4


def test_import_names_a_missing_required_column(app_cli: Cli, tmp_path: object) -> None:
    rows = '{"email": "a@example.com", "password": "pw-one-1234", "tenant_id": 1}\n'
    rows += '{"email": "b@example.com", "password": "pw-two-1234", "nickname": "Bee"}\n'
    message = app_cli.fails(2, "import-users", "-", "--format", "jsonl", input=rows)
    assert "line 2" in message
    assert "tenant_id" in message
    assert Database(app_cli.url).count() == 0
