"""An app whose user table is a subclass of a principals table (joined-table inheritance),
with times its Python defaults fill; tests copy it into a module of a name of their own."""

import datetime as dt
import uuid

from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTable
from fastapi_users_db_sqlalchemy.generics import GUID
from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class Principal(Base):
    __tablename__ = "principals"
    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )
    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_identity": "principal"}  # noqa: RUF012 (as apps write it)


class User(SQLAlchemyBaseUserTable[uuid.UUID], Principal):
    __tablename__ = "user"
    id: Mapped[uuid.UUID] = mapped_column(GUID, ForeignKey("principals.id"), primary_key=True)
    nickname: Mapped[str | None] = mapped_column(String(30))
    __mapper_args__ = {"polymorphic_identity": "user"}  # noqa: RUF012 (as apps write it)
