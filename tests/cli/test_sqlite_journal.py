"""Reading a SQLite file leaves its journal mode alone; creating or writing it switches to WAL.

WAL outlives the connection that set it (and a -wal file appears beside the database), so a
command that only reads must not make that choice for the app.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any


def journal_mode(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        mode: str = connection.execute("PRAGMA journal_mode").fetchone()[0]
        return mode


def test_read_commands_keep_the_journal_mode_and_writes_switch_to_wal(
    usersctl_anywhere: Any, tmp_path: Path
) -> None:
    path = tmp_path / "app.db"
    url = f"sqlite:///{path}"
    run = usersctl_anywhere
    # Created by usersctl: WAL.
    assert run("-d", url, "init-db", url=False).returncode == 0
    assert journal_mode(path) == "wal"
    created = run(
        "-d",
        url,
        "create-user",
        "alice@example.com",
        "--password-stdin",
        url=False,
        input="a long enough password",
    )
    assert created.returncode == 0, created.stderr
    # The app's own file, in the default rollback journal.
    with contextlib.closing(sqlite3.connect(path)) as connection:
        assert connection.execute("PRAGMA journal_mode = DELETE").fetchone()[0] == "delete"
    for args, code in (
        (["list-users"], 0),
        (["show-user", "alice@example.com"], 0),
        (["export-users", str(tmp_path / "out.jsonl")], 0),
        (["doctor"], 0),
        (["verify-password", "alice@example.com", "--password-stdin"], 6),
    ):
        result = run("-d", url, *args, url=False, input="wrong password")
        assert result.returncode == code, f"{args}: {result.stdout}{result.stderr}"
        assert journal_mode(path) == "delete", args
    assert not (tmp_path / "app.db-wal").exists()
    # A write switches it.
    updated = run("-d", url, "update-user", "alice@example.com", "--verified", url=False)
    assert updated.returncode == 0, updated.stderr
    assert journal_mode(path) == "wal"
