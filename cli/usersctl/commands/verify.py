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

    from usersctl.hash_choice import HashChoice
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
    helper = call(settings.password_helper)
    password = call(lambda: _read_password(password_stdin, password_file))

    async def work() -> tuple[PasswordMatch, HashChoice, dict[str, Any]]:
        from usersctl import users

        async with (
            settings.open_users(write=rehash and not dry_run) as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            hashing = helper
            if manager is not None:  # the app's login checks with the manager's helper
                from usersctl.user_manager import manager_hashing

                hashing = manager_hashing(manager, settings.user_manager_path or "")
            choice = await users.choose_hashing(ctx_users, settings.hash_scheme, hashing)
            match = await users.check_password(
                ctx_users, user, password, rehash=rehash, hashing=choice.hashing
            )
            row = users.user_row(ctx_users.model, match.user)  # before a rollback expires it
            if rehash and not dry_run:
                await ctx_users.session.commit()
            else:
                await ctx_users.session.rollback()
            return match, choice, row

    match, choice, row = run(work, settings)
    email = row["email"]
    say(f"The password matches {email}.")
    _say_what_becomes_of_the_hash(match, choice, dry_run)
    if not row["is_active"]:
        say(f"Note: {email} is inactive; the app refuses its logins.")
    elif not row["is_verified"]:
        say(f"Note: {email} is not verified; apps that require verification refuse its logins.")


def _say_what_becomes_of_the_hash(match: PasswordMatch, choice: HashChoice, dry_run: bool) -> None:
    """Whether the matched hash is replaced (by --rehash, or by the app at its next login), and
    a warning when the installed FastAPI Users cannot verify it."""
    from usersctl.hash_choice import app_verifies_argon2, fastapi_users_version

    names = {"bcrypt": "bcrypt", "argon2": "Argon2", "argon2-outdated": "outdated Argon2"}

    def name(scheme: str | None) -> str:
        return names.get(scheme or "", "unknown-scheme")

    def a(scheme: str | None) -> str:
        return f"{'an' if name(scheme)[0] in 'AEIOUaeiou' else 'a'} {name(scheme)}"

    helper = choice.hashing.helper is not None
    if match.rehashed:
        verb = "Would replace" if dry_run else "Replaced"
        say(f"{verb} its {name(match.scheme)} hash with a new {name(match.replacement)} hash.")
    elif match.replacement is not None:
        # The app's own helper answers for the app. Without it: FastAPI Users 13 and later (its
        # default helper) re-hash bcrypt and outdated Argon2 as Argon2 at the login; 12 and
        # older keep whatever bcrypt they verify.
        if helper or (match.replacement == "argon2" and app_verifies_argon2()):
            say(
                f"It has {a(match.scheme)} hash; the app replaces it at the next login, as --rehash does."
            )
        else:
            say(
                f"It has {a(match.scheme)} hash; --rehash replaces it with {a(match.replacement)} one."
            )
    elif match.scheme != "argon2":
        why = (
            f"{choice.hashing.helper_path} keeps it"
            if helper
            else (choice.reason or "--hash-scheme bcrypt")
        )
        say(f"It has {a(match.scheme)} hash, which stays: {why}.")
    if not helper and match.scheme.startswith("argon2") and app_verifies_argon2() is False:
        shown = ".".join(map(str, fastapi_users_version() or ()))
        say(
            f"Warning: the installed FastAPI Users {shown} verifies bcrypt only: this user's "
            "login fails (HTTP 500) until verify-password --rehash or set-password writes bcrypt."
        )


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
