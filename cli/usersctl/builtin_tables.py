"""usersctl's built-in tables: FastAPI Users' tutorial model, which ``init-db`` creates.

Kept apart from ``usersctl.models`` so that commands on an existing table do not pay for
declaring classes they never use.
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from usersctl.db import (
    SQLAlchemyBaseAccessTokenTableUUID,
    SQLAlchemyBaseOAuthAccountTableUUID,
    SQLAlchemyBaseUserTableUUID,
)


class Base(DeclarativeBase):
    """Metadata of usersctl's built-in tables."""


class OAuthAccount(SQLAlchemyBaseOAuthAccountTableUUID, Base):
    """FastAPI Users' OAuth account table."""


class User(SQLAlchemyBaseUserTableUUID, Base):
    """FastAPI Users' user table, as its SQLAlchemy tutorial declares it."""

    oauth_accounts: Mapped[list[OAuthAccount]] = relationship("OAuthAccount", lazy="select")


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    """FastAPI Users' access token table for the database strategy."""
