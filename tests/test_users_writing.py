"""The writing operations of usersctl.users at the library's level: ``create_user`` and
``update_user``, the flush that turns a broken key into the library's exceptions
(``_flush``, ``name_violation``), and the dry run's ids (``peek_next_ids``, ``NextIds``, the
MySQL/MariaDB counter read and put back), called directly on every test database with tables
made and seeded by plain SQL, their effects checked with plain SQL. No command line: quick enough
for the mutation run of users.py (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, text
from sqlalchemy.dialects import mysql
from sqlalchemy.dialects.mysql import mariadb
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column

from harness import (
    USER_COLUMNS,
    Database,
    TcpProxy,
    execute,
    integer_user_table,
    is_mysql,
    is_sqlite,
    query,
    serial_primary_key,
    user_and_token_tables,
)
from usersctl.db import SQLAlchemyBaseUserTable
from usersctl.engine import create_engine
from usersctl.errors import ConstraintConflict, InvalidInput, LastSuperuser, UserAlreadyExists
from usersctl.users import (
    FRESH_STATISTICS,
    NextIds,
    UserContext,
    _email_taken,
    _flush,
    _peek_auto_increment,
    _read_auto_increment,
    _restore_counters,
    create_user,
    execute_if_known,
    fresh_statistics,
    name_violation,
    open_users,
    peek_next_ids,
    update_user,
    with_overriding,
)

pytestmark = pytest.mark.usefixtures("quick_hashing")
TWO_SPELLINGS = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

HASH = "$2b$04$" + "a" * 53
ANN = "00000000-0000-0000-0000-00000000000a"
BEN = "00000000-0000-0000-0000-00000000000b"

#: A new user's values, but for the email.
NEW = {"hashed_password": HASH, "is_active": True, "is_superuser": False, "is_verified": False}

#: The columns of FastAPI Users' user table after its id.


def run(url: str, work: Callable[[UserContext], Awaitable[Any]], **options: Any) -> Any:
    """``work(ctx)`` in one ``open_users(url, write=True)`` session: what it returns."""

    async def main() -> Any:
        async with open_users(url, write=True, **options) as ctx:
            return await work(ctx)

    return asyncio.run(main())


def uuid_users(url: str, *, unique_key: bool = True, columns: str = "", **values: Any) -> Database:
    """FastAPI Users' user table (UUID ids, ``columns`` added), with ann (a superuser) and ben,
    given ``values`` for those columns too."""
    id_type = "UUID" if url.startswith("postgresql") else "CHAR(36)"
    db = Database(url)
    db.execute(f'CREATE TABLE "user" (id {id_type} NOT NULL PRIMARY KEY, {USER_COLUMNS}{columns})')
    if unique_key:
        key = "email" if is_mysql(url) else "lower(email)"
        db.execute(f'CREATE UNIQUE INDEX ix_user_email_lower ON "user" ({key})')
    db.seed_specs(
        {
            "id": ANN,
            "email": "ann@example.com",
            "is_superuser": True,
            "is_verified": True,
            **values,
        },
        {"id": BEN, "email": "ben@example.com", **values},
    )
    return db


def integer_users(url: str, id_sql: str | None = None, *, columns: str = "") -> Database:
    """A user table whose integer ids the database numbers (``id_sql``, else its serial key),
    with the unique index on the email."""
    return integer_user_table(url, id_sql=id_sql, columns=columns, unique_email=True)


def counter(url: str, table: str = "user") -> int:
    """MySQL/MariaDB: the table's AUTO_INCREMENT, as information_schema tells it."""
    (row,) = query(
        url,
        "SELECT AUTO_INCREMENT AS n FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table",
        table=table,
    )
    return int(row["n"])


def sequence_state(url: str, sequence: str = "user_id_seq") -> tuple[int, bool]:
    """PostgreSQL: the sequence's last value and whether it was drawn."""
    (row,) = query(url, f"SELECT last_value, is_called FROM {sequence}")
    return int(row["last_value"]), bool(row["is_called"])


async def user_of(ctx: UserContext, user_id: Any) -> Any:
    user = await ctx.db.get(uuid.UUID(user_id) if isinstance(user_id, str) else user_id)
    assert user is not None
    return user


# _email_taken --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "other_than", "taken"),
    [
        ("cy@example.com", None, False),
        ("cy@example.com", ANN, False),
        ("ANN@example.com", None, True),
        ("ANN@example.com", ANN, False),
        ("ann@example.com", BEN, True),
    ],
)
def test_an_address_is_taken_when_someone_else_has_it_in_any_case(
    database_url: str, email: str, other_than: str | None, taken: bool
) -> None:
    uuid_users(database_url)
    other = uuid.UUID(other_than) if other_than else None
    assert run(database_url, lambda ctx: _email_taken(ctx, email, other_than=other)) is taken


#: MySQL's _ci collation keeps two spellings of one address out of the table.
@TWO_SPELLINGS
def test_an_address_two_users_hold_is_taken_whoever_asks(database_url: str) -> None:
    db = user_and_token_tables(database_url, unique_key=False)
    db.seed_specs({"id": ANN, "email": "Ann@example.com"}, {"id": BEN, "email": "ANN@example.com"})
    assert run(database_url, lambda ctx: _email_taken(ctx, "ann@example.com", other_than=ANN))


# create_user ---------------------------------------------------------------------------------


def test_a_new_user_is_stored_with_the_flags_and_hash_given(database_url: str) -> None:
    db = uuid_users(database_url)

    async def create(ctx: UserContext) -> Any:
        created = await create_user(
            ctx, "  Cy@EXAMPLE.com ", HASH, is_superuser=True, is_verified=True, is_active=False
        )
        await ctx.session.commit()
        return created.created, created.user.id, created.user.email

    made, user_id, email = run(database_url, create)
    assert (made, email) == (True, "Cy@example.com")
    (row,) = db.query("SELECT * FROM \"user\" WHERE email = 'Cy@example.com'")
    assert uuid.UUID(str(row["id"])) == user_id
    assert row["hashed_password"] == HASH
    flags = [bool(row[name]) for name in ("is_active", "is_superuser", "is_verified")]
    assert flags == [False, True, True]


def test_a_new_user_has_the_usual_flags_by_default(database_url: str) -> None:
    db = uuid_users(database_url)

    async def create(ctx: UserContext) -> None:
        await create_user(ctx, "cy@example.com", HASH)
        await ctx.session.commit()

    run(database_url, create)
    assert [db.flag("cy@example.com", name) for name in ("is_active", "is_superuser")] == [
        True,
        False,
    ]
    assert db.flag("cy@example.com", "is_verified") is False


def test_an_existing_address_in_any_case_is_refused_with_its_stored_spelling(
    database_url: str,
) -> None:
    db = uuid_users(database_url)
    with pytest.raises(UserAlreadyExists) as refused:
        run(database_url, lambda ctx: create_user(ctx, "ANN@Example.com", HASH))
    assert str(refused.value) == "a user with email 'ann@example.com' already exists"
    assert db.count() == 2


def test_if_not_exists_gives_back_the_user_there_unchanged(database_url: str) -> None:
    db = uuid_users(database_url)

    async def create(ctx: UserContext) -> Any:
        created = await create_user(ctx, "Ann@example.com", "other", if_not_exists=True)
        await ctx.session.commit()
        return created.created, created.user.id

    assert run(database_url, create) == (False, uuid.UUID(ANN))
    assert db.user("ann@example.com")["email"] == "ann@example.com"
    assert db.user("ann@example.com")["hashed_password"] != "other"
    assert db.count() == 2


#: MySQL's _ci collation keeps two spellings of one address out of the table.
@TWO_SPELLINGS
def test_an_address_two_users_hold_in_other_cases_is_refused(database_url: str) -> None:
    db = user_and_token_tables(database_url, unique_key=False)
    db.seed_specs({"id": ANN, "email": "Ann@example.com"}, {"id": BEN, "email": "ANN@example.com"})
    for options in ({}, {"if_not_exists": True}):
        with pytest.raises(UserAlreadyExists) as refused:
            run(database_url, lambda ctx: create_user(ctx, "ann@EXAMPLE.com", HASH, **options))  # noqa: B023
        assert str(refused.value) == "a user with email 'ann@example.com' already exists"
    assert db.count() == 2


#: MySQL's _ci collation keeps two spellings of one address out of the table.
@TWO_SPELLINGS
def test_of_two_spellings_the_one_typed_exactly_is_the_existing_user(database_url: str) -> None:
    db = user_and_token_tables(database_url, unique_key=False)
    db.seed_specs({"id": ANN, "email": "ann@example.com"}, {"id": BEN, "email": "ANN@EXAMPLE.COM"})

    async def create(ctx: UserContext) -> Any:
        created = await create_user(ctx, " ANN@EXAMPLE.COM", HASH, if_not_exists=True)
        return created.created, created.user.id

    assert run(database_url, create) == (False, uuid.UUID(BEN))


def test_extra_columns_are_stored_and_may_replace_the_flags(database_url: str) -> None:
    db = uuid_users(database_url, columns=", nickname VARCHAR(20) NOT NULL", nickname="x")

    async def create(ctx: UserContext) -> None:
        extra = {"nickname": "cyan", "is_active": False}
        await create_user(ctx, "cy@example.com", HASH, is_active=True, extra=extra)
        await ctx.session.commit()

    run(database_url, create)
    assert db.user("cy@example.com")["nickname"] == "cyan"
    assert db.flag("cy@example.com", "is_active") is False


def test_a_required_column_left_out_is_named(database_url: str) -> None:
    db = uuid_users(database_url, columns=", nickname VARCHAR(20) NOT NULL", nickname="x")
    for extra in (None, {"nickname": None}):
        with pytest.raises(InvalidInput) as refused:
            run(database_url, lambda ctx: create_user(ctx, "cy@example.com", HASH, extra=extra))  # noqa: B023
        assert str(refused.value) == (
            "required field(s) with no default not given: nickname (give them with --set "
            "FIELD=VALUE); the database has no default for them: if the app fills them in "
            "Python, --model module.path:ClassName would supply the app's own defaults"
        )
    assert db.count() == 2


def test_the_database_s_own_values_are_read_back_after_the_insert(database_url: str) -> None:
    uuid_users(database_url, columns=", plan VARCHAR(20) DEFAULT 'free'")

    async def create(ctx: UserContext) -> Any:
        created = await create_user(ctx, "cy@example.com", HASH)
        return created.user.plan  # read without I/O: loaded by the refresh

    assert run(database_url, create) == "free"


class DefaultsBase(MappedAsDataclass, DeclarativeBase):
    pass


class Member(DefaultsBase):
    """An app's user whose constructor and column defaults fill ``nickname`` and ``code``."""

    __tablename__ = "user"
    email: Mapped[str] = mapped_column(String(320))
    hashed_password: Mapped[str] = mapped_column(String(1024))
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default_factory=uuid.uuid4)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    is_verified: Mapped[bool] = mapped_column(default=False)
    nickname: Mapped[str] = mapped_column(String(20), default_factory=lambda: "anon")
    code: Mapped[str] = mapped_column(String(20), default="c-1", init=False)


def test_the_app_s_defaults_fill_what_is_not_given(database_url: str) -> None:
    columns = ", nickname VARCHAR(20) NOT NULL, code VARCHAR(20) NOT NULL"
    db = uuid_users(database_url, columns=columns, nickname="x", code="y")

    async def create(ctx: UserContext) -> None:
        await create_user(ctx, "cy@example.com", HASH)
        await ctx.session.commit()

    run(database_url, create, model_path=f"{__name__}:Member")
    row = db.user("cy@example.com")
    assert (row["nickname"], row["code"]) == ("anon", "c-1")


class TeamBase(DeclarativeBase):
    pass


class Team(TeamBase):
    __tablename__ = "team"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class Player(SQLAlchemyBaseUserTable[int], TeamBase):
    """A user whose attribute ``team`` is the column ``team_id``, a foreign key."""

    __tablename__ = "user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    team: Mapped[int | None] = mapped_column("team_id", ForeignKey("team.id"), default=None)


def team_tables(url: str) -> Database:
    db = Database(url)
    db.execute(
        "CREATE TABLE team (id INTEGER NOT NULL PRIMARY KEY)",
        "INSERT INTO team (id) VALUES (1)",
        f'CREATE TABLE "user" (id {serial_primary_key(url)}, {USER_COLUMNS}, team_id INTEGER, '
        "username VARCHAR(20), "
        "CONSTRAINT fk_user_team FOREIGN KEY (team_id) REFERENCES team (id))",
        'CREATE UNIQUE INDEX ix_user_email ON "user" (email)',
        'CREATE UNIQUE INDEX ix_user_username ON "user" (username)',
    )
    return db


@pytest.mark.parametrize("model", [None, f"{__name__}:Player"], ids=["read", "app"])
def test_a_broken_foreign_key_is_named_on_sqlite(database_url: str, model: str | None) -> None:
    db = team_tables(database_url)
    attribute = "team" if model else "team_id"

    async def create(ctx: UserContext) -> None:
        await create_user(ctx, "cy@example.com", HASH, extra={attribute: 9})

    expected: Any = ConstraintConflict if is_sqlite(database_url) else IntegrityError
    with pytest.raises(expected) as refused:
        run(database_url, create, model_path=model)
    if is_sqlite(database_url):
        assert str(refused.value) == (
            "refused by the database's foreign key fk_user_team on user.team_id: "
            "no row of team has that id"
        )
    assert db.count() == 0


def test_a_broken_unique_index_is_named_on_sqlite(database_url: str) -> None:
    db = team_tables(database_url)
    db.execute(
        'INSERT INTO "user" (email, hashed_password, is_active, is_superuser, is_verified, '
        "username) VALUES ('ann@example.com', 'x', true, true, true, 'ann')"
    )

    async def create(ctx: UserContext) -> None:
        await create_user(ctx, "cy@example.com", HASH, extra={"username": "ann"})

    expected: Any = ConstraintConflict if is_sqlite(database_url) else IntegrityError
    with pytest.raises(expected) as refused:
        run(database_url, create)
    if is_sqlite(database_url):
        assert str(refused.value) == (
            "refused by the database's unique constraint ix_user_username on user.username: "
            "another row already has that value"
        )
    assert db.count() == 1


def test_an_address_the_unique_index_refuses_is_said_to_exist(database_url: str) -> None:
    """A user that appeared between the lookup and the insert: the flush's error says so, with
    the address as given."""
    db = uuid_users(database_url)

    async def flush(ctx: UserContext) -> None:
        user = ctx.model.new_user(NEW | {"email": "ANN@example.com"})
        ctx.session.add(user)
        await _flush(ctx, "given@example.com", user)

    with pytest.raises(UserAlreadyExists) as refused:
        run(database_url, flush)
    assert str(refused.value) == "a user with email 'given@example.com' already exists"
    assert db.count() == 2


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("says", "refused"),
    [("this email is blocked", UserAlreadyExists), ("this name is blocked", IntegrityError)],
)
def test_a_refusal_of_no_known_kind_is_about_the_address_when_it_says_email(
    database_url: str, says: str, refused: type[Exception]
) -> None:
    db = uuid_users(database_url)
    if is_sqlite(database_url):
        db.execute(
            'CREATE TRIGGER blocked BEFORE INSERT ON "user" '
            f"BEGIN SELECT RAISE(ABORT, '{says}'); END"
        )
    else:
        db.execute(
            "CREATE FUNCTION blocked() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{says}' USING ERRCODE = '23000'; END $$",
            'CREATE TRIGGER blocked BEFORE INSERT ON "user" FOR EACH ROW EXECUTE FUNCTION blocked()',
        )
    with pytest.raises(refused) as raised:
        run(database_url, lambda ctx: create_user(ctx, "cy@example.com", HASH))
    if refused is UserAlreadyExists:
        assert str(raised.value) == "a user with email 'cy@example.com' already exists"
    assert db.count() == 2


# name_violation, called as the importer calls it -----------------------------------------------


async def refusal(ctx: UserContext, statement: str) -> IntegrityError:
    """The error of an INSERT the database refuses."""
    with pytest.raises(IntegrityError) as refused:
        await ctx.session.execute(text(statement))
    return refused.value


def insert(email: str, team: int | None = None, name: str | None = None, **given: int) -> str:
    """The SQL of an INSERT of a user with a team and a username (and an ``id``, given)."""
    values = {
        **given,
        "email": email,
        "hashed_password": "x",
        "is_active": True,
        "is_superuser": False,
        "is_verified": False,
        "team_id": team,
        "username": name,
    }
    listed = ", ".join(
        "NULL" if v is None else repr(v).lower() if isinstance(v, bool) else repr(v)
        for v in values.values()
    )
    return f'INSERT INTO "user" ({", ".join(values)}) VALUES ({listed})'


def violation_named(url: str, statement: str, rows: list[dict[str, Any]], **options: Any) -> Any:
    """What ``name_violation`` raises for the error of ``statement`` (None when nothing), and
    how many users the session sees after it (an INSERT of its own came before)."""

    async def name(ctx: UserContext) -> Any:
        await ctx.session.execute(text(insert("pre@example.com", name="dee")))
        exc = await refusal(ctx, statement)
        try:
            await name_violation(ctx, exc, rows, **options)
        except ConstraintConflict as conflict:
            named: str | None = str(conflict)
        else:
            named = None
        if not is_sqlite(url):  # the statement's error ended the transaction
            await ctx.session.rollback()
        return named, await ctx.session.scalar(text('SELECT count(*) FROM "user"'))

    return run(url, name)


def test_the_first_row_that_breaks_the_foreign_key_is_named_with_its_line(
    database_url: str,
) -> None:
    team_tables(database_url)
    rows = [{"team_id": 1}, {"team_id": None}, {"team_id": 7}, {"team_id": 8}]
    named = violation_named(
        database_url, insert("cy@example.com", team=7), rows, lines=[2, 3, 5, 8]
    )
    if is_sqlite(database_url):  # rolled back to look
        message = (
            "refused by the database's foreign key fk_user_team on user.team_id: "
            "no row of team has that id (line 5)"
        )
        assert named == (message, 0)
    else:  # the error names its constraint already
        assert named == (None, 0)


def test_without_lines_the_foreign_key_alone_is_named(database_url: str) -> None:
    team_tables(database_url)
    named = violation_named(database_url, insert("cy@example.com", team=7), [{"team_id": 7}])
    if is_sqlite(database_url):
        message = (
            "refused by the database's foreign key fk_user_team on user.team_id: "
            "no row of team has that id"
        )
        assert named == (message, 0)
    else:
        assert named == (None, 0)


def test_rows_that_break_no_foreign_key_leave_the_error_as_it_is(database_url: str) -> None:
    team_tables(database_url)
    named = violation_named(database_url, insert("cy@example.com", team=7), [{"team_id": 1}])
    assert named == (None, 0)


def test_the_unique_index_a_row_breaks_is_named(database_url: str) -> None:
    team_tables(database_url)
    named = violation_named(database_url, insert("cy@example.com", name="dee"), [])
    if is_sqlite(database_url):
        message = (
            "refused by the database's unique constraint ix_user_username on user.username: "
            "another row already has that value"
        )
        assert named == (message, 0)
    else:
        assert named == (None, 0)


def test_a_unique_constraint_of_several_columns_names_them_all(database_url: str) -> None:
    db = team_tables(database_url)
    drop = "DROP INDEX ix_user_username" + (' ON "user"' if is_mysql(database_url) else "")
    db.execute(drop, 'CREATE UNIQUE INDEX ix_user_team_name ON "user" (team_id, username)')
    db.execute(insert("ann@example.com", team=1, name="dee"))
    named = violation_named(database_url, insert("cy@example.com", team=1, name="dee"), [])
    if is_sqlite(database_url):
        message = (
            "refused by the database's unique constraint ix_user_team_name on user.team_id, "
            "user.username: another row already has that value"
        )
        assert named == (message, 1)
    else:
        assert named == (None, 1)


@pytest.mark.parametrize(
    ("statement", "looked"),
    [
        ("INSERT INTO team (id) VALUES (1)", False),  # another table's key
        (insert("FAY@example.com"), False),  # an expression index: no columns named
        (insert("cy@example.com", id=100), True),  # the primary key: an index without a name
    ],
    ids=["other-table", "expression", "primary-key"],
)
def test_unique_indexes_sqlite_names_no_columns_of_are_left_unnamed(
    database_url: str, statement: str, looked: bool
) -> None:
    """Nothing is raised; SQLite's transaction is rolled back only to look for a name."""
    db = team_tables(database_url)
    on = ' ON "user"' if is_mysql(database_url) else ""
    key = "email" if is_mysql(database_url) else "lower(email)"
    db.execute(
        f"DROP INDEX ix_user_email{on}",
        f'CREATE UNIQUE INDEX ix_user_email ON "user" ({key})',
        insert("fay@example.com", id=100),
    )
    seen = 2 if is_sqlite(database_url) and not looked else 1
    assert violation_named(database_url, statement, []) == (None, seen)


# with_overriding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "rewritten"),
    [
        (
            'INSERT INTO "user" (id, email) VALUES ($1, $2)',
            'INSERT INTO "user" (id, email) OVERRIDING SYSTEM VALUE VALUES ($1, $2)',
        ),
        (
            "INSERT INTO t (a) VALUES (') VALUES x') RETURNING t.a",
            "INSERT INTO t (a) OVERRIDING SYSTEM VALUE VALUES (') VALUES x') RETURNING t.a",
        ),
        ("INSERT INTO t DEFAULT VALUES", "INSERT INTO t DEFAULT VALUES"),
        ("INSERT INTO t (a) SELECT 1", "INSERT INTO t (a) SELECT 1"),
    ],
)
def test_overriding_system_value_goes_before_the_first_values(
    statement: str, rewritten: str
) -> None:
    assert with_overriding(statement) == rewritten


# peek_next_ids and NextIds ---------------------------------------------------------------------


def peeked(url: str, *settings: str, **options: Any) -> Any:
    """What ``peek_next_ids`` reads (after the session ``settings``), as a tuple: next id, step,
    GENERATED ALWAYS, table, counter before; and how many NextIds the context keeps."""

    async def peek(ctx: UserContext) -> Any:
        for setting in settings:
            await ctx.session.execute(text(setting))
        upcoming = await peek_next_ids(ctx)
        kept = list(ctx.peeked)
        ctx.peeked.clear()  # nothing to put back: no id was taken
        if upcoming is None:
            return None, kept
        assert kept in ([], [upcoming])
        found = (upcoming.next_id, upcoming.step, upcoming.always, upcoming.table.name)
        return (*found, upcoming.counter_before), len(kept)

    return run(url, peek, **options)


def test_next_ids_are_taken_one_step_apart() -> None:
    upcoming = NextIds(7, 3, always=False, table=Table("t", DefaultsBase.metadata))
    assert [upcoming.take(), upcoming.take(), upcoming.next_id] == [7, 10, 13]


def test_uuid_ids_come_from_no_sequence(database_url: str) -> None:
    uuid_users(database_url)
    assert peeked(database_url) == (None, [])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_s_counter_needs_no_peeking(database_url: str) -> None:
    """A rollback undoes SQLite's counter (AUTOINCREMENT's sqlite_sequence row) too."""
    integer_users(database_url, "INTEGER PRIMARY KEY AUTOINCREMENT")
    assert peeked(database_url) == (None, [])


def test_an_integer_id_the_database_does_not_number_has_no_next(database_url: str) -> None:
    integer_users(database_url, "INTEGER NOT NULL PRIMARY KEY")
    assert peeked(database_url) == (None, [])


class KeylessBase(DeclarativeBase):
    pass


KEYLESS = Table(
    "user",
    KeylessBase.metadata,
    Column("id", Integer, nullable=False),
    Column("email", String(320), nullable=False),
    Column("hashed_password", String(1024), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("is_superuser", Boolean, nullable=False),
    Column("is_verified", Boolean, nullable=False),
)


class Keyless(KeylessBase):
    """An app's user on a table without a primary key: the mapper is told which column is it."""

    __table__ = KEYLESS
    __mapper_args__ = {"primary_key": [KEYLESS.c.id]}  # noqa: RUF012 (as apps write it)


def test_a_table_without_a_primary_key_has_no_next_id(database_url: str) -> None:
    Database(database_url).execute(f'CREATE TABLE "user" (id INTEGER NOT NULL, {USER_COLUMNS})')
    assert peeked(database_url, model_path=f"{__name__}:Keyless") == (None, [])


ADD = (
    'INSERT INTO "user" (email, hashed_password, is_active, is_superuser, is_verified) '
    "VALUES ('{}@example.com', 'x', true, false, false)"
)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_serial_id_s_next_value_is_read_without_drawing_it(database_url: str) -> None:
    db = integer_users(database_url)
    assert peeked(database_url) == ((1, 1, False, "user", None), 0)
    assert sequence_state(database_url) == (1, False)
    db.execute(ADD.format("ann"), ADD.format("ben"))
    assert peeked(database_url) == ((3, 1, False, "user", None), 0)
    assert sequence_state(database_url) == (2, True)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_value_set_to_be_handed_out_next_is_the_next(database_url: str) -> None:
    db = integer_users(database_url)
    db.execute("SELECT setval('user_id_seq', 10, false)")
    assert peeked(database_url) == ((10, 1, False, "user", None), 0)
    db.execute("SELECT setval('user_id_seq', 10, true)")
    assert peeked(database_url) == ((11, 1, False, "user", None), 0)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("always", [False, True], ids=["by-default", "always"])
def test_an_identity_s_start_and_increment_give_the_next_ids(
    database_url: str, always: bool
) -> None:
    kind = "ALWAYS" if always else "BY DEFAULT"
    identity = f"INTEGER GENERATED {kind} AS IDENTITY (START WITH 3 INCREMENT BY 5) PRIMARY KEY"
    db = integer_users(database_url, identity)
    assert peeked(database_url) == ((3, 5, always, "user", None), 0)
    db.execute(ADD.format("ann"))
    assert peeked(database_url) == ((8, 5, always, "user", None), 0)


def role_url(url: str, *grants: str) -> str:
    """The URL of a new role (dropped by ``drop_role``) that may read and write the user table
    and has ``grants`` too."""
    role = f"usersctl_app_{uuid.uuid4().hex[:8]}"
    execute(
        url,
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON "user" TO {role}',
        *(grant.format(role=role) for grant in grants),
    )
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def drop_role(url: str, role_url: str) -> None:
    role = make_url(role_url).username
    execute(url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_role_that_may_use_but_not_read_the_sequence_reads_its_last_value(
    database_url: str,
) -> None:
    identity = "INTEGER GENERATED BY DEFAULT AS IDENTITY (START WITH 3 INCREMENT BY 5) PRIMARY KEY"
    db = integer_users(database_url, identity)
    app = role_url(database_url, "GRANT USAGE ON SEQUENCE user_id_seq TO {role}")
    try:
        assert peeked(app) == ((3, 5, False, "user", None), 0)
        db.execute(ADD.format("ann"), ADD.format("ben"))
        assert peeked(app) == ((13, 5, False, "user", None), 0)
    finally:
        drop_role(database_url, app)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_role_that_may_not_use_the_sequence_has_no_next_and_keeps_its_transaction(
    database_url: str,
) -> None:
    db = integer_users(database_url)
    db.execute(ADD.format("ann"))
    app = role_url(database_url)

    async def peek(ctx: UserContext) -> Any:
        return await peek_next_ids(ctx), await ctx.session.scalar(
            text('SELECT count(*) FROM "user"')
        )

    try:
        assert run(app, peek) == (None, 1)
    finally:
        drop_role(database_url, app)


class NodeBase(DeclarativeBase):
    pass


class Node(NodeBase):
    """A parent table whose ids the database numbers."""

    __tablename__ = "nodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    stamp: Mapped[str | None] = mapped_column(String(20), onupdate="touched")
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "node"}  # noqa: RUF012 (as apps write it)


class Person(SQLAlchemyBaseUserTable[int], Node):
    __tablename__ = "person"
    id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    __mapper_args__ = {"polymorphic_identity": "person"}  # noqa: RUF012 (as apps write it)


def hierarchy(url: str) -> Database:
    """The nodes and person tables of ``Person``, the person table with no sequence of its own."""
    db = Database(url)
    db.execute(
        f"CREATE TABLE nodes (id {serial_primary_key(url)}, kind VARCHAR(20), stamp VARCHAR(20))",
        f"CREATE TABLE person (id INTEGER NOT NULL PRIMARY KEY REFERENCES nodes(id), {USER_COLUMNS})",
    )
    return db


@pytest.mark.parametrize("database_url", ["postgresql", "mariadb"], indirect=True)
def test_a_subclass_s_ids_come_from_its_root_table(database_url: str) -> None:
    db = hierarchy(database_url)
    db.execute("INSERT INTO nodes (kind) VALUES ('node')")
    counted = None if database_url.startswith("postgresql") else 2
    found = peeked(database_url, model_path=f"{__name__}:Person")
    assert found == ((2, 1, False, "nodes", counted), 1 if counted else 0)


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_auto_increment_s_next_value_is_read_and_kept_to_put_back(database_url: str) -> None:
    db = integer_users(database_url)
    assert peeked(database_url) == ((1, 1, False, "user", 1), 1)
    db.execute(ADD.format("ann"), ADD.format("ben"))
    assert peeked(database_url) == ((3, 1, False, "user", 3), 1)


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
@pytest.mark.parametrize(
    ("increment", "offset", "counted", "next_id"),
    [(2, 1, 6, 7), (10, 3, 25, 33), (10, 3, 23, 23), (10, 3, 24, 33)],
)
def test_auto_increment_s_step_and_offset_give_the_next_ids(
    database_url: str, increment: int, offset: int, counted: int, next_id: int
) -> None:
    integer_users(database_url)
    Database(database_url).execute(f'ALTER TABLE "user" AUTO_INCREMENT = {counted}')
    settings = (
        f"SET SESSION auto_increment_increment = {increment}",
        f"SET SESSION auto_increment_offset = {offset}",
    )
    assert peeked(database_url, *settings) == ((next_id, increment, False, "user", counted), 1)


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_the_counter_its_step_and_offset_are_read_together(database_url: str) -> None:
    integer_users(database_url)
    Database(database_url).execute('ALTER TABLE "user" AUTO_INCREMENT = 17')

    async def read(ctx: UserContext) -> Any:
        await ctx.session.execute(text("SET SESSION auto_increment_increment = 4"))
        await ctx.session.execute(text("SET SESSION auto_increment_offset = 2"))
        connection = await ctx.session.connection()
        no_counter = Table("accesstoken", DefaultsBase.metadata, extend_existing=True)
        return (
            await _read_auto_increment(connection, ctx.model.table),
            await _read_auto_increment(connection, no_counter),
            await _peek_auto_increment(ctx, no_counter),
        )

    Database(database_url).execute("CREATE TABLE accesstoken (token VARCHAR(43) PRIMARY KEY)")
    assert run(database_url, read) == ((17, 4, 2), None, None)


def test_mysql_asks_for_the_counter_fresh_and_mariadb_has_nothing_to_ask() -> None:
    # MySQL 8 caches information_schema's statistics; MariaDB has no such cache.
    assert fresh_statistics(mysql.dialect()) == "SET SESSION information_schema_stats_expiry = 0"
    assert fresh_statistics(mariadb.MariaDBDialect()) is None


#: A real server that does not know the statement: MariaDB, as MySQL 5.7.
@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_statement_the_server_does_not_know_is_refused_and_the_session_goes_on(
    database_url: str,
) -> None:
    integer_users(database_url)

    async def work(ctx: UserContext) -> Any:
        connection = await ctx.session.connection()
        assert fresh_statistics(connection.dialect) is None  # the connected dialect knows
        await execute_if_known(connection, FRESH_STATISTICS)
        await execute_if_known(connection, "SET @usersctl_known = 7")  # and one it knows, run
        return (await connection.execute(text("SELECT @usersctl_known"))).scalar_one()

    assert run(database_url, work) == 7


def server_version(url: str) -> bytes:
    """What the server's ``VERSION()`` says."""
    return str(Database(url).query("SELECT VERSION() AS v")[0]["v"]).encode()


#: MySQL's own path, on MariaDB seen through a proxy that gives its version as MySQL 5.7.19's
#: (which, as MariaDB, refuses the statement): the connection's dialect is MySQL's, and the
#: statement goes out.
@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_mysql_is_asked_for_fresh_statistics_before_the_counter_is_read(
    database_url: str,
) -> None:
    integer_users(database_url)
    given = make_url(database_url)
    version = server_version(database_url)
    as_mysql = b"5.7.19-log-".ljust(len(version), b"x")  # (5, 7, 19): tx_isolation, as MariaDB
    upstream = (given.host or "127.0.0.1", given.port or 3306)
    proxy = TcpProxy(upstream, disguise=(version, as_mysql), record=True)
    proxied = given.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)

    async def read(ctx: UserContext) -> Any:
        connection = await ctx.session.connection()
        assert connection.dialect.is_mariadb is False
        assert proxy.sent is not None
        before = bytes(proxy.sent).count(FRESH_STATISTICS.encode())
        counter = await _read_auto_increment(connection, ctx.model.table)
        return before, bytes(proxy.sent).count(FRESH_STATISTICS.encode()), counter

    try:
        assert run(proxied, read) == (0, 1, (1, 1, 1))
    finally:
        proxy.close()


# _restore_counters (MySQL/MariaDB) -------------------------------------------------------------


def restore(url: str, *peeks: tuple[str, int, int | None]) -> str:
    """``_restore_counters`` for NextIds of (table, next id, counter before), on usersctl's
    engine; then the engine's connection reads the team table (no lock left on it)."""

    async def main() -> str:
        engine = create_engine(url)
        try:
            upcoming = [
                NextIds(next_id, 1, False, Table(name, TeamBase.metadata), before)
                for name, next_id, before in peeks
            ]
            await _restore_counters(engine, upcoming)
            async with engine.connect() as connection:
                return str((await connection.execute(text("SELECT count(*) FROM team"))).one())
        finally:
            await engine.dispose()

    return asyncio.run(main())


def counters(url: str, count: int) -> None:
    """The user and nodes tables, their AUTO_INCREMENT at ``count`` (as a dry run leaves them)."""
    integer_users(url)
    hierarchy(url)
    Database(url).execute(
        "CREATE TABLE team (id INTEGER NOT NULL PRIMARY KEY)",
        f'ALTER TABLE "user" AUTO_INCREMENT = {count}',
        f"ALTER TABLE nodes AUTO_INCREMENT = {count}",
    )


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_counter_the_dry_run_moved_is_put_back(database_url: str) -> None:
    counters(database_url, 3)
    assert restore(database_url, ("user", 3, 1)) == "(0,)"
    assert (counter(database_url), counter(database_url, "nodes")) == (1, 3)


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_counter_someone_drew_from_since_is_left(database_url: str) -> None:
    counters(database_url, 4)
    restore(database_url, ("user", 3, 1))
    assert counter(database_url) == 4


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_counters_of_tables_never_read_are_left_and_the_others_put_back(
    database_url: str,
) -> None:
    counters(database_url, 3)
    restore(database_url, ("user", 3, None), ("missing", 3, 1), ("nodes", 3, 2))
    assert (counter(database_url), counter(database_url, "nodes")) == (3, 2)


# create_user --dry-run -------------------------------------------------------------------------


def dry_run(url: str, extra: dict[str, Any] | None = None, **options: Any) -> Any:
    """``create_user(..., dry_run=True)`` rolled back: the id it showed, and the NextIds kept."""

    async def create(ctx: UserContext) -> Any:
        created = await create_user(ctx, "cy@example.com", HASH, extra=extra, dry_run=True)
        shown = created.user.id
        kept = [(n.next_id, n.counter_before) for n in ctx.peeked]
        await ctx.session.rollback()
        return shown, kept

    return run(url, create, **options)


def test_a_dry_run_shows_the_next_id_and_takes_none(database_url: str) -> None:
    dry_run_takes_no_id(database_url)


#: GENERATED ALWAYS is PostgreSQL's.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dry_run_on_a_generated_always_id_shows_the_next_id_and_takes_none(
    database_url: str,
) -> None:
    dry_run_takes_no_id(database_url, "INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY")


def dry_run_takes_no_id(database_url: str, id_sql: str | None = None) -> None:
    """A dry run shows the id the database would give, takes none, and (MySQL/MariaDB) puts the
    counter back: the next plain insert gets that id."""
    db = integer_users(database_url, id_sql)
    db.execute(ADD.format("ann"))
    kept = [(3, 2)] if is_mysql(database_url) else []
    assert dry_run(database_url) == (2, kept)
    if database_url.startswith("postgresql"):
        assert sequence_state(database_url) == (1, True)
    if is_mysql(database_url):
        assert counter(database_url) == 2  # put back
    db.execute(ADD.format("ben"))
    assert db.query("SELECT id, email FROM \"user\" WHERE email = 'ben@example.com'") == [
        {"id": 2, "email": "ben@example.com"}
    ]


def test_a_dry_run_with_the_id_given_peeks_at_nothing(database_url: str) -> None:
    db = integer_users(database_url)
    assert dry_run(database_url, {"id": 40}) == (40, [])
    if database_url.startswith("postgresql"):
        assert sequence_state(database_url) == (1, False)
    db.execute(ADD.format("ben"))
    # InnoDB moves AUTO_INCREMENT past an id given, and no rollback moves it back.
    assert db.query('SELECT id FROM "user"') == [{"id": 41 if is_mysql(database_url) else 1}]


def test_a_real_run_draws_its_id_from_the_database(database_url: str) -> None:
    db = integer_users(database_url)

    async def create(ctx: UserContext) -> Any:
        created = await create_user(ctx, "cy@example.com", HASH)
        await ctx.session.commit()
        return created.user.id, len(ctx.peeked)

    assert run(database_url, create) == (1, 0)
    if database_url.startswith("postgresql"):
        assert sequence_state(database_url) == (1, True)
    db.execute(ADD.format("ben"))
    assert db.query('SELECT id FROM "user" ORDER BY id') == [{"id": 1}, {"id": 2}]


def test_a_dry_run_on_uuid_ids_lets_the_model_make_the_id(database_url: str) -> None:
    db = uuid_users(database_url)
    shown, kept = dry_run(database_url)
    assert (isinstance(shown, uuid.UUID), kept) == (True, [])
    assert db.count() == 2


# update_user ------------------------------------------------------------------------------------


def update(url: str, user_id: str = ANN, **changes: Any) -> Any:
    """``update_user`` of the user ``user_id`` with ``changes``, committed: what it returns."""

    async def change(ctx: UserContext) -> Any:
        result = await update_user(ctx, await user_of(ctx, user_id), **changes)
        await ctx.session.commit()
        return result

    return run(url, change)


def stored(db: Database, user_id: str = ANN) -> dict[str, Any]:
    """The user's row as stored: the email and the flags as booleans."""
    (row,) = db.query(
        'SELECT email, is_active, is_superuser, is_verified FROM "user" WHERE id = :id',
        id=uuid.UUID(user_id) if db.url.startswith("postgresql") else user_id,
    )
    return {name: value if name == "email" else bool(value) for name, value in row.items()}


def test_a_change_of_case_keeps_the_address_verified(database_url: str) -> None:
    db = uuid_users(database_url)
    changes = update(database_url, email=" Ann@EXAMPLE.com ")
    assert changes == {"email": ("ann@example.com", "Ann@example.com")}
    assert stored(db) == {
        "email": "Ann@example.com",
        "is_active": True,
        "is_superuser": True,
        "is_verified": True,
    }


def test_a_new_address_is_no_longer_verified(database_url: str) -> None:
    db = uuid_users(database_url)
    changes = update(database_url, email="anna@example.com")
    assert changes == {
        "email": ("ann@example.com", "anna@example.com"),
        "is_verified": (True, False),
    }
    assert stored(db)["email"] == "anna@example.com"
    assert stored(db)["is_verified"] is False


def test_a_new_address_stays_verified_when_said_so(database_url: str) -> None:
    db = uuid_users(database_url)
    changes = update(database_url, email="anna@example.com", is_verified=True)
    assert changes == {"email": ("ann@example.com", "anna@example.com")}
    assert stored(db)["is_verified"] is True


def test_an_address_another_user_has_is_refused(database_url: str) -> None:
    db = uuid_users(database_url)
    with pytest.raises(UserAlreadyExists) as refused:
        update(database_url, email="BEN@example.com", is_active=False)
    assert str(refused.value) == "a user with email 'BEN@example.com' already exists"
    assert stored(db)["email"] == "ann@example.com"
    assert stored(db)["is_active"] is True


def test_an_address_the_lookup_finds_as_the_user_s_own_is_not_taken(database_url: str) -> None:
    """MariaDB's _ci collation takes ``ä`` for ``a``: the lookup of the new address finds the
    user itself, which is no other user having it."""
    db = uuid_users(database_url)
    assert update(database_url, email="änn@example.com") == {
        "email": ("ann@example.com", "änn@example.com"),
        "is_verified": (True, False),
    }
    assert stored(db)["email"] == "änn@example.com"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_case_change_the_unique_key_refuses_names_the_address(database_url: str) -> None:
    """A table whose unique key tells case apart may hold both spellings: the change of case,
    not looked up, is refused by the key."""
    db = user_and_token_tables(database_url, unique_key=False)
    db.execute('CREATE UNIQUE INDEX ix_user_email ON "user" (email)')
    db.seed_specs({"id": ANN, "email": "ann@example.com"}, {"id": BEN, "email": "ANN@example.com"})
    with pytest.raises(UserAlreadyExists) as refused:
        update(database_url, email="ANN@example.com")
    assert str(refused.value) == "a user with email 'ANN@example.com' already exists"


@pytest.mark.parametrize("change", ["is_superuser", "is_active"])
def test_the_last_active_superuser_is_kept_unless_forced(database_url: str, change: str) -> None:
    db = uuid_users(database_url)
    db.seed_specs({"email": "old@example.com", "is_superuser": True, "is_active": False})
    with pytest.raises(LastSuperuser) as refused:
        update(database_url, **{change: False})
    assert str(refused.value) == (
        "refusing to leave no active superuser (would remove ann@example.com); "
        "use --force to do it anyway"
    )
    assert stored(db)[change] is True
    assert update(database_url, force=True, **{change: False}) == {change: (True, False)}
    assert stored(db)[change] is False


def test_another_active_superuser_lets_one_go(database_url: str) -> None:
    db = uuid_users(database_url)
    db.seed_specs({"email": "eve@example.com", "is_superuser": True})
    assert update(database_url, is_superuser=False, is_active=False) == {
        "is_superuser": (True, False),
        "is_active": (True, False),
    }
    assert stored(db) == {
        "email": "ann@example.com",
        "is_active": False,
        "is_superuser": False,
        "is_verified": True,
    }


def test_keeping_the_last_superuser_a_superuser_needs_no_force(database_url: str) -> None:
    db = uuid_users(database_url)
    flags = {"is_superuser": True, "is_active": True, "is_verified": False}
    assert update(database_url, **flags) == {"is_verified": (True, False)}
    assert stored(db)["is_verified"] is False


def test_only_real_changes_are_returned_and_written(database_url: str) -> None:
    db = uuid_users(database_url, columns=", nickname VARCHAR(20)", nickname="x")
    changes = update(
        database_url,
        BEN,
        email="ben@example.com",
        is_superuser=False,
        is_verified=True,
        is_active=True,
        extra={"nickname": "benji"},
    )
    assert changes == {"is_verified": (False, True), "nickname": ("x", "benji")}
    assert stored(db, BEN) == {
        "email": "ben@example.com",
        "is_active": True,
        "is_superuser": False,
        "is_verified": True,
    }
    assert db.user("ben@example.com")["nickname"] == "benji"
    assert update(database_url, BEN, email="ben@example.com", extra={"nickname": "benji"}) == {}


@pytest.mark.parametrize(
    ("changes", "stamp"),
    [({"is_verified": True}, "touched"), ({"is_verified": False}, None)],
    ids=["changed", "unchanged"],
)
def test_a_change_to_a_subclass_s_user_touches_its_parent_row(
    database_url: str, changes: dict[str, Any], stamp: str | None
) -> None:
    db = hierarchy(database_url)
    db.execute(
        "INSERT INTO nodes (id, kind) VALUES (5, 'person')",
        "INSERT INTO person (id, email, hashed_password, is_active, is_superuser, is_verified) "
        "VALUES (5, 'pat@example.com', 'x', true, false, false)",
    )

    async def change(ctx: UserContext) -> Any:
        result = await update_user(ctx, await user_of(ctx, 5), **changes)
        await ctx.session.commit()
        return result

    assert run(database_url, change, model_path=f"{__name__}:Person") == (
        {"is_verified": (False, True)} if stamp else {}
    )
    assert db.query("SELECT stamp FROM nodes") == [{"stamp": stamp}]
    assert bool(db.query("SELECT is_verified FROM person")[0]["is_verified"]) is bool(stamp)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_check_on_the_address_is_no_clash_with_another_user(database_url: str) -> None:
    """Only a unique key on the address means another user has it: a CHECK constraint that
    names the email refuses the value, and its error is left as it is (MariaDB's is no
    IntegrityError)."""
    check = ", CONSTRAINT ck_email_allowed CHECK (email <> 'blocked@example.com')"
    db = uuid_users(database_url, columns=check)
    with pytest.raises(IntegrityError):
        run(database_url, lambda ctx: create_user(ctx, "blocked@example.com", HASH))
    assert db.count() == 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dry_run_on_a_generated_always_id_names_a_refused_address(database_url: str) -> None:
    db = integer_users(database_url, "INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
    db.execute(
        "CREATE FUNCTION blocked() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'this email is blocked' USING ERRCODE = '23000'; END $$",
        'CREATE TRIGGER blocked BEFORE INSERT ON "user" FOR EACH ROW EXECUTE FUNCTION blocked()',
    )
    with pytest.raises(UserAlreadyExists) as refused:
        dry_run(database_url)
    assert str(refused.value) == "a user with email 'cy@example.com' already exists"
    assert sequence_state(database_url) == (1, False)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_text_ids_a_sequence_fills_are_not_peeked_at(database_url: str) -> None:
    db = Database(database_url)
    db.execute(
        "CREATE SEQUENCE user_id_seq",
        'CREATE TABLE "user" (id VARCHAR(20) NOT NULL PRIMARY KEY '
        f"DEFAULT CAST(nextval('user_id_seq') AS text), {USER_COLUMNS})",
        'ALTER SEQUENCE user_id_seq OWNED BY "user".id',
    )
    assert peeked(database_url) == (None, [])
