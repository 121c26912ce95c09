"""Emails compared regardless of case, the same way on PostgreSQL and SQLite.

PostgreSQL's ``lower()`` in a UTF-8 locale lowers every letter (``Ä`` to ``ä``); SQLite's built-in
``lower()`` lowers ``A`` to ``Z`` only, so to its unique ``lower(email)`` index ``Ärger@...`` and
``ärger@...`` are two addresses. usersctl registers :data:`FOLD_FUNCTION` on its own SQLite
connections (``usersctl.engine``) and compares with it wherever an address has other letters.
Nothing stored in the database uses the function: the app's connections, which do not have it,
read and write the file as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnClause
from sqlalchemy.sql.functions import FunctionElement

#: The SQL name of :func:`fold_case` on usersctl's SQLite connections.
FOLD_FUNCTION = "usersctl_lower"

#: The two characters that Python's ``str.lower`` does not lower to their one-letter lowercase:
#: U+0130 ``İ`` (to ``i`` and a combining dot) and U+03A3 ``Σ`` (to final sigma ``ς`` at the end
#: of a word). PostgreSQL lowers letter by letter: to ``i`` and U+03C3, the small sigma.
_ONE_LETTER = {0x130: "i", 0x3A3: "\u03c3"}

#: Characters of a LIKE pattern that stand for themselves only once escaped.
_LIKE_SPECIAL = {ord(c): "\\" + c for c in "\\%_"}

#: A pattern longer than this (in characters) could pass SQLite's LIKE limit (50,000 bytes).
_MAX_PATTERN = 20_000


def fold_case(email: str) -> str:
    """``email`` lowercased letter by letter, as PostgreSQL's ``lower()`` does in a UTF-8 locale.

    ``str.lower`` but for ``İ`` and ``Σ`` (see ``_ONE_LETTER``); not ``str.casefold``, which also
    turns ``ß`` into ``ss``: PostgreSQL keeps ``ß``, and so two addresses it tells apart stay
    apart here. Every character keeps its place, so the result is as long as ``email``.
    """
    return email.lower() if email.isascii() else email.translate(_ONE_LETTER).lower()


def _fold_value(value: Any) -> Any:
    # SQLite hands over whatever the column holds: NULL, a number, a blob are left alone.
    return fold_case(value) if isinstance(value, str) else value


def register_fold_function(dbapi_connection: Any) -> None:
    """Make :data:`FOLD_FUNCTION` callable in SQL on this SQLite connection."""
    dbapi_connection.create_function(FOLD_FUNCTION, 1, _fold_value, deterministic=True)


def folds_beyond_ascii(dialect_name: str, email: str) -> bool:
    """Whether looking ``email`` up on this database needs more than its ``lower(email)`` index:
    on SQLite, an address with a character beyond ASCII, which SQLite's ``lower()`` leaves as
    it is."""
    return dialect_name == "sqlite" and not email.isascii()


def spelling_pattern(email: str) -> str | None:
    """A LIKE pattern (escape character ``\\``) that every address equal to ``email`` under
    :func:`fold_case` matches, and few others: on SQLite, whose LIKE ignores the case of ASCII
    letters, each ASCII character stands for itself, and each other character, as well as ``i``
    and ``k`` (which ``İ`` and the Kelvin sign lower to), for any one character. None when the
    pattern would be too long for SQLite."""
    if len(email) > _MAX_PATTERN:
        return None
    return "".join(
        "_" if not char.isascii() or char in "iIkK" else char.translate(_LIKE_SPECIAL)
        for char in email
    )


class case_key(FunctionElement[str]):  # named as SQL functions are
    """The key that addresses are compared on: ``lower(x)``; on SQLite, :func:`fold_case` for a
    column value beyond ASCII, with the built-in ``lower()`` (no call into Python) for the rest."""

    type = String()
    inherit_cache = True
    name = "case_key"


@compiles(case_key)
def _compile_lower(element: case_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(case_key, "mysql")
def _compile_mysql(element: case_key, compiler: SQLCompiler, **kw: Any) -> str:
    # The column's collation compares case (and, for _ci collations, accents) away: see index_key.
    return str(compiler.process(element.clauses, **kw))


@compiles(case_key, "sqlite")
def _compile_sqlite(element: case_key, compiler: SQLCompiler, **kw: Any) -> str:
    (argument,) = element.clauses.clauses
    sql = compiler.process(argument, **kw)
    if not isinstance(argument, ColumnClause):  # a value given once: the function alone
        return f"{FOLD_FUNCTION}({sql})"
    # A text of ASCII characters has as many bytes as characters: lower() folds it entirely.
    return (
        f"CASE WHEN length(CAST({sql} AS BLOB)) = length({sql}) THEN lower({sql}) "
        f"ELSE {FOLD_FUNCTION}({sql}) END"
    )


class index_key(FunctionElement[str]):  # named as SQL functions are
    """The key that the unique email index holds: ``lower(x)`` on SQLite and PostgreSQL, whose
    index is on ``lower(email)``; on MySQL/MariaDB, which have no expression indexes (MariaDB)
    or do not use one for a comparison in the column's collation, ``x`` itself: the unique index
    is on ``email``, and its case-insensitive collation (``utf8mb4_general_ci``...) compares
    addresses in any case as equal, so ``email = :x`` is that index's search."""

    type = String()
    inherit_cache = True
    name = "index_key"


@compiles(index_key)
def _compile_index_key(element: index_key, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(index_key, "mysql")
def _compile_index_key_mysql(element: index_key, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))
