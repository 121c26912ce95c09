"""A FastAPI Users app as its documentation builds one, over the models of ``app_uuid_model`` or
``app_int_model``: the real ``fastapi_users`` package and its SQLAlchemy adapter, a JWT login
route, a database-strategy login route (``SQLAlchemyAccessTokenDatabase``), ``/auth/register``,
``/users/me``, and routes for superusers only and for any logged-in user, even inactive."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fastapi import Depends, FastAPI
from fastapi_users import BaseUserManager, FastAPIUsers, IntegerIDMixin, UUIDIDMixin, schemas
from fastapi_users.authentication import AuthenticationBackend, BearerTransport, JWTStrategy
from fastapi_users.authentication.strategy.db import DatabaseStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyUserDatabase
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyAccessTokenDatabase
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SECRET = "usersctl-e2e-secret-0123456789abcdef0123456789abcdef"


class UUIDUserRead(schemas.BaseUser[uuid.UUID]):
    pass


class UUIDUserCreate(schemas.BaseUserCreate):
    pass


class IntUserRead(schemas.BaseUser[int]):
    tenant_id: int
    first_name: str | None = None


class IntUserCreate(schemas.BaseUserCreate):
    tenant_id: int
    first_name: str | None = None


class UserUpdate(schemas.BaseUserUpdate):
    pass


@dataclass
class RunningApp:
    """The app, its engine (on the test's database URL), and its models."""

    app: FastAPI
    engine: AsyncEngine
    models: ModuleType

    async def create_tables(self) -> None:
        """What the app does at startup (or its migrations): ``create_all`` of its metadata."""
        async with self.engine.begin() as connection:
            await connection.run_sync(self.models.Base.metadata.create_all)

    async def count(self, table_name: str) -> int:
        from sqlalchemy import func, select

        table = self.models.Base.metadata.tables[table_name]
        async with self.engine.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(table))).scalar())

    async def add_oauth_account(self, user_id: Any, provider: str, account_id: str) -> None:
        async with async_sessionmaker(self.engine)() as session:
            session.add(
                self.models.OAuthAccount(
                    oauth_name=provider,
                    access_token=f"secret-access-{provider}-{account_id}",
                    refresh_token=f"secret-refresh-{provider}-{account_id}",
                    account_id=account_id,
                    account_email=f"{account_id}@{provider}.example",
                    user_id=user_id,
                )
            )
            await session.commit()


def build_app(database_url: str, models: ModuleType, *, integer_ids: bool) -> RunningApp:
    """The app over ``models`` on ``database_url`` (an async SQLAlchemy URL)."""
    engine = create_async_engine(database_url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    user_class, token_class, oauth_class = models.User, models.AccessToken, models.OAuthAccount
    id_mixin: type[Any] = IntegerIDMixin if integer_ids else UUIDIDMixin

    class UserManager(id_mixin, BaseUserManager[Any, Any]):  # type: ignore[misc]
        reset_password_token_secret = SECRET
        verification_token_secret = SECRET

    async def get_session() -> AsyncIterator[AsyncSession]:
        async with sessions() as session:
            yield session

    async def get_user_db(
        session: AsyncSession = Depends(get_session),
    ) -> AsyncIterator[SQLAlchemyUserDatabase[Any, Any]]:
        yield SQLAlchemyUserDatabase(session, user_class, oauth_class)

    async def get_access_token_db(
        session: AsyncSession = Depends(get_session),
    ) -> AsyncIterator[SQLAlchemyAccessTokenDatabase[Any]]:
        yield SQLAlchemyAccessTokenDatabase(session, token_class)

    async def get_user_manager(
        user_db: SQLAlchemyUserDatabase[Any, Any] = Depends(get_user_db),
    ) -> AsyncIterator[UserManager]:
        yield UserManager(user_db)

    def get_jwt_strategy() -> JWTStrategy[Any, Any]:
        return JWTStrategy(secret=SECRET, lifetime_seconds=3600)

    def get_database_strategy(
        access_token_db: SQLAlchemyAccessTokenDatabase[Any] = Depends(get_access_token_db),
    ) -> DatabaseStrategy[Any, Any, Any]:
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
    fastapi_users = FastAPIUsers[Any, Any](get_user_manager, [jwt_backend, db_backend])
    read_schema: type[Any] = IntUserRead if integer_ids else UUIDUserRead
    create_schema: type[Any] = IntUserCreate if integer_ids else UUIDUserCreate

    app = FastAPI()
    app.include_router(fastapi_users.get_auth_router(jwt_backend), prefix="/auth/jwt")
    app.include_router(fastapi_users.get_auth_router(db_backend), prefix="/auth/db")
    app.include_router(
        fastapi_users.get_register_router(read_schema, create_schema), prefix="/auth"
    )
    app.include_router(fastapi_users.get_users_router(read_schema, UserUpdate), prefix="/users")

    current_superuser = fastapi_users.current_user(active=True, superuser=True)
    any_logged_in = fastapi_users.current_user(active=False)

    @app.get("/admin")
    async def admin(user: Any = Depends(current_superuser)) -> dict[str, str]:
        return {"admin": user.email}

    @app.get("/session")
    async def session(user: Any = Depends(any_logged_in)) -> dict[str, str]:
        """Who the token belongs to, active or not: shows whether the token itself still works."""
        return {"email": user.email}

    return RunningApp(app, engine, models)
