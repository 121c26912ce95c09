"""Which user model a command works on: usersctl's built-in tables, or the table found in the database.

The built-in model is FastAPI Users' tutorial model (UUID ids). When the ``user`` table already
exists, its structure is read from the database instead, so an app's integer ids and extra
columns are seen and kept.
"""

from __future__ import annotations

import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, MetaData, Table, inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning
from sqlalchemy.orm import DeclarativeBase, Mapped, registry, relationship
from sqlalchemy.types import CHAR, NCHAR, VARCHAR, Integer, String, Uuid

from usersctl.db import (
    GUID,
    SQLAlchemyBaseAccessTokenTableUUID,
    SQLAlchemyBaseOAuthAccountTableUUID,
    SQLAlchemyBaseUserTableUUID,
    add_email_lower_index,
)
from usersctl.errors import TablesMissing

USER_TABLE = "user"
OAUTH_TABLE = "oauth_account"
TOKEN_TABLE = "accesstoken"
#: The columns every FastAPI Users user table has.
BASE_COLUMNS = ("id", "email", "hashed_password", "is_active", "is_superuser", "is_verified")


class Base(DeclarativeBase):
    """Metadata of usersctl's built-in tables."""


class OAuthAccount(SQLAlchemyBaseOAuthAccountTableUUID, Base):
    """FastAPI Users' OAuth account table."""


class User(SQLAlchemyBaseUserTableUUID, Base):
    """FastAPI Users' user table, as its SQLAlchemy tutorial declares it."""

    oauth_accounts: Mapped[list[OAuthAccount]] = relationship("OAuthAccount", lazy="select")


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, Base):
    """FastAPI Users' access token table for the database strategy."""


@dataclass(frozen=True)
class UserModel:
    """The mapped user class a command works with, and what is known of its table."""

    user_class: type[Any]
    source: str  # "built-in" or "database"
    oauth_class: type[Any] | None = None
    token_table: Table | None = None
    extra_columns: tuple[str, ...] = field(default=())

    @property
    def table(self) -> Table:
        table = inspect(self.user_class).local_table
        assert isinstance(table, Table)
        return table

    @property
    def id_is_uuid(self) -> bool:
        return isinstance(self.table.c.id.type, (GUID, Uuid))

    @property
    def columns(self) -> list[str]:
        """Columns shown to people: all but ``hashed_password``, base columns first."""
        names = [name for name in BASE_COLUMNS if name != "hashed_password"]
        return names + list(self.extra_columns)


BUILT_IN = UserModel(
    user_class=User,
    source="built-in",
    oauth_class=OAuthAccount,
    token_table=AccessToken.__table__,  # type: ignore[arg-type]
)


def _looks_like_uuid(column: Any) -> bool:
    kind = column["type"]
    if isinstance(kind, Uuid):
        return True
    return isinstance(kind, (CHAR, NCHAR, VARCHAR, String)) and getattr(kind, "length", None) in (
        32,
        36,
    )


def reflect_user_model(connection: Connection) -> UserModel:
    """Read the user table (and FastAPI Users' related tables) from the database and map it."""
    inspector = inspect(connection)
    names = set(inspector.get_table_names())
    if USER_TABLE not in names:
        raise TablesMissing(
            f"the database has no {USER_TABLE!r} table; run `usersctl init-db` to create it"
        )
    columns = {column["name"]: column for column in inspector.get_columns(USER_TABLE)}
    missing = [name for name in BASE_COLUMNS if name not in columns]
    if missing:
        raise TablesMissing(
            f"table {USER_TABLE!r} lacks the column(s) {', '.join(missing)} that FastAPI Users needs"
        )
    metadata = MetaData()
    overrides: list[Column[Any]] = []
    id_column = columns["id"]
    if _looks_like_uuid(id_column):
        overrides.append(Column("id", GUID(), primary_key=True, default=uuid.uuid4))
    elif isinstance(id_column["type"], Integer):
        overrides.append(Column("id", id_column["type"], primary_key=True, autoincrement=True))
    with warnings.catch_warnings():
        # SQLAlchemy cannot reflect expression indexes such as lower(email); they are not needed.
        warnings.filterwarnings(
            "ignore", message="Skipped unsupported reflection", category=SAWarning
        )
        table = Table(USER_TABLE, metadata, *overrides, autoload_with=connection)
    add_email_lower_index(table)
    for related in (OAUTH_TABLE, TOKEN_TABLE):
        if related in names:
            related_table = Table(related, metadata, autoload_with=connection)
            for fk in related_table.foreign_keys:
                if fk.references(table) and isinstance(table.c.id.type, GUID):
                    fk.parent.type = GUID()  # compare user ids the way the user table stores them

    mapper_registry = registry(metadata=metadata)
    user_class = type("User", (), {"__doc__": "The user table as found in the database."})
    mapper_registry.map_imperatively(user_class, table)
    oauth_class = None
    if OAUTH_TABLE in metadata.tables:
        oauth_class = type("OAuthAccount", (), {})
        mapper_registry.map_imperatively(oauth_class, metadata.tables[OAUTH_TABLE])
    extra = tuple(name for name in columns if name not in BASE_COLUMNS)
    return UserModel(
        user_class=user_class,
        source="database",
        oauth_class=oauth_class,
        token_table=metadata.tables.get(TOKEN_TABLE),
        extra_columns=extra,
    )
