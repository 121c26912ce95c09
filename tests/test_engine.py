"""The engine: URLs as people paste them, passwords never shown, SQLite set up for several writers,
MySQL and MariaDB connects bounded as a whole."""

from __future__ import annotations

import asyncio
import datetime
import math
import multiprocessing
import re
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase

from harness import SilentServer, sql
from usersctl.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from usersctl.engine import (
    _postgres_connect_args,
    _unique_statement_name,
    behind_pooler,
    check_sqlite_file,
    create_engine,
    execute_alone,
    is_secret_parameter,
    mask_url,
    normalize_url,
    session_factory,
    sqlite_path,
)
from usersctl.errors import DatabaseProblem, InvalidInput


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


# URLs refused before anything connects, in these words ----------------------------------------

_PORT_RANGE = "is out of range: a port is a number from 1 to 65535"
_ASYNCPG_TAKES = (
    "it takes application_name, command_timeout, database, direct_tls, gsslib, host, "
    "krbsrvname, max_cacheable_statement_size, max_cached_statement_lifetime, passfile, "
    "password, port, prepared_statement_cache_size, service, servicefile, ssl, "
    "statement_cache_size, target_session_attrs, timeout, user (and sslmode)"
)
_ASYNCMY_TAKES = (
    "it takes charset, connect_timeout, init_command, local_infile, read_timeout, ssl_ca, "
    "ssl_capath, ssl_cert, ssl_check_hostname, ssl_cipher, ssl_key, unix_socket"
)
_AIOMYSQL_TAKES = (
    "it takes charset, connect_timeout, init_command, local_infile, ssl_ca, "
    "ssl_capath, ssl_cert, ssl_check_hostname, ssl_cipher, ssl_key, unix_socket"
)
_SQLITE_TAKES = (
    "it takes cached_statements, check_same_thread, detect_types, isolation_level, timeout, "
    "uri, and with ?uri=true SQLite's own (cache, immutable, mode, modeof, nolock, psow, vfs)"
)


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("postgresql://u@h:0/db", f"the database URL's port 0 {_PORT_RANGE}"),
        ("postgresql://u@h:65536/db", f"the database URL's port 65536 {_PORT_RANGE}"),
        ("postgresql://u@h:100000/db", f"the database URL's port 100000 {_PORT_RANGE}"),
        ("postgresql://h/db?port=5432,70000", f"the database URL's ?port= 70000 {_PORT_RANGE}"),
        ("postgresql://h/db?port=x", f"the database URL's ?port= {_PORT_RANGE}"),
        # More than five characters is no port, even zero-padded (and int() never sees a long text)
        ("postgresql://h/db?port=000080", f"the database URL's ?port= 000080 {_PORT_RANGE}"),
        ("postgresql://h/db?port=" + "9" * 21, f"the database URL's ?port= {_PORT_RANGE}"),
        (
            "postgresql://h/db?port=" + "9" * 20,
            f"the database URL's ?port= {'9' * 20} {_PORT_RANGE}",
        ),
        (
            "postgresql://h/db?host=a:1,b:65536",
            f"the database URL's ?host= port 65536 {_PORT_RANGE}",
        ),
        ("postgresql://h/db?host=a:x", f"the database URL's ?host= port {_PORT_RANGE}"),
        (
            "postgresql://h/db?host=DB-1.Example.COM:70000",
            f"the database URL's ?host= port 70000 {_PORT_RANGE}",
        ),
        (
            "postgresql://h/db?foo=1",
            f"the database URL has a parameter asyncpg does not take: ?foo; {_ASYNCPG_TAKES}",
        ),
        (
            "postgresql://h/db?foo=1&apiKey=s3cret&bar=2",
            "the database URL has parameters asyncpg does not take: ?(a parameter), ?bar, ?foo; "
            + _ASYNCPG_TAKES,
        ),
        ("sqlite:///u.db?uri=maybe", "the database URL's ?uri= must be true or false"),
        (
            "sqlite:///u.db?check_same_thread=2",
            "the database URL's ?check_same_thread= must be true or false",
        ),
        (
            "sqlite:///u.db?mode=ro",
            f"the database URL has a parameter SQLite does not take: ?mode; {_SQLITE_TAKES}",
        ),
        (
            "sqlite:///u.db?uri=false&mode=ro",
            f"the database URL has a parameter SQLite does not take: ?mode; {_SQLITE_TAKES}",
        ),
        ("sqlite:///u.db?timeout=x", "the database URL's ?timeout= is not a number (float)"),
        ("sqlite:///u.db?timeout=inf", "the database URL's ?timeout= must be a finite number >= 0"),
        (
            "sqlite:///u.db?detect_types=1.0",
            "the database URL's ?detect_types= is not a number (int)",
        ),
        (
            "sqlite:///u.db?cached_statements=-1",
            "the database URL's ?cached_statements= must be a finite number >= 0",
        ),
        (
            "postgresql://u@h:port/db",
            "the database URL is not valid; expected e.g. sqlite:///users.db, "
            "postgresql://user@host/db or mysql://user@host/db",
        ),
        (
            "postgresql://u:p@ss@h/db",
            "the database URL has more than one '@'; write an '@' in the password as %40",
        ),
        (
            "postgresql+psycopg3://h/db",
            "unsupported database 'postgresql+psycopg3'; use a sqlite://, postgresql:// or mysql:// URL",
        ),
        (
            "sqlite+pysqlcipher:///u.db",
            "unsupported database 'sqlite+pysqlcipher'; use a sqlite://, postgresql:// or mysql:// URL",
        ),
        (
            "mysql://h/db?sslmode=require",
            f"the database URL has a parameter asyncmy does not take: ?sslmode; {_ASYNCMY_TAKES}",
        ),
        # Neither driver has a write timeout, nor aiomysql a read timeout: connect() would fail
        # with a TypeError (unexpected keyword argument), and asyncmy's with a ValueError on 0.
        (
            "mysql://h/db?write_timeout=5",
            "the database URL has a parameter asyncmy does not take: ?write_timeout; "
            + _ASYNCMY_TAKES,
        ),
        (
            "mysql+aiomysql://h/db?read_timeout=5&write_timeout=5",
            "the database URL has parameters aiomysql does not take: ?read_timeout, "
            f"?write_timeout; {_AIOMYSQL_TAKES}",
        ),
        (
            "mariadb://h/db?read_timeout=0",
            "the database URL's ?read_timeout= must be a finite number above 0",
        ),
    ],
)
def test_a_url_is_refused_in_these_words(pasted: str, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        normalize_url(pasted)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("pasted", "normal"),
    [
        ("  postgres://u@h:1/db \n", "postgresql+asyncpg://u@h:1/db"),
        ("postgresql+pg8000://u@h:65535/db", "postgresql+asyncpg://u@h:65535/db"),
        (
            "postgresql+psycopg://h/db?host=a:,b:5432&port=1,",
            "postgresql+asyncpg://h/db?host=a%3A%2Cb%3A5432&port=1%2C",
        ),
        ("postgresql://h/db?sslmode=require", "postgresql+asyncpg://h/db?ssl=require"),
        ("postgresql://h/db?ssl=disable&sslmode=require", "postgresql+asyncpg://h/db?ssl=disable"),
        ("sqlite+pysqlite:///u.db?uri=TRUE&mode=ro", "sqlite+aiosqlite:///u.db?mode=ro&uri=TRUE"),
        (
            "sqlite:///u.db?check_same_thread=no&timeout=0",
            "sqlite+aiosqlite:///u.db?check_same_thread=no&timeout=0",
        ),
        ("sqlite+aiosqlite://", "sqlite+aiosqlite://"),
    ],
)
def test_urls_that_pass_and_what_they_become(pasted: str, normal: str) -> None:
    assert normalize_url(pasted).render_as_string(hide_password=False) == normal
    assert normalize_url(make_url(pasted.strip())) == normalize_url(pasted)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("sslPassword", True),
        ("PASSWD", True),
        ("pwd", True),
        ("client_secret", True),
        ("token", True),
        ("apikey", True),
        ("user", False),
        ("ssl", False),
    ],
)
def test_which_parameters_may_hold_a_secret(name: str, secret: bool) -> None:
    assert is_secret_parameter(name) is secret


def test_mask_url_hides_secret_parameters_and_the_password_after_an_unencoded_at() -> None:
    assert mask_url("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"
    assert mask_url("postgresql://u@h/db?sslpassword=x&user=v") == (
        "postgresql://u@h/db?sslpassword=***&user=v"
    )
    assert mask_url(make_url("sqlite:///u.db")) == "sqlite:///u.db"
    # Several unencoded '@': all but the last belong to the password
    assert mask_url("postgresql://u:p@ss@w@h:5432/db") == "postgresql://u:***@h:5432/db"


def test_sqlite_path_is_the_file_behind_a_sqlite_url(tmp_path: Path) -> None:
    assert sqlite_path(make_url("sqlite+aiosqlite:///u.db")) == Path("u.db")
    for url in (
        "sqlite+aiosqlite://",
        "sqlite:///:memory:",
        "sqlite:///file:u.db?uri=true",
        "postgresql+asyncpg://h/u.db",
    ):
        assert sqlite_path(make_url(url)) is None, url
    check_sqlite_file(make_url("sqlite:///:memory:"))  # nothing to check
    with pytest.raises(DatabaseProblem) as error:
        check_sqlite_file(make_url(f"sqlite:///{tmp_path}"))
    assert str(error.value) == f"{tmp_path} is a directory, not a SQLite database file"
    missing = tmp_path / "missing.db"
    with pytest.raises(DatabaseProblem) as error:
        check_sqlite_file(make_url(f"sqlite:///{missing}"))
    assert str(error.value) == (
        f"database file {missing} does not exist; run `usersctl init-db` to create it"
    )
    missing.touch()
    check_sqlite_file(make_url(f"sqlite:///{missing}"))


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("postgresql://h/db?timeout=soon", "the database URL's ?timeout= is not a number (float)"),
        (
            "postgresql://h/db?statement_cache_size=1.5",
            "the database URL's ?statement_cache_size= is not a number (int)",
        ),
        (
            "postgresql://h/db?timeout=-1",
            "the database URL's ?timeout= must be a finite number >= 0",
        ),
        (
            "postgresql://h/db?timeout=nan",
            "the database URL's ?timeout= must be a finite number >= 0",
        ),
    ],
)
def test_numbers_in_a_postgresql_url_are_refused_when_the_engine_is_made(
    pasted: str, message: str
) -> None:
    normalize_url(pasted)  # a parameter asyncpg takes
    with pytest.raises(InvalidInput) as error:
        create_engine(pasted)
    assert str(error.value) == message


@pytest.mark.parametrize("timeout", [0, -1, math.inf, math.nan, "10", None])
def test_the_connect_timeout_is_a_finite_number_above_0(timeout: Any) -> None:
    with pytest.raises(InvalidInput) as error:
        create_engine("sqlite:///u.db", connect_timeout=timeout)
    assert str(error.value) == "the connect timeout must be a finite number of seconds above 0"


# What reaches asyncpg --------------------------------------------------------------------------


def test_numbers_and_the_application_name_move_from_the_url_into_connect_arguments() -> None:
    url = normalize_url(
        "postgresql://h/db?timeout=2.5&command_timeout=7&statement_cache_size=5"
        "&max_cached_statement_lifetime=0&max_cacheable_statement_size=1024"
        "&application_name=tool&ssl=require"
    )
    connect_args: dict[str, Any] = {"command_timeout": 1.0, "server_settings": {"jit": "off"}}
    left = _postgres_connect_args(url, connect_args)
    assert dict(left.query) == {"ssl": "require"}
    assert connect_args == {
        "timeout": 2.5,
        "command_timeout": 1.0,  # what the caller gave wins
        "statement_cache_size": 5,
        "max_cached_statement_lifetime": 0.0,
        "max_cacheable_statement_size": 1024,
        "server_settings": {"jit": "off", "application_name": "tool"},
    }
    assert type(connect_args["statement_cache_size"]) is int
    assert type(connect_args["timeout"]) is float
    plain = normalize_url("postgresql://h/db")
    nothing: dict[str, Any] = {}
    assert _postgres_connect_args(plain, nothing) is plain and nothing == {}


@pytest.mark.parametrize(
    ("query", "pooled"),
    [
        ("prepared_statement_cache_size=0", True),
        ("statement_cache_size= 0", True),
        ("statement_cache_size=100", False),
        ("prepared_statement_cache_size=00", False),
        ("", False),
    ],
)
def test_a_pooler_is_recognised_by_a_statement_cache_turned_off(query: str, pooled: bool) -> None:
    url = make_url(f"postgresql+asyncpg://h/db?{query}")
    assert behind_pooler(url) is pooled
    connect_args: dict[str, Any] = {}
    left = _postgres_connect_args(url, connect_args)
    if pooled:
        assert connect_args["prepared_statement_name_func"] is _unique_statement_name
        assert connect_args == {
            "statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
        assert left.query["prepared_statement_cache_size"] == "0"
    else:
        assert "prepared_statement_name_func" not in connect_args


def test_statement_names_are_unique() -> None:
    names = {_unique_statement_name() for _ in range(100)}
    assert len(names) == 100
    assert all(re.fullmatch(r"__usersctl_[0-9a-f]{32}__", name) for name in names)


# SQLite's settings on every connection ---------------------------------------------------------


@pytest.mark.parametrize(
    ("connect_timeout", "wal", "busy", "journal"),
    [(10.0, True, 30_000, "wal"), (45.5, False, 45_500, "delete")],
)
async def test_sqlite_connections_get_the_busy_timeout_and_the_journal_asked_for(
    tmp_path: Path, connect_timeout: float, wal: bool, busy: int, journal: str
) -> None:
    engine = create_engine(
        f"sqlite:///{tmp_path / 'users.db'}", connect_timeout=connect_timeout, sqlite_wal=wal
    )
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("PRAGMA busy_timeout")) == busy
            assert await connection.scalar(text("PRAGMA journal_mode")) == journal
            assert await connection.scalar(text("PRAGMA synchronous")) == 1  # NORMAL
            assert await connection.scalar(text("PRAGMA foreign_keys")) == 1
            assert await connection.scalar(text("SELECT usersctl_lower('ÄB')")) == "äb"
            await connection.execute(text("CREATE TABLE t (id UUID)"))
            reflected = await connection.run_sync(
                lambda sync: sqlalchemy.inspect(sync).get_columns("t")
            )
            assert isinstance(reflected[0]["type"], sqlalchemy.Uuid)
    finally:
        await engine.dispose()


async def test_a_file_that_is_no_database_fails_to_connect_and_is_closed(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not a database" * 100)
    engine = create_engine(f"sqlite:///{path}")
    try:
        with pytest.raises(DatabaseError):
            async with engine.connect():
                pass
    finally:
        await engine.dispose()


# DDL alone, outside a transaction --------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_execute_alone_runs_ddl_outside_a_transaction(database_url: str) -> None:
    from sqlalchemy import Column, Index, Integer, MetaData, Table
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.schema import CreateIndex, CreateTable

    table = Table(
        "alone", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer)
    )
    # Compiled for the database: a partial index keeps its WHERE
    index = Index(
        "ix_alone_n",
        table.c.n,
        postgresql_concurrently=True,
        postgresql_where=table.c.n > 0,
        sqlite_where=table.c.n > 0,
    )
    engine = create_engine(database_url)
    try:
        # CREATE INDEX CONCURRENTLY refuses to run in a transaction on PostgreSQL
        await execute_alone(engine, [CreateTable(table), CreateIndex(index)])
        async with engine.connect() as connection:
            names = await connection.run_sync(
                lambda sync: [i["name"] for i in sqlalchemy.inspect(sync).get_indexes("alone")]
            )
        assert names == ["ix_alone_n"]
        async with engine.connect() as connection:
            definition = await connection.scalar(
                text("SELECT sql FROM sqlite_master WHERE name = 'ix_alone_n'")
                if engine.dialect.name == "sqlite"
                else text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_alone_n'")
            )
        assert "WHERE" in definition and "> 0" in definition
        with pytest.raises(DBAPIError) as error:
            await execute_alone(engine, [CreateTable(table)])
        assert "CREATE TABLE alone" in str(error.value)
        assert "already exists" in str(error.value)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
async def test_execute_alone_runs_ddl_on_mariadb(database_url: str) -> None:
    """MySQL's drivers have no execute on their connections: the statements go through
    SQLAlchemy's, each committing by itself; errors come wrapped, as elsewhere."""
    from sqlalchemy import Column, Index, Integer, MetaData, Table
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.schema import CreateIndex, CreateTable

    table = Table(
        "alone", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer)
    )
    engine = create_engine(database_url)
    try:
        await execute_alone(
            engine, [CreateTable(table), CreateIndex(Index("ix_alone_n", table.c.n))]
        )
        async with engine.connect() as connection:
            names = await connection.run_sync(
                lambda sync: [i["name"] for i in sqlalchemy.inspect(sync).get_indexes("alone")]
            )
        assert names == ["ix_alone_n"]
        with pytest.raises(DBAPIError) as error:
            await execute_alone(engine, [CreateTable(table)])
        assert "already exists" in str(error.value)
    finally:
        await engine.dispose()


# aiosqlite's worker threads ---------------------------------------------------------------------


def _sqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def test_sqlite_worker_threads_never_hold_up_the_exit(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'users.db'}")
    before = _sqlite_threads()
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            started = _sqlite_threads() - before
            assert started and all(thread.daemon for thread in started)
    finally:
        await engine.dispose()


async def test_a_sqlite_file_that_cannot_open_leaves_no_thread_behind(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}")  # a folder
    before = _sqlite_threads()
    try:
        with pytest.raises(OperationalError, match="unable to open database file"):
            async with engine.connect():
                pass
        assert [thread for thread in _sqlite_threads() - before if thread.is_alive()] == []
    finally:
        await engine.dispose()


async def test_sqlite_uri_parameters_reach_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "users.db"
    writable = create_engine(f"sqlite:///{path}")
    try:
        async with writable.begin() as connection:
            await connection.execute(text("CREATE TABLE t (n INTEGER)"))
    finally:
        await writable.dispose()
    read_only = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", sqlite_wal=False)
    try:
        with pytest.raises(OperationalError, match="readonly database"):
            async with read_only.begin() as connection:
                await connection.execute(text("INSERT INTO t VALUES (1)"))
    finally:
        await read_only.dispose()


async def test_sqlite3s_own_arguments_in_the_url_reach_sqlite3(tmp_path: Path) -> None:
    # ?detect_types=1 is sqlite3's PARSE_DECLTYPES: a column declared DATE is read as a date.
    engine = create_engine(f"sqlite:///{tmp_path / 'users.db'}?detect_types=1")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (d DATE)"))
            await connection.execute(text("INSERT INTO t VALUES ('2024-02-29')"))
            assert await connection.scalar(text("SELECT d FROM t")) == datetime.date(2024, 2, 29)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url", ["sqlite:///u.db", "postgresql://u@h/db", "mysql://u@h/db"])
def test_create_engine_passes_on_sqlalchemys_own_arguments(url: str) -> None:
    engine = create_engine(url, echo=True, pool_pre_ping=True)
    assert engine.echo is True and engine.pool._pre_ping is True


# MySQL and MariaDB: the driver, the whole connect bounded, what reaches asyncmy ----------------


def test_a_mysql_url_without_its_driver_installed_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "aiomysql", None)  # as if it were not installed
    with pytest.raises(InvalidInput) as error:
        create_engine("mysql+aiomysql://app@db/app")
    assert str(error.value) == (
        "a MySQL/MariaDB URL needs the aiomysql driver: pip install 'usersctl[mysql]'"
    )


def _gives_up(url: str, connect_timeout: float) -> str:
    """Connect with usersctl's engine and say how it ended; the test's own bound, 5 s, ends a
    connect that nothing else would."""

    async def connect() -> None:
        engine = create_engine(url, connect_timeout=connect_timeout)
        try:
            async with engine.connect():
                pass
        finally:
            await engine.dispose()

    try:
        asyncio.run(asyncio.wait_for(connect(), 5))
    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11
        return "timed out"
    return "connected"


@pytest.mark.parametrize(
    ("query", "connect_timeout"),
    [
        ("", 0.5),  # the caller's timeout
        ("?connect_timeout=0.5", 3.0),  # the URL's wins
        ("?connect_timeout=0", 0.5),  # 0 in the URL leaves the caller's
    ],
)
def test_a_mysql_server_that_never_greets_is_given_up_after_the_connect_timeout(
    silent: SilentServer, query: str, connect_timeout: float
) -> None:
    # asyncmy's own connect_timeout covers the TCP connect only; this server accepts and is silent.
    url = f"mysql://app@127.0.0.1:{silent.port}/app{query}"
    assert silent.timed_out(lambda: _gives_up(url, connect_timeout), 0.5) == "timed out"


def test_a_mysql_urls_timeouts_are_taken_out_of_the_url_that_sqlalchemy_reads() -> None:
    # SQLAlchemy's MySQL dialects would read them as whole seconds: int("0.5") fails.
    engine = create_engine("mysql://app@db/app?connect_timeout=0.5&read_timeout=0.5&ssl_ca=/ca")
    assert (
        engine.url.render_as_string() == "mysql+asyncmy://app@db/app?charset=utf8mb4&ssl_ca=%2Fca"
    )


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
async def test_a_mysql_urls_read_timeout_bounds_each_wait_for_the_server(
    database_url: str,
) -> None:
    url = make_url(database_url).set(drivername="mysql+asyncmy")
    engine = create_engine(url.update_query_dict({"read_timeout": "0.5"}))
    try:
        async with engine.connect() as connection:
            started = time.monotonic()
            with pytest.raises(OperationalError, match=r"\(2013, .*\(read timeout\)"):
                await connection.scalar(text("SELECT SLEEP(2)"))
            assert 0.45 <= time.monotonic() - started < 1.5
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
async def test_mysql_sessions_quote_names_as_the_sql_standard(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            modes = await connection.scalar(text("SELECT @@SESSION.sql_mode"))
            assert "ANSI_QUOTES" in modes.split(",")
            # A double-quoted name is a name, not a string.
            assert await connection.scalar(text('SELECT "n" FROM (SELECT 7 AS n) AS t')) == 7
    finally:
        await engine.dispose()


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
async def test_mysql_reflects_tinyint_1_as_a_boolean_and_other_tinyints_as_numbers(
    database_url: str,
) -> None:
    await sql(
        database_url,
        "CREATE TABLE flags (flag BOOL, small TINYINT, wide TINYINT(4),"
        " unsigned_flag TINYINT(1) UNSIGNED)",
    )
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: sqlalchemy.inspect(sync).get_columns("flags")
            )
    finally:
        await engine.dispose()
    from sqlalchemy.dialects.mysql import TINYINT

    kinds = {
        column["name"]: "boolean" if isinstance(column["type"], sqlalchemy.Boolean) else "tinyint"
        for column in columns
        if isinstance(column["type"], (sqlalchemy.Boolean, TINYINT))
    }
    assert kinds == {
        "flag": "boolean",
        "small": "tinyint",
        "wide": "tinyint",
        "unsigned_flag": "tinyint",
    }
