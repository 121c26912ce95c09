"""import-users and export-users, on SQLite and PostgreSQL: round trips, validation, conflicts,
atomicity (including a process killed mid-import) and streaming."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import sys
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

from harness import cli, committed_count, execute, init_db, is_mysql, query, run, start
from usersctl.passwords import hash_password, verify_password


@lru_cache(maxsize=1)
def stored_hash() -> str:
    return hash_password("imported-secret")


def stored(url: str) -> list[dict[str, Any]]:
    """Every row of the user table, read with plain SQL: ids as text, flags as booleans, in the
    order of the lowercased email."""
    rows = query(url, 'SELECT * FROM "user"')
    for row in rows:
        row["id"] = str(row["id"])
        for flag in ("is_active", "is_superuser", "is_verified"):
            row[flag] = bool(row[flag])
    return sorted(rows, key=lambda row: row["email"].lower())


def import_jsonl(url: str, *args: str, input: str) -> Any:
    """import-users of JSON lines given on stdin."""
    return cli(url, "import-users", "-", "--format", "jsonl", *args, input=input)


def jsonl(*records: dict[str, Any]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def user_record(index: int, **extra: Any) -> dict[str, Any]:
    return {"email": f"user{index}@example.com", "hashed_password": stored_hash(), **extra}


@pytest.fixture
def second_url(tmp_path: Path) -> str:
    """An empty second database to import into (SQLite: the round trip crosses databases)."""
    target = f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"
    init_db(target)
    return target


# Round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_export_with_hashes_then_import_reproduces_every_row(
    url: str, second_url: str, tmp_path: Path, fmt: str
) -> None:
    # Create: two users with plaintext passwords, hashed here, and flags of every kind
    source = tmp_path / "source.jsonl"
    source.write_text(
        jsonl(
            {"email": "Alice@Example.com", "password": "alice password 1", "is_superuser": True},
            {"email": "bob@example.com", "password": "bob password 2", "is_active": False},
            {"email": "carol@example.com", "hashed_password": stored_hash(), "is_verified": True},
        )
    )
    result = cli(url, "import-users", str(source), "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == 3

    # Export with hashes, import into an empty database
    exported = tmp_path / f"users.{fmt}"
    result = cli(url, "export-users", str(exported), "--include-hashes")
    assert result.exit_code == 0, result.output
    result = cli(second_url, "import-users", str(exported), "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "created": 3,
        "updated": 0,
        "skipped": 0,
        "invalid": 0,
        "revoked_tokens": 0,
        "dry_run": False,
    }

    # Every column of every row is the same, and the hashed passwords still verify
    assert stored(second_url) == stored(url)
    alice = next(row for row in stored(second_url) if row["email"] == "Alice@example.com")
    assert verify_password("alice password 1", alice["hashed_password"])


def test_export_without_hashes_leaks_no_hash(url: str) -> None:
    import_jsonl(url, input=jsonl(user_record(1), user_record(2)))
    for fmt in ("jsonl", "csv", "json"):
        result = cli(url, "export-users", "-o", fmt)
        assert result.exit_code == 0, result.output
        assert "hashed_password" not in result.stdout
        assert "$argon2" not in result.stdout


def test_export_formats_parse_and_carry_the_fields(url: str) -> None:
    import_jsonl(
        url,
        input=jsonl(user_record(1, is_superuser=True), user_record(2, is_verified=True)),
    )
    texts = cli(url, "export-users").stdout.splitlines()
    lines = [json.loads(line) for line in texts]
    # The same bytes from both databases: compact, fields in the table's order.
    for text_line, record in zip(texts, lines, strict=True):
        assert list(record) == ["id", "email", "is_active", "is_superuser", "is_verified"]
        assert text_line == json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    array = json.loads(cli(url, "export-users", "-o", "json").stdout)
    table = list(csv.DictReader(io.StringIO(cli(url, "export-users", "-o", "csv").stdout)))
    assert sorted(lines, key=lambda r: r["email"]) == sorted(array, key=lambda r: r["email"])
    by_email = {row["email"]: row for row in lines}
    assert set(by_email) == {"user1@example.com", "user2@example.com"}
    assert by_email["user1@example.com"]["is_superuser"] is True
    assert by_email["user2@example.com"]["is_verified"] is True
    assert list(table[0]) == ["id", "email", "is_active", "is_superuser", "is_verified"]
    csv_by_email = {row["email"]: row for row in table}
    assert csv_by_email["user1@example.com"]["is_superuser"] == "true"
    assert csv_by_email["user2@example.com"]["is_superuser"] == "false"
    assert csv_by_email["user1@example.com"]["id"] == by_email["user1@example.com"]["id"]
    uuid.UUID(by_email["user1@example.com"]["id"])


def test_export_filters_like_list_users(url: str) -> None:
    import_jsonl(
        url,
        input=jsonl(
            user_record(1, is_superuser=True),
            user_record(2, is_active=False),
            {"email": "100%_odd@example.com", "hashed_password": stored_hash()},
        ),
    )
    emails = lambda *args: sorted(  # noqa: E731
        json.loads(line)["email"] for line in cli(url, "export-users", *args).stdout.splitlines()
    )
    assert emails("--superuser") == ["user1@example.com"]
    assert emails("--inactive") == ["user2@example.com"]
    assert emails("--search", "%_") == ["100%_odd@example.com"]
    assert emails("--search", "USER") == ["user1@example.com", "user2@example.com"]


def test_export_writes_in_batches(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows leave in batches as they arrive from the cursor, not as one document at the end."""
    from usersctl import exporting

    records = [user_record(index) for index in range(250)]
    import_jsonl(url, input=jsonl(*records))
    monkeypatch.setattr(exporting, "BATCH", 40)

    class Recorder(io.StringIO):
        writes = 0

        def write(self, text: str) -> int:
            Recorder.writes += 1
            return super().write(text)

    out = Recorder()
    count = asyncio.run(exporting.export_users(url, out, fmt="jsonl"))
    assert count == 250
    assert Recorder.writes >= 250 // 40
    assert len(out.getvalue().splitlines()) == 250


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    missing = f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"
    result = cli(missing, "export-users", str(target))
    assert result.exit_code == 5, result.output
    assert not target.exists()
    assert not list(tmp_path.glob("*.partial"))


# Validation ------------------------------------------------------------------------------------


def test_invalid_rows_are_all_reported_and_nothing_is_written(url: str) -> None:
    lines = jsonl(
        user_record(1),
        {"email": "not-an-email", "hashed_password": stored_hash()},
        {"email": "nopassword@example.com"},
        {
            "email": "both@example.com",
            "password": "x long enough",
            "hashed_password": stored_hash(),
        },
        {"email": "badhash@example.com", "hashed_password": "md5$abc"},
        {"email": "flag@example.com", "password": "x long enough", "is_active": "maybe"},
        {"email": "unknown@example.com", "password": "x long enough", "nickname": "zed"},
        user_record(8),
    )
    result = import_jsonl(url, input=lines)
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("Error: 6 rows are invalid, nothing was written")
    for line in (2, 3, 4, 5, 6, 7):
        assert f"line {line}:" in message
    assert "line 1:" not in message and "line 8:" not in message
    assert "nickname" in message and "is_active" in message
    assert stored(url) == []


@pytest.mark.parametrize(
    ("content", "fmt", "line", "reason"),
    [
        (b"\xef\xbb\xbfemail,password\na@example.com,x\n", "csv", 1, "byte-order mark"),
        (
            b'{"email": "a@example.com", "password": "x long enough"}\n{"email": "\xff"}\n',
            "jsonl",
            2,
            "UTF-8",
        ),
        (b"email,email\na@example.com,b@example.com\n", "csv", 1, "twice"),
        (
            b'{"email": "a@example.com", "password": "x long enough"}\n{"email": "b@exa',
            "jsonl",
            2,
            "JSON",
        ),
        (b'email,password\na@example.com,"x\n', "csv", 2, "CSV"),
        (b"email,password\na@example.com,x,extra\n", "csv", 2, "fields"),
        (b'[{"email": "a@example.com", "password": "x long enough"},\n{"email"', "json", 2, "JSON"),
        (
            b'{"email": "a@example.com", "password": "' + b"x" * (1 << 20) + b'"}\n',
            "jsonl",
            1,
            "longer",
        ),
    ],
)
def test_damaged_files_are_rejected_with_the_line(
    url: str, tmp_path: Path, content: bytes, fmt: str, line: int, reason: str
) -> None:
    path = tmp_path / f"users.{fmt}"
    path.write_bytes(content)
    result = cli(url, "import-users", str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    error = result.stderr.strip()
    assert error.startswith("Error: "), error
    assert f"line {line}:" in error and reason in error, error
    assert "Traceback" not in result.output
    assert stored(url) == []


def test_csv_and_json_inputs_and_format_detection(url: str, tmp_path: Path) -> None:
    with (tmp_path / "a.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "hashed_password", "is_superuser"])
        writer.writerow(["A@example.com", stored_hash(), "yes"])  # the hash has commas: quoted
    (tmp_path / "b.json").write_text(json.dumps([user_record(2)]))
    (tmp_path / "c.txt").write_text(jsonl(user_record(3)))
    for name in ("a.csv", "b.json", "c.txt"):
        result = cli(url, "import-users", str(tmp_path / name))
        assert result.exit_code == 0, (name, result.output)
    piped = cli(
        url,
        "import-users",
        "-",
        "--format",
        "csv",
        input="email,password\nd@example.com,a csv password\n",
    )
    assert piped.exit_code == 0, piped.output
    rows = {row["email"]: row for row in stored(url)}
    assert set(rows) == {"A@example.com", "user2@example.com", "user3@example.com", "d@example.com"}
    assert rows["A@example.com"]["is_superuser"] is True
    assert verify_password("a csv password", rows["d@example.com"]["hashed_password"])


def test_missing_file_is_a_usage_error(url: str, tmp_path: Path) -> None:
    result = cli(url, "import-users", str(tmp_path / "nope.jsonl"))
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.stderr


# Conflicts --------------------------------------------------------------------------------------


def test_conflicts_with_the_database_follow_the_rule(url: str) -> None:
    import_jsonl(url, input=jsonl(user_record(1), user_record(2)))
    before = stored(url)
    incoming = jsonl(
        {"email": "USER1@example.com", "password": "a new password", "is_superuser": True},
        user_record(3),
    )

    # fail: exit 4, nothing written
    result = import_jsonl(url, input=incoming)
    assert result.exit_code == 4, result.output
    assert "line 1:" in result.stderr and "--on-conflict" in result.stderr
    assert stored(url) == before

    # skip: the existing user is kept as it was
    result = import_jsonl(
        url,
        "--on-conflict",
        "skip",
        "-o",
        "json",
        input=incoming,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) | {"dry_run": False} == {
        "created": 1,
        "updated": 0,
        "skipped": 1,
        "invalid": 0,
        "revoked_tokens": 0,
        "dry_run": False,
    }
    user1 = next(row for row in stored(url) if row["email"].lower() == "user1@example.com")
    assert user1 == next(row for row in before if row["email"] == "user1@example.com")

    # update: the existing user takes the row's values, keeping its id
    result = import_jsonl(
        url,
        "--on-conflict",
        "update",
        "-o",
        "json",
        input=incoming,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["updated"] == 2
    user1_after = next(row for row in stored(url) if row["email"].lower() == "user1@example.com")
    assert user1_after["id"] == user1["id"]
    assert user1_after["email"] == "USER1@example.com"
    assert user1_after["is_superuser"] is True
    assert verify_password("a new password", user1_after["hashed_password"])
    assert len(stored(url)) == 3


def test_duplicates_within_the_file_are_decided_case_insensitively(url: str) -> None:
    rows = jsonl(
        user_record(1, is_verified=False),
        {"email": "USER1@EXAMPLE.COM", "hashed_password": stored_hash(), "is_verified": True},
    )
    result = import_jsonl(url, input=rows)
    assert result.exit_code == 4, result.output
    assert "line 2:" in result.stderr and "line 1" in result.stderr
    assert stored(url) == []

    result = import_jsonl(url, "--on-conflict", "skip", input=rows)
    assert result.exit_code == 0, result.output
    assert [(row["email"], row["is_verified"]) for row in stored(url)] == [
        ("user1@example.com", False)
    ]


def test_an_id_that_belongs_to_someone_else_is_a_conflict(url: str) -> None:
    owner = str(uuid.uuid4())
    import_jsonl(url, input=jsonl(user_record(1, id=owner)))
    result = import_jsonl(url, input=jsonl(user_record(2, id=owner)))
    assert result.exit_code == 4, result.output
    assert owner in result.stderr
    assert [row["email"] for row in stored(url)] == ["user1@example.com"]


def test_dry_run_writes_nothing_but_reports(url: str) -> None:
    result = import_jsonl(
        url,
        "--dry-run",
        "-o",
        "json",
        input=jsonl(user_record(1), user_record(2)),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == 2
    assert json.loads(result.stdout)["dry_run"] is True
    assert stored(url) == []


# Plaintext passwords ------------------------------------------------------------------------------


def test_plaintext_passwords_are_hashed_on_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from usersctl import importing, passwords

    # The real hasher, watched: how many hashes run at the same time.
    lock = threading.Lock()
    running = {"now": 0, "most": 0}
    real_hash = passwords._Argon2Memory.hash

    def watched(self: passwords._Argon2Memory, password: str) -> str:
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
        try:
            return real_hash(self, password)
        finally:
            with lock:
                running["now"] -= 1

    monkeypatch.setattr(passwords._Argon2Memory, "hash", watched)
    rows = [
        importing.Row(line, f"u{line}@example.com", {"email": f"u{line}@example.com"}, f"pw-{line}")
        for line in range(1, 7)
    ]
    stages: list[tuple[str, int, int]] = []
    importing.hash_passwords(rows, lambda *args: stages.append(args))
    assert [done for _, done, _ in stages] == list(range(1, 7))
    assert running["most"] == min(6, os.cpu_count() or 1)
    for row in rows:
        assert row.password is None
        assert verify_password(f"pw-{row.line}", row.values["hashed_password"])


def test_stopped_hashing_ends_after_the_hashes_under_way(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from usersctl import importing, passwords

    started = []
    real_hash = passwords._Argon2Memory.hash

    def counted(self: passwords._Argon2Memory, password: str) -> str:
        started.append(password)
        return real_hash(self, password)

    monkeypatch.setattr(passwords._Argon2Memory, "hash", counted)
    workers = os.cpu_count() or 1
    rows = [
        importing.Row(line, f"u{line}@example.com", {"email": f"u{line}@example.com"}, f"pw-{line}")
        for line in range(1, 4 * workers + 4)
    ]
    stop = threading.Event()
    # Interrupted as soon as the first hash is in: the import is being cancelled.
    with pytest.raises(passwords.HashingStopped):
        importing.hash_passwords(rows, lambda *args: stop.set(), stop)

    # The hashes already running when it stopped were finished; no other one started.
    assert 1 <= len(started) <= 2 * workers < len(rows)
    hashed = [row for row in rows if "hashed_password" in row.values]
    assert rows[: len(hashed)] == hashed and 1 <= len(hashed) <= len(started)
    assert verify_password("pw-1", rows[0].values["hashed_password"])


def test_a_password_that_is_not_valid_unicode_is_an_invalid_row(url: str, tmp_path: Path) -> None:
    init_db(url)
    source = tmp_path / "surrogate.jsonl"
    source.write_text(
        '{"email": "fine@example.com", "password": "a good password"}\n'
        '{"email": "odd@example.com", "password": "abc\\ud800"}\n'
    )
    result = cli(url, "import-users", str(source))
    assert result.exit_code == 2, result.output
    assert "line 2" in result.output and "not valid Unicode" in result.output
    assert committed_count(url) == 0


@pytest.fixture
def hashed_passwords(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plaintext passwords the import hashes, in the order they are hashed (the real hasher)."""
    from usersctl import passwords

    seen: list[str] = []
    real_hash = passwords._Argon2Memory.hash

    def counted(self: passwords._Argon2Memory, password: str) -> str:
        seen.append(password)
        return real_hash(self, password)

    monkeypatch.setattr(passwords._Argon2Memory, "hash", counted)
    return seen


def test_a_conflict_under_fail_is_found_before_any_password_is_hashed(
    url: str, hashed_passwords: list[str]
) -> None:
    assert import_jsonl(url, input=jsonl(user_record(2))).exit_code == 0
    rows = jsonl(
        *(
            {"email": f"user{n}@example.com", "password": f"password number {n}"}
            for n in range(1, 5)
        )
    )

    result = import_jsonl(url, input=rows)

    assert result.exit_code == 4, result.output
    assert "user2@example.com already exists" in result.output
    assert hashed_passwords == []
    assert [row["email"] for row in stored(url)] == ["user2@example.com"]


def test_a_conflict_under_update_is_found_before_any_password_is_hashed(
    url: str, hashed_passwords: list[str]
) -> None:
    assert import_jsonl(url, input=jsonl(user_record(1, id=str(uuid.uuid4())))).exit_code == 0
    [owner] = stored(url)
    # The second row claims user1's id under another address: no rule makes that right.
    rows = jsonl(
        {"email": "user2@example.com", "password": "password number 2"},
        {"email": "user3@example.com", "password": "password number 3", "id": owner["id"]},
    )

    result = import_jsonl(url, "--on-conflict", "update", input=rows)

    assert result.exit_code == 4, result.output
    assert f"id {owner['id']} belongs to user1@example.com" in result.output
    assert hashed_passwords == []
    assert len(stored(url)) == 1


def test_a_rerun_under_skip_hashes_only_the_new_users(
    url: str, hashed_passwords: list[str]
) -> None:
    first = jsonl(
        *({"email": f"user{n}@example.com", "password": f"password number {n}"} for n in (1, 2))
    )
    assert import_jsonl(url, "--on-conflict", "skip", input=first).exit_code == 0
    assert sorted(hashed_passwords) == ["password number 1", "password number 2"]
    hashed_passwords.clear()

    again = jsonl(
        *({"email": f"USER{n}@example.com", "password": f"password number {n}"} for n in (1, 2, 3))
    )
    result = import_jsonl(url, "--on-conflict", "skip", "-o", "json", input=again)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) | {"dry_run": False} == {
        "created": 1,
        "updated": 0,
        "skipped": 2,
        "invalid": 0,
        "revoked_tokens": 0,
        "dry_run": False,
    }
    assert hashed_passwords == ["password number 3"]
    stored_rows = {row["email"].lower(): row for row in stored(url)}
    assert verify_password("password number 3", stored_rows["user3@example.com"]["hashed_password"])


def test_a_row_whose_user_went_away_after_the_first_look_is_hashed_when_written(
    url: str,
) -> None:
    """Under skip, a row whose user existed at the first look is not hashed; if the user is
    deleted before the write, the row is inserted after all, and hashed then."""
    from usersctl import importing
    from usersctl.users import open_users

    rows = [
        importing.Row(1, "gone@example.com", {"email": "gone@example.com", **importing.FLAGS}, "pw")
    ]
    summary = importing.ImportSummary()

    async def write() -> None:
        async with open_users(url, write=True) as ctx:
            await importing.write_rows(ctx, rows, "skip", summary)
            await ctx.session.commit()

    asyncio.run(write())
    assert summary.created == 1
    [row] = stored(url)
    assert row["email"] == "gone@example.com" and verify_password("pw", row["hashed_password"])


# A killed import ---------------------------------------------------------------------------------


def _writing(url: str) -> bool:
    """Whether an import is inside its write transaction right now."""
    if url.startswith("sqlite"):
        wal = Path(url.split(":///", 1)[1] + "-wal")
        return wal.exists() and wal.stat().st_size > 1 << 20

    if is_mysql(url):
        # A transaction of a connection to this database that has written rows (not yet
        # committed: the harness reads no uncommitted row).
        writing = query(
            url,
            "SELECT count(*) AS n FROM information_schema.INNODB_TRX t "
            "JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
            "WHERE p.DB = DATABASE() AND t.trx_rows_modified > 0",
        )
        return bool(writing[0]["n"])
    locks = query(
        url,
        "SELECT count(*) AS n FROM pg_locks WHERE mode = 'ShareRowExclusiveLock' "
        "AND relation = 'public.user'::regclass AND granted",
    )
    return bool(locks[0]["n"])


def test_a_killed_import_leaves_nothing_and_the_next_run_works(url: str, tmp_path: Path) -> None:
    total = 200_000 if is_mysql(url) else 100_000  # MySQL: a longer write to be seen in
    path = tmp_path / "many.jsonl"
    hashed = stored_hash()
    with path.open("w") as out:
        for index in range(total):
            record = {"email": f"user{index}@example{index % 97}.com", "hashed_password": hashed}
            out.write(json.dumps(record) + "\n")
    process = start(url, "import-users", str(path))
    # Kill it while it writes: rows are in the database's transaction, not yet committed.
    deadline = time.monotonic() + 120
    # MySQL/MariaDB refresh INNODB_TRX only when it was not read for 0.1 s: polling faster
    # would keep reading a stale list.
    pause = 0.15 if is_mysql(url) else 0.02
    while not _writing(url):
        assert process.poll() is None, "the import ended before it was seen writing"
        assert time.monotonic() < deadline, "the import was never seen writing"
        time.sleep(pause)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert committed_count(url) == 0

    # The next run completes without any repair (no stale lock; SQLite recovers its WAL).
    finish = run(url, "import-users", str(path), timeout=300)
    assert finish.returncode == 0, finish.stderr
    assert committed_count(url) == total


def test_an_update_changes_the_flags_the_row_gives_and_keeps_the_others(url: str) -> None:
    stored_flags = {"is_active": False, "is_superuser": True, "is_verified": True}
    assert import_jsonl(url, input=jsonl(user_record(1, **stored_flags))).exit_code == 0

    # A batch of new passwords: no flags in the rows, so none changes.
    new_password = {"email": "user1@example.com", "password": "rotated password"}
    result = import_jsonl(url, "--on-conflict", "update", input=jsonl(new_password))
    assert result.exit_code == 0, result.output
    [row] = stored(url)
    assert {name: row[name] for name in stored_flags} == stored_flags
    assert verify_password("rotated password", row["hashed_password"])

    result = import_jsonl(
        url, "--on-conflict", "update", input=jsonl(user_record(1, is_verified=False))
    )
    assert result.exit_code == 0, result.output
    [row] = stored(url)
    assert {name: row[name] for name in stored_flags} == stored_flags | {"is_verified": False}


# The last superuser --------------------------------------------------------------------------------


def test_an_import_update_that_leaves_no_active_superuser_is_refused(url: str) -> None:
    result = import_jsonl(url, input=jsonl(user_record(1, is_superuser=True), user_record(2)))
    assert result.exit_code == 0, result.output
    before = stored(url)

    for change in ({"is_superuser": False}, {"is_active": False}):
        result = import_jsonl(
            url, "--on-conflict", "update", input=jsonl(user_record(1, **change), user_record(3))
        )
        assert result.exit_code == 4, result.output
        assert "no active superuser" in result.output and "user1@example.com" in result.output
        assert stored(url) == before  # nothing written, user3 included

    # Another superuser arriving in the same file keeps one: allowed.
    result = import_jsonl(
        url,
        "--on-conflict",
        "update",
        input=jsonl(user_record(1, is_superuser=False), user_record(4, is_superuser=True)),
    )
    assert result.exit_code == 0, result.output

    # --force demotes the last one, as update-user --force does.
    result = import_jsonl(
        url, "--on-conflict", "update", "--force", input=jsonl(user_record(4, is_active=False))
    )
    assert result.exit_code == 0, result.output
    flags = {row["email"]: (row["is_active"], row["is_superuser"]) for row in stored(url)}
    assert flags["user1@example.com"] == (True, False)
    assert flags["user4@example.com"] == (False, True)


def test_export_through_a_link_writes_its_target_and_keeps_the_link(
    url: str, tmp_path: Path
) -> None:
    import_jsonl(url, input=jsonl(user_record(1)))
    target = tmp_path / "real.jsonl"
    target.write_text("")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    result = cli(url, "export-users", str(link))
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert [json.loads(line)["email"] for line in target.read_text().splitlines()] == [
        "user1@example.com"
    ]
    assert not list(tmp_path.glob("*.partial"))


def test_an_export_into_a_loop_of_links_is_a_usage_error(url: str, tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    result = cli(url, "export-users", str(tmp_path / "a.jsonl"))
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output


def test_hashes_exported_through_a_link_are_readable_by_the_owner_only(
    url: str, tmp_path: Path
) -> None:
    import stat

    import_jsonl(url, input=jsonl(user_record(1)))
    target = tmp_path / "users.jsonl"
    target.write_text("an older export, readable by all\n")
    target.chmod(0o644)
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)

    result = cli(url, "export-users", str(link), "--include-hashes")

    assert result.exit_code == 0, result.output
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    [row] = [json.loads(line) for line in target.read_text().splitlines()]
    assert row["hashed_password"].startswith("$argon2id$")


def _make_integer_id_table(
    url: str, extra_columns: str = "first_name VARCHAR(50)", unique: str = "UNIQUE"
) -> None:
    """An app's own user table: integer ids, FastAPI Users' columns, and ``extra_columns``."""
    key = "SERIAL PRIMARY KEY" if "postgresql" in url else "INTEGER PRIMARY KEY AUTOINCREMENT"
    if is_mysql(url):
        key = "INTEGER PRIMARY KEY AUTO_INCREMENT"
    execute(
        url,
        f'CREATE TABLE "user" (id {key}, email VARCHAR(320) NOT NULL {unique}, '
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        f"is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, {extra_columns})",
    )


def test_integer_ids_round_trip_and_the_app_can_insert_afterwards(
    database_url: str, tmp_path: Path
) -> None:
    """An app's integer-id table with an extra column: imported ids are kept, and the id
    sequence moves past them, so the next user created (here or by the app) gets a fresh id."""
    _make_integer_id_table(database_url)
    init_db(database_url)  # adds the lower(email) index to the existing table
    rows = jsonl(
        user_record(1, id=7, first_name="Ada"),
        user_record(2, id=8, first_name=None),
    )
    result = import_jsonl(database_url, input=rows)
    assert result.exit_code == 0, result.output
    created = cli(
        database_url, "create-user", "new@example.com", "--generate-password", "-o", "json"
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["id"] > 8

    # The same file again under skip: each row is a duplicate of itself, not an id clash.
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text(rows + rows)
    result = cli(database_url, "import-users", str(doubled), "--on-conflict", "skip", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped"] == 4

    # An existing address arriving with an id nobody has is updated, keeping its own id.
    result = import_jsonl(
        database_url,
        "--on-conflict",
        "update",
        "-o",
        "json",
        input=jsonl(user_record(1, id=99, first_name="Grace")),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["updated"] == 1
    by_email = {row["email"]: row for row in stored(database_url)}
    assert by_email["user1@example.com"]["id"] == "7"
    assert by_email["user1@example.com"]["first_name"] == "Grace"
    assert by_email["user2@example.com"]["first_name"] is None


def test_a_file_larger_than_one_statement_lands_row_for_row(
    database_url: str, tmp_path: Path
) -> None:
    """The fast path writes many rows per INSERT on SQLite, as many as its limit on bound
    parameters allows (4,680 rows of this table's 7 columns, less than a batch): 12,000 rows
    cross batches and statements, and each lands whole, its values in its own columns."""
    _make_integer_id_table(database_url)
    init_db(database_url)
    count = 12_000
    records = [
        user_record(
            index,
            id=index + 1,
            first_name=f"name {index}" if index % 3 else None,
            is_active=index % 2 == 0,
            is_verified=index % 5 == 0,
        )
        for index in range(count)
    ]
    path = tmp_path / "many.jsonl"
    path.write_text(jsonl(*records))
    result = cli(database_url, "import-users", str(path), "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == count

    rows = {row["id"]: row for row in stored(database_url)}
    assert len(rows) == count
    for record in records:
        row = rows[str(record["id"])]
        assert (row["email"], row["first_name"], row["is_active"], row["is_verified"]) == (
            record["email"],
            record["first_name"],
            record["is_active"],
            record["is_verified"],
        )
        assert row["hashed_password"] == record["hashed_password"]
        assert row["is_superuser"] is False


def test_json_nulls_stay_sql_null_and_any_column_name_exports(
    database_url: str, tmp_path: Path
) -> None:
    json_type = "JSONB" if "postgresql" in database_url else "JSON"
    _make_integer_id_table(database_url, f"u TEXT, profile {json_type}")
    init_db(database_url)
    path = tmp_path / "odd.jsonl"
    path.write_text(
        jsonl(
            user_record(1, u="first", profile=None),
            user_record(2, u=None, profile={"plan": "pro"}),
        )
    )
    result = cli(database_url, "import-users", str(path), "-o", "json")
    assert result.exit_code == 0, result.output

    nulls = query(database_url, 'SELECT count(*) AS n FROM "user" WHERE profile IS NULL')
    assert nulls[0]["n"] == 1  # JSON null arrived as SQL NULL, not the text 'null'

    exported = cli(database_url, "export-users")
    assert exported.exit_code == 0, exported.output
    by_email = {row["email"]: row for row in map(json.loads, exported.stdout.splitlines())}
    assert by_email["user1@example.com"]["u"] == "first"
    assert by_email["user1@example.com"]["profile"] is None
    assert by_email["user2@example.com"]["u"] is None
    assert by_email["user2@example.com"]["profile"] == {"plan": "pro"}


def test_hashes_in_no_known_format_are_refused_unless_kept_as_they_are(
    url: str, second_url: str, tmp_path: Path
) -> None:
    """A legacy or locking value in hashed_password is an invalid row (a script reads the count
    from -o json), unless --keep-unknown-hashes; then a move with --include-hashes is exact."""
    rows = jsonl(
        {"email": "locked@example.com", "hashed_password": "!DISABLED!"},
        {"email": "legacy@example.com", "hashed_password": "pbkdf2_sha256$600000$salt$digest"},
        user_record(3),
    )
    refused = import_jsonl(url, "-o", "json", input=rows)
    assert refused.exit_code == 2
    assert json.loads(refused.stdout)["invalid"] == 2
    assert "--keep-unknown-hashes" in refused.stderr
    assert stored(url) == []

    # Kept, such a value is still checked as the column's text, with its line
    for bad, reason in (("x" * 1025, "longer than 1024"), ("md5\ud800", "not valid UTF-8")):
        bad_row = json.dumps({"email": "bad@example.com", "hashed_password": bad}) + "\n"
        message = import_jsonl(url, "--keep-unknown-hashes", input=rows + bad_row).stderr
        assert "line 4: field 'hashed_password'" in message and reason in message, message
    assert stored(url) == []

    kept = import_jsonl(url, "--keep-unknown-hashes", "-o", "json", input=rows)
    assert kept.exit_code == 0, kept.output
    assert json.loads(kept.stdout)["created"] == 3

    exported = tmp_path / "move.jsonl"
    assert cli(url, "export-users", str(exported), "--include-hashes").exit_code == 0
    moved = cli(second_url, "import-users", str(exported), "--keep-unknown-hashes")
    assert moved.exit_code == 0, moved.output
    assert stored(second_url) == stored(url)


def test_updates_among_case_duplicates_take_the_exact_address_or_conflict(
    database_url: str,
) -> None:
    """A table FastAPI Users made, without the lower(email) index, holding one address in two
    cases: an update names the user stored exactly so; a third spelling is a conflict (exit 4).
    On MySQL/MariaDB a unique index on email, in its _ci collation, keeps such twins out, so
    there the table is one without it."""
    _make_integer_id_table(database_url, unique="" if is_mysql(database_url) else "UNIQUE")

    execute(
        database_url,
        *(
            'INSERT INTO "user" (email, hashed_password, is_active, is_superuser, is_verified) '
            f"VALUES ('{email}', '{stored_hash()}', true, false, false)"
            for email in ("Dup@example.com", "dup@example.com")
        ),
    )
    exact = jsonl({"email": "dup@example.com", "password": "x long enough", "first_name": "exact"})
    result = import_jsonl(database_url, "--on-conflict", "update", "-o", "json", input=exact)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["updated"] == 1
    names = {row["email"]: row["first_name"] for row in stored(database_url)}
    assert names == {"Dup@example.com": None, "dup@example.com": "exact"}

    third = jsonl({"email": "DUP@example.com", "password": "x long enough", "first_name": "which?"})
    result = import_jsonl(database_url, "--on-conflict", "update", input=third)
    assert result.exit_code == 4, result.output
    assert "several users have the address: Dup@example.com, dup@example.com" in result.stderr


# SQLite's limit on bound parameters ----------------------------------------------------------------


@pytest.mark.skipif(sys.version_info < (3, 11), reason="sqlite3 can set limits from Python 3.11")
def test_sqlite_inserts_fit_a_build_with_a_lower_parameter_limit() -> None:
    import sqlite3

    from sqlalchemy import Boolean, Column, Integer, MetaData, String, Table
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateTable

    from usersctl import importing

    dialect = sqlite_dialect.dialect()
    table = Table(
        "user",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("email", String(320), nullable=False),
        Column("hashed_password", String(1024), nullable=False),
        Column("is_active", Boolean, nullable=False),
    )
    rows = [
        {"id": n, "email": f"u{n}@example.com", "hashed_password": "h", "is_active": True}
        for n in range(1, 1001)
    ]
    [statement] = importing.prepare_inserts(table, dialect, rows)

    # This build's own limit is what the import uses (at most 32,766).
    fresh = sqlite3.connect(":memory:")
    assert importing.sqlite_variable_limit() == min(
        fresh.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER), 32766
    )

    # A build compiled with SQLite's old default of 999 (set here at run time).
    connection = sqlite3.connect(":memory:")
    connection.execute(str(CreateTable(table).compile(dialect=dialect)))
    connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
        for sql, params in importing._sqlite_multi_row(statement, 32766):
            connection.execute(sql, params)
    connection.rollback()

    chunks = list(importing._sqlite_multi_row(statement, 999))
    for sql, params in chunks:
        connection.execute(sql, params)
    assert all(len(params) <= 999 for _, params in chunks)
    assert len(chunks) == 5  # 249 rows of 4 values per statement
    assert connection.execute('SELECT count(*), max(id) FROM "user"').fetchone() == (1000, 1000)
