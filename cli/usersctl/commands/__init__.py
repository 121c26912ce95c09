"""The ``usersctl`` command line: root options, the commands, and the entry point."""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib
import math
import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, Any, Optional, cast  # noqa: F401  (Typer reads the annotations)

import typer
from typer.core import TyperCommand, TyperGroup

from usersctl import DEFAULT_DATABASE_URL, __version__
from usersctl.commands.errors import EXIT_CODE_HELP, ExitCode, fail, stdout_closed
from usersctl.commands.options import Settings
from usersctl.commands.render import QUIET

#: Every command, in the order ``--help`` lists them, and the module and function that make it.
COMMANDS: dict[str, tuple[str, str]] = {
    "init-db": ("database", "init_db"),
    "create-user": ("users", "create_user"),
    "list-users": ("users", "list_users"),
    "show-user": ("users", "show_user"),
    "update-user": ("users", "update_user"),
    "activate-user": ("users", "activate_user"),
    "deactivate-user": ("users", "deactivate_user"),
    "set-password": ("users", "set_password"),
    "delete-user": ("users", "delete_user"),
    "revoke-sessions": ("sessions", "revoke_sessions"),
    "unlink-oauth": ("users", "unlink_oauth"),
    "export-users": ("transfer", "export_users"),
    "import-users": ("transfer", "import_users"),
    "apply": ("apply", "apply"),
    "doctor": ("doctor", "doctor"),
    "verify-password": ("verify", "verify_password"),
    "reset-link": ("tokens", "reset_link"),
    "verify-link": ("tokens", "verify_link"),
    "issue-token": ("tokens", "issue_token"),
    "forgot-password": ("tokens", "forgot_password"),
    "request-verify": ("tokens", "request_verify"),
}


# Arguments that are not UTF-8 ---------------------------------------------------------------


def _undecodable(value: Any) -> bool:
    """Whether ``value`` holds bytes that were not UTF-8: Python keeps those of an argument or
    an environment variable as lone surrogates (``\\udcff``), which nothing can write."""
    if not isinstance(value, str) or value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _takes_text(param: Any) -> bool:
    """Every parameter but file paths (of a path type, or named ``FILE``, which may be ``-``):
    those are the system's bytes, and open as they are."""
    if getattr(param.type, "name", "") in ("path", "filename"):
        return False
    return "FILE" not in str(getattr(param, "metavar", None) or "")


def _shown_name(param: Any) -> str:
    """``--search`` for an option, ``EMAIL_OR_ID`` for an argument."""
    opts = [str(opt) for opt in getattr(param, "opts", ())]
    if getattr(param, "param_type_name", "") == "option" and opts:
        return next((opt for opt in opts if opt.startswith("--")), opts[0])
    return str(param.human_readable_name).removesuffix("...")  # EMAIL_OR_ID... takes several


def refuse_undecodable(command: Any, ctx: Any, args: list[str]) -> None:
    """Exit 2 naming the option, argument or environment variable whose value is not valid
    UTF-8 (``Error: --search is not valid UTF-8``), before any of them is used: an email, a
    URL or a search cannot be encoded for the database, and would fail in the middle of the
    work. One check for the root options and every command's (``Utf8Arguments``). File paths
    are left alone: the system takes them as bytes."""
    params = [param for param in command.get_params(ctx) if _takes_text(param)]
    if not any(_undecodable(arg) for arg in args) and not any(
        _undecodable(os.environ.get(name)) for param in params for name in _envvars(param)
    ):
        return
    try:
        given, _, _ = command.make_parser(ctx).parse_args(args=list(args))
    except Exception:  # a usage error, which Click reports as it parses (the bytes escaped)
        return
    for param in params:
        values = given.get(param.name)
        if values is None:
            continue
        if any(_undecodable(value) for value in _each(values)):
            fail(f"{_shown_name(param)} is not valid UTF-8", ExitCode.USAGE)
    for param in params:
        if given.get(param.name) is None:
            for name in _envvars(param):
                value = os.environ.get(name)
                if _undecodable(value):
                    fail(
                        f"the environment variable {name} ({_shown_name(param)}) is not "
                        "valid UTF-8",
                        ExitCode.USAGE,
                    )
                if value:
                    break  # the first one set is the one used


def _each(values: Any) -> list[Any]:
    return list(values) if isinstance(values, (list, tuple)) else [values]


def _envvars(param: Any) -> list[str]:
    envvar = getattr(param, "envvar", None)
    return [] if not envvar else [envvar] if isinstance(envvar, str) else list(envvar)


class Utf8Arguments:
    """Mixin for Click commands: ``refuse_undecodable`` before parsing."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and not ctx.resilient_parsing:  # not while the shell completes a word
            refuse_undecodable(self, ctx, args)
        parsed: list[str] = super().parse_args(ctx, args)  # type: ignore[misc]
        return parsed


class Command(Utf8Arguments, TyperCommand):
    """Every usersctl command."""


class LazyCommands(Utf8Arguments, TyperGroup):
    """The root group. A command's module is imported, and its Click command built, only when
    that command is asked for: ``show-user`` does not pay for the import machinery of
    ``import-users``. ``--help``, shell completion and "Did you mean" still see them all."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Typer declares a mutable mapping; it only reads this one (add_command is not used).
        self.commands = cast("MutableMapping[str, Any]", _CommandsByName())

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)  # the names alone, without building every command

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self.root_options_first(ctx, args))

    def root_options_first(self, ctx: Any, args: list[str]) -> list[str]:
        """``args`` with the root options that follow the command name (``usersctl list-users
        -d URL``, as gh and kubectl take them) moved just before it, values and all.

        The command's own options, with their values, stay where they are, whatever the values
        look like (``--search -d``); so does everything after ``--``. No command has an option
        of a root option's name (a test walks them all), so nothing is ambiguous."""
        help_names = tuple(ctx.help_option_names)
        root = _option_values(self.params, help_names)
        index = 0
        while index < len(args) and args[index].startswith("-") and args[index] not in ("-", "--"):
            index += 1 + _values_after(args[index], root)  # a root option before the command
        if index >= len(args) or args[index] not in COMMANDS:
            return args
        own = _option_values(build_command(args[index]).params, ())
        own.update(dict.fromkeys(help_names, 0))
        moved: list[str] = []
        kept: list[str] = []
        at = index + 1
        while at < len(args):
            token = args[at]
            if token == "--":
                kept += args[at:]
                break
            for options, taken in ((own, kept), (root, moved)):
                if _names(token, options):
                    step = 1 + _values_after(token, options)
                    if at + step > len(args) and taken is moved and not ctx.resilient_parsing:
                        ctx.fail(f"Option {token!r} requires an argument.")  # not the command name
                    taken += args[at : at + step]
                    at += step
                    break
            else:
                kept.append(token)
                at += 1
        return [*args[:index], *moved, args[index], *kept]

    # Ctrl-C outside a command's database work (parsing, loading the command's module, reading
    # a file, printing a dry run's result) reaches these two; Click would exit 130 without a
    # word. Once a commit has begun, the command's CommitGuard holds Ctrl-C off, so nothing was
    # committed when it gets here.
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _interrupt_is_one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _interrupt_is_one_line():
            return super().invoke(ctx)


def _option_values(params: list[Any], extra: tuple[str, ...]) -> dict[str, int]:
    """How many values follow each option name of ``params`` (0 for a flag)."""
    found = dict.fromkeys(extra, 0)
    for param in params:
        if getattr(param, "param_type_name", "") != "option":
            continue
        count = 0 if param.is_flag or param.count else max(param.nargs, 1)
        for name in (*param.opts, *param.secondary_opts):
            found[name] = count
    return found


def _names(token: str, options: Mapping[str, int]) -> bool:
    """Whether ``token`` is one of ``options``: ``--name``, ``--name=VALUE``, ``-n``, or ``-nVALUE``
    for a short option that takes a value."""
    if token.startswith("--"):
        return token.partition("=")[0] in options
    if token in options:
        return True
    return len(token) > 2 and token[0] == "-" and options.get(token[:2], 0) > 0


def _values_after(token: str, options: Mapping[str, int]) -> int:
    """How many of the following arguments are the values of the option ``token``."""
    if token in options:
        return options[token]
    return 0  # --name=VALUE, -nVALUE, or an unknown option (the parser will say so)


@contextlib.contextmanager
def _interrupt_is_one_line() -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        typer.echo("Error: interrupted", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


class _CommandsByName(Mapping[str, Any]):
    """The group's commands by name, each built the first time it is looked up."""

    def __getitem__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        return build_command(name)

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


@functools.cache
def build_command(name: str) -> Any:
    """The Click command for ``name``, built by Typer from its function."""
    module_name, function_name = COMMANDS[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    single = typer.Typer(
        add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False
    )
    single.command(name, cls=Command)(getattr(module, function_name))
    return typer.main.get_command(single)


app = typer.Typer(
    cls=LazyCommands,
    name="usersctl",
    help=(
        "Administer the users of a FastAPI Users SQL database: create the first superuser, "
        "lock out an account, list, import and export users.\n\n"
        "The options below may also follow the command name (usersctl list-users -d URL).\n\n"
        f"{EXIT_CODE_HELP}"
    ),
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=True,
)


class HashScheme(str, enum.Enum):
    """What ``--hash-scheme`` accepts (``usersctl.passwords.SCHEMES`` and auto)."""

    auto = "auto"
    argon2 = "argon2"
    bcrypt = "bcrypt"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"usersctl {__version__}")
        raise typer.Exit()


def _finite_seconds(value: float) -> float:
    """``--connect-timeout``: Click's range already refuses 0 and less; not inf or nan either."""
    if not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number of seconds")
    return value


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
            callback=_finite_seconds,
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
    table: Annotated[
        str | None,
        typer.Option(
            "--table",
            envvar="USERSCTL_TABLE",
            metavar="NAME",
            help="The user table (SCHEMA.NAME on PostgreSQL); without it, the one table with "
            "FastAPI Users' user columns, whatever its name.",
            show_default=False,
        ),
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            envvar="USERSCTL_ENV_FILE",
            metavar="PATH",
            exists=True,
            dir_okay=False,
            help="Read USERSCTL_DATABASE_URL or DATABASE_URL from this dotenv file (without "
            "it, from ./.env when nothing else gives the URL).",
            show_default=False,
        ),
    ] = None,
    hash_scheme: Annotated[
        HashScheme,
        typer.Option(
            "--hash-scheme",
            envvar="USERSCTL_HASH_SCHEME",
            case_sensitive=False,
            help=(
                "Scheme of new password hashes. auto: Argon2, as FastAPI Users 13+ writes, but "
                "bcrypt when the installed FastAPI Users is older or the table's hashes are "
                "bcrypt and none Argon2."
            ),
        ),
    ] = HashScheme.auto,
    password_helper: Annotated[
        str | None,
        typer.Option(
            "--password-helper",
            envvar="USERSCTL_PASSWORD_HELPER",
            metavar="MODULE:ATTRIBUTE",
            help=(
                "The app's own PasswordHelper (or pwdlib PasswordHash), e.g. "
                "app.users:password_helper: every hash is made and checked with it. Not with "
                "--user-manager, whose password_helper is used."
            ),
            show_default=False,
        ),
    ] = None,
    user_manager: Annotated[
        str | None,
        typer.Option(
            "--user-manager",
            envvar="USERSCTL_USER_MANAGER",
            metavar="MODULE:ATTRIBUTE",
            help=(
                "The app's get_user_manager dependency or UserManager class, e.g. "
                "app.users:get_user_manager: its validate_password, hooks and hasher are used."
            ),
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            envvar="USERSCTL_QUIET",
            help="Print no informational messages on stderr (what changed, revoked tokens, "
            "footers, progress); errors, warnings and a generated password are still printed.",
        ),
    ] = False,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
) -> None:
    """Options shared by every command."""
    from usersctl.commands.errors import call
    from usersctl.commands.options import database_url_of

    database = call(lambda: database_url_of(ctx, database_url, env_file))
    ctx.obj = Settings(
        database_url=database.url,
        connect_timeout=connect_timeout,
        model_path=model or None,
        url_source=database.source,
        table=table or None,
        hash_scheme=hash_scheme.value,
        password_helper_path=password_helper or None,
        user_manager_path=user_manager or None,
        quiet=quiet,
    )
    ctx.call_on_close(ctx.obj.commit_guard.release)  # after the command has printed its output
    quiet_now = QUIET.set(ctx.obj.quiet)  # the one switch of say(), for this invocation
    ctx.call_on_close(lambda: QUIET.reset(quiet_now))


def main() -> None:
    """Console-script entry point."""
    from usersctl.commands.startup import (
        deliver_lost_interrupts,
        pause_collector,
        quiet_library_loggers,
    )

    pause_collector()
    quiet_library_loggers()
    deliver_lost_interrupts()
    try:
        app(prog_name="usersctl")
    except BrokenPipeError:  # rendering, after the command's work: | head stopped reading
        with contextlib.suppress(typer.Exit):
            stdout_closed()
        raise SystemExit(int(ExitCode.PIPE_CLOSED)) from None
    except KeyboardInterrupt:
        typer.echo("Error: interrupted", err=True)
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    finally:
        # The command has ended and said how: Ctrl-C while the interpreter shuts down would
        # only turn its exit status into "killed by SIGINT", after a committed change too.
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
