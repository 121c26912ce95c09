"""An app's own user model built on usersctl.db's bases: integer ids, a required ``tenant_id``
with no default, a ``created_at`` filled by Python, a nullable ``first_name``, OAuth accounts,
and access tokens whose foreign key does not say ON DELETE CASCADE."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from usersctl.db import (
    SQLAlchemyBaseAccessTokenTable,
    SQLAlchemyBaseOAuthAccountTable,
    SQLAlchemyBaseUserTable,
)


def now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class OAuthAccount(SQLAlchemyBaseOAuthAccountTable[int], Base):
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("user.id", ondelete="cascade"), nullable=False
    )


class User(SQLAlchemyBaseUserTable[int], Base):
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(Integer, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, default=now
    )
    first_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    oauth_accounts: Mapped[list[OAuthAccount]] = relationship("OAuthAccount", lazy="joined")


class AccessToken(SQLAlchemyBaseAccessTokenTable[int], Base):
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("user.id"), nullable=False)
