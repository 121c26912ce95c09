"""The user adapter, told as FastAPI Users' own adapter tests tell it, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import fastapi_users_db_sqlalchemy as theirs
import pytest
from sqlalchemy import Integer, MetaData, String, literal_column, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fastapi_users_tutorial import TheirAccessToken, TheirBase, TheirOAuthAccount, TheirUser
from usersctl.db import (
    SQLAlchemyAccessTokenDatabase,
    SQLAlchemyBaseAccessTokenTableUUID,
    SQLAlchemyBaseOAuthAccountTableUUID,
    SQLAlchemyBaseUserTable,
    SQLAlchemyBaseUserTableUUID,
    SQLAlchemyUserDatabase,
)
from usersctl.db.adapter import cascading_tables
from usersctl.engine import create_engine


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTableUUID, Base):
    """A user table with the app's own columns, one of them set by the database."""

    first_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    revision: Mapped[int] = mapped_column(
        Integer, server_default="1", onupdate=literal_column("revision + 1")
    )


# FastAPI Users' tutorial with OAuth and the database token strategy, on usersctl.db...
class OAuthBase(DeclarativeBase):
    pass


class OAuthAccount(SQLAlchemyBaseOAuthAccountTableUUID, OAuthBase):
    pass


class UserOAuth(SQLAlchemyBaseUserTableUUID, OAuthBase):
    oauth_accounts: Mapped[list[OAuthAccount]] = relationship("OAuthAccount", lazy="joined")


class AccessToken(SQLAlchemyBaseAccessTokenTableUUID, OAuthBase):
    pass


# (The very same code on fastapi_users_db_sqlalchemy is in fastapi_users_tutorial.py.)


# An app that keeps integer ids declares the id itself.
class IntBase(DeclarativeBase):
    pass


class IntUser(SQLAlchemyBaseUserTable[int], IntBase):
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


OAUTH_ACCOUNT_1 = {
    "oauth_name": "service1",
    "access_token": "TOKEN",
    "expires_at": 1579000751,
    "account_id": "111111",
    "account_email": "king.arthur@camelot.bt",
}
OAUTH_ACCOUNT_2 = {
    "oauth_name": "service2",
    "access_token": "TOKEN",
    "expires_at": 1579000751,
    "account_id": "222222",
    "account_email": "king.arthur@camelot.bt",
}


@pytest.fixture
async def outside(database_url: str) -> AsyncIterator[AsyncEngine]:
    """Another engine, to see what was committed; reads without waiting for a writer's lock."""
    engine = create_engine(database_url, sqlite_begin="BEGIN")
    yield engine
    await engine.dispose()


async def create_tables(engine: AsyncEngine, metadata: MetaData) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)


async def count(engine: AsyncEngine, sql: str, **params: Any) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(text(sql), params))


async def test_queries(engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession) -> None:
    await create_tables(engine, Base.metadata)
    user_db = SQLAlchemyUserDatabase(session, User)
    user_create = {"email": "lancelot@camelot.bt", "hashed_password": "guinevere"}

    # Create
    user = await user_db.create(user_create)
    assert isinstance(user.id, uuid.UUID)
    assert (user.email, user.hashed_password) == ("lancelot@camelot.bt", "guinevere")
    assert (user.is_active, user.is_superuser, user.is_verified) == (True, False, False)
    assert user.first_name is None
    # Refreshed: the value the database chose is loaded (else reading it here would need I/O).
    assert user.revision == 1
    # Committed: another connection sees the row.
    assert await count(outside, 'SELECT count(*) FROM "user" WHERE email = :e', e=user.email) == 1

    # Update
    updated_user = await user_db.update(user, {"is_superuser": True, "first_name": "Lancelot"})
    assert updated_user is user
    assert (updated_user.is_superuser, updated_user.first_name) == (True, "Lancelot")
    assert updated_user.revision == 2  # set by the database's UPDATE, read back by the refresh
    assert (
        await count(outside, 'SELECT count(*) FROM "user" WHERE first_name = :n', n="Lancelot") == 1
    )

    # Get by id
    id_user = await user_db.get(user.id)
    assert id_user is not None
    assert (id_user.id, id_user.email, id_user.is_superuser) == (user.id, user.email, True)

    # Get by email
    email_user = await user_db.get_by_email(str(user_create["email"]))
    assert email_user is not None and email_user.id == user.id

    # Get by uppercased email
    email_user = await user_db.get_by_email("Lancelot@camelot.bt")
    assert email_user is not None and email_user.id == user.id
    email_user = await user_db.get_by_email("LANCELOT@CAMELOT.BT")
    assert email_user is not None and email_user.id == user.id

    # Exception when inserting existing email
    with pytest.raises(IntegrityError):
        await user_db.create({"email": user.email, "hashed_password": "guinevere"})
    await session.rollback()

    # Exception when inserting an email that differs only in case (FastAPI Users accepts it)
    with pytest.raises(
        IntegrityError, match=r"ix_user_email_lower|UNIQUE constraint failed|Duplicate entry"
    ):
        await user_db.create({"email": "LANCELOT@camelot.bt", "hashed_password": "guinevere"})
    await session.rollback()

    # Exception when inserting non-nullable fields
    with pytest.raises(IntegrityError):
        await user_db.create({"email": "lancelot2@camelot.bt", "hashed_password": None})
    await session.rollback()

    # Unknown user
    unknown_user = await user_db.get_by_email("galahad@camelot.bt")
    assert unknown_user is None
    assert await user_db.get(uuid.uuid4()) is None

    # Delete user (expired by the rollbacks above: still readable afterwards, as with FastAPI Users)
    await user_db.delete(user)
    deleted_user = await user_db.get(user.id)
    assert deleted_user is None
    assert (user.email, user.first_name) == ("lancelot@camelot.bt", "Lancelot")
    assert await count(outside, 'SELECT count(*) FROM "user"') == 0

    # The address is free again, in any case
    again = await user_db.create({"email": "LANCELOT@camelot.bt", "hashed_password": "x"})
    assert again.id != user.id


async def test_changing_only_the_case_of_ones_own_email(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    await create_tables(engine, Base.metadata)
    user_db = SQLAlchemyUserDatabase(session, User)
    user = await user_db.create({"email": "percival@camelot.bt", "hashed_password": "x"})
    other = await user_db.create({"email": "gawain@camelot.bt", "hashed_password": "x"})

    # Own address, new case: allowed, the index compares the user with itself
    user = await user_db.update(user, {"email": "Percival@Camelot.bt"})
    assert (await user_db.get_by_email("percival@camelot.bt")) is user
    assert user.email == "Percival@Camelot.bt"

    # Someone else's address in another case: refused
    with pytest.raises(IntegrityError):
        await user_db.update(other, {"email": "PERCIVAL@camelot.bt"})


async def test_queries_oauth(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    await create_tables(engine, OAuthBase.metadata)
    user_db = SQLAlchemyUserDatabase(session, UserOAuth, OAuthAccount)

    # Create
    user = await user_db.create({"email": "lancelot@camelot.bt", "hashed_password": "guinevere"})
    assert user.oauth_accounts == []

    # Add OAuth accounts
    user = await user_db.add_oauth_account(user, OAUTH_ACCOUNT_1)
    user = await user_db.add_oauth_account(user, OAUTH_ACCOUNT_2)
    assert sorted(account.oauth_name for account in user.oauth_accounts) == [
        "service1",
        "service2",
    ]
    assert await count(outside, "SELECT count(*) FROM oauth_account WHERE user_id IS NOT NULL") == 2

    # Update an OAuth account
    account = next(a for a in user.oauth_accounts if a.oauth_name == "service1")
    random_account_id = uuid.uuid4().hex
    updated_user = await user_db.update_oauth_account(
        user, account, {"account_id": random_account_id}
    )
    assert updated_user is user
    assert account.account_id == random_account_id
    assert (
        await count(
            outside, "SELECT count(*) FROM oauth_account WHERE account_id = :a", a=random_account_id
        )
        == 1
    )

    # Get by id: the accounts come along (lazy="joined")
    id_user = await user_db.get(user.id)
    assert id_user is not None and id_user.id == user.id
    assert {a.account_id for a in id_user.oauth_accounts} == {random_account_id, "222222"}

    # Get by email
    email_user = await user_db.get_by_email("LANCELOT@camelot.bt")
    assert email_user is not None and email_user.id == user.id
    assert len(email_user.oauth_accounts) == 2

    # Get by OAuth account
    oauth_user = await user_db.get_by_oauth_account("service1", random_account_id)
    assert oauth_user is not None and oauth_user.id == user.id
    assert len(oauth_user.oauth_accounts) == 2

    # Unknown OAuth account
    assert await user_db.get_by_oauth_account("service1", "111111") is None
    assert await user_db.get_by_oauth_account("service3", "222222") is None

    # Delete: the accounts go with the user
    await user_db.delete(user)
    assert await user_db.get(user.id) is None
    assert await user_db.get_by_oauth_account("service2", "222222") is None
    assert await count(outside, "SELECT count(*) FROM oauth_account") == 0


async def test_oauth_methods_need_an_oauth_table(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    await create_tables(engine, OAuthBase.metadata)
    user_db = SQLAlchemyUserDatabase(session, UserOAuth)  # no OAuth table given
    user = await user_db.create({"email": "lancelot@camelot.bt", "hashed_password": "x"})

    with pytest.raises(NotImplementedError):
        await user_db.get_by_oauth_account("service1", "111111")
    with pytest.raises(NotImplementedError):
        await user_db.add_oauth_account(user, OAUTH_ACCOUNT_1)
    with pytest.raises(NotImplementedError):
        await user_db.update_oauth_account(user, object(), {"access_token": "NEW"})
    assert await count(outside, "SELECT count(*) FROM oauth_account") == 0


async def _user_with_accounts_and_tokens(
    session: AsyncSession,
    user_class: type[Any],
    oauth_class: type[Any],
    token_class: type[Any],
    email: str,
) -> Any:
    user_db = SQLAlchemyUserDatabase(session, user_class, oauth_class)
    user = await user_db.create({"email": email, "hashed_password": "x"})
    for account in (OAUTH_ACCOUNT_1, OAUTH_ACCOUNT_2):
        user = await user_db.add_oauth_account(
            user, {**account, "account_id": f"{email}-{account['account_id']}"}
        )
    tokens = SQLAlchemyAccessTokenDatabase(session, token_class)
    for number in range(2):
        await tokens.create({"token": f"{email}-{number}"[:43], "user_id": user.id})
    return user


COUNTS = {
    "users": 'SELECT count(*) FROM "user"',
    "oauth accounts": "SELECT count(*) FROM oauth_account",
    "access tokens": "SELECT count(*) FROM accesstoken",
}


async def counts(engine: AsyncEngine) -> dict[str, int]:
    return {name: await count(engine, sql) for name, sql in COUNTS.items()}


async def test_fastapi_users_adapter_cannot_delete_a_user_with_oauth_accounts(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    # The failure usersctl fixes, with FastAPI Users' own tables and adapter.
    await create_tables(engine, TheirBase.metadata)
    user = await _user_with_accounts_and_tokens(
        session, TheirUser, TheirOAuthAccount, TheirAccessToken, "arthur@camelot.bt"
    )
    user_id = user.id
    their_db = theirs.SQLAlchemyUserDatabase(session, TheirUser, TheirOAuthAccount)

    # Delete: the ORM sets oauth_account.user_id to NULL, which the table forbids
    with pytest.raises(
        IntegrityError, match=r"NOT NULL constraint failed|not-null constraint|cannot be null"
    ):
        await their_db.delete(user)
    await session.rollback()
    assert await counts(outside) == {"users": 1, "oauth accounts": 2, "access tokens": 2}

    # usersctl's adapter, same session, same tables, same user: deleted, with what hangs on it
    user_db = SQLAlchemyUserDatabase(session, TheirUser, TheirOAuthAccount)
    await user_db.delete(await user_db.get(user_id))
    assert await counts(outside) == {"users": 0, "oauth accounts": 0, "access tokens": 0}


@pytest.mark.parametrize(
    "tables",
    [
        pytest.param((OAuthBase, UserOAuth, OAuthAccount, AccessToken), id="usersctl-tables"),
        pytest.param(
            (TheirBase, TheirUser, TheirOAuthAccount, TheirAccessToken), id="fastapi-users-tables"
        ),
    ],
)
async def test_delete_removes_oauth_accounts_and_access_tokens(
    engine: AsyncEngine,
    outside: AsyncEngine,
    session: AsyncSession,
    tables: tuple[type[DeclarativeBase], type[Any], type[Any], type[Any]],
) -> None:
    base, user_class, oauth_class, token_class = tables
    await create_tables(engine, base.metadata)
    arthur = await _user_with_accounts_and_tokens(
        session, user_class, oauth_class, token_class, "arthur@camelot.bt"
    )
    merlin = await _user_with_accounts_and_tokens(
        session, user_class, oauth_class, token_class, "merlin@camelot.bt"
    )
    user_db = SQLAlchemyUserDatabase(session, user_class, oauth_class)
    assert await counts(outside) == {"users": 2, "oauth accounts": 4, "access tokens": 4}

    # Delete Arthur, whose accounts are loaded in the session
    arthur = await user_db.get_by_email("arthur@camelot.bt")
    assert len(arthur.oauth_accounts) == 2
    await user_db.delete(arthur)

    # Arthur's rows are gone, Merlin's are all still there
    assert await counts(outside) == {"users": 1, "oauth accounts": 2, "access tokens": 2}
    assert await count(outside, "SELECT count(*) FROM accesstoken WHERE token LIKE 'merlin%'") == 2
    assert await user_db.get_by_email("arthur@camelot.bt") is None
    assert await user_db.get_by_oauth_account("service1", "arthur@camelot.bt-111111") is None
    still = await user_db.get_by_oauth_account("service1", "merlin@camelot.bt-111111")
    assert still is not None and still.id == merlin.id
    # Nothing of Arthur lingers in the session: the same address and accounts can come back
    arthur_again = await user_db.create({"email": "arthur@camelot.bt", "hashed_password": "x"})
    arthur_again = await user_db.add_oauth_account(
        arthur_again, {**OAUTH_ACCOUNT_1, "account_id": "arthur@camelot.bt-111111"}
    )
    assert [a.user_id for a in arthur_again.oauth_accounts] == [arthur_again.id]


async def test_delete_by_id_reports_how_many_users_went(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    await create_tables(engine, OAuthBase.metadata)
    user = await _user_with_accounts_and_tokens(
        session, UserOAuth, OAuthAccount, AccessToken, "kay@camelot.bt"
    )
    user_db = SQLAlchemyUserDatabase(session, UserOAuth, OAuthAccount)

    assert await user_db.delete_by_id(uuid.uuid4()) == 0
    assert await user_db.delete_by_id(user.id) == 1
    await session.rollback()  # delete_by_id leaves the transaction to its caller
    assert await counts(outside) == {"users": 1, "oauth accounts": 2, "access tokens": 2}


async def test_integer_id_user_table(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    await create_tables(engine, IntBase.metadata)
    user_db = SQLAlchemyUserDatabase(session, IntUser)

    # Create: the database numbers the users
    first = await user_db.create({"email": "bedivere@camelot.bt", "hashed_password": "x"})
    second = await user_db.create({"email": "tristan@camelot.bt", "hashed_password": "x"})
    assert isinstance(first.id, int) and second.id > first.id

    # Get by id, by uppercased email
    assert (await user_db.get(first.id)) is first
    assert (await user_db.get_by_email("BEDIVERE@CAMELOT.BT")) is first

    # A case-only duplicate is refused here too
    with pytest.raises(IntegrityError):
        await user_db.create({"email": "Tristan@camelot.bt", "hashed_password": "x"})
    await session.rollback()

    # Delete
    await user_db.delete(first)
    assert await user_db.get(first.id) is None
    assert await count(outside, 'SELECT count(*) FROM "user"') == 1


# The cascade is usersctl's, not only the database's ------------------------------------------


def test_cascading_tables_are_those_whose_key_to_the_user_table_cascades() -> None:
    from sqlalchemy import Column, ForeignKey, Table
    from sqlalchemy import Uuid as PlainUuid

    metadata = MetaData()
    users = Table(
        "user",
        metadata,
        Column("id", PlainUuid, primary_key=True),
        Column("invited_by", PlainUuid, ForeignKey("user.id", ondelete="CASCADE")),
    )
    other = Table("other", metadata, Column("id", Integer, primary_key=True))

    def dependent(name: str, *keys: tuple[str, str | None]) -> Table:
        columns = [
            Column(f"{target}_{number}", ForeignKey(f"{target}.id", ondelete=ondelete))
            for number, (target, ondelete) in enumerate(keys)
        ]
        return Table(name, metadata, Column("pk", Integer, primary_key=True), *columns)

    shouting = dependent("shouting", ("user", "CASCADE"))
    dependent("two", ("user", "cascade"), ("user", None), ("user", "cascade"))
    dependent("restricting", ("user", "RESTRICT"))
    dependent("plain", ("user", None))
    dependent("elsewhere", ("other", "cascade"))

    found = {
        table.name: sorted(column.name for column in columns)
        for table, columns in cascading_tables(users)
    }
    assert found == {"shouting": ["user_0"], "two": ["user_0", "user_2"]}
    assert cascading_tables(other) == [
        (metadata.tables["elsewhere"], [metadata.tables["elsewhere"].c.other_0])
    ]
    assert shouting in metadata.tables.values()


async def test_delete_removes_the_rows_of_a_database_that_does_not_cascade(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    from sqlalchemy.schema import CreateTable

    # The app's migrations made the tables without their foreign keys: nothing in the database
    # deletes an account with its user.
    async with engine.begin() as connection:
        await connection.execute(CreateTable(UserOAuth.__table__))
        for table in (OAuthAccount.__table__, AccessToken.__table__):
            await connection.execute(CreateTable(table, include_foreign_key_constraints=[]))
    arthur = await _user_with_accounts_and_tokens(
        session, UserOAuth, OAuthAccount, AccessToken, "arthur@camelot.bt"
    )
    merlin = await _user_with_accounts_and_tokens(
        session, UserOAuth, OAuthAccount, AccessToken, "merlin@camelot.bt"
    )
    arthur_id, merlin_id = arthur.id, merlin.id
    user_db = SQLAlchemyUserDatabase(session, UserOAuth, OAuthAccount)
    # Every token loaded and held, as an app's request holds what it read
    held = (await session.execute(select(AccessToken))).scalars().all()
    assert len(held) == 4 and len(list(session.identity_map.values())) == 10

    await user_db.delete(arthur)

    assert await counts(outside) == {"users": 1, "oauth accounts": 2, "access tokens": 2}
    assert await count(outside, "SELECT count(*) FROM accesstoken WHERE token LIKE 'merlin%'") == 2
    # What went is gone from the session too; what stays is still there
    assert arthur not in session
    left = [
        (type(obj).__name__, obj.user_id)
        for obj in session.identity_map.values()
        if isinstance(obj, (OAuthAccount, AccessToken))
    ]
    assert sorted(left) == sorted(
        [("AccessToken", merlin_id)] * 2 + [("OAuthAccount", merlin_id)] * 2
    )
    assert arthur_id not in [user_id for _, user_id in left]


async def test_delete_of_a_user_detached_after_a_rollback(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    await create_tables(engine, OAuthBase.metadata)
    user = await _user_with_accounts_and_tokens(
        session, UserOAuth, OAuthAccount, AccessToken, "kay@camelot.bt"
    )
    await session.rollback()  # expires the user...
    session.expunge(user)  # ...which then cannot load its id any more
    await SQLAlchemyUserDatabase(session, UserOAuth, OAuthAccount).delete(user)
    assert await counts(outside) == {"users": 0, "oauth accounts": 0, "access tokens": 0}


async def test_delete_of_a_new_object_carrying_a_stored_users_id(
    engine: AsyncEngine, outside: AsyncEngine, session: AsyncSession
) -> None:
    await create_tables(engine, OAuthBase.metadata)
    user = await _user_with_accounts_and_tokens(
        session, UserOAuth, OAuthAccount, AccessToken, "gawain@camelot.bt"
    )
    stand_in = UserOAuth(id=user.id, email="gawain@camelot.bt", hashed_password="x")
    await SQLAlchemyUserDatabase(session, UserOAuth, OAuthAccount).delete(stand_in)
    assert await counts(outside) == {"users": 0, "oauth accounts": 0, "access tokens": 0}


async def test_a_token_exactly_max_age_old_is_still_valid(
    engine: AsyncEngine, session: AsyncSession
) -> None:
    from datetime import datetime, timedelta, timezone

    await create_tables(engine, OAuthBase.metadata)
    user = await SQLAlchemyUserDatabase(session, UserOAuth).create(
        {"email": "tok@camelot.bt", "hashed_password": "x"}
    )
    created = datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
    tokens = SQLAlchemyAccessTokenDatabase(session, AccessToken)
    await tokens.create({"token": "exact", "user_id": user.id, "created_at": created})
    assert await tokens.get_by_token("exact", max_age=created) is not None
    assert await tokens.get_by_token("exact", max_age=created + timedelta(microseconds=1)) is None
