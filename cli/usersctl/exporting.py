"""export-users: stream users out of the database as JSON lines, JSON or CSV, in flat memory.

The database renders each row (``json_object`` on SQLite, ``row_to_json`` on PostgreSQL,
text casts for CSV) and rows arrive in batches from a server-side cursor, so Python only moves
finished text: a million rows take seconds and the same memory as a thousand. A table with
columns whose database rendering is not their form in ``usersctl.fields`` (times, decimals,
arrays, enums, JSON, bytes, UUIDs stored as hex) is rendered in Python instead, by those forms,
as is every table on MySQL/MariaDB (``renders_in_database``); there text, integers, booleans and
stored UUIDs are written from the driver's values without a detour (``PythonRendering``), which
keeps a million-row export as fast as a bare driver loop. Both renderings write text cells of CSV
formula-safe (``usersctl.csv_cells``), byte for byte alike.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring
from typing import IO, Any

from sqlalchemy import (
    Column,
    ColumnElement,
    String,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    true,
    type_coerce,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import Boolean, Enum, Integer, NullType, TypeDecorator

from usersctl.csv_cells import formula_safe, formula_safe_sql
from usersctl.db.types import GUID
from usersctl.errors import InvalidInput
from usersctl.fields import ValueForm, form_for, is_text_type
from usersctl.models import UserModel, is_uuid_type
from usersctl.users import (
    UserFilters,
    choose_columns,
    has_unique_email_key,
    open_users,
    user_order,
)

BATCH = 10_000
Progress = Callable[[int, int], None]  # (done, total)


def export_columns(model: UserModel, *, include_hashes: bool) -> list[str]:
    """The exported fields, in order: those ``list-users`` shows, plus the hash if asked for."""
    columns = list(model.columns)
    if include_hashes:
        columns.insert(columns.index("email") + 1, "hashed_password")
    return columns


def renders_in_database(model: UserModel, columns: list[str], dialect: str) -> bool:
    """Whether the database writes every column in ``columns`` in its form: booleans, integers,
    text, and UUIDs where they are stored as such (natively, or as hyphenated CHAR(36)) — the
    columns of FastAPI Users' own table. Not on MySQL/MariaDB, whose JSON_OBJECT spaces its
    output and writes booleans as 0 and 1: Python renders the rows there."""
    if dialect == "mysql":
        return False
    for name in columns:
        kind = model.column(name).type
        if isinstance(kind, (Boolean, Integer)) or (
            isinstance(kind, String) and not isinstance(kind, Enum)
        ):
            continue
        if is_uuid_type(kind) and (
            dialect == "postgresql"
            or (isinstance(kind, TypeDecorator) and getattr(kind.impl_instance, "length", 0) == 36)
        ):
            continue
        return False
    return True


def _csv_writer(form: ValueForm, raw_csv: bool) -> Callable[[Any], str]:
    """A column's CSV cell of a value (not None): its text form, formula-safe for text."""
    if raw_csv or not form.is_text:
        return form.text
    return lambda value: formula_safe(form.text(value))


#: A lowercase hyphenated UUID: what GUID stores, and what its JSON and text forms write.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class PythonRendering:
    """Rows rendered in Python, each value in its form (``usersctl.fields``): JSON texts, or
    CSV cells. Booleans, integers, text and stored UUIDs are read as the driver gives them and
    written by shortcuts that give the same text as the column type's own reading followed by
    its form; other values (and any value a shortcut does not expect) take that longer way.
    Per row this is a string format, not a dict and ``json.dumps``: the difference is most of
    the time a million-row export takes on MySQL/MariaDB, where every export renders here."""

    def __init__(
        self, model: UserModel, columns: list[str], dialect: Dialect, fmt: str, raw_csv: bool
    ) -> None:
        self.csv = fmt == "csv"
        self.selected: list[Any] = []
        self.writers: list[Callable[[Any], str]] = []
        for name in columns:
            column = model.column(name)
            form = form_for(column.type)
            whole = _csv_writer(form, raw_csv) if self.csv else _json_writer(form)
            shortcut = self._shortcut(column.type, dialect, whole, raw_csv)
            # The driver's value where a shortcut reads it, else the value the type reads.
            self.selected.append(
                type_coerce(column, NullType()).label(name) if shortcut else column
            )
            self.writers.append(shortcut or whole)
        # An empty cell means "not given"; a user without a password is written null, as the
        # database's rendering does (csv_rows_statement).
        self.nulls = [
            "null" if not self.csv or name == "hashed_password" else "" for name in columns
        ]
        # The keys as json.dumps writes them; "%" doubled for the format.
        keys = [encode_basestring(name).replace("%", "%%") for name in columns]
        self.template = "{" + ",".join(f"{key}:%s" for key in keys) + "}"

    def _shortcut(
        self, kind: Any, dialect: Dialect, whole: Callable[[Any], str], raw_csv: bool
    ) -> Callable[[Any], str] | None:
        """How to write the driver's values of a column of type ``kind`` quickly, or None."""
        plain = isinstance(kind, (Boolean, Integer, String)) and not isinstance(
            kind, (Enum, TypeDecorator)
        )
        if not (plain or isinstance(kind, GUID)):
            return None
        # These types' readings do not depend on what the driver says of the column.
        processor = kind.dialect_impl(dialect).result_processor(dialect, None)
        read = whole if processor is None else (lambda value: whole(processor(value)))
        if isinstance(kind, Boolean):
            # 0/1 on SQLite and MySQL, read as bool(value); a bool on PostgreSQL.
            return lambda v: ("true" if v else "false") if type(v) in (int, bool) else read(v)
        if isinstance(kind, GUID):
            # Its hyphenated CHAR(36), as usersctl and FastAPI Users store it: written as read.
            # PostgreSQL's native UUIDs are read (and written) as before.
            match = CANONICAL_UUID.fullmatch
            if self.csv:
                return lambda v: v if type(v) is str and match(v) else read(v)
            return lambda v: f'"{v}"' if type(v) is str and match(v) else read(v)
        if processor is not None:  # a dialect's own String or Integer that converts (SET)
            return None
        if isinstance(kind, Integer):
            return lambda v: str(v) if type(v) is int else read(v)
        if not self.csv:
            return lambda v: encode_basestring(v) if type(v) is str else read(v)
        if raw_csv:
            return lambda v: v if type(v) is str else read(v)
        return lambda v: formula_safe(v) if type(v) is str else read(v)

    def render(self, rows: Sequence[Any]) -> list[Any]:
        """JSON texts, or rows of CSV cells, of the selected values of ``rows``."""
        cells = [
            [null if value is None else write(value) for value in values]
            for write, null, values in zip(
                self.writers, self.nulls, zip(*rows, strict=True), strict=False
            )
        ]
        if self.csv:
            return list(zip(*cells, strict=True))
        template = self.template
        return [template % values for values in zip(*cells, strict=True)]


def _json_writer(form: ValueForm) -> Callable[[Any], str]:
    """A column's JSON text of a value (not None), as ``json.dumps`` writes it in a row."""
    return lambda value: json.dumps(form.json(value), ensure_ascii=False, separators=(",", ":"))


class CsvRows:
    """CSV rows ending in ``\n``. Python's writer quotes a cell holding ``\n`` but not one
    holding a lone ``\r`` (not in that line ending), which a reader then takes for the end of
    the line: a row with such a cell has every cell quoted."""

    def __init__(self, out: IO[str]) -> None:
        self.plain = csv.writer(out, lineterminator="\n")
        self.quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerows(self, rows: Sequence[Any]) -> None:
        if not any("\r" in cell for row in rows for cell in row if isinstance(cell, str)):
            self.plain.writerows(rows)
            return
        for row in rows:
            carriage = any("\r" in cell for cell in row if isinstance(cell, str))
            (self.quoted if carriage else self.plain).writerow(row)


def _json_value(column: Column[Any], dialect: str) -> ColumnElement[Any]:
    if dialect == "sqlite" and isinstance(column.type, Boolean):
        # SQLite keeps booleans as 0/1; json() turns the words into JSON true/false.
        return func.json(case((column.is_(None), "null"), (column != 0, "true"), else_="false"))
    return column


def _text_value(column: Column[Any], dialect: str, raw_csv: bool) -> ColumnElement[Any]:
    if isinstance(column.type, Boolean):
        true = column != 0 if dialect == "sqlite" else column.is_(True)
        return case((column.is_(None), None), (true, "true"), else_="false")
    text = column if dialect == "sqlite" else cast(column, String)
    if raw_csv or not is_text_type(column.type):
        return text
    return formula_safe_sql(text)


def json_rows_statement(
    model: UserModel,
    columns: list[str],
    dialect: str,
    filters: UserFilters,
    order: Sequence[Any] = (),
) -> Any:
    """One text column: each user matching ``filters`` as a JSON object, rendered by the
    database, compact and with the fields in ``columns`` order on both databases (for the
    columns ``renders_in_database`` accepts), in ``order`` (``usersctl.users.user_order``)."""
    source = model.selectable  # the user table, joined to its parents for a subclass
    if dialect == "sqlite":
        pairs: list[Any] = []
        for name in columns:
            pairs += [literal(name), _json_value(model.column(name), dialect)]
        statement = select(func.json_object(*pairs)).select_from(source)
        return filters.apply(model, statement).order_by(*order)
    # json_build_object spaces its output ({"id" : ...}); row_to_json of a row does not. Each
    # user's row is a LATERAL subquery of its own fields, so the order is the outer query's (on
    # columns that need not be exported), which the planner serves from the lower(email) index.
    # The row is named "u.*", not "u", which a column called u would shadow.
    fields = select(*(_json_value(model.column(name), dialect).label(name) for name in columns))
    row = fields.correlate(model.table, *model.parent_tables).lateral("u")
    statement = select(cast(func.row_to_json(literal_column("u.*")), String)).select_from(
        source.join(row, true())
    )
    return filters.apply(model, statement).order_by(*order)


def csv_rows_statement(
    model: UserModel,
    columns: list[str],
    dialect: str,
    filters: UserFilters,
    order: Sequence[Any] = (),
    *,
    raw_csv: bool = False,
) -> Any:
    """One text column per field, as the CSV should show it, for the users matching ``filters``,
    in ``order``: text formula-safe, unless ``raw_csv``.

    An empty cell means "not given" to ``import-users``; a user without a password (NULL
    ``hashed_password``, who logs in through OAuth only) is written ``null`` instead, which
    ``import-users`` reads back as NULL."""
    fields = select(
        *(
            (
                func.coalesce(_text_value(model.column(name), dialect, raw_csv), "null")
                if name == "hashed_password"
                else _text_value(model.column(name), dialect, raw_csv)
            ).label(name)
            for name in columns
        )
    )
    return filters.apply(model, fields.select_from(model.selectable)).order_by(*order)


async def export_users(
    url: str,
    out: IO[str],
    *,
    fmt: str = "jsonl",
    filters: UserFilters | None = None,
    include_hashes: bool = False,
    columns: Sequence[str] | None = None,
    connect_timeout: float = 10.0,
    progress: Progress | None = None,
    model_path: str | None = None,
    table: str | None = None,
    raw_csv: bool = False,
    ordered: bool = True,
) -> int:
    """Write the users matching ``filters`` to ``out``; return how many were written.

    ``columns`` chooses the fields, in their order (``--columns``); without ``include_hashes``
    no password hash leaves the database. CSV cells of text are formula-safe
    (``usersctl.csv_cells``) unless ``raw_csv``. ``ordered``: in list-users' order, so that two
    exports of the same users are the same bytes; else in the order the database reads them
    fastest (its storage order, for a whole table), which no index lookup per row slows down.
    """
    filters = filters or UserFilters()
    async with open_users(
        url, connect_timeout=connect_timeout, model_path=model_path, table=table
    ) as ctx:
        dialect = ctx.session.bind.dialect.name
        if columns is not None and "hashed_password" in columns and not include_hashes:
            raise InvalidInput("--columns: hashed_password is exported only with --include-hashes")
        available = export_columns(ctx.model, include_hashes=include_hashes)
        chosen = choose_columns(columns, available)
        total = 0
        if progress:
            counting = select(func.count()).select_from(ctx.model.selectable)
            counting = filters.apply(ctx.model, counting)
            total = int((await ctx.session.execute(counting)).scalar_one())
        order = user_order(ctx.model, unique_key=await has_unique_email_key(ctx)) if ordered else []
        python = None
        if not renders_in_database(ctx.model, chosen, dialect):
            python = PythonRendering(ctx.model, chosen, ctx.session.bind.dialect, fmt, raw_csv)
        if python is not None:
            fields = select(*python.selected)
            statement = filters.apply(ctx.model, fields.select_from(ctx.model.selectable))
            statement = statement.order_by(*order)
        elif fmt == "csv":
            statement = csv_rows_statement(
                ctx.model, chosen, dialect, filters, order, raw_csv=raw_csv
            )
        else:
            statement = json_rows_statement(ctx.model, chosen, dialect, filters, order)
        result = await ctx.session.stream(statement, execution_options={"yield_per": BATCH})
        written = 0
        writer = CsvRows(out) if fmt == "csv" else None
        if writer is not None:
            writer.writerows([chosen])
        elif fmt == "json":
            out.write("[")
        async for rows in result.partitions(BATCH):
            if writer is not None:
                writer.writerows(rows if python is None else python.render(rows))
            else:
                lines = [row[0] for row in rows] if python is None else python.render(rows)
                if fmt == "json":
                    out.write(("," if written else "") + "\n" + ",\n".join(lines))
                else:
                    out.write("\n".join(lines) + "\n")
            written += len(rows)
            if progress:
                progress(written, total)
        if fmt == "json":
            out.write("\n]\n" if written else "]\n")
        out.flush()
        return written
