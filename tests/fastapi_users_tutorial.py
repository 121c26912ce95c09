"""FastAPI Users' SQLAlchemy tutorial models (OAuth accounts and the database token strategy),
declared on the real ``fastapi_users_db_sqlalchemy``: the reference usersctl.db is held to."""

from __future__ import annotations

import fastapi_users_db_sqlalchemy as theirs
from fastapi_users_db_sqlalchemy.access_token import SQLAlchemyBaseAccessTokenTableUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, relationship


class TheirBase(DeclarativeBase):
    pass


class TheirOAuthAccount(theirs.SQLAlchemyBaseOAuthAccountTableUUID, TheirBase):
    pass


class TheirUser(theirs.SQLAlchemyBaseUserTableUUID, TheirBase):
    oauth_accounts: Mapped[list[TheirOAuthAccount]] = relationship(
        "TheirOAuthAccount", lazy="joined"
    )


class TheirAccessToken(SQLAlchemyBaseAccessTokenTableUUID, TheirBase):
    pass
