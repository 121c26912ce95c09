"""A FastAPI Users app with rules of its own: a ``UserManager`` whose ``validate_password`` refuses
short passwords and passwords holding the email, and whose hooks write a marker row into
``hook_call`` for every call (the tokens of forgot-password and request-verify in ``detail``);
both auth strategies (JWT and database), and the reset-password and verify routes.

usersctl loads ``app_rules:get_user_manager`` (or ``app_rules:UserManager``) from this folder.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi_users import (
    BaseUserManager,
    FastAPIUsers,
    InvalidPasswordException,
    UUIDIDMixin,
    schemas,
)
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
)
from sqlalchemy import Integer, String, Text, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SECRET = "usersctl-e2e-rules-secret-0123456789abcdef0123456789abcdef"
JWT_SECRET = "usersctl-e2e-rules-jwt-secret-0123456789abcdef0123456789ab"


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    pass


class HookCall(Base):
    """One call of a hook: which, for whom, and what it was given."""

    __tablename__ = "hook_call"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hook: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(320))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = SECRET
    verification_token_secret = SECRET

    async def record(self, hook: str, user: Any, detail: str | None = None) -> None:
        """A marker row, committed (hooks after a change run after its commit)."""
        session = self.user_db.session  # type: ignore[attr-defined]
        await session.execute(insert(HookCall).values(hook=hook, email=user.email, detail=detail))
        if hook != "on_before_delete":  # that one runs inside the delete's transaction
            await session.commit()

    async def validate_password(self, password: str, user: Any) -> None:
        if len(password) < 10:
            raise InvalidPasswordException(reason="Password should be at least 10 characters")
        if user.email.split("@")[0].lower() in password.lower():
            raise InvalidPasswordException(reason="Password should not contain e-mail")

    async def on_after_register(self, user: Any, request: Request | None = None) -> None:
        if user.email.startswith("explode"):
            raise RuntimeError("the welcome email could not be sent")
        await self.record("on_after_register", user)

    async def on_after_update(
        self, user: Any, update_dict: dict[str, Any], request: Request | None = None
    ) -> None:
        await self.record("on_after_update", user, json.dumps(sorted(update_dict)))

    async def on_after_verify(self, user: Any, request: Request | None = None) -> None:
        await self.record("on_after_verify", user)

    async def on_after_forgot_password(
        self, user: Any, token: str, request: Request | None = None
    ) -> None:
        await self.record("on_after_forgot_password", user, token)

    async def on_after_request_verify(
        self, user: Any, token: str, request: Request | None = None
    ) -> None:
        await self.record("on_after_request_verify", user, token)

    async def on_after_reset_password(self, user: Any, request: Request | None = None) -> None:
        await self.record("on_after_reset_password", user)

    async def on_before_delete(self, user: Any, request: Request | None = None) -> None:
        await self.record("on_before_delete", user)

    async def on_after_delete(self, user: Any, request: Request | None = None) -> None:
        await self.record("on_after_delete", user)


_sessions: async_sessionmaker[AsyncSession] | None = None


async def get_session() -> AsyncIterator[AsyncSession]:
    assert _sessions is not None, "build_app() first"
    async with _sessions() as session:
        yield session


async def get_user_db(
    session: AsyncSession = Depends(get_session),
) -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
    yield SQLAlchemyUserDatabase(session, User)


async def get_user_manager(
    user_db: SQLAlchemyUserDatabase[User, uuid.UUID] = Depends(get_user_db),
) -> AsyncIterator[UserManager]:
    """The app's dependency, as FastAPI Users' documentation writes it."""
    yield UserManager(user_db)


async def get_access_token_db(
    session: AsyncSession = Depends(get_session),
) -> AsyncIterator[SQLAlchemyAccessTokenDatabase[AccessToken]]:
    yield SQLAlchemyAccessTokenDatabase(session, AccessToken)


class UserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UserCreate(schemas.BaseUserCreate):
    pass


class UserUpdate(schemas.BaseUserUpdate):
    pass


def build_app(database_url: str) -> tuple[FastAPI, Any]:
    """The app on ``database_url``, and its engine."""
    global _sessions
    engine = create_async_engine(database_url)
    _sessions = async_sessionmaker(engine, expire_on_commit=False)

    def get_jwt_strategy() -> JWTStrategy[User, uuid.UUID]:
        return JWTStrategy(secret=JWT_SECRET, lifetime_seconds=3600)

    def get_database_strategy(
        access_token_db: SQLAlchemyAccessTokenDatabase[AccessToken] = Depends(get_access_token_db),
    ) -> DatabaseStrategy[User, uuid.UUID, AccessToken]:
        return DatabaseStrategy(access_token_db, lifetime_seconds=3600)

    jwt_backend = AuthenticationBackend(
        name="jwt",
        transport=BearerTransport(tokenUrl="auth/jwt/login"),
        get_strategy=get_jwt_strategy,
    )
    db_backend = AuthenticationBackend(
        name="db",
        transport=BearerTransport(tokenUrl="auth/db/login"),
        get_strategy=get_database_strategy,
    )
    users = FastAPIUsers[User, uuid.UUID](get_user_manager, [jwt_backend, db_backend])
    app = FastAPI()
    app.include_router(users.get_auth_router(jwt_backend), prefix="/auth/jwt")
    app.include_router(users.get_auth_router(db_backend), prefix="/auth/db")
    app.include_router(users.get_register_router(UserRead, UserCreate), prefix="/auth")
    app.include_router(users.get_reset_password_router(), prefix="/auth")
    app.include_router(users.get_verify_router(UserRead), prefix="/auth")
    app.include_router(users.get_users_router(UserRead, UserUpdate), prefix="/users")
    return app, engine
