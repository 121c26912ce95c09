"""Concurrent writers: usersctl processes started together, as provisioning scripts start them.

Processes are held at a write gate (the test holds the database's write lock) until all of them
wait there, then released together, so they really meet at the database.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import (
    PASSWORD,
    Finished,
    PgConnection,
    WriteGate,
    committed_count,
    finish,
    has_open,
    is_mysql,
    is_sqlite,
    one_error_line,
    pg_lock_held,
    pg_waiting,
    pymysql_connection,
    rows,
    send_line,
    sqlite_path,
    start,
    stored_hash,
    wait_for,
)
from usersctl.passwords import verify_password


def case_variant(email: str, index: int) -> str:
    """``email`` with the letters of its local part upper-cased after the bits of ``index``."""
    local, _, domain = email.partition("@")
    flipped = "".join(c.upper() if index >> i & 1 else c for i, c in enumerate(local))
    return f"{flipped}@{domain.upper() if index & 1 else domain}"


# jörg@: SQLite's index folds only A to Z; usersctl checks the rest while it holds the lock.
@pytest.mark.parametrize("address", ["race@example.com", "jörg@example.com"])
def test_four_processes_creating_one_email_in_differing_case_make_one_user(
    url: str, address: str
) -> None:
    # The first two letters flipped: jörg@ is raced as jÖrg@ too, beyond A to Z.
    emails = [case_variant(address, index) for index in range(4)]
    assert len({email for email in emails}) == 4
    with WriteGate(url) as gate:
        processes = [start(url, "create-user", email, "--password-stdin") for email in emails]
        for process in processes:
            send_line(process, PASSWORD)
        gate.wait_until_queued(processes)
    results = [finish(process) for process in processes]

    assert sorted(result.code for result in results) == [0] + [4] * 3, results
    for result in results:
        assert "locked" not in result.stderr.lower(), result.stderr
        if result.code == 4:
            message = one_error_line(4, result.code, result.stdout, result.stderr)
            assert "already exists" in message, message
    winner = next(result for result in results if result.code == 0)
    stored = rows(url)
    assert len(stored) == 1
    assert stored[0]["email"] in winner.stdout
    assert stored[0]["email"].lower() == address
    assert verify_password(PASSWORD, stored[0]["hashed_password"])


def test_eight_processes_creating_different_users_on_one_sqlite_file(sqlite_url: str) -> None:
    emails = [f"user{index}@example.com" for index in range(8)]
    with WriteGate(sqlite_url) as gate:
        processes = [
            start(sqlite_url, "create-user", email, "--password-stdin", "-o", "json")
            for email in emails
        ]
        for process in processes:
            send_line(process, PASSWORD)
        gate.wait_until_queued(processes)
    results = [finish(process) for process in processes]

    for result in results:
        assert result.code == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "created"
    assert sorted(row["email"] for row in rows(sqlite_url)) == sorted(emails)


# import-users meeting create-user -------------------------------------------------------------

RACE_EMAIL = "Race@example.com"


def write_import_file(path: Path, total: int, race_line: int, plaintext: int = 0) -> None:
    """``total`` users with a stored hash, the one on ``race_line`` being ``RACE_EMAIL``; the last
    ``plaintext`` rows carry passwords to hash instead (a longer hashing step before writing)."""
    hashed = stored_hash()
    with path.open("w") as out:
        for line in range(1, total + 1):
            email = RACE_EMAIL if line == race_line else f"user{line}@example{line % 89}.com"
            secret = (
                {"password": f"password number {line}"}
                if line > total - plaintext
                else {"hashed_password": hashed}
            )
            out.write(json.dumps({"email": email, **secret, "is_verified": True}) + "\n")


def race_row(url: str) -> list[dict[str, Any]]:
    return [row for row in rows(url) if row["email"].lower() == RACE_EMAIL.lower()]


def summary(result: Finished) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def _sqlite_write_locked(url: str) -> bool:
    """Whether some connection holds the SQLite file's write lock (a BEGIN IMMEDIATE fails)."""
    with contextlib.closing(
        sqlite3.connect(sqlite_path(url), timeout=0, isolation_level=None)
    ) as probe:
        try:
            probe.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        probe.execute("ROLLBACK")
        return False


@contextlib.contextmanager
def mysql_watcher(url: str) -> Iterator[Any]:
    """A plain PyMySQL connection to watch the server's transactions."""
    connection = pymysql_connection(url)
    try:
        yield connection
    finally:
        connection.close()


def mysql_value(connection: Any, sql: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_create_user_arriving_while_the_import_writes_comes_second(
    url: str, tmp_path: Path
) -> None:
    """The import holds the write lock (SQLite) or its table lock (PostgreSQL) while it writes,
    or on MySQL/MariaDB the unique index's lock on each address it wrote; a create-user for an
    email in the file waits, then finds the user there: exit 4.

    The import is paused (SIGSTOP) in the middle of writing, so that create-user surely arrives
    while the import's transaction is open however fast either of them runs; it resumes once
    create-user waits at the database."""
    # MySQL's watcher looks every 0.15 s; SQLite's writing must outlast a busy machine's pauses
    total = 200_000 if is_mysql(url) else 100_000 if is_sqlite(url) else 40_000
    path = tmp_path / "users.jsonl"
    write_import_file(path, total, race_line=total // 2)
    # create-user waits for its password on stdin, its start-up done.
    creator = start(url, "create-user", RACE_EMAIL.lower(), "--password-stdin")
    importer = start(url, "import-users", str(path), "-o", "json")
    try:
        if is_sqlite(url):
            wal = Path(f"{sqlite_path(url)}-wal")
            wait_for(
                lambda: (
                    importer.poll() is not None
                    or (wal.exists() and wal.stat().st_size > 1 << 16 and _sqlite_write_locked(url))
                ),
                120,
                "the import to write",
                poll=0.005,
            )
            importer.send_signal(signal.SIGSTOP)
            assert importer.poll() is None and committed_count(url) == 0, "the import ended"
            send_line(creator, "another password")
            # create-user has the file open and waits for the write lock.
            wait_for(
                lambda: creator.poll() is not None or has_open(creator.pid, sqlite_path(url)),
                60,
                "create-user to open the database",
            )
            time.sleep(0.3)
            assert creator.poll() is None, finish(creator)
        elif is_mysql(url):
            # No table lock there: InnoDB locks the unique key of each row the import wrote, so
            # create-user waits once the import has written the race row (half way).
            with mysql_watcher(url) as watcher:
                written = (
                    "SELECT max(t.trx_rows_modified) FROM information_schema.INNODB_TRX t "
                    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                    "WHERE p.DB = DATABASE()"
                )
                # InnoDB refreshes INNODB_TRX at most every 0.1 s, and not while it is read more
                # often than that.
                wait_for(
                    lambda: (
                        importer.poll() is not None
                        or int(mysql_value(watcher, written) or 0) > total // 2 + 1000
                    ),
                    120,
                    "the import to write the race row",
                    poll=0.15,
                )
                importer.send_signal(signal.SIGSTOP)
                assert importer.poll() is None, "the import ended"
                send_line(creator, "another password")
                waiting = (
                    "SELECT count(*) FROM information_schema.INNODB_TRX t "
                    "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
                    "WHERE p.DB = DATABASE() AND t.trx_state = 'LOCK WAIT'"
                )
                wait_for(
                    lambda: creator.poll() is not None or int(mysql_value(watcher, waiting)) > 0,
                    60,
                    "create-user to wait for the import's row",
                    poll=0.15,
                )
                assert creator.poll() is None, finish(creator)
        else:
            with PgConnection(url) as watcher:
                wait_for(
                    lambda: (
                        importer.poll() is not None
                        or (
                            pg_lock_held(watcher, "ShareRowExclusiveLock")
                            and int(watcher.fetchval("SELECT pg_relation_size('public.user')"))
                            > 1 << 16
                        )
                    ),
                    120,
                    "the import to write",
                    poll=0.005,
                )
                importer.send_signal(signal.SIGSTOP)
                assert importer.poll() is None, "the import ended"
                send_line(creator, "another password")
                # create-user's insert waits for the import's table lock.
                wait_for(
                    lambda: creator.poll() is not None or pg_waiting(watcher) > 0,
                    60,
                    "create-user to wait for the import's lock",
                )
                assert creator.poll() is None, finish(creator)
    finally:
        importer.send_signal(signal.SIGCONT)
    imported, created = finish(importer), finish(creator)

    assert imported.code == 0, imported.stderr
    assert summary(imported)["created"] == total
    message = one_error_line(4, created.code, created.stdout, created.stderr)
    assert "already exists" in message
    assert "locked" not in message
    assert len(rows(url)) == total
    [row] = race_row(url)
    assert row["hashed_password"] == stored_hash()  # the import's row, whole


@pytest.mark.parametrize("rule", ["fail", "skip", "update"])
def test_create_user_and_an_import_started_together_follow_the_conflict_rule(
    url: str, tmp_path: Path, rule: str
) -> None:
    """create-user and an import of a file holding its email start together; the import hashes
    passwords first, so create-user usually commits while the import runs. Whichever comes
    second sees the other's user: under fail that one exits 4; skip and update resolve it. Either
    way one user has the email and nothing is lost or duplicated."""
    total, race_line = 400, 200
    path = tmp_path / "users.jsonl"
    write_import_file(path, total, race_line, plaintext=6)
    creator = start(url, "create-user", RACE_EMAIL.lower(), "--password-stdin", "-o", "json")
    importer = start(url, "import-users", str(path), "--on-conflict", rule, "-o", "json")
    send_line(creator, "create-user's password")
    created, imported = finish(creator), finish(importer)

    stored = rows(url)
    [row] = race_row(url)
    if created.code == 4:  # the import came first: create-user found its user
        assert imported.code == 0, imported.stderr
        assert "already exists" in one_error_line(4, created.code, created.stdout, created.stderr)
        assert summary(imported)["created"] == total
        assert len(stored) == total
        assert row["hashed_password"] == stored_hash()
        return
    assert created.code == 0, created.stderr
    created_id = json.loads(created.stdout)["id"]
    if rule == "fail":  # create-user came first: the import refuses and writes nothing
        message = one_error_line(4, imported.code, imported.stdout, imported.stderr)
        assert f"line {race_line}:" in message, message
        assert len(stored) == 1
        assert verify_password("create-user's password", row["hashed_password"])
        return
    assert imported.code == 0, imported.stderr
    assert len(stored) == total
    assert str(row["id"]) == created_id  # one user with the email, never two
    counts = summary(imported)
    assert counts["created"] == total - 1 and counts["invalid"] == 0
    if rule == "skip":
        assert (counts["skipped"], counts["updated"]) == (1, 0)
        assert verify_password("create-user's password", row["hashed_password"])
        assert not row["is_verified"]
    else:
        assert (counts["skipped"], counts["updated"]) == (0, 1)
        assert row["hashed_password"] == stored_hash()  # the import's fields, the user's id
        assert row["is_verified"]
