"""The ``usersctl`` command line: root options, the commands, and the entry point."""

from __future__ import annotations

import contextlib
from typing import Annotated, Optional  # noqa: F401  (Typer reads the annotations)

import typer

from usersctl import DEFAULT_DATABASE_URL, __version__
from usersctl.commands import database, doctor, transfer, users, verify
from usersctl.commands.errors import EXIT_CODE_HELP, ExitCode, stdout_closed
from usersctl.commands.options import Settings

app = typer.Typer(
    name="usersctl",
    help=(
        "Administer the users of a FastAPI Users SQL database: create the first superuser, "
        "lock out an account, list, import and export users.\n\n"
        f"{EXIT_CODE_HELP}"
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=True,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"usersctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    database_url: Annotated[
        str,
        typer.Option(
            "--database-url",
            "-d",
            envvar=["USERSCTL_DATABASE_URL", "DATABASE_URL"],
            metavar="URL",
            help="Database URL (sqlite:///path or postgresql://user@host/db).",
        ),
    ] = DEFAULT_DATABASE_URL,
    connect_timeout: Annotated[
        float,
        typer.Option(
            "--connect-timeout",
            min=0.1,
            metavar="SECONDS",
            envvar="USERSCTL_CONNECT_TIMEOUT",
            help="Give up connecting after this many seconds.",
        ),
    ] = 10.0,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            envvar="USERSCTL_USER_MODEL",
            metavar="MODULE:CLASS",
            help=(
                "The app's SQLAlchemy user model, e.g. app.models:User (the current folder is "
                "importable); without it the user table's structure is read from the database."
            ),
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
) -> None:
    """Options shared by every command."""
    ctx.obj = Settings(
        database_url=database_url, connect_timeout=connect_timeout, model_path=model or None
    )


database.register(app)
users.register(app)
transfer.register(app)
doctor.register(app)
verify.register(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="usersctl")
    except BrokenPipeError:  # rendering, after the command's work: | head stopped reading
        with contextlib.suppress(typer.Exit):
            stdout_closed()
        raise SystemExit(int(ExitCode.PIPE_CLOSED)) from None
    except KeyboardInterrupt:
        typer.echo("Error: interrupted", err=True)
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
