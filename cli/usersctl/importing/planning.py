"""Planning against the database: which users the rows match (by email, in the database's idea
of case, and by id), and what import-users does with each row under its conflict rule."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, bindparam, func, select
from sqlalchemy.engine import Dialect

from usersctl.email_case import case_key, fold_case, index_key
from usersctl.importing.checking import NO_PASSWORD_FOR_NEW_USER
from usersctl.importing.rows import LOOKUP_BATCH, ImportConflict, ImportRejected, Problem, Row
from usersctl.users import (
    UserContext,
)


def bound_list(dialect: Dialect, name: str, element: Any) -> Any:
    """The elements of the list bound as ``name``, as a one-column subquery.

    A whole batch travels as one parameter (a JSON array on SQLite, an array on PostgreSQL), so a
    lookup of thousands of keys costs one statement, not thousands of bound parameters.
    """
    if dialect.name == "sqlite":
        value: Any = func.json_each(bindparam(name)).table_valued("value").c.value
    else:
        from sqlalchemy.dialects.postgresql import ARRAY  # the whole dialect: only where used

        value = func.unnest(bindparam(name, type_=ARRAY(element))).column_valued("value")
    return value


def among(dialect: Dialect, key: Any, name: str, element: Any, wrap: Any = None) -> Any:
    """The condition that ``key`` is one of the elements of the list bound as ``name`` (each
    passed through ``wrap``, a SQL function, where given). MySQL/MariaDB have neither arrays nor
    a JSON table function SQLAlchemy knows: there the list is an expanding ``IN`` (its driver
    writes the values into the statement, so no limit on bound parameters applies)."""
    if dialect.name == "mysql":
        return key.in_(bindparam(name, expanding=True, type_=element))
    value = bound_list(dialect, name, element)
    return key.in_(select(wrap(value) if wrap is not None else value).scalar_subquery())


def _bind(dialect: Dialect, values: list[Any], element: Any) -> Any:
    if dialect.name != "sqlite":
        return values
    process = element.dialect_impl(dialect).bind_processor(dialect)
    return json.dumps([process(value) if process else value for value in values])


async def existing_users(
    ctx: UserContext, rows: list[Row]
) -> tuple[dict[str, list[tuple[Any, str]]], dict[Any, str]]:
    """Existing users matching the rows: ``{lowercased email: [(id, stored email), ...]}`` (more
    than one where a table without the lower(email) index holds the address in several cases)
    and ``{id: lowercased email}``, lowercased by ``fold_case``.

    Emails are lowered by the database, so matching follows its idea of case, as its index does;
    on SQLite, whose lower() folds ASCII letters only, rows with other letters are also matched
    with usersctl's own function (one scan of the table, only when there are such rows).
    """
    model = ctx.model
    dialect = ctx.session.bind.dialect
    user_id, email = model.table.c.id, model.column("email")
    id_type = user_id.type
    by_email: dict[str, list[tuple[Any, str]]] = {}
    by_id: dict[Any, str] = {}
    users = select(user_id, email).select_from(model.selectable)
    emails_statement = users.where(among(dialect, index_key(email), "keys", String(), index_key))
    ids_statement = users.where(among(dialect, user_id, "ids", id_type))

    def found(user_id: Any, email: str) -> None:
        same = by_email.setdefault(fold_case(email), [])
        if (user_id, email) not in same:  # found by both statements
            same.append((user_id, email))
        by_id[user_id] = fold_case(email)

    emails = [row.values["email"] for row in rows]
    async for user_id, email in each_match(ctx, emails_statement, "keys", emails, String()):
        found(user_id, email)
    async for user_id, email in _matches_beyond_ascii(ctx, rows):
        found(user_id, email)
    given_ids = [row.values["id"] for row in rows if row.values.get("id") is not None]
    async for user_id, email in each_match(ctx, ids_statement, "ids", given_ids, id_type):
        by_id[user_id] = fold_case(email)
    return by_email, by_id


async def each_match(
    ctx: UserContext, statement: Any, name: str, keys: list[Any], element: Any
) -> AsyncIterator[Any]:
    """The rows ``statement`` finds for ``keys``, bound as the list parameter ``name`` (see
    ``bound_list``), ``LOOKUP_BATCH`` keys per query."""
    dialect = ctx.session.bind.dialect
    for start in range(0, len(keys), LOOKUP_BATCH):
        batch = _bind(dialect, keys[start : start + LOOKUP_BATCH], element)
        for row in await ctx.session.execute(statement, {name: batch}):
            yield row


def _keys_beyond_ascii(ctx: UserContext, rows: Iterable[Row]) -> list[str]:
    """On SQLite, the keys of the rows whose address has a character beyond ASCII: the ones its
    ``lower(email)`` index does not match in every case."""
    if ctx.session.bind.dialect.name != "sqlite":
        return []
    return sorted({row.key for row in rows if not row.values["email"].isascii()})


async def _matches_beyond_ascii(ctx: UserContext, rows: list[Row]) -> AsyncIterator[Any]:
    """On SQLite, the users (id, email) whose address is one of the rows' with letters beyond
    ASCII, in any case: one scan of the table for them all (none without such rows)."""
    keys = _keys_beyond_ascii(ctx, rows)
    if not keys:
        return
    model = ctx.model
    statement = (
        select(model.column("id"), model.column("email"))
        .select_from(model.selectable)
        .where(_key_among(ctx, "keys"))
    )
    for row in await ctx.session.execute(statement, {"keys": bind_keys(ctx, keys)}):
        yield row


async def clash_beyond_ascii(ctx: UserContext, rows: Iterable[Row]) -> bool:
    """On SQLite, after inserting ``rows`` on the strength of the ``lower(email)`` index: whether
    one with letters beyond ASCII now shares its address (in other case) with another user,
    which the index, folding ASCII letters only, let in. One scan, only for such rows."""
    keys = _keys_beyond_ascii(ctx, rows)
    if not keys:
        return False
    key = case_key(ctx.model.column("email"))
    statement = (
        select(key)
        .select_from(ctx.model.selectable)
        .where(_key_among(ctx, "keys"))
        .group_by(key)
        .having(func.count() > 1)
        .limit(1)
    )
    shared = await ctx.session.execute(statement, {"keys": bind_keys(ctx, keys)})
    return shared.first() is not None


def _key_among(ctx: UserContext, name: str) -> Any:
    """The condition that a user's ``case_key(email)`` is one of the keys bound as ``name``."""
    bound = bound_list(ctx.session.bind.dialect, name, String())
    return case_key(ctx.model.column("email")).in_(select(bound).scalar_subquery())


def bind_keys(ctx: UserContext, keys: list[str]) -> Any:
    """``keys`` bound whole, as one parameter (one scan of the table for them all)."""
    return _bind(ctx.session.bind.dialect, keys, String())


@dataclass
class ImportPlan:
    """What to do with each row, decided against the users the database holds."""

    inserts: list[Row] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # values, and the user's "_id"
    skipped: int = 0
    conflicts: list[Problem] = field(default_factory=list)
    #: New users without a password (rows that may leave it out only to update a user).
    invalid: list[Problem] = field(default_factory=list)


def decide_import(
    rows: list[Row],
    by_email: dict[str, list[tuple[Any, str]]],
    by_id: dict[Any, str],
    on_conflict: str,
) -> ImportPlan:
    """Each row's fate under ``on_conflict``, given the matching users (see ``existing_users``)."""
    plan = ImportPlan()
    for row in rows:
        matches = by_email.get(row.key, [])
        if len(matches) > 1:  # the same rule as for commands: the address stored exactly so
            exact = [user_id for user_id, stored in matches if stored == row.values["email"]]
            if len(exact) != 1:
                listed = ", ".join(sorted(stored for _, stored in matches))
                plan.conflicts.append(
                    Problem(row.line, f"several users have the address: {listed}")
                )
                continue
            matches = [(exact[0], row.values["email"])]
        existing_id = matches[0][0] if matches else None
        row_id = row.values.get("id")
        id_owner = by_id.get(row_id) if row_id is not None else None
        if existing_id is None and id_owner is None:
            if row.password is None and "hashed_password" not in row.values:
                plan.invalid.append(Problem(row.line, NO_PASSWORD_FOR_NEW_USER))
                continue
            plan.inserts.append(row)
        elif existing_id is None or (id_owner is not None and row_id != existing_id):
            # The row's id belongs to a user with another address: no rule makes that right.
            if on_conflict == "skip":
                plan.skipped += 1
            else:
                plan.conflicts.append(Problem(row.line, f"id {row_id} belongs to {id_owner}"))
        elif on_conflict == "fail":
            plan.conflicts.append(Problem(row.line, f"{row.values['email']} already exists"))
        elif on_conflict == "skip":
            plan.skipped += 1
        else:  # update: the existing user takes the row's fields and keeps its id
            kept = ("id", *row.defaulted)  # and the flags the row does not give
            plan.updates.append(
                {**{k: v for k, v in row.values.items() if k not in kept}, "_id": existing_id}
            )
    return plan


async def passwords_worth_hashing(ctx: UserContext, rows: list[Row], on_conflict: str) -> list[Row]:
    """The rows whose plaintext passwords the import will store, by a first look at the database
    (it ends before the hashing starts, so no lock is held meanwhile): a conflict refuses the
    import before any hashing (``ImportConflict``); under ``skip`` the rows of users who exist
    are not hashed. ``write_rows`` decides again, and hashes what changed meanwhile."""
    if not any(row.password for row in rows):
        return rows
    try:
        plan = decide_import(rows, *await existing_users(ctx, rows), on_conflict)
    finally:
        await ctx.session.rollback()
    if plan.invalid:
        raise ImportRejected(plan.invalid)
    if plan.conflicts:
        raise ImportConflict(plan.conflicts)
    return rows if on_conflict == "update" else plan.inserts


async def sessions_to_end(ctx: UserContext, updates: list[dict[str, Any]]) -> list[Any]:
    """The ids of the users these updates give a new password or deactivate (before they run)."""
    if ctx.model.token_table is None:
        return []
    model = ctx.model
    dialect = ctx.session.bind.dialect
    user_id = model.table.c.id
    statement = (
        select(user_id, model.column("hashed_password"), model.column("is_active"))
        .select_from(model.selectable)
        .where(among(dialect, user_id, "ids", user_id.type))  # MySQL: no arrays, an IN list
    )
    ids = [values["_id"] for values in updates]
    stored: dict[Any, tuple[str, bool]] = {}
    async for found, hashed, active in each_match(ctx, statement, "ids", ids, user_id.type):
        stored[found] = (hashed, active)
    ending = []
    for values in updates:
        hashed, active = stored[values["_id"]]
        if values.get("hashed_password", hashed) != hashed or (
            active and values.get("is_active", True) is False
        ):
            ending.append(values["_id"])
    return ending
