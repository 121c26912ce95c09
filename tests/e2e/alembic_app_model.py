"""An app's user model as Alembic-managed FastAPI Users apps write it: built on
``fastapi_users_db_sqlalchemy``'s base (which declares no ``lower(email)`` index), a table named
``users`` with integer ids, and a ``display_name`` of the app's own.

The Alembic tests copy this file into a project of their own as ``app/models.py`` and edit it
there as usersctl's advice says."""

from __future__ import annotations

from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTable
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTable[int], Base):
    __tablename__ = "users"
    __table_args__ = ()

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
