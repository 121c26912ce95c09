"""Options shared by many commands, declared once, and the settings the root command carries."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from usersctl.users import UserContext

from usersctl.commands.render import OutputFormat


@dataclass(frozen=True)
class Settings:
    """What the root options decided, handed to every command through the Typer context."""

    database_url: str
    connect_timeout: float
    #: ``module.path:ClassName`` of the app's user model (``--model``); None reads the table.
    model_path: str | None = None

    def open_users(self, *, write: bool = False) -> AbstractAsyncContextManager[UserContext]:
        """One session on the configured database, with its user model (``usersctl.users``)."""
        from usersctl.users import open_users

        return open_users(
            self.database_url,
            connect_timeout=self.connect_timeout,
            write=write,
            model_path=self.model_path,
        )


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
    # Emails match in any case, but Typer keeps only completions that start with the typed text:
    # keep what was typed and complete the rest (users are found in any case anyway).
    emails = complete_emails(url, incomplete, params.get("model") or None)
    return [incomplete + email[len(incomplete) :] for email in emails]


def _default_url() -> str:
    import os

    from usersctl import DEFAULT_DATABASE_URL

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
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="FIELD=VALUE",
        help="Set another column of the user table (repeatable), e.g. --set tenant_id=3; "
        "null for NULL. Arrays and JSON as JSON text (--set 'tags=[\"a\"]'), bytes as base64, "
        "times in ISO 8601, enums by name.",
        show_default=False,
    ),
]
KeepSessionsOption = Annotated[
    bool,
    typer.Option(
        "--keep-sessions",
        help="Do not revoke the user's database access tokens (logged-in sessions).",
    ),
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
