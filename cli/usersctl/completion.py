"""Shell completion of user emails: quick, bounded, and silent when the database is unreachable."""

from __future__ import annotations

import asyncio

MAX_COMPLETIONS = 50
COMPLETION_TIMEOUT = 2.0


def complete_emails(
    url: str, prefix: str, model_path: str | None = None, table: str | None = None
) -> list[str]:
    """Up to 50 emails starting with ``prefix`` (any case); an empty list on any failure."""
    try:
        # Imported before the clock starts, the database's driver too: the time limit is the
        # database's, not the imports'.
        import usersctl.users  # noqa: F401
        from usersctl.engine import normalize_url

        normalize_url(url).get_dialect().import_dbapi()

        return asyncio.run(
            asyncio.wait_for(_emails(url, prefix, model_path, table), COMPLETION_TIMEOUT)
        )
    except Exception:
        return []


async def _emails(url: str, prefix: str, model_path: str | None, table: str | None) -> list[str]:
    from sqlalchemy import select

    from usersctl.email_case import case_key, index_key
    from usersctl.users import open_users

    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    async with open_users(
        url, connect_timeout=COMPLETION_TIMEOUT, model_path=model_path, table=table
    ) as ctx:
        email = ctx.model.column("email")
        statement = (
            select(email)
            .select_from(ctx.model.selectable)
            .where(case_key(email).like(case_key(escaped + "%"), escape="\\"))
            .order_by(index_key(email))
            .limit(MAX_COMPLETIONS)
        )
        return list((await ctx.session.execute(statement)).scalars())
