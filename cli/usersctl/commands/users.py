"""The user commands: create, list, show, update, activate, deactivate, set-password, delete."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from usersctl.commands.errors import ExitCode, fail, run
from usersctl.commands.options import (
    ActiveFilter,
    DryRunOption,
    ForceOption,
    GeneratePasswordOption,
    OutputOption,
    PasswordFileOption,
    PasswordStdinOption,
    SearchOption,
    SuperuserFilter,
    UserArgument,
    UsersArgument,
    VerifiedFilter,
    settings_of,
)
from usersctl.commands.password_input import read_password
from usersctl.commands.render import OutputFormat, render_rows, say

STATUS_COLUMNS = ["id", "email", "status"]


def _finish(ctx_users: Any, dry_run: bool) -> Any:
    """Commit, or roll back for a dry run (the caller awaits the result)."""
    return ctx_users.session.rollback() if dry_run else ctx_users.session.commit()


def create_user(
    ctx: typer.Context,
    email: Annotated[
        str,
        typer.Argument(metavar="EMAIL", help="The new user's email address.", show_default=False),
    ],
    superuser: Annotated[
        bool, typer.Option("--superuser", help="Make the user a superuser.")
    ] = False,
    verified: Annotated[
        bool, typer.Option("--verified", help="Mark the email as verified.")
    ] = False,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create the user inactive.")] = False,
    if_not_exists: Annotated[
        bool,
        typer.Option(
            "--if-not-exists", help="Exit 0 (status unchanged) if the email already exists."
        ),
    ] = False,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    generate_password: GeneratePasswordOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a user, asking for the password on a terminal.

    Example: usersctl create-user admin@example.com --superuser --generate-password
    """
    settings = settings_of(ctx)
    from usersctl.emails import normalize_email

    normalized = run_sync(lambda: normalize_email(email))
    secret = run_sync(
        lambda: read_password(stdin=password_stdin, file=password_file, generate=generate_password)
    )

    async def work() -> dict[str, Any]:
        import asyncio

        from usersctl import users
        from usersctl.passwords import hash_password

        # Hashing takes ~0.1 s of CPU; it runs in a thread while the database is opened.
        hashing = asyncio.ensure_future(asyncio.to_thread(hash_password, secret.password))
        try:
            async with users.open_users(
                settings.database_url, connect_timeout=settings.connect_timeout, write=True
            ) as ctx_users:
                existing = await ctx_users.db.get_by_email(normalized)
                if existing is not None and if_not_exists:
                    row = users.user_row(ctx_users.model, existing)
                    return {**row, "status": "unchanged"}
                result = await users.create_user(
                    ctx_users,
                    normalized,
                    await hashing,
                    is_superuser=superuser,
                    is_verified=verified,
                    is_active=not inactive,
                )
                row = users.user_row(ctx_users.model, result.user)
                await _finish(ctx_users, dry_run)
                return {**row, "status": "would create" if dry_run else "created"}
        finally:
            if not hashing.done():
                hashing.cancel()

    row = run(work)
    if row["status"] == "unchanged":
        say(f"User {row['email']} already exists; nothing changed.")
    if secret.generated and row["status"] != "unchanged":
        row["password"] = secret.password
    columns = [*row.keys()]
    render_rows([row], output, columns=columns, single=True)


def run_sync(function: Any) -> Any:
    """Run a quick check before any database work, with the same error mapping as commands."""

    async def wrapper() -> Any:
        return function()

    return run(wrapper)


def list_users(
    ctx: typer.Context,
    active: ActiveFilter = None,
    superuser: SuperuserFilter = None,
    verified: VerifiedFilter = None,
    search: SearchOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="Users per page.")] = 50,
    after: Annotated[
        str | None,
        typer.Option(
            "--after", metavar="CURSOR", help="Start after this email (the footer gives it)."
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List users in email order, a page at a time.

    Example: usersctl list-users --superuser --search example.com -o json
    """
    settings = settings_of(ctx)

    async def work() -> tuple[list[str], Any]:
        from usersctl import users

        filters = users.UserFilters(active, superuser, verified, search)
        async with users.open_users(
            settings.database_url, connect_timeout=settings.connect_timeout
        ) as ctx_users:
            page = await users.list_users(ctx_users, filters, limit=limit, after=after)
            return ctx_users.model.columns, page

    columns, page = run(work)
    render_rows(page.users, output, columns=columns)
    shown = len(page.users)
    footer = f"{shown} shown of {page.total} matching user{'s' if page.total != 1 else ''}."
    if page.next_after is not None:
        footer += f" Next page: --after '{page.next_after}'"
    say(footer)


def show_user(
    ctx: typer.Context,
    user: UserArgument,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show one user.

    Example: usersctl show-user admin@example.com -o json
    """
    settings = settings_of(ctx)

    async def work() -> tuple[list[str], dict[str, Any]]:
        from usersctl import users

        async with users.open_users(
            settings.database_url, connect_timeout=settings.connect_timeout
        ) as ctx_users:
            found = await users.find_user(ctx_users, user)
            return ctx_users.model.columns, users.user_row(ctx_users.model, found)

    columns, row = run(work)
    render_rows([row], output, columns=columns, single=True)


def update_user(
    ctx: typer.Context,
    user: UserArgument,
    email: Annotated[
        str | None, typer.Option("--email", metavar="NEW", help="New email address.")
    ] = None,
    superuser: Annotated[
        bool | None,
        typer.Option(
            "--superuser/--no-superuser", help="Grant or revoke superuser.", show_default=False
        ),
    ] = None,
    verified: Annotated[
        bool | None,
        typer.Option(
            "--verified/--unverified", help="Mark verified or unverified.", show_default=False
        ),
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Activate or deactivate.", show_default=False),
    ] = None,
    force: ForceOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a user's email or flags. A new email makes the user unverified unless --verified.

    Example: usersctl update-user old@example.com --email new@example.com --verified
    """
    settings = settings_of(ctx)

    async def work() -> tuple[list[str], dict[str, Any], dict[str, Any]]:
        from usersctl import users

        async with users.open_users(
            settings.database_url, connect_timeout=settings.connect_timeout, write=True
        ) as ctx_users:
            found = await users.find_user(ctx_users, user)
            changes = await users.update_user(
                ctx_users,
                found,
                email=email,
                is_superuser=superuser,
                is_verified=verified,
                is_active=active,
                force=force,
            )
            row = users.user_row(ctx_users.model, found)
            await _finish(ctx_users, dry_run)
            return ctx_users.model.columns, row, changes

    columns, row, changes = run(work)
    if not changes:
        status = "unchanged"
    else:
        status = "would update" if dry_run else "updated"
        for name, (old, new) in changes.items():
            say(f"{name}: {old} -> {new}")
    render_rows([{**row, "status": status}], output, columns=[*columns, "status"], single=True)


def _set_active(
    ctx: typer.Context,
    refs: Sequence[str],
    active: bool,
    force: bool,
    dry_run: bool,
    output: OutputFormat,
) -> None:
    settings = settings_of(ctx)

    async def work() -> list[dict[str, Any]]:
        from usersctl import users

        async with users.open_users(
            settings.database_url, connect_timeout=settings.connect_timeout, write=True
        ) as ctx_users:
            found, _ = await users.find_users(ctx_users, refs)
            changed, _ = await users.set_active(ctx_users, found, active, force=force)
            changed_ids = {user.id for user in changed}
            verb = "activated" if active else "deactivated"
            done = f"would be {verb}" if dry_run else verb
            already = "already active" if active else "already inactive"
            rows = [
                {"id": u.id, "email": u.email, "status": done if u.id in changed_ids else already}
                for u in found
            ]
            await _finish(ctx_users, dry_run)
            return rows

    rows = run(work)
    render_rows(rows, output, columns=STATUS_COLUMNS)


def activate_user(
    ctx: typer.Context,
    users_: UsersArgument,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Let users log in again. Users already active are reported and left alone.

    Example: usersctl activate-user alice@example.com bob@example.com
    """
    _set_active(ctx, users_, True, False, dry_run, output)


def deactivate_user(
    ctx: typer.Context,
    users_: UsersArgument,
    force: ForceOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Stop users from logging in, keeping their data. Refuses to deactivate the last superuser.

    Example: usersctl deactivate-user mallory@example.com
    """
    _set_active(ctx, users_, False, force, dry_run, output)


def set_password(
    ctx: typer.Context,
    user: UserArgument,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    generate_password: GeneratePasswordOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Set a user's password, asking for it on a terminal.

    Example: printf '%s\\n' "$NEW_PASSWORD" | usersctl set-password alice@example.com --password-stdin
    """
    settings = settings_of(ctx)
    secret = run_sync(
        lambda: read_password(stdin=password_stdin, file=password_file, generate=generate_password)
    )

    async def work() -> dict[str, Any]:
        import asyncio

        from usersctl import users
        from usersctl.passwords import hash_password

        hashing = asyncio.ensure_future(asyncio.to_thread(hash_password, secret.password))
        async with users.open_users(
            settings.database_url, connect_timeout=settings.connect_timeout, write=True
        ) as ctx_users:
            found = await users.find_user(ctx_users, user)
            await users.set_password(ctx_users, found, await hashing)
            row = {"id": found.id, "email": found.email}
            await _finish(ctx_users, dry_run)
            return {**row, "status": "would set password" if dry_run else "password set"}

    row = run(work)
    columns = list(STATUS_COLUMNS)
    if secret.generated:
        row["password"] = secret.password
        columns.append("password")
    render_rows([row], output, columns=columns, single=True)


def delete_user(
    ctx: typer.Context,
    users_: UsersArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="Users that do not exist are not an error.")
    ] = False,
    force: ForceOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete users with their OAuth accounts and access tokens. Asks first on a terminal.

    Example: usersctl delete-user mallory@example.com --yes
    """
    settings = settings_of(ctx)
    if not (yes or dry_run) and not sys.stdin.isatty():
        fail(
            "refusing to delete without confirmation: no terminal to ask on; pass --yes",
            ExitCode.USAGE,
        )

    async def work() -> list[dict[str, Any]]:
        from usersctl import users

        if not (yes or dry_run):
            # Ask outside the write transaction: a person thinking must not hold SQLite's lock.
            async with users.open_users(
                settings.database_url, connect_timeout=settings.connect_timeout
            ) as ctx_users:
                found, _ = await users.find_users(ctx_users, users_, missing_ok=missing_ok)
                names = ", ".join(u.email for u in found)
            if found and not typer.confirm(f"Delete {len(found)} user(s): {names}?", err=True):
                fail("aborted; nothing was deleted", ExitCode.FAILURE)
        async with users.open_users(
            settings.database_url, connect_timeout=settings.connect_timeout, write=True
        ) as ctx_users:
            found, missing = await users.find_users(ctx_users, users_, missing_ok=missing_ok)
            rows = [{"id": u.id, "email": u.email} for u in found]
            await users.delete_users(ctx_users, found, force=force)
            await _finish(ctx_users, dry_run)
            status = "would delete" if dry_run else "deleted"
            return [{**row, "status": status} for row in rows] + [
                {"id": None, "email": ref, "status": "not found"} for ref in missing
            ]

    rows = run(work)
    render_rows(rows, output, columns=STATUS_COLUMNS)


def register(app: typer.Typer) -> None:
    """Add the user commands to ``app``."""
    app.command("create-user")(create_user)
    app.command("list-users")(list_users)
    app.command("show-user")(show_user)
    app.command("update-user")(update_user)
    app.command("activate-user")(activate_user)
    app.command("deactivate-user")(deactivate_user)
    app.command("set-password")(set_password)
    app.command("delete-user")(delete_user)
