"""The operations a person asks for: find, create, update, (de)activate, delete and list users.

Each works inside the caller's transaction and raises the library's exceptions; the caller
commits (or rolls back, for a dry run). Nothing here knows about the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Select, Table, func, or_, select
from sqlalchemy.exc import IntegrityError, MultipleResultsFound
from sqlalchemy.ext.asyncio import AsyncSession

from usersctl.db import SQLAlchemyUserDatabase
from usersctl.email_case import (
    case_key,
    fold_case,
    folds_beyond_ascii,
    index_key,
    spelling_pattern,
)
from usersctl.emails import InvalidEmail, normalize_email
from usersctl.engine import (
    DEFAULT_CONNECT_TIMEOUT,
    check_sqlite_file,
    create_engine,
    session_factory,
)
from usersctl.errors import (
    AmbiguousUser,
    CheckFailed,
    ConstraintConflict,
    InvalidInput,
    LastSuperuser,
    UserAlreadyExists,
    UserNotFound,
)
from usersctl.fields import INT64, type_name
from usersctl.models import (
    UserModel,
    load_user_model,
    reflect_user_model,
    require_table,
    require_writable,
)

if TYPE_CHECKING:
    from usersctl.references import DeletePlan, DeleteRules, ReferenceGraph

if TYPE_CHECKING:
    from usersctl.hash_choice import HashChoice
    from usersctl.passwords import Hashing

UserDB = SQLAlchemyUserDatabase[Any, Any]


@dataclass(frozen=True)
class UserContext:
    """An open session, the adapter over it, and the user model it works with."""

    session: AsyncSession
    db: UserDB
    model: UserModel
    #: MySQL/MariaDB: the AUTO_INCREMENT counters a dry run read (``peek_next_ids``), put back
    #: when the session is over (see ``_restore_counters``).
    peeked: list[NextIds] = field(default_factory=list)


@asynccontextmanager
async def open_users(
    url: str,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    write: bool = False,
    model_path: str | None = None,
    table: str | None = None,
) -> AsyncIterator[UserContext]:
    """Open one session on ``url``, read the user table's structure, and dispose of it all after.

    ``write=True`` takes SQLite's write lock when the transaction starts, so a check and the write
    that follows it cannot be interleaved with another process. ``model_path``
    (``module.path:ClassName``) uses the app's own model instead of reading the table's structure;
    ``table`` (``--table``) names the user table instead of finding it by its columns.
    """
    from usersctl.engine import normalize_url

    loaded = load_user_model(model_path, table) if model_path else None
    parsed = normalize_url(url)
    check_sqlite_file(parsed)
    engine = create_engine(
        parsed,
        connect_timeout=connect_timeout,
        sqlite_begin="BEGIN IMMEDIATE" if write else "BEGIN",
        sqlite_wal=write,  # opening a file only to read it must not change its journal mode
    )
    ctx: UserContext | None = None
    try:
        async with session_factory(engine)() as session:
            try:
                if loaded is None:
                    model = await session.run_sync(
                        lambda s: reflect_user_model(s.connection(), table)
                    )
                    if write:
                        require_writable(model)
                else:
                    model = loaded
                    await session.run_sync(lambda s: require_table(s.connection(), loaded))
                model = dataclasses.replace(model, dialect=engine.dialect)
                ctx = UserContext(session, SQLAlchemyUserDatabase(session, model.user_class), model)
                yield ctx
            except (asyncio.CancelledError, KeyboardInterrupt):
                # Stopped mid-statement (Ctrl-C), the connection may be half-way through a
                # message: a polite ROLLBACK would wait forever for a server that is waiting for
                # the rest. Close the socket instead; the server rolls back on its own.
                await session.invalidate()
                raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        ctx = None  # stopped: no more statements
        raise
    finally:
        if ctx is not None and ctx.peeked:  # the session is closed: its transaction is over
            await _restore_counters(engine, ctx.peeked)
        await engine.dispose()


# Reading -------------------------------------------------------------------------------------


def choose_columns(names: Sequence[str] | None, available: Sequence[str]) -> list[str]:
    """The fields ``names`` (``--columns``) chooses, in its order; all of ``available`` for
    None. An unknown or repeated name raises ``InvalidInput``, naming the fields there are."""
    if names is None:
        return list(available)
    listed = ", ".join(available)
    for index, name in enumerate(names):
        if name not in available:
            what = f"unknown column {name!r}" if name else "an empty column name"
            raise InvalidInput(f"--columns: {what}; the columns are {listed}")
        if name in names[:index]:
            raise InvalidInput(f"--columns: {name!r} is named twice")
    return list(names)


def user_row(model: UserModel, user: Any) -> dict[str, Any]:
    """The user's columns as a dict, without ``hashed_password``."""
    return {name: getattr(user, model.attribute(name)) for name in model.columns}


def parse_user_id(model: UserModel, raw: str) -> Any:
    """Convert ``raw`` to the id column's type, or raise ``InvalidInput``."""
    text = raw.strip()
    python_type: type[Any] | None
    try:
        python_type = model.table.c.id.type.python_type
    except NotImplementedError:
        python_type = None
    try:
        if model.id_is_uuid or python_type is uuid.UUID:
            return uuid.UUID(text)
        if python_type is int:
            if not text.lstrip("-").isdigit() or len(text) > 20 or int(text) not in INT64:
                raise ValueError(text)
            return int(text)
    except ValueError:
        kind = "UUID" if model.id_is_uuid else "integer"
        raise InvalidInput(f"{raw!r} is neither an email address nor a valid {kind} id") from None
    return text


async def find_user(ctx: UserContext, email_or_id: str) -> Any:
    """The user with this email (case-insensitive) or id; raises ``UserNotFound``."""
    if "@" in email_or_id:
        email = email_or_id.strip()
        if not email.isascii():
            # Unicode needs the normal form (NFC, IDNA domain); for ASCII, lower() on both sides
            # of the lookup already does what normalising would, without loading the validator.
            with contextlib.suppress(InvalidEmail):  # stored before today's rules: still matches
                email = normalize_email(email)
        user = await find_by_email(ctx, email, typed=email_or_id.strip())
    else:
        user = await ctx.db.get(parse_user_id(ctx.model, email_or_id))
    if user is None:
        raise UserNotFound(f"no user {email_or_id.strip()!r}")
    return user


async def find_by_email(ctx: UserContext, email: str, *, typed: str | None = None) -> Any:
    """The user with this address in any case, or None.

    A table made without usersctl's unique ``lower(email)`` index may hold the address more than
    once in different case (and on SQLite, whose index folds only ASCII letters, in different
    case of other letters); then the one stored exactly as given (``email``, or ``typed``, the
    address before normalising lowercased its domain) is meant, and with none such,
    ``AmbiguousUser`` names them all with their ids."""
    model = ctx.model
    stored = model.column("email")
    rows: Sequence[Any]
    if folds_beyond_ascii(ctx.session.get_bind().dialect.name, email):
        rows = await _spelled_alike(ctx, email)
    else:
        try:
            return await ctx.db.get_by_email(email)
        except MultipleResultsFound:
            pass
        rows = (
            await ctx.session.execute(
                select(model.column("id"), stored)
                .select_from(model.selectable)
                .where(index_key(stored) == index_key(email))
                .order_by(stored)
            )
        ).all()
    if len(rows) <= 1:
        return await ctx.db.get(rows[0].id) if rows else None
    exact = [row.id for row in rows if row.email in (email, typed)]
    if len(exact) == 1:
        return await ctx.db.get(exact[0])
    listed = ", ".join(f"{row.email} (id {row.id})" for row in rows)
    raise AmbiguousUser(
        f"{len(rows)} users have the address {email!r} in different case: {listed}; "
        "name one by its id or its exact address (usersctl doctor lists such duplicates)"
    )


async def _spelled_alike(ctx: UserContext, email: str) -> list[Any]:
    """On SQLite, the users whose address equals ``email`` under ``fold_case`` (letters beyond
    ASCII in any case): no index serves that, so the table is scanned, by a LIKE that keeps
    only the few candidates without calling into Python for each row."""
    model = ctx.model
    stored = model.column("email")
    pattern = spelling_pattern(email)
    narrowed = (
        stored.like(pattern, escape="\\")
        if pattern is not None
        else func.length(stored) == len(email)
    )
    candidates = await ctx.session.execute(
        select(model.column("id").label("id"), stored.label("email"))
        .select_from(model.selectable)
        .where(narrowed)
        .order_by(stored)
    )
    key = fold_case(email)
    return [row for row in candidates if isinstance(row.email, str) and fold_case(row.email) == key]


async def find_users(
    ctx: UserContext, refs: Sequence[str], *, missing_ok: bool = False
) -> tuple[list[Any], list[str]]:
    """The users named by ``refs`` (each once, in order) and the refs that matched nobody."""
    found: dict[Any, Any] = {}
    missing: list[str] = []
    for ref in refs:
        try:
            user = await find_user(ctx, ref)
        except UserNotFound:
            if not missing_ok:
                raise
            missing.append(ref)
            continue
        found.setdefault(user.id, user)
    return list(found.values()), missing


async def find_every_user(ctx: UserContext, refs: Sequence[str]) -> list[Any]:
    """The users named by ``refs`` (each once, in order); raises ``UserNotFound`` naming every
    ref that matched nobody."""
    found, missing = await find_users(ctx, refs, missing_ok=True)
    if missing:
        names = ", ".join(repr(ref.strip()) for ref in missing)
        raise UserNotFound(f"no user {names}" if len(missing) == 1 else f"no users {names}")
    return found


#: The names a column recording when a user was created goes by (a date-and-time column).
CREATION_COLUMNS = ("created_at", "created", "date_joined", "created_on")


def creation_column(model: UserModel) -> Column[Any]:
    """The user table's creation time: its one date-and-time column named as in
    ``CREATION_COLUMNS``; raises ``InvalidInput`` when it has none, or several."""
    from sqlalchemy.types import DateTime, TypeDecorator

    named = [column for column in model.all_columns if column.name in CREATION_COLUMNS]
    timed = []
    for column in named:
        kind = column.type
        while isinstance(kind, TypeDecorator):
            kind = kind.impl_instance
        if isinstance(kind, DateTime):
            timed.append(column)
    if len(timed) == 1:
        return timed[0]
    if timed:
        names = ", ".join(column.name for column in timed)
        raise InvalidInput(
            f"the user table has several creation time columns ({names}); "
            "--created-after/--created-before cannot tell which one to use"
        )
    others = "".join(
        f"; {column.name} is {type_name(column.type)}, not a date and time" for column in named
    )
    raise InvalidInput(
        "the user table has no creation time column (a date-and-time column named "
        f"{', '.join(CREATION_COLUMNS)}){others}"
    )


def _like_literal(text: str) -> str:
    """``text`` with LIKE's wildcards escaped (escape character ``\\``)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class UserFilters:
    """What ``list-users`` and ``export-users`` select, every condition given at once (AND);
    ``None`` or empty means any. Made with ``user_filters``, which checks what needs no
    database; ``apply`` checks the rest (ids and times, against the table's types)."""

    is_active: bool | None = None
    is_superuser: bool | None = None
    is_verified: bool | None = None
    #: A substring of the email, in any case.
    search: str | None = None
    #: Exact addresses, in any case (the lower(email) rule of lookups).
    emails: tuple[str, ...] = ()
    #: The domain of the address, normalised, and its ASCII (IDNA) form.
    email_domain: tuple[str, str] | None = None
    #: User ids, as given (parsed by ``apply`` as the id column's type).
    ids: tuple[str, ...] = ()
    #: ISO 8601 dates or times: created at or after ``created_after``, before ``created_before``.
    created_after: str | None = None
    created_before: str | None = None

    def apply(self, model: UserModel, statement: Select[Any]) -> Select[Any]:
        """``statement`` (which selects from ``model.selectable``) narrowed to these users."""
        email = model.column("email")
        for name in ("is_active", "is_superuser", "is_verified"):
            wanted = getattr(self, name)
            if wanted is not None:
                statement = statement.where(model.column(name).is_(wanted))
        if self.search:
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            # case_key: lower(); on SQLite, for letters beyond ASCII too (as PostgreSQL's).
            pattern = case_key(f"%{escaped}%")
            statement = statement.where(case_key(email).like(pattern, escape="\\"))
        key = index_key(email)
        if self.emails:
            # lower(email) = lower(given) for each: the lower(email) index finds them. An
            # address beyond ASCII is compared by case_key, as lookups do (on SQLite, a scan).
            plain = [given for given in self.emails if given.isascii()]
            other = [given for given in self.emails if not given.isascii()]
            conditions = [key.in_([index_key(given) for given in plain])] if plain else []
            if other:
                conditions.append(case_key(email).in_([case_key(given) for given in other]))
            statement = statement.where(or_(*conditions))
        if self.email_domain is not None:
            # Ends with @domain: a scan (no index serves a suffix), after the other conditions.
            statement = statement.where(
                or_(
                    *(
                        case_key(email).like(f"%@{_like_literal(domain)}", escape="\\")
                        for domain in dict.fromkeys(self.email_domain)
                    )
                )
            )
        if self.ids:
            ids = [_filter_id(model, raw) for raw in self.ids]
            statement = statement.where(model.column("id").in_(ids))
        if self.created_after is not None or self.created_before is not None:
            column = creation_column(model)
            if self.created_after is not None:
                since = _moment(column, "--created-after", self.created_after)
                statement = statement.where(column >= since)
            if self.created_before is not None:
                until = _moment(column, "--created-before", self.created_before)
                statement = statement.where(column < until)
        return statement


def _filter_id(model: UserModel, raw: str) -> Any:
    try:
        return parse_user_id(model, raw)
    except InvalidInput:
        kind = "UUID" if model.id_is_uuid else "integer"
        raise InvalidInput(f"--id {raw.strip()!r}: not a valid {kind} id") from None


def _moment(column: Column[Any], option: str, text: str) -> Any:
    """An ISO 8601 date or date and time as ``column`` compares it."""
    from usersctl.fields import converter_for

    try:
        return converter_for(column, textual=False)(text)
    except InvalidInput as exc:
        reason = str(exc).removeprefix(f"field {column.name!r}: ")
        raise InvalidInput(
            f"{option} {text!r}: not an ISO 8601 date or date and time for {column.name} ({reason})"
        ) from None


def user_filters(
    *,
    is_active: bool | None = None,
    is_superuser: bool | None = None,
    is_verified: bool | None = None,
    search: str | None = None,
    emails: Sequence[str] = (),
    email_domain: str | None = None,
    ids: Sequence[str] = (),
    created_after: str | None = None,
    created_before: str | None = None,
) -> UserFilters:
    """``UserFilters`` from what a person typed: the domain normalised as addresses are, each
    address as lookups take it; raises ``InvalidInput`` for a domain no address could have."""
    from usersctl.emails import normalize_domain

    return UserFilters(
        is_active=is_active,
        is_superuser=is_superuser,
        is_verified=is_verified,
        search=search,
        emails=tuple(_lookup_form(email) for email in emails),
        email_domain=normalize_domain(email_domain) if email_domain is not None else None,
        ids=tuple(ids),
        created_after=created_after,
        created_before=created_before,
    )


def _lookup_form(email: str) -> str:
    """An address as ``find_user`` looks it up: stripped, and normalised when not ASCII."""
    value = email.strip()
    if "@" not in value:
        raise InvalidInput(f"--email {value!r}: not an email address")
    if not value.isascii():
        with contextlib.suppress(InvalidEmail):
            value = normalize_email(value)
    return value


@dataclass(frozen=True)
class Page:
    """One page of users, how many match in all, and the cursor of the next page (if any)."""

    users: list[dict[str, Any]]
    total: int
    next_after: str | None


def user_order(model: UserModel, *, unique_key: bool = False) -> list[Any]:
    """The order users are listed and exported in: the lowercased email, then the id, for
    addresses that differ only in case (in a table without the unique ``lower(email)`` index).
    ``unique_key`` says the table has that index: the id is left out, and the index alone
    serves the order (with the id, SQLite sorts each run of equal keys in a temporary B-tree).
    """
    key = index_key(model.column("email"))
    return [key] if unique_key else [key, model.column("id")]


async def has_unique_email_key(ctx: UserContext) -> bool:
    """Whether the user table has a valid unique index on ``lower(email)``."""
    from usersctl.schema import email_index_state

    table = ctx.model.table
    state = await ctx.session.run_sync(
        lambda s: email_index_state(s.connection(), table.name, table.schema)[0]
    )
    return bool(state == "ok")


#: The label of the order key in list_users' rows (a name no column has).
ORDER_KEY = "_usersctl_order_key"


async def list_users(
    ctx: UserContext, filters: UserFilters, *, limit: int, after: str | None = None
) -> Page:
    """Users in ``user_order``, from just after the email ``after`` (keyset paging).

    A page never ends between users whose addresses differ only in case (the cursor, an email,
    could not say where in such a run the next page starts): it ends before the run, or, when
    the run fills the page, takes the whole run."""
    table = ctx.model.table
    key = index_key(ctx.model.column("email"))
    # The run of addresses equal to the database is told apart in Python by their lowercase
    # (on MySQL/MariaDB, where the key is the email itself, its _ci collation ignores case).
    label = func.lower(ctx.model.column("email")).label(ORDER_KEY)
    order = user_order(ctx.model)
    if ctx.model.parent_tables:  # a joined-table subclass: the parents' columns too
        fields = select(*(ctx.model.column(name) for name in ctx.model.columns), label)
        statement = filters.apply(ctx.model, fields.select_from(ctx.model.selectable))
    else:
        statement = filters.apply(ctx.model, select(table, label))
    if after:
        statement = statement.where(key > index_key(after))
    statement = statement.order_by(*order)
    rows = [dict(row._mapping) for row in await ctx.session.execute(statement.limit(limit + 1))]
    more = len(rows) > limit
    page = rows[:limit]
    if more and page[-1][ORDER_KEY] == rows[limit][ORDER_KEY]:
        run_key = page[-1][ORDER_KEY]
        before_run = [row for row in page if row[ORDER_KEY] != run_key]
        if before_run:
            page = before_run
        else:
            run = await ctx.session.execute(statement.where(key == run_key))
            page = [dict(row._mapping) for row in run]
            rest = await ctx.session.execute(statement.where(key > run_key).limit(1))
            more = rest.first() is not None
    counting = select(func.count()).select_from(ctx.model.selectable)
    total_query = filters.apply(ctx.model, counting)
    total = int((await ctx.session.execute(total_query)).scalar_one())
    visible = [{name: row[name] for name in ctx.model.columns} for row in page]
    return Page(visible, total, page[-1]["email"] if more and page else None)


# Writing -------------------------------------------------------------------------------------


async def _email_taken(ctx: UserContext, email: str, *, other_than: Any = None) -> bool:
    try:
        existing = await find_by_email(ctx, email)
    except AmbiguousUser:
        return True  # held by two users at least: by someone other than ``other_than``
    return existing is not None and (other_than is None or existing.id != other_than)


async def _flush(ctx: UserContext, email: str, user: Any) -> None:
    from sqlalchemy import inspect as inspect_object

    # A failed flush expires the user: what it was to write is read now, to name a broken key.
    writing = dict(inspect_object(user).dict)
    try:
        await ctx.session.flush()
    except IntegrityError as exc:
        from usersctl.violations import UNIQUE, describe_violation

        violation = describe_violation(exc)
        if violation is None:
            email_taken = "email" in str(exc.orig).lower()
        else:
            email_taken = violation.kind == UNIQUE and "email" in violation.message
        if email_taken:
            raise UserAlreadyExists(f"a user with email {email!r} already exists") from None
        table = ctx.model.table
        values = {c.name: writing.get(ctx.model.attribute(c.name)) for c in table.columns}
        await name_violation(ctx, exc, [values])
        raise


async def name_violation(
    ctx: UserContext,
    exc: IntegrityError,
    rows: Sequence[dict[str, Any]],
    lines: Sequence[int] | None = None,
) -> None:
    """Name what SQLite refused without naming it, raising ``ConstraintConflict``: the foreign
    key that ``rows`` (values by column name) break, with the line of the first row that breaks
    it when ``lines`` are given, or the unique index on the columns it names. Rolls back the
    transaction to look; does nothing on PostgreSQL, whose errors name their constraint."""
    from usersctl.violations import (
        FOREIGN_KEY,
        UNIQUE,
        broken_reference,
        describe_violation,
        unique_constraint_name,
    )

    violation = describe_violation(exc)
    if ctx.session.get_bind().dialect.name != "sqlite" or violation is None:
        return
    table = ctx.model.table
    if violation.kind == FOREIGN_KEY:
        await ctx.session.rollback()
        broken = await ctx.session.run_sync(lambda s: broken_reference(s.connection(), table, rows))
        if broken is not None:
            message, index = broken
            at = f" (line {lines[index]})" if lines is not None else ""
            raise ConstraintConflict(f"refused by the database's {message}{at}")
    elif violation.kind == UNIQUE and violation.table == table.name and violation.columns:
        columns = violation.columns
        await ctx.session.rollback()
        name = await ctx.session.run_sync(
            lambda s: unique_constraint_name(s.connection(), table, columns)
        )
        if name is not None:
            where = ", ".join(f"{table.name}.{column}" for column in columns)
            raise ConstraintConflict(
                f"refused by the database's unique constraint {name} on {where}: another row "
                "already has that value"
            )


@dataclass(frozen=True)
class Created:
    """The outcome of ``create_user``: the user, and whether it was created now."""

    user: Any
    created: bool


async def create_user(
    ctx: UserContext,
    email: str,
    hashed_password: str,
    *,
    is_superuser: bool = False,
    is_verified: bool = False,
    is_active: bool = True,
    if_not_exists: bool = False,
    extra: dict[str, Any] | None = None,
    dry_run: bool = False,
) -> Created:
    """Add a user. An existing email (any case) raises ``UserAlreadyExists``, or with
    ``if_not_exists`` returns that user unchanged. ``extra`` holds other columns' values (by
    attribute); a NOT NULL column with no default that it leaves out raises ``InvalidInput``.
    The model's own defaults (a dataclass field's ``default_factory``, a column's ``default=``)
    fill the rest as the app's would. A ``dry_run`` (which the caller rolls back) takes no value
    from the id's sequence."""
    typed, email = email.strip(), normalize_email(email)
    try:
        existing = await find_by_email(ctx, email, typed=typed)
    except AmbiguousUser:
        raise UserAlreadyExists(f"a user with email {email!r} already exists") from None
    if existing is not None:
        if if_not_exists:
            return Created(existing, created=False)
        raise UserAlreadyExists(f"a user with email {existing.email!r} already exists")
    missing = ctx.model.missing_required(extra or {})
    if missing:
        raise InvalidInput(ctx.model.missing_required_reason(missing))
    values: dict[str, Any] = {
        "email": email,
        "hashed_password": hashed_password,
        "is_active": is_active,
        "is_superuser": is_superuser,
        "is_verified": is_verified,
        **(extra or {}),
    }
    id_key = ctx.model.attribute("id")
    upcoming = await peek_next_ids(ctx) if dry_run and values.get(id_key) is None else None
    if upcoming is not None:
        values[id_key] = upcoming.take()
    user = ctx.model.new_user(values)  # its constructor fills the app's defaults
    ctx.session.add(user)
    if upcoming is not None and upcoming.always:
        connection = await ctx.session.connection()
        with overriding_system_value(connection.sync_connection, upcoming.table):
            await _flush(ctx, email, user)
    else:
        await _flush(ctx, email, user)
    await ctx.session.refresh(user)
    return Created(user, created=True)


@dataclass
class NextIds:
    """The ids PostgreSQL's sequence will give the next new users, read without taking any:
    ``nextval`` is never rolled back, so a dry run that let the database draw ids would take them
    from the app. A dry run inserts with these instead, which are what a real run would get (also
    when one is taken already, so it fails as the real run would)."""

    next_id: int
    step: int
    #: The id is ``GENERATED ALWAYS``: an insert that gives it needs OVERRIDING SYSTEM VALUE.
    always: bool
    #: The table whose id the sequence fills: the user table, or the parent table of a
    #: joined-table subclass, which gives the id to the user table.
    table: Table
    #: MySQL/MariaDB: the table's AUTO_INCREMENT before the dry run.
    counter_before: int | None = None

    def take(self) -> int:
        taken = self.next_id
        self.next_id += self.step
        return taken


async def peek_next_ids(ctx: UserContext) -> NextIds | None:
    """Where the id's sequence stands (see ``NextIds``); None when no sequence gives the ids
    (SQLite, whose counter a rollback undoes; ids that are not integers) or it cannot be read.

    The sequence is read directly, else (a role with USAGE on it but not SELECT) through
    ``pg_sequence_last_value``, with its increment and start from the catalogue."""
    from sqlalchemy import Integer
    from sqlalchemy import text as sql_text
    from sqlalchemy.exc import DBAPIError

    dialect = ctx.session.bind.dialect
    owner = (*ctx.model.parent_tables, ctx.model.table)[0]  # the root of a hierarchy
    column = next(iter(owner.primary_key.columns), None)
    if column is None or not isinstance(column.type, Integer):
        return None
    if dialect.name == "mysql":
        peeked = await _peek_auto_increment(ctx, owner)
        if peeked is not None:
            ctx.peeked.append(peeked)
        return peeked
    if dialect.name != "postgresql":
        return None
    table = dialect.identifier_preparer.format_table(owner)
    try:
        async with ctx.session.begin_nested():
            sequence, identity = (
                await ctx.session.execute(
                    sql_text(
                        "SELECT pg_get_serial_sequence(:table, :column), CAST(a.attidentity AS text) "
                        "FROM pg_attribute a WHERE a.attrelid = CAST(:table AS regclass) "
                        "AND a.attname = :column"
                    ),
                    {"table": table, "column": column.name},
                )
            ).one()
            if sequence is None:
                return None
            step, start, last = (
                await ctx.session.execute(
                    sql_text(
                        "SELECT seqincrement, seqstart, pg_sequence_last_value(seqrelid) "
                        "FROM pg_sequence WHERE seqrelid = CAST(:sequence AS regclass)"
                    ),
                    {"sequence": sequence},
                )
            ).one()
    except DBAPIError:
        return None
    next_id = int(start if last is None else last + step)
    try:
        async with ctx.session.begin_nested():
            # The name comes from the catalogue, quoted as it needs to be. Read directly, the
            # sequence also tells a value set by setval(..., false), which is handed out next.
            value, called = (
                await ctx.session.execute(sql_text(f"SELECT last_value, is_called FROM {sequence}"))
            ).one()
            next_id = int(value + step if called else value)
    except DBAPIError:
        pass  # no SELECT on the sequence: its last value, read above, tells the next
    return NextIds(next_id, int(step), always=identity == "a", table=owner)


#: The AUTO_INCREMENT of a MySQL/MariaDB table, and the counter's step and offset.
_AUTO_INCREMENT = (
    "SELECT AUTO_INCREMENT, @@auto_increment_increment, @@auto_increment_offset "
    "FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :table"
)


#: MySQL 8 caches information_schema's table statistics, AUTO_INCREMENT among them (a day, by
#: default): a session that reads the counter asks for them fresh.
FRESH_STATISTICS = "SET SESSION information_schema_stats_expiry = 0"


def fresh_statistics(dialect: Any) -> str | None:
    """The statement that makes ``dialect``'s server read information_schema's statistics
    fresh: MySQL's; None for MariaDB, which has no such cache (and no such variable)."""
    return None if dialect.is_mariadb else FRESH_STATISTICS


async def execute_if_known(connection: Any, statement: str) -> None:
    """Run ``statement`` on ``connection``; a server that does not know it (MySQL 5.7, MariaDB:
    no such variable) refuses it, and the session goes on as before."""
    from sqlalchemy import text as sql_text

    with contextlib.suppress(Exception):
        await connection.execute(sql_text(statement))


async def _read_auto_increment(connection: Any, table: Table) -> tuple[int, int, int] | None:
    from sqlalchemy import text as sql_text

    fresh = fresh_statistics(connection.dialect)
    if fresh is not None:
        await execute_if_known(connection, fresh)
    row = (await connection.execute(sql_text(_AUTO_INCREMENT), {"table": table.name})).first()
    if row is None or row[0] is None:
        return None  # no AUTO_INCREMENT column
    return int(row[0]), int(row[1]), int(row[2])


async def _peek_auto_increment(ctx: UserContext, table: Table) -> NextIds | None:
    """MySQL/MariaDB: InnoDB never gives back an AUTO_INCREMENT value, not even one drawn or
    passed over by an insert that is rolled back, so a dry run inserts with the ids the counter
    would give, and the counter is put back after it (``_restore_counters``)."""
    read = await _read_auto_increment(await ctx.session.connection(), table)
    if read is None:
        return None
    counter, step, offset = read
    next_id = counter
    if step > 1:  # the first value at or above the counter that the step and offset allow
        next_id = counter + (offset - counter) % step
    return NextIds(next_id, step, always=False, table=table, counter_before=counter)


async def _restore_counters(engine: Any, peeked: list[NextIds]) -> None:
    """After a dry run on MySQL/MariaDB: put each table's AUTO_INCREMENT back where it was,
    only where it stands exactly where the dry run's own inserts left it (no one else has drawn
    an id since), under a write lock so that no one draws one meanwhile. Never below an id in
    the table: InnoDB makes a lower value max(id) + 1. Best effort: without the privilege (ALTER,
    LOCK TABLES), or while the app holds the table, the dry run leaves a gap, as any rolled-back
    insert does there; it never gives an id out twice."""
    from sqlalchemy import text as sql_text
    from sqlalchemy.exc import DBAPIError

    for upcoming in peeked:
        if upcoming.counter_before is None or upcoming.next_id == upcoming.counter_before:
            continue  # no id taken
        name = engine.dialect.identifier_preparer.format_table(upcoming.table)
        try:
            async with engine.connect() as connection:
                await connection.execute(sql_text("SET SESSION lock_wait_timeout = 5"))
                await connection.execute(sql_text(f"LOCK TABLES {name} WRITE"))
                try:
                    read = await _read_auto_increment(connection, upcoming.table)
                    if read is not None and read[0] == upcoming.next_id:
                        await connection.execute(
                            sql_text(
                                f"ALTER TABLE {name} AUTO_INCREMENT = {upcoming.counter_before}"
                            )
                        )
                finally:
                    await connection.execute(sql_text("UNLOCK TABLES"))
        except DBAPIError:
            pass


@contextlib.contextmanager
def overriding_system_value(connection: Any, table: Table) -> Iterator[None]:
    """While inside, the INSERTs into ``table`` on ``connection`` (a sync Connection) give its
    ``GENERATED ALWAYS`` id themselves: PostgreSQL takes a given value only with ``OVERRIDING
    SYSTEM VALUE``, which SQLAlchemy does not write."""
    from sqlalchemy import event

    head = f"INSERT INTO {connection.dialect.identifier_preparer.format_table(table)} ("

    def rewrite(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> tuple[str, Any]:
        if statement.startswith(head):
            statement = with_overriding(statement)
        return statement, parameters

    event.listen(connection, "before_cursor_execute", rewrite, retval=True)
    try:
        yield
    finally:
        event.remove(connection, "before_cursor_execute", rewrite)


def with_overriding(statement: str) -> str:
    """``INSERT INTO t (columns) VALUES ...`` with ``OVERRIDING SYSTEM VALUE`` before VALUES."""
    columns, values, rest = statement.partition(") VALUES ")
    return f"{columns}) OVERRIDING SYSTEM VALUE VALUES {rest}" if values else statement


async def active_superusers(ctx: UserContext) -> list[str]:
    """The emails of the active superusers, in order, locking them until the transaction ends.

    The lock (FOR UPDATE on PostgreSQL; SQLite's writer already holds the whole file) makes two
    commands that each remove a different superuser take turns, so the second one counts what
    the first left: they cannot both pass the last-superuser guard.
    """
    model = ctx.model
    email = model.column("email")
    statement = (
        select(email)
        .select_from(model.selectable)
        .where(model.column("is_superuser").is_(True), model.column("is_active").is_(True))
        .order_by(email)
        .with_for_update()
    )
    return list((await ctx.session.execute(statement)).scalars())


async def guard_last_superuser(ctx: UserContext, losing: Iterable[Any], *, force: bool) -> None:
    """Refuse a change that takes away the last active superuser(s), unless ``force``."""
    lost = [user for user in losing if user.is_superuser and user.is_active]
    if force or not lost:
        return
    if len(await active_superusers(ctx)) <= len(lost):
        who = ", ".join(user.email for user in lost)
        raise LastSuperuser(
            f"refusing to leave no active superuser (would remove {who}); use --force to do it anyway"
        )


async def update_user(
    ctx: UserContext,
    user: Any,
    *,
    email: str | None = None,
    is_superuser: bool | None = None,
    is_verified: bool | None = None,
    is_active: bool | None = None,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, tuple[Any, Any]]:
    """Apply the given changes; return ``{field: (old, new)}`` for what actually changed.

    A new email must not belong to another user (case-insensitively); changing only the case of
    one's own address is allowed. A new address (not just new case) makes the user unverified
    unless ``is_verified`` is given, as FastAPI Users does.
    """
    wanted: dict[str, Any] = dict(extra or {})
    if email is not None:
        email = normalize_email(email)
        if fold_case(email) != fold_case(user.email):
            if await _email_taken(ctx, email, other_than=user.id):
                raise UserAlreadyExists(f"a user with email {email!r} already exists")
            if is_verified is None:
                is_verified = False
        wanted["email"] = email
    for name, value in (
        ("is_superuser", is_superuser),
        ("is_verified", is_verified),
        ("is_active", is_active),
    ):
        if value is not None:
            wanted[name] = value
    losing = is_superuser is False or is_active is False
    if losing:
        await guard_last_superuser(ctx, [user], force=force)
    changes = {
        name: (getattr(user, name), value)
        for name, value in wanted.items()
        if getattr(user, name) != value
    }
    for name, (_, new) in changes.items():
        setattr(user, name, new)
    if changes:
        await _flush(ctx, user.email, user)
        await touch_parent_rows(ctx, [user.id])
    return changes


async def touch_parent_rows(ctx: UserContext, user_ids: Sequence[Any]) -> None:
    """For a joined-table subclass, fill the parent tables' ``onupdate`` columns (an
    ``updated_at``) of changed users: the ORM updates a parent row only when one of its own
    columns changes, and a change to the user is a change to the principal it is."""
    from sqlalchemy import update

    for table in ctx.model.parent_tables:
        if not user_ids or all(column.onupdate is None for column in table.columns):
            continue
        key = next(iter(table.primary_key.columns))
        # SET key = key: the UPDATE adds the onupdate columns, computed as the app's would be.
        await ctx.session.execute(update(table).where(key.in_(user_ids)).values({key: key}))


async def _delete_parent_rows(ctx: UserContext, user_id: Any) -> None:
    """For a joined-table subclass, delete the user's rows in the parent tables too (nearest
    parent first), as the app's ORM does."""
    from sqlalchemy import delete

    for table in reversed(ctx.model.parent_tables):
        key = next(iter(table.primary_key.columns))
        await ctx.session.execute(delete(table).where(key == user_id))


async def set_password(ctx: UserContext, user: Any, hashed_password: str) -> None:
    """Replace the user's password hash."""
    user.hashed_password = hashed_password
    await ctx.session.flush()
    await touch_parent_rows(ctx, [user.id])


async def set_active(
    ctx: UserContext, users: Sequence[Any], active: bool, *, force: bool = False
) -> tuple[list[Any], list[Any]]:
    """(De)activate users; return those changed and those already so."""
    changed = [user for user in users if user.is_active != active]
    unchanged = [user for user in users if user.is_active == active]
    if not active:
        await guard_last_superuser(ctx, changed, force=force)
    for user in changed:
        user.is_active = active
    await ctx.session.flush()
    await touch_parent_rows(ctx, [user.id for user in changed])
    return changed, unchanged


async def plan_deletes(
    ctx: UserContext, users: Sequence[Any], rules: DeleteRules | None = None
) -> list[DeletePlan]:
    """What deleting each user does to the rows that refer to it (``usersctl.references``);
    raises ``RowsReferToUser`` when rows would block the delete, ``InvalidInput`` when the user
    to reassign rows to is one of those being deleted."""
    return (await _plan_deletes(ctx, users, rules or _no_choices()))[1]


def _no_choices() -> DeleteRules:
    from usersctl.references import DeleteRules

    return DeleteRules()


async def _plan_deletes(
    ctx: UserContext, users: Sequence[Any], rules: DeleteRules
) -> tuple[ReferenceGraph, list[DeletePlan]]:
    from usersctl.references import plan_delete, read_references, refuse_blocked

    if rules.reassign_to is not None and any(user.id == rules.reassign_to.id for user in users):
        raise InvalidInput(
            f"--reassign-to {rules.reassign_to.email}: that user is being deleted too"
        )
    graph = await ctx.session.run_sync(lambda s: read_references(s.connection(), ctx.model))
    unknown = sorted(rules.cascade_into - graph.table_names)
    if unknown:
        raise InvalidInput(f"--cascade-into {', '.join(unknown)}: the database has no such table")
    plans = [await plan_delete(ctx.session, graph, ctx.model.table, user, rules) for user in users]
    refuse_blocked(plans)
    return graph, plans


async def delete_users(
    ctx: UserContext,
    users: Sequence[Any],
    *,
    force: bool = False,
    rules: DeleteRules | None = None,
) -> list[DeletePlan]:
    """Delete users with their OAuth accounts and access tokens, and do with the rows that refer
    to them what ``plan_deletes`` says; return each user's plan, counted as it was carried out."""
    from usersctl.logins import delete_logins
    from usersctl.references import carry_out, plan_delete

    rules = rules or _no_choices()
    await guard_last_superuser(ctx, users, force=force)
    graph, plans = await _plan_deletes(ctx, users, rules)
    done = []
    for index, user in enumerate(users):
        # Counted again after the users before it: rows they took along are not counted twice.
        plan = (
            plans[0]
            if index == 0
            else await plan_delete(ctx.session, graph, ctx.model.table, user, rules)
        )
        await carry_out(ctx.session, plan, ctx.model.table, rules)
        await delete_logins(ctx, user.id)
        await ctx.db.delete_by_id(user.id)
        await _delete_parent_rows(ctx, user.id)
        ctx.session.expunge(user)
        done.append(plan)
    return done


# Choosing the scheme of new hashes --------------------------------------------------------------


async def _holds_hash_like(ctx: UserContext, pattern: str) -> bool:
    """Whether a stored password hash matches the LIKE ``pattern`` (stops at the first)."""
    from sqlalchemy import exists

    column = ctx.model.column("hashed_password")
    return bool(await ctx.session.scalar(select(exists().where(column.like(pattern)))))


async def choose_hashing(
    ctx: UserContext, requested: str, helper: Hashing | None = None
) -> HashChoice:
    """The hashing new hashes get under ``--hash-scheme requested`` (``auto``, ``argon2`` or
    ``bcrypt``), or the app's own ``helper``: see ``passwords.choose_early`` and
    ``passwords.choose_from_table``. The table is asked for an Argon2 hash first, which most
    tables answer at their first row; for bcrypt only when there is none."""
    from usersctl.hash_choice import choose_early, choose_from_table

    early = choose_early(requested, helper)
    if early is not None:
        return early
    if await _holds_hash_like(ctx, "$argon2%"):
        return choose_from_table({"argon2"})
    return choose_from_table({"bcrypt"} if await _holds_hash_like(ctx, "$2%$%") else set())


# Checking a password -------------------------------------------------------------------------

NO_MATCH = "no match: the password is wrong, the user does not exist, or has no usable password"


@dataclass(frozen=True)
class PasswordMatch:
    """A password that matched: the user, the scheme of the hash it matched (``argon2``,
    ``argon2-outdated`` or ``bcrypt``), the new hash's scheme when it was (or, without
    ``rehash``, would be) replaced, and whether it was."""

    user: Any
    scheme: str
    rehashed: bool
    replacement: str | None = None


def _checkable(hashed: str, hashing: Hashing) -> bool:
    """Whether ``hashed`` is worth checking: a hash the app's helper identifies, else (no
    helper, or one that cannot be asked) an Argon2 or bcrypt hash, or anything for a helper."""
    from usersctl.passwords import hash_cost_problem, is_known_hash

    if is_known_hash(hashed) and hash_cost_problem(hashed) is not None:
        return False  # verifying it would take minutes, and Ctrl-C could not stop it
    identified = hashing.identifies(hashed)
    if identified is None:
        return is_known_hash(hashed) if hashing.helper is None else bool(hashed)
    return identified


async def _decoy_hash(ctx: UserContext, hashing: Hashing, sample: int = 100) -> str | None:
    """A stored hash of the scheme and cost most common among (a sample of) the table's users,
    to verify a password against when there is no user: the same work as a wrong password for a
    real user (bcrypt where the table's hashes are bcrypt), so timing does not tell them apart."""
    from collections import Counter

    column = ctx.model.column("hashed_password")
    rows = await ctx.session.execute(select(column).where(column.is_not(None)).limit(sample))
    known = [
        hashed
        for hashed in rows.scalars()
        if isinstance(hashed, str) and _checkable(hashed, hashing)
    ]
    if not known:
        return None

    def cost(hashed: str) -> str:  # $argon2id$v=19$m=65536,t=3,p=4 or $2b$12
        return "$".join(hashed.split("$")[: 4 if hashed.startswith("$argon2") else 3])

    common, _ = Counter(cost(hashed) for hashed in known).most_common(1)[0]
    return next(hashed for hashed in known if cost(hashed) == common)


async def check_password(
    ctx: UserContext,
    email_or_id: str,
    password: str,
    *,
    rehash: bool = False,
    hashing: Hashing | None = None,
) -> PasswordMatch:
    """Check ``password`` as the app's login does; raise ``CheckFailed`` when it does not match.

    A missing user, a disabled or unknown hash and a wrong password raise the same
    ``CheckFailed`` after the same work: without a hash to check, the password is checked against
    a hash of the scheme and cost most users' hashes have (bcrypt in a table of bcrypt hashes),
    so neither the answer nor its timing tells whether the user exists. With ``rehash``, a
    matching hash of the other scheme than ``hashing``'s (Argon2 by default), or with outdated
    parameters, is replaced by one in ``hashing``'s.
    """
    import asyncio

    from usersctl.passwords import (
        ARGON2,
        hash_password,
        hash_scheme,
        verify_and_update,
    )

    hashing = hashing or ARGON2

    try:
        user = await find_user(ctx, email_or_id)
    except UserNotFound:
        user = None
    hashed = user.hashed_password if user is not None else None
    if not isinstance(hashed, str) or not _checkable(hashed, hashing):
        decoy = await _decoy_hash(ctx, hashing)
        if decoy is None:  # no usable hash in the table: as FastAPI Users does, hash anyway
            await asyncio.to_thread(hash_password, password, hashing)
        else:
            await asyncio.to_thread(verify_and_update, password, decoy, hashing)
        raise CheckFailed(NO_MATCH)
    matched, new_hash = await asyncio.to_thread(verify_and_update, password, hashed, hashing)
    if not matched:
        raise CheckFailed(NO_MATCH)
    scheme = hash_scheme(hashed, hashing)
    if rehash and new_hash is not None:
        await set_password(ctx, user, new_hash)
    replacement = hash_scheme(new_hash, hashing) if new_hash is not None else None
    return PasswordMatch(
        user, scheme, rehashed=rehash and new_hash is not None, replacement=replacement
    )
