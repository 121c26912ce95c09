"""What ``init-db`` and ``doctor`` tell the owner of an Alembic-managed database about the
``lower(email)`` index: the ``Index(...)`` for the model and the migration, as text."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from usersctl.migrations import IndexAdvice

REVISION_COMMAND = 'alembic revision -m "unique lower(email) index"'
REVISION_COMMAND_MYSQL = 'alembic revision -m "unique email index"'


def model_paragraph(advice: IndexAdvice) -> str:
    """Where the model declares the index, and the line that does."""
    names = "Index, text" if "text(" in advice.model_line else "Index"  # MySQL's: on email
    return (
        f"Declare it in the model of {advice.table_name!r}, in its __table_args__ "
        f"(from sqlalchemy import {names}):\n\n"
        f"    {advice.model_line},\n"
    )


def left_out_text(advice: IndexAdvice, *, command: str) -> str:
    """The advice when usersctl left the index out: declare it, migrate, or apply anyway."""
    # MySQL/MariaDB's is on email itself, in its case-insensitive collation.
    mysql = "text(" not in advice.model_line
    on, revision = (
        ("email", REVISION_COMMAND_MYSQL) if mysql else ("lower(email)", REVISION_COMMAND)
    )
    return (
        f"The database is managed by Alembic (it has an alembic_version table): usersctl leaves "
        f"its schema to the app's migrations, and did not add the unique index "
        f"{advice.index_name} on {on} of {advice.table_name!r}. Without it logins scan "
        "the table and addresses differing only in case can be created. To add it the app's "
        "way:\n\n"
        f"1. {model_paragraph(advice)}\n"
        f"2. Make a migration ({revision}) with this upgrade() and downgrade(), then run "
        "alembic upgrade head:\n\n"
        f"{advice.migration}\n"
        f"Or run `usersctl {command} --apply-anyway` to add the index now; the model must still "
        "declare it."
    )


def applied_text(advice: IndexAdvice) -> str:
    """The warning when ``--apply-anyway`` added the index to an Alembic-managed database."""
    return (
        f"The database is managed by Alembic: the model must declare {advice.index_name}, or "
        "`alembic check` fails and the app's next `alembic revision --autogenerate` drops it. "
        f"{model_paragraph(advice)}"
    )
