"""Helpers for the reliability tests: the installed entry point in subprocesses, a gate that makes
processes meet at the database, a TCP proxy that can cut connections, and a private PostgreSQL.

Every database test uses the root ``database_url`` fixture, so it runs on a new SQLite file and on
a new PostgreSQL database alike.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from usersctl.commands import app

T = TypeVar("T")

ENTRY_POINT = str(Path(sys.executable).with_name("usersctl"))
PASSWORD = "correct horse battery staple"

#: Variables that change what usersctl does; no test inherits them from the shell running pytest.
USERSCTL_VARIABLES = (
    "USERSCTL_DATABASE_URL",
    "DATABASE_URL",
    "USERSCTL_CONNECT_TIMEOUT",
    "USERSCTL_DEBUG",
    "USERSCTL_USER_MODEL",
    "USERSCTL_HASH_SCHEME",
    "USERSCTL_PASSWORD_HELPER",
    "NO_COLOR",
)


@lru_cache(maxsize=1)
def stored_hash() -> str:
    """One real Argon2 hash of ``PASSWORD``, computed once for seeding and import files."""
    from usersctl.passwords import hash_password

    return hash_password(PASSWORD)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in USERSCTL_VARIABLES}
    env.update(extra or {})
    return env


# Running usersctl -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _command() -> Any:
    import typer.main

    return typer.main.get_command(app)


def cli(
    url: str | None, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
) -> Result:
    """usersctl in-process through Typer's ``CliRunner`` (quick: no interpreter start-up)."""
    import typer.testing

    argv = ["-d", url, *args] if url else list(args)
    blank: dict[str, str | None] = dict.fromkeys(USERSCTL_VARIABLES)
    # The runner rebuilds the Click command from the Typer app at every call (a third of the
    # time of a quick command): the hypothesis tests make hundreds of calls, so build it once.
    with mock.patch.object(typer.testing, "_get_command", lambda _app: _command()):
        return CliRunner().invoke(
            app, argv, input=input, env={**blank, **(env or {})}, prog_name="usersctl"
        )


def run(
    url: str | None,
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 90,
    prefix: Sequence[str] = (),
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """The installed entry point in a subprocess: no terminal, stdin closed unless ``input``."""
    argv = ["-d", url, *args] if url else list(args)
    return subprocess.run(
        [*prefix, ENTRY_POINT, *argv],
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=timeout,
        cwd=cwd,
    )


def start(url: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """The entry point started in the background, stdin a pipe (for ``--password-stdin``)."""
    return subprocess.Popen(
        [ENTRY_POINT, "-d", url, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(env),
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


# The database, seen directly ------------------------------------------------------------------


def asyncpg_dsn(url: str, **changes: Any) -> str:
    """A URL as asyncpg's ``connect`` takes it (no ``+asyncpg``), with parts replaced."""
    parsed = make_url(url).set(drivername="postgresql", **changes)
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path:
    return Path(url.split(":///", 1)[1])


async def _rows(url: str) -> list[dict[str, Any]]:
    from sqlalchemy import text

    from usersctl.engine import create_engine

    engine = create_engine(url, sqlite_begin="BEGIN")
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text('SELECT * FROM "user"'))
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


def rows(url: str) -> list[dict[str, Any]]:
    """Every row of the user table, as stored."""
    return asyncio.run(_rows(url))


async def _execute(url: str, statements: Sequence[str]) -> None:
    from sqlalchemy import text

    from usersctl.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


def execute(url: str, *statements: str) -> None:
    """Run SQL statements in one transaction and commit."""
    asyncio.run(_execute(url, statements))


async def _seed(url: str, email: str, hashed: str, flags: dict[str, Any]) -> dict[str, Any]:
    from usersctl import users

    async with users.open_users(url, write=True) as ctx:
        created = await users.create_user(ctx, email, hashed, **flags)
        row = users.user_row(ctx.model, created.user)
        await ctx.session.commit()
    return row


def seed(url: str, email: str, hashed: str | None = None, **flags: Any) -> dict[str, Any]:
    """Create a user through the library (``hashed`` defaults to a hash of ``PASSWORD``)."""
    return asyncio.run(_seed(url, email, hashed or stored_hash(), flags))


def committed_count(url: str) -> int:
    """How many users a reader sees now (committed rows only)."""
    if is_sqlite(url):
        with contextlib.closing(sqlite3.connect(sqlite_path(url), timeout=30)) as connection:
            return int(connection.execute('SELECT count(*) FROM "user"').fetchone()[0])
    with PgConnection(url) as connection:
        return int(connection.fetchval('SELECT count(*) FROM "user"'))


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
    a process has queued once ``pg_locks`` shows it waiting.
    """

    def __init__(self, url: str, mode: str = "ACCESS EXCLUSIVE") -> None:
        self.url = url
        self.mode = mode
        self._sqlite: sqlite3.Connection | None = None
        self._pg: PgConnection | None = None

    def __enter__(self) -> WriteGate:
        if is_sqlite(self.url):
            self._sqlite = sqlite3.connect(sqlite_path(self.url), isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
        else:
            self._pg = PgConnection(self.url).__enter__()
            self._pg.execute("BEGIN")
            self._pg.execute(f'LOCK TABLE "user" IN {self.mode} MODE')
        return self

    def queued(self, processes: Sequence[subprocess.Popen[str]]) -> int:
        if self._sqlite is not None:
            path = sqlite_path(self.url)
            return sum(has_open(process.pid, path) for process in processes)
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
        if self._pg is not None:
            with contextlib.suppress(Exception):
                self._pg.execute("ROLLBACK")
            self._pg.__exit__()


# A TCP proxy that can cut its connections ----------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream``; ``cut()`` resets every connection at once, as a
    failed network or a killed server does."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
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
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
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


# A private PostgreSQL cluster ----------------------------------------------------------------


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


@pytest.fixture(scope="session")
def private_cluster() -> Iterator[PrivateCluster]:
    """initdb + pg_ctl as the postgres user in a temporary folder (about 2 s); skipped where the
    binaries or the user are missing."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not binaries or os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("a private PostgreSQL needs initdb, root and setpriv")
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


# Fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def url(database_url: str) -> str:
    """The test database with the user table (``init-db``), on SQLite and on PostgreSQL."""
    init_db(database_url)
    return database_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file of its own with the user table, for what the issue asks of SQLite only."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    init_db(url)
    return url
