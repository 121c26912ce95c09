"""Options shared by many commands, declared once, and the settings the root command carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from usersctl.commands.render import OutputFormat


@dataclass(frozen=True)
class Settings:
    """What the root options decided, handed to every command through the Typer context."""

    database_url: str
    connect_timeout: float


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root callback stored (or the defaults, when a command runs alone)."""
    root = ctx.find_root()
    if isinstance(root.obj, Settings):
        return root.obj
    from usersctl.engine import DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATABASE_URL

    return Settings(DEFAULT_DATABASE_URL, DEFAULT_CONNECT_TIMEOUT)


def complete_user(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for EMAIL_OR_ID: up to 50 emails from the database, silent on failure."""
    from usersctl.completion import complete_emails

    params = ctx.find_root().params
    url = params.get("database_url") or _default_url()
    return complete_emails(url, incomplete)


def _default_url() -> str:
    import os

    from usersctl.engine import DEFAULT_DATABASE_URL

    return (
        os.environ.get("USERSCTL_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or DEFAULT_DATABASE_URL
    )


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
]
DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run", help="Validate and show what would change, then roll back."),
]
ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Allow removing the last active superuser."),
]
UserArgument = Annotated[
    str,
    typer.Argument(
        metavar="EMAIL_OR_ID",
        help="The user's email (any case) or id.",
        autocompletion=complete_user,
        show_default=False,
    ),
]
UsersArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="EMAIL_OR_ID...",
        help="Emails (any case) or ids of the users.",
        autocompletion=complete_user,
        show_default=False,
    ),
]
PasswordStdinOption = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="Read the password from this file (one trailing newline is stripped).",
        metavar="PATH",
        dir_okay=False,
    ),
]
GeneratePasswordOption = Annotated[
    bool,
    typer.Option(
        "--generate-password",
        help="Generate a strong random password and print it once.",
    ),
]
ActiveFilter = Annotated[
    bool | None,
    typer.Option(
        "--active/--inactive", help="Only active, or only inactive, users.", show_default=False
    ),
]
SuperuserFilter = Annotated[
    bool | None,
    typer.Option(
        "--superuser/--no-superuser",
        help="Only superusers, or only other users.",
        show_default=False,
    ),
]
VerifiedFilter = Annotated[
    bool | None,
    typer.Option(
        "--verified/--unverified",
        help="Only verified, or only unverified, users.",
        show_default=False,
    ),
]
SearchOption = Annotated[
    str | None,
    typer.Option(
        "--search",
        help="Only emails containing this text (any case; % and _ match themselves).",
        metavar="TEXT",
    ),
]
