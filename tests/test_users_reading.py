"""The reading half of usersctl.users (finding users, filtering and listing them) at the
library's level: ``find_user`` and its kin, ``UserFilters`` and ``list_users``' keyset paging,
called directly on each test database, seeded with plain SQL. No command line: quick enough for
the mutation run of users.py (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy import Column, DateTime, Integer, String, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import NullType, TypeDecorator

from harness import (
    Database,
    execute,
    integer_user_table,
    is_mysql,
    is_sqlite,
    user_and_token_tables,
)
from usersctl.db import SQLAlchemyBaseUserTable, SQLAlchemyBaseUserTableUUID
from usersctl.db.types import TIMESTAMPAware
from usersctl.errors import AmbiguousUser, InvalidInput, UserNotFound
from usersctl.models import UserModel
from usersctl.users import (
    Page,
    UserContext,
    UserFilters,
    _like_literal,
    _moment,
    choose_columns,
    creation_column,
    find_by_email,
    find_every_user,
    find_user,
    find_users,
    has_unique_email_key,
    list_users,
    open_users,
    parse_user_id,
    user_filters,
    user_order,
    user_row,
)

T = TypeVar("T")

ANN = "00000000-0000-0000-0000-00000000000a"
BEN = "00000000-0000-0000-0000-00000000000b"
CY = "00000000-0000-0000-0000-00000000000c"
DI = "00000000-0000-0000-0000-00000000000d"
EVE = "00000000-0000-0000-0000-00000000000e"
FAY = "00000000-0000-0000-0000-00000000000f"


def make_table(url: str, *, unique_key: bool = True) -> Database:
    """FastAPI Users' user table (UUID ids), empty; ``unique_key=False`` lets in addresses that
    differ only in case."""
    return user_and_token_tables(url, unique_key=unique_key)


def integer_table(url: str) -> Database:
    """A user table whose ids are integers the database numbers (1, 2, ...), empty."""
    return integer_user_table(url)


def reading(url: str, work: Callable[[UserContext], Awaitable[T]], **options: Any) -> T:
    """``work`` done in a session of ``open_users`` on ``url``."""

    async def main() -> T:
        async with open_users(url, **options) as ctx:
            return await work(ctx)

    return asyncio.run(main())


def model_of(url: str) -> UserModel:
    """The user model ``open_users`` reads from the database."""

    async def work(ctx: UserContext) -> UserModel:
        return ctx.model

    return reading(url, work)


def selected(url: str, *filters: UserFilters) -> list[list[str]]:
    """For each of ``filters``, the emails its ``apply`` selects, sorted (one session)."""

    async def work(ctx: UserContext) -> list[list[str]]:
        email = ctx.model.column("email")
        found = []
        for each in filters:
            statement = each.apply(ctx.model, select(email).select_from(ctx.model.selectable))
            found.append(sorted((await ctx.session.execute(statement)).scalars()))
        return found

    return reading(url, work)


def refused(url: str, filters: UserFilters) -> str:
    """The message of the ``InvalidInput`` that ``filters.apply`` raises."""
    with pytest.raises(InvalidInput) as error:
        selected(url, filters)
    return str(error.value)


def found(url: str, *refs: str) -> list[Any]:
    """What ``find_user`` finds for each of ``refs``: the email, or the message it raises."""

    async def work(ctx: UserContext) -> list[Any]:
        answers: list[Any] = []
        for ref in refs:
            try:
                answers.append((await find_user(ctx, ref)).email)
            except (UserNotFound, AmbiguousUser, InvalidInput) as exc:
                answers.append(f"{type(exc).__name__}: {exc}")
        return answers

    return reading(url, work)


# Declared models, for what needs no database -----------------------------------------------------


class Base(DeclarativeBase):
    pass


class NumberedUser(SQLAlchemyBaseUserTable[int], Base):
    __tablename__ = "numbered"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class UuidUser(SQLAlchemyBaseUserTableUUID, Base):
    __tablename__ = "uuid_user"


class OddIdUser(SQLAlchemyBaseUserTable[str], Base):
    """An id of a type SQLAlchemy knows no Python type for."""

    __tablename__ = "odd_id"
    id: Mapped[str] = mapped_column(NullType, primary_key=True)


class Aware(TypeDecorator[dt.datetime]):
    """A type decorator over another (``TIMESTAMPAware``): the date and time under both."""

    impl = TIMESTAMPAware
    cache_ok = True


class Stamped(SQLAlchemyBaseUserTableUUID, Base):
    __tablename__ = "stamped"
    date_joined: Mapped[dt.datetime] = mapped_column(Aware)
    created: Mapped[str] = mapped_column(String(20))


class TwiceStamped(SQLAlchemyBaseUserTableUUID, Base):
    __tablename__ = "twice"
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    created_on: Mapped[dt.datetime] = mapped_column(TIMESTAMPAware)


class Unstamped(SQLAlchemyBaseUserTableUUID, Base):
    __tablename__ = "unstamped"
    created: Mapped[str] = mapped_column(String(20))
    created_on: Mapped[int] = mapped_column(Integer)
    joined: Mapped[dt.datetime] = mapped_column(DateTime)


def declared(user_class: type) -> UserModel:
    """The model of a declared class, without a database."""
    return UserModel(user_class=user_class, source="tests")


# Columns, rows and ids -----------------------------------------------------------------------------


def test_columns_are_all_or_those_named_in_their_order() -> None:
    available = ["id", "email", "is_active"]
    assert choose_columns(None, available) == available
    assert choose_columns(["is_active", "id"], available) == ["is_active", "id"]
    assert choose_columns((), available) == []


def test_unknown_empty_and_repeated_column_names_are_refused() -> None:
    available = ("id", "email", "is_active")
    for names, message in (
        (
            ["id", "nickname"],
            "--columns: unknown column 'nickname'; the columns are id, email, is_active",
        ),
        (["email", ""], "--columns: an empty column name; the columns are id, email, is_active"),
        (["email", "id", "email"], "--columns: 'email' is named twice"),
    ):
        with pytest.raises(InvalidInput) as error:
            choose_columns(names, available)
        assert str(error.value) == message


def test_a_user_row_holds_the_shown_columns_by_column_name(database_url: str) -> None:
    make_table(database_url).seed_specs({"id": ANN, "email": "Ann@x.org", "is_verified": True})

    async def work(ctx: UserContext) -> dict[str, Any]:
        return user_row(ctx.model, await ctx.db.get(uuid.UUID(ANN)))

    assert reading(database_url, work) == {
        "id": uuid.UUID(ANN),
        "email": "Ann@x.org",
        "is_active": True,
        "is_superuser": False,
        "is_verified": True,
    }


def test_integer_ids_are_parsed_within_64_bits(database_url: str) -> None:
    model = model_of(integer_table(database_url).url)
    assert parse_user_id(model, " 42 ") == 42
    assert parse_user_id(model, "-9223372036854775808") == -(2**63)  # 20 characters
    assert parse_user_id(model, "9223372036854775807") == 2**63 - 1
    for raw in ("9223372036854775808", "0" * 20 + "5", "+5", "1_0", "x", "5-"):
        with pytest.raises(InvalidInput) as error:
            parse_user_id(model, raw)
        assert str(error.value) == f"{raw!r} is neither an email address nor a valid integer id"


def test_uuid_ids_are_parsed_as_uuids(database_url: str) -> None:
    model = model_of(make_table(database_url).url)
    assert parse_user_id(model, f" {ANN.upper()} ") == uuid.UUID(ANN)
    with pytest.raises(InvalidInput) as error:
        parse_user_id(model, "7")
    assert str(error.value) == "'7' is neither an email address nor a valid UUID id"


def test_ids_of_other_types_are_the_text_given() -> None:
    assert parse_user_id(declared(OddIdUser), " a b ") == "a b"
    assert parse_user_id(declared(UuidUser), BEN) == uuid.UUID(BEN)
    assert parse_user_id(declared(NumberedUser), "-3") == -3


# find_user and find_by_email ---------------------------------------------------------------------


def test_users_are_found_by_email_in_any_case_or_by_id(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"id": ANN, "email": "ann@x.org"}, {"id": BEN, "email": "Ben@X.org"}
    )
    assert found(database_url, " ANN@x.org ", "ben@x.ORG", ANN, f" {BEN} ") == [
        "ann@x.org",
        "Ben@X.org",
        "ann@x.org",
        "Ben@X.org",
    ]
    assert found(database_url, " nobody@x.org ", CY, "7") == [
        "UserNotFound: no user 'nobody@x.org'",
        f"UserNotFound: no user {CY!r}",
        "InvalidInput: '7' is neither an email address nor a valid UUID id",
    ]


def test_addresses_beyond_ascii_are_found_in_any_case(database_url: str) -> None:
    """Normalised (the domain lowercased) before the lookup; an address today's rules refuse
    (no dot in the domain) is looked up as typed, and still found."""
    make_table(database_url).seed_specs(
        {"id": ANN, "email": "ärger@bücher.example"},
        {"id": BEN, "email": "bäd@nodot"},
        {"id": CY, "email": "éva_1@x.org"},
        {"id": DI, "email": "ωva_1@x.org"},
        {"id": EVE, "email": "jürgen@x.org"},
    )
    decomposed = "JU\u0308RGEN@x.org"  # the umlaut a mark of its own: NFC composes it
    assert found(
        database_url, "ÄRGER@BÜCHER.EXAMPLE", " BÄD@nodot ", "ÉVA_1@x.org", decomposed
    ) == ["ärger@bücher.example", "bäd@nodot", "éva_1@x.org", "jürgen@x.org"]
    assert found(database_url, "évax1@x.org", "ärgerx@bücher.example") == [
        "UserNotFound: no user 'évax1@x.org'",
        "UserNotFound: no user 'ärgerx@bücher.example'",
    ]


def duplicates(url: str) -> Database:
    """A table without the unique key, holding one address in three cases (ids out of order
    with the addresses and with the order they were stored in), and another user."""
    db = make_table(url, unique_key=False)
    db.seed_specs(
        {"id": BEN, "email": "ann@x.org"},
        {"id": ANN, "email": "Ann@x.org"},
        {"id": CY, "email": "ANN@x.org"},
        {"id": DI, "email": "ben@x.org"},
    )
    return db


def test_of_case_duplicates_the_one_stored_as_typed_is_meant(database_url: str) -> None:
    duplicates(database_url)
    assert found(database_url, "Ann@x.org", " ANN@x.org", "ann@x.org", "BEN@x.org") == [
        "Ann@x.org",
        "ANN@x.org",
        "ann@x.org",
        "ben@x.org",
    ]


def test_case_duplicates_none_of_them_as_typed_are_ambiguous(database_url: str) -> None:
    duplicates(database_url)
    (message,) = found(database_url, "aNN@x.org")
    prefix = "AmbiguousUser: 3 users have the address 'aNN@x.org' in different case: "
    suffix = "; name one by its id or its exact address (usersctl doctor lists such duplicates)"
    assert message.startswith(prefix) and message.endswith(suffix), message
    listed = message.removeprefix(prefix).removesuffix(suffix).split(", ")
    expected = [f"ANN@x.org (id {CY})", f"Ann@x.org (id {ANN})", f"ann@x.org (id {BEN})"]
    # In the order of the addresses; MySQL's _ci collation sorts them as one, in no order.
    assert (sorted(listed) if is_mysql(database_url) else listed) == expected


def test_the_address_as_typed_picks_one_when_normalising_changed_it(database_url: str) -> None:
    """Normalising lowercases the domain: the address as typed is the one meant."""
    db = make_table(database_url, unique_key=False)
    db.seed_specs(
        {"id": ANN, "email": "ülf@Bücher.example"}, {"id": BEN, "email": "Ülf@Bücher.example"}
    )

    async def work(ctx: UserContext) -> list[Any]:
        users = [await find_user(ctx, "Ülf@Bücher.example")]
        users.append(await find_by_email(ctx, "ülf@Bücher.example"))
        return [(user.id, user.email) for user in users]

    assert reading(database_url, work) == [
        (uuid.UUID(BEN), "Ülf@Bücher.example"),
        (uuid.UUID(ANN), "ülf@Bücher.example"),
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_finds_case_duplicates_beyond_ascii_by_scanning(database_url: str) -> None:
    """SQLite's lower() folds ASCII only: addresses with other letters are compared in Python,
    the candidates narrowed by a LIKE pattern (which treats ``_`` and ``%`` as themselves)."""
    db = make_table(database_url, unique_key=False)
    db.seed_specs(
        {"id": CY, "email": "Ölaf_%@x.org"},
        {"id": ANN, "email": "ölaf_%@x.org"},
        {"id": BEN, "email": "Ölaf_%@X.org"},
        {"id": DI, "email": "ölafx%@x.org"},
        {"id": EVE, "email": "Ålaf_%@x.org"},
    )
    assert found(database_url, "ÖLAF_%@x.org", "Ölaf_%@x.org", "ölafX%@x.org") == [
        "AmbiguousUser: 3 users have the address 'ÖLAF_%@x.org' in different case: "
        f"Ölaf_%@X.org (id {BEN}), Ölaf_%@x.org (id {CY}), ölaf_%@x.org (id {ANN}); name one "
        "by its id or its exact address (usersctl doctor lists such duplicates)",
        "Ölaf_%@x.org",
        "ölafx%@x.org",
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_finds_an_address_too_long_for_a_pattern_by_its_length(database_url: str) -> None:
    long_address = "ü" + "a" * 20_000 + "@x.org"
    make_table(database_url).seed_specs(
        {"id": ANN, "email": long_address}, {"id": BEN, "email": "ü" + "b" * 20_000 + "@x.org"}
    )
    assert found(database_url, long_address.upper()) == [long_address]


def test_several_refs_find_each_user_once_in_order(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"id": ANN, "email": "ann@x.org"}, {"id": BEN, "email": "ben@x.org"}
    )

    async def work(ctx: UserContext) -> Any:
        users, missing = await find_users(
            ctx, ["nobody@x.org", "BEN@x.org", ANN, " x@x.org", "ann@x.org"], missing_ok=True
        )
        every = await find_every_user(ctx, [BEN, "ann@x.org", "ben@x.org"])
        return [user.email for user in users], missing, [user.email for user in every]

    assert reading(database_url, work) == (
        ["ben@x.org", "ann@x.org"],
        ["nobody@x.org", " x@x.org"],
        ["ben@x.org", "ann@x.org"],
    )


def test_refs_that_match_nobody_are_named(database_url: str) -> None:
    make_table(database_url).seed_specs({"id": ANN, "email": "ann@x.org"})

    async def work(ctx: UserContext) -> list[str]:
        messages = []
        for call in (
            lambda: find_users(ctx, ["ann@x.org", " nobody@x.org "]),
            lambda: find_every_user(ctx, ["ann@x.org", " nobody@x.org "]),
            lambda: find_every_user(ctx, [" x@x.org", "ann@x.org", "y@x.org "]),
        ):
            with pytest.raises(UserNotFound) as error:
                await call()
            messages.append(str(error.value))
        return messages

    assert reading(database_url, work) == [
        "no user 'nobody@x.org'",
        "no user 'nobody@x.org'",
        "no users 'x@x.org', 'y@x.org'",
    ]


# user_filters and UserFilters.apply --------------------------------------------------------------


def test_user_filters_keeps_what_was_given_in_the_forms_lookups_use() -> None:
    assert user_filters(
        is_active=True,
        is_superuser=False,
        is_verified=True,
        search="an",
        emails=[" Ann@x.org ", "ÜLF@BÜCHER.example", "bäd@nodot"],
        email_domain="BÜCHER.Example",
        ids=[" 7", BEN],
        created_after="2024-01-01",
        created_before="2024-02-01",
    ) == UserFilters(
        is_active=True,
        is_superuser=False,
        is_verified=True,
        search="an",
        emails=("Ann@x.org", "ÜLF@bücher.example", "bäd@nodot"),
        email_domain=("bücher.example", "xn--bcher-kva.example"),
        ids=(" 7", BEN),
        created_after="2024-01-01",
        created_before="2024-02-01",
    )
    assert user_filters() == UserFilters()


def test_an_email_filter_without_an_at_sign_is_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        user_filters(emails=["ann@x.org", " nobody "])
    assert str(error.value) == "--email 'nobody': not an email address"


def test_each_flag_selects_the_users_with_that_value(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"email": "active@x.org"},
        {"email": "off@x.org", "is_active": False},
        {"email": "super@x.org", "is_superuser": True},
        {"email": "verified@x.org", "is_verified": True},
    )
    assert selected(
        database_url,
        UserFilters(is_active=False),
        UserFilters(is_superuser=True),
        UserFilters(is_verified=True),
        UserFilters(is_active=True, is_superuser=False, is_verified=False),
        UserFilters(),
    ) == [
        ["off@x.org"],
        ["super@x.org"],
        ["verified@x.org"],
        ["active@x.org"],
        ["active@x.org", "off@x.org", "super@x.org", "verified@x.org"],
    ]


def test_search_is_a_substring_in_any_case_wildcards_taken_literally(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"email": "ann@x.org"},
        {"email": "Bob_1@x.org"},
        {"email": "bobx1@x.org"},
        {"email": "50%off@x.org"},
        {"email": "50xoff@x.org"},
        {"email": "back\\slash@x.org"},
        {"email": "backslash@x.org"},
    )
    assert selected(
        database_url,
        UserFilters(search="NN@"),
        UserFilters(search="b_1"),
        UserFilters(search="0%o"),
        UserFilters(search="k\\s"),
        UserFilters(search=""),
    ) == [
        ["ann@x.org"],
        ["Bob_1@x.org"],
        ["50%off@x.org"],
        ["back\\slash@x.org"],
        sorted(
            [
                "ann@x.org",
                "Bob_1@x.org",
                "bobx1@x.org",
                "50%off@x.org",
                "50xoff@x.org",
                "back\\slash@x.org",
                "backslash@x.org",
            ]
        ),
    ]


def test_exact_addresses_in_any_case_within_ascii_and_beyond(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"email": "ann@x.org"},
        {"email": "Ben@x.org"},
        {"email": "éva@x.org"},
        {"email": "ωmega@x.org"},
    )
    assert selected(
        database_url,
        UserFilters(emails=("ANN@x.org",)),
        UserFilters(emails=("ÉVA@x.org",)),
        UserFilters(emails=("ben@X.ORG", "Éva@x.org", "ΩMEGA@x.org")),
        UserFilters(emails=("nobody@x.org", "ünknown@x.org")),
    ) == [
        ["ann@x.org"],
        ["éva@x.org"],
        ["Ben@x.org", "éva@x.org", "ωmega@x.org"],
        [],
    ]


def test_a_domain_matches_its_exact_end_in_either_form(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"email": "ann@x_y.org"},
        {"email": "ben@xzy.org"},
        {"email": "cy@X_Y.ORG"},
        {"email": "di@sub.x_y.org.evil"},
        {"email": "eve@bücher.example"},
        {"email": "fay@XN--BCHER-KVA.example"},
    )
    assert selected(
        database_url,
        UserFilters(email_domain=("x_y.org", "x_y.org")),
        UserFilters(email_domain=("bücher.example", "xn--bcher-kva.example")),
    ) == [
        ["ann@x_y.org", "cy@X_Y.ORG"],
        ["eve@bücher.example", "fay@XN--BCHER-KVA.example"],
    ]


def test_like_literal_escapes_the_wildcards_and_the_escape() -> None:
    assert _like_literal("a\\b%c_d") == "a\\\\b\\%c\\_d"


def test_ids_are_parsed_as_the_id_column_s_type(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"id": ANN, "email": "ann@x.org"},
        {"id": BEN, "email": "ben@x.org"},
        {"id": CY, "email": "cy@x.org"},
    )
    assert selected(database_url, UserFilters(ids=(ANN, f" {CY.upper()} "))) == [
        ["ann@x.org", "cy@x.org"]
    ]
    assert refused(database_url, UserFilters(ids=(ANN, " 7 "))) == "--id '7': not a valid UUID id"


def test_integer_ids_are_refused_when_not_integers(database_url: str) -> None:
    integer_table(database_url).seed("ann@x.org", "ben@x.org", "cy@x.org")
    assert selected(database_url, UserFilters(ids=(" 3", "1"))) == [["ann@x.org", "cy@x.org"]]
    assert refused(database_url, UserFilters(ids=("x",))) == "--id 'x': not a valid integer id"


def created_table(url: str) -> Database:
    """A user table with a ``created_at`` column: PostgreSQL's with the time zone, the others
    naive (UTC); users made either side of January's bounds, and one at an unknown time."""
    db = make_table(url)
    aware = not is_sqlite(url) and not is_mysql(url)
    naive = "DATETIME(6)" if is_mysql(url) else "TIMESTAMP"
    db.execute(
        f'ALTER TABLE "user" ADD COLUMN created_at {"TIMESTAMP WITH TIME ZONE" if aware else naive}'
    )

    def at(text: str) -> dt.datetime:
        moment = dt.datetime.fromisoformat(text)
        return moment.replace(tzinfo=dt.timezone.utc) if aware else moment

    db.seed_specs(
        {"email": "dec@x.org", "created_at": at("2023-12-31T23:59:59.999999")},
        {"email": "midnight@x.org", "created_at": at("2024-01-01T00:00:00")},
        {"email": "jan@x.org", "created_at": at("2024-01-31T12:00:00")},
        {"email": "feb@x.org", "created_at": at("2024-02-01T00:00:00")},
        {"email": "unknown@x.org", "created_at": None},
    )
    return db


def test_created_after_is_inclusive_and_before_exclusive(database_url: str) -> None:
    created_table(database_url)
    assert selected(
        database_url,
        UserFilters(created_after="2024-01-01", created_before="2024-02-01"),
        UserFilters(created_after="2024-01-01"),
        UserFilters(created_before="2024-01-01"),
        UserFilters(created_after="2024-01-31T12:00:00Z", search="jan"),
    ) == [
        ["jan@x.org", "midnight@x.org"],
        ["feb@x.org", "jan@x.org", "midnight@x.org"],
        ["dec@x.org"],
        ["jan@x.org"],
    ]


def test_created_bounds_that_are_no_iso_dates_are_refused(database_url: str) -> None:
    created_table(database_url)
    reason = "is not a date and time in ISO 8601"
    assert refused(database_url, UserFilters(created_after="last week")) == (
        "--created-after 'last week': not an ISO 8601 date or date and time for created_at "
        f"('last week' {reason})"
    )
    assert refused(database_url, UserFilters(created_before="null")) == (
        f"--created-before 'null': not an ISO 8601 date or date and time for created_at ('null' {reason})"
    )
    assert refused(database_url, UserFilters(created_after="2024-01-01", created_before="x")) == (
        f"--created-before 'x': not an ISO 8601 date or date and time for created_at ('x' {reason})"
    )


def test_a_moment_is_read_as_its_column_compares_it() -> None:
    column = Column("created_on", DateTime, nullable=True)
    assert _moment(column, "--created-after", "2024-01-02T03:04:05") == dt.datetime(
        2024, 1, 2, 3, 4, 5
    )
    with pytest.raises(InvalidInput) as error:
        _moment(column, "--created-after", "null")
    assert str(error.value) == (
        "--created-after 'null': not an ISO 8601 date or date and time for created_on "
        "('null' is not a date and time in ISO 8601)"
    )


def test_the_creation_column_is_the_one_date_and_time_named_so() -> None:
    assert creation_column(declared(Stamped)).name == "date_joined"
    for user_class, message in (
        (
            TwiceStamped,
            "the user table has several creation time columns (created_at, created_on); "
            "--created-after/--created-before cannot tell which one to use",
        ),
        (
            Unstamped,
            "the user table has no creation time column (a date-and-time column named "
            "created_at, created, date_joined, created_on); created is VARCHAR(20), not a date "
            "and time; created_on is INTEGER, not a date and time",
        ),
        (
            UuidUser,
            "the user table has no creation time column (a date-and-time column named "
            "created_at, created, date_joined, created_on)",
        ),
    ):
        with pytest.raises(InvalidInput) as error:
            creation_column(declared(user_class))
        assert str(error.value) == message


# list_users ----------------------------------------------------------------------------------------


def listing(url: str, filters: UserFilters, limit: int, after: str | None = None) -> Page:
    async def work(ctx: UserContext) -> Page:
        return await list_users(ctx, filters, limit=limit, after=after)

    return reading(url, work)


def pages(
    url: str, limit: int, filters: UserFilters | None = None
) -> list[tuple[list[str], int, str | None]]:
    """Every page from the first, following ``next_after``: (emails, total, next_after)."""
    seen: list[tuple[list[str], int, str | None]] = []
    after = None

    async def work(ctx: UserContext) -> None:
        nonlocal after
        while len(seen) < 10:
            page = await list_users(ctx, filters or UserFilters(), limit=limit, after=after)
            seen.append(([user["email"] for user in page.users], page.total, page.next_after))
            if page.next_after is None:
                return
            after = page.next_after

    reading(url, work)
    return seen


def test_a_page_holds_the_users_columns_in_order_of_the_lowercased_email(database_url: str) -> None:
    make_table(database_url).seed_specs(
        {"id": BEN, "email": "d@x.org"},
        {"id": ANN, "email": "B@x.org", "is_superuser": True},
        {"id": CY, "email": "a@x.org"},
        {"id": DI, "email": "c@x.org"},
    )
    page = listing(database_url, UserFilters(), 3)
    assert page == Page(
        [
            {
                "id": uuid.UUID(CY),
                "email": "a@x.org",
                "is_active": True,
                "is_superuser": False,
                "is_verified": False,
            },
            {
                "id": uuid.UUID(ANN),
                "email": "B@x.org",
                "is_active": True,
                "is_superuser": True,
                "is_verified": False,
            },
            {
                "id": uuid.UUID(DI),
                "email": "c@x.org",
                "is_active": True,
                "is_superuser": False,
                "is_verified": False,
            },
        ],
        4,
        "c@x.org",
    )


def test_pages_follow_the_cursor_and_count_every_match(database_url: str) -> None:
    make_table(database_url).seed("d@x.org", "B@x.org", "a@x.org", "e@x.org", "c@x.org", "f@y.org")
    assert pages(database_url, 2) == [
        (["a@x.org", "B@x.org"], 6, "B@x.org"),
        (["c@x.org", "d@x.org"], 6, "d@x.org"),
        (["e@x.org", "f@y.org"], 6, None),
    ]
    domain = UserFilters(email_domain=("x.org", "x.org"))
    assert pages(database_url, 5, domain) == [
        (["a@x.org", "B@x.org", "c@x.org", "d@x.org", "e@x.org"], 5, None)
    ]
    assert pages(database_url, 4, domain) == [
        (["a@x.org", "B@x.org", "c@x.org", "d@x.org"], 5, "d@x.org"),
        (["e@x.org"], 5, None),
    ]
    assert listing(database_url, UserFilters(), 2, after="B@X.ORG") == listing(
        database_url, UserFilters(), 2, after="b@x.org"
    )
    assert pages(database_url, 3, UserFilters(search="nobody")) == [([], 0, None)]


def runs_table(url: str) -> Database:
    """A table without the unique key: a run of three addresses that differ only in case (ids
    in an order of their own), between users of other addresses."""
    db = make_table(url, unique_key=False)
    db.seed_specs(
        {"id": FAY, "email": "a@x.org"},
        {"id": CY, "email": "Dup@x.org"},
        {"id": ANN, "email": "dup@x.org"},
        {"id": BEN, "email": "DUP@x.org"},
        {"id": EVE, "email": "b@x.org"},
        {"id": DI, "email": "e@x.org"},
    )
    return db


RUN = ["dup@x.org", "DUP@x.org", "Dup@x.org"]  # by id: ANN, BEN, CY


def test_a_page_ends_before_a_run_of_case_duplicates(database_url: str) -> None:
    runs_table(database_url)
    assert pages(database_url, 3) == [
        (["a@x.org", "b@x.org"], 6, "b@x.org"),
        ([*RUN], 6, "Dup@x.org"),
        (["e@x.org"], 6, None),
    ]
    assert pages(database_url, 4) == [
        (["a@x.org", "b@x.org"], 6, "b@x.org"),
        ([*RUN, "e@x.org"], 6, None),
    ]


def test_a_run_that_fills_the_page_is_taken_whole(database_url: str) -> None:
    runs_table(database_url)
    assert pages(database_url, 1) == [
        (["a@x.org"], 6, "a@x.org"),
        (["b@x.org"], 6, "b@x.org"),
        ([*RUN], 6, "Dup@x.org"),
        (["e@x.org"], 6, None),
    ]
    assert pages(database_url, 2, UserFilters(search="u")) == [([*RUN], 3, None)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_run_is_told_by_the_lowercased_address(database_url: str) -> None:
    """PostgreSQL uppercases the dotless i (U+0131) to ``I``: two addresses equal in upper case
    but not in lower case are no run."""
    dotless = "\u0131@x.org"
    make_table(database_url, unique_key=False).seed("i@x.org", dotless)
    assert pages(database_url, 1) == [(["i@x.org"], 2, "i@x.org"), ([dotless], 2, None)]


def test_the_order_adds_the_id_where_no_unique_key_settles_it() -> None:
    model = declared(NumberedUser)

    def compiled(order: list[Any]) -> list[str]:
        return [str(part.compile(dialect=sqlite.dialect())) for part in order]

    assert compiled(user_order(model)) == ["lower(numbered.email)", "numbered.id"]
    assert compiled(user_order(model, unique_key=True)) == ["lower(numbered.email)"]


def test_the_unique_email_key_is_found(database_url: str) -> None:
    make_table(database_url)
    assert reading(database_url, has_unique_email_key) is True


def test_no_unique_email_key_is_found_on_a_table_without_it(database_url: str) -> None:
    make_table(database_url, unique_key=False)
    assert reading(database_url, has_unique_email_key) is False


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_the_unique_email_key_is_looked_for_in_the_table_s_schema(database_url: str) -> None:
    make_table(database_url, unique_key=False)
    execute(
        database_url,
        "CREATE SCHEMA other",
        'CREATE TABLE other."user" (id UUID PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)",
        'CREATE UNIQUE INDEX ix_user_email_lower ON other."user" (lower(email))',
    )
    try:
        assert reading(database_url, has_unique_email_key, table="other.user") is True
    finally:  # the fixture empties the public schema only
        execute(database_url, "DROP SCHEMA other CASCADE")


# A joined-table subclass ---------------------------------------------------------------------------


def joined_tables(url: str) -> None:
    """The app's ``Member(Account)``: the account table holds the email, the member table the
    rest; a staff account is no member."""
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT" if is_sqlite(url) else "SERIAL PRIMARY KEY"
    if is_mysql(url):
        serial = "INTEGER PRIMARY KEY AUTO_INCREMENT"
    execute(
        url,
        f"CREATE TABLE account (id {serial}, email VARCHAR(320) NOT NULL)",
        "CREATE TABLE member (id INTEGER PRIMARY KEY REFERENCES account (id), "
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, nickname VARCHAR(30))",
        "INSERT INTO account (email) VALUES ('ben@x.org'), ('staff@x.org'), ('Ann@x.org')",
        "INSERT INTO member (id, hashed_password, is_active, is_superuser, is_verified, nickname) "
        "VALUES (1, 'h', true, false, false, 'Ben'), (3, 'h', true, true, false, 'Ann')",
    )


def test_a_joined_table_subclass_lists_the_parent_s_columns_too(database_url: str) -> None:
    joined_tables(database_url)
    first = listing(database_url, UserFilters(), 1)
    assert first == Page(
        [
            {
                "id": 3,
                "email": "Ann@x.org",
                "is_active": True,
                "is_superuser": True,
                "is_verified": False,
                "nickname": "Ann",
            }
        ],
        2,
        "Ann@x.org",
    )
    assert listing(database_url, UserFilters(is_superuser=False), 1, after="ann@x.org") == Page(
        [
            {
                "id": 1,
                "email": "ben@x.org",
                "is_active": True,
                "is_superuser": False,
                "is_verified": False,
                "nickname": "Ben",
            }
        ],
        1,
        None,
    )
