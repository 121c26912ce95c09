"""PostgreSQL behind PgBouncer in transaction mode, and on a read-only database.

Each test makes a PostgreSQL database of its own (a read-only one must not be the session's);
the pooler is a real ``pgbouncer`` process on a free loopback port, started and stopped here.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness import invoke

PASSWORD = "a long enough password 1"
NEW_PASSWORD = "another long password 2"
REQUIRE_POSTGRES = os.environ.get("USERSCTL_REQUIRE_POSTGRES", "") not in ("", "0", "false")


def _dsn(url: str, database: str | None = None) -> str:
    """The plain asyncpg DSN of a test URL, straight to the server (never through the pooler)."""
    parsed = make_url(url).set(drivername="postgresql", query={})
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _fetch(dsn: str, sql: str) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


def fetch(dsn: str, sql: str) -> list[Any]:
    return asyncio.run(_fetch(dsn, sql))


@pytest.fixture
def own_database(postgres_database: str) -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL, straight to the server), dropped after."""
    name = f"usersctl_pool_{uuid.uuid4().hex[:10]}"
    fetch(_dsn(postgres_database), f'CREATE DATABASE "{name}"')
    yield make_url(postgres_database).set(database=name).render_as_string(hide_password=False)
    fetch(_dsn(postgres_database), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pgbouncer_executable() -> str | None:
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(path).exists()),
        None,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def pgbouncer(postgres_database: str, tmp_path: Path) -> Iterator[int]:
    """A PgBouncer in transaction pooling mode in front of the test server; its port."""
    executable = _pgbouncer_executable()
    if executable is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if REQUIRE_POSTGRES:
            pytest.fail(message)
        pytest.skip(message)
    server = make_url(postgres_database)
    port = _free_port()
    folder = tmp_path / "pgbouncer"
    folder.mkdir()
    (folder / "users.txt").write_text(f'"{server.username or "postgres"}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\n"
        # Few server connections, so that clients share them as they do in production.
        "default_pool_size = 2\n"
        "max_client_conn = 50\n"
    )
    command = [executable]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root; it reads its files before it drops
        command += ["-u", "postgres" if _has_user("postgres") else "nobody"]
    process = subprocess.Popen(
        [*command, str(folder / "pgbouncer.ini")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read() if process.stdout else ""
                    pytest.fail(f"pgbouncer did not start:\n{output}")
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def through(port: int, url: str, query: str = "prepared_statement_cache_size=0") -> str:
    """``url`` by way of the pooler on ``port``, with ``query`` appended."""
    pooled = make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    return f"{pooled}?{query}" if query else pooled


def run(usersctl: Any, url: str, *args: str, input: str | None = None) -> Any:
    return usersctl("-d", url, *args, url=False, input=input)


def in_process(*args: str, url: bool = False, input: str | None = None) -> Any:
    """usersctl in-process, answering as the entry point's process does (``returncode``)."""
    ran = invoke(list(args), input=input)
    return SimpleNamespace(returncode=ran.exit_code, stdout=ran.stdout, stderr=ran.stderr)


def ok(usersctl: Any, url: str, *args: str, input: str | None = None) -> Any:
    result = run(usersctl, url, *args, input=input)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    assert "prepared statement" not in result.stderr
    return result


# Through PgBouncer ------------------------------------------------------------------------------


def test_every_command_works_through_pgbouncer_in_transaction_mode(
    pgbouncer: int, own_database: str, usersctl_anywhere: Any, tmp_path: Path
) -> None:
    url = through(pgbouncer, own_database)
    direct = _dsn(own_database)
    say = usersctl_anywhere

    # Create
    ok(say, url, "init-db", "--access-tokens")
    ok(say, url, "create-user", "alice@example.com", "--password-stdin", input=PASSWORD)
    ok(
        say,
        url,
        "create-user",
        "root@example.com",
        "--superuser",
        "--password-stdin",
        input=PASSWORD,
    )
    # Read
    listed = json.loads(ok(say, url, "list-users", "-o", "json").stdout)
    assert sorted(user["email"] for user in listed) == ["alice@example.com", "root@example.com"]
    assert (
        json.loads(ok(say, url, "show-user", "ALICE@example.com", "-o", "json").stdout)["email"]
        == "alice@example.com"
    )
    # Change
    ok(say, url, "update-user", "alice@example.com", "--verified", "--email", "al@example.com")
    ok(say, url, "set-password", "al@example.com", "--password-stdin", input=NEW_PASSWORD)
    ok(say, url, "verify-password", "al@example.com", "--password-stdin", input=NEW_PASSWORD)
    wrong = run(say, url, "verify-password", "al@example.com", "--password-stdin", input=PASSWORD)
    assert wrong.returncode == 6, wrong.stderr
    # Move users in and out
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps({"email": f"imported{n}@example.com", "password": PASSWORD}) + "\n"
            for n in range(30)
        )
    )
    ok(say, url, "import-users", str(source))
    ok(say, url, "import-users", str(source), "--on-conflict", "skip", "--dry-run")
    exported = tmp_path / "out.jsonl"
    ok(say, url, "export-users", str(exported), "--include-hashes")
    assert len(exported.read_text().splitlines()) == 32
    assert len(ok(say, url, "export-users", "-o", "csv").stdout.splitlines()) == 33
    # The index of a table with rows, built concurrently (outside a transaction), twice
    fetch(direct, "DROP INDEX ix_user_email_lower")
    assert "concurrently" in ok(say, url, "init-db").stderr
    fetch(direct, "DROP INDEX ix_user_email_lower")
    ok(say, url, "doctor", "--fix")
    # Delete, and the checks
    ok(say, url, "delete-user", "al@example.com", "--yes")
    ok(say, url, "doctor")
    indexes = fetch(
        direct, "SELECT indexname FROM pg_indexes WHERE indexname = 'ix_user_email_lower'"
    )
    assert len(indexes) == 1

    emails = sorted(row["email"] for row in fetch(direct, 'SELECT email FROM "user"'))
    assert emails == sorted(["root@example.com", *(f"imported{n}@example.com" for n in range(30))])
    verified = fetch(direct, "SELECT count(*) AS n FROM \"user\" WHERE email = 'al@example.com'")
    assert verified[0]["n"] == 0


def test_processes_sharing_pgbouncer_server_connections_do_not_collide(
    pgbouncer: int, own_database: str, usersctl_anywhere: Any
) -> None:
    url = through(pgbouncer, own_database)
    ok(usersctl_anywhere, url, "init-db")

    def create(n: int) -> Any:
        return run(
            usersctl_anywhere,
            url,
            "create-user",
            f"user{n}@example.com",
            "--password-stdin",
            input=PASSWORD,
        )

    def read(_: int) -> Any:
        return run(usersctl_anywhere, url, "list-users", "-o", "json")

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(create, range(6))) + list(pool.map(read, range(6)))
    for result in results:
        assert result.returncode == 0, result.stderr
    count = fetch(_dsn(own_database), 'SELECT count(*) AS n FROM "user"')[0]["n"]
    assert count == 6


def test_without_the_parameter_the_error_says_how_to_use_a_pooler(
    pgbouncer: int, own_database: str, usersctl_anywhere: Any
) -> None:
    # What happens without the parameter: asyncpg's numbered statement names, the same in every
    # process, clash on the server connection the pooler hands the second command.
    url = through(pgbouncer, own_database, query="")
    ok(usersctl_anywhere, url, "init-db")
    result = run(usersctl_anywhere, url, "list-users")
    assert result.returncode == 5, result.stdout + result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    assert "?prepared_statement_cache_size=0" in result.stderr


# A read-only database ---------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_read_commands_work_on_a_read_only_database_and_writes_are_exit_5(
    route: str,
    request: pytest.FixtureRequest,
    own_database: str,
    usersctl_anywhere: Any,
    tmp_path: Path,
) -> None:
    """The first read and the first write through the installed entry point, the others
    in-process."""
    say = in_process
    ok(say, own_database, "init-db")
    ok(say, own_database, "create-user", "alice@example.com", "--password-stdin", input=PASSWORD)
    ok(
        say,
        own_database,
        "create-user",
        "root@example.com",
        "--superuser",
        "--password-stdin",
        input=PASSWORD,
    )
    name = make_url(own_database).database
    fetch(_dsn(own_database), f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    url = (
        through(request.getfixturevalue("pgbouncer"), own_database)
        if route == "pgbouncer"
        else own_database
    )
    before = fetch(_dsn(own_database), 'SELECT email, hashed_password FROM "user" ORDER BY email')

    # Reading works.
    listed = json.loads(ok(usersctl_anywhere, url, "list-users", "-o", "json").stdout)
    assert sorted(user["email"] for user in listed) == ["alice@example.com", "root@example.com"]
    ok(say, url, "show-user", "alice@example.com")
    ok(say, url, "export-users", str(tmp_path / "out.jsonl"), "--include-hashes")
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2
    ok(say, url, "doctor")
    ok(say, url, "verify-password", "alice@example.com", "--password-stdin", input=PASSWORD)

    # Writing is exit 5, saying so.
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"email": "bob@example.com", "password": PASSWORD}) + "\n")
    writes: list[tuple[list[str], str | None]] = [
        (["create-user", "bob@example.com", "--password-stdin"], PASSWORD),
        (["update-user", "alice@example.com", "--verified"], None),
        (["set-password", "alice@example.com", "--password-stdin"], NEW_PASSWORD),
        (["delete-user", "alice@example.com", "--yes"], None),
        (["import-users", str(source)], None),
        (["init-db", "--oauth"], None),
    ]
    for number, (args, given) in enumerate(writes):
        result = run(say if number else usersctl_anywhere, url, *args, input=given)
        assert result.returncode == 5, f"{args}: {result.stdout}{result.stderr}"
        assert result.stdout == ""
        assert result.stderr.startswith("Error: the database is read-only"), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
    after = fetch(_dsn(own_database), 'SELECT email, hashed_password FROM "user" ORDER BY email')
    assert after == before
