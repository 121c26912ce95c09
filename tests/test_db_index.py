"""The unique index on lower(email): every email lookup is an index search, and two addresses that
differ only in case can never both exist, not even when inserted at the same moment."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import fastapi_users_db_sqlalchemy as theirs
from sqlalchemy import event, insert, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase

from usersctl.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from usersctl.engine import create_engine, session_factory


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class TheirBase(DeclarativeBase):
    pass


class TheirUser(theirs.SQLAlchemyBaseUserTableUUID, TheirBase):
    pass


USERS = 3000


async def fill(engine: AsyncEngine, base: type[DeclarativeBase], user_class: type[Any]) -> None:
    """The table with a few thousand users, and statistics, so the planner weighs a real table."""
    async with engine.begin() as connection:
        await connection.run_sync(base.metadata.create_all)
        await connection.execute(
            insert(user_class.__table__),
            [
                {"id": uuid.uuid4(), "email": f"User{number}@Example.com", "hashed_password": "x"}
                for number in range(USERS)
            ],
        )
    async with engine.connect() as connection:
        mysql = engine.dialect.name == "mysql"
        await connection.execute(text('ANALYZE TABLE "user"' if mysql else "ANALYZE"))
        await connection.commit()


async def plan_of_get_by_email(
    engine: AsyncEngine, user_class: type[Any], adapter: type[Any] = SQLAlchemyUserDatabase
) -> str:
    """The query plan of the very statement ``get_by_email`` sends (usersctl's, or another
    ``adapter``'s), as the database reports it."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    try:
        async with session_factory(engine)() as session:
            found = await adapter(session, user_class).get_by_email("USER1234@example.COM")
            assert found is not None and found.email == "User1234@Example.com"
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", capture)
    ((statement, parameters),) = sent

    async with engine.connect() as connection:
        explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        rows = await connection.exec_driver_sql(explain + statement, parameters)
        if engine.dialect.name == "mysql":  # the access type and the index it reads
            return "\n".join(f"type={row.type} key={row.key}" for row in rows)
        return "\n".join(str(row[-1]) for row in rows)


async def test_lookup_by_email_is_an_index_search(engine: AsyncEngine) -> None:
    await fill(engine, Base, User)

    plan = await plan_of_get_by_email(engine, User)

    if engine.dialect.name == "sqlite":
        assert "SEARCH user USING INDEX ix_user_email_lower" in plan, plan
    elif engine.dialect.name == "mysql":
        # One row through the unique index on email, whose _ci collation ignores case.
        assert plan == "type=const key=ix_user_email", plan
    else:
        assert "Index Scan using ix_user_email_lower" in plan, plan
    assert "SCAN user" not in plan and "Seq Scan" not in plan, plan


async def test_fastapi_users_table_scans_for_the_same_lookup(engine: AsyncEngine) -> None:
    # The reason for the index: without it the same statement reads the whole table.
    await fill(engine, TheirBase, TheirUser)

    plan = await plan_of_get_by_email(engine, TheirUser)

    assert "ix_user_email_lower" not in plan
    if engine.dialect.name == "sqlite":
        assert "SCAN user" in plan, plan
    elif engine.dialect.name == "mysql":
        # By design, on MariaDB FastAPI Users' table serves usersctl's lookup: its unique index on
        # email, in the _ci collation, is the one usersctl makes. FastAPI Users' own lookup,
        # lower(email) = lower(:x), is what scans: no index serves an expression.
        assert plan == "type=const key=ix_user_email", plan
        plan = await plan_of_get_by_email(engine, TheirUser, theirs.SQLAlchemyUserDatabase)
        assert plan == "type=ALL key=None", plan
    else:
        assert 'Seq Scan on "user"' in plan, plan


async def test_the_index_is_unique_on_lower_email(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
        if engine.dialect.name == "sqlite":
            definition = await connection.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_user_email_lower'")
            )
            assert definition == "CREATE UNIQUE INDEX ix_user_email_lower ON user (lower(email))"
        elif engine.dialect.name == "mysql":
            # No expression index on MariaDB: the unique index on email, in a _ci collation.
            indexes = await connection.execute(
                text(
                    "SELECT s.INDEX_NAME, s.NON_UNIQUE, s.COLUMN_NAME, c.COLLATION_NAME "
                    "FROM information_schema.STATISTICS s JOIN information_schema.COLUMNS c "
                    "ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME "
                    "AND c.COLUMN_NAME = s.COLUMN_NAME WHERE s.TABLE_SCHEMA = DATABASE() "
                    "AND s.TABLE_NAME = 'user' AND s.COLUMN_NAME = 'email'"
                )
            )
            ((name, non_unique, column, collation),) = indexes.all()
            assert (name, non_unique, column) == ("ix_user_email", 0, "email")
            assert collation.endswith("_ci"), collation
        else:
            definition = await connection.scalar(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_user_email_lower'")
            )
            assert definition == (
                'CREATE UNIQUE INDEX ix_user_email_lower ON public."user" '
                "USING btree (lower((email)::text))"
            )


def spellings(email: str, count: int) -> list[str]:
    """``count`` spellings of ``email`` that differ only in the case of their letters."""
    found = []
    for number in range(count):
        found.append("".join(c.upper() if (number >> i) & 1 else c for i, c in enumerate(email)))
    assert len(set(found)) == count
    return found


async def test_concurrent_inserts_of_case_variants_leave_one(database_url: str) -> None:
    # Eight engines, each its own connection, insert the same address in eight spellings at once.
    setup = create_engine(database_url)
    async with setup.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await setup.dispose()
    engines = [create_engine(database_url) for _ in range(8)]
    ready, go = [asyncio.Event() for _ in engines], asyncio.Event()

    async def insert_one(engine: AsyncEngine, email: str, ready: asyncio.Event) -> str:
        async with engine.connect() as connection:  # connected before the start signal
            await connection.execute(text("SELECT 1"))
            await connection.rollback()
            ready.set()
            await go.wait()
            try:
                await connection.execute(
                    insert(User.__table__).values(id=uuid.uuid4(), email=email, hashed_password="x")
                )
                await connection.commit()
            except IntegrityError:
                return "duplicate"
            return "inserted"

    try:
        tasks = [
            asyncio.create_task(insert_one(engine, email, event))
            for engine, email, event in zip(
                engines, spellings("race@example.com", 8), ready, strict=True
            )
        ]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ready)), 30)
        go.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        async with engines[0].connect() as connection:
            stored = (await connection.execute(text('SELECT email FROM "user"'))).scalars().all()
    finally:
        for engine in engines:
            await engine.dispose()

    assert sorted(outcomes) == ["duplicate"] * 7 + ["inserted"]
    assert len(stored) == 1 and stored[0].lower() == "race@example.com"


async def test_concurrent_registrations_never_see_database_locked(database_url: str) -> None:
    # What FastAPI Users' manager does for each sign-up: look the address up, then create.
    # On SQLite a transaction that read before it writes cannot wait for the write lock, so a
    # deferred BEGIN made all but one of these fail with "database is locked".
    setup = create_engine(database_url)
    async with setup.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    await setup.dispose()
    engines = [create_engine(database_url) for _ in range(8)]
    go = asyncio.Event()

    async def register(engine: AsyncEngine, email: str) -> str:
        async with engine.connect():  # the pool holds a live connection before the start
            pass
        await go.wait()
        async with session_factory(engine)() as session:
            user_db = SQLAlchemyUserDatabase(session, User)
            try:
                if await user_db.get_by_email(email) is not None:
                    return "exists"
                await user_db.create({"email": email, "hashed_password": "x"})
            except IntegrityError:
                return "exists"
            except OperationalError as error:
                return f"failed: {error.orig}"
            return "created"

    try:
        tasks = [
            asyncio.create_task(register(engine, email))
            for engine, email in zip(engines, spellings("signup@example.com", 8), strict=True)
        ]
        await asyncio.sleep(0.3)
        go.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        async with engines[0].connect() as connection:
            count = await connection.scalar(text('SELECT count(*) FROM "user"'))
    finally:
        for engine in engines:
            await engine.dispose()

    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert count == 1
