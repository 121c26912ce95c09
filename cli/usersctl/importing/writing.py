"""Writing: inserts compiled once per set of columns and sent in batches, updates, the
last-superuser guard and ended sessions, all in the caller's transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, bindparam, insert, update
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError

from usersctl.errors import InvalidInput, LastSuperuser
from usersctl.importing.checking import hash_passwords
from usersctl.importing.planning import (
    clash_beyond_ascii,
    decide_import,
    existing_users,
    sessions_to_end,
)
from usersctl.importing.rows import (
    WRITE_BATCH,
    ImportConflict,
    ImportRejected,
    ImportSummary,
    Progress,
    Row,
)
from usersctl.models import InsertContext, UserModel, python_column_defaults
from usersctl.passwords import ARGON2, Hashing
from usersctl.users import (
    NextIds,
    UserContext,
    active_superusers,
    overriding_system_value,
    with_overriding,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


async def lock_table(ctx: UserContext) -> None:
    """On PostgreSQL, make concurrent inserts wait for this import instead of slipping in
    between its checks and its writes (on SQLite, BEGIN IMMEDIATE already holds the lock); a
    joined-table subclass's parent tables too, parents first, as inserts take them."""
    dialect = ctx.session.bind.dialect
    if dialect.name == "postgresql":
        tables = (*ctx.model.parent_tables, ctx.model.table)
        names = ", ".join(dialect.identifier_preparer.format_table(table) for table in tables)
        await ctx.session.execute(sql_text(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE"))


async def advance_id_sequence(ctx: UserContext, rows: Iterable[Row]) -> None:
    """After rows that brought their own integer ids, move PostgreSQL's id sequence past them,
    so that the app's next insert does not collide with an imported id (SQLite needs nothing).

    Only ever forward: ``setval`` is not undone by a rollback, and a sequence moved back below
    ids already handed out gives a deleted user's id (and so their still-valid JWTs, whose
    ``sub`` is the id) to the next new user. The caller does not call this for a dry run."""
    dialect = ctx.session.bind.dialect
    owner = (*ctx.model.parent_tables, ctx.model.table)[0]  # a hierarchy's root gives the ids
    id_column = next(iter(owner.primary_key.columns), None)
    if id_column is None or dialect.name != "postgresql" or not isinstance(id_column.type, Integer):
        return
    if not any(row.values.get("id") is not None for row in rows):
        return
    table = dialect.identifier_preparer.format_table(owner)
    column = dialect.identifier_preparer.quote(id_column.name)
    # pg_sequence_last_value is NULL while the sequence has handed out nothing.
    await ctx.session.execute(
        sql_text(
            "SELECT setval(s.seq, m.top) FROM "
            "(SELECT pg_get_serial_sequence(:table, :column)::regclass AS seq) AS s, "
            f"(SELECT max({column}) AS top FROM {table}) AS m "
            "WHERE s.seq IS NOT NULL AND m.top > COALESCE(pg_sequence_last_value(s.seq), 0)"
        ),
        {"table": table, "column": id_column.name},
    )


async def write_rows(
    ctx: UserContext,
    rows: list[Row],
    on_conflict: str,
    summary: ImportSummary,
    progress: Progress | None = None,
    *,
    force: bool = False,
    keep_sessions: bool = False,
    hashing: Hashing = ARGON2,
    created: list[str] | None = None,
    stand_ins: NextIds | None = None,
) -> None:
    """Decide each row against the database and write them, in the caller's transaction.
    The emails of the users created are added to ``created``, when it is given. In a dry run,
    ``stand_ins`` gives the new users without an id theirs (see ``_with_stand_ins``).

    Updates that would leave no active superuser are refused (``LastSuperuser``) unless
    ``force``, as update-user and deactivate-user refuse them. An updated user whose password
    changes or who is deactivated loses their database access tokens, as with set-password and
    deactivate-user, unless ``keep_sessions``."""
    await lock_table(ctx)
    if on_conflict == "fail" and await _insert_all_or_nothing(ctx, rows, progress, stand_ins):
        summary.created += len(rows)
        if created is not None:
            created.extend(row.values["email"] for row in rows)
        return
    plan = decide_import(rows, *await existing_users(ctx, rows), on_conflict)
    if plan.invalid:
        raise ImportRejected(plan.invalid)
    if plan.conflicts:
        raise ImportConflict(plan.conflicts)
    # Rows left unhashed because the first look found their users, who have gone since.
    unhashed = [row for row in plan.inserts if row.password]
    if unhashed:
        await asyncio.to_thread(hash_passwords, unhashed, None, None, hashing)
    inserts = [row.values for row in plan.inserts]
    if created is not None:
        created.extend(values["email"] for values in inserts)
    updates = plan.updates
    summary.skipped += plan.skipped
    total = len(inserts) + len(updates)
    for start in range(0, len(inserts), WRITE_BATCH):
        batch = inserts[start : start + WRITE_BATCH]
        await insert_rows(ctx, batch, stand_ins)
        if progress:
            progress("writing", start + len(batch), total)
    superusers = await active_superusers(ctx) if updates and not force else []
    ending = [] if keep_sessions or not updates else await sessions_to_end(ctx, updates)
    written = len(inserts)
    for columns, batch in group_by_columns(updates):
        await execute_updates(ctx, columns, batch)
        written += len(batch)
        if progress:
            progress("writing", written, total)
    await refuse_no_superuser_left(ctx, superusers, "the import demotes or deactivates")
    if ending:
        from usersctl.logins import revoke_access_tokens_of

        summary.revoked_tokens += await revoke_access_tokens_of(ctx, ending) or 0
    summary.created += len(inserts)
    summary.updated += len(updates)


async def refuse_no_superuser_left(ctx: UserContext, before: list[str], doing: str) -> None:
    """After writes that may demote or remove users: ``LastSuperuser`` when there were active
    superusers (``before``, read with ``active_superusers`` before the writes, which locked them)
    and none is left. ``doing`` says what the writes did to them, for the message."""
    if before and not await active_superusers(ctx):
        raise LastSuperuser(
            f"refusing to leave no active superuser ({doing} {', '.join(before)}); use --force "
            "to do it anyway"
        )


def update_statements(
    model: UserModel, columns: tuple[str, ...]
) -> list[tuple[Any, tuple[str, ...]]]:
    """The UPDATEs that write ``columns`` of the users whose ids are bound as ``_id``, each with
    the names it binds: one for the user table and, for a joined-table subclass, one for each
    parent table that has some of them or columns with an ``onupdate`` (an ``updated_at``),
    which the UPDATE fills."""
    table = model.table
    statements = []
    for target in (table, *model.parent_tables):
        names = tuple(name for name in columns if name == "_id" or name in target.c)
        values: dict[Any, Any] = {name: bindparam(name) for name in names if name != "_id"}
        key = target.c.id if target is table else next(iter(target.primary_key.columns))
        if not values:
            if target is table or all(column.onupdate is None for column in target.columns):
                continue
            values = {key: key}  # nothing given: the UPDATE sets only its onupdate columns
        statements.append((update(target).where(key == bindparam("_id")).values(values), names))
    return statements


async def execute_updates(
    ctx: UserContext, columns: tuple[str, ...], batch: list[dict[str, Any]]
) -> None:
    """Write ``batch``, rows that all give ``columns`` (and ``_id``), with the UPDATEs of
    :func:`update_statements`: each parent table gets its own columns only."""
    for statement, names in update_statements(ctx.model, columns):
        if len(names) < len(columns):
            await ctx.session.execute(statement, [{n: v[n] for n in names} for v in batch])
        else:
            await ctx.session.execute(statement, batch)


async def _insert_all_or_nothing(
    ctx: UserContext, rows: list[Row], progress: Progress | None, stand_ins: NextIds | None
) -> bool:
    """Insert every row, trusting the unique indexes to catch conflicts (and on SQLite, a look
    at the rows with letters beyond ASCII, which its index does not fold); False (and nothing
    inserted) when one is hit, so that the caller can look the conflicts up and report them.

    In ``fail`` mode any conflict aborts the import, so checking first would only cost time.
    """
    savepoint = await ctx.session.begin_nested()
    try:
        for start in range(0, len(rows), WRITE_BATCH):
            batch = rows[start : start + WRITE_BATCH]
            await insert_rows(ctx, [row.values for row in batch], stand_ins)
            if progress:
                progress("writing", start + len(batch), len(rows))
        clash = await clash_beyond_ascii(ctx, rows)
    except IntegrityError:
        clash = True
    if clash:
        await savepoint.rollback()
        return False
    await savepoint.commit()
    return True


@dataclass(frozen=True)
class PreparedInsert:
    """An INSERT compiled for one set of columns, and its rows as driver-ready tuples."""

    sql: str
    params: list[tuple[Any, ...]]


def prepare_inserts(
    table: Any,
    dialect: Dialect,
    rows: list[dict[str, Any]],
    defaults: Mapping[str, Callable[[Any], Any]] | None = None,
) -> list[PreparedInsert]:
    """Compile the INSERTs for ``rows`` and convert their values for the driver, once per column.

    SQLAlchemy's per-row parameter handling costs more than SQLite's own work at this volume;
    the statement is still compiled by SQLAlchemy and each value goes through its column type's
    bind processor, so what is stored is exactly what an ORM insert would store. Pure Python and
    no I/O, so it can run in a worker thread while the previous batch is being written.

    ``defaults`` are what the app fills in Python for the columns a row leaves out (see
    ``UserModel.insert_defaults``: a dataclass field's default, a column's ``default=``);
    without it, the columns' own ``default=``.
    """
    if defaults is None:
        defaults = python_column_defaults(table)
    prepared = []
    for columns, group in group_by_columns(rows):
        filled = [name for name in defaults if name not in columns]
        named = (*columns, *filled)
        compiled = (
            insert(table).values({name: bindparam(name) for name in named}).compile(dialect=dialect)
        )
        order = list(compiled.positiontup or named)
        for name in order:
            if name not in named:
                raise InvalidInput(
                    f"column {name!r} has a default usersctl cannot compute; give it"
                )
        # Python-side defaults (a uuid4 id, a created_at) are filled here, as the app would.
        made = _fill_defaults(table, group, filled, defaults) if filled else {}
        # Column by column: one bind processor per column, chosen once. None stays None, as an
        # ORM insert leaves it (a JSON column's processor would store the text 'null').
        values: list[list[Any]] = []
        for name in order:
            column_values = [row[name] for row in group] if name in columns else made[name]
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                column_values = [None if v is None else process(v) for v in column_values]
            values.append(column_values)
        prepared.append(PreparedInsert(compiled.string, list(zip(*values, strict=True))))
    return prepared


def _fill_defaults(
    table: Any,
    group: list[dict[str, Any]],
    names: list[str],
    defaults: Mapping[str, Callable[[Any], Any]],
) -> dict[str, list[Any]]:
    """The default of each column in ``names`` (in the table's order) for each row of ``group``;
    a default that takes a context sees the row and the defaults computed before it."""
    made: dict[str, list[Any]] = {}
    context = InsertContext(made)
    for name in names:
        make = defaults[name]
        context.current_column = table.c[name]
        column_values = []
        try:
            for index, row in enumerate(group):
                context.row, context.index = row, index
                column_values.append(make(context))
        except Exception as exc:  # the app's own code: whatever it raises, name the column
            raise InvalidInput(
                f"column {name!r}: the model's default failed ({type(exc).__name__}: {exc}); "
                "give the column a value"
            ) from None
        made[name] = column_values
    return made


async def execute_inserts(ctx: UserContext, prepared: list[PreparedInsert]) -> None:
    connection = await ctx.session.connection()
    dialect = connection.dialect
    limit = sqlite_variable_limit() if dialect.name == "sqlite" else 0
    bulk = getattr(dialect, "is_mariadb", False)
    for statement in prepared:
        if limit:
            for sql, params in _sqlite_multi_row(statement, limit):
                await connection.exec_driver_sql(sql, params)
        elif not (bulk and await _mariadb_bulk_insert(connection, statement)):
            await connection.exec_driver_sql(statement.sql, statement.params)


#: The values whose binary forms MariaDB reads as it reads their literals in a text INSERT.
_BULK_TYPES = frozenset({str, int, bool, type(None)})
_FORMAT_MARKS = re.compile(r"%([%s])")


async def _mariadb_bulk_insert(connection: AsyncConnection, statement: PreparedInsert) -> bool:
    """``statement`` sent to MariaDB as one ``COM_STMT_BULK_EXECUTE`` of a prepared INSERT, when
    the driver has it (asyncmy's ``prepare`` and ``execute_bulk``): the rows travel in binary, so
    neither the client escapes them into SQL text nor the server parses that text, which was
    most of what an import of hashes cost on both sides. Only for rows of text, integers and
    NULLs. False, with nothing sent, when it does not apply: the caller sends the rows as text.
    Driver errors are raised as SQLAlchemy raises them for ``exec_driver_sql``."""
    if not statement.params or not {type(v) for row in statement.params for v in row} <= (
        _BULK_TYPES
    ):
        return False
    raw = (await connection.get_raw_connection()).driver_connection
    prepare = getattr(raw, "prepare", None)
    if prepare is None:
        return False
    # The dialect writes format marks (%s, and %% for a % in a name); the server's are ?.
    sql = _FORMAT_MARKS.sub(lambda mark: "?" if mark[1] == "s" else "%", statement.sql)
    dbapi = connection.dialect.loaded_dbapi
    try:
        prepared = await prepare(sql)
        try:
            if prepared.parameter_count != len(statement.params[0]):
                raise ValueError("not the INSERT's own marks")
            # Found before anything is sent: rows the driver cannot send so (a column of NULLs
            # only, mixed types), or a server without bulk statements.
            await prepared.execute_bulk(statement.params)
        except (ValueError, AttributeError, dbapi.NotSupportedError):
            await prepared.close()
            return False
        except dbapi.Error:
            await prepared.close()
            raise
        await prepared.close()
    except dbapi.Error as exc:
        raise DBAPIError.instance(sql, None, exc, dbapi.Error, dialect=connection.dialect) from exc
    return True


@functools.cache
def sqlite_variable_limit() -> int:
    """How many parameters one SQLite statement may bind with this build of SQLite (its
    MAX_VARIABLE_NUMBER, read off a fresh connection), at most 32,766: longer statements gain
    nothing. Python 3.10 cannot read it and takes the default of the version."""
    import sqlite3

    probe = sqlite3.connect(":memory:")
    try:
        getlimit = getattr(probe, "getlimit", None)  # Python 3.11 and later
        if getlimit is None:
            return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
        limit: int = getlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9))
        return min(limit, 32766)
    finally:
        probe.close()


def _sqlite_multi_row(statement: PreparedInsert, limit: int) -> Iterator[tuple[str, Any]]:
    """``statement`` as INSERTs of many rows each (``VALUES (?, ?), (?, ?), ...``), as many as
    SQLite's ``limit`` on bound parameters allows. executemany runs the statement once per row and
    takes the GIL back after each, so a thread checking the next batch meanwhile slows it down
    more than it gains (measured); one statement for thousands of rows releases the GIL once."""
    head, _, row = statement.sql.rpartition(" VALUES ")
    if not head or not row.startswith("(") or row.strip("(?, )"):
        yield statement.sql, statement.params  # not a plain one-row VALUES: leave it as it is
        return
    per_statement = max(1, limit // max(1, row.count("?")))
    rows = statement.params
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = ", ".join([row] * len(chunk))
        yield f"{head} VALUES {values}", tuple(itertools.chain.from_iterable(chunk))


async def insert_rows(
    ctx: UserContext, batch: list[dict[str, Any]], stand_ins: NextIds | None = None
) -> None:
    """Insert rows through the driver's executemany (see ``prepare_inserts``)."""
    if ctx.model.parent_tables:
        await _insert_through_mapper(ctx, batch, stand_ins)
        return
    dialect = ctx.session.bind.dialect
    defaults = ctx.model.insert_defaults()
    prepared = prepare_batch(ctx.model.table, dialect, batch, defaults, stand_ins)
    await execute_inserts(ctx, prepared)


def _with_stand_ins(
    batch: list[dict[str, Any]], stand_ins: NextIds
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A dry run's batch as the rows that give their id and the rows that do not, these with
    the ids PostgreSQL's sequence would give them, read without taking them (``NextIds``:
    ``nextval`` is not rolled back, so a dry run that drew ids would move the sequence)."""
    given = [row for row in batch if row.get("id") is not None]
    new = [{**row, "id": stand_ins.take()} for row in batch if row.get("id") is None]
    return given, new


def prepare_batch(
    table: Any,
    dialect: Dialect,
    batch: list[dict[str, Any]],
    defaults: Mapping[str, Callable[[Any], Any]],
    stand_ins: NextIds | None,
) -> list[PreparedInsert]:
    """``prepare_inserts`` for a batch; in a dry run, see ``_with_stand_ins``: the rows given
    an id here are inserted on their own, over a ``GENERATED ALWAYS`` id too."""
    if stand_ins is None:
        return prepare_inserts(table, dialect, batch, defaults)
    given, new = _with_stand_ins(batch, stand_ins)
    prepared = prepare_inserts(table, dialect, given, defaults) if given else []
    for statement in prepare_inserts(table, dialect, new, defaults) if new else []:
        if stand_ins.always:
            statement = PreparedInsert(with_overriding(statement.sql), statement.params)
        prepared.append(statement)
    return prepared


async def _insert_through_mapper(
    ctx: UserContext, batch: list[dict[str, Any]], stand_ins: NextIds | None
) -> None:
    """Insert the users of a joined-table subclass through the app's mapper, as the app does:
    each user's row in every parent table first (its defaults filled, the discriminator set),
    then in the user table, in the caller's transaction. In a dry run, see ``_with_stand_ins``."""
    if stand_ins is None:
        await _add_through_mapper(ctx, batch)
        return
    given, new = _with_stand_ins(batch, stand_ins)
    await _add_through_mapper(ctx, given)
    connection = await ctx.session.connection()
    overriding = overriding_system_value(connection.sync_connection, stand_ins.table)
    with overriding if stand_ins.always else contextlib.nullcontext():
        await _add_through_mapper(ctx, new)


async def _add_through_mapper(ctx: UserContext, batch: list[dict[str, Any]]) -> None:
    model = ctx.model
    keys: dict[str, str] = {}
    users = []
    for row in batch:
        for name in row.keys() - keys.keys():
            keys[name] = model.attribute(name)
        users.append(model.new_user({keys[name]: value for name, value in row.items()}))
    ctx.session.add_all(users)
    await ctx.session.flush()
    for user in users:
        ctx.session.expunge(user)  # a million users must not stay in the session


def group_by_columns(
    rows: list[dict[str, Any]],
) -> Iterator[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """executemany needs the same keys in every row; rows giving different fields go separately."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    yield from groups.items()
