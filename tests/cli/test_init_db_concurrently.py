"""init-db on a PostgreSQL table with rows builds the lower(email) index without blocking writes.

A transaction of "the app" holds a row lock on the user table while init-db runs: a plain
CREATE INDEX would queue for a SHARE lock and every later insert behind it; CONCURRENTLY lets
inserts go on. ``--dry-run`` builds nothing, so it does not wait at all.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy.engine import make_url

APPLICATION = "usersctl-init-db-under-test"


def _dsn(url: str) -> str:
    return (
        make_url(url).set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    )


@pytest.fixture
def table_with_rows(postgres_database: str) -> str:
    """The session's PostgreSQL database with a FastAPI Users table of 500 users and no
    lower(email) index, as an app made it; its asyncpg DSN."""
    dsn = _dsn(postgres_database)

    async def prepare() -> None:
        import asyncpg

        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            await connection.execute(
                'CREATE TABLE "user" (id UUID PRIMARY KEY, email VARCHAR(320) NOT NULL UNIQUE, '
                "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
                "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)"
            )
            await connection.execute(
                'INSERT INTO "user" SELECT gen_random_uuid(), '
                "'user' || n || '@example.com', 'x', true, false, false "
                "FROM generate_series(1, 500) n"
            )
        finally:
            await connection.close()

    asyncio.run(prepare())
    return dsn


async def _index_of(dsn: str) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        return list(
            await connection.fetch(
                "SELECT c.relname, i.indisvalid FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'ix_user_email_lower'"
            )
        )
    finally:
        await connection.close()


def _start(usersctl: Any, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [usersctl.executable, "-d", f"{url}?application_name={APPLICATION}", *args],
        cwd=usersctl.cwd,
        env=usersctl.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_init_db_builds_the_index_concurrently_on_a_table_with_rows(
    table_with_rows: str, postgres_database: str, usersctl_anywhere: Any
) -> None:
    dsn = table_with_rows

    async def scenario() -> tuple[int, str]:
        import asyncpg

        app = await asyncpg.connect(dsn)
        other = await asyncpg.connect(dsn)
        try:
            # The app is in the middle of a transaction that wrote to the table.
            writing = app.transaction()
            await writing.start()
            await app.execute(
                "INSERT INTO \"user\" VALUES (gen_random_uuid(), 'during1@example.com', 'x', "
                "true, false, false)"
            )
            process = _start(usersctl_anywhere, postgres_database, "init-db")
            # Wait until init-db waits for that transaction.
            deadline = time.monotonic() + 30
            while not await other.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                "AND wait_event_type = 'Lock'",
                APPLICATION,
            ):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "init-db never waited"
                await asyncio.sleep(0.1)
            # Meanwhile the app's other connections still insert: nothing queues them.
            await other.execute("SET lock_timeout = '3s'")
            await other.execute(
                "INSERT INTO \"user\" VALUES (gen_random_uuid(), 'during2@example.com', 'x', "
                "true, false, false)"
            )
            await writing.commit()
            _, stderr = await asyncio.to_thread(process.communicate, timeout=60)
            return process.returncode, stderr
        finally:
            await app.close()
            await other.close()

    code, stderr = asyncio.run(scenario())
    assert code == 0, stderr
    assert "Created index ix_user_email_lower concurrently" in stderr
    assert [tuple(row) for row in asyncio.run(_index_of(dsn))] == [("ix_user_email_lower", True)]


def test_init_db_dry_run_builds_nothing(
    table_with_rows: str, postgres_database: str, usersctl_anywhere: Any
) -> None:
    dsn = table_with_rows

    async def scenario() -> tuple[int, str]:
        import asyncpg

        app = await asyncpg.connect(dsn)
        try:
            # A transaction of the app holds the table: a build, even one rolled back after,
            # would wait for it; the dry run does not.
            writing = app.transaction()
            await writing.start()
            await app.execute(
                "UPDATE \"user\" SET is_verified = true WHERE email = 'user1@example.com'"
            )
            process = _start(usersctl_anywhere, postgres_database, "init-db", "--dry-run")
            try:
                _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                pytest.fail(
                    "init-db --dry-run waited for the app's transaction: it built the index"
                )
            await writing.rollback()
            return process.returncode, stderr
        finally:
            await app.close()

    code, stderr = asyncio.run(scenario())
    assert code == 0, stderr
    assert "Would create index ix_user_email_lower" in stderr
    assert asyncio.run(_index_of(dsn)) == []
