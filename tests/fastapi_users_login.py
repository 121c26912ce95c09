"""A login as a FastAPI Users app does it, run by the Python of another environment.

``python fastapi_users_login.py DATABASE_URL EMAIL`` reads the password from stdin and calls
``BaseUserManager.authenticate`` of the FastAPI Users installed there (its own
``PasswordHelper``, its own SQLAlchemy adapter) on the tutorial's user table. It prints one JSON
object: whether the login succeeded, the error the app's route would turn into an HTTP 500, and
the stored hash afterwards (the app replaces an outdated one).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from types import SimpleNamespace
from typing import Any

from fastapi_users import BaseUserManager, UUIDIDMixin
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    pass


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    reset_password_token_secret = "not used"
    verification_token_secret = "not used"


async def login(url: str, email: str, password: str) -> dict[str, Any]:
    engine = create_async_engine(url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            manager = UserManager(SQLAlchemyUserDatabase(session, User))
            credentials = SimpleNamespace(username=email, password=password)
            error = None
            try:
                user = await manager.authenticate(credentials)  # type: ignore[arg-type]
            except Exception as exc:  # what the app's login route answers with HTTP 500
                user, error = None, f"{type(exc).__name__}: {exc}"
            stored = await session.scalar(select(User.hashed_password).where(User.email == email))
            return {"login": user is not None, "error": error, "hashed_password": stored}
    finally:
        await engine.dispose()


if __name__ == "__main__":
    url, email = sys.argv[1:3]
    password = sys.stdin.readline().rstrip("\n")
    print(json.dumps(asyncio.run(login(url, email, password))))
