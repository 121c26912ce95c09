"""Database URLs, engines and sessions: one place that turns what people paste into a working engine."""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from usersctl import DEFAULT_DATABASE_URL as DEFAULT_DATABASE_URL  # re-exported
from usersctl.email_case import register_fold_function
from usersctl.errors import DatabaseProblem, InvalidInput

DEFAULT_CONNECT_TIMEOUT = 10.0

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
#: MySQL and MariaDB: asyncmy drives plain ``mysql://`` and ``mariadb://`` URLs (it measured
#: faster than aiomysql, see the README); a URL naming aiomysql keeps it.
MYSQL_DRIVERS = {"asyncmy": "mysql+asyncmy", "aiomysql": "mysql+aiomysql"}
_MYSQL_DEFAULT_DRIVER = "asyncmy"
#: What a MySQL URL names as its driver, and the async driver that serves it.
_MYSQL_PASTED_DRIVERS = {
    "": _MYSQL_DEFAULT_DRIVER,
    "pymysql": _MYSQL_DEFAULT_DRIVER,
    "mysqldb": _MYSQL_DEFAULT_DRIVER,
    "mysqlconnector": _MYSQL_DEFAULT_DRIVER,
    "mariadbconnector": _MYSQL_DEFAULT_DRIVER,
    "asyncmy": "asyncmy",
    "aiomysql": "aiomysql",
}
MYSQL_INSTALL = "pip install 'usersctl[mysql]'"
MYSQL_ANSI_QUOTES = "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')"
#: The URL query parameters of a MySQL URL: those SQLAlchemy's MySQL dialects pass on to the
#: driver's ``connect()`` (the ``ssl_*`` ones gathered into its ``ssl``) and the driver takes.
#: Neither driver has a write timeout; aiomysql has no read timeout either.
_MYSQL_NUMBERS = {"connect_timeout": float, "read_timeout": float}
_MYSQL_PARAMETERS = frozenset(
    {
        *_MYSQL_NUMBERS,
        "charset",
        "unix_socket",
        "init_command",
        "local_infile",
        "ssl_ca",
        "ssl_cert",
        "ssl_key",
        "ssl_capath",
        "ssl_cipher",
        "ssl_check_hostname",
    }
)
_MYSQL_DRIVER_PARAMETERS = {
    "asyncmy": _MYSQL_PARAMETERS,
    "aiomysql": _MYSQL_PARAMETERS - {"read_timeout"},
}
#: The URL query parameters a PostgreSQL URL may carry: asyncpg's ``connect()`` keywords that
#: a text can give, and SQLAlchemy's own for asyncpg. Anything else would reach ``connect()``
#: as an unexpected keyword argument.
_POSTGRES_PARAMETERS = frozenset(
    {
        "host",
        "port",
        "user",
        "password",
        "passfile",
        "service",
        "servicefile",
        "database",
        "timeout",
        "statement_cache_size",
        "max_cached_statement_lifetime",
        "max_cacheable_statement_size",
        "command_timeout",
        "ssl",
        "sslmode",  # libpq's spelling, translated to ssl below
        "direct_tls",
        "target_session_attrs",
        "krbsrvname",
        "gsslib",
        "prepared_statement_cache_size",
        "application_name",  # libpq's; sent as a server setting
    }
)
#: Parameters asyncpg wants as numbers; a URL carries text.
_POSTGRES_NUMBERS = {
    "timeout": float,
    "command_timeout": float,
    "statement_cache_size": int,
    "max_cached_statement_lifetime": float,
    "max_cacheable_statement_size": int,
}
#: The URL query parameters of a SQLite URL: those SQLAlchemy passes to Python's sqlite3 (the
#: numbers among them checked here), and, with ``?uri=true``, SQLite's own URI parameters.
#: Anything else would be ignored without a word.
_SQLITE_NUMBERS = {"timeout": float, "detect_types": int, "cached_statements": int}
_SQLITE_FLAGS = ("uri", "check_same_thread")
_SQLITE_PARAMETERS = frozenset({*_SQLITE_NUMBERS, *_SQLITE_FLAGS, "isolation_level"})
_SQLITE_URI_PARAMETERS = frozenset(
    {"vfs", "mode", "cache", "psow", "nolock", "immutable", "modeof"}
)
#: The words SQLAlchemy reads as true and false in a URL.
_URL_BOOLEANS = {
    **dict.fromkeys(("true", "yes", "on", "y", "t", "1"), True),
    **dict.fromkeys(("false", "no", "off", "n", "f", "0"), False),
}


def normalize_url(raw: str | URL) -> URL:
    """Parse a database URL and give it an async driver: asyncpg for PostgreSQL, aiosqlite for SQLite."""
    try:
        url = make_url(raw.strip() if isinstance(raw, str) else raw)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise InvalidInput(
            "the database URL is not valid; expected e.g. sqlite:///users.db, "
            "postgresql://user@host/db or mysql://user@host/db"
        ) from None
    if "@" in (url.host or ""):
        raise InvalidInput(
            "the database URL has more than one '@'; write an '@' in the password as %40"
        )
    if url.port is not None:
        _check_port(url.port, "port")
    backend, _, driver = url.drivername.partition("+")
    if backend in _ASYNC_DRIVERS and driver in ("", "psycopg2", "psycopg", "asyncpg", "pg8000"):
        query = dict(url.query)
        _refuse_unknown(
            query,
            _POSTGRES_PARAMETERS,
            "asyncpg",
            f"{', '.join(sorted(_POSTGRES_PARAMETERS - {'sslmode'}))} (and sslmode)",
        )
        _check_query_ports(query)
        if "sslmode" in query:
            # libpq's ?sslmode=require (as hosting providers print URLs) is asyncpg's ssl=require;
            # passed on as it is, asyncpg's connect() fails with an unexpected keyword argument.
            query.setdefault("ssl", query.pop("sslmode"))
        return url.set(drivername=_ASYNC_DRIVERS[backend], query=query)
    if backend == "sqlite" and driver in ("", "pysqlite", "aiosqlite"):
        _check_sqlite_query(url)
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("mysql", "mariadb") and driver in _MYSQL_PASTED_DRIVERS:
        serving = _MYSQL_PASTED_DRIVERS[driver]
        allowed = _MYSQL_DRIVER_PARAMETERS[serving]
        _refuse_unknown(url.query, allowed, serving, ", ".join(sorted(allowed)))
        for name, convert in _MYSQL_NUMBERS.items():
            given = url.query.get(name)
            if isinstance(given, str):
                value = _check_number(name, given, convert)
                if name == "read_timeout" and value == 0:  # asyncmy: "should be > 0"
                    raise InvalidInput(
                        "the database URL's ?read_timeout= must be a finite number above 0"
                    )
        query = dict(url.query)
        # Four-byte UTF-8 (emoji, rarer CJK) in addresses and names; MySQL's "utf8" is three.
        query.setdefault("charset", "utf8mb4")
        return url.set(drivername=MYSQL_DRIVERS[serving], query=query)
    raise InvalidInput(
        f"unsupported database {url.drivername!r}; use a sqlite://, postgresql:// or mysql:// URL"
    )


def _refuse_unknown(query: Any, allowed: frozenset[str], driver: str, takes: str) -> None:
    """Refuse the query parameters of a URL that are not in ``allowed``, naming them (unless a
    name may be a secret; a value never), and saying what ``driver`` takes."""
    unknown = sorted(name for name in query if name not in allowed)
    if unknown:
        shown = ", ".join(
            "?" + ("(a parameter)" if is_secret_parameter(name) else name) for name in unknown
        )
        noun = "a parameter" if len(unknown) == 1 else "parameters"
        raise InvalidInput(
            f"the database URL has {noun} {driver} does not take: {shown}; it takes {takes}"
        )


def _check_port(port: Any, where: str) -> None:
    """Refuse a port that is not a number from 1 to 65535 (asyncpg would fail with an
    OverflowError, after the rest of the command had started)."""
    text = str(port).strip()
    if not text.isdigit() or len(text) > 5 or not 1 <= int(text) <= 65535:
        shown = f" {text}" if text.isdigit() and len(text) <= 20 else ""
        raise InvalidInput(
            f"the database URL's {where}{shown} is out of range: a port is a number from 1 to 65535"
        )


def _check_query_ports(query: dict[str, Any]) -> None:
    """The ports a PostgreSQL URL gives in its query: ``?port=5432,5433``, ``?host=h:5432``."""
    for name in ("port", "host"):
        values = query.get(name, ())
        for value in [values] if isinstance(values, str) else values:
            for part in value.split(","):
                if name == "port" and part.strip():
                    _check_port(part, "?port=")
                elif name == "host":
                    found = re.fullmatch(r"[A-Za-z0-9.-]*:(.*)", part.strip())
                    if found and found.group(1):
                        _check_port(found.group(1), "?host= port")


def _check_number(name: str, raw: str, convert: type[float] | type[int]) -> float:
    """A number from the URL's ``?name=``: finite and not negative, else ``InvalidInput``."""
    try:
        value = convert(raw)
    except ValueError:
        raise InvalidInput(
            f"the database URL's ?{name}= is not a number ({convert.__name__})"
        ) from None
    if value < 0 or not math.isfinite(value):
        raise InvalidInput(f"the database URL's ?{name}= must be a finite number >= 0")
    return value


def _check_sqlite_query(url: URL) -> None:
    """Refuse the parameters of a SQLite URL that nothing would read, and values that are not
    of their parameter's kind, before SQLAlchemy fails on them with a bare ValueError."""
    query = url.query
    flags: dict[str, bool] = {}
    for name in _SQLITE_FLAGS:
        raw = query.get(name)
        if isinstance(raw, str):
            if raw.strip().lower() not in _URL_BOOLEANS:
                raise InvalidInput(f"the database URL's ?{name}= must be true or false")
            flags[name] = _URL_BOOLEANS[raw.strip().lower()]
    allowed = _SQLITE_PARAMETERS | (_SQLITE_URI_PARAMETERS if flags.get("uri") else frozenset())
    _refuse_unknown(
        query,
        allowed,
        "SQLite",
        f"{', '.join(sorted(_SQLITE_PARAMETERS))}, and with ?uri=true SQLite's own "
        f"({', '.join(sorted(_SQLITE_URI_PARAMETERS))})",
    )
    for name, convert in _SQLITE_NUMBERS.items():
        raw = query.get(name)
        if isinstance(raw, str):
            _check_number(name, raw, convert)


#: Words that make a URL query parameter a secret: asyncpg and libpq take ``?password=`` and
#: ``?sslpassword=``; other drivers and poolers spell tokens and keys their own way.
_SECRET_PARAMETER_WORDS = ("password", "passwd", "pwd", "secret", "token", "key")


def is_secret_parameter(name: str) -> bool:
    """Whether a URL query parameter may hold a secret (``password``, ``sslpassword``...)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_PARAMETER_WORDS)


def mask_url(url: str | URL) -> str:
    """The URL as it may be shown to a person: the password, and every query parameter that may
    hold a secret, replaced by ``***``."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError):
        return "<invalid URL>"
    host = parsed.host or ""
    if "@" in host:
        # An unencoded '@' in the password: SQLAlchemy takes the rest of the password for the host.
        parsed = parsed.set(host=host.rpartition("@")[2])
    secret = [name for name in parsed.query if is_secret_parameter(name)]
    if secret:
        parsed = parsed.update_query_dict({name: "***" for name in secret})
    # The renderer escapes the query's '*' as %2A; shown as the password is, as ***.
    return parsed.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=***")


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for a server's URL and in-memory databases."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def check_sqlite_file(url: URL) -> None:
    """Refuse a SQLite URL whose file does not exist, rather than silently create an empty one."""
    path = sqlite_path(url)
    if path is None:
        return
    if path.is_dir():
        raise DatabaseProblem(f"{path} is a directory, not a SQLite database file")
    if not path.exists():
        raise DatabaseProblem(
            f"database file {path} does not exist; run `usersctl init-db` to create it"
        )


def create_engine(
    url: str | URL,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    sqlite_begin: str = "BEGIN IMMEDIATE",
    sqlite_wal: bool = True,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine for ``url``, normalised, with bounded connect time.

    On SQLite every connection enforces foreign keys, waits for locks instead of failing with
    "database is locked", has usersctl's Unicode-aware ``usersctl_lower()``, and with ``sqlite_wal`` switches the file to WAL. That lasts beyond the
    connection: work that only reads passes ``sqlite_wal=False`` and leaves the file as it was. Transactions start with ``BEGIN IMMEDIATE`` by default:
    one that reads and then writes (``get_by_email`` then ``create``, as every registration does)
    cannot wait for the write lock once it holds a read snapshot, so under a deferred ``BEGIN``
    concurrent writers fail at once whatever the busy timeout. Pass ``sqlite_begin="BEGIN"`` for
    read-only work that should not queue behind writers (or a read-only file).
    """
    url = normalize_url(url)
    if not (isinstance(connect_timeout, (int, float)) and 0 < connect_timeout < math.inf):
        raise InvalidInput("the connect timeout must be a finite number of seconds above 0")
    connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
    if url.get_backend_name() == "postgresql":
        url = _postgres_connect_args(url, connect_args)
        connect_args.setdefault("timeout", connect_timeout)
        engine = _create_async_engine(url, connect_args=connect_args, **kwargs)
    elif url.get_backend_name() == "mysql":
        url = _mysql_connect_args(url, connect_args, connect_timeout)
        engine = _create_async_engine(url, connect_args=connect_args, **kwargs)
        _configure_mysql(engine)
    else:
        connect_args.setdefault("timeout", max(connect_timeout, 30.0))
        connect_args.setdefault("async_creator_fn", _connect_aiosqlite)
        engine = _create_async_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(
            engine,
            busy_timeout=connect_args["timeout"],
            begin=sqlite_begin,
            wal=sqlite_wal,
        )
    return engine


def _postgres_connect_args(url: URL, connect_args: dict[str, Any]) -> URL:
    """Move the URL's parameters that asyncpg takes as numbers or as server settings into
    ``connect_args``, converted; return the URL without them."""
    moved: list[str] = []
    for name, convert in _POSTGRES_NUMBERS.items():
        raw = url.query.get(name)
        if isinstance(raw, str):
            connect_args.setdefault(name, _check_number(name, raw, convert))
            moved.append(name)
    if behind_pooler(url):
        # PgBouncer in transaction mode hands each transaction whichever server connection is
        # free: a statement prepared and cached on one is missing on the next, and asyncpg's
        # numbered names (__asyncpg_stmt_1__, the same in every process) collide on a server
        # connection that another client used before. So no cache at either level, and every
        # statement a unique name (SQLAlchemy's documented prepared_statement_name_func).
        connect_args.setdefault("statement_cache_size", 0)
        connect_args.setdefault("prepared_statement_name_func", _unique_statement_name)
        url = url.update_query_dict({"prepared_statement_cache_size": "0"})
    application = url.query.get("application_name")
    if isinstance(application, str):
        settings = dict(connect_args.get("server_settings") or {})
        settings.setdefault("application_name", application)
        connect_args["server_settings"] = settings
        moved.append("application_name")
    return url.difference_update_query(moved) if moved else url


def _mysql_connect_args(url: URL, connect_args: dict[str, Any], timeout: float) -> URL:
    """Check that the URL's driver is installed, and bound the whole connect (TCP, handshake,
    login) by ``timeout`` (the URL's ``?connect_timeout=``, when given): the drivers' own
    timeout covers the TCP connect only, and a server that accepts but never greets would hold
    the command for ever. Return the URL without ``?connect_timeout=``."""
    import importlib

    module_name = url.get_driver_name()
    try:
        driver = importlib.import_module(module_name)
    except ImportError:
        raise InvalidInput(
            f"a MySQL/MariaDB URL needs the {module_name} driver: {MYSQL_INSTALL}"
        ) from None
    raw = url.query.get("connect_timeout")
    if isinstance(raw, str):
        timeout = _check_number("connect_timeout", raw, float) or timeout
    raw = url.query.get("read_timeout")
    if isinstance(raw, str):
        connect_args.setdefault("read_timeout", _check_number("read_timeout", raw, float))
    connect = driver.connect

    async def connect_within_timeout(*args: Any, **kwargs: Any) -> Any:
        import asyncio

        return await asyncio.wait_for(connect(*args, **kwargs), timeout)

    connect_args.setdefault("async_creator_fn", connect_within_timeout)
    # Names quoted as the SQL standard and the other two databases quote them ("user"), so that
    # usersctl's few statements in plain SQL are the same everywhere; SQLAlchemy notices the mode
    # and quotes so too. It is this session's alone: the app's connections keep their sql_mode.
    connect_args.setdefault("init_command", MYSQL_ANSI_QUOTES)
    return url.difference_update_query(["connect_timeout", "read_timeout"])


def _configure_mysql(engine: AsyncEngine) -> None:
    """Reflect ``TINYINT(1)``, which is what MySQL makes of ``BOOL``, as a boolean (this
    engine's only): FastAPI Users' flags are shown and compared as true/false, as elsewhere."""
    from sqlalchemy.dialects.mysql import TINYINT
    from sqlalchemy.types import Boolean

    class TinyIntOrBoolean(TINYINT):
        def __new__(cls, display_width: int | None = None, **kwargs: Any) -> Any:
            if display_width == 1 and not kwargs.get("unsigned") and not kwargs.get("zerofill"):
                return Boolean()
            return super().__new__(cls)

    dialect: Any = engine.sync_engine.dialect
    dialect.ischema_names = {**dialect.ischema_names, "tinyint": TinyIntOrBoolean}


def behind_pooler(url: URL) -> bool:
    """Whether the URL says it reaches PostgreSQL through a pooler in transaction mode: it turns
    a statement cache off (``?prepared_statement_cache_size=0``, SQLAlchemy's, or asyncpg's
    ``?statement_cache_size=0``)."""
    return any(
        str(url.query.get(name, "")).strip() == "0"
        for name in ("prepared_statement_cache_size", "statement_cache_size")
    )


def _unique_statement_name() -> str:
    import uuid

    return f"__usersctl_{uuid.uuid4().hex}__"


def _connect_aiosqlite(*args: Any, **kwargs: Any) -> Any:
    """``aiosqlite.connect``, waiting for the worker thread of a connection that fails to open
    (a folder, a missing folder): aiosqlite only queues that thread's stop, and the thread, calling
    back into an event loop that ``asyncio.run`` has closed by then, dies printing a traceback."""
    import asyncio
    import threading

    import aiosqlite

    connection = aiosqlite.connect(*args, **kwargs)
    thread = connection if isinstance(connection, threading.Thread) else connection._thread
    thread.daemon = True  # as SQLAlchemy sets it: never hold up the exit

    async def connect() -> Any:
        try:
            return await connection
        except BaseException:
            await asyncio.to_thread(thread.join, 5)
            raise

    return connect()


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout: float, begin: str, wal: bool) -> None:
    from sqlalchemy.types import Uuid

    # A column declared UUID (sqlalchemy.UUID) has NUMERIC affinity in SQLite, and SQLAlchemy's
    # reflection reads it so; it holds UUIDs as 32 hex digits, which sqlalchemy.Uuid reads.
    dialect: Any = engine.sync_engine.dialect
    dialect.ischema_names = {**dialect.ischema_names, "UUID": Uuid}  # this engine's only

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's BEGIN below, not to the sqlite3 module.
        try:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                cursor.execute("PRAGMA foreign_keys = ON")
                if wal:
                    # A read-only file keeps its journal mode; reading still works.
                    with contextlib.suppress(Exception):
                        cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
            finally:
                cursor.close()
            # Unicode case for usersctl's own comparisons (usersctl.email_case); nothing in the
            # file depends on it, so the app's connections, without it, work as before.
            register_fold_function(dbapi_connection)
        except Exception:
            # SQLAlchemy does not close a connection whose setup failed (a file that is not a
            # database): its aiosqlite thread would outlive the event loop.
            dbapi_connection.close()
            raise

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)


async def execute_alone(engine: AsyncEngine, statements: list[Any]) -> None:
    """Run DDL statements outside any transaction (``CREATE INDEX CONCURRENTLY`` refuses one),
    each alone in PostgreSQL's simple query protocol.

    A prepared statement is two round trips; outside a transaction a pooler in transaction mode
    may send them to different server connections, and the second would not find the first.
    """
    from sqlalchemy.exc import DBAPIError

    async with engine.connect() as plain:
        connection = await plain.execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.name == "mysql":
            # MySQL's drivers have no execute on the connection; each DDL commits by itself.
            for statement in statements:
                await connection.execute(statement)
            return
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None  # an open connection has its driver's
        for statement in statements:
            sql = str(statement.compile(dialect=engine.dialect))
            try:
                await driver.execute(sql)
            except Exception as exc:
                # As SQLAlchemy wraps the driver's errors, so the command layer knows them.
                raise DBAPIError.instance(sql, None, exc, Exception) from exc


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit, as FastAPI Users expects."""
    return async_sessionmaker(engine, expire_on_commit=False)
