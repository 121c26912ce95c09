"""get_by_email timed in this process: usersctl's adapter against FastAPI Users' own.

Both adapters run as an app runs them: ``create_async_engine(url)``, one session per lookup, the
lookup awaited on the adapter. Only the ``get_by_email`` call is timed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID as FastAPIUsersUserTable
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase as FastAPIUsersDatabase
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from usersctl.db import SQLAlchemyBaseUserTableUUID as UsersctlUserTable
from usersctl.db import SQLAlchemyUserDatabase as UsersctlDatabase


class FastAPIUsersBase(DeclarativeBase):
    """FastAPI Users' SQLAlchemy guide: ``class Base(DeclarativeBase): pass``."""


class FastAPIUsersUser(FastAPIUsersUserTable, FastAPIUsersBase):
    """The user model FastAPI Users' guide declares (no index on ``lower(email)``)."""


class UsersctlBase(DeclarativeBase):
    """The same guide with usersctl's import line."""


class UsersctlUser(UsersctlUserTable, UsersctlBase):
    """The same model on usersctl's mixin."""


ADAPTERS: dict[str, tuple[type[Any], type[Any]]] = {
    "usersctl": (UsersctlDatabase, UsersctlUser),
    "fastapi-users": (FastAPIUsersDatabase, FastAPIUsersUser),
}


async def create_fastapi_users_table(url: str) -> None:
    """Create the ``user`` table as FastAPI Users' guide does: ``Base.metadata.create_all``."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(FastAPIUsersBase.metadata.create_all)
    finally:
        await engine.dispose()


@dataclass(frozen=True)
class Contestant:
    """One adapter on one database, and how many lookups it must make at least."""

    url: str
    adapter: str
    min_count: int


@dataclass(frozen=True)
class Lookups:
    """Seconds per lookup: the median, and how many lookups it is the median of."""

    median: float
    count: int


async def time_lookups(
    contestants: dict[str, Contestant], emails: list[str], *, budget_seconds: float
) -> dict[str, Lookups]:
    """Look ``emails`` up in turn, each email by every contestant still running (so a burst of
    load elsewhere on the machine hits them alike). A contestant stops once it has made its
    ``min_count`` lookups and ``budget_seconds`` have passed, or when the emails run out. The
    first lookup of each (connecting, compiling the statement) is not counted.

    Every lookup must find the user whose email matches case-insensitively.
    """
    engines = {name: create_async_engine(c.url) for name, c in contestants.items()}
    sessions = {
        name: async_sessionmaker(engine, expire_on_commit=False) for name, engine in engines.items()
    }
    times: dict[str, list[float]] = {name: [] for name in contestants}
    running = set(contestants)
    deadline = time.perf_counter() + budget_seconds
    try:
        for number, email in enumerate(emails):
            for name, contestant in contestants.items():
                if name not in running:
                    continue
                database_class, user_class = ADAPTERS[contestant.adapter]
                async with sessions[name]() as session:
                    database = database_class(session, user_class)
                    start = time.perf_counter()
                    user = await database.get_by_email(email)
                    elapsed = time.perf_counter() - start
                if user is None or user.email.lower() != email.lower():
                    raise AssertionError(f"{name} did not find {email!r} in {contestant.url}")
                if number:
                    times[name].append(elapsed)
                if len(times[name]) >= contestant.min_count and time.perf_counter() > deadline:
                    running.discard(name)
            if not running:
                break
    finally:
        for engine in engines.values():
            await engine.dispose()
    return {name: Lookups(statistics.median(values), len(values)) for name, values in times.items()}


async def time_bare_mariadb_lookups(url: str, emails: list[str], count: int) -> Lookups:
    """The same lookups by a bare asyncmy loop on one connection: ``WHERE email = %s``, the query
    usersctl's adapter makes on MariaDB (the unique index on ``email`` serves it)."""
    from build_data import COLUMNS, mariadb_connect

    query = f"SELECT {', '.join(COLUMNS)} FROM user WHERE email = %s"
    connection = await mariadb_connect(url, autocommit=True)
    times = []
    try:
        async with connection.cursor() as cursor:
            for email in emails[: count + 1]:
                start = time.perf_counter()
                await cursor.execute(query, (email,))
                row = await cursor.fetchone()
                elapsed = time.perf_counter() - start
                if row is None or row[1].lower() != email.lower():
                    raise AssertionError(f"the bare loop did not find {email!r} in {url}")
                times.append(elapsed)
    finally:
        await connection.ensure_closed()
    return Lookups(statistics.median(times[1:]), len(times) - 1)
