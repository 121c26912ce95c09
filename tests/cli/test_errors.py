"""Failures: the exit code for each kind, one ``Error:`` line, no traceback, no secret."""

from __future__ import annotations

import contextlib
import sqlite3
import stat
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness import SilentServer, bound_by_file_modes
from harness import run as run_entry_point

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl

SECRET = "s3cretpw"

#: One invocation of each command that needs the user table (and would change it, if it could).
NEEDS_TABLES: list[list[str]] = [
    ["create-user", "new@example.com", "--generate-password"],
    ["list-users"],
    ["show-user", "alice@example.com"],
    ["update-user", "alice@example.com", "--verified"],
    ["activate-user", "alice@example.com"],
    ["deactivate-user", "alice@example.com"],
    ["set-password", "alice@example.com", "--generate-password"],
    ["delete-user", "alice@example.com", "--yes"],
]


def test_unreachable_server_is_exit_5_without_the_password(bare_cli: Cli) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:1/nothing"
    for args in (["list-users"], ["init-db"], *NEEDS_TABLES[:1]):
        started = time.monotonic()
        message = bare_cli.fails(5, "-d", url, *args, url=False)
        assert time.monotonic() - started < 5
        assert SECRET not in message
        assert "cannot connect to the database at 127.0.0.1:1: connection refused" in message


@pytest.mark.parametrize("driver", ["mysql", "mysql+aiomysql", "mariadb"])
def test_an_unreachable_mysql_server_is_exit_5_as_postgresql_is(bare_cli: Cli, driver: str) -> None:
    message = bare_cli.fails(
        5, "-d", f"{driver}://root:{SECRET}@127.0.0.1:1/app", "list-users", url=False
    )
    assert "cannot connect to the database at 127.0.0.1:1: " in message
    assert SECRET not in message
    if driver != "mysql+aiomysql":  # PyMySQL's message does not say why
        assert "connection refused (no server listening there)" in message


def test_a_mysql_url_without_its_driver_is_exit_2_naming_the_install_command(
    bare_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "asyncmy", None)  # what import finds when it is not installed
    message = bare_cli.fails(
        2, "-d", f"mysql://root:{SECRET}@127.0.0.1/app", "list-users", url=False
    )
    assert "asyncmy" in message and "pip install 'usersctl[mysql]'" in message
    assert SECRET not in message


def test_a_host_name_that_does_not_resolve_is_exit_5_naming_it(bare_cli: Cli) -> None:
    # .invalid never resolves (RFC 6761); the resolver's own message does not say which name.
    # (A resolver that never answers makes it a timeout, which names the server too.)
    url = f"postgresql://postgres:{SECRET}@no-such-host.invalid/app"
    message = bare_cli.fails(5, "-d", url, "--connect-timeout", "3", "list-users", url=False)
    assert "connecting to the database at no-such-host.invalid:5432" in message or (
        "cannot connect to the database at no-such-host.invalid:5432: "
        "the host name could not be resolved" in message
    )
    assert SECRET not in message


@pytest.mark.parametrize(
    ("url", "environment", "named"),
    [
        ("postgresql://u:pw@db.internal/app", {}, "db.internal:5432"),
        ("postgresql+asyncpg://u@db.internal:5433/app", {}, "db.internal:5433"),
        ("postgresql://u@db.internal/app?port=6000", {}, "db.internal:6000"),
        ("postgresql://u@[::1]:5999/app", {}, "[::1]:5999"),
        ("postgresql://u@/app?host=/var/run/postgresql", {}, "/var/run/postgresql/.s.PGSQL.5432"),
        ("postgresql://u@/app", {"PGHOST": "pg.example", "PGPORT": "7000"}, "pg.example:7000"),
        ("postgresql://u@/app", {}, ""),  # asyncpg tries its default sockets
        ("postgresql://u@/app?host=a,b", {}, ""),  # several hosts
        ("sqlite:///users.db", {}, ""),
        ("mysql://u:pw@db.internal/app", {}, "db.internal:3306"),
        ("mariadb+aiomysql://u@db.internal:3307/app", {}, "db.internal:3307"),
        (
            "mysql://u@localhost/app?unix_socket=/run/mysqld/mysqld.sock",
            {},
            "/run/mysqld/mysqld.sock",
        ),
    ],
)
def test_connection_errors_name_the_server_asyncpg_would_use(
    url: str, environment: dict[str, str], named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usersctl.commands.errors import server_of

    for name in ("PGHOST", "PGPORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert server_of(url) == named


def test_connecting_gives_up_after_the_connect_timeout(bare_cli: Cli, silent: SilentServer) -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{silent.port}/nothing"
    message = silent.timed_out(
        lambda: bare_cli.fails(5, "-d", url, "--connect-timeout", "1.5", "list-users", url=False),
        1.5,
    )
    assert f"timed out connecting to the database at 127.0.0.1:{silent.port}" in message
    assert SECRET not in message
    silent.timed_out(
        lambda: bare_cli.fails(
            5, "-d", url, "init-db", env={"USERSCTL_CONNECT_TIMEOUT": "1.5"}, url=False
        ),
        1.5,
    )
    mysql = f"mysql://root:{SECRET}@127.0.0.1:{silent.port}/nothing"
    message = silent.timed_out(
        lambda: bare_cli.fails(5, "-d", mysql, "--connect-timeout", "1.5", "list-users", url=False),
        1.5,
    )
    assert f"timed out connecting to the database at 127.0.0.1:{silent.port}" in message


def test_authentication_failure_and_unknown_database_are_exit_5(
    postgres_database: str, bare_cli: Cli
) -> None:
    from sqlalchemy.engine import make_url

    server = make_url(postgres_database)
    no_role = server.set(username="no_such_role", password=SECRET)
    message = bare_cli.fails(
        5, "-d", no_role.render_as_string(hide_password=False), "list-users", url=False
    )
    assert SECRET not in message and "no_such_role" in message
    no_database = server.set(password=SECRET, database="no_such_database")
    message = bare_cli.fails(
        5, "-d", no_database.render_as_string(hide_password=False), "list-users", url=False
    )
    assert SECRET not in message and "no_such_database" in message


def test_mysql_authentication_failure_and_unknown_database_are_exit_5(
    mariadb_database: str, bare_cli: Cli
) -> None:
    from sqlalchemy.engine import make_url

    server = make_url(mariadb_database)
    no_role = server.set(username="no_such_role", password=SECRET)
    message = bare_cli.fails(
        5, "-d", no_role.render_as_string(hide_password=False), "list-users", url=False
    )
    assert SECRET not in message and "Access denied for user 'no_such_role'" in message
    no_database = server.set(database="no_such_database")
    message = bare_cli.fails(
        5, "-d", no_database.render_as_string(hide_password=False), "list-users", url=False
    )
    assert message == (
        "Error: database error (OperationalError): Unknown database 'no_such_database' "
        "(database URL from --database-url)"
    )


def test_urls_usersctl_cannot_use_are_usage_errors(bare_cli: Cli) -> None:
    assert "unsupported" in bare_cli.fails(
        2, "-d", f"mssql://sa:{SECRET}@db/app", "list-users", url=False
    )
    message = bare_cli.fails(2, "-d", "not a url", "list-users", url=False)
    assert "not valid" in message


def test_missing_tables_say_to_run_init_db(empty_cli: Cli) -> None:
    path = empty_cli.sqlite_path
    # A SQLite file that does not exist is not created by a command that only uses it.
    for args in NEEDS_TABLES:
        message = empty_cli.fails(5, *args)
        assert "usersctl init-db" in message, args
        if path is not None:
            assert not path.exists(), args
    # An existing database without the user table.
    if path is not None:
        path.touch()
    for args in NEEDS_TABLES:
        assert "usersctl init-db" in empty_cli.fails(5, *args), args


def test_a_folder_or_a_file_that_is_not_sqlite_is_exit_5(bare_cli: Cli, tmp_path: Path) -> None:
    not_sqlite = tmp_path / "notes.db"
    not_sqlite.write_text("just some text, long enough to have a header's worth of bytes\n" * 10)
    for target in (tmp_path, not_sqlite):
        for args in (["list-users"], NEEDS_TABLES[0], ["init-db"]):
            message = bare_cli.fails(5, "-d", f"sqlite:///{target}", *args, url=False)
            assert "Error:" in message
    assert not_sqlite.read_text().startswith("just some text")


def test_a_read_only_sqlite_file_is_exit_5_for_writes(
    bare_cli: Cli, database_at: type[Database], usersctl_anywhere: Usersctl, tmp_path: Path
) -> None:
    # File permissions are SQLite's concern only: this test makes its own SQLite file.
    path = tmp_path / "read-only.db"
    url = f"sqlite:///{path}"
    assert bare_cli("-d", url, "init-db", url=False).exit_code == 0
    database_at(url).seed("alice@example.com")
    # SQLite keeps the WAL beside the file; checkpoint it so the file alone holds the data.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_entry_point(url, *args, prefix=bound_by_file_modes(), cwd=usersctl_anywhere.cwd)

    try:
        for args in (
            ["create-user", "bob@example.com", "--generate-password"],
            ["delete-user", "alice@example.com", "--yes"],
        ):
            result = run(*args)
            assert result.returncode == 5, result.stderr
            assert result.stderr.startswith("Error: ") and "read-only" in result.stderr
            assert result.stdout == ""
        # Reading still works.
        listed = run("list-users", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert "alice@example.com" in listed.stdout
    finally:
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_an_unexpected_failure_is_exit_1_and_debug_shows_the_traceback(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usersctl import users

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("something nobody planned for")

    monkeypatch.setattr(users, "list_users", broken)
    message = cli.fails(1, "list-users")
    assert "RuntimeError" in message and "something nobody planned for" in message
    debug = cli("list-users", env={"USERSCTL_DEBUG": "1"})
    assert debug.exit_code == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("Error: ")


def test_a_mistyped_command_is_a_usage_error_that_names_the_right_one(bare_cli: Cli) -> None:
    result = bare_cli("show-usr", "alice@example.com", url=False)
    assert result.exit_code == 2
    assert "No such command 'show-usr'. Did you mean 'show-user'?" in result.output
