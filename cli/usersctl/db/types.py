"""Column types shared with FastAPI Users: a portable UUID and an always-aware timestamp."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import CHAR, TIMESTAMP
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine, Uuid

UUID_ID = uuid.UUID


def to_uuid(value: Any) -> uuid.UUID:
    """Return ``value`` as a UUID; accepts a UUID, any form ``uuid.UUID`` parses, or 16 bytes."""
    if type(value) is uuid.UUID:
        return value
    if isinstance(value, uuid.UUID):
        # asyncpg's own UUID subclass: give every database the same plain type.
        return uuid.UUID(int=value.int)
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    return uuid.UUID(str(value).strip())


class GUID(TypeDecorator[uuid.UUID]):
    """UUID column: native ``UUID`` on PostgreSQL, ``CHAR(36)`` lowercase hyphenated elsewhere."""

    impl = CHAR(36)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            # The generic Uuid is PostgreSQL's native UUID there, without importing the whole
            # PostgreSQL dialect into every SQLite command.
            return dialect.type_descriptor(Uuid(as_uuid=True))
        return dialect.type_descriptor(CHAR(36))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        normalised = to_uuid(value)
        return normalised if dialect.name == "postgresql" else str(normalised)

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        if value is None:
            return None
        return to_uuid(value)


def now_utc() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class TIMESTAMPAware(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware (UTC), also on SQLite and MySQL."""

    impl = TIMESTAMP(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "mysql":
            # MySQL's TIMESTAMP drops the microseconds, converts from the session's time zone
            # and ends in 2038; DATETIME(6) keeps the UTC time given below as it is.
            from sqlalchemy.dialects.mysql import DATETIME

            return dialect.type_descriptor(DATETIME(fsp=6))
        return super().load_dialect_impl(dialect)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if (
            isinstance(value, datetime)
            and value.tzinfo is not None
            and dialect.name != "postgresql"
        ):
            # SQLite stores the text as given; store UTC so that comparisons stay ordered.
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment
