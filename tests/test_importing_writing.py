"""The writing stage of import-users (usersctl.importing.writing) at the library's level: the
INSERTs it prepares (defaults, dry-run ids, SQLite's multi-row statements), the UPDATEs of a
joined-table subclass, and ``write_rows`` called as the importer calls it, its effects checked
with plain SQL on every test database. No command line: quick enough for the mutation run of
importing/writing.py (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import JSON, Column, ForeignKey, Integer, MetaData, String, Table, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from harness import Database, execute, integer_user_table, user_and_token_tables
from usersctl.db import SQLAlchemyBaseUserTable, SQLAlchemyBaseUserTableUUID
from usersctl.errors import InvalidInput, LastSuperuser
from usersctl.importing import import_users
from usersctl.importing.checking import FileCheck
from usersctl.importing.reading import read_records
from usersctl.importing.rows import ImportSummary
from usersctl.importing.writing import (
    PreparedInsert,
    _sqlite_multi_row,
    insert_rows,
    lock_table,
    prepare_batch,
    prepare_inserts,
    update_statements,
    write_rows,
)
from usersctl.models import UserModel
from usersctl.passwords import BCRYPT, verify_password
from usersctl.users import NextIds, open_users, peek_next_ids

pytestmark = pytest.mark.usefixtures("quick_hashing")

SQLITE = sqlite.dialect()
POSTGRES = postgresql.asyncpg.dialect()  # type: ignore[attr-defined]
BCRYPT_HASH = "$2b$04$" + "a" * 53


def _token(context: Any) -> str:
    """A default that reads its column and the row, as SQLAlchemy's context-taking ones do."""
    return f"{context.current_column.name}:{context.get_current_parameters()['email']}"


def _code(context: Any) -> str:
    """A default that reads the one computed before it for the same row."""
    return context.get_current_parameters()["token"].upper()


def _table() -> Table:
    return Table(
        "t",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("email", String(50)),
        Column("token", String(50), default=_token),
        Column("code", String(50), default=_code),
        Column("data", JSON),
    )


# The INSERTs prepared ----------------------------------------------------------------------------


def test_the_columns_defaults_see_their_column_the_row_and_the_defaults_before() -> None:
    rows = [{"id": 1, "email": "a@x"}, {"id": 2, "email": "b@x"}]
    (prepared,) = prepare_inserts(_table(), SQLITE, rows)  # no defaults: the columns' own
    assert prepared.sql == "INSERT INTO t (id, email, token, code) VALUES (?, ?, ?, ?)"
    assert prepared.params == [
        (1, "a@x", "token:a@x", "TOKEN:A@X"),
        (2, "b@x", "token:b@x", "TOKEN:B@X"),
    ]


def test_the_defaults_given_are_used_instead_of_the_columns() -> None:
    defaults = {"token": lambda context: "given", "code": lambda context: "too"}
    (prepared,) = prepare_inserts(_table(), SQLITE, [{"id": 1, "email": "a@x"}], defaults)
    assert prepared.params == [(1, "a@x", "given", "too")]


def test_a_failing_default_names_its_column_and_asks_for_a_value() -> None:
    with pytest.raises(InvalidInput) as error:
        prepare_inserts(
            _table(), SQLITE, [{"id": 1}], {"token": lambda context: 1 // 0, "code": _code}
        )
    assert str(error.value) == (
        "column 'token': the model's default failed (ZeroDivisionError: integer division or "
        "modulo by zero); give the column a value"
    )


def test_a_default_usersctl_cannot_compute_is_asked_for() -> None:
    # The column has a Python default, but the model's defaults (given) do not include it.
    with pytest.raises(InvalidInput) as error:
        prepare_inserts(_table(), SQLITE, [{"id": 1, "email": "a@x"}], {"code": _code})
    assert str(error.value) == "column 'token' has a default usersctl cannot compute; give it"


def test_none_stays_none_in_a_json_column() -> None:
    table = Table("j", MetaData(), Column("id", Integer, primary_key=True), Column("data", JSON))
    rows = [{"id": 1, "data": None}, {"id": 2, "data": {"k": [1]}}]
    (prepared,) = prepare_inserts(table, SQLITE, rows, {})
    assert prepared.params == [(1, None), (2, '{"k": [1]}')]


@pytest.mark.parametrize("always", [False, True])
def test_a_dry_run_gives_the_rows_without_an_id_the_sequence_s_next(always: bool) -> None:
    table = _table()
    stand_ins = NextIds(next_id=5, step=3, always=always, table=table)
    defaults = {"token": lambda context: "t", "code": lambda context: "c"}
    batch = [{"email": "a@x"}, {"email": "b@x", "id": 40}, {"email": "c@x", "id": None}]
    given, new = prepare_batch(table, POSTGRES, batch, defaults, stand_ins)
    assert given.params == [(40, "b@x", "t", "c")]
    assert "OVERRIDING" not in given.sql
    assert new.params == [(5, "a@x", "t", "c"), (8, "c@x", "t", "c")]
    assert ("OVERRIDING SYSTEM VALUE" in new.sql) is always
    assert stand_ins.next_id == 11
    # Not a dry run: the ids are left to the database.
    (real,) = prepare_batch(table, POSTGRES, [{"email": "a@x"}], defaults, None)
    assert real == PreparedInsert(
        "INSERT INTO t (email, token, code) VALUES ($1::VARCHAR, $2::VARCHAR, $3::VARCHAR) "
        "RETURNING t.id",
        [("a@x", "t", "c")],
    )


def test_a_dry_run_batch_of_new_users_only_or_given_ids_only() -> None:
    table = Table("p", MetaData(), Column("id", Integer, primary_key=True), Column("email", String))
    stand_ins = NextIds(next_id=1, step=1, always=True, table=table)
    (only_new,) = prepare_batch(table, POSTGRES, [{"email": "a@x"}], {}, stand_ins)
    assert only_new.params == [(1, "a@x")] and "OVERRIDING SYSTEM VALUE" in only_new.sql
    (only_given,) = prepare_batch(table, POSTGRES, [{"email": "b@x", "id": 7}], {}, stand_ins)
    assert only_given.params == [(7, "b@x")] and "OVERRIDING" not in only_given.sql


def test_sqlite_multi_row_statements_count_the_parameters_of_a_row() -> None:
    one_column = PreparedInsert("INSERT INTO t (a) VALUES (?)", [(1,), (2,), (3,)])
    assert list(_sqlite_multi_row(one_column, 2)) == [
        ("INSERT INTO t (a) VALUES (?), (?)", (1, 2)),
        ("INSERT INTO t (a) VALUES (?)", (3,)),
    ]
    # A quoted name may hold " VALUES ": the row is what follows the last one.
    odd_name = PreparedInsert('INSERT INTO t ("a VALUES b") VALUES (?)', [(1,), (2,)])
    assert list(_sqlite_multi_row(odd_name, 10)) == [
        ('INSERT INTO t ("a VALUES b") VALUES (?), (?)', (1, 2))
    ]


# The UPDATEs of a joined-table subclass ----------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Principal(Base):
    """A parent table with an ``onupdate`` time."""

    __tablename__ = "principals"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(20))
    updated_at: Mapped[int] = mapped_column(default=0, onupdate=lambda: 1)
    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_identity": "principal"}  # noqa: RUF012 (as apps write it)


class Member(SQLAlchemyBaseUserTableUUID, Principal):
    __tablename__ = "member"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("principals.id"), primary_key=True)
    nickname: Mapped[str | None] = mapped_column(String(30))
    __mapper_args__ = {"polymorphic_identity": "member"}  # noqa: RUF012 (as apps write it)


class Account(Base):
    """A parent table without ``onupdate`` columns, whose key is not called ``id``."""

    __tablename__ = "accounts"
    account_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    tier: Mapped[str | None] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "account"}  # noqa: RUF012 (as apps write it)


class Owner(SQLAlchemyBaseUserTableUUID, Account):
    __tablename__ = "owner"
    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.account_id"), primary_key=True)
    __mapper_args__ = {"polymorphic_identity": "owner"}  # noqa: RUF012 (as apps write it)


def _updates(user_class: type, columns: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    model = UserModel(user_class=user_class, source="tests")
    return [
        (str(statement.compile(dialect=SQLITE)), names)
        for statement, names in update_statements(model, columns)
    ]


def test_a_parent_with_an_onupdate_column_is_updated_with_the_user() -> None:
    assert _updates(Member, ("_id", "nickname")) == [
        ("UPDATE member SET nickname=? WHERE member.id = ?", ("_id", "nickname")),
        ("UPDATE principals SET id=principals.id, updated_at=? WHERE principals.id = ?", ("_id",)),
    ]
    # A parent's own column alone: the user table has nothing to set.
    assert _updates(Member, ("_id", "type")) == [
        ("UPDATE principals SET type=?, updated_at=? WHERE principals.id = ?", ("_id", "type")),
    ]


def test_a_parent_without_onupdate_columns_is_updated_only_for_its_own() -> None:
    assert _updates(Owner, ("_id", "is_verified")) == [
        ("UPDATE owner SET is_verified=? WHERE owner.id = ?", ("_id", "is_verified")),
    ]
    assert _updates(Owner, ("_id", "is_verified", "tier")) == [
        ("UPDATE owner SET is_verified=? WHERE owner.id = ?", ("_id", "is_verified")),
        ("UPDATE accounts SET tier=? WHERE accounts.account_id = ?", ("_id", "tier")),
    ]


# write_rows, as the importer calls it ------------------------------------------------------------

ANN = "00000000-0000-0000-0000-00000000000a"
BEN = "00000000-0000-0000-0000-00000000000b"


def make_table(url: str, *, unique_key: bool = True) -> Database:
    """FastAPI Users' user table (UUID ids) and its access token table."""
    db = user_and_token_tables(url, unique_key=unique_key)
    db.seed_specs(
        {"id": ANN, "email": "ann@example.com", "is_superuser": True},
        {"id": BEN, "email": "ben@example.com", "hashed_password": BCRYPT_HASH},
    )
    return db


def write(url: str, on_conflict: str, records: list[dict[str, Any]], **options: Any) -> Any:
    """Check ``records`` as the importer does, then ``write_rows`` them and commit."""

    async def main() -> None:
        async with open_users(url, write=True) as ctx:
            check = FileCheck(ctx.model, on_conflict, password_policy=None)
            data = "".join(json.dumps(record) + "\n" for record in records).encode()
            check.add(read_records(io.BytesIO(data), "jsonl"))
            rows, _ = check.verdict()
            await write_rows(ctx, rows, on_conflict, **options)
            await ctx.session.commit()

    return asyncio.run(main())


def test_the_summary_given_is_added_to(database_url: str) -> None:
    db = make_table(database_url)
    db.execute(f"INSERT INTO accesstoken VALUES ('t', CURRENT_TIMESTAMP, '{BEN}')")
    summary = ImportSummary(created=10, updated=20, skipped=30, revoked_tokens=40)
    records = [
        {"email": "cy@example.com", "hashed_password": BCRYPT_HASH},
        {"email": "ben@example.com", "is_active": False},
        {"email": "ann@example.com", "is_verified": True},
    ]
    write(database_url, "update", records, summary=summary)
    assert (summary.created, summary.updated, summary.skipped, summary.revoked_tokens) == (
        11,
        22,
        30,
        41,
    )
    assert db.count("accesstoken") == 0
    # Under fail, every row new: the same, through the all-or-nothing insert.
    write(
        database_url,
        "fail",
        [{"email": "dee@example.com", "hashed_password": BCRYPT_HASH}],
        summary=summary,
    )
    assert summary.created == 12
    assert db.emails() == sorted(
        ["ann@example.com", "ben@example.com", "cy@example.com", "dee@example.com"]
    )


def test_a_password_change_without_tokens_to_end_counts_none(database_url: str) -> None:
    db = make_table(database_url)
    summary = ImportSummary()
    write(
        database_url, "update", [{"email": "ben@example.com", "is_active": False}], summary=summary
    )
    assert (summary.updated, summary.revoked_tokens) == (1, 0)
    assert db.flag("ben@example.com", "is_active") is False


def test_without_keep_sessions_an_updated_password_ends_the_sessions(database_url: str) -> None:
    db = make_table(database_url)
    db.execute(f"INSERT INTO accesstoken VALUES ('t', CURRENT_TIMESTAMP, '{BEN}')")
    summary = ImportSummary()
    write(
        database_url,
        "update",
        [{"email": "ben@example.com", "hashed_password": "$2b$04$" + "b" * 53}],
        summary=summary,
    )
    assert summary.revoked_tokens == 1 and db.count("accesstoken") == 0
    assert db.stored_hash("ben@example.com") == "$2b$04$" + "b" * 53


def test_without_force_the_last_superuser_is_kept(database_url: str) -> None:
    db = make_table(database_url)
    with pytest.raises(LastSuperuser) as error:
        write(
            database_url,
            "update",
            [{"email": "ann@example.com", "is_superuser": False}],
            summary=ImportSummary(),
        )
    assert str(error.value) == (
        "refusing to leave no active superuser (the import demotes or deactivates "
        "ann@example.com); use --force to do it anyway"
    )
    assert db.flag("ann@example.com", "is_superuser") is True


def test_the_last_superusers_are_all_named(database_url: str) -> None:
    db = make_table(database_url)
    db.execute("UPDATE \"user\" SET is_superuser = true WHERE email = 'ben@example.com'")
    records = [
        {"email": "ann@example.com", "is_active": False},
        {"email": "ben@example.com", "is_superuser": False},
    ]
    with pytest.raises(LastSuperuser, match=r"deactivates ann@example.com, ben@example.com\)"):
        write(database_url, "update", records, summary=ImportSummary())


@pytest.mark.parametrize("rule", ["fail", "update"])
def test_the_emails_of_the_users_created_are_handed_back(database_url: str, rule: str) -> None:
    make_table(database_url)
    created: list[str] = []
    records = [
        {"email": "Cy@Example.com", "hashed_password": BCRYPT_HASH},
        {"email": "dee@example.com", "hashed_password": BCRYPT_HASH},
    ]
    if rule == "update":
        records.append({"email": "ben@example.com", "is_verified": True})
    write(database_url, rule, records, summary=ImportSummary(), created=created)
    assert created == ["Cy@example.com", "dee@example.com"]


def test_a_row_left_unhashed_is_hashed_before_it_is_inserted(database_url: str) -> None:
    # The importer leaves a plaintext password unhashed when the first look found its user
    # (an update need not set it); when the user has gone by the write, the row is an insert.
    db = make_table(database_url)
    summary = ImportSummary()
    records = [{"email": "cy@example.com", "password": "cy's long passphrase"}]
    write(database_url, "update", records, summary=summary, hashing=BCRYPT)
    stored = db.stored_hash("cy@example.com")
    assert stored.startswith("$2b$") and verify_password("cy's long passphrase", stored)
    assert summary.created == 1


def test_skip_without_a_unique_index_still_skips_existing_users(database_url: str) -> None:
    # Only under fail are the rows inserted first, trusting the index to refuse a conflict.
    db = make_table(database_url, unique_key=False)
    summary = ImportSummary()
    records = [
        {"email": "ann@example.com", "hashed_password": BCRYPT_HASH},
        {"email": "cy@example.com", "hashed_password": BCRYPT_HASH},
    ]
    write(database_url, "skip", records, summary=summary)
    assert (summary.created, summary.skipped) == (1, 1)
    assert db.emails() == ["ann@example.com", "ben@example.com", "cy@example.com"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_s_user_tables_are_locked_against_other_writers(database_url: str) -> None:
    make_table(database_url)
    execute(
        database_url,
        "CREATE TABLE principals (id UUID PRIMARY KEY, type VARCHAR(20), updated_at INTEGER)",
        "CREATE TABLE member (id UUID PRIMARY KEY REFERENCES principals(id), "
        "email VARCHAR(320) NOT NULL, hashed_password VARCHAR(1024) NOT NULL, "
        "is_active BOOLEAN NOT NULL, is_superuser BOOLEAN NOT NULL, "
        "is_verified BOOLEAN NOT NULL, nickname VARCHAR(30))",
    )

    async def locked(model: UserModel | None) -> list[tuple[str, str]]:
        async with open_users(database_url, write=True, table="user") as ctx:
            await lock_table(ctx if model is None else dataclasses.replace(ctx, model=model))
            result = await ctx.session.execute(
                text(
                    "SELECT c.relname, l.mode FROM pg_locks l "
                    "JOIN pg_class c ON c.oid = l.relation WHERE l.pid = pg_backend_pid() "
                    "AND l.mode = 'ShareRowExclusiveLock' ORDER BY 1"
                )
            )
            return [(row[0], row[1]) for row in result]

    assert asyncio.run(locked(None)) == [("user", "ShareRowExclusiveLock")]
    # A joined-table subclass: its parent table too.
    assert asyncio.run(locked(UserModel(user_class=Member, source="tests"))) == [
        ("member", "ShareRowExclusiveLock"),
        ("principals", "ShareRowExclusiveLock"),
    ]


class Node(Base):
    """A parent table whose integer ids PostgreSQL's sequence gives."""

    __tablename__ = "nodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "node"}  # noqa: RUF012 (as apps write it)


class Person(SQLAlchemyBaseUserTable[int], Node):
    __tablename__ = "person"
    id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    __mapper_args__ = {"polymorphic_identity": "person"}  # noqa: RUF012 (as apps write it)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("identity", ["SERIAL", "INTEGER GENERATED ALWAYS AS IDENTITY"])
def test_a_dry_run_writes_a_subclass_with_the_ids_it_would_get(
    database_url: str, identity: str
) -> None:
    execute(
        database_url,
        f"CREATE TABLE nodes (id {identity} PRIMARY KEY, kind VARCHAR(20))",
        "CREATE TABLE person (id INTEGER PRIMARY KEY REFERENCES nodes(id), "
        "email VARCHAR(320) NOT NULL, hashed_password VARCHAR(1024) NOT NULL, "
        "is_active BOOLEAN NOT NULL, is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)",
    )
    flags = {"hashed_password": BCRYPT_HASH, "is_active": True}
    flags |= {"is_superuser": False, "is_verified": False}
    batch = [{"email": "a@x.org", **flags}, {"email": "b@x.org", **flags}]
    if identity == "SERIAL":  # GENERATED ALWAYS takes no id given, in a real run either
        batch.append({"email": "c@x.org", "id": 40, **flags})

    async def dry_run() -> list[tuple[int, str, str]]:
        async with open_users(database_url, write=True, model_path=f"{__name__}:Person") as ctx:
            stand_ins = await peek_next_ids(ctx)
            assert stand_ins is not None and stand_ins.table.name == "nodes"
            await insert_rows(ctx, batch, stand_ins)
            result = await ctx.session.execute(
                text(
                    "SELECT p.id, p.email, n.kind FROM person p JOIN nodes n USING (id) ORDER BY 1"
                )
            )
            stored = [(row[0], row[1], row[2]) for row in result]
            await ctx.session.rollback()
            return stored

    expected = [(1, "a@x.org", "person"), (2, "b@x.org", "person")]
    if identity == "SERIAL":
        expected.append((40, "c@x.org", "person"))
    assert asyncio.run(dry_run()) == expected
    db = Database(database_url)
    assert db.count("nodes") == 0
    db.execute("INSERT INTO nodes (kind) VALUES ('node')")
    assert db.query("SELECT id FROM nodes") == [{"id": 1}]  # the dry run took no id


def test_ids_all_given_move_the_sequence_past_them(database_url: str) -> None:
    integer_user_table(database_url)
    records = [
        {"email": "a@x.org", "hashed_password": BCRYPT_HASH, "id": 7},
        {"email": "b@x.org", "hashed_password": BCRYPT_HASH, "id": 9},
    ]
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    assert asyncio.run(import_users(database_url, io.BytesIO(data))).created == 2
    db = Database(database_url)
    db.execute(
        'INSERT INTO "user" (email, hashed_password, is_active, is_superuser, is_verified) '
        "VALUES ('c@x.org', 'x', true, false, false)"
    )
    assert db.query("SELECT id FROM \"user\" WHERE email = 'c@x.org'") == [{"id": 10}]


def test_inserted_rows_take_the_model_s_dataclass_defaults(database_url: str) -> None:
    db = make_table(database_url)
    db.execute("ALTER TABLE \"user\" ADD COLUMN nickname VARCHAR(20) NOT NULL DEFAULT ''")

    async def insert() -> None:
        async with open_users(
            database_url, write=True, model_path="dataclass_user_model:User"
        ) as ctx:
            await insert_rows(ctx, [{"email": "cy@example.com", "hashed_password": BCRYPT_HASH}])
            await ctx.session.commit()

    asyncio.run(insert())
    stored = db.query("SELECT id, nickname FROM \"user\" WHERE email = 'cy@example.com'")
    assert stored[0]["nickname"] == "anon"
    uuid.UUID(str(stored[0]["id"]))  # the default_factory's
