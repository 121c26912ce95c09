"""The one place where failures become a one-line message on stderr and an exit code."""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from usersctl.commands.options import Settings

T = TypeVar("T")


class ExitCode(IntEnum):
    """usersctl's exit codes, as documented in the README and ``usersctl --help``."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFLICT = 4
    DATABASE = 5
    CHECK_FAILED = 6
    INTERRUPTED = 130
    PIPE_CLOSED = 141  # 128 + SIGPIPE, what the shell reports for a writer whose reader left


#: errno values that mean the database server could not be reached or the link broke.
CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ETIMEDOUT,
    }
)


EXIT_CODE_HELP = (
    "Exit codes: 0 success (also when nothing needed to change); 1 unexpected failure; "
    "2 usage or invalid input; 3 user not found (or no such OAuth link); "
    "4 conflict (email taken, last superuser, an address several users share in different "
    "case, a unique or foreign key constraint, rows that still refer to a user to delete); "
    "5 database problem (unreachable, tables missing, read-only); "
    "6 a check said no (doctor, verify-password, apply --dry-run --exit-code with changes to "
    "make); 130 interrupted; "
    "141 the reader of stdout went away (as with | head)."
)


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print ``Error: message`` on stderr and exit with ``code``."""
    typer.echo(f"Error: {_one_line(message)}", err=True)
    raise typer.Exit(int(code))


def _one_line(message: str) -> str:
    """The message on one line, safe for a terminal (it may quote data from strangers)."""
    from usersctl.commands.render import for_terminal

    return for_terminal(" ".join(message.split())) or "unknown error"


#: MySQL/MariaDB error numbers: the client's for a server it could not reach or lost, the
#: server's for a read-only server or transaction, and for a value refused in strict mode (what
#: PostgreSQL's SQLSTATE class 22 is).
MYSQL_CONNECT_ERRORS = frozenset({2002, 2003, 2005})
MYSQL_LOST_ERRORS = frozenset({2006, 2013, 4031})
MYSQL_READ_ONLY_ERRORS = frozenset({1036, 1290, 1792})
MYSQL_DATA_ERRORS = frozenset({1264, 1265, 1292, 1366, 1406, 1416, 3140})


def mysql_error(exc: BaseException) -> tuple[int, str] | None:
    """The error number and message of a MySQL driver's error (asyncmy's or PyMySQL's, which
    aiomysql raises), wrapped by SQLAlchemy or not; None for any other exception."""
    from sqlalchemy.exc import DBAPIError

    original: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    module = type(original).__module__
    args = original.args
    if (
        module.startswith(("asyncmy", "pymysql", "aiomysql"))
        and len(args) >= 2
        and isinstance(args[0], int)
    ):
        return args[0], str(args[1])
    return None


def _database_message(exc: BaseException) -> str:
    """What went wrong with the database, without SQL text or parameters (they may hold secrets)."""
    from sqlalchemy.exc import DBAPIError

    original: BaseException = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    text = str(original).strip().splitlines()[0] if str(original).strip() else ""
    name = type(original).__name__
    mysql = mysql_error(exc)
    if mysql is not None:
        number, text = mysql[0], mysql[1].strip().splitlines()[0] if mysql[1].strip() else ""
        if number in MYSQL_LOST_ERRORS:
            return f"lost the connection to the database ({text})"
        if number in MYSQL_READ_ONLY_ERRORS:
            return f"the database is read-only ({text})"
        missing = re.fullmatch(r"Table '(?:[^'.]*\.)?([^']+)' doesn't exist", text)
        if number == 1146 and missing:
            text = f'relation "{missing.group(1)}" does not exist'  # worded as PostgreSQL's below
    if text.startswith("<class '") and "'>: " in text:
        # SQLAlchemy's asyncpg adapter writes "<class 'asyncpg.exceptions.X'>: message".
        qualified, _, text = text[len("<class '") :].partition("'>: ")
        name = qualified.rpartition(".")[2]
    # asyncpg repeats the value it could not send ("query argument $2: <value> (reason)"): the
    # value may be a password hash, so only the reason is kept.
    text = re.sub(r"(query argument \$\d+): .*( \([^()]*\))$", r"\1\2", text)
    lowered = text.lower()
    if "prepared statement" in lowered and ("already exists" in lowered or "not exist" in lowered):
        return (
            f"{text}: behind a connection pooler in transaction mode (PgBouncer), add "
            "?prepared_statement_cache_size=0 to the database URL"
        )
    if "no such table" in lowered or ("does not exist" in lowered and "relation" in lowered):
        # Which table: the user table is checked before any query, so this is often another
        # (one the user table references, say), which must not be called the user table.
        named = re.search(r'no such table: (?:\w+\.)?(\S+)|relation "([^"]+)" does not exist', text)
        if named:
            return (
                f"the table {named.group(1) or named.group(2)!r} does not exist; create it with "
                "the app's migrations (`usersctl --model ... init-db` creates the tables the "
                "model's user table references)"
            )
        return "the user table does not exist; run `usersctl init-db` to create it"
    if "readonly" in lowered or "read-only" in lowered:
        return f"the database is read-only ({text})"
    if "not a database" in lowered:
        return "the file is not a SQLite database"
    if "unable to open database file" in lowered:
        return "cannot open the SQLite database file (check the path and its folder's permissions)"
    if isinstance(original, (ConnectionRefusedError, OSError)) and not text:
        return "cannot connect to the database server"
    if "connection was closed" in lowered or "terminating connection" in lowered:
        return f"lost the connection to the database ({text})"
    if _is_data_error(exc):
        return f"the database refused a value ({name}): {text}"
    return f"database error ({name}): {text}" if text else f"database error ({name})"


def _is_data_error(exc: BaseException) -> bool:
    """A value the database refused (SQLSTATE class 22: too long, out of range, a NUL in text):
    invalid input, not a database problem."""
    from sqlalchemy.exc import DataError, DBAPIError

    state = getattr(exc.orig, "sqlstate", None) if isinstance(exc, DBAPIError) else None
    mysql = mysql_error(exc) if isinstance(exc, DBAPIError) else None
    return (
        isinstance(exc, DataError)
        or str(state or "").startswith("22")
        or (mysql is not None and mysql[0] in MYSQL_DATA_ERRORS)
    )


def exit_code_for(exc: BaseException, server: str = "") -> tuple[ExitCode, str]:
    """Map an exception raised by a command to its exit code and message; ``server`` (host:port)
    is named when the database could not be reached, as the exception may not name it."""
    from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

    from usersctl import errors

    if isinstance(exc, errors.InvalidInput):
        return ExitCode.USAGE, str(exc)
    if isinstance(exc, errors.NotFound):
        return ExitCode.NOT_FOUND, str(exc)
    if isinstance(exc, errors.Conflict):
        return ExitCode.CONFLICT, str(exc)
    if isinstance(exc, errors.DatabaseProblem):
        return ExitCode.DATABASE, str(exc)
    if isinstance(exc, errors.CheckFailed):
        return ExitCode.CHECK_FAILED, str(exc)
    if isinstance(exc, errors.HookFailed):
        return ExitCode.FAILURE, str(exc)
    if isinstance(exc, IntegrityError):
        from usersctl.violations import describe_violation

        violation = describe_violation(exc)
        if violation is not None and violation.is_conflict:
            return ExitCode.CONFLICT, f"refused by the database's {violation.message}"
        if violation is not None:  # NOT NULL, CHECK: a value the caller gave
            return ExitCode.USAGE, f"the database refused a value: {violation.message}"
    mysql = mysql_error(exc)
    if mysql is not None and mysql[0] in MYSQL_CONNECT_ERRORS:
        at = f" at {server}" if server else ""
        return ExitCode.DATABASE, f"cannot connect to the database{at}: {_mysql_reason(mysql[1])}"
    if isinstance(exc, (DBAPIError, SQLAlchemyError)):
        code = ExitCode.USAGE if _is_data_error(exc) else ExitCode.DATABASE
        return code, _database_message(exc)
    import asyncio  # only on failure: --help need not pay for it

    # Two classes on Python 3.10 (asyncpg raises asyncio's); one and the same from 3.11 on.
    at = f" at {server}" if server else ""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return ExitCode.DATABASE, f"timed out connecting to the database{at}"
    if _is_connection_error(exc):
        return ExitCode.DATABASE, f"cannot connect to the database{at}: {_connection_reason(exc)}"
    if isinstance(exc, OSError):  # writing a file: a full disk, a vanished folder
        where = f" {exc.filename}" if exc.filename else ""
        return ExitCode.FAILURE, f"cannot write{where}: {exc.strerror or exc}"
    return ExitCode.FAILURE, f"unexpected {type(exc).__name__}: {exc}"


def server_of(database_url: str) -> str:
    """Where a PostgreSQL or MySQL URL points, for messages: ``host:port``, or the socket file
    for a socket folder; for PostgreSQL as asyncpg decides it (the URL, then ``?host=``/``?port=``, then PGHOST and
    PGPORT). Empty for SQLite, or where asyncpg would try several places."""
    from usersctl.engine import normalize_url

    try:
        url = normalize_url(database_url)
    except Exception:  # an unusable URL has its own error; this is only a courtesy
        return ""
    if url.get_backend_name() == "mysql":
        socket_file = url.query.get("unix_socket")
        if isinstance(socket_file, str):
            return socket_file
        mysql_host, mysql_port = url.host or "localhost", url.port or 3306
        return f"[{mysql_host}]:{mysql_port}" if ":" in mysql_host else f"{mysql_host}:{mysql_port}"
    if url.get_backend_name() != "postgresql":
        return ""
    host = url.host or url.query.get("host") or os.environ.get("PGHOST")
    port = url.port or url.query.get("port") or os.environ.get("PGPORT") or 5432
    if not isinstance(host, str) or not isinstance(port, (str, int)) or "," in host:
        return ""  # none given (asyncpg tries its default sockets), or several
    if host.startswith("/"):
        return f"{host.rstrip('/')}/.s.PGSQL.{port}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mysql_reason(message: str) -> str:
    """Why a MySQL driver could not connect, in the words used for PostgreSQL's."""
    lowered = message.lower()
    if "refused" in lowered or "connect call failed" in lowered:
        return "connection refused (no server listening there)"
    if "name or service not known" in lowered or "nodename nor servname" in lowered:
        return "the host name could not be resolved (Name or service not known)"
    return message


def _connection_reason(exc: BaseException) -> str:
    """Why connecting failed, in words, where the driver's text is a bare errno."""
    import socket

    if isinstance(exc, socket.gaierror):
        return f"the host name could not be resolved ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (no server listening there)"
    return _database_message(exc)


def _is_connection_error(exc: BaseException) -> bool:
    import socket

    if type(exc).__module__.startswith("asyncpg") or isinstance(
        exc, (ConnectionError, socket.gaierror)
    ):
        return True
    return isinstance(exc, OSError) and exc.errno in CONNECTION_ERRNOS


def stdout_closed() -> NoReturn:
    """The reader of stdout left (``| head``): stop quietly, as other command-line tools do."""
    # Point stdout at /dev/null so that the interpreter's final flush does not fail again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise typer.Exit(int(ExitCode.PIPE_CLOSED))


class CommitGuard:
    """Holds Ctrl-C off once a commit has begun, until the command has ended and printed its
    output: an interrupt then can no longer undo anything, and "nothing was committed" would
    be a lie. The command ends normally (exit 0) and says that the interrupt came too late."""

    def __init__(self) -> None:
        self.began = False
        self.interrupted = False
        self._previous: Any = None

    def _record(self, _signum: int, _frame: Any) -> None:
        self.interrupted = True

    def hold(self, *_args: Any) -> None:
        """SQLAlchemy's ``commit`` event, which fires before the database is asked to commit."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        if not self.began:
            self.began = True
            self._previous = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._record)

    def watch_interrupts(self) -> None:
        """Inside the event loop: make Ctrl-C, besides cancelling the command (asyncio's
        handler), start a watchdog. The cleanup that follows is bounded (a connection stopped
        mid-statement is closed, not rolled back), but should a driver still wait for a server
        that waits for it, the watchdog ends the process after a few seconds, with the same
        truthful message: the transaction was never committed, and the server rolls it back."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):
            return

        def interrupted(signum: int, frame: Any) -> None:
            self._start_watchdog()
            handler(signum, frame)

        signal.signal(signal.SIGINT, interrupted)

    def _start_watchdog(self, seconds: float = 5.0) -> None:
        import os
        import threading
        import time

        def expire() -> None:
            time.sleep(seconds)
            if self.began:
                message = "interrupted while committing; the changes may have been committed"
            else:
                message = "interrupted; nothing was committed"
            os.write(2, f"Error: {message}\n".encode())
            os._exit(int(ExitCode.INTERRUPTED))

        threading.Thread(target=expire, name="usersctl-interrupt-watchdog", daemon=True).start()

    def release(self) -> None:
        """Restore Ctrl-C, and say when it was held off."""
        import signal

        if self.began:
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
        if self.interrupted:
            typer.echo(
                "Note: interrupted after the commit had begun; the changes are committed and "
                "the command finished.",
                err=True,
            )


def run(coroutine_function: Callable[[], Awaitable[T]], settings: Settings) -> T:
    """Run one command's coroutine in its own event loop, translating every failure (those of
    connecting to ``settings.database_url`` name its server). Once a commit begins, Ctrl-C is
    held off until the command ends (``CommitGuard``).

    Set ``USERSCTL_DEBUG=1`` to see the traceback of an unexpected failure.
    """
    import asyncio  # here, not at the top: it costs 30 ms that --help does not need

    from usersctl.commands.startup import resume_collector

    guard = settings.commit_guard

    def start() -> T:
        resume_collector()  # it loads the database modules: a broken install fails in here
        import signal
        import threading

        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        before = signal.getsignal(signal.SIGINT)
        event.listen(Engine, "commit", guard.hold)
        try:
            return asyncio.run(_as_coroutine(coroutine_function, guard))
        finally:
            event.remove(Engine, "commit", guard.hold)
            if guard.began:
                guard.hold()  # asyncio.run may have put back its own handler on the way out
            elif before is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, before)  # as asyncio.run would have left it

    return call(start, settings.database_url, settings.url_source, guard)


def call(
    function: Callable[[], T],
    database_url: str | None = None,
    url_source: str = "",
    guard: CommitGuard | None = None,
) -> T:
    """Call ``function``, translating every failure: for the work a command does outside the
    event loop (checks, and prompts, which must not block a running loop: Ctrl-C would then only
    cancel its task, and the prompt would go on waiting). A failure to reach ``database_url``
    names its server; a database problem says where the URL came from (``url_source``). An
    interrupt during a commit (``guard``) is reported as such."""
    try:
        return function()
    except typer.Exit:
        raise
    except typer.Abort as exc:
        # Click turns Ctrl-C and end of input at a prompt into Abort; the cause tells them apart.
        if isinstance(exc.__context__, KeyboardInterrupt):
            _interrupted(guard)
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        fail("aborted at the prompt (end of input); nothing was changed", ExitCode.FAILURE)
    except KeyboardInterrupt:
        _interrupted(guard)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:
        stdout_closed()
    except Exception as exc:
        code, message = exit_code_for(exc, server_of(database_url) if database_url else "")
        if code == ExitCode.DATABASE and url_source and url_source not in message:
            message = f"{message} (database URL from {url_source})"
        if os.environ.get("USERSCTL_DEBUG") and code == ExitCode.FAILURE:
            import traceback

            traceback.print_exc(file=sys.stderr)
        fail(message, code)


def _interrupted(guard: CommitGuard | None) -> NoReturn:
    if guard is not None and guard.began:
        # Ctrl-C landed between asking for the commit and holding it off: the database may
        # have committed what the driver never heard back about.
        message = "interrupted while committing; the changes may have been committed"
    else:
        message = "interrupted; nothing was committed"
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(int(ExitCode.INTERRUPTED))


async def _as_coroutine(
    coroutine_function: Callable[[], Awaitable[T]], guard: CommitGuard | None = None
) -> T:
    if guard is not None:
        guard.watch_interrupts()  # asyncio.run has installed its Ctrl-C handler by now
    return await coroutine_function()
