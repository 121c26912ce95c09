"""The access token table and adapter of FastAPI Users' database strategy, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import fastapi_users_db_sqlalchemy as theirs
import pytest
from fastapi_users import BaseUserManager, UUIDIDMixin
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyAccessTokenDatabase as TheirAccessTokenDatabase,
)
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyBaseAccessTokenTableUUID as TheirAccessTokenTableUUID,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

from usersctl.db import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
    SQLAlchemyBaseUserTableUUID,
    SQLAlchemyUserDatabase,
)
from usersctl.engine import create_engine, session_factory


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


class TheirBase(DeclarativeBase):
    pass


class TheirUser(theirs.SQLAlchemyBaseUserTableUUID, TheirBase):
    pass


class TheirAccessToken(TheirAccessTokenTableUUID, TheirBase):
    """FastAPI Users' own mapping of the same ``accesstoken`` table."""


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = "SECRET"
    verification_token_secret = "SECRET"


@pytest.fixture
async def session(database_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with session_factory(engine)() as session:
        yield session
    await engine.dispose()


@pytest.fixture
async def user(session: AsyncSession) -> User:
    return await SQLAlchemyUserDatabase(session, User).create(
        {"email": "lancelot@camelot.bt", "hashed_password": "guinevere"}
    )


async def test_queries(session: AsyncSession, user: User) -> None:
    access_token_db = SQLAlchemyAccessTokenDatabase(session, AccessToken)

    # Create
    before = datetime.now(timezone.utc)
    access_token = await access_token_db.create({"token": "TOKEN", "user_id": user.id})
    assert (access_token.token, access_token.user_id) == ("TOKEN", user.id)
    assert access_token.created_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= access_token.created_at <= datetime.now(timezone.utc)

    # Update
    created_at = datetime.now(timezone.utc) - timedelta(minutes=10)
    updated = await access_token_db.update(access_token, {"created_at": created_at})
    assert updated.created_at == created_at

    # Get by token
    by_token = await access_token_db.get_by_token("TOKEN")
    assert by_token is not None and by_token.user_id == user.id

    # Get by token expired (created before max_age)
    expired = await access_token_db.get_by_token(
        "TOKEN", max_age=datetime.now(timezone.utc) - timedelta(minutes=5)
    )
    assert expired is None

    # Get by token not expired
    not_expired = await access_token_db.get_by_token(
        "TOKEN", max_age=datetime.now(timezone.utc) - timedelta(minutes=15)
    )
    assert not_expired is not None

    # Get by token with max_age given in another time zone: the instant counts, not the digits
    new_york = timezone(timedelta(hours=-5))
    assert (
        await access_token_db.get_by_token(
            "TOKEN", max_age=(created_at + timedelta(minutes=1)).astimezone(new_york)
        )
        is None
    )
    assert (
        await access_token_db.get_by_token(
            "TOKEN", max_age=(created_at - timedelta(minutes=1)).astimezone(new_york)
        )
        is not None
    )

    # Get by token unknown
    assert await access_token_db.get_by_token("NOT_EXISTING_TOKEN") is None

    # Delete token
    await access_token_db.delete(access_token)
    assert await access_token_db.get_by_token("TOKEN") is None


async def test_insert_existing_token(session: AsyncSession, user: User) -> None:
    access_token_db = SQLAlchemyAccessTokenDatabase(session, AccessToken)
    await access_token_db.create({"token": "TOKEN", "user_id": user.id})

    with pytest.raises(IntegrityError):
        await access_token_db.create({"token": "TOKEN", "user_id": user.id})


async def test_token_of_an_unknown_user_is_refused(session: AsyncSession, user: User) -> None:
    # Foreign keys hold on SQLite too.
    with pytest.raises(IntegrityError):
        await SQLAlchemyAccessTokenDatabase(session, AccessToken).create(
            {"token": "ORPHAN", "user_id": uuid.uuid4()}
        )


async def test_tokens_are_shared_with_fastapi_users_adapter(
    session: AsyncSession, user: User
) -> None:
    ours = SQLAlchemyAccessTokenDatabase(session, AccessToken)
    their_db = TheirAccessTokenDatabase(session, TheirAccessToken)
    an_hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)

    # Written here, read by FastAPI Users' adapter
    await ours.create({"token": "OURS", "user_id": user.id, "created_at": an_hour_ago})
    read = await their_db.get_by_token("OURS")
    assert read is not None
    assert (read.user_id, read.created_at) == (user.id, an_hour_ago)

    # Written by FastAPI Users' adapter, read here
    await their_db.create({"token": "THEIRS", "user_id": user.id, "created_at": an_hour_ago})
    read_here = await ours.get_by_token("THEIRS", max_age=an_hour_ago - timedelta(seconds=1))
    assert read_here is not None
    assert (read_here.user_id, read_here.created_at) == (user.id, an_hour_ago)


async def test_fastapi_users_database_strategy(session: AsyncSession, user: User) -> None:
    manager = UserManager(SQLAlchemyUserDatabase(session, User))
    tokens = SQLAlchemyAccessTokenDatabase(session, AccessToken)
    strategy: DatabaseStrategy[User, uuid.UUID, AccessToken] = DatabaseStrategy(
        tokens, lifetime_seconds=3600
    )

    # Log in: a token is written
    token = await strategy.write_token(user)
    assert len(token) == 43

    # Each request: the token gives the user back
    found = await strategy.read_token(token, manager)
    assert found is not None and found.id == user.id

    # Past its lifetime the token gives nobody
    stored = await tokens.get_by_token(token)
    assert stored is not None
    await tokens.update(stored, {"created_at": datetime.now(timezone.utc) - timedelta(hours=2)})
    assert await strategy.read_token(token, manager) is None

    # Log out: the token is gone
    await strategy.destroy_token(token, user)
    assert await tokens.get_by_token(token) is None
