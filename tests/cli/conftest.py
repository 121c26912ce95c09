"""Helpers for the command-line tests: the CLI in-process, the installed entry point, seeded users.

Every helper is bound to the ``database_url`` fixture, so the tests that use them run on a new
SQLite file and on a new PostgreSQL database alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from usersctl.commands import app

#: The password of every seeded user (seeding hashes it once, not once per user).
SEED_PASSWORD = "correct horse battery staple"

#: Variables that change what usersctl does; no test inherits them from the shell running pytest.
CLEAN_ENV: dict[str, str | None] = {
    "USERSCTL_DATABASE_URL": None,
    "DATABASE_URL": None,
    "USERSCTL_CONNECT_TIMEOUT": None,
    "USERSCTL_DEBUG": None,
    "NO_COLOR": None,
    "USERSCTL_USER_MODEL": None,
    "USERSCTL_HASH_SCHEME": None,
    "USERSCTL_PASSWORD_HELPER": None,
}


def usersctl_executable() -> str:
    """The installed ``usersctl`` entry point of the environment running the tests."""
    beside = Path(sys.executable).with_name("usersctl")
    if beside.exists():
        return str(beside)
    found = shutil.which("usersctl")
    assert found, "the usersctl entry point is not installed (pip install -e '.[test]')"
    return found


def subprocess_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment for a usersctl subprocess: this one, without usersctl's variables."""
    env = dict(os.environ)
    for name, value in {**CLEAN_ENV, **(extra or {})}.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    env["PATH"] = os.pathsep.join([str(Path(usersctl_executable()).parent), env.get("PATH", "")])
    return env


def check_error(expected: int, exit_code: int, stdout: str, stderr: str) -> str:
    """Assert the shape of a failure: the exit code, one ``Error:`` line on stderr, no traceback,
    nothing on stdout. Returns the message."""
    assert exit_code == expected, f"exit {exit_code}, expected {expected}\n{stdout}{stderr}"
    assert stdout == "", stdout
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@lru_cache(maxsize=1)
def seed_hash() -> str:
    from usersctl.passwords import hash_password

    return hash_password(SEED_PASSWORD)


@dataclass
class Cli:
    """usersctl run in-process through Typer's ``CliRunner``, with ``-d`` set to the test database."""

    url: str
    runner: CliRunner = field(default_factory=CliRunner)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        url: bool = True,
    ) -> Result:
        argv = ["-d", self.url, *args] if url else list(args)
        return self.runner.invoke(
            app, argv, input=input, env={**CLEAN_ENV, **(env or {})}, prog_name="usersctl"
        )

    @property
    def sqlite_path(self) -> Path | None:
        """The file of a SQLite test database; None on PostgreSQL."""
        return sqlite_file(self.url)

    def ok(self, *args: str, input: str | None = None) -> Result:
        """Run a command that must succeed."""
        result = self(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    def fails(
        self,
        code: int,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        url: bool = True,
    ) -> str:
        """Run a command that must fail with ``code`` and one ``Error:`` line; return that line."""
        result = self(*args, input=input, env=env, url=url)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
        return check_error(code, result.exit_code, result.stdout, result.stderr)

    def json(self, *args: str, input: str | None = None) -> Any:
        """Run a command that must succeed with ``-o json`` and parse its stdout."""
        return json.loads(self.ok(*args, "-o", "json", input=input).stdout)

    def user(self, email_or_id: str) -> dict[str, Any]:
        """The user as ``show-user -o json`` reports it."""
        found: dict[str, Any] = self.json("show-user", email_or_id)
        return found

    def emails(self, *args: str) -> list[str]:
        """The emails ``list-users`` prints, in order, for the given filters."""
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
        return subprocess_env(extra)

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str | None] | None = None,
        url: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        argv = ["-d", self.url, *args] if url and self.url else list(args)
        return subprocess.run(
            [usersctl_executable(), *argv],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=subprocess_env(env),
            cwd=self.cwd,
            timeout=timeout,
        )

    def ok(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """Run a command that must succeed."""
        result = self(*args, **kwargs)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def fails(self, code: int, *args: str, **kwargs: Any) -> str:
        """Run a command that must fail with ``code`` and one ``Error:`` line; return that line."""
        result = self(*args, **kwargs)
        return check_error(code, result.returncode, result.stdout, result.stderr)


# Seeding users straight through the library: quicker than the CLI, and independent of it. ----


async def _seed(url: str, specs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    from usersctl import users

    rows = []
    async with users.open_users(url, write=True) as ctx:
        for spec in specs:
            spec = dict(spec)
            email = spec.pop("email")
            extra = {"id": uuid.UUID(str(spec.pop("id")))} if "id" in spec else None
            created = await users.create_user(ctx, email, seed_hash(), extra=extra, **spec)
            rows.append(users.user_row(ctx.model, created.user))
        await ctx.session.commit()
    return rows


async def _stored_hash(url: str, email: str) -> str:
    from sqlalchemy import func, select

    from usersctl import users

    async with users.open_users(url) as ctx:
        table = ctx.model.table
        statement = select(table.c.hashed_password).where(
            func.lower(table.c.email) == email.lower()
        )
        hashed: str = (await ctx.session.execute(statement)).scalar_one()
        return hashed


async def _count_rows(url: str, table_name: str) -> int:
    from sqlalchemy import func, select

    from usersctl import users

    async with users.open_users(url) as ctx:
        table = ctx.model.table.metadata.tables[table_name]
        return int((await ctx.session.execute(select(func.count()).select_from(table))).scalar())


async def _execute(url: str, sql: str) -> None:
    from sqlalchemy import text

    from usersctl.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


async def _insert(url: str, table_name: str, rows: list[dict[str, Any]]) -> None:
    from usersctl import users

    async with users.open_users(url, write=True) as ctx:
        table = ctx.model.table.metadata.tables[table_name]
        await ctx.session.execute(table.insert(), rows)
        await ctx.session.commit()


@dataclass
class Database:
    """Direct access to the test database, for preparing and checking what commands did."""

    url: str
    #: The password every seeded user has.
    password: str = SEED_PASSWORD

    def seed(self, *emails: str, **flags: Any) -> list[dict[str, Any]]:
        """Create users with ``SEED_PASSWORD`` and the given flags (``is_superuser=True``...)."""
        return asyncio.run(_seed(self.url, [{"email": email, **flags} for email in emails]))

    def seed_specs(self, *specs: dict[str, Any]) -> list[dict[str, Any]]:
        return asyncio.run(_seed(self.url, specs))

    def stored_hash(self, email: str) -> str:
        return asyncio.run(_stored_hash(self.url, email))

    def count(self, table_name: str = "user") -> int:
        return asyncio.run(_count_rows(self.url, table_name))

    def execute(self, sql: str) -> None:
        """Run one SQL statement (DDL, say) and commit."""
        asyncio.run(_execute(self.url, sql))

    def insert(self, table_name: str, *rows: dict[str, Any]) -> None:
        asyncio.run(_insert(self.url, table_name, list(rows)))


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite test URL, or None for PostgreSQL."""
    if not url.startswith("sqlite"):
        return None
    return Path(url.split(":///", 1)[1])


@pytest.fixture(scope="session", autouse=True)
def command_built_once() -> Iterator[None]:
    """Build the Click command from the Typer app once, not at every ``CliRunner.invoke``.

    Typer reads every command's signature each time it builds it (~30 ms); the command is the
    same every time, and hundreds of invocations here would pay for it again and again.
    """
    import typer.main
    import typer.testing

    command = typer.main.get_command(app)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            typer.testing,
            "_get_command",
            lambda typer_app: command if typer_app is app else typer.main.get_command(typer_app),
        )
        yield


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands hash with Argon2id at its lowest cost.

    What is tested here is the command line, not Argon2's cost (the tests of usersctl.passwords
    cover the real parameters); the installed entry point, run in subprocesses, keeps them.
    """
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher
    from pwdlib.hashers.bcrypt import BcryptHasher

    from usersctl import passwords

    quick = PasswordHash(
        (Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1), BcryptHasher())
    )
    monkeypatch.setattr(passwords, "password_hash", lambda: quick)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def bare_cli() -> Cli:
    """The CLI for tests that touch no database (help, version, usage errors)."""
    return Cli("sqlite+aiosqlite:///no-such-folder/never-created.db")


@pytest.fixture
def empty_cli(database_url: str) -> Cli:
    """The CLI on a database without tables (for a SQLite URL, no file yet)."""
    return Cli(database_url)


@pytest.fixture
def cli(empty_cli: Cli) -> Cli:
    """The CLI on a database that ``init-db`` prepared (the user table only)."""
    empty_cli.ok("init-db")
    return empty_cli


@pytest.fixture
def db(cli: Cli) -> Database:
    """The prepared test database, for seeding users and checking rows."""
    return Database(cli.url)


@pytest.fixture
def database_at() -> type[Database]:
    """``Database`` itself, for tests that prepare further databases of their own."""
    return Database


@pytest.fixture
def usersctl(database_url: str, tmp_path: Path) -> Usersctl:
    """The installed entry point with ``-d`` set to the test database, run in a temporary folder."""
    return Usersctl(database_url, tmp_path)


@pytest.fixture
def usersctl_anywhere(tmp_path: Path) -> Usersctl:
    """The installed entry point without ``-d``, run in a temporary folder."""
    return Usersctl(None, tmp_path)


@pytest.fixture
def spawn(database_url: str, tmp_path: Path) -> Iterator[Any]:
    """Start the installed entry point on a pseudo-terminal (pexpect), with ``-d`` set."""
    import pexpect

    children: list[Any] = []

    def start(
        *args: str,
        env: Mapping[str, str | None] | None = None,
        dimensions: tuple[int, int] = (40, 200),
    ) -> Any:
        child = pexpect.spawn(
            usersctl_executable(),
            ["-d", database_url, *args],
            env=subprocess_env(env),
            cwd=str(tmp_path),
            encoding="utf-8",
            timeout=20,
            dimensions=dimensions,
        )
        children.append(child)
        return child

    yield start
    for child in children:
        child.close(force=True)
