"""Async database adapters with FastAPI Users' interface: users (and OAuth accounts), access tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, Table, delete, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState

from usersctl.db.tables import ID
from usersctl.email_case import index_key

UP = TypeVar("UP", bound=Any)
AP = TypeVar("AP", bound=Any)


def cascading_tables(user_table: Table) -> list[tuple[Table, list[Any]]]:
    """Tables in the user table's metadata whose foreign key to it says ON DELETE CASCADE."""
    found = []
    for table in user_table.metadata.sorted_tables:
        columns = [
            fk.parent
            for fk in table.foreign_keys
            if fk.references(user_table) and (fk.ondelete or "").lower() == "cascade"
        ]
        if columns and table is not user_table:
            found.append((table, columns))
    return found


class SQLAlchemyUserDatabase(Generic[UP, ID]):
    """FastAPI Users' SQLAlchemy user adapter, with an indexed email lookup and a delete that works.

    :param session: the async session to work in.
    :param user_table: the mapped user class.
    :param oauth_account_table: the mapped OAuth account class, if the app has one.
    """

    session: AsyncSession
    user_table: type[UP]
    oauth_account_table: type[Any] | None

    def __init__(
        self,
        session: AsyncSession,
        user_table: type[UP],
        oauth_account_table: type[Any] | None = None,
    ) -> None:
        self.session = session
        self.user_table = user_table
        self.oauth_account_table = oauth_account_table

    async def get(self, id: ID) -> UP | None:
        statement = select(self.user_table).where(self.user_table.id == id)
        return await self._get_user(statement)

    async def get_by_email(self, email: str) -> UP | None:
        # Matches the unique index on lower(email), so this is an index search, not a scan.
        statement = select(self.user_table).where(
            index_key(self.user_table.email) == index_key(email)
        )
        return await self._get_user(statement)

    async def get_by_oauth_account(self, oauth: str, account_id: str) -> UP | None:
        if self.oauth_account_table is None:
            raise NotImplementedError()
        statement = (
            select(self.user_table)
            .join(self.oauth_account_table)
            .where(self.oauth_account_table.oauth_name == oauth)
            .where(self.oauth_account_table.account_id == account_id)
        )
        return await self._get_user(statement)

    async def create(self, create_dict: dict[str, Any]) -> UP:
        user: UP = self.user_table(**create_dict)
        self.session.add(user)
        await self.session.commit()
        await self.session.refresh(user)
        return user

    async def update(self, user: UP, update_dict: dict[str, Any]) -> UP:
        for key, value in update_dict.items():
            setattr(user, key, value)
        self.session.add(user)
        await self.session.commit()
        await self.session.refresh(user)
        return user

    async def delete(self, user: UP) -> None:
        """Delete the user and the rows that cascade from it (OAuth accounts, access tokens).

        FastAPI Users deletes through the ORM, which nulls ``oauth_account.user_id`` and fails on
        NOT NULL; here the cascade is carried out explicitly, so it holds on any database.
        """
        state: InstanceState[Any] = inspect(user)
        if state.expired_attributes and user in self.session:
            # Load what a rollback expired: once expunged below, an expired user could not be
            # read any more, and callers do read it (FastAPI Users' on_after_delete hook).
            await self.session.refresh(user)
        # Read the key from the identity map: it survives a rollback that expired the object.
        identity = state.identity
        await self.delete_by_id(identity[0] if identity else user.id)
        if user in self.session:
            self.session.expunge(user)
        await self.session.commit()

    async def delete_by_id(self, user_id: Any) -> int:
        """Delete one user and its cascading rows in the current transaction; return rows removed."""
        user_table = self._table()
        dependents = cascading_tables(user_table)
        for table, columns in dependents:
            for column in columns:
                await self.session.execute(delete(table).where(column == user_id))
        result = await self.session.execute(delete(user_table).where(user_table.c.id == user_id))
        self._forget_deleted(dependents, user_id)
        return int(getattr(result, "rowcount", 0) or 0)

    async def add_oauth_account(self, user: UP, create_dict: dict[str, Any]) -> UP:
        if self.oauth_account_table is None:
            raise NotImplementedError()
        await self.session.refresh(user)
        oauth_account = self.oauth_account_table(**create_dict)
        self.session.add(oauth_account)
        user.oauth_accounts.append(oauth_account)
        self.session.add(user)
        await self.session.commit()
        return user

    async def update_oauth_account(
        self, user: UP, oauth_account: Any, update_dict: dict[str, Any]
    ) -> UP:
        if self.oauth_account_table is None:
            raise NotImplementedError()
        for key, value in update_dict.items():
            setattr(oauth_account, key, value)
        self.session.add(oauth_account)
        await self.session.commit()
        return user

    async def _get_user(self, statement: Select[Any]) -> UP | None:
        results = await self.session.execute(statement)
        user: UP | None = results.unique().scalar_one_or_none()
        return user

    def _table(self) -> Table:
        table = inspect(self.user_table).local_table
        assert isinstance(table, Table)
        return table

    def _forget_deleted(self, dependents: list[tuple[Table, list[Any]]], user_id: Any) -> None:
        # Rows removed by a Core DELETE must not linger in the session's identity map.
        # Only loaded values are compared: reading an expired attribute would mean I/O here.
        for obj in list(self.session.identity_map.values()):
            state: InstanceState[Any] = inspect(obj, raiseerr=True)
            for table, columns in dependents:
                if state.mapper.local_table is not table:
                    continue
                keys = [state.mapper.get_property_by_column(column).key for column in columns]
                if any(state.dict.get(key) == user_id for key in keys):
                    self.session.expunge(obj)


class SQLAlchemyAccessTokenDatabase(Generic[AP]):
    """FastAPI Users' access token adapter for its database authentication strategy."""

    def __init__(self, session: AsyncSession, access_token_table: type[AP]) -> None:
        self.session = session
        self.access_token_table = access_token_table

    async def get_by_token(self, token: str, max_age: datetime | None = None) -> AP | None:
        statement = select(self.access_token_table).where(self.access_token_table.token == token)
        if max_age is not None:
            statement = statement.where(self.access_token_table.created_at >= max_age)
        results = await self.session.execute(statement)
        found: AP | None = results.scalar_one_or_none()
        return found

    async def create(self, create_dict: dict[str, Any]) -> AP:
        access_token: AP = self.access_token_table(**create_dict)
        self.session.add(access_token)
        await self.session.commit()
        await self.session.refresh(access_token)
        return access_token

    async def update(self, access_token: AP, update_dict: dict[str, Any]) -> AP:
        for key, value in update_dict.items():
            setattr(access_token, key, value)
        self.session.add(access_token)
        await self.session.commit()
        await self.session.refresh(access_token)
        return access_token

    async def delete(self, access_token: AP) -> None:
        await self.session.delete(access_token)
        await self.session.commit()
