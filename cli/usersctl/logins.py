"""A user's ways in besides the password: OAuth accounts and database access tokens.

They live in FastAPI Users' ``oauth_account`` and ``accesstoken`` tables, when the app has them
(found by ``usersctl.models``). Each operation works in the caller's transaction; a table the
database does not have reads as ``None`` (nothing to list, nothing to revoke).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select

from usersctl.errors import OAuthAccountNotFound

if TYPE_CHECKING:
    from usersctl.users import UserContext


@dataclass(frozen=True)
class OAuthLink:
    """One OAuth account of a user, without its tokens (they are secrets)."""

    provider: str
    account_id: str
    account_email: str

    def as_dict(self) -> dict[str, str]:
        return {
            "provider": self.provider,
            "account_id": self.account_id,
            "account_email": self.account_email,
        }

    def __str__(self) -> str:
        return f"{self.provider}:{self.account_id} ({self.account_email})"


async def oauth_links(ctx: UserContext, user: Any) -> list[OAuthLink] | None:
    """The user's OAuth accounts by provider and account id; ``None`` without an OAuth table."""
    table = ctx.model.oauth_table
    if table is None:
        return None
    statement = (
        select(table.c.oauth_name, table.c.account_id, table.c.account_email)
        .where(table.c.user_id == user.id)
        .order_by(table.c.oauth_name, table.c.account_id)
    )
    rows = await ctx.session.execute(statement)
    return [OAuthLink(*row) for row in rows]


async def count_access_tokens(ctx: UserContext, user: Any) -> int | None:
    """How many database access tokens the user holds; ``None`` without a token table."""
    table = ctx.model.token_table
    if table is None:
        return None
    statement = select(func.count()).select_from(table).where(table.c.user_id == user.id)
    return int((await ctx.session.execute(statement)).scalar_one())


async def revoke_access_tokens(ctx: UserContext, users: Sequence[Any]) -> int | None:
    """Delete the users' database access tokens (their sessions end); return how many.

    ``None`` when the database has no token table. JWTs cannot be revoked: they stay valid until
    they expire, but FastAPI Users refuses them for an inactive user.
    """
    return await revoke_access_tokens_of(ctx, [user.id for user in users])


async def revoke_each_users_tokens(ctx: UserContext, users: Sequence[Any]) -> dict[Any, int] | None:
    """``revoke_access_tokens`` for each user apart: ``{user id: how many}``; ``None`` without a
    token table."""
    counts: dict[Any, int] = {}
    for user in users:
        revoked = await revoke_access_tokens(ctx, [user])
        if revoked is None:
            return None
        counts[user.id] = revoked
    return counts


async def count_all_access_tokens(ctx: UserContext) -> int | None:
    """How many database access tokens there are, of every user; ``None`` without a token table."""
    table = ctx.model.token_table
    if table is None:
        return None
    return int((await ctx.session.execute(select(func.count()).select_from(table))).scalar_one())


async def revoke_all_access_tokens(ctx: UserContext) -> int | None:
    """Delete every database access token (every user's sessions end, as after a breach); return
    how many. ``None`` when the database has no token table."""
    table = ctx.model.token_table
    if table is None:
        return None
    result = await ctx.session.execute(delete(table))
    return int(getattr(result, "rowcount", 0) or 0)


async def revoke_access_tokens_of(ctx: UserContext, user_ids: Sequence[Any]) -> int | None:
    """``revoke_access_tokens`` by user id, for any number of users (in batches of 500)."""
    table = ctx.model.token_table
    if table is None:
        return None
    revoked = 0
    for start in range(0, len(user_ids), 500):
        batch = list(user_ids[start : start + 500])
        result = await ctx.session.execute(delete(table).where(table.c.user_id.in_(batch)))
        revoked += int(getattr(result, "rowcount", 0) or 0)
    return revoked


async def unlink_oauth(
    ctx: UserContext, user: Any, provider: str, *, account_id: str | None = None
) -> list[OAuthLink]:
    """Remove the user's OAuth account(s) with ``provider`` (and ``account_id``, if given).

    Raises ``OAuthAccountNotFound``, saying which providers the user does have, when none match.
    """
    table = ctx.model.oauth_table
    if table is None:
        raise OAuthAccountNotFound(
            f"no OAuth account {provider!r} for {user.email}: the database has no OAuth table"
        )
    links = await oauth_links(ctx, user) or []
    matching = [
        link
        for link in links
        if link.provider == provider and (account_id is None or link.account_id == account_id)
    ]
    if not matching:
        which = f"{provider}:{account_id}" if account_id is not None else provider
        linked = ", ".join(str(link) for link in links) or "none"
        raise OAuthAccountNotFound(
            f"{user.email} has no OAuth account {which!r} (linked: {linked})"
        )
    statement = delete(table).where(table.c.user_id == user.id, table.c.oauth_name == provider)
    if account_id is not None:
        statement = statement.where(table.c.account_id == account_id)
    await ctx.session.execute(statement)
    return matching


async def delete_logins(ctx: UserContext, user_id: Any) -> None:
    """Delete the OAuth accounts and access tokens of a user about to be deleted.

    The adapter's delete also removes rows whose foreign key says ON DELETE CASCADE; an app's
    own tables may declare the key without it, and their rows would then block the delete.
    """
    for table in (ctx.model.oauth_table, ctx.model.token_table):
        if table is not None:
            await ctx.session.execute(delete(table).where(table.c.user_id == user_id))
