"""Hardening found by an adversarial review: each test failed before its fix."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi_users import BaseUserManager, IntegerIDMixin
from fastapi_users.authentication import JWTStrategy
from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTable, SQLAlchemyUserDatabase
from sqlalchemy import Integer, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from harness import has_open, sql_engine, sqlite_path, wait_for
from harness import sql as _sql


class Base(DeclarativeBase):
    pass


class User(SQLAlchemyBaseUserTable[int], Base):
    """An app's user table with integer ids from a PostgreSQL sequence (SERIAL)."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True)


class UserManager(IntegerIDMixin, BaseUserManager[User, int]):
    reset_password_token_secret = "reset-secret"
    verification_token_secret = "verify-secret"


JWT = JWTStrategy(secret="jwt-secret-for-the-test-of-32-bytes-or-more", lifetime_seconds=3600)


async def _create_tables(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
    finally:
        await engine.dispose()


async def _token_owner(url: str, token: str) -> int | None:
    """The id of the user FastAPI Users' JWT strategy authenticates with ``token``, or None."""
    engine = create_async_engine(url)
    try:
        async with async_sessionmaker(engine)() as session:
            manager = UserManager(SQLAlchemyUserDatabase(session, User))
            user = await JWT.read_token(token, manager)
            return None if user is None else int(user.id)
    finally:
        await engine.dispose()


def _last_value(url: str) -> Any:
    [(value,)] = asyncio.run(
        _sql(url, """SELECT pg_sequence_last_value(pg_get_serial_sequence('"user"', 'id'))""")
    )
    return value


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_restoring_a_deleted_user_never_moves_the_id_sequence_back(
    database_url: str, usersctl: Any, tmp_path: Path
) -> None:
    """Users 1-6; 6 and 4 are deleted; 4 comes back from a backup. The next user must get 7:
    with the sequence moved back to 5 it got 6, and the deleted user 6's JWT logged in as it."""
    asyncio.run(_create_tables(database_url))
    for number in range(1, 7):
        usersctl.ok("create-user", f"user{number}@example.com", "--generate-password")
    backup = tmp_path / "backup.jsonl"
    usersctl.ok("export-users", str(backup), "--include-hashes")
    token_of_6 = asyncio.run(JWT.write_token(User(id=6)))
    assert asyncio.run(_token_owner(database_url, token_of_6)) == 6
    usersctl.ok("delete-user", "user6@example.com", "user4@example.com", "--yes")

    four = tmp_path / "four.jsonl"
    four.write_text(
        "".join(line + "\n" for line in backup.read_text().splitlines() if '"id":4,' in line)
    )
    assert len(four.read_text().splitlines()) == 1
    usersctl.ok("import-users", str(four), "--dry-run")
    assert _last_value(database_url) == 6  # a dry run leaves the sequence alone
    usersctl.ok("import-users", str(four))
    assert _last_value(database_url) == 6  # 4 is below what was handed out: not moved back

    created = json.loads(
        usersctl.ok("create-user", "new@example.com", "--generate-password", "-o", "json").stdout
    )
    rows = asyncio.run(_sql(database_url, 'SELECT id, email FROM "user" ORDER BY id'))
    assert [tuple(row) for row in rows] == [
        (1, "user1@example.com"),
        (2, "user2@example.com"),
        (3, "user3@example.com"),
        (4, "user4@example.com"),
        (5, "user5@example.com"),
        (7, "new@example.com"),
    ]
    assert created["id"] == 7
    assert asyncio.run(_token_owner(database_url, token_of_6)) is None


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_imported_ids_above_the_sequence_still_move_it_forward(
    database_url: str, usersctl: Any, tmp_path: Path
) -> None:
    asyncio.run(_create_tables(database_url))
    usersctl.ok("create-user", "first@example.com", "--generate-password")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        json.dumps({"id": 40, "email": "forty@example.com", "password": "a long passphrase"}) + "\n"
    )
    usersctl.ok("import-users", str(rows))
    assert _last_value(database_url) == 40
    created = usersctl.ok("create-user", "next@example.com", "--generate-password", "-o", "json")
    assert json.loads(created.stdout)["id"] == 41


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_password_in_a_url_parameter_is_never_printed(database_url: str, usersctl: Any) -> None:
    # The test server trusts any password: asyncpg sends this one, and usersctl must not show it.
    with_secret = f"{database_url}?password=s3cretpw"
    init = usersctl("-d", with_secret, "init-db", url=False)
    doctor = usersctl("-d", with_secret, "doctor", url=False)
    doctor_json = usersctl("-d", with_secret, "doctor", "-o", "json", url=False)
    assert init.returncode == 0, init.stderr
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert doctor_json.returncode == 0, doctor_json.stderr
    assert json.loads(doctor_json.stdout)["database"].endswith("?password=***")
    for result in (init, doctor, doctor_json):
        shown = result.stdout + result.stderr
        assert "s3cretpw" not in shown
        assert "password=***" in shown


@pytest.mark.parametrize(
    ("mode", "warned"),
    [
        (0o600, None),
        (0o640, "readable by other users"),
        (0o604, "readable by other users"),
        (0o620, "writable by other users"),
        (0o602, "writable by other users"),
    ],
)
def test_a_password_file_others_can_read_or_replace_is_warned_about(
    cli: Any, tmp_path: Path, mode: int, warned: str | None
) -> None:
    secret = tmp_path / "password.txt"
    secret.write_text("a long passphrase\n")
    os.chmod(secret, mode)
    assert stat.S_IMODE(secret.stat().st_mode) == mode
    result = cli.ok("create-user", "ann@example.com", "--password-file", str(secret))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    if warned is None:
        assert warnings == []
    else:
        assert warnings == [f"Warning: password file {secret} is {warned}; chmod 600 it"]


@pytest.mark.parametrize(
    ("query", "named"),
    [("?foo=bar", "?foo"), ("?sslpassword=k3ypass", "?(a parameter)")],
)
def test_a_url_parameter_the_driver_does_not_take_is_a_usage_error(
    usersctl_anywhere: Any, query: str, named: str
) -> None:
    url = f"postgresql://app@127.0.0.1:9/app{query}"
    message = usersctl_anywhere.fails(2, "-d", url, "list-users")
    assert f"parameter asyncpg does not take: {named};" in message
    assert "k3ypass" not in message and "bar" not in message


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_libpq_and_asyncpg_parameters_of_a_pasted_url_reach_the_server(
    database_url: str, usersctl: Any
) -> None:
    """``application_name`` is libpq's (a server setting for asyncpg); numbers arrive as text."""
    usersctl.ok("init-db")
    url = f"{database_url}?application_name=usersctl-test&statement_cache_size=0&command_timeout=30"
    usersctl.ok("-d", url, "list-users", url=False)
    bad = f"{database_url}?statement_cache_size=lots"
    message = usersctl.fails(2, "-d", bad, "list-users", url=False)
    assert "?statement_cache_size= is not a number" in message


#: What a stranger can type into a sign-up form's free-text field: a screen clear, a window
#: title (OSC 0), a hyperlink (OSC 8), a one-byte CSI, a bidirectional override, and a line
#: break followed by what looks like a superuser row.
HOSTILE_NAME = (
    "\x1b[2J\x1b]0;owned\x07\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\"
    "\x9b31m\u202eevil\nroot@example.com  true  true"
)
SHOWN_NAME = (
    "\\x1b[2J\\x1b]0;owned\\x07\\x1b]8;;https://evil.example/\\x1b\\click\\x1b]8;;\\x1b\\"
    "\\x9b31m\\u202eevil\\nroot@example.com  true  true"
)


def _user_table_with_a_name(url: str) -> None:
    """A user table with a ``first_name`` column, and one user whose name is hostile."""
    import uuid

    key = "UUID" if url.startswith("postgresql") else "CHAR(36)"
    statements = [
        f'CREATE TABLE "user" (id {key} PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, first_name VARCHAR(200))",
    ]
    for statement in statements:
        asyncio.run(_sql(url, statement))

    async def insert() -> None:
        engine = sql_engine(url)  # standard quoting on MySQL too
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        'INSERT INTO "user" VALUES (:id, :email, :hash, true, false, false, :name)'
                    ),
                    {
                        "id": str(uuid.uuid4()),
                        "email": "eve@example.com",
                        "hash": "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                        "name": HOSTILE_NAME,
                    },
                )
        finally:
            await engine.dispose()

    asyncio.run(insert())


def test_data_from_strangers_cannot_drive_the_terminal_or_forge_rows(
    database_url: str, usersctl: Any
) -> None:
    _user_table_with_a_name(database_url)
    # Plain columns (not a terminal), the field/value view, and the change lines on stderr.
    listed = usersctl.ok("list-users")
    shown = usersctl.ok("show-user", "eve@example.com")
    changed = usersctl.ok("update-user", "eve@example.com", "--set", "first_name=x", "--dry-run")
    for output in (listed.stdout, shown.stdout, changed.stderr):
        assert SHOWN_NAME in output
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in output)
        assert "\u202e" not in output
    assert len(listed.stdout.splitlines()) == 2  # the header and eve: no forged row
    assert [line.split()[0] for line in changed.stderr.splitlines()] == ["first_name:"]
    # The machine formats keep the exact data.
    [row] = json.loads(usersctl.ok("list-users", "-o", "json").stdout)
    assert row["first_name"] == HOSTILE_NAME
    csv_out = usersctl.ok("list-users", "-o", "csv").stdout
    import csv as csv_module
    import io

    [csv_row] = list(csv_module.DictReader(io.StringIO(csv_out)))
    assert csv_row["first_name"] == HOSTILE_NAME


def test_a_rich_table_on_a_terminal_shows_control_characters_escaped(
    database_url: str, spawn: Any
) -> None:
    _user_table_with_a_name(database_url)
    child = spawn("show-user", "eve@example.com", dimensions=(40, 400))
    child.expect("eve@example.com")
    rest = child.read()
    screen = child.before + "eve@example.com" + rest
    assert "\\x1b]0;owned\\x07" in screen
    assert "\x1b]0;" not in screen and "\x1b[2J" not in screen and "\x9b" not in screen
    assert "\u202e" not in screen


HELD_OFF = (
    "Note: interrupted after the commit had begun; the changes are committed and the command "
    "finished.\n"
)


def _user_count(url: str) -> int:
    [(count,)] = asyncio.run(_sql(url, 'SELECT count(*) FROM "user"'))
    return int(count)


def test_a_ctrl_c_python_could_not_raise_reaches_the_command_and_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ctrl-C that lands in a weakref callback (as one did in the import system's module-lock
    callback, while an import loaded a module) is not printed as "Exception ignored in ..."
    with a traceback, nor lost: the main thread gets it, as the command's handler would."""
    import gc
    import signal
    import sys
    import time
    import weakref

    from usersctl.commands.startup import deliver_lost_interrupts

    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)  # put back afterwards
    monkeypatch.setattr(gc, "callbacks", [])
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        deliver_lost_interrupts()

        class Loaded:
            pass

        def interrupted(_: object) -> None:
            raise KeyboardInterrupt  # as if Ctrl-C came while the callback ran

        thing = Loaded()
        watch = weakref.ref(thing, interrupted)
        with pytest.raises(KeyboardInterrupt):
            del thing  # the callback runs here; its exception cannot be raised here
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the interrupt arrives at the next check
                pass
        assert watch() is None
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == ""


def test_ctrl_c_around_the_commit_never_claims_a_rollback_that_did_not_happen(
    database_url: str, usersctl: Any, tmp_path: Path
) -> None:
    """SIGINT at many moments of an import, most of them around its commit: whatever the
    command says must be what the database holds."""
    import signal
    import subprocess
    import time

    usersctl.ok("init-db")
    hashed = (
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
    )
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"email": f"user{n}@example.com", "hashed_password": hashed}) + "\n"
            for n in range(3000)
        )
    )
    started = time.monotonic()
    usersctl.ok("import-users", str(rows))
    duration = time.monotonic() - started
    asyncio.run(_sql(database_url, 'DELETE FROM "user"'))

    def default_sigint() -> None:  # pytest may run with SIGINT ignored (``pytest &``)
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    outcomes: set[int] = set()
    for step in range(40):  # until interrupts have landed on both sides of the commit
        if outcomes == {0, 130}:
            break
        process = subprocess.Popen(
            [usersctl.executable, "-d", database_url, "import-users", str(rows), "-o", "json"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=usersctl.env(),
            cwd=tmp_path,
            preexec_fn=default_sigint,
        )
        time.sleep(duration * (0.5 + step * 0.05))  # from well before to after the commit
        process.send_signal(signal.SIGINT)
        # A connection stopped mid-statement once left this waiting forever for the server;
        # now the cleanup is bounded, and a watchdog ends the process within seconds anyway.
        stdout, stderr = process.communicate(timeout=30)
        count = _user_count(database_url)
        assert "Traceback" not in stderr, stderr
        if process.returncode == 0:
            assert count == 3000, stderr
            assert json.loads(stdout)["created"] == 3000
            # Held off after the commit began, or too late: the command had ended already.
            assert stderr in ("", HELD_OFF), stderr
        else:
            assert process.returncode == 130, stdout + stderr
            [line] = stderr.splitlines()
            if "may have been committed" not in line:
                assert line in ("Error: interrupted", "Error: interrupted; nothing was committed")
                assert count == 0, line
        outcomes.add(process.returncode)
        asyncio.run(_sql(database_url, 'DELETE FROM "user"'))
    assert outcomes == {0, 130}, "the interrupts should land on both sides of the commit"


SECRET = "Tr0ub4dor&3"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        # A CSV without its header: the first row is taken for the header.
        (f"alice@example.com,{SECRET}\nbob@example.com,{SECRET}x\n", "line 2: no email field"),
        # Swapped columns: the password lands in the email column, or in a flag.
        (f"email,password\n{SECRET},alice@example.com\n", "line 2: email: not a valid email"),
        (f"email,is_active,password\nalice@example.com,{SECRET},x\n", "line 2: field 'is_active'"),
        (f"email,is_verified,password\na@example.com,{SECRET},x\n", "line 2: field 'is_verified'"),
    ],
)
def test_import_errors_never_quote_a_value_that_may_be_a_password(
    cli: Any, tmp_path: Path, content: str, says: str
) -> None:
    rows = tmp_path / "rows.csv"
    rows.write_text(content)
    message = cli.fails(2, "import-users", str(rows))
    assert says in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("record", "says"),
    [
        ({"email": "a@example.com", "password": 12345}, "password must be a string (got a number)"),
        ({"email": ["x"], "password": "a long passphrase"}, "email must be a string (got a list)"),
        ({"email": None, "password": "a long passphrase"}, "email must be a string (got null)"),
        ({"email": "", "password": "a long passphrase"}, "email is empty"),
        (
            {"email": "a@example.com", "hashed_password": True},
            "hashed_password must be a string (got a boolean)",
        ),
        (
            {"email": "a@example.com", "password": "a long passphrase", "is_active": [True]},
            "field 'is_active': must be true or false (got a list)",
        ),
        (
            {"email": "a@example.com", "password": "a long passphrase", "is_verified": {}},
            "field 'is_verified': must be true or false (got an object)",
        ),
        (
            {"email": "a@example.com", "password": "a long passphrase", "id": 7},
            "field 'id': must be a UUID as a string (got a number)",
        ),
    ],
)
def test_an_import_row_of_the_wrong_json_type_says_so(
    cli: Any, tmp_path: Path, record: dict[str, Any], says: str
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(record) + "\n")
    message = cli.fails(2, "import-users", str(rows))
    assert f"line 1: {says}" in message


#: Well-formed hashes whose cost no login can afford (the salts and digests are filler).
ABSURD_HASHES = [
    "$2b$31$" + "N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
    "$argon2id$v=19$m=65536,t=3000,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
    "$argon2id$v=19$m=4194304,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA",
]


#: A hash's cost is read from the hash, whatever the database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("hashed", ABSURD_HASHES)
def test_a_hash_whose_cost_no_login_can_afford_is_refused_and_reported(
    usersctl: Any, db: Any, tmp_path: Path, hashed: str
) -> None:
    rows = tmp_path / "rows.jsonl"
    good = {"email": "good@example.com", "password": "a long passphrase"}
    rows.write_text(
        json.dumps(good)
        + "\n"
        + json.dumps({"email": "eve@example.com", "hashed_password": hashed})
    )
    message = usersctl.fails(2, "import-users", str(rows))
    assert ("line 2: hashed_password:" in message and "is outside" in message) or "over" in message
    assert db.count() == 0

    # One already in the table: doctor fails on it, and verify-password refuses to spend
    # minutes on it (it answers at once, as for a wrong password).
    db.seed("eve@example.com")
    db.execute(f"UPDATE \"user\" SET hashed_password = '{hashed}'")
    doctor = usersctl("doctor", "-o", "json")
    assert doctor.returncode == 6, doctor.stdout + doctor.stderr
    [check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "password hashes"]
    assert check["status"] == "fail" and "cost far beyond" in check["detail"]
    verify = usersctl(
        "verify-password", "eve@example.com", "--password-stdin", input="guess\n", timeout=60
    )
    assert verify.returncode == 6, verify.stdout + verify.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ctrl_c_while_waiting_for_a_lock_ends_within_seconds_and_says_what_happened(
    database_url: str, usersctl: Any, tmp_path: Path
) -> None:
    """An import waits for another process's write lock (SQLite waits up to 30 s); Ctrl-C then
    cancels it, and the cleanup after it must not wait out the lock: a watchdog ends the process
    within seconds, saying truthfully that nothing was committed."""
    import signal
    import sqlite3
    import subprocess
    import time

    usersctl.ok("init-db")
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"email": "ann@example.com", "password": "a long passphrase"}))
    holder = sqlite3.connect(database_url.split(":///", 1)[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for the whole test
    try:
        process = subprocess.Popen(
            [usersctl.executable, "-d", database_url, "import-users", str(rows)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=usersctl.env(),
            cwd=tmp_path,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        # Started (however slowly on a loaded machine), connected, and waiting for the lock.
        wait_for(lambda: has_open(process.pid, sqlite_path(database_url)), 60, "the connection")
        time.sleep(1)
        assert process.poll() is None
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=25)
        elapsed = time.monotonic() - interrupted
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert process.returncode == 130, stdout + stderr
    assert stderr == "Error: interrupted; nothing was committed\n"
    assert elapsed < 12, elapsed  # the lock would have held it for up to 30 s
    assert _user_count(database_url) == 0
