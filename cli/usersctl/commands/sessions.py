"""The revoke-sessions command: end users' database sessions (FastAPI Users' DatabaseStrategy)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from usersctl.commands.errors import ExitCode, call, fail, run
from usersctl.commands.named_users import (
    MissingOkOption,
    OptionalNamedUsersArgument,
    find_named,
    read_named,
    say_skipped,
)
from usersctl.commands.options import DryRunOption, OutputOption, settings_of
from usersctl.commands.render import OutputFormat, render_rows, say, to_jsonable
from usersctl.errors import InvalidInput

COLUMNS = ["id", "email", "revoked"]
NO_TOKEN_TABLE = (
    "The database has no access token table: there are no database sessions to revoke "
    "(JWTs cannot be revoked; the app refuses them for an inactive user)."
)


@dataclass
class Revoked:
    """What a run revoked (or, dry, would revoke): per user named, or in all with ``--all``.
    ``token_table`` is None when the database has none."""

    token_table: str | None
    total: int = 0
    users: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def revoke_sessions(
    ctx: typer.Context,
    users_: OptionalNamedUsersArgument = None,
    all_users: Annotated[
        bool,
        typer.Option("--all", help="End every user's sessions (after a breach). Asks first."),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="With --all, do not ask for confirmation.")
    ] = False,
    missing_ok: MissingOkOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """End users' logged-in sessions: delete their database access tokens, in one transaction,
    and say how many. Running it again revokes 0.

    Users are named as arguments, or one per line on stdin with - (blank lines ignored); a user
    that does not exist is exit 3 with nothing revoked, unless --missing-ok. --all ends every
    user's sessions: it asks first on a terminal, and needs --yes without one. JWTs cannot be
    revoked (deactivate-user makes the app refuse them).

    \b
    Example:
      usersctl revoke-sessions alice@example.com bob@example.com
      cut -d, -f1 leaked.csv | usersctl revoke-sessions - --missing-ok
      usersctl revoke-sessions --all --yes
    """
    settings = settings_of(ctx)
    refs = call(lambda: _named_users(users_ or [], all_users, missing_ok))

    if all_users and not (yes or dry_run):
        if not sys.stdin.isatty():
            fail(
                "refusing to revoke every user's sessions without confirmation: no terminal to "
                "ask on; pass --yes",
                ExitCode.USAGE,
            )

        async def count() -> int | None:
            from usersctl import logins

            async with settings.open_users() as ctx_users:
                return await logins.count_all_access_tokens(ctx_users)

        # Asked outside the write transaction and the event loop, as delete-user does.
        sessions = run(count, settings)
        if sessions is not None:
            plural = "" if sessions == 1 else "s"
            question = f"Revoke all {sessions} session{plural}, of every user?"
            if not call(lambda: typer.confirm(question, err=True)):
                fail("aborted; no session was revoked", ExitCode.FAILURE)

    async def work() -> Revoked:
        from usersctl import logins

        async with settings.open_users(write=True) as ctx_users:
            table = ctx_users.model.token_table
            done = Revoked(table.fullname if table is not None else None)
            if all_users:
                done.total = await logins.revoke_all_access_tokens(ctx_users) or 0
            else:
                found, done.missing = await find_named(
                    ctx_users, refs, missing_ok=missing_ok, nothing="nothing was revoked"
                )
                counts = await logins.revoke_each_users_tokens(ctx_users, found) or {}
                done.users = [
                    {"id": user.id, "email": user.email, "revoked": counts.get(user.id, 0)}
                    for user in found
                ]
                done.total = sum(counts.values())
            if dry_run:
                await ctx_users.session.rollback()
            else:
                await ctx_users.session.commit()
            return done

    done = run(work, settings)
    say_skipped(done.missing)
    _report(done, all_users, dry_run)
    if output is OutputFormat.json:
        summary = {
            "revoked": done.total,
            "all": all_users,
            "dry_run": dry_run,
            "token_table": done.token_table,
            "users": [{**row, "id": to_jsonable(row["id"])} for row in done.users],
            "missing": done.missing,
        }
        sys.stdout.write(json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    elif not all_users:
        render_rows(done.users, output, columns=COLUMNS)


def _named_users(given: list[str], all_users: bool, missing_ok: bool) -> list[str]:
    """The users to revoke the sessions of, as named (``-``: read from stdin); none with --all."""
    if all_users:
        if given:
            raise InvalidInput("--all ends every user's sessions; name no users with it")
        if missing_ok:
            raise InvalidInput("--missing-ok goes with named users, not with --all")
        return []
    if not given:
        raise InvalidInput(
            "name the users (EMAIL_OR_ID..., or - to read them from stdin), or pass --all"
        )
    return read_named(given)


def _report(done: Revoked, all_users: bool, dry_run: bool) -> None:
    """What was revoked, a line on stderr per user (or one for --all)."""
    if done.token_table is None:
        say(NO_TOKEN_TABLE)
        return
    verb = "Would revoke" if dry_run else "Revoked"

    def sessions(count: int) -> str:
        return f"{count} session{'' if count == 1 else 's'}"

    if all_users:
        say(f"{verb} every user's sessions: {sessions(done.total)} in all.")
        return
    for row in done.users:
        say(f"{verb} {sessions(row['revoked'])} of {row['email']}.")
    if len(done.users) > 1:
        say(f"{sessions(done.total).capitalize()} in all, of {len(done.users)} users.")
