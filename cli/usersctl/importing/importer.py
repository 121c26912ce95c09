"""import-users from end to end: read and check every row (nothing is written if one is bad),
hash plaintext passwords on all cores with no transaction open, then decide conflicts and write
everything in one transaction. A file of hashes under ``--on-conflict fail`` is written while it
is read."""

from __future__ import annotations

import asyncio
import gc
import io
import itertools
import os
import stat
import threading
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy.exc import IntegrityError

from usersctl.errors import InvalidInput
from usersctl.importing.checking import FileCheck, check_with_app, hash_passwords
from usersctl.importing.planning import clash_beyond_ascii, passwords_worth_hashing
from usersctl.importing.reading import read_records
from usersctl.importing.rows import CONFLICT_RULES, WRITE_BATCH, ImportSummary, Progress
from usersctl.importing.writing import (
    PreparedInsert,
    advance_id_sequence,
    execute_inserts,
    lock_table,
    prepare_batch,
    write_rows,
)
from usersctl.passwords import ARGON2, Hashing
from usersctl.users import (
    NextIds,
    UserContext,
    choose_hashing,
    peek_next_ids,
)


async def import_users(
    url: str,
    stream: IO[bytes],
    *,
    fmt: str | None = None,
    on_conflict: str = "fail",
    dry_run: bool = False,
    connect_timeout: float = 10.0,
    progress: Progress | None = None,
    model_path: str | None = None,
    table: str | None = None,
    keep_unknown_hashes: bool = False,
    force: bool = False,
    keep_sessions: bool = False,
    allow_weak_passwords: bool = False,
    user_manager_path: str | None = None,
    hooks: bool = False,
    hash_scheme: str = "auto",
    password_helper: Hashing | None = None,
    raw_csv: bool = False,
) -> ImportSummary:
    """Import users from ``stream`` into the database at ``url``, all or nothing.

    ``keep_unknown_hashes`` takes a ``hashed_password`` in no format FastAPI Users verifies as it
    is (a legacy scheme, a marker that locks the account): such users cannot log in with a
    password until it is set again. Without it, such a row is invalid. ``force`` lets updates
    leave no active superuser; ``keep_sessions`` keeps the access tokens of updated users.
    Plaintext passwords must pass the password policy, checked with the rest of each row
    (before any is hashed), unless ``allow_weak_passwords``; they are hashed in the scheme
    ``hash_scheme`` chooses (``choose_hashing``), or by the app's own ``password_helper``. With
    ``user_manager_path`` (the app's user manager), its ``validate_password`` is the policy and
    its ``password_helper`` hashes; with ``hooks`` its ``on_after_register`` runs for each user
    created, after the commit. A CSV cell written formula-safe is read as the text it holds
    (one ``'`` off ``'=x``), unless ``raw_csv``."""

    if on_conflict not in CONFLICT_RULES:
        raise InvalidInput(f"--on-conflict must be one of {', '.join(CONFLICT_RULES)}")
    summary = ImportSummary(dry_run=dry_run)
    # Rows are kept until the end: the collector would scan them again and again for nothing.
    gc.disable()
    try:
        return await _import(
            url,
            stream,
            summary,
            fmt=fmt,
            on_conflict=on_conflict,
            connect_timeout=connect_timeout,
            progress=progress,
            model_path=model_path,
            table=table,
            keep_unknown_hashes=keep_unknown_hashes,
            force=force,
            keep_sessions=keep_sessions,
            allow_weak_passwords=allow_weak_passwords,
            user_manager_path=user_manager_path,
            hooks=hooks,
            hash_scheme=hash_scheme,
            password_helper=password_helper,
            raw_csv=raw_csv,
        )
    finally:
        gc.enable()


async def _import(
    url: str,
    stream: IO[bytes],
    summary: ImportSummary,
    *,
    fmt: str | None,
    on_conflict: str,
    connect_timeout: float,
    progress: Progress | None,
    model_path: str | None,
    table: str | None,
    keep_unknown_hashes: bool,
    force: bool,
    keep_sessions: bool,
    allow_weak_passwords: bool,
    user_manager_path: str | None,
    hooks: bool,
    hash_scheme: str,
    password_helper: Hashing | None,
    raw_csv: bool,
) -> ImportSummary:
    from usersctl.password_policy import password_problems
    from usersctl.users import open_users

    dry_run = summary.dry_run
    async with (
        open_users(
            url, connect_timeout=connect_timeout, write=True, model_path=model_path, table=table
        ) as ctx,
        _open_manager(user_manager_path, ctx) as manager,
    ):
        if ctx.session.bind.dialect.name == "sqlite":
            # A bigger page cache (64 MiB, this connection only) keeps the indexes being
            # filled in memory instead of re-reading their pages for every few rows.
            connection = await ctx.session.connection()
            await connection.exec_driver_sql("PRAGMA cache_size = -65536")
        #: The emails of the users created, for the app's on_after_register (``hooks``).
        created: list[str] | None = [] if manager is not None and hooks else None
        check = FileCheck(
            ctx.model,
            on_conflict,
            keep_unknown_hashes=keep_unknown_hashes,
            password_policy=None if allow_weak_passwords or manager else password_problems,
        )
        records = read_records(stream, fmt, raw_csv=raw_csv)
        # A dry run takes no id from PostgreSQL's sequence: see _with_stand_ins.
        stand_ins = await peek_next_ids(ctx) if dry_run else None
        # Writing while reading suits a file; a pipe may be slow, and its writer must not hold
        # the database's lock while it waits for the other end.
        fast = on_conflict == "fail" and _is_regular_file(stream) and not ctx.model.parent_tables
        if fast and await _stream_rows(ctx, check, records, progress, stand_ins):
            summary.created = len(check.rows)
            if created is not None:
                created.extend(row.values["email"] for row in check.rows.values())
            if not dry_run:
                await advance_id_sequence(ctx, check.rows.values())
        else:
            # The careful path: the whole file checked, passwords hashed with no transaction
            # open, then conflicts looked up and everything written in one transaction.
            await ctx.session.rollback()
            check.add(records)  # whatever the streaming path did not read
            if manager is not None and not allow_weak_passwords:
                await check_with_app(manager, check)
            rows, summary.skipped = check.verdict()
            needed = await passwords_worth_hashing(ctx, rows, on_conflict)
            hashing = ARGON2
            if manager is not None:  # the app's own password_helper hashes, as its routes do
                from usersctl.user_manager import manager_hashing

                hashing = manager_hashing(manager, user_manager_path or "")
            elif any(row.password for row in rows):  # decided before any hashing, lock-free
                choice = await choose_hashing(ctx, hash_scheme, password_helper)
                await ctx.session.rollback()
                hashing, summary.hash_note = choice.hashing, choice.note
            # A dry run hashes one password, which checks the hashing, and lends its hash to the
            # other rows: what it writes is rolled back, and hashing them all took minutes.
            plaintext = [row for row in needed if row.password is not None]
            hashed_now = plaintext[:1] if dry_run else plaintext
            stop = threading.Event()
            try:
                await asyncio.to_thread(hash_passwords, hashed_now, progress, stop, hashing)
            finally:
                stop.set()  # on Ctrl-C, asyncio waits for this thread before exiting
            for row in plaintext[len(hashed_now) :]:
                row.values["hashed_password"] = hashed_now[0].values["hashed_password"]
                row.password = None
            try:
                await write_rows(
                    ctx,
                    rows,
                    on_conflict,
                    summary,
                    progress,
                    force=force,
                    keep_sessions=keep_sessions,
                    hashing=hashing,
                    created=created,
                    stand_ins=stand_ins,
                )
            except IntegrityError as exc:
                # SQLite names no foreign key, nor a unique index: usersctl finds which.
                from usersctl.users import name_violation

                lines = [row.line for row in rows]
                await name_violation(ctx, exc, [row.values for row in rows], lines=lines)
                raise
            if not dry_run:
                await advance_id_sequence(ctx, rows)
        if dry_run:
            await ctx.session.rollback()
        else:
            await ctx.session.commit()
            if manager is not None and hooks:
                await _registered(ctx, manager, created if created is not None else [])
    return summary


def _open_manager(path: str | None, ctx: UserContext) -> Any:
    from contextlib import nullcontext

    if path is None:
        return nullcontext(None)
    from usersctl.user_manager import open_manager

    return open_manager(path, ctx.db)


async def _registered(ctx: UserContext, manager: Any, emails: list[str]) -> None:
    """The app's ``on_after_register`` for each user the import created (after the commit)."""
    from usersctl.user_manager import run_hook
    from usersctl.users import find_by_email

    for done, email in enumerate(emails):
        user = await find_by_email(ctx, email)
        await run_hook(
            manager,
            "on_after_register",
            user,
            committed=f"the import is committed; the hook ran for {done} of the "
            f"{len(emails)} users created before {email}",
        )


def _is_regular_file(stream: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


async def _stream_rows(
    ctx: UserContext,
    check: FileCheck,
    records: Iterator[tuple[int, dict[str, Any]]],
    progress: Progress | None,
    stand_ins: NextIds | None,
) -> bool:
    """The fast path for a file of hashes under ``--on-conflict fail``: each batch is written
    while the next one is being checked, inside the one transaction the caller commits.

    Returns True when every row is in; False as soon as the file needs the careful path (a
    password to hash, an invalid row, a duplicate, a conflict with the database), leaving the
    rest of ``records`` unread and the transaction for the caller to roll back.
    """

    table = ctx.model.table
    dialect = ctx.session.bind.dialect
    defaults = ctx.model.insert_defaults()
    await lock_table(ctx)

    def next_batch() -> list[PreparedInsert] | None:
        batch = list(itertools.islice(records, WRITE_BATCH))
        if not batch:
            return None
        accepted = check.add(batch)
        if not check.clean or check.plaintext:
            return []
        return prepare_batch(table, dialect, [row.values for row in accepted], defaults, stand_ins)

    # A batch is checked in a thread while the previous one is written: by the server process
    # on PostgreSQL; on SQLite by aiosqlite's thread, which holds the GIL only to bind a batch's
    # values, as its rows go in one statement (see _sqlite_multi_row).
    writing: asyncio.Future[None] | None = None
    written = 0
    try:
        while True:
            prepared = await asyncio.to_thread(next_batch)
            if writing is not None:
                await writing
                writing = None
            if prepared is None:
                # SQLite's index lets in what differs in the case of letters beyond ASCII.
                return not await clash_beyond_ascii(ctx, check.rows.values())
            if not check.clean or check.plaintext:
                return False
            writing = asyncio.ensure_future(execute_inserts(ctx, prepared))
            written += sum(len(statement.params) for statement in prepared)
            if progress:
                progress("writing", written, 0)
    except IntegrityError:
        return False
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Ctrl-C: the batch being written is given up, not waited for (its statement may be
        # half-sent); the caller closes the connection and the server rolls back.
        if writing is not None and not writing.done():
            writing.cancel()
            await asyncio.wait([writing], timeout=1)
            writing = None
        raise
    finally:
        if writing is not None and not writing.done():
            await asyncio.wait([writing])
