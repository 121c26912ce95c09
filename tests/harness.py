"""The one harness every test drives usersctl through, registered as a plugin by tests/conftest.py.

- The databases: ``database_url`` gives each test a new SQLite file and a new PostgreSQL database
  (the PostgreSQL half carries the ``postgres`` marker), and a new MariaDB database where
  ``USERSCTL_TEST_MARIADB_URL`` names a server (the ``mariadb`` marker); ``db`` and :class:`Database` reach the
  same database with plain SQL, for seeding and for checking what a command did, without going
  through usersctl.
- usersctl itself: in-process through Typer's public ``CliRunner`` (``cli``, ``empty_cli``,
  ``bare_cli``, :func:`invoke`), or the installed entry point in a subprocess (``usersctl``,
  ``usersctl_anywhere``, :func:`run`, :func:`start`) or on a pseudo-terminal (``spawn``).
- Hermetic: every run clears ``USERSCTL_*``, ``DATABASE_URL``, ``NO_COLOR`` and the terminal's
  size and colour overrides (``COLUMNS``, ``LINES``, ``FORCE_COLOR``...) first, runs in a
  folder of the test's own (a ``.env`` where pytest was started is never read), and a
  subprocess gets SIGINT back at its default (pytest may have been started with it ignored).
- Faults: a gate that makes processes meet at the database, a TCP proxy that can cut
  connections, and a private PostgreSQL server that can be stopped.

Tests import helpers from here (``from harness import Cli``), never from a conftest.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

T = TypeVar("T")

#: The password of every seeded user and of the import files (hashed once, not once per user).
PASSWORD = "correct horse battery staple"
SEED_PASSWORD = PASSWORD

POSTGRES_URL = os.environ.get(
    "USERSCTL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("USERSCTL_REQUIRE_POSTGRES", "") not in ("", "0", "false")
#: MariaDB (or MySQL): the third half of ``database_url``, only where this names a server.
MARIADB_URL = os.environ.get("USERSCTL_TEST_MARIADB_URL", "")
REQUIRE_MARIADB = os.environ.get("USERSCTL_REQUIRE_MARIADB", "") not in ("", "0", "false")


# The environment of a run -----------------------------------------------------------------------


#: Variables other than ``USERSCTL_*`` that change what usersctl prints or where it connects.
#: ``COLUMNS`` and ``LINES`` would override a pseudo-terminal's size (pytest-xdist's workers set
#: them to 80x24); Rich reads the others.
POLLUTING = ("DATABASE_URL", "NO_COLOR", "COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")


def _pollutes(name: str) -> bool:
    """Whether a variable of the shell running pytest would change what usersctl does."""
    return name.startswith("USERSCTL_") or name in POLLUTING


def blank_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """For ``CliRunner``: every polluting variable of this process unset, then ``extra``."""
    blank: dict[str, str | None] = {name: None for name in os.environ if _pollutes(name)}
    return {**blank, **(extra or {})}


def clean_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """For a subprocess: this environment without the polluting variables, with ``extra`` (None
    unsets), and the entry point's folder first on PATH."""
    env = {name: value for name, value in os.environ.items() if not _pollutes(name)}
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PATH"] = os.pathsep.join([str(Path(usersctl_executable()).parent), env.get("PATH", "")])
    return env


def default_sigint() -> None:
    """In a child before exec: SIGINT back at its default, so Ctrl-C interrupts it even when
    pytest was started with SIGINT ignored (``pytest &`` in a script), which children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@lru_cache(maxsize=1)
def empty_folder() -> Path:
    """A folder with nothing in it, the working directory of runs that have no folder of their
    own (no ``.env``, no ``users.db``, no module of the developer's)."""
    folder = Path(tempfile.mkdtemp(prefix="usersctl-tests-cwd-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def usersctl_executable() -> str:
    """The installed ``usersctl`` entry point of the environment running the tests."""
    beside = Path(sys.executable).with_name("usersctl")
    if beside.exists():
        return str(beside)
    found = shutil.which("usersctl")
    assert found, "the usersctl entry point is not installed (pip install -e '.[test]')"
    return found


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    here = Path.cwd()
    if here == folder:
        yield
        return
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(here)


# Running usersctl -------------------------------------------------------------------------------


class Ran(Result):
    """Typer's result of an in-process run, also read as a finished process reads
    (``returncode``), so a check written for the entry point reads either."""

    @property
    def returncode(self) -> int:
        return self.exit_code


def invoke(
    argv: Sequence[str],
    *,
    input: str | bytes | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
) -> Ran:
    """usersctl in-process through Typer's ``CliRunner`` (quick: no interpreter start-up)."""
    from usersctl.commands import app

    with working_directory(cwd or empty_folder()):
        result = CliRunner().invoke(
            app, list(argv), input=input, env=blank_env(env), prog_name="usersctl"
        )
    result.__class__ = Ran
    return result


def cli(
    url: str | None,
    *args: str,
    input: str | bytes | None = None,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
) -> Ran:
    """:func:`invoke` with ``-d url`` first (none when ``url`` is None)."""
    return invoke(["-d", url, *args] if url else list(args), input=input, env=env, cwd=cwd)


def run(
    url: str | None,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 90,
    prefix: Sequence[str] = (),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a subprocess: no terminal, stdin closed unless ``input``."""
    argv = ["-d", url, *args] if url else list(args)
    return subprocess.run(
        [*prefix, usersctl_executable(), *argv],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        cwd=cwd or empty_folder(),
        preexec_fn=default_sigint,
    )


def start(
    url: str | None,
    *args: str,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[str]:
    """The entry point started in the background, stdin a pipe (for ``--password-stdin``)."""
    argv = ["-d", url, *args] if url else list(args)
    return subprocess.Popen(
        [usersctl_executable(), *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(env),
        cwd=cwd or empty_folder(),
        preexec_fn=default_sigint,
    )


def spawn_terminal(
    command: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
    dimensions: tuple[int, int] = (40, 200),
    timeout: float = 20,
) -> Any:
    """``command`` on a pseudo-terminal (pexpect), with the clean environment."""
    import pexpect

    return pexpect.spawn(
        command,
        list(args),
        env=clean_env(env),
        cwd=str(cwd or empty_folder()),
        encoding="utf-8",
        timeout=timeout,
        dimensions=dimensions,
        preexec_fn=default_sigint,
    )


def bound_by_file_modes() -> list[str]:
    """A command prefix under which even root is bound by files' permission bits (setpriv drops
    CAP_DAC_OVERRIDE: still root, the files' owner, but no longer above their mode); none for
    other users, who are bound already."""
    return (
        ["setpriv", "--bounding-set=-dac_override", "--inh-caps=-all"] if os.geteuid() == 0 else []
    )


def run_module(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``python -m usersctl`` in a subprocess, as :func:`run` runs the entry point."""
    return subprocess.run(
        [sys.executable, "-m", "usersctl", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=clean_env(),
        cwd=empty_folder(),
        timeout=timeout,
        preexec_fn=default_sigint,
    )


@dataclass(frozen=True)
class Finished:
    code: int
    stdout: str
    stderr: str


def finish(process: subprocess.Popen[str], timeout: float = 120) -> Finished:
    """Wait for the process (killing it after ``timeout``) and collect what it printed."""
    if process.stdin is not None and process.stdin.closed:
        process.stdin = None  # communicate() would flush it
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"killed after {timeout} s: {stdout}{stderr}") from None
    return Finished(process.returncode, stdout, stderr)


def send_line(process: subprocess.Popen[str], line: str) -> None:
    """Write one line to the process's stdin and close it."""
    assert process.stdin is not None
    process.stdin.write(line + "\n")
    process.stdin.close()


def one_error_line(code: int, expected: int, stdout: str, stderr: str) -> str:
    """Assert a failure's shape: the exit code, nothing on stdout, exactly one ``Error:`` line on
    stderr and no traceback. Returns that line."""
    assert code == expected, f"exit {code}, expected {expected}\nstdout: {stdout}\nstderr: {stderr}"
    assert stdout == "", stdout
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def init_db(url: str) -> None:
    result = cli(url, "init-db")
    assert result.exit_code == 0, result.output


@dataclass
class Cli:
    """usersctl in-process, with ``-d`` set to the test database, run in the test's folder."""

    url: str
    cwd: Path = field(default_factory=empty_folder)

    def __call__(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: Mapping[str, str | None] | None = None,
        url: bool = True,
    ) -> Ran:
        return cli(self.url if url else None, *args, input=input, env=env, cwd=self.cwd)

    @property
    def sqlite_path(self) -> Path | None:
        """The file of a SQLite test database; None on PostgreSQL."""
        return sqlite_file(self.url)

    def ok(
        self,
        *args: str,
        input: str | bytes | None = None,
        env: Mapping[str, str | None] | None = None,
        url: bool = True,
    ) -> Ran:
        """Run a command that must succeed."""
        result = self(*args, input=input, env=env, url=url)
        assert result.exit_code == 0, result.output
        return result

    def fails(
        self,
        code: int,
        *args: str,
        input: str | bytes | None = None,
        env: Mapping[str, str | None] | None = None,
        url: bool = True,
    ) -> str:
        """Run a command that must fail with ``code`` and one ``Error:`` line; return that line."""
        result = self(*args, input=input, env=env, url=url)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
        return one_error_line(result.exit_code, code, result.stdout, result.stderr)

    def json(self, *args: str, input: str | bytes | None = None) -> Any:
        """Run a command that must succeed with ``-o json`` and parse its stdout."""
        return json.loads(self.ok(*args, "-o", "json", input=input).stdout)

    def user(self, email_or_id: str) -> dict[str, Any]:
        """The user as ``show-user -o json`` reports it (for tests of show-user's output)."""
        found: dict[str, Any] = self.json("show-user", email_or_id)
        return found

    def emails(self, *args: str) -> list[str]:
        """The emails ``list-users`` prints, in order (for tests of list-users' filters)."""
        return [row["email"] for row in self.json("list-users", "--limit", "10000", *args)]


@dataclass
class Usersctl:
    """The installed ``usersctl`` entry point, run in a subprocess (no terminal, a timeout)."""

    url: str | None
    cwd: Path

    @property
    def executable(self) -> str:
        return usersctl_executable()

    def env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        return clean_env(extra)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        url: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            self.url if url else None, *args, input=input, env=env, timeout=timeout, cwd=self.cwd
        )

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command that must succeed."""
        result = self(*args, **kwargs)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def fails(self, code: int, *args: str, **kwargs: Any) -> str:
        """Run a command that must fail with ``code`` and one ``Error:`` line; return that line."""
        result = self(*args, **kwargs)
        return one_error_line(result.returncode, code, result.stdout, result.stderr)


# The database, seen directly: plain SQL through the drivers, nothing of usersctl's ---------------


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def is_mysql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("mysql", "mariadb")


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1].split("?", 1)[0])


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite test URL, or None for a server's database."""
    return sqlite_path(url) if is_sqlite(url) else None


def asyncpg_dsn(url: str, **changes: Any) -> str:
    """A URL as asyncpg's ``connect`` takes it (no ``+asyncpg``), with parts replaced."""
    parsed = make_url(url).set(drivername="postgresql", **changes)
    return parsed.render_as_string(hide_password=False)


#: On MySQL/MariaDB, the harness's connections quote names as the SQL standard does
#: (``"user"``), so that the tests' plain SQL is the same on every database.
MYSQL_ANSI_QUOTES = "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"


def serial_primary_key(url: str, *, sqlite: str = "INTEGER PRIMARY KEY") -> str:
    """The SQL of an integer id the database numbers itself, as each spells it (on SQLite,
    ``sqlite`` says whether with AUTOINCREMENT)."""
    if is_mysql(url):
        return "INTEGER NOT NULL AUTO_INCREMENT PRIMARY KEY"
    if url.startswith("postgresql"):
        return "SERIAL PRIMARY KEY"
    return sqlite


def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str, source: str) -> str:
    """An app's module written from ``source`` into ``tmp_path`` under a name of its own (a
    module imported by an earlier test keeps its first content) and importable: its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def pymysql_connection(url: str) -> Any:
    """A plain PyMySQL connection (aiomysql brings PyMySQL) to the MySQL/MariaDB database of
    ``url``, in autocommit: outside usersctl and its async drivers, to hold a lock or watch the
    server."""
    import pymysql

    parsed = make_url(url)
    return pymysql.connect(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
        database=parsed.database,
        autocommit=True,
    )


def mysql_url(url: str) -> Any:
    """A MySQL test URL with an async driver (the one it names, else aiomysql) and utf8mb4."""
    parsed = make_url(url)
    driver = parsed.get_driver_name()
    driver = driver if driver in ("aiomysql", "asyncmy") else "aiomysql"
    return parsed.set(drivername=f"mysql+{driver}").update_query_dict({"charset": "utf8mb4"})


@lru_cache(maxsize=64)
def sql_engine(url: str) -> Any:
    """A SQLAlchemy engine of its own on ``url`` (aiosqlite, asyncpg, or a MySQL driver with
    standard quoting), not usersctl's.

    One per URL for the test process: it keeps no connection (``NullPool``: each use connects
    in its own event loop, and disposing of it closes nothing), only the SQL it compiled, so
    the catalogue queries of a reflection are compiled once, not for every seeded user."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    parsed = make_url(url)
    if is_mysql(url):
        return create_async_engine(
            mysql_url(url),
            connect_args={"init_command": MYSQL_ANSI_QUOTES},
            poolclass=NullPool,
        )
    driver = "sqlite+aiosqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+asyncpg"
    return create_async_engine(parsed.set(drivername=driver), poolclass=NullPool)


async def sql(url: str, statement: str, **params: Any) -> list[Any]:
    """Run one SQL statement (``:name`` parameters) in a transaction of its own and commit;
    its rows as tuples (none for a statement that returns none)."""
    from sqlalchemy import text

    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        await engine.dispose()


def execute(url: str, *statements: str, foreign_keys: bool = True) -> None:
    """Run SQL statements straight through the driver, each committed on its own (so that
    ``CREATE INDEX CONCURRENTLY`` runs too); ``foreign_keys=False`` lets rows break them."""
    if is_sqlite(url):
        connection = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
        try:
            connection.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            for statement in statements:
                connection.execute(statement)
        finally:
            connection.close()
        return
    if is_mysql(url):

        async def run_mysql() -> None:
            from sqlalchemy import text

            engine = sql_engine(url)
            try:
                async with engine.connect() as plain:
                    connection = await plain.execution_options(isolation_level="AUTOCOMMIT")
                    if not foreign_keys:
                        await connection.execute(text("SET SESSION foreign_key_checks = 0"))
                    for statement in statements:
                        await connection.exec_driver_sql(statement.replace("%", "%%"))
            finally:
                await engine.dispose()

        asyncio.run(run_mysql())
        return

    async def run_all() -> None:
        import asyncpg

        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
        try:
            if not foreign_keys:
                # Foreign keys are triggers; a superuser may switch them off for a session.
                await connection.execute("SET session_replication_role = replica")
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run_all())


async def _reflect(connection: Any, table_name: str) -> Any:
    """The table's columns and primary key, as the database describes them: all that seeding
    and inserting need (not its indexes and constraints, which take most of a reflection)."""
    from sqlalchemy import Column, MetaData, Table, inspect

    def reflect(sync: Any) -> Any:
        found = inspect(sync)
        key = set(found.get_pk_constraint(table_name)["constrained_columns"])
        columns = [
            Column(column["name"], column["type"], primary_key=column["name"] in key)
            for column in found.get_columns(table_name)
        ]
        return Table(table_name, MetaData(), *columns)

    return await connection.run_sync(reflect)


def _bindable(value: Any, dialect: str) -> Any:
    return str(value) if isinstance(value, uuid.UUID) and dialect != "postgresql" else value


def _as_read(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as tests compare it: ids that are UUIDs as ``uuid.UUID`` on both databases."""
    found = dict(row)
    if isinstance(found.get("id"), str):
        with contextlib.suppress(ValueError):
            found["id"] = uuid.UUID(found["id"])
    return found


async def _seed(url: str, specs: Sequence[Mapping[str, Any]], table_name: str) -> list[Any]:
    from sqlalchemy import Integer

    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            table = await _reflect(connection, table_name)
            dialect = connection.dialect.name
            integer_id = isinstance(table.c.id.type, Integer)
            created = []
            for spec in specs:
                values = {
                    "is_active": True,
                    "is_superuser": False,
                    "is_verified": False,
                    "hashed_password": seed_hash(),
                    **spec,
                }
                if not integer_id:
                    values["id"] = uuid.UUID(str(values.get("id") or uuid.uuid4()))
                values = {name: _bindable(value, dialect) for name, value in values.items()}
                statement = table.insert().values(values).returning(*table.c)
                row = (await connection.execute(statement)).mappings().one()
                created.append({k: v for k, v in _as_read(row).items() if k != "hashed_password"})
            return created
    finally:
        await engine.dispose()


async def _query(url: str, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    from sqlalchemy import text

    engine = sql_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(sql), dict(params))
            return [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()


def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    """The rows of one SQL query (``:name`` parameters), as dicts."""
    return asyncio.run(_query(url, sql, params))


async def _insert(url: str, table_name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            table = await _reflect(connection, table_name)
            dialect = connection.dialect.name
            bound = [{k: _bindable(v, dialect) for k, v in row.items()} for row in rows]
            await connection.execute(table.insert(), bound)
    finally:
        await engine.dispose()


#: Set by ``quick_hashing``: usersctl then hashes at Argon2's lowest cost, and so does seeding.
QUICK_HASHING = False


@lru_cache(maxsize=2)
def _argon2_hash(quick: bool) -> str:
    import argon2

    if quick:
        return argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    return argon2.PasswordHasher().hash(PASSWORD)


def seed_hash() -> str:
    """One Argon2id hash of ``PASSWORD`` by argon2-cffi (computed once), with the parameters
    usersctl hashes with in this test, so that it counts as current, not as outdated."""
    return _argon2_hash(QUICK_HASHING)


stored_hash = seed_hash


def seed(url: str, email: str, hashed: str | None = None, **flags: Any) -> dict[str, Any]:
    """Insert one user with SQL (``hashed`` defaults to a hash of ``PASSWORD``); its row."""
    spec = {"email": email, **flags}
    if hashed is not None:
        spec["hashed_password"] = hashed
    row: dict[str, Any] = asyncio.run(_seed(url, [spec], "user"))[0]
    return row


def rows(url: str, table_name: str = "user") -> list[dict[str, Any]]:
    """Every row of a table, as stored."""
    return query(url, f'SELECT * FROM "{table_name}"')


def committed_count(url: str) -> int:
    """How many users a reader sees now (committed rows only)."""
    if is_sqlite(url):
        with contextlib.closing(sqlite3.connect(sqlite_path(url), timeout=30)) as connection:
            return int(connection.execute('SELECT count(*) FROM "user"').fetchone()[0])
    if is_mysql(url):
        return int(query(url, 'SELECT count(*) AS n FROM "user"')[0]["n"])
    with PgConnection(url) as connection:
        return int(connection.fetchval('SELECT count(*) FROM "user"'))


#: FastAPI Users' user columns but the id, as the tests' CREATE TABLE statements write them.
USER_COLUMNS = (
    "email VARCHAR(320) NOT NULL, hashed_password VARCHAR(1024) NOT NULL, "
    "is_active BOOLEAN NOT NULL, is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL"
)


def integer_user_table(
    url: str, *, id_sql: str | None = None, columns: str = "", unique_email: bool = False
) -> Database:
    """A user table whose integer ids the database numbers (``id_sql``, else its serial key:
    PostgreSQL's sequence, MariaDB's AUTO_INCREMENT, SQLite's rowid), ``columns`` (", ..."
    column definitions) added, empty; ``unique_email`` adds FastAPI Users' unique index on the
    email."""
    statements = [
        f'CREATE TABLE "user" (id {id_sql or serial_primary_key(url)}, {USER_COLUMNS}{columns})'
    ]
    if unique_email:
        statements.append('CREATE UNIQUE INDEX ix_user_email ON "user" (email)')
    execute(url, *statements)
    return Database(url)


def user_and_token_tables(url: str, *, unique_key: bool = True) -> Database:
    """FastAPI Users' user table (UUID ids) and its access token table, empty, made with SQL;
    with ``unique_key`` the unique index on the email (``lower(email)``; MySQL's ``_ci``
    collation makes a plain one case-insensitive)."""
    id_type = "UUID" if url.startswith("postgresql") else "CHAR(36)"
    statements = [
        f'CREATE TABLE "user" (id {id_type} NOT NULL PRIMARY KEY, {USER_COLUMNS})',
        "CREATE TABLE accesstoken (token VARCHAR(43) PRIMARY KEY, created_at TIMESTAMP, "
        f'user_id {id_type} NOT NULL REFERENCES "user"(id))',
    ]
    if unique_key:
        key = "email" if is_mysql(url) else "lower(email)"
        statements.append(f'CREATE UNIQUE INDEX ix_user_email_lower ON "user" ({key})')
    execute(url, *statements)
    return Database(url)


@dataclass
class Database:
    """The test database reached with plain SQL, for preparing and checking what commands did."""

    url: str
    #: The password every seeded user has.
    password: str = PASSWORD

    @property
    def sqlite_path(self) -> Path | None:
        return sqlite_file(self.url)

    def seed(self, *emails: str, **flags: Any) -> list[dict[str, Any]]:
        """Insert users with ``PASSWORD`` and the given columns (``is_superuser=True``...), the
        emails exactly as given; their rows, without ``hashed_password``."""
        return self.seed_specs(*({"email": email, **flags} for email in emails))

    def seed_specs(self, *specs: Mapping[str, Any], table: str = "user") -> list[dict[str, Any]]:
        """Insert users each with columns of its own; their rows."""
        return asyncio.run(_seed(self.url, specs, table))

    def stored_hash(self, email: str) -> str:
        """The ``hashed_password`` of the user of ``email`` (any case)."""
        (row,) = self.query(
            'SELECT hashed_password FROM "user" WHERE lower(email) = lower(:email)', email=email
        )
        return str(row["hashed_password"])

    def count(self, table_name: str = "user") -> int:
        return int(self.query(f'SELECT count(*) AS n FROM "{table_name}"')[0]["n"])

    def execute(self, *statements: str, foreign_keys: bool = True) -> None:
        """Run SQL statements (DDL, say), each committed."""
        execute(self.url, *statements, foreign_keys=foreign_keys)

    def insert(self, table_name: str, *rows: dict[str, Any]) -> None:
        asyncio.run(_insert(self.url, table_name, rows))

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of one SQL query (``:name`` parameters), as dicts."""
        return query(self.url, sql, **params)

    def rows(self, table_name: str = "user") -> list[dict[str, Any]]:
        """Every row of a table, as stored."""
        return rows(self.url, table_name)

    def user(self, email: str) -> dict[str, Any]:
        """The stored row of the user of ``email`` (any case), ``hashed_password`` included."""
        (row,) = self.query('SELECT * FROM "user" WHERE lower(email) = lower(:email)', email=email)
        return _as_read(row)

    def emails(self, where: str = "1 = 1") -> list[str]:
        """The stored emails of the users matching the SQL condition ``where``, in the order of
        the lowercased email (list-users' order)."""
        found = self.query(f'SELECT email FROM "user" WHERE {where}')
        return sorted((row["email"] for row in found), key=lambda email: (email.lower(), email))

    def flag(self, email: str, column: str) -> bool:
        """A boolean column of the user of ``email`` (any case), as stored."""
        return bool(self.user(email)[column])


# PostgreSQL, held from synchronous test code ---------------------------------------------------


class PgConnection:
    """A plain asyncpg connection driven from synchronous test code (its loop runs in a thread),
    so a test can hold a lock or a transaction while the processes it starts run."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.connection: Any = None

    def __enter__(self) -> PgConnection:
        import asyncpg

        self.thread.start()
        self.connection = self._call(asyncpg.connect(asyncpg_dsn(self.url), timeout=10))
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._call(self.connection.close(timeout=5))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def execute(self, sql: str, *args: Any) -> str:
        return self._call(self.connection.execute(sql, *args))

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self._call(self.connection.fetchval(sql, *args))


USER_TABLE_LOCKS = """
    SELECT count(*) FROM pg_locks
    WHERE relation = 'public.user'::regclass AND mode = $1 AND granted = $2 AND pid <> pg_backend_pid()
"""


def pg_waiting(connection: PgConnection) -> int:
    """How many other sessions wait for a lock on the user table."""
    return int(
        connection.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = 'public.user'::regclass "
            "AND NOT granted AND pid <> pg_backend_pid()"
        )
    )


def pg_lock_held(connection: PgConnection, mode: str, granted: bool = True) -> bool:
    return bool(connection.fetchval(USER_TABLE_LOCKS, mode, granted))


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (it connected to that SQLite file)."""
    target = str(path.resolve())
    try:
        return any(
            os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")
        )
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


class WriteGate:
    """Hold the database's write lock so that processes started meanwhile queue up at it, then let
    them all go at once: a real race, not processes that happen to run one after another.

    SQLite: a ``BEGIN IMMEDIATE`` transaction; a process has queued once it has the file open (it
    connects, then waits in ``BEGIN IMMEDIATE``). PostgreSQL: ``LOCK TABLE ... ACCESS EXCLUSIVE``;
    a process has queued once ``pg_locks`` shows it waiting. MySQL/MariaDB: ``LOCK TABLES ...
    WRITE`` (through PyMySQL, which aiomysql brings); a process has queued once the process list
    shows it waiting for the table's metadata lock (reading the table's structure).
    """

    def __init__(self, url: str, mode: str = "ACCESS EXCLUSIVE") -> None:
        self.url = url
        self.mode = mode
        self._sqlite: sqlite3.Connection | None = None
        self._pg: PgConnection | None = None
        self._mysql: Any = None

    def __enter__(self) -> WriteGate:
        if is_sqlite(self.url):
            self._sqlite = sqlite3.connect(sqlite_path(self.url), isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        elif is_mysql(self.url):
            self._mysql = pymysql_connection(self.url)
            with self._mysql.cursor() as cursor:
                cursor.execute("LOCK TABLES `user` WRITE")
        else:
            self._pg = PgConnection(self.url).__enter__()
            self._pg.execute("BEGIN")
            self._pg.execute(f'LOCK TABLE "user" IN {self.mode} MODE')
        return self

    def queued(self, processes: Sequence[subprocess.Popen[str]]) -> int:
        if self._sqlite is not None:
            path = sqlite_path(self.url)
            return sum(has_open(process.pid, path) for process in processes)
        if self._mysql is not None:
            with self._mysql.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
                    "AND ID <> CONNECTION_ID() AND STATE = 'Waiting for table metadata lock'"
                )
                return int(cursor.fetchone()[0])
        assert self._pg is not None
        return pg_waiting(self._pg)

    def wait_until_queued(
        self, processes: Sequence[subprocess.Popen[str]], limit: float = 90
    ) -> None:
        """Wait until every process waits at the gate. On SQLite the first to arrive gives up after
        its busy timeout (30 s), so the gate opens at most 20 s after the first arrived."""
        deadline = time.monotonic() + limit
        first_arrival: float | None = None
        while True:
            for process in processes:
                assert process.poll() is None, finish(process)
            arrived = self.queued(processes)
            now = time.monotonic()
            if arrived == len(processes):
                return
            if arrived and first_arrival is None:
                first_arrival = now
            if self._sqlite is not None and first_arrival is not None and now - first_arrival > 20:
                return
            assert now < deadline, f"only {arrived} of {len(processes)} processes reached the gate"
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
        if self._mysql is not None:
            with contextlib.suppress(Exception), self._mysql.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")
            self._mysql.close()
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.execute("ROLLBACK")
            self._pg.__exit__()


# A TCP proxy that can cut its connections -------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; ``cut()`` resets every connection at once, as a
    failed network or a killed server does. ``disguise`` (old, new: of one length, so that no
    length the protocol states changes) replaces old with new in what the server sends, as a
    server of another version would send it; ``record`` keeps what the clients send in
    ``sent``."""

    def __init__(
        self,
        upstream: tuple[str, int],
        *,
        disguise: tuple[bytes, bytes] | None = None,
        record: bool = False,
    ) -> None:
        if disguise is not None and len(disguise[0]) != len(disguise[1]):
            raise ValueError("a disguise keeps the length of what it replaces")
        self.upstream = upstream
        self.disguise = disguise
        self.sent: bytearray | None = bytearray() if record else None
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port: int = self.server.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for source, target, sent, disguise in (
                (client, server, self.sent, None),
                (server, client, None, self.disguise),
            ):
                threading.Thread(
                    target=self._pump, args=(source, target, sent, disguise), daemon=True
                ).start()

    @staticmethod
    def _pump(
        source: socket.socket,
        target: socket.socket,
        sent: bytearray | None,
        disguise: tuple[bytes, bytes] | None,
    ) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if sent is not None:
                    sent += data
                if disguise is not None:
                    data = data.replace(*disguise)
                target.sendall(data)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                # Linger 0: close() sends a reset. shutdown() first wakes the pumping threads,
                # whose blocked recv() would otherwise keep the socket alive.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.server.close()
        self.cut()


# A private PostgreSQL cluster --------------------------------------------------------------------


@dataclass(frozen=True)
class PrivateCluster:
    """A throwaway PostgreSQL server of this test session: password authentication (scram), and
    free to be stopped and started without disturbing the shared server other tests use."""

    data: Path
    port: int
    password: str
    bin: Path

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        secret = self.password if password is None else password
        return f"postgresql://postgres:{secret}@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*as_postgres(), str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data.parent} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.pg_ctl("-o", options, "-l", str(self.data.parent / "log"), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "-w", "stop")


def as_postgres() -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _postgres_unusable(reason: str) -> None:
    """Skip a PostgreSQL test that cannot run here, or fail it when PostgreSQL is required."""
    if REQUIRE_POSTGRES:
        pytest.fail(f"PostgreSQL is required (USERSCTL_REQUIRE_POSTGRES) but {reason}")
    pytest.skip(reason)


# Plugin hooks and fixtures -----------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that runs on PostgreSQL carries the ``postgres`` marker: the PostgreSQL half of
    ``database_url``, and tests that use a PostgreSQL fixture directly; the same for MariaDB and
    the ``mariadb`` marker."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("database_url") if callspec is not None else None
        fixtures = set(getattr(item, "fixturenames", ()))
        direct = {"postgres_database", "private_cluster"} & fixtures
        if (param == "postgresql" or direct) and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)
        on_mariadb = param == "mariadb" or "mariadb_database" in fixtures
        if on_mariadb and item.get_closest_marker("mariadb") is None:
            item.add_marker(pytest.mark.mariadb)


def _mariadb_unusable(reason: str) -> None:
    """Skip a MariaDB test that cannot run here, or fail it when MariaDB is required."""
    if REQUIRE_MARIADB:
        pytest.fail(f"MariaDB is required (USERSCTL_REQUIRE_MARIADB) but {reason}")
    pytest.skip(reason)


def mysql_run(url: str, *statements: str) -> None:
    """Run statements on a MySQL server, each committed, with the harness's quoting."""
    execute(url, *statements)


@pytest.fixture(scope="session")
def mariadb_database() -> Iterator[str]:
    """A MariaDB database of its own for this test session (for each xdist worker), dropped at
    the end; what ``USERSCTL_TEST_MARIADB_URL`` names is only the server (and the account)."""
    if not MARIADB_URL:
        _mariadb_unusable("USERSCTL_TEST_MARIADB_URL is not set")
    name = f"usersctl_test_{uuid.uuid4().hex[:12]}"
    try:
        mysql_run(MARIADB_URL, f"CREATE DATABASE `{name}`")
    except Exception as exc:
        _mariadb_unusable(f"MariaDB is unusable at {MARIADB_URL}: {exc}")
    yield mysql_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    mysql_run(MARIADB_URL, f"DROP DATABASE IF EXISTS `{name}`")


def _database_params() -> list[Any]:
    """SQLite and PostgreSQL always; MariaDB where a server is named or required."""
    params = [
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
    if MARIADB_URL or REQUIRE_MARIADB:
        params.append(pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb))
    return params


def pytest_configure(config: pytest.Config) -> None:
    """usersctl's bytecode, compiled once before the tests start (by the main process, before
    pytest-xdist's workers): the tests run the installed entry point about a thousand times, and
    an editable install has no bytecode of its own, which each of those processes would
    otherwise compile again where ``PYTHONDONTWRITEBYTECODE`` is set (as on CI machines)."""
    if not hasattr(config, "workerinput"):
        import compileall

        import usersctl

        # quiet=2: where the package's folder is not writable, nothing is said and no harm done
        compileall.compile_dir(Path(usersctl.__file__).parent, quiet=2)


def pytest_collection_finish(session: pytest.Session) -> None:
    """A test module may define ``prepare_in_background(folder)``, a slow preparation (a virtual
    environment from PyPI, say) that waits on the network more than it works. When one of its
    tests is selected, it starts here, in a thread, while the other tests run; ``folder`` is one
    per test run, shared by pytest-xdist's workers (the module makes sure only one prepares)."""
    modules = {getattr(item, "module", None) for item in session.items}
    for module in modules:
        prepare = getattr(module, "prepare_in_background", None)
        if prepare is not None:
            threading.Thread(
                target=prepare, args=(shared_run_folder(session.config),), daemon=True
            ).start()


def shared_run_folder(config: pytest.Config) -> Path:
    """A folder of this test run that pytest-xdist's workers share (the parent of their own
    temporary folders), kept and cleaned by pytest with the run's other temporary folders."""
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return Path(base.parent if hasattr(config, "workerinput") else base)


async def _pg_execute(dsn: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _pg_run(dsn: str, *statements: str) -> None:
    asyncio.run(_pg_execute(dsn, *statements))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database of its own for this test session (for each xdist worker), dropped at
    the end."""
    admin_dsn = asyncpg_dsn(POSTGRES_URL)
    name = f"usersctl_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_run(admin_dsn, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        _postgres_unusable(f"PostgreSQL is unusable at {POSTGRES_URL}: {exc}")
    url = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg", database=name)
    yield url.render_as_string(hide_password=False)
    _pg_run(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=_database_params())
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database: a new SQLite file, a PostgreSQL database with an empty schema, or a
    MariaDB database emptied of its tables.

    A test that means one database only says so:
    ``@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)``.
    """
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "users.db"
        return f"sqlite+aiosqlite:///{path}"
    if request.param == "mariadb":
        mariadb: str = request.getfixturevalue("mariadb_database")
        name = make_url(mariadb).database
        # A database dropped and made again is quicker than dropping its tables one by one.
        mysql_run(mariadb, f"DROP DATABASE `{name}`", f"CREATE DATABASE `{name}`")
        return mariadb
    url: str = request.getfixturevalue("postgres_database")
    _pg_run(asyncpg_dsn(url), "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Any]:
    """usersctl's engine on ``database_url``, disposed of after the test."""
    from usersctl.engine import create_engine

    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: Any) -> AsyncIterator[Any]:
    """A session on ``engine``."""
    from usersctl.engine import session_factory

    async with session_factory(engine)() as session:
        yield session


@pytest.fixture
def quick_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands hash with Argon2id at its lowest cost.

    What the command-line tests test is the command line, not Argon2's cost (the tests of
    usersctl.passwords cover the real parameters); the installed entry point keeps them.
    """
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher
    from pwdlib.hashers.bcrypt import BcryptHasher

    from usersctl import passwords

    quick = PasswordHash(
        (Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1), BcryptHasher())
    )
    monkeypatch.setattr(passwords, "password_hash", lambda: quick)
    monkeypatch.setattr(sys.modules[__name__], "QUICK_HASHING", True)


class SilentServer:
    """A port on 127.0.0.1 that accepts connections and never answers, and notes when each
    connection came: a connect timeout is measured from there, without the start-up before."""

    def __init__(self) -> None:
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port: int = self.server.getsockname()[1]
        self.connected_at: list[float] = []
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connected_at.append(time.monotonic())
            self._held.append(client)

    def timed_out(self, run: Callable[[], T], timeout: float) -> T:
        """Run a command that must give up on this server after ``timeout`` seconds: from its
        first connection to its end, ``0.9 * timeout <= elapsed < timeout + 1``."""
        before = len(self.connected_at)
        result = run()
        ended = time.monotonic()
        assert len(self.connected_at) > before, "the command never connected"
        elapsed = ended - self.connected_at[before]
        assert 0.9 * timeout <= elapsed < timeout + 1, f"gave up after {elapsed:.2f} s"
        return result

    def close(self) -> None:
        self.server.close()
        for client in self._held:
            client.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    """A :class:`SilentServer`."""
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def silent_server(silent: SilentServer) -> int:
    """The port of a :class:`SilentServer`."""
    return silent.port


@pytest.fixture
def bare_cli(tmp_path: Path) -> Cli:
    """The CLI for tests that touch no database (help, version, usage errors)."""
    return Cli("sqlite+aiosqlite:///no-such-folder/never-created.db", tmp_path)


@pytest.fixture
def empty_cli(database_url: str, tmp_path: Path) -> Cli:
    """The CLI on a database without tables (for a SQLite URL, no file yet)."""
    return Cli(database_url, tmp_path)


@pytest.fixture
def cli_on(tmp_path: Path) -> Callable[[str], Cli]:
    """The CLI on a database of the test's choosing (a second file, say)."""
    return lambda url: Cli(url, tmp_path)


@pytest.fixture(name="cli")
def cli_fixture(empty_cli: Cli) -> Cli:
    """The CLI on a database that ``init-db`` prepared (the user table only)."""
    empty_cli.ok("init-db")
    return empty_cli


@pytest.fixture
def db(cli: Cli) -> Database:
    """The prepared test database, for seeding users and checking rows with SQL."""
    return Database(cli.url)


@pytest.fixture
def database_at() -> type[Database]:
    """``Database`` itself, for tests that prepare further databases of their own."""
    return Database


@pytest.fixture
def url(database_url: str) -> str:
    """The test database with the user table (``init-db``), on SQLite and on PostgreSQL."""
    init_db(database_url)
    return database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of its own with the user table, for what only SQLite has."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    init_db(url)
    return url


@pytest.fixture
def usersctl(database_url: str, tmp_path: Path) -> Usersctl:
    """The installed entry point with ``-d`` set to the test database, run in a temporary folder."""
    return Usersctl(database_url, tmp_path)


@pytest.fixture
def usersctl_anywhere(tmp_path: Path) -> Usersctl:
    """The installed entry point without ``-d``, run in a temporary folder."""
    return Usersctl(None, tmp_path)


@pytest.fixture
def spawn(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start the installed entry point on a pseudo-terminal (pexpect), with ``-d`` set."""
    children: list[Any] = []

    def start_child(
        *args: str,
        env: Mapping[str, str | None] | None = None,
        dimensions: tuple[int, int] = (40, 200),
        timeout: float = 20,
    ) -> Any:
        child = spawn_terminal(
            usersctl_executable(),
            ["-d", database_url, *args],
            env=env,
            cwd=tmp_path,
            dimensions=dimensions,
            timeout=timeout,
        )
        children.append(child)
        return child

    yield start_child
    for child in children:
        child.close(force=True)


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    """initdb + pg_ctl as the postgres user in a temporary folder (about 2 s). Where the
    binaries, root or setpriv are missing: skipped, or failed when PostgreSQL is required."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries or os.geteuid() != 0 or shutil.which("setpriv") is None:
        _postgres_unusable("a private PostgreSQL server needs initdb, root and setpriv")
    bin_dir = binaries[-1].parent
    # Not under pytest's temporary folder: the postgres user cannot enter root's.
    folder = Path(tempfile.mkdtemp(prefix="usersctl-pg-"))
    shutil.chown(folder, "postgres", "postgres")
    folder.chmod(0o700)
    password = f"pw-{uuid.uuid4().hex}"
    password_file = folder / "password"
    password_file.write_text(password + "\n")
    shutil.chown(password_file, "postgres", "postgres")
    subprocess.run(
        [
            *as_postgres(),
            str(bin_dir / "initdb"),
            "-D",
            str(folder / "data"),
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            f"--pwfile={password_file}",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = PrivateCluster(folder / "data", free_port(), password, bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop("immediate")
        # Whatever pg_ctl managed: no server of this folder outlives the session.
        pid_file = cluster.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)
