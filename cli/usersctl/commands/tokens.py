"""Links and tokens the app accepts: reset-link, verify-link, issue-token."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from usersctl.commands.errors import ExitCode, call, fail, run
from usersctl.commands.options import OutputOption, UserArgument, settings_of
from usersctl.commands.password_input import strip_newline
from usersctl.commands.render import OutputFormat, for_terminal, render_rows, say, warn
from usersctl.errors import InvalidInput

SecretEnvOption = Annotated[
    str | None,
    typer.Option(
        "--secret-env",
        metavar="NAME",
        help="Read the app's secret from this environment variable (never from argv).",
        show_default=False,
    ),
]
SecretFileOption = Annotated[
    Path | None,
    typer.Option(
        "--secret-file",
        metavar="PATH",
        help="Read the app's secret from this file (one trailing newline is stripped).",
        dir_okay=False,
        show_default=False,
    ),
]
LifetimeOption = Annotated[
    str | None,
    typer.Option(
        "--lifetime",
        metavar="DURATION",
        help="How long the token is valid: seconds, or 90s, 15m, 1h, 2d (default 1h, or the "
        "user manager's).",
        show_default=False,
    ),
]
UrlTemplateOption = Annotated[
    str | None,
    typer.Option(
        "--url-template",
        metavar="URL",
        help="Print a link instead of the token: {token} in URL is replaced by it.",
        show_default=False,
    ),
]


def read_secret(env: str | None, file: Path | None) -> str:
    """The secret from ``--secret-env`` or ``--secret-file``: exactly one of them."""
    if env is not None and file is not None:
        raise InvalidInput("choose one secret source, not --secret-env and --secret-file")
    if env is not None:
        secret = os.environ.get(env)
        if secret is None:
            raise InvalidInput(f"the environment variable {env} is not set")
    elif file is not None:
        try:
            secret = strip_newline(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidInput(f"secret file {file} does not exist") from None
        except UnicodeDecodeError:
            raise InvalidInput(f"secret file {file} is not UTF-8 text") from None
        except OSError as exc:
            raise InvalidInput(f"cannot read secret file {file}: {exc.strerror}") from None
    else:
        raise InvalidInput("no secret: give --secret-env NAME or --secret-file PATH")
    if not secret:
        raise InvalidInput("the secret is empty")
    if len(secret.encode("utf-8")) < 32:
        warn("Warning: the secret is shorter than 32 bytes, the least RFC 7518 advises for HS256.")
    return secret


def _lifetime(text: str | None, default: int) -> int:
    from usersctl.tokens import parse_lifetime

    return default if text is None else parse_lifetime(text)


def _link(template: str | None, token: str) -> str | None:
    if template is None:
        return None
    if "{token}" not in template:
        raise InvalidInput("--url-template must contain {token}")
    return template.replace("{token}", token)


def _expires(lifetime: int | None) -> str | None:
    if not lifetime:
        return None
    return (datetime.now(timezone.utc) + timedelta(seconds=lifetime)).isoformat(timespec="seconds")


def _print_token(row: dict[str, Any], output: OutputFormat, key: str) -> None:
    """The token (or link) alone on stdout, for a script or a person to copy; other formats get
    the whole row."""
    if output == OutputFormat.table:
        typer.echo(row[key])
    else:
        render_rows([row], output, columns=list(row), single=True)


def _secret_unless_managed(settings: Any, env: str | None, file: Path | None) -> str | None:
    """The secret given; None to take the user manager's (``--user-manager``)."""
    if env is None and file is None and settings.user_manager_path is not None:
        return None
    return call(lambda: read_secret(env, file))


def _manager_setting(manager: Any, name: str) -> Any:
    if manager is None:
        return None
    value = getattr(manager, name, None)
    if name.endswith("_secret") and value is not None:
        from usersctl.user_manager import secret_value

        return secret_value(value)
    return value


def _finish_link(row: dict[str, Any], url_template: str | None, output: OutputFormat) -> None:
    link = call(lambda: _link(url_template, row["token"]))
    if link is not None:
        row["link"] = link
    seconds = row.pop("lifetime")
    row["expires_at"] = _expires(seconds)
    _print_token(row, output, "link" if link is not None else "token")


AudienceOption = Annotated[
    str | None,
    typer.Option(
        "--audience",
        help="The token's audience (aud claim); default FastAPI Users' (or the user manager's).",
        show_default=False,
    ),
]


def reset_link(
    ctx: typer.Context,
    user: UserArgument,
    secret_env: SecretEnvOption = None,
    secret_file: SecretFileOption = None,
    url_template: UrlTemplateOption = None,
    lifetime: LifetimeOption = None,
    audience: AudienceOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Make a link for an inactive user too.")
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print a reset-password token (or link) that the app's POST /auth/reset-password accepts.

    Made as FastAPI Users' forgot-password makes it, signed with the app's
    reset_password_token_secret (from --secret-env/--secret-file, or the --user-manager's); it
    stops working once the password changes.

    \b
    Example:
      usersctl reset-link alice@example.com --secret-env RESET_SECRET
      usersctl reset-link alice@example.com --secret-file /run/secrets/reset \\
        --url-template 'https://app.example/reset?token={token}' --lifetime 30m
    """
    settings = settings_of(ctx)
    secret = _secret_unless_managed(settings, secret_env, secret_file)
    seconds = call(lambda: _lifetime(lifetime, 0))

    async def work() -> dict[str, Any]:
        import asyncio

        from usersctl import tokens, users
        from usersctl.passwords import hash_password

        async with (
            settings.open_users() as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            found = await users.find_user(ctx_users, user)
            row = {"id": found.id, "email": found.email}
            fingerprint = manager.password_helper.hash if manager is not None else hash_password
            lasts = (
                seconds
                or _manager_setting(manager, "reset_password_token_lifetime_seconds")
                or tokens.DEFAULT_LIFETIME
            )
            # The fingerprint is a password hash: a thread, not the event loop.
            token = await asyncio.to_thread(
                tokens.reset_token,
                found,
                secret or _manager_setting(manager, "reset_password_token_secret") or "",
                fingerprint=fingerprint,
                lifetime=lasts,
                audience=audience
                or _manager_setting(manager, "reset_password_token_audience")
                or tokens.RESET_AUDIENCE,
                force=force,
            )
            if not found.is_active:
                warn(f"Warning: {found.email} is inactive; the app refuses the reset until then.")
            return {**row, "token": token, "lifetime": lasts}

    row = run(work, settings)
    _finish_link(row, url_template, output)
    say(f"Reset token for {row['email']}, valid until {row['expires_at']}.")


def verify_link(
    ctx: typer.Context,
    user: UserArgument,
    secret_env: SecretEnvOption = None,
    secret_file: SecretFileOption = None,
    url_template: UrlTemplateOption = None,
    lifetime: LifetimeOption = None,
    audience: AudienceOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print a verification token (or link) that the app's POST /auth/verify accepts.

    Made as FastAPI Users' request-verify makes it, signed with the app's
    verification_token_secret (from --secret-env/--secret-file, or the --user-manager's). A user
    already verified gets none (exit 4).

    \b
    Example:
      usersctl verify-link bob@example.com --secret-env VERIFY_SECRET
      usersctl verify-link bob@example.com --secret-env VERIFY_SECRET \\
        --url-template 'https://app.example/verify?token={token}'
    """
    settings = settings_of(ctx)
    secret = _secret_unless_managed(settings, secret_env, secret_file)
    seconds = call(lambda: _lifetime(lifetime, 0))

    async def work() -> dict[str, Any]:
        from usersctl import tokens, users

        async with (
            settings.open_users() as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            found = await users.find_user(ctx_users, user)
            lasts = (
                seconds
                or _manager_setting(manager, "verification_token_lifetime_seconds")
                or tokens.DEFAULT_LIFETIME
            )
            token = tokens.verify_token(
                found,
                secret or _manager_setting(manager, "verification_token_secret") or "",
                lifetime=lasts,
                audience=audience
                or _manager_setting(manager, "verification_token_audience")
                or tokens.VERIFY_AUDIENCE,
            )
            return {"id": found.id, "email": found.email, "token": token, "lifetime": lasts}

    row = run(work, settings)
    _finish_link(row, url_template, output)
    say(f"Verification token for {row['email']}, valid until {row['expires_at']}.")


def forgot_password(ctx: typer.Context, user: UserArgument) -> None:
    """Call the app's forgot_password (needs --user-manager): the app makes the reset token and
    sends its own email through its on_after_forgot_password hook. The token is not printed.

    \b
    Example:
      usersctl --user-manager app.users:get_user_manager forgot-password alice@example.com
      USERSCTL_USER_MANAGER=app.users:get_user_manager usersctl forgot-password alice@example.com
    """
    _through_manager(ctx, user, "forgot_password", "on_after_forgot_password")


def request_verify(ctx: typer.Context, user: UserArgument) -> None:
    """Call the app's request_verify (needs --user-manager): the app makes the verification
    token and sends its own email through its on_after_request_verify hook.

    \b
    Example:
      usersctl --user-manager app.users:get_user_manager request-verify bob@example.com
      USERSCTL_USER_MANAGER=app.users:get_user_manager usersctl request-verify bob@example.com
    """
    _through_manager(ctx, user, "request_verify", "on_after_request_verify")


def _through_manager(ctx: typer.Context, user: str, method: str, hook: str) -> None:
    settings = settings_of(ctx)
    if settings.user_manager_path is None:
        fail(
            f"{method.replace('_', '-')} calls the app's own {method}: give --user-manager "
            "module.path:attribute (reset-link and verify-link print a token without it)",
            ExitCode.USAGE,
        )

    async def work() -> str:
        from usersctl import user_manager, users

        async with (
            settings.open_users(write=True) as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            found = await users.find_user(ctx_users, user)
            email = str(found.email)
            # Its hook sends the email and may write; what it writes is the app's to commit.
            await getattr(user_manager, method)(manager, found)
            await ctx_users.session.commit()
            return email

    email = run(work, settings)
    say(f"Called the app's {method} for {email}: its {hook} hook has the token.")


class Strategy(str, Enum):
    database = "database"
    jwt = "jwt"


def issue_token(
    ctx: typer.Context,
    user: UserArgument,
    strategy: Annotated[
        Strategy,
        typer.Option(
            "--strategy",
            help="database: a row in the app's access token table; jwt: a signed JWT.",
            case_sensitive=False,
        ),
    ],
    secret_env: SecretEnvOption = None,
    secret_file: SecretFileOption = None,
    lifetime: LifetimeOption = None,
    algorithm: Annotated[
        str, typer.Option("--algorithm", help="The JWT's algorithm: HS256, HS384 or HS512.")
    ] = "HS256",
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Issue one for a superuser without asking.")
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Issue an access token for a user and print it once: a Bearer token the app accepts.

    --strategy database inserts it into the app's access token table (FastAPI Users'
    DatabaseStrategy; its lifetime is the app's); --strategy jwt signs it as JWTStrategy does,
    with the app's secret. An inactive user gets none; a superuser's asks first on a terminal.

    \b
    Example:
      usersctl issue-token support@example.com --strategy database
      usersctl issue-token robot@example.com --strategy jwt --secret-env JWT_SECRET --lifetime 1d
    """
    settings = settings_of(ctx)
    if strategy == Strategy.jwt:
        secret = call(lambda: read_secret(secret_env, secret_file))
        seconds: int | None = call(lambda: _lifetime(lifetime, 3600))
    else:
        for given, name in (
            (secret_env or secret_file, "--secret-env/--secret-file"),
            (lifetime, "--lifetime"),
        ):
            if given:
                fail(
                    f"{name} is for --strategy jwt; a database token lives as long as the "
                    "app's DatabaseStrategy says",
                    ExitCode.USAGE,
                )
        secret, seconds = "", None

    async def superuser_email() -> str | None:
        from usersctl import users

        async with settings.open_users() as ctx_users:
            found = await users.find_user(ctx_users, user)
            return str(found.email) if found.is_superuser else None

    if not yes:
        # Asked outside the write transaction and the event loop, as delete-user does.
        email = run(superuser_email, settings)
        if email is not None:
            if not sys.stdin.isatty():
                fail(
                    f"{email} is a superuser: refusing to issue a token without confirmation "
                    "(no terminal to ask on); pass --yes",
                    ExitCode.USAGE,
                )
            question = f"{for_terminal(email)} is a superuser. Issue an access token for them?"
            if not call(lambda: typer.confirm(question, err=True)):
                fail("aborted; no token was issued", ExitCode.FAILURE)

    async def work() -> dict[str, Any]:
        from usersctl import tokens, users

        async with settings.open_users(write=strategy == Strategy.database) as ctx_users:
            found = await users.find_user(ctx_users, user)
            row: dict[str, Any] = {"id": found.id, "email": found.email}
            if strategy == Strategy.database:
                issued = await tokens.issue_database_token(ctx_users, found)
                await ctx_users.session.commit()
                row["token"] = issued.token
            else:
                row["token"] = tokens.access_jwt(
                    found, secret, lifetime=seconds, algorithm=algorithm.upper()
                )
            return row

    row = run(work, settings)
    row["strategy"] = strategy.value
    row["expires_at"] = _expires(seconds)
    _print_token(row, output, "token")
    until = f", valid until {row['expires_at']}" if seconds else ""
    say(f"Access token ({strategy.value}) for {row['email']}{until}; it is not shown again.")
