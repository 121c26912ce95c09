"""Options shared by many commands, declared once, and the settings the root command carries."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from usersctl.database_url import DatabaseURL
    from usersctl.passwords import Hashing
    from usersctl.users import UserContext, UserFilters

from usersctl.commands.errors import CommitGuard
from usersctl.commands.render import OutputFormat


@dataclass(frozen=True)
class Settings:
    """What the root options decided, handed to every command through the Typer context."""

    database_url: str
    connect_timeout: float
    #: ``module.path:ClassName`` of the app's user model (``--model``); None reads the table.
    model_path: str | None = None
    #: Where ``database_url`` came from, in words (``usersctl.database_url``).
    url_source: str = "the built-in default"
    #: The user table (``--table``); None finds it by its columns.
    table: str | None = None
    #: This invocation's hold on Ctrl-C once a commit begins; released when the command ends.
    commit_guard: CommitGuard = field(default_factory=CommitGuard, compare=False, repr=False)
    #: The scheme of new password hashes (``--hash-scheme``): auto, argon2 or bcrypt.
    hash_scheme: str = "auto"
    #: ``module.path:attribute`` of the app's own password helper (``--password-helper``).
    password_helper_path: str | None = None
    #: ``module.path:attribute`` of the app's user manager (``--user-manager``), or None.
    user_manager_path: str | None = None
    #: ``-q/--quiet``: no informational messages on stderr (``render.say``), errors and
    #: warnings all the same.
    quiet: bool = False

    def checked_url(self) -> str:
        """The database URL, refused when it is the built-in default and its file is missing."""
        from usersctl.database_url import DatabaseURL, require_database
        from usersctl.errors import DatabaseProblem

        try:
            return require_database(DatabaseURL(self.database_url, self.url_source))
        except DatabaseProblem:
            if self.model_path:  # a --model that cannot be used is said first, as ever
                from usersctl.models import load_user_model

                load_user_model(self.model_path, self.table)
            raise

    def password_helper(self) -> Hashing | None:
        """The app's own password helper, loaded; None without ``--password-helper``.

        With ``--user-manager`` the manager's own ``password_helper`` hashes (``open_manager``),
        so ``--password-helper`` or a ``--hash-scheme`` beside it is refused here, not ignored."""
        from usersctl.errors import InvalidInput

        if self.user_manager_path is not None:
            for given, option in (
                (self.password_helper_path is not None, "--password-helper"),
                (self.hash_scheme != "auto", "--hash-scheme"),
            ):
                if given:
                    raise InvalidInput(
                        f"{option} and --user-manager exclude each other: the manager's "
                        "password_helper hashes"
                    )
            return None
        if self.password_helper_path is None:
            return None
        from usersctl.hash_choice import load_password_helper

        if self.hash_scheme != "auto":
            raise InvalidInput(
                "--hash-scheme and --password-helper exclude each other: the app's helper "
                "decides the scheme"
            )
        return load_password_helper(self.password_helper_path)

    def open_users(self, *, write: bool = False) -> AbstractAsyncContextManager[UserContext]:
        """One session on the configured database, with its user model (``usersctl.users``)."""
        from usersctl.users import open_users

        return open_users(
            self.checked_url(),
            connect_timeout=self.connect_timeout,
            write=write,
            model_path=self.model_path,
            table=self.table,
        )

    def open_manager(self, ctx_users: UserContext) -> AbstractAsyncContextManager[Any]:
        """The app's user manager over this session's adapter (``usersctl.user_manager``);
        None without ``--user-manager``."""
        if self.user_manager_path is None:
            return nullcontext(None)
        from usersctl.user_manager import open_manager

        return open_manager(self.user_manager_path, ctx_users.db)


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the root callback stored (or the defaults, when a command runs alone)."""
    root = ctx.find_root()
    if isinstance(root.obj, Settings):
        return root.obj
    from usersctl.engine import DEFAULT_CONNECT_TIMEOUT, DEFAULT_DATABASE_URL

    settings = Settings(DEFAULT_DATABASE_URL, DEFAULT_CONNECT_TIMEOUT)
    ctx.call_on_close(settings.commit_guard.release)
    return settings


def complete_user(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion for EMAIL_OR_ID: up to 50 emails from the database, silent on failure."""
    from usersctl.completion import complete_emails

    root = ctx.find_root()
    params = root.params
    try:
        database = database_url_of(root, params.get("database_url"), params.get("env_file"))
    except Exception:  # completion stays silent
        return []
    # Emails match in any case, but Typer keeps only completions that start with the typed text:
    # keep what was typed and complete the rest (users are found in any case anyway).
    emails = complete_emails(
        database.url, incomplete, params.get("model") or None, params.get("table") or None
    )
    return [incomplete + email[len(incomplete) :] for email in emails]


def database_url_of(ctx: Any, given: str | None, env_file: Path | None) -> DatabaseURL:
    """The database URL the root options and the environment select, and where it came from.

    ``ctx`` is the root context (Click's, or the copy Typer vendors): it says whether ``given``
    was typed or read by Click from a variable, which ``resolve_database_url`` looks at itself."""
    from usersctl.database_url import resolve_database_url

    typed = getattr(ctx.get_parameter_source("database_url"), "name", "") == "COMMANDLINE"
    return resolve_database_url(given if typed else None, env_file)


OutputOption = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format.", case_sensitive=False),
]
RawCsvOption = Annotated[
    bool,
    typer.Option(
        "--raw-csv",
        help="Write CSV cells exactly as stored, without the ' put before text that starts with "
        "= + - @, a tab or a carriage return (which a spreadsheet would run as a formula).",
    ),
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
AllowWeakPasswordOption = Annotated[
    bool,
    typer.Option(
        "--allow-weak-password",
        help="Accept a password that the password policy refuses (and say so).",
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
EmailFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--email",
        metavar="ADDRESS",
        help="Only this address, in any case (repeatable: any of them), e.g. "
        "--email alice@example.com --email bob@example.com.",
        show_default=False,
    ),
]
EmailDomainFilter = Annotated[
    str | None,
    typer.Option(
        "--email-domain",
        metavar="DOMAIN",
        help="Only addresses at exactly this domain, in any case (IDNA-normalised; not its "
        "subdomains), e.g. --email-domain old-corp.net.",
        show_default=False,
    ),
]
IdFilter = Annotated[
    list[str] | None,
    typer.Option(
        "--id",
        metavar="ID",
        help="Only the user with this id (repeatable: any of them), e.g. --id 7 --id 9.",
        show_default=False,
    ),
]
CreatedAfterFilter = Annotated[
    str | None,
    typer.Option(
        "--created-after",
        metavar="WHEN",
        help="Only users created at or after this ISO 8601 date or time, e.g. "
        "--created-after 2024-01-01 (the table's created_at, created, date_joined or "
        "created_on column).",
        show_default=False,
    ),
]
CreatedBeforeFilter = Annotated[
    str | None,
    typer.Option(
        "--created-before",
        metavar="WHEN",
        help="Only users created before this ISO 8601 date or time, e.g. "
        "--created-before 2024-02-01T12:00:00.",
        show_default=False,
    ),
]
ColumnsOption = Annotated[
    str | None,
    typer.Option(
        "--columns",
        metavar="NAME,...",
        help="Only these fields, in this order, in every output format, e.g. "
        "--columns id,email,is_active.",
        show_default=False,
    ),
]


def column_names(given: str | None) -> list[str] | None:
    """The names ``--columns`` lists (``usersctl.users.choose_columns`` checks them)."""
    return None if given is None else [name.strip() for name in given.split(",")]


def only(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Each row with just ``columns``, in that order (what JSON and JSON lines print)."""
    return [{name: row.get(name) for name in columns} for row in rows]


def list_filters(
    *,
    active: bool | None,
    superuser: bool | None,
    verified: bool | None,
    search: str | None,
    emails: Sequence[str] | None,
    email_domain: str | None,
    ids: Sequence[str] | None,
    created_after: str | None,
    created_before: str | None,
) -> UserFilters:
    """The filters of list-users (``ActiveFilter`` ... ``CreatedBeforeFilter``) as one
    ``UserFilters``: list-users, export-users and apply --prune take the same nine options."""
    from usersctl.users import user_filters

    return user_filters(
        is_active=active,
        is_superuser=superuser,
        is_verified=verified,
        search=search,
        emails=emails or (),
        email_domain=email_domain,
        ids=ids or (),
        created_after=created_after,
        created_before=created_before,
    )
