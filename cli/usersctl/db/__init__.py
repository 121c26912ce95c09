"""A drop-in for ``fastapi_users_db_sqlalchemy``: same tables and adapters, fewer surprises.

Knows nothing of the command line; the CLI and apps alike import from here.
"""

from usersctl.db.adapter import SQLAlchemyAccessTokenDatabase, SQLAlchemyUserDatabase
from usersctl.db.tables import (
    SQLAlchemyBaseAccessTokenTable,
    SQLAlchemyBaseAccessTokenTableUUID,
    SQLAlchemyBaseOAuthAccountTable,
    SQLAlchemyBaseOAuthAccountTableUUID,
    SQLAlchemyBaseUserTable,
    SQLAlchemyBaseUserTableUUID,
    add_email_lower_index,
    email_lower_index_name,
)
from usersctl.db.types import GUID, UUID_ID, TIMESTAMPAware, now_utc

__all__ = [
    "GUID",
    "UUID_ID",
    "SQLAlchemyAccessTokenDatabase",
    "SQLAlchemyBaseAccessTokenTable",
    "SQLAlchemyBaseAccessTokenTableUUID",
    "SQLAlchemyBaseOAuthAccountTable",
    "SQLAlchemyBaseOAuthAccountTableUUID",
    "SQLAlchemyBaseUserTable",
    "SQLAlchemyBaseUserTableUUID",
    "SQLAlchemyUserDatabase",
    "TIMESTAMPAware",
    "add_email_lower_index",
    "email_lower_index_name",
    "now_utc",
]
