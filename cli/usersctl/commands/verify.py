"""The verify-password command: check a password as the app's login would, without the app."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from usersctl.commands.errors import call, run
from usersctl.commands.options import (
    DryRunOption,
    PasswordFileOption,
    PasswordStdinOption,
    UserArgument,
    settings_of,
)
from usersctl.commands.password_input import prompt_hidden, read_password
from usersctl.commands.render import say
from usersctl.errors import InvalidInput

if TYPE_CHECKING:
    from pathlib import Path

    from usersctl.users import PasswordMatch


def verify_password(
    ctx: typer.Context,
    user: UserArgument,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    rehash: Annotated[
        bool,
        typer.Option(
            "--rehash",
            help="On a match with a bcrypt or outdated Argon2 hash, store a new Argon2 hash "
            "(as the app does at the next login).",
        ),
    ] = False,
    dry_run: DryRunOption = False,
) -> None:
    """Check a user's password, asking for it on a terminal: exit 0 if it matches, 6 if not.

    A user who does not exist gets the same answer as a wrong password, after the same work, so
    the command is no oracle for which accounts exist (show-user tells that).

    \b
    Example:
      printf '%s\\n' "$PASSWORD" | usersctl verify-password alice@example.com --password-stdin
      usersctl verify-password alice@example.com --rehash
    """
    settings = settings_of(ctx)
    password = call(lambda: _read_password(password_stdin, password_file))

    async def work() -> tuple[PasswordMatch, dict[str, Any]]:
        from usersctl import users

        async with settings.open_users(write=rehash and not dry_run) as ctx_users:
            match = await users.check_password(ctx_users, user, password, rehash=rehash)
            row = users.user_row(ctx_users.model, match.user)  # before a rollback expires it
            if rehash and not dry_run:
                await ctx_users.session.commit()
            else:
                await ctx_users.session.rollback()
            return match, row

    match, row = run(work, settings)
    email = row["email"]
    say(f"The password matches {email}.")
    if match.scheme != "argon2":
        kind = "bcrypt" if match.scheme == "bcrypt" else "outdated Argon2"
        if match.rehashed:
            verb = "Would replace" if dry_run else "Replaced"
            say(f"{verb} its {kind} hash with a new Argon2 hash.")
        else:
            article = "a" if kind == "bcrypt" else "an"
            say(
                f"It has {article} {kind} hash; the app replaces it at the next login, as --rehash does."
            )
    if not row["is_active"]:
        say(f"Note: {email} is inactive; the app refuses its logins.")
    elif not row["is_verified"]:
        say(f"Note: {email} is not verified; apps that require verification refuse its logins.")


def _read_password(stdin: bool, file: Path | None) -> str:
    """The password to check: from stdin or a file as for every command, else asked once."""
    if stdin or file is not None:
        return read_password(stdin=stdin, file=file, generate=False).password
    if not sys.stdin.isatty():
        raise InvalidInput(
            "no terminal to ask for the password on; use --password-stdin or --password-file PATH"
        )
    password = prompt_hidden(confirm=False)
    if "\x00" in password:
        raise InvalidInput("the password contains a NUL character")
    return password
