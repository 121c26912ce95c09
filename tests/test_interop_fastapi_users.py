"""usersctl and a FastAPI Users app share one database: users made on either side work on the other,
and usersctl's adapter can be the app's ``user_db`` outright. The real fastapi-users package."""

from __future__ import annotations

import uuid
from typing import Any

import bcrypt
import fastapi_users_db_sqlalchemy as theirs
import pytest
from fastapi.security import OAuth2PasswordRequestForm
from fastapi_users import BaseUserManager, UUIDIDMixin, exceptions
from fastapi_users.schemas import BaseUserCreate, BaseUserUpdate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from fastapi_users_tutorial import TheirOAuthAccount, TheirUser
from usersctl import builtin_tables
from usersctl.db import (
    SQLAlchemyBaseOAuthAccountTableUUID,
    SQLAlchemyBaseUserTableUUID,
    SQLAlchemyUserDatabase,
)
from usersctl.engine import create_engine, session_factory
from usersctl.passwords import hash_password, hash_scheme, verify_password
from usersctl.schema import built_in_tables, init_database

PASSWORD = "correct horse battery staple"


# The same tutorial as fastapi_users_tutorial's (the app's side), on usersctl.db.
class Base(DeclarativeBase):
    pass


class OAuthAccount(SQLAlchemyBaseOAuthAccountTableUUID, Base):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    oauth_accounts: Mapped[list[OAuthAccount]] = relationship("OAuthAccount", lazy="joined")


class UserManager(UUIDIDMixin, BaseUserManager[Any, uuid.UUID]):
    reset_password_token_secret = "SECRET"
    verification_token_secret = "SECRET"

    def __init__(self, user_db: Any) -> None:
        super().__init__(user_db)
        self.deleted: list[tuple[uuid.UUID, str]] = []

    async def on_after_delete(self, user: Any, request: Any = None) -> None:
        self.deleted.append((user.id, user.email))  # apps log who went


def login(email: str, password: str) -> OAuth2PasswordRequestForm:
    return OAuth2PasswordRequestForm(username=email, password=password)


async def stored_hash(database_url: str, email: str) -> str:
    engine = create_engine(database_url, sqlite_begin="BEGIN")
    try:
        async with engine.connect() as connection:
            return str(
                await connection.scalar(
                    text('SELECT hashed_password FROM "user" WHERE email = :e'), {"e": email}
                )
            )
    finally:
        await engine.dispose()


async def test_a_user_created_here_logs_in_to_the_app(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)

    # usersctl creates the user...
    created = await SQLAlchemyUserDatabase(session, User).create(
        {"email": "Admin@example.com", "hashed_password": hash_password(PASSWORD)}
    )
    await session.commit()

    # ...and the app, with FastAPI Users' own adapter, lets them in, whatever case they type.
    async with session_factory(engine)() as app_session:
        manager = UserManager(
            theirs.SQLAlchemyUserDatabase(app_session, TheirUser, TheirOAuthAccount)
        )
        user = await manager.authenticate(login("ADMIN@example.com", PASSWORD))
        assert user is not None
        assert (user.id, user.email, user.is_active) == (created.id, "Admin@example.com", True)
        # A wrong password is refused
        assert await manager.authenticate(login("admin@example.com", PASSWORD + "!")) is None


async def test_a_user_created_by_the_app_is_read_and_updated_here(
    database_url: str, engine: AsyncEngine
) -> None:
    # usersctl made the tables (as `usersctl init-db --oauth --access-tokens` does)
    report = await init_database(database_url, built_in_tables(oauth=True, access_tokens=True))
    # On MariaDB, no index on an expression: the unique one on email, in its _ci collation.
    mysql = engine.dialect.name == "mysql"
    assert ("ix_user_email" if mysql else "ix_user_email_lower") in report.created_indexes

    # The app registers a user through FastAPI Users' manager and its own adapter
    async with session_factory(engine)() as app_session:
        app = UserManager(theirs.SQLAlchemyUserDatabase(app_session, TheirUser, TheirOAuthAccount))
        registered = await app.create(
            BaseUserCreate(email="Lancelot@Camelot.bt", password=PASSWORD)
        )
        registered_id = registered.id

    # usersctl reads them, by any case of the address, and checks the password
    async with session_factory(engine)() as session:
        user_db = SQLAlchemyUserDatabase(session, builtin_tables.User)
        user = await user_db.get_by_email("LANCELOT@camelot.bt")
        assert user is not None
        assert (user.id, user.email, user.is_superuser) == (
            registered_id,
            "Lancelot@camelot.bt",
            False,
        )
        assert verify_password(PASSWORD, user.hashed_password)
        assert hash_scheme(user.hashed_password) == "argon2"

        # usersctl promotes them and sets a new password
        await user_db.update(
            user, {"is_superuser": True, "hashed_password": hash_password("new " + PASSWORD)}
        )

    # The app sees both
    async with session_factory(engine)() as app_session:
        app = UserManager(theirs.SQLAlchemyUserDatabase(app_session, TheirUser, TheirOAuthAccount))
        assert await app.authenticate(login("lancelot@camelot.bt", PASSWORD)) is None
        user = await app.authenticate(login("lancelot@camelot.bt", "new " + PASSWORD))
        assert user is not None
        assert (user.id, user.is_superuser) == (registered_id, True)
        # And the app can no longer register the address in another case
        with pytest.raises(exceptions.UserAlreadyExists):
            await app.create(BaseUserCreate(email="lancelot@CAMELOT.BT", password=PASSWORD))


async def test_usersctl_adapter_as_the_managers_user_db(
    database_url: str, engine: AsyncEngine, session: AsyncSession
) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    manager = UserManager(SQLAlchemyUserDatabase(session, User, OAuthAccount))

    # Register
    user = await manager.create(BaseUserCreate(email="King.Arthur@Camelot.bt", password=PASSWORD))
    assert user.email == "King.Arthur@camelot.bt"
    assert (user.is_active, user.is_superuser, user.is_verified) == (True, False, False)

    # Register again, in another case
    with pytest.raises(exceptions.UserAlreadyExists):
        await manager.create(BaseUserCreate(email="king.arthur@CAMELOT.bt", password=PASSWORD))

    # Get by id, by email
    assert (await manager.get(user.id)).id == user.id
    assert (await manager.get_by_email("KING.ARTHUR@camelot.bt")).id == user.id

    # Log in
    assert (await manager.authenticate(login("king.arthur@camelot.bt", PASSWORD))) is not None

    # Update: password and flags, then the address
    user = await manager.update(
        BaseUserUpdate(password="new " + PASSWORD, is_superuser=True), user, safe=False
    )
    assert user.is_superuser is True
    assert await manager.authenticate(login("king.arthur@camelot.bt", PASSWORD)) is None
    assert (
        await manager.authenticate(login("king.arthur@camelot.bt", "new " + PASSWORD)) is not None
    )
    user = await manager.update(BaseUserUpdate(email="arthur@camelot.bt"), user)
    assert (user.email, user.is_verified) == ("arthur@camelot.bt", False)
    assert await stored_hash(database_url, "arthur@camelot.bt") == user.hashed_password

    # OAuth login with the same address joins the existing user
    oauth_user = await manager.oauth_callback(
        "google", "ACCESS", "g-123", "Arthur@camelot.bt", associate_by_email=True
    )
    assert oauth_user.id == user.id
    assert [(a.oauth_name, a.account_id) for a in oauth_user.oauth_accounts] == [
        ("google", "g-123")
    ]
    assert (await manager.get_by_oauth_account("google", "g-123")).id == user.id

    # Delete: the user, with the OAuth account; the hook can still read who it was
    await manager.delete(user)
    assert manager.deleted == [(user.id, "arthur@camelot.bt")]
    with pytest.raises(exceptions.UserNotExists):
        await manager.get_by_email("arthur@camelot.bt")
    with pytest.raises(exceptions.UserNotExists):
        await manager.get_by_oauth_account("google", "g-123")


async def test_login_upgrades_a_bcrypt_hash_through_the_adapter(
    database_url: str, engine: AsyncEngine, session: AsyncSession
) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    # A user imported with the bcrypt hash of an older system
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    user_db = SQLAlchemyUserDatabase(session, User)
    await user_db.create({"email": "merlin@camelot.bt", "hashed_password": legacy})

    user = await UserManager(user_db).authenticate(login("Merlin@camelot.bt", PASSWORD))

    assert user is not None
    upgraded = await stored_hash(database_url, "merlin@camelot.bt")
    assert hash_scheme(legacy) == "bcrypt"
    assert hash_scheme(upgraded) == "argon2"
    assert verify_password(PASSWORD, upgraded)
