"""A dataclass-mapped user model (``MappedAsDataclass``) whose constructor fills ``nickname``
through a ``default_factory`` while the column itself has no default: the import tests load it
as an app's model (``--model dataclass_user_model:User``)."""

import uuid

from fastapi_users_db_sqlalchemy.generics import GUID
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column


class Base(MappedAsDataclass, DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "user"
    email: Mapped[str] = mapped_column(String(320))
    hashed_password: Mapped[str] = mapped_column(String(1024))
    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default_factory=uuid.uuid4)
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    is_verified: Mapped[bool] = mapped_column(default=False)
    nickname: Mapped[str] = mapped_column(String(20), default_factory=lambda: "anon")
