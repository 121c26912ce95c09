"""Tables and column types: FastAPI Users' tutorial, written against usersctl.db, gives FastAPI
Users' own tables; UUIDs are stored in one normal form; timestamps come back timezone-aware."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import fastapi_users_db_sqlalchemy as theirs
import pytest
from sqlalchemy import Column, Integer, Table, insert, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.schema import CreateTable

import usersctl.db as ours
from fastapi_users_tutorial import TheirBase
from usersctl.db.types import GUID, TIMESTAMPAware, now_utc, to_uuid
from usersctl.engine import create_engine, session_factory

# FastAPI Users' SQLAlchemy tutorial (with OAuth and the database token strategy) on usersctl.db,
# with nothing but the import changed; fastapi_users_tutorial.py has it on fastapi_users_db_sqlalchemy.


class Base(DeclarativeBase):
    pass


class OAuthAccount(ours.SQLAlchemyBaseOAuthAccountTableUUID, Base):
    pass


class User(ours.SQLAlchemyBaseUserTableUUID, Base):
    oauth_accounts: Mapped[list[OAuthAccount]] = relationship("OAuthAccount", lazy="joined")


class AccessToken(ours.SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


# The same with integer ids, which FastAPI Users lets the app declare itself.


class TheirIntBase(DeclarativeBase):
    pass


class TheirIntUser(theirs.SQLAlchemyBaseUserTable[int], TheirIntBase):
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class IntBase(DeclarativeBase):
    pass


class IntUser(ours.SQLAlchemyBaseUserTable[int], IntBase):
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


TABLES = ("user", "oauth_account", "accesstoken")
DIALECTS = (sqlite.dialect(), postgresql.dialect())


def _default(column: Column[Any]) -> object:
    default = column.default
    if default is None:
        return None
    argument = getattr(default, "arg", None)
    return getattr(argument, "__name__", argument)  # uuid4, now_utc, True, False


def _column(column: Column[Any]) -> tuple[object, ...]:
    return (
        column.name,
        type(column.type).__name__,
        [column.type.compile(dialect=dialect) for dialect in DIALECTS],
        column.nullable,
        column.primary_key,
        _default(column),
        column.index,
        column.unique,
        sorted((fk.target_fullname, fk.ondelete) for fk in column.foreign_keys),
    )


def _indexes(table: Table) -> set[tuple[object, ...]]:
    return {
        (index.name, index.unique, tuple(str(expression) for expression in index.expressions))
        for index in table.indexes
    }


@pytest.mark.parametrize("name", TABLES)
def test_tutorial_tables_are_fastapi_users_tables(name: str) -> None:
    mine, reference = Base.metadata.tables[name], TheirBase.metadata.tables[name]

    # Same columns, in the same order, with the same types, nullability, defaults and keys...
    assert [_column(column) for column in mine.columns] == [
        _column(column) for column in reference.columns
    ]
    # ...so the same CREATE TABLE on both databases.
    for dialect in DIALECTS:
        assert str(CreateTable(mine).compile(dialect=dialect)) == str(
            CreateTable(reference).compile(dialect=dialect)
        )
    # Same indexes, plus the user table's unique index on lower(email).
    extra = _indexes(mine) - _indexes(reference)
    assert _indexes(reference) <= _indexes(mine)
    assert extra == (
        {("ix_user_email_lower", True, ('lower("user".email)',))} if name == "user" else set()
    )


def test_foreign_keys_cascade_on_delete() -> None:
    for name in ("oauth_account", "accesstoken"):
        (foreign_key,) = Base.metadata.tables[name].foreign_keys
        assert (foreign_key.target_fullname, foreign_key.ondelete) == ("user.id", "cascade")


def test_integer_id_user_table_is_theirs_plus_the_index() -> None:
    mine, reference = IntUser.__table__, TheirIntUser.__table__
    assert isinstance(mine, Table) and isinstance(reference, Table)

    assert [_column(column) for column in mine.columns] == [
        _column(column) for column in reference.columns
    ]
    assert _indexes(mine) - _indexes(reference) == {
        ("ix_user_email_lower", True, ('lower("user".email)',))
    }


def _describe(connection: Connection) -> dict[str, dict[str, object]]:
    """The tables as the database reports them (reflection), minus usersctl's extra index."""
    inspector = inspect(connection)
    described: dict[str, dict[str, object]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLite cannot reflect expression indexes; not needed
        for name in TABLES:
            described[name] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(name)
                ],
                "primary key": inspector.get_pk_constraint(name)["constrained_columns"],
                "foreign keys": [
                    (
                        fk["constrained_columns"],
                        fk["referred_table"],
                        fk["referred_columns"],
                        (fk["options"].get("ondelete") or "").lower(),
                    )
                    for fk in inspector.get_foreign_keys(name)
                ],
                "indexes": sorted(
                    (index["name"], index["column_names"], bool(index["unique"]))
                    for index in inspector.get_indexes(name)
                    if index["name"] != "ix_user_email_lower"
                ),
            }
    return described


async def test_tutorial_tables_create_the_same_schema_in_the_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        # Create with FastAPI Users' own mixins, read back, drop; then the same with usersctl's.
        async with engine.begin() as connection:
            await connection.run_sync(TheirBase.metadata.create_all)
            reference = await connection.run_sync(_describe)
            await connection.run_sync(TheirBase.metadata.drop_all)
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
            mine = await connection.run_sync(_describe)
            mysql = engine.dialect.name == "mysql"
            index_definition = await connection.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_user_email_lower'")
                if engine.dialect.name == "sqlite"
                else text(
                    "SELECT count(*) FROM information_schema.STATISTICS WHERE INDEX_NAME = 'ix_user_email_lower' AND TABLE_SCHEMA = DATABASE()"
                )
                if mysql
                else text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_user_email_lower'")
            )
    finally:
        await engine.dispose()

    if mysql:
        # By design: times as DATETIME(6), which keeps microseconds and passes 2038, where
        # FastAPI Users' TIMESTAMP drops them; and no lower(email) index (MariaDB has none: the
        # unique index on email, in its _ci collation, does its work).
        theirs_token, mine_token = (
            reference["accesstoken"]["columns"],
            mine["accesstoken"]["columns"],
        )
        assert [c[1] for c in theirs_token if c[0] == "created_at"] == ["TIMESTAMP"]
        assert [c[1] for c in mine_token if c[0] == "created_at"] == ["DATETIME"]
        reference["accesstoken"]["columns"] = mine_token
        assert index_definition == 0
    assert mine == reference
    assert reference["oauth_account"]["foreign keys"] == [(["user_id"], "user", ["id"], "cascade")]
    assert reference["accesstoken"]["foreign keys"] == [(["user_id"], "user", ["id"], "cascade")]
    if mysql:
        return
    compact = " ".join(index_definition.lower().replace('"', "").split())
    assert compact.startswith("create unique index ix_user_email_lower on ")
    assert "lower(email)" in compact.replace("(email)::text", "email")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield engine
    await engine.dispose()


async def test_guid_accepts_every_uuid_form_and_stores_one(engine: AsyncEngine) -> None:
    ids = [uuid.uuid4() for _ in range(6)]
    forms: list[object] = [
        ids[0],  # a UUID
        str(ids[1]).upper(),  # upper case
        "{" + str(ids[2]).upper() + "}",  # braced, as Windows tools print it
        ids[3].hex,  # 32 hex digits
        f"urn:uuid:{ids[4]}",
        f"  {ids[5]}\n",  # pasted with spaces
    ]
    users = ours.SQLAlchemyUserDatabase
    table = User.__table__
    async with session_factory(engine)() as session:
        for number, form in enumerate(forms):
            await session.execute(
                insert(table).values(id=form, email=f"u{number}@example.com", hashed_password="x")
            )
        await session.commit()

        # The ORM hands back UUID objects equal to the originals...
        stored = (await session.execute(select(User.id).order_by(User.email))).scalars().all()
        assert stored == ids
        assert all(type(value) is uuid.UUID for value in stored)
        # ...and any form finds the row.
        db = users(session, User)
        for original, form in zip(ids, forms, strict=True):
            found = await db.get(form)  # type: ignore[arg-type]
            assert found is not None and found.id == original
            assert (await db.get(str(original).upper())) is found  # type: ignore[arg-type]

        # What the database holds: lowercase hyphenated CHAR(36) on SQLite, native uuid on PostgreSQL.
        if engine.dialect.name == "sqlite":
            raw = (await session.execute(text('SELECT id FROM "user" ORDER BY email'))).scalars()
            assert list(raw) == [str(value) for value in ids]
            columns = await session.execute(text("PRAGMA table_info('user')"))
            assert {row.name: row.type for row in columns}["id"] == "CHAR(36)"
        elif engine.dialect.name == "mysql":
            raw = (await session.execute(text('SELECT id FROM "user" ORDER BY email'))).scalars()
            assert list(raw) == [str(value) for value in ids]
            column_type = await session.scalar(
                text(
                    "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                    "DATABASE() AND TABLE_NAME = 'user' AND COLUMN_NAME = 'id'"
                )
            )
            assert column_type == "char(36)"
        else:
            rows = await session.execute(
                text(
                    'SELECT id::text AS id, pg_typeof(id)::text AS type FROM "user" ORDER BY email'
                )
            )
            assert [(row.id, row.type) for row in rows] == [(str(value), "uuid") for value in ids]


async def test_guid_refuses_what_is_no_uuid(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session:
        with pytest.raises(StatementError, match="badly formed hexadecimal UUID string"):
            await session.execute(
                insert(User.__table__).values(
                    id="not-a-uuid", email="x@example.com", hashed_password="x"
                )
            )


async def test_timestamps_come_back_aware_and_keep_the_instant(engine: AsyncEngine) -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    noon_in_kolkata = datetime(2024, 1, 1, 12, 0, tzinfo=kolkata)  # 06:30 UTC
    async with session_factory(engine)() as session:
        user = await ours.SQLAlchemyUserDatabase(session, User).create(
            {"email": "t@example.com", "hashed_password": "x"}
        )
        tokens = ours.SQLAlchemyAccessTokenDatabase(session, AccessToken)
        before = datetime.now(timezone.utc)
        await tokens.create({"token": "now", "user_id": user.id})  # created_at by default
        await tokens.create({"token": "kolkata", "user_id": user.id, "created_at": noon_in_kolkata})
        after = datetime.now(timezone.utc)

    async with session_factory(engine)() as session:
        by_token = {
            token.token: token.created_at
            for token in (await session.execute(select(AccessToken))).scalars()
        }
        # Aware on both databases, and the same instant that went in.
        assert all(value.utcoffset() == timedelta(0) for value in by_token.values())
        assert by_token["kolkata"] == noon_in_kolkata
        assert before - timedelta(seconds=1) <= by_token["now"] <= after + timedelta(seconds=1)

        # Stored as UTC, so comparisons in the database order instants, whatever the offset.
        later = await session.execute(
            select(AccessToken.token).where(
                AccessToken.created_at >= datetime(2024, 1, 1, 6, 29, tzinfo=timezone.utc)
            )
        )
        assert sorted(later.scalars()) == ["kolkata", "now"]
        not_yet = await session.execute(
            select(AccessToken.token).where(
                AccessToken.created_at > datetime(2024, 1, 1, 12, 0, tzinfo=timezone.utc),
                AccessToken.created_at < datetime(2024, 1, 2, tzinfo=timezone.utc),
            )
        )
        assert list(not_yet.scalars()) == []
        if engine.dialect.name == "sqlite":
            raw = await session.scalar(
                text("SELECT created_at FROM accesstoken WHERE token = 'kolkata'")
            )
            assert raw == "2024-01-01 06:30:00.000000"


# The types' conversions, dialect by dialect, without a database -------------------------------

SQLITE, POSTGRESQL = sqlite.dialect(), postgresql.dialect()
AN_ID = uuid.UUID("0123abcd-0000-4000-8000-0000000000ff")


class DriverUUID(uuid.UUID):
    """What asyncpg hands back: a subclass of ``uuid.UUID``."""


@pytest.mark.parametrize(
    "given",
    [
        AN_ID,
        DriverUUID(str(AN_ID)),
        AN_ID.bytes,
        str(AN_ID).upper(),
        f" {AN_ID.hex}\n",
        f"urn:uuid:{AN_ID}",
    ],
)
def test_to_uuid_gives_a_plain_uuid(given: object) -> None:
    value = to_uuid(given)
    assert value == AN_ID and type(value) is uuid.UUID


def test_to_uuid_refuses_what_is_no_uuid() -> None:
    for given in (AN_ID.bytes[:15], AN_ID.bytes + b"\x00", "", 5):
        with pytest.raises(ValueError):
            to_uuid(given)


def test_guid_binds_native_uuids_on_postgresql_and_text_elsewhere() -> None:
    guid = GUID()
    bound = guid.process_bind_param(str(AN_ID).upper(), POSTGRESQL)
    assert bound == AN_ID and type(bound) is uuid.UUID
    assert guid.process_bind_param(DriverUUID(str(AN_ID)), SQLITE) == str(AN_ID)
    assert guid.process_bind_param(None, SQLITE) is None
    assert guid.process_bind_param(None, POSTGRESQL) is None
    assert guid.process_result_value(None, SQLITE) is None
    read = guid.process_result_value(DriverUUID(str(AN_ID)), POSTGRESQL)
    assert read == AN_ID and type(read) is uuid.UUID
    assert guid.process_result_value(str(AN_ID), SQLITE) == AN_ID


def test_guid_is_char_36_except_on_postgresql() -> None:
    assert GUID().dialect_impl(SQLITE).compile(dialect=SQLITE) == "CHAR(36)"
    assert GUID().dialect_impl(POSTGRESQL).compile(dialect=POSTGRESQL) == "UUID"
    assert GUID().compile(dialect=SQLITE) == "CHAR(36)"


def test_timestamps_are_bound_as_utc_without_offset_except_on_postgresql() -> None:
    stamp = TIMESTAMPAware()
    kolkata = timezone(timedelta(hours=5, minutes=30))
    noon = datetime(2024, 1, 1, 12, tzinfo=kolkata)
    assert stamp.process_bind_param(noon, SQLITE) == datetime(2024, 1, 1, 6, 30)
    assert stamp.process_bind_param(noon, POSTGRESQL) is noon
    naive = datetime(2024, 1, 1, 12)
    assert stamp.process_bind_param(naive, SQLITE) is naive
    assert stamp.process_bind_param("2024-01-01", SQLITE) == "2024-01-01"
    assert stamp.process_bind_param(None, SQLITE) is None


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        (None, None),
        ("2024-01-01 06:30:00.000000", datetime(2024, 1, 1, 6, 30, tzinfo=timezone.utc)),
        (datetime(2024, 1, 1, 6, 30), datetime(2024, 1, 1, 6, 30, tzinfo=timezone.utc)),
        (
            datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=1))),
            datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2024-01-01T12:00:00+01:00",
            datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=1))),
        ),
    ],
)
def test_timestamps_come_back_aware(stored: object, read: datetime | None) -> None:
    value = TIMESTAMPAware().process_result_value(stored, SQLITE)
    assert value == read
    if read is not None:
        assert value is not None and value.utcoffset() == read.utcoffset()


def test_now_utc_is_aware_and_now() -> None:
    before = datetime.now(timezone.utc)
    now = now_utc()
    assert now.tzinfo is timezone.utc
    assert before <= now <= datetime.now(timezone.utc)


def test_the_lower_email_index_is_added_once_and_only_to_tables_with_an_email() -> None:
    from sqlalchemy import Index, String, func

    from usersctl.db import add_email_lower_index, email_lower_index_name

    assert email_lower_index_name("members") == "ix_members_email_lower"

    class OwnBase(DeclarativeBase):
        pass

    class Member(ours.SQLAlchemyBaseUserTableUUID, OwnBase):
        __tablename__ = "members"
        __table_args__ = (Index("ix_members_email_lower", func.lower("email"), unique=True),)

    table = Member.__table__
    assert isinstance(table, Table)
    (index,) = [i for i in table.indexes if i.name == "ix_members_email_lower"]
    assert add_email_lower_index(table) is index  # the app's own, not a second one
    assert [i.name for i in table.indexes].count("ix_members_email_lower") == 1

    class NoEmail(ours.SQLAlchemyBaseUserTable[int], OwnBase):
        __tablename__ = "no_email"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        email = None  # type: ignore[assignment]
        handle: Mapped[str] = mapped_column(String(20))

    no_email = NoEmail.__table__
    assert isinstance(no_email, Table)
    assert "email" not in no_email.c and not no_email.indexes

    # Made when the class is declared (here, not at import: the mutation run forks after that)
    class Account(ours.SQLAlchemyBaseUserTableUUID, OwnBase):
        __tablename__ = "accounts"

    accounts = Account.__table__
    assert isinstance(accounts, Table)
    assert {i for i in _indexes(accounts) if i[0] == "ix_accounts_email_lower"} == {
        ("ix_accounts_email_lower", True, ("lower(accounts.email)",))
    }


def test_timestamps_are_bound_as_utc_whatever_the_local_time_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    monkeypatch.setenv("TZ", "America/St_Johns")  # -03:30 or -02:30, never UTC
    time.tzset()
    try:
        kolkata = timezone(timedelta(hours=5, minutes=30))
        bound = TIMESTAMPAware().process_bind_param(
            datetime(2024, 7, 1, 12, tzinfo=kolkata), SQLITE
        )
        assert bound == datetime(2024, 7, 1, 6, 30)
    finally:
        monkeypatch.undo()
        time.tzset()
