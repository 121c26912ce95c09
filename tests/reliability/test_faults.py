"""Faults: the database failing in the middle of a command, or unusable from the start.

Each ends in exit 5 with one ``Error:`` line within a bounded time, never a traceback, never the
URL's password, and nothing half-written. The killed import is in tests/test_transfer.py
(``test_a_killed_import_leaves_nothing_and_the_next_run_works``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from harness import (
    PASSWORD,
    PgConnection,
    PrivateCluster,
    SilentServer,
    TcpProxy,
    bound_by_file_modes,
    cli,
    committed_count,
    execute,
    finish,
    free_port,
    init_db,
    one_error_line,
    pg_lock_held,
    run,
    start,
    stored_hash,
    wait_for,
)

#: A thread that dies with an exception (an aiosqlite worker outliving its event loop) prints a
#: traceback at exit: a failure here, not a warning.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

SECRET = "fault-url-secret"
CONNECT_TIMEOUT = 10.0  # usersctl's default

#: A read, a write that hashes first, and the check: what a script most often runs.
COMMANDS: list[list[str]] = [
    ["list-users"],
    ["create-user", "new@example.com", "--password-stdin"],
    ["verify-password", "new@example.com", "--password-stdin"],
]


def expect_exit_5(
    url: str, *args: str, bound: float = CONNECT_TIMEOUT + 2, **kwargs: object
) -> str:
    """Run one command in-process: exit 5, one ``Error:`` line, no secret, within ``bound``."""
    started = time.monotonic()
    result = cli(url, *args, input=PASSWORD + "\n", **kwargs)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    message = one_error_line(result.exit_code, 5, result.stdout, result.stderr)
    assert SECRET not in message and PASSWORD not in message
    assert elapsed < bound, f"{args} took {elapsed:.1f} s"
    return message


def expect_exit_5_from_the_entry_point(url: str, *args: str, **kwargs: object) -> str:
    result = run(url, *args, input=PASSWORD + "\n", **kwargs)  # type: ignore[arg-type]
    message = one_error_line(result.returncode, 5, result.stdout, result.stderr)
    assert SECRET not in message
    return message


# Unusable from the start ----------------------------------------------------------------------


def test_a_closed_port_is_exit_5_at_once() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/app"
    for args in COMMANDS:
        assert "connect" in expect_exit_5(url, *args, bound=3)
    expect_exit_5_from_the_entry_point(url, "list-users")


def test_a_server_that_never_answers_times_out_at_the_connect_timeout(
    silent: SilentServer,
) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{silent.port}/app"
    for args in COMMANDS:
        message = silent.timed_out(
            lambda args=args: expect_exit_5(url, "--connect-timeout", "2", *args, bound=60), 2
        )
        assert "timed out" in message
    # The environment variable sets it too, and the entry point ends the same way.
    silent.timed_out(
        lambda: expect_exit_5_from_the_entry_point(
            url, "list-users", env={"USERSCTL_CONNECT_TIMEOUT": "2"}
        ),
        2,
    )


def test_an_unknown_role_and_a_missing_database_are_exit_5(postgres_database: str) -> None:
    server = make_url(postgres_database)
    no_role = server.set(username="no_such_role", password=SECRET)
    no_database = server.set(password=SECRET, database="no_such_database")
    for url in (no_role, no_database):
        text = url.render_as_string(hide_password=False)
        for args in COMMANDS:
            expect_exit_5(text, *args, bound=5)
    expect_exit_5_from_the_entry_point(no_role.render_as_string(hide_password=False), "init-db")


def test_a_wrong_password_is_exit_5_without_the_password(private_cluster: PrivateCluster) -> None:
    # The shared server trusts every local connection; this one checks passwords (scram).
    url = private_cluster.url(password=SECRET)
    for args in COMMANDS:
        assert "password authentication failed" in expect_exit_5(url, *args, bound=5)
    expect_exit_5_from_the_entry_point(url, "init-db")


def test_missing_tables_are_exit_5_naming_init_db(database_url: str) -> None:
    for args in [*COMMANDS, ["import-users", "-", "--format", "jsonl"], ["export-users", "-"]]:
        assert "usersctl init-db" in expect_exit_5(database_url, *args), args


def _unusable_sqlite(folder: Path, kind: str) -> str:
    if kind == "directory":
        return f"sqlite:///{folder}"
    if kind == "not-sqlite":
        path = folder / "notes.db"
        path.write_text("name,email\nthis is a CSV file, not a database\n" * 20)
        return f"sqlite:///{path}"
    return f"sqlite:///{folder / 'no-such-folder' / 'users.db'}"


@pytest.mark.parametrize("kind", ["directory", "not-sqlite", "missing-folder"])
def test_a_sqlite_path_that_is_no_database_is_exit_5(tmp_path: Path, kind: str) -> None:
    url = _unusable_sqlite(tmp_path, kind)
    before = {path: path.read_bytes() if path.is_file() else b"" for path in tmp_path.rglob("*")}
    for args in [*COMMANDS, ["init-db"] if kind != "missing-folder" else ["list-users"]]:
        expect_exit_5(url, *args, bound=5)
    expect_exit_5_from_the_entry_point(url, "create-user", "x@example.com", "--password-stdin")
    expect_exit_5_from_the_entry_point(url, "init-db")
    after = {path: path.read_bytes() if path.is_file() else b"" for path in tmp_path.rglob("*")}
    assert after == before  # nothing created, nothing changed


# Read-only SQLite: the tests run as root, which ignores file permissions. The command runs
# under setpriv with CAP_DAC_OVERRIDE dropped from its bounding set: still root (it owns the
# files), but now bound by their mode bits, as any other user is.
def _as_restricted(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run(url, *args, input=PASSWORD + "\n", prefix=bound_by_file_modes())


@pytest.fixture
def read_only_sqlite(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop root's override of file permissions")
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "users.db"
    url = f"sqlite:///{path}"
    init_db(url)
    result = cli(url, "create-user", "alice@example.com", "--password-stdin", input=PASSWORD)
    assert result.exit_code == 0, result.output
    # Fold the WAL into the file, so that the file alone holds the data.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    yield path, url
    folder.chmod(0o755)
    path.chmod(0o644)


WRITES = [
    ["create-user", "bob@example.com", "--password-stdin"],
    ["delete-user", "alice@example.com", "--yes"],
]


def test_a_read_only_sqlite_file_refuses_writes_and_serves_reads(
    read_only_sqlite: tuple[Path, str],
) -> None:
    path, url = read_only_sqlite
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for args in WRITES:
        result = _as_restricted(url, *args)
        assert "read-only" in one_error_line(result.returncode, 5, result.stdout, result.stderr)
    listed = _as_restricted(url, "list-users", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [user["email"] for user in json.loads(listed.stdout)] == ["alice@example.com"]
    checked = _as_restricted(url, "verify-password", "alice@example.com", "--password-stdin")
    assert checked.returncode == 0, checked.stderr


def test_a_sqlite_file_in_a_read_only_folder_is_exit_5(
    read_only_sqlite: tuple[Path, str],
) -> None:
    # SQLite needs the folder writable for its journal; in WAL mode (as init-db leaves the file)
    # also to read, for the shared-memory file beside it: every command is exit 5.
    path, url = read_only_sqlite
    path.parent.chmod(0o555)
    for args in [*WRITES, ["list-users"]]:
        result = _as_restricted(url, *args)
        one_error_line(result.returncode, 5, result.stdout, result.stderr)
    path.parent.chmod(0o755)
    assert len(json.loads(cli(url, "list-users", "-o", "json").stdout)) == 1


# Going away in the middle of a command -------------------------------------------------------


def _import_file(path: Path, total: int = 40_000) -> Path:
    hashed = stored_hash()
    with path.open("w") as out:
        for index in range(total):
            out.write(json.dumps({"email": f"user{index}@example.com", "hashed_password": hashed}))
            out.write("\n")
    return path


def _writing(watcher: PgConnection) -> bool:
    """Whether an import is writing rows: its table lock is held and the table's file grows
    (uncommitted rows take pages too)."""
    return pg_lock_held(watcher, "ShareRowExclusiveLock") and (
        int(watcher.fetchval("SELECT pg_relation_size('public.user')")) > 1 << 18
    )


@pytest.fixture
def pg_url(postgres_database: str) -> str:
    """The shared server's test database, emptied, with the user table."""
    execute(postgres_database, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    init_db(postgres_database)
    return postgres_database


def test_a_connection_cut_in_the_middle_of_an_import_is_exit_5_and_writes_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    path = _import_file(tmp_path / "users.jsonl")
    parsed = make_url(pg_url)
    proxy = TcpProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
    through_proxy = parsed.set(port=proxy.port).render_as_string(hide_password=False)
    try:
        with PgConnection(pg_url) as watcher:
            importer = start(through_proxy, "import-users", str(path))
            wait_for(
                lambda: importer.poll() is not None or _writing(watcher), 120, "writing", poll=0.005
            )
            # Paused in the middle of writing, so that the cut comes before the import ends
            # however fast it is; it notices when it resumes.
            importer.send_signal(signal.SIGSTOP)
            assert importer.poll() is None, finish(importer)
            proxy.cut()
            importer.send_signal(signal.SIGCONT)
            cut_at = time.monotonic()
            result = finish(importer)
            assert time.monotonic() - cut_at < CONNECT_TIMEOUT
            # One line, whatever asyncio made of the writes after the cut (it may log about
            # them: see the test below, which makes it certain).
            message = one_error_line(result.code, 5, result.stdout, result.stderr)
            assert "connection" in message.lower(), message
            # The server notices the reset, rolls back and lets go of the lock.
            wait_for(lambda: not pg_lock_held(watcher, "ShareRowExclusiveLock"), 30, "the rollback")
        assert committed_count(pg_url) == 0
        again = run(pg_url, "import-users", str(path))
        assert again.returncode == 0, again.stderr
        assert committed_count(pg_url) == 40_000
    finally:
        proxy.close()


#: A ``sitecustomize`` that makes the libraries log as asyncio does after a lost connection, at
#: the end of every command, whatever the timing: the race in the test above, made certain.
LIBRARIES_LOG = """
import atexit
import logging


def log_as_the_libraries_do():
    for name in ("asyncio", "asyncpg", "aiosqlite", "sqlalchemy.pool.impl"):
        logging.getLogger(name).warning("%s: socket.send() raised exception.", name)


atexit.register(log_as_the_libraries_do)
"""


def test_the_libraries_log_records_stay_off_stderr_unless_debugging(
    url: str, tmp_path: Path
) -> None:
    (tmp_path / "sitecustomize.py").write_text(LIBRARIES_LOG)
    env = {"PYTHONPATH": str(tmp_path)}
    result = run(url, "show-user", "nobody@example.com", env=env)
    one_error_line(result.returncode, 3, result.stdout, result.stderr)
    result = run(url, "show-user", "nobody@example.com", env={**env, "USERSCTL_DEBUG": "1"})
    assert result.returncode == 3, result.stderr
    for name in ("asyncio", "asyncpg", "aiosqlite", "sqlalchemy.pool.impl"):
        assert f"{name}: socket.send() raised exception." in result.stderr


def test_the_server_stopping_in_the_middle_of_an_import_is_exit_5_and_writes_nothing(
    private_cluster: PrivateCluster, tmp_path: Path
) -> None:
    database = f"faults_{os.getpid()}_{int(time.time())}"
    with PgConnection(private_cluster.url()) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    url = private_cluster.url(database)
    init_db(url)
    path = _import_file(tmp_path / "users.jsonl")
    try:
        with PgConnection(url) as watcher:
            importer = start(url, "import-users", str(path))
            wait_for(
                lambda: importer.poll() is not None or _writing(watcher), 120, "writing", poll=0.005
            )
            importer.send_signal(signal.SIGSTOP)  # as above: the stop comes mid-import
            assert importer.poll() is None, finish(importer)
            private_cluster.stop("fast")
        importer.send_signal(signal.SIGCONT)
        stopped_at = time.monotonic()
        result = finish(importer)
        assert time.monotonic() - stopped_at < CONNECT_TIMEOUT
        message = one_error_line(result.code, 5, result.stdout, result.stderr)
        assert private_cluster.password not in message
        # While it is down: a new command cannot connect, at once.
        expect_exit_5(url, "list-users", bound=5)
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            private_cluster.start()
    assert committed_count(url) == 0
    again = run(url, "import-users", str(path))
    assert again.returncode == 0, again.stderr
    assert committed_count(url) == 40_000
