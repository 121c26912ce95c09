"""One fixture gives every database test a fresh SQLite file and a fresh PostgreSQL database.

PostgreSQL comes from ``USERSCTL_TEST_POSTGRES_URL`` (default: the local server these machines
run). Tests on it are skipped only when the server is unreachable and ``USERSCTL_REQUIRE_POSTGRES``
is not set; CI sets it, so a missing server fails the run instead of hiding.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from usersctl.engine import create_engine, session_factory

POSTGRES_URL = os.environ.get(
    "USERSCTL_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("USERSCTL_REQUIRE_POSTGRES", "") not in ("", "0", "false")


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


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
    """A PostgreSQL database of its own for this test session, dropped at the end."""
    admin_dsn = _asyncpg_dsn(POSTGRES_URL)
    name = f"usersctl_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_run(admin_dsn, f'CREATE DATABASE "{name}"')
    except Exception as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required but unusable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc}")
    url = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg", database=name)
    yield url.render_as_string(hide_password=False)
    _pg_run(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on ``database_url``, disposed of after the test."""
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session on ``engine``."""
    async with session_factory(engine)() as session:
        yield session


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An empty database: a new SQLite file, or a PostgreSQL database with an empty schema."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "users.db"
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    _pg_run(
        _asyncpg_dsn(url),
        "DROP SCHEMA public CASCADE",
        "CREATE SCHEMA public",
    )
    return url
