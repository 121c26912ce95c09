"""export-users: stream users out of the database as JSON lines, JSON or CSV, in flat memory.

The database renders each row (``json_object`` on SQLite, ``row_to_json`` on PostgreSQL,
text casts for CSV) and rows arrive in batches from a server-side cursor, so Python only moves
finished text: a million rows take seconds and the same memory as a thousand. A table with
columns whose database rendering is not their form in ``usersctl.fields`` (times, decimals,
arrays, enums, JSON, bytes, UUIDs stored as hex) is rendered in Python instead, by those forms.
Both renderings write text cells of CSV formula-safe (``usersctl.csv_cells``), byte for byte alike.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
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
)
from sqlalchemy.types import Boolean, Enum, Integer, TypeDecorator

from usersctl.csv_cells import formula_safe, formula_safe_sql
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


def _rendered_in_python(
    rows: Sequence[Any],
    columns: list[str],
    forms: Mapping[str, ValueForm],
    fmt: str,
    raw_csv: bool = False,
) -> list[Any]:
    """Rows of column values as the database's rendering would give them: one JSON text each
    (compact, as the database writes it), or the CSV cells."""
    chosen = [forms[name] for name in columns]
    if fmt == "csv":
        # An empty cell means "not given"; a user without a password is written null, as the
        # database's rendering does (csv_rows_statement).
        empty = ["null" if name == "hashed_password" else "" for name in columns]
        cells = [_csv_writer(form, raw_csv) for form in chosen]
        return [
            [
                none if value is None else cell(value)
                for cell, value, none in zip(cells, row, empty, strict=True)
            ]
            for row in rows
        ]
    return [
        (
            json.dumps(
                {
                    name: None if value is None else form.json(value)
                    for name, form, value in zip(columns, chosen, row, strict=True)
                },
                ensure_ascii=False,
                separators=(",", ":"),
            ),
        )
        for row in rows
    ]


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
        forms = None
        if not renders_in_database(ctx.model, chosen, dialect):
            forms = {name: form_for(ctx.model.column(name).type) for name in chosen}
        if forms is not None:
            fields = select(*(ctx.model.column(name) for name in chosen))
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
            batch = (
                rows if forms is None else _rendered_in_python(rows, chosen, forms, fmt, raw_csv)
            )
            if writer is not None:
                writer.writerows(batch)
            elif fmt == "json":
                out.write(("," if written else "") + "\n" + ",\n".join(row[0] for row in batch))
            else:
                out.write("\n".join(row[0] for row in batch) + "\n")
            written += len(batch)
            if progress:
                progress(written, total)
        if fmt == "json":
            out.write("\n]\n" if written else "]\n")
        out.flush()
        return written
