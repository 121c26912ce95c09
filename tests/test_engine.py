"""The engine: URLs as people paste them, passwords never shown, SQLite set up for several writers."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase

from usersctl.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from usersctl.engine import create_engine, mask_url, normalize_url, session_factory
from usersctl.errors import InvalidInput


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        ("postgresql://app:secret@db:5433/app", "postgresql+asyncpg://app:secret@db:5433/app"),
        ("postgres://app@db/app", "postgresql+asyncpg://app@db/app"),
        ("postgresql+psycopg2://app@db/app", "postgresql+asyncpg://app@db/app"),
        ("postgresql+psycopg://app@db/app", "postgresql+asyncpg://app@db/app"),
        ("postgresql+asyncpg://app@db/app", "postgresql+asyncpg://app@db/app"),
        ("sqlite:///users.db", "sqlite+aiosqlite:///users.db"),
        ("sqlite:////var/lib/app/users.db", "sqlite+aiosqlite:////var/lib/app/users.db"),
        ("sqlite+aiosqlite:///./users.db", "sqlite+aiosqlite:///./users.db"),
        ("sqlite+pysqlite:///users.db", "sqlite+aiosqlite:///users.db"),
        ("  sqlite:///users.db\n", "sqlite+aiosqlite:///users.db"),
        # libpq's sslmode, as hosting providers print it, becomes asyncpg's ssl.
        ("postgres://app@db/app?sslmode=require", "postgresql+asyncpg://app@db/app?ssl=require"),
        # MySQL and MariaDB: asyncmy unless aiomysql is named, always utf8mb4.
        ("mysql://app:secret@db/app", "mysql+asyncmy://app:secret@db/app?charset=utf8mb4"),
        ("mariadb://app@db:3307/app", "mysql+asyncmy://app@db:3307/app?charset=utf8mb4"),
        ("mysql+pymysql://app@db/app", "mysql+asyncmy://app@db/app?charset=utf8mb4"),
        ("mysql+asyncmy://app@db/app", "mysql+asyncmy://app@db/app?charset=utf8mb4"),
        ("mysql+aiomysql://app@db/app", "mysql+aiomysql://app@db/app?charset=utf8mb4"),
        ("mariadb+aiomysql://app@db/app", "mysql+aiomysql://app@db/app?charset=utf8mb4"),
        ("mysql://app@db/app?charset=utf8mb4", "mysql+asyncmy://app@db/app?charset=utf8mb4"),
    ],
)
def test_normalize_url_gives_an_async_driver(pasted: str, expected: str) -> None:
    assert normalize_url(pasted).render_as_string(hide_password=False) == expected


def test_normalize_url_keeps_every_part_of_a_postgres_url() -> None:
    url = normalize_url("postgres://app:p%40ss@db.internal:6543/prod?application_name=x")

    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "app",
        "p@ss",
        "db.internal",
        6543,
        "prod",
    )
    assert dict(url.query) == {"application_name": "x"}


@pytest.mark.parametrize(
    "pasted",
    [
        "mysql+mysqlx://root:hunter2@db/app",
        "mssql+pyodbc://sa:hunter2@db/app",
        "oracle://scott:hunter2@db/app",
        "sqlite+pysqlcipher://:hunter2@/users.db",
        "http://example.com/",
    ],
)
def test_unsupported_databases_are_invalid_input(pasted: str) -> None:
    with pytest.raises(InvalidInput, match="unsupported database") as error:
        normalize_url(pasted)

    assert all(kind in str(error.value) for kind in ("sqlite://", "postgresql://", "mysql://"))
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize(
    "pasted",
    ["", "   ", "users.db", "not a url", "://nothing", "postgresql://app:hunter2@db:port/app"],
)
def test_text_that_is_no_url_is_invalid_input(pasted: str) -> None:
    with pytest.raises(InvalidInput, match="not valid") as error:
        normalize_url(pasted)

    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize(
    ("pasted", "named"),
    [
        ("mysql://app@db/app?sslmode=require", "?sslmode"),
        ("mysql://app@db/app?connect_timeout=soon", "?connect_timeout="),
        ("mariadb://app@db:70000/app", "port 70000"),
    ],
)
def test_mysql_url_parameters_are_checked_before_connecting(pasted: str, named: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(named)):
        normalize_url(pasted)


def test_an_unencoded_at_sign_in_the_password_is_refused_with_the_fix() -> None:
    # SQLAlchemy would take "ter2@db" for the host and try to resolve it.
    with pytest.raises(InvalidInput, match="%40") as error:
        normalize_url("postgresql://app:hun@ter2@db/app")

    assert "hun" not in str(error.value) and "ter2" not in str(error.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://app:s3cr3t@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgresql+asyncpg://app:p%40ss%3Aw%2Frd@db/app", "postgresql+asyncpg://app:***@db/app"),
        ("postgres://app@db/app", "postgres://app@db/app"),
        ("sqlite+aiosqlite:///./users.db", "sqlite+aiosqlite:///./users.db"),
        # An unencoded '@' splits the password; no part of it may show.
        ("postgresql://app:s3@cr3t@db/app", "postgresql://app:***@db/app"),
        # asyncpg and libpq take the password, and the client key's, as query parameters too.
        ("postgresql://app@db/app?password=s3cr3t", "postgresql://app@db/app?password=***"),
        (
            "postgresql://app@db/app?sslmode=require&sslpassword=s3cr3t",
            "postgresql://app@db/app?sslmode=require&sslpassword=***",
        ),
        (
            "postgresql://app@db/app?PassWord=s3cr3t&port=5433",
            "postgresql://app@db/app?PassWord=***&port=5433",
        ),
        ("mysql+aiomysql://root:s3cr3t@db/app", "mysql+aiomysql://root:***@db/app"),
        ("mariadb://root:s3cr3t@db/app?ssl_key=/k", "mariadb://root:***@db/app?ssl_key=***"),
    ],
)
def test_mask_url_hides_the_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert mask_url(make_url(url)) == shown
    for secret in ("s3cr3t", "cr3t", "p%40ss", "w%2Frd"):
        assert secret not in mask_url(url)


@pytest.mark.parametrize(
    "url", ["postgresql://app:s3cr3t@db:notaport/app", "postgresql://app:s3cr3t@[::1/app", "s3cr3t"]
)
def test_mask_url_of_unparsable_text_shows_nothing_of_it(url: str) -> None:
    assert mask_url(url) == "<invalid URL>"


async def test_pasted_sslmode_reaches_asyncpg(postgres_database: str) -> None:
    # Untranslated, asyncpg's connect() raised TypeError: unexpected keyword argument 'sslmode'.
    pasted = make_url(postgres_database).set(drivername="postgresql", query={"sslmode": "disable"})
    engine = create_engine(pasted.render_as_string(hide_password=False))
    try:
        async with engine.connect() as connection:
            ssl_in_use = await connection.scalar(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
    finally:
        await engine.dispose()

    assert ssl_in_use is False


async def test_sqlite_connections_enforce_foreign_keys_use_wal_and_wait_for_locks(
    tmp_path: Path,
) -> None:
    # Deferred BEGIN so that two connections can hold a transaction (a read) at once.
    engine = create_engine(f"sqlite:///{tmp_path / 'users.db'}", sqlite_begin="BEGIN")
    try:
        # Two connections at once: each new connection gets the pragmas, not only the first.
        async with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                assert await connection.scalar(text("PRAGMA foreign_keys")) == 1
                assert await connection.scalar(text("PRAGMA journal_mode")) == "wal"
                assert await connection.scalar(text("PRAGMA busy_timeout")) >= 10_000

        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
            await connection.execute(
                text("CREATE TABLE child (parent_id INTEGER NOT NULL REFERENCES parent (id))")
            )
        with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"):
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO child (parent_id) VALUES (42)"))
    finally:
        await engine.dispose()


async def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    writer = create_engine(url)
    reader = create_engine(url, sqlite_begin="BEGIN", connect_args={"timeout": 0.2})
    try:
        async with writer.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
        async with writer.connect() as holder, reader.connect() as other:
            await holder.execute(text("SELECT count(*) FROM t"))  # BEGIN IMMEDIATE: holds the lock
            assert holder.in_transaction()
            # A plain reader still reads (WAL) while the write lock is held...
            assert await other.scalar(text("SELECT count(*) FROM t")) == 0
            await other.rollback()
            # ...but a writer waits its turn: the lock is held by the first transaction.
            with pytest.raises(OperationalError, match="database is locked"):
                await other.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await writer.dispose()
        await reader.dispose()


def _write_rows(url: str, worker: int, go: Any, outcomes: Any) -> None:
    """One writer process: its own engine, 20 registrations, each one transaction."""

    async def register_all() -> None:
        engine = create_engine(url)
        try:
            for row in range(20):
                # What a registration does: look the address up, then insert.
                async with session_factory(engine)() as session:
                    db = SQLAlchemyUserDatabase(session, User)
                    email = f"worker{worker}-{row}@example.com"
                    assert await db.get_by_email(email) is None
                    await db.create({"email": email, "hashed_password": "x"})
        finally:
            await engine.dispose()

    try:
        go.wait(30)
        asyncio.run(register_all())
        outcomes.put((worker, "ok"))
    except BaseException as exc:
        outcomes.put((worker, repr(exc)))


def test_several_processes_write_one_sqlite_file_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'users.db'}"
    asyncio.run(_create_tables(url))
    # Forked, so that eight processes start without eight slow imports; each makes its own engine.
    context = multiprocessing.get_context("fork")
    go, outcomes = context.Event(), context.Queue()
    workers = [
        context.Process(target=_write_rows, args=(url, worker, go, outcomes)) for worker in range(8)
    ]
    for process in workers:
        process.start()
    go.set()  # all eight start writing together
    try:
        results = sorted(outcomes.get(timeout=60) for _ in workers)
    finally:
        for process in workers:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()

    assert results == [(worker, "ok") for worker in range(8)]
    assert asyncio.run(_count_users(url)) == 8 * 20


async def _create_tables(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()


async def _count_users(url: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text('SELECT count(*) FROM "user"')))
    finally:
        await engine.dispose()


async def test_sessions_keep_objects_readable_after_commit(database_url: str) -> None:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    try:
        async with session_factory(engine)() as session:
            user = User(email="kept@example.com", hashed_password="x")
            session.add(user)
            await session.commit()
        # Expired attributes would need the (closed) session: DetachedInstanceError.
        assert (user.email, user.is_active, user.is_superuser) == ("kept@example.com", True, False)
    finally:
        await engine.dispose()


async def test_postgres_connect_is_bounded_by_connect_timeout() -> None:
    # A server that accepts TCP but never answers PostgreSQL's startup message.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        engine = create_engine(f"postgresql://app@127.0.0.1:{port}/app", connect_timeout=0.5)
        started = time.monotonic()
        try:
            with pytest.raises((TimeoutError, OSError)):
                async with engine.connect():
                    pass
        finally:
            await engine.dispose()
        assert time.monotonic() - started < 5
