"""export-users: stream users out of the database as JSON lines, JSON or CSV, in flat memory.

The database renders each row (``json_object`` on SQLite, ``json_build_object`` on PostgreSQL,
text casts for CSV) and rows arrive in batches from a server-side cursor, so Python only moves
finished text: a million rows take seconds and the same memory as a thousand.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from typing import IO, Any

from sqlalchemy import Column, ColumnElement, String, case, cast, func, literal, select
from sqlalchemy.types import JSON, Boolean, LargeBinary

from usersctl.models import UserModel
from usersctl.users import UserFilters, open_users

BATCH = 10_000
Progress = Callable[[int, int], None]  # (done, total)


def export_columns(model: UserModel, *, include_hashes: bool) -> list[str]:
    """The exported fields, in order: those ``list-users`` shows, plus the hash if asked for."""
    columns = list(model.columns)
    if include_hashes:
        columns.insert(columns.index("email") + 1, "hashed_password")
    return columns


def _json_value(column: Column[Any], dialect: str) -> ColumnElement[Any]:
    kind = column.type
    if dialect == "sqlite":
        if isinstance(kind, Boolean):
            # SQLite keeps booleans as 0/1; json() turns the words into JSON true/false.
            return func.json(case((column.is_(None), "null"), (column != 0, "true"), else_="false"))
        if isinstance(kind, JSON):
            return func.json(column)
        if isinstance(kind, LargeBinary):
            return func.hex(column)
    elif isinstance(kind, LargeBinary):
        return func.encode(column, "hex")
    return column


def _text_value(column: Column[Any], dialect: str) -> ColumnElement[Any]:
    kind = column.type
    if isinstance(kind, Boolean):
        true = column != 0 if dialect == "sqlite" else column.is_(True)
        return case((column.is_(None), None), (true, "true"), else_="false")
    if dialect == "sqlite":
        return func.hex(column) if isinstance(kind, LargeBinary) else column
    if isinstance(kind, LargeBinary):
        return func.encode(column, "hex")
    return cast(column, String)


def json_rows_statement(model: UserModel, columns: list[str], dialect: str) -> Any:
    """One text column: each user as a JSON object, rendered by the database."""
    table = model.table
    pairs: list[Any] = []
    for name in columns:
        pairs += [literal(name), _json_value(table.c[name], dialect)]
    if dialect == "sqlite":
        document: ColumnElement[Any] = func.json_object(*pairs)
    else:
        document = cast(func.json_build_object(*pairs), String)
    return select(document)


def csv_rows_statement(model: UserModel, columns: list[str], dialect: str) -> Any:
    """One text column per field, as the CSV should show it."""
    table = model.table
    return select(*(_text_value(table.c[name], dialect).label(name) for name in columns))


async def export_users(
    url: str,
    out: IO[str],
    *,
    fmt: str = "jsonl",
    filters: UserFilters | None = None,
    include_hashes: bool = False,
    connect_timeout: float = 10.0,
    progress: Progress | None = None,
    model_path: str | None = None,
) -> int:
    """Write the users matching ``filters`` to ``out``; return how many were written.

    Without ``include_hashes`` no password hash leaves the database.
    """
    filters = filters or UserFilters()
    async with open_users(url, connect_timeout=connect_timeout, model_path=model_path) as ctx:
        dialect = ctx.session.bind.dialect.name
        columns = export_columns(ctx.model, include_hashes=include_hashes)
        total = 0
        if progress:
            counting = filters.apply(ctx.model, select(func.count()).select_from(ctx.model.table))
            total = int((await ctx.session.execute(counting)).scalar_one())
        if fmt == "csv":
            statement = csv_rows_statement(ctx.model, columns, dialect)
        else:
            statement = json_rows_statement(ctx.model, columns, dialect)
        statement = filters.apply(ctx.model, statement.select_from(ctx.model.table))
        result = await ctx.session.stream(statement, execution_options={"yield_per": BATCH})
        written = 0
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(columns)
        elif fmt == "json":
            out.write("[")
        async for batch in result.partitions(BATCH):
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
