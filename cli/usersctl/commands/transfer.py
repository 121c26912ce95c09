"""The bulk commands: export-users and import-users."""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from usersctl.commands.errors import ExitCode, call, fail, run
from usersctl.commands.options import (
    ActiveFilter,
    AllowWeakPasswordOption,
    ColumnsOption,
    CreatedAfterFilter,
    CreatedBeforeFilter,
    DryRunOption,
    EmailDomainFilter,
    EmailFilter,
    ForceOption,
    IdFilter,
    KeepSessionsOption,
    RawCsvOption,
    SearchOption,
    SuperuserFilter,
    VerifiedFilter,
    column_names,
    list_filters,
    settings_of,
)
from usersctl.commands.render import QUIET, OutputFormat, render_rows, say, warn


class FileFormat(str, enum.Enum):
    """Formats of user files."""

    jsonl = "jsonl"
    csv = "csv"
    json = "json"


class OnConflict(str, enum.Enum):
    """What import-users does with a row whose email (or id) already exists."""

    fail = "fail"
    skip = "skip"
    update = "update"


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[..., None] | None]:
    """A progress bar on stderr when stderr is a terminal (and not ``-q``); otherwise nothing is
    drawn."""
    if not sys.stderr.isatty() or QUIET.get():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(*args: Any) -> None:
            stage, done, total = args if len(args) == 3 else (label, *args)
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total or None)
            bar.update(tasks[stage], completed=done, total=total or None)

        yield update


def export_users(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(metavar="[FILE|-]", help="Where to write; - (the default) is stdout."),
    ] = "-",
    output: Annotated[
        FileFormat | None,
        typer.Option(
            "--output",
            "-o",
            help="jsonl, csv or json; default from the file name, else jsonl.",
            case_sensitive=False,
        ),
    ] = None,
    active: ActiveFilter = None,
    superuser: SuperuserFilter = None,
    verified: VerifiedFilter = None,
    search: SearchOption = None,
    emails: EmailFilter = None,
    email_domain: EmailDomainFilter = None,
    ids: IdFilter = None,
    created_after: CreatedAfterFilter = None,
    created_before: CreatedBeforeFilter = None,
    include_hashes: Annotated[
        bool,
        typer.Option(
            "--include-hashes",
            help="Export hashed_password as stored (for moving users between databases).",
        ),
    ] = False,
    raw_csv: RawCsvOption = False,
    columns: ColumnsOption = None,
    unordered: Annotated[
        bool,
        typer.Option(
            "--unordered",
            help="Users in the order the database stores them, not list-users' order: faster "
            "on a large table, but two exports of the same users may differ in order.",
        ),
    ] = False,
) -> None:
    """Stream users to a file or stdout, in flat memory; no hash leaves without --include-hashes.

    Takes the filters of list-users; users come in its order (unless --unordered).

    \b
    Example:
      usersctl export-users users.jsonl --include-hashes
      usersctl export-users old-corp.csv --email-domain old-corp.net
      usersctl export-users - -o csv --columns email,is_active
    """
    settings = settings_of(ctx)
    from usersctl.importing import format_for

    fmt = (output.value if output else None) or format_for(file, None) or "jsonl"

    async def work() -> int:
        from usersctl.exporting import export_users as export

        filters = list_filters(
            active=active,
            superuser=superuser,
            verified=verified,
            search=search,
            emails=emails,
            email_domain=email_domain,
            ids=ids,
            created_after=created_after,
            created_before=created_before,
        )
        with (
            _open_output(file, private=include_hashes) as out,
            progress_bar("exporting") as progress,
        ):
            return await export(
                settings.checked_url(),
                out,
                fmt=fmt,
                filters=filters,
                include_hashes=include_hashes,
                columns=column_names(columns),
                connect_timeout=settings.connect_timeout,
                progress=progress,
                model_path=settings.model_path,
                table=settings.table,
                raw_csv=raw_csv,
                ordered=not unordered,
            )

    count = run(work, settings)
    where = "stdout" if file == "-" else file
    say(f"Exported {count} user{'s' if count != 1 else ''} to {where}.")


@contextmanager
def _open_output(file: str, *, private: bool = False) -> Iterator[IO[str]]:
    """The file to export into; ``private`` (hashes inside) makes it readable by its owner only.

    A regular file is replaced whole, at the end, from a temporary file of this run's own beside
    it; anything else (stdout, ``/dev/stdout``, a device, a pipe) is written in place.
    """
    if file == "-":
        yield sys.stdout
        _check_reader(sys.stdout)
        return
    descriptor = _own_descriptor(file)
    if descriptor is not None:
        # /dev/stdout, /dev/fd/N: the descriptor the shell opened (a pipe, a file opened with
        # >>) is written as it is; opening the name again would truncate the file, or fail.
        try:
            duplicate = os.dup(descriptor)
        except OSError as exc:
            fail(f"cannot write {file}: {exc.strerror}", ExitCode.USAGE)
        with open(duplicate, "w", encoding="utf-8", newline="") as through:
            yield through
            through.flush()
            _check_reader(through)
        return
    path = Path(file)
    if path.is_symlink():
        try:
            target = path.resolve()
        except (OSError, RuntimeError) as exc:  # a loop of links
            fail(f"cannot write {file}: {getattr(exc, 'strerror', None) or exc}", ExitCode.USAGE)
        if not target.exists() or target.is_file():
            # A link to a file: its target is replaced (a new file, owner-only with hashes
            # inside, whatever the old one allowed), and the link stays.
            path = target
    if path.exists() and not path.is_file():
        # A device or a pipe is written in place: renaming over it would replace it.
        try:
            direct = path.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            fail(f"cannot write {file}: {exc.strerror}", ExitCode.USAGE)
        with direct:
            yield direct
            direct.flush()
            _check_reader(direct)
        return
    partial, out = _temporary_beside(path, file, private=private)
    try:
        with out:
            yield out
    except BaseException:
        partial.unlink(missing_ok=True)  # a failed export never leaves a truncated file behind
        raise
    partial.replace(path)


def _temporary_beside(path: Path, file: str, *, private: bool) -> tuple[Path, IO[str]]:
    """A new file of this run's own beside ``path`` (``O_EXCL``, so two exports at once never
    share one), owner-only with hashes inside, and never more open than the file it replaces."""
    import contextlib
    import secrets
    import stat

    mode = 0o600 if private else 0o666
    with contextlib.suppress(OSError):  # a new file: the umask decides, as for any other
        mode &= stat.S_IMODE(path.stat().st_mode)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        partial = path.with_name(f"{path.name}.{secrets.token_hex(6)}.partial")
        try:
            descriptor = os.open(partial, flags, mode)
        except FileExistsError:
            continue
        except OSError as exc:
            fail(f"cannot write {file}: {exc.strerror}", ExitCode.USAGE)
        break
    else:
        fail(f"cannot write {file}: no free temporary name beside it", ExitCode.USAGE)
    return partial, open(descriptor, "w", encoding="utf-8", newline="")


#: Names of a descriptor this process has open: /dev/stdout, /dev/fd/1, /proc/self/fd/1.
_DESCRIPTOR_NAME = re.compile(
    r"/dev/(?:(?P<std>stdout|stderr)|fd/(?P<fd>\d+))|/proc/(?P<pid>self|thread-self|\d+)/fd/(?P<pfd>\d+)"
)


def _own_descriptor(file: str) -> int | None:
    """The descriptor ``file`` names, following links (a link to /dev/stdout too), or None."""
    current = os.path.abspath(file)
    for _ in range(40):
        match = _DESCRIPTOR_NAME.fullmatch(current)
        if match:
            if match["std"]:
                return 1 if match["std"] == "stdout" else 2
            if match["fd"]:
                return int(match["fd"])
            if match["pid"] in ("self", "thread-self", str(os.getpid())):
                return int(match["pfd"])
            return None
        if not os.path.islink(current):
            return None
        current = os.path.normpath(os.path.join(os.path.dirname(current), os.readlink(current)))
    return None


def _check_reader(stream: IO[str]) -> None:
    """Raise ``BrokenPipeError`` when ``stream`` is a pipe whose reader has left (``| head``).

    The last write into such a pipe may return short without an error, so the export would
    count every row and exit 0 when most never arrived; the pipe itself tells.
    """
    import select
    import stat

    try:
        stream.flush()
        descriptor = stream.fileno()
        is_pipe = stat.S_ISFIFO(os.fstat(descriptor).st_mode)
    except (OSError, ValueError, AttributeError):
        return  # not a descriptor (a test's captured output)
    if not is_pipe or not hasattr(select, "poll"):
        return
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    if any(events & select.POLLERR for _, events in poller.poll(0)):
        raise BrokenPipeError(32, "the reader of the pipe has left")


def import_users(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-", help="The file to read; - reads stdin.", show_default=False
        ),
    ],
    input_format: Annotated[
        FileFormat | None,
        typer.Option(
            "--format",
            help="jsonl, csv or json; default from the file name, else guessed from the content.",
            case_sensitive=False,
        ),
    ] = None,
    on_conflict: Annotated[
        OnConflict,
        typer.Option(
            "--on-conflict",
            help="fail: refuse the import; skip: keep existing users; update: overwrite them.",
            case_sensitive=False,
        ),
    ] = OnConflict.fail,
    keep_unknown_hashes: Annotated[
        bool,
        typer.Option(
            "--keep-unknown-hashes",
            help="Import a hashed_password that is not Argon2 or bcrypt as it is (a legacy "
            "scheme, a locking marker); those users cannot log in until a new password is set "
            "(FastAPI Users' login raises an error for them: keep them inactive meanwhile).",
        ),
    ] = False,
    force: ForceOption = False,
    keep_sessions: KeepSessionsOption = False,
    allow_weak_password: AllowWeakPasswordOption = False,
    hooks: Annotated[
        bool,
        typer.Option(
            "--hooks",
            help="With --user-manager, run the app's on_after_register for each user created "
            "(it may send email).",
        ),
    ] = False,
    raw_csv: Annotated[
        bool,
        typer.Option(
            "--raw-csv",
            help="Read CSV cells exactly as written: keep the ' that export-users puts before "
            "text starting with = + - @, a tab or a carriage return (without --raw-csv, '=x "
            "is read as =x).",
        ),
    ] = False,
    dry_run: DryRunOption = False,
    output: Annotated[
        OutputFormat,
        typer.Option("--output", "-o", help="Format of the summary.", case_sensitive=False),
    ] = OutputFormat.table,
) -> None:
    """Import users all or nothing: every row is checked first, and one bad row writes nothing.

    Rows need an email and either password (hashed here, on all cores) or hashed_password
    (Argon2 or bcrypt); id, is_active, is_superuser, is_verified and other columns are optional.
    Plaintext passwords must pass the password policy (the app's, with --user-manager), unless
    --allow-weak-password. Under --on-conflict update, a row without either password field
    updates only the fields it gives and keeps the user's password (a new user needs one).
    --dry-run hashes one plaintext password, to check the hashing, not all of them.

    \b
    Example:
      usersctl import-users users.csv --on-conflict skip
      usersctl import-users users.csv --on-conflict update --dry-run
    """
    settings = settings_of(ctx)
    if hooks and settings.user_manager_path is None:
        fail(
            "--hooks runs the app's hooks: give --user-manager module.path:attribute",
            ExitCode.USAGE,
        )
    from usersctl.importing import format_for

    fmt = format_for(file, input_format.value if input_format else None)

    columns = ["created", "updated", "skipped", "invalid", "revoked_tokens", "dry_run"]

    helper = call(settings.password_helper)

    async def work() -> dict[str, Any]:
        from usersctl.importing import ImportRejected, ImportSummary
        from usersctl.importing import import_users as run_import

        try:
            with open_input(file) as stream, progress_bar("importing") as progress:
                summary = await run_import(
                    settings.checked_url(),
                    stream,
                    fmt=fmt,
                    on_conflict=on_conflict.value,
                    dry_run=dry_run,
                    connect_timeout=settings.connect_timeout,
                    progress=progress,
                    model_path=settings.model_path,
                    table=settings.table,
                    keep_unknown_hashes=keep_unknown_hashes,
                    force=force,
                    keep_sessions=keep_sessions,
                    allow_weak_passwords=allow_weak_password,
                    user_manager_path=settings.user_manager_path,
                    hooks=hooks,
                    hash_scheme=settings.hash_scheme,
                    password_helper=helper,
                    raw_csv=raw_csv,
                )
        except ImportRejected as exc:
            if output != OutputFormat.table:  # a script gets the count; the error says which
                rejected = ImportSummary(invalid=len(exc.problems), dry_run=dry_run)
                render_rows([rejected.as_dict()], output, columns=columns, single=True)
            raise
        if summary.hash_note:
            say(summary.hash_note)
        return summary.as_dict()

    summary = run(work, settings)
    render_rows([summary], output, columns=columns, single=True)
    if allow_weak_password:
        warn("Warning: plaintext passwords were not checked against the password policy.")
    if dry_run:
        say("Dry run: nothing was written.")


@contextmanager
def open_input(file: str) -> Iterator[IO[bytes]]:
    """The file import-users or apply reads (``-``: stdin); one that cannot be read is exit 2."""
    if file == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = Path(file).open("rb")  # noqa: SIM115 (closed by the with below)
    except FileNotFoundError:
        fail(f"{file} does not exist", ExitCode.USAGE)
    except IsADirectoryError:
        fail(f"{file} is a directory", ExitCode.USAGE)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", ExitCode.USAGE)
    with stream:
        yield stream
