"""A constraint the database enforced (unique, foreign key, NOT NULL, check), said in words.

Read from the driver's error: asyncpg names the constraint, the table and (in its detail) the
columns; SQLite names the table and columns of a unique or NOT NULL constraint, and nothing for
a foreign key (``usersctl.references.broken_reference`` finds that one). The values in the
driver's detail are left out: they may be secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNIQUE = "unique"
FOREIGN_KEY = "foreign key"
NOT_NULL = "not null"
CHECK = "check"

_SQLSTATES = {"23505": UNIQUE, "23503": FOREIGN_KEY, "23502": NOT_NULL, "23514": CHECK}


@dataclass(frozen=True)
class Violation:
    """Which kind of constraint refused the change, and a sentence that says so."""

    kind: str
    message: str

    @property
    def is_conflict(self) -> bool:
        """A clash with rows already there (unique, foreign key), not a bad value."""
        return self.kind in (UNIQUE, FOREIGN_KEY)


def _quoted(text: str, after: str) -> str | None:
    found = re.search(after + r' "([^"]+)"', text)
    return found.group(1) if found else None


def _postgres(error: BaseException, kind: str) -> Violation:
    constraint = getattr(error, "constraint_name", None)
    table = getattr(error, "table_name", None)
    detail = str(getattr(error, "detail", None) or "")
    text = str(getattr(error, "message", None) or error)
    keys = re.match(r"Key \((.+?)\)=", detail)
    columns = keys.group(1) if keys else getattr(error, "column_name", None)
    named = f" {constraint}" if constraint else ""
    if kind == UNIQUE:
        where = f" on {table}.{columns}" if table and columns else ""
        return Violation(
            kind, f"unique constraint{named}{where}: another row already has that value"
        )
    if kind == FOREIGN_KEY:
        deleting = text.startswith("update or delete on table")
        if deleting:
            target = _quoted(text, "update or delete on table")
            return Violation(
                kind,
                f"foreign key{named}: rows of {table} still refer to the row of {target} being "
                f"changed or deleted ({target}.{columns})",
            )
        target = _quoted(detail, "is not present in table")
        return Violation(
            kind, f"foreign key{named} on {table}.{columns}: no row of {target} has that value"
        )
    if kind == NOT_NULL:
        column = getattr(error, "column_name", None)
        return Violation(kind, f"{table}.{column} cannot be empty (NOT NULL)")
    return Violation(kind, f"check constraint{named} on {table} refused the value")


def _sqlite(text: str) -> Violation | None:
    for prefix, kind in (
        ("UNIQUE constraint failed: ", UNIQUE),
        ("NOT NULL constraint failed: ", NOT_NULL),
        ("CHECK constraint failed: ", CHECK),
    ):
        if text.startswith(prefix):
            what = text[len(prefix) :].strip()
            if kind == UNIQUE:
                message = f"unique constraint on {what}: another row already has that value"
            elif kind == NOT_NULL:
                message = f"{what} cannot be empty (NOT NULL)"
            else:
                message = f"check constraint {what} refused the value"
            return Violation(kind, message)
    if text.startswith("FOREIGN KEY constraint failed"):
        return Violation(
            FOREIGN_KEY,
            "foreign key constraint (SQLite does not say which): a row would refer to a row "
            "that does not exist, or rows still refer to the row being deleted",
        )
    return None


def describe_violation(exc: BaseException) -> Violation | None:
    """The constraint an ``IntegrityError`` reports, in words; None when it is none of these."""
    original = getattr(exc, "orig", None) or exc
    cause = original.__cause__
    state = getattr(original, "sqlstate", None) or getattr(cause, "sqlstate", None)
    kind = _SQLSTATES.get(str(state or ""))
    if kind is not None:
        return _postgres(cause if cause is not None else original, kind)
    text = str(original).strip()
    return _sqlite(text.splitlines()[0] if text else "")
