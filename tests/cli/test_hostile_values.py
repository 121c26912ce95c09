"""Hostile values that once ended in exit 1 with a Python error (issue 11): JSON nested hundreds
of thousands of levels deep, numbers of thousands of digits, arguments that are not UTF-8, an
infinite connect timeout, a port beyond 65535, a URL parameter nothing reads. Each is exit 2 with
one line saying what is wrong, and nothing is written."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from harness import PASSWORD, Cli, default_sigint, one_error_line, seed_hash
from usersctl.engine import create_engine
from usersctl.errors import InvalidInput

GOOD = json.dumps({"email": "good@example.com", "password": PASSWORD})
DIGITS = "9" * 5000
DEEP = "[" * 200_000 + "]" * 200_000
NESTED_TOO_DEEP = "nesting too deep (arrays or objects more than 100 levels deep)"


def _rows(fmt: str, rows: list[str]) -> str:
    """One JSON text per row, as JSON lines or as one JSON array (an item per line)."""
    if fmt == "jsonl":
        return "".join(row + "\n" for row in rows)
    return "[\n" + ",\n".join(rows) + "\n]\n"


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_deep_nesting_and_long_numbers_are_problems_of_their_lines_and_the_rest_is_checked(
    cli: Cli, db: Any, tmp_path: Path, fmt: str
) -> None:
    db.seed("alice@example.com")
    rows = tmp_path / f"rows.{fmt}"
    rows.write_text(
        _rows(
            fmt,
            [
                GOOD,
                '{"email": "deep@example.com", "password": ' + DEEP + "}",
                '{"email": "long@example.com", "password": "a long passphrase", "id": '
                + DIGITS
                + "}",
                '{"email": "negative@example.com", "hashed_password": [-' + DIGITS + "]}",
                json.dumps({"email": ["x"], "password": PASSWORD}),
                json.dumps({"email": "typed@example.com", "password": 12345}),
            ],
        )
    )
    message = cli.fails(2, "import-users", str(rows))
    assert message == (
        "Error: 5 rows are invalid, nothing was written: "
        f"line 2: {NESTED_TOO_DEEP}; "
        "line 3: field 'id': number has too many digits (5000); "
        "line 4: field 'hashed_password': number has too many digits (5000); "
        "line 5: email must be a string (got a list); "
        "line 6: password must be a string (got a number)"
    )
    assert db.count() == 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("open.json", "[" * 200_000),  # nested, and never closed
        ("open.jsonl", '{"email": "a@example.com", "password": ' + "[" * 200_000 + "\n"),
        ("closed.json", "[" + DEEP + "]"),
    ],
)
def test_a_file_of_nothing_but_nesting_is_refused_at_its_first_line(
    cli: Cli, db: Any, tmp_path: Path, name: str, content: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    message = cli.fails(2, "import-users", str(path))
    assert message == f"Error: 1 row is invalid, nothing was written: line 1: {NESTED_TOO_DEEP}"
    assert db.count() == 0


def test_a_json_column_nested_deeper_than_it_could_be_read_back_is_refused(
    cli: Cli, db: Any, tmp_path: Path
) -> None:
    """960 levels once went in, and then no export could read the user back."""
    db.execute('ALTER TABLE "user" ADD COLUMN prefs JSON')
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        '{"email": "a@example.com", "password": "a long passphrase", "prefs": '
        + "[" * 960
        + "]" * 960
        + "}\n"
        + json.dumps({"email": "b@example.com", "password": PASSWORD, "prefs": [[["fine"]]]})
        + "\n"
    )
    message = cli.fails(2, "import-users", str(rows))
    assert message.endswith(f"line 1: field 'prefs': {NESTED_TOO_DEEP}")
    csv_rows = tmp_path / "rows.csv"
    csv_rows.write_text(f"email,password,prefs\nc@example.com,{PASSWORD},{'[' * 3000}\n")
    message = cli.fails(2, "import-users", str(csv_rows))
    assert message.endswith(f"line 2: field 'prefs': {NESTED_TOO_DEEP}")
    db.seed("d@example.com")
    message = cli.fails(2, "update-user", "d@example.com", "--set", "prefs=" + "[" * 3000)
    assert message == f"Error: field 'prefs': {NESTED_TOO_DEEP}"
    assert db.emails() == ["d@example.com"]


def test_a_long_number_in_a_csv_cell_or_an_argon2_hash_is_refused(
    cli: Cli, db: Any, tmp_path: Path
) -> None:
    db.execute('ALTER TABLE "user" ADD COLUMN age INTEGER')
    rows = tmp_path / "rows.csv"
    rows.write_text(f"email,password,age\na@example.com,{PASSWORD},{DIGITS}\n")
    message = cli.fails(2, "import-users", str(rows))
    assert message.endswith(
        "line 2: field 'age': number has too many digits (5000) for a 64-bit integer (at most 19)"
    )
    salted = "$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA"
    hashed = f"$argon2id$v=19$m={DIGITS},t=3,p=4{salted}"
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"email": "a@example.com", "hashed_password": hashed}) + "\n")
    message = cli.fails(2, "import-users", str(rows))
    assert "line 1: hashed_password: an Argon2 cost parameter has too many digits" in message
    assert DIGITS not in message
    assert db.count() == 0


# Arguments that are not UTF-8 ------------------------------------------------------------------


def run_bytes(
    usersctl: Any, *args: str | bytes, env: dict[str, str | bytes] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """The installed entry point with arguments (and variables) as the bytes a shell passes."""
    return subprocess.run(
        [usersctl.executable, *args],
        env={**usersctl.env(), **(env or {})},
        cwd=usersctl.cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        preexec_fn=default_sigint,
    )


#: Arguments are refused before any database is reached: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["list-users", "--search", b"a\xffb"], "--search"),
        (["list-users", b"--search=a\xffb"], "--search"),
        (["show-user", "--", b"\xe9ve@example.com"], "EMAIL_OR_ID"),
        (["update-user", "alice@example.com", "--email", b"\xff@example.com"], "--email"),
        (["import-users", "-", "--format", b"js\xffon"], "--format"),
    ],
)
def test_an_argument_that_is_not_utf8_is_named(
    usersctl: Any, db: Any, args: list[str | bytes], named: str
) -> None:
    db.seed("alice@example.com")
    before = db.rows()
    result = run_bytes(usersctl, "-d", usersctl.url, *args)
    message = one_error_line(
        result.returncode, 2, result.stdout.decode(), result.stderr.decode("utf-8")
    )
    assert message == f"Error: {named} is not valid UTF-8"
    assert db.rows() == before


def test_a_database_url_that_is_not_utf8_is_named_where_it_came_from(
    usersctl: Any, db: Any
) -> None:
    url = usersctl.url.encode() + b"\xff"
    result = run_bytes(usersctl, "-d", url, "list-users")
    message = one_error_line(result.returncode, 2, result.stdout.decode(), result.stderr.decode())
    assert message == "Error: --database-url is not valid UTF-8"
    result = run_bytes(usersctl, "list-users", env={"DATABASE_URL": url})
    message = one_error_line(result.returncode, 2, result.stdout.decode(), result.stderr.decode())
    assert message == (
        "Error: the environment variable DATABASE_URL (--database-url) is not valid UTF-8"
    )
    # The option wins over the variable, which is then never read.
    listed = run_bytes(usersctl, "-d", usersctl.url, "list-users", env={"DATABASE_URL": url})
    assert listed.returncode == 0, listed.stderr


#: A file's name is read the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_file_name_that_is_not_utf8_is_still_a_file(usersctl: Any, db: Any) -> None:
    """File names are the system's bytes: they open as they are."""
    name = b"users-\xff.jsonl"
    (usersctl.cwd / name.decode("utf-8", "surrogateescape")).write_text(
        json.dumps({"email": "new@example.com", "hashed_password": seed_hash()}) + "\n"
    )
    result = run_bytes(usersctl, "-d", usersctl.url, "import-users", name)
    assert result.returncode == 0, result.stderr
    assert db.emails() == ["new@example.com"]
    exported = run_bytes(usersctl, "-d", usersctl.url, "export-users", b"out-\xff.jsonl")
    assert exported.returncode == 0, exported.stderr
    assert (usersctl.cwd / b"out-\xff.jsonl".decode("utf-8", "surrogateescape")).exists()


# The connect timeout and the database URL ------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("inf", "inf is not a finite number of seconds"),
        ("nan", "nan is not a finite number of seconds"),
        (DIGITS, "inf is not a finite number of seconds"),
        ("-1", "-1.0 is not in the range x>=0.1"),
        ("0", "0.0 is not in the range x>=0.1"),
    ],
)
def test_the_connect_timeout_is_a_finite_number_of_seconds(
    cli: Cli, db: Any, given: str, reason: str
) -> None:
    for result in (
        cli("--connect-timeout", given, "list-users"),
        cli("list-users", env={"USERSCTL_CONNECT_TIMEOUT": given}),
    ):
        assert result.returncode == 2, result.stderr
        assert result.stdout == "" and "Traceback" not in result.stderr
        error = result.stderr.splitlines()[-1]
        assert error.startswith("Error: Invalid value for '--connect-timeout'"), result.stderr
        assert error.endswith(reason + ("." if "range" in reason else "")), error


def test_the_library_refuses_a_connect_timeout_that_is_not_finite() -> None:
    for timeout in (math.inf, math.nan, 0.0, -1.0):
        with pytest.raises(InvalidInput, match="finite number of seconds above 0"):
            create_engine("sqlite:///users.db", connect_timeout=timeout)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://app@127.0.0.1:99999/app", "port 99999 is out of range"),
        ("postgresql://app@127.0.0.1:0/app", "port 0 is out of range"),
        ("postgres://app@127.0.0.1/app?port=70000", "?port= 70000 is out of range"),
        ("postgresql://app@/app?host=127.0.0.1:99999", "?host= port 99999 is out of range"),
        (f"postgresql://app@/app?port={DIGITS}", "?port= is out of range"),
        ("sqlite:///users.db?foo=bar", "a parameter SQLite does not take: ?foo;"),
        ("sqlite:///users.db?mode=ro", "a parameter SQLite does not take: ?mode;"),
        ("sqlite:///users.db?api_key=s3cret", "SQLite does not take: ?(a parameter);"),
        ("sqlite:///users.db?timeout=soon", "?timeout= is not a number (float)"),
        ("sqlite:///users.db?timeout=inf", "?timeout= must be a finite number >= 0"),
        ("sqlite:///users.db?uri=perhaps", "?uri= must be true or false"),
    ],
)
def test_a_url_with_a_port_out_of_range_or_a_parameter_nothing_reads_is_a_usage_error(
    usersctl_anywhere: Any, url: str, says: str
) -> None:
    """Refused before any connection: nothing listens on these ports, and users.db is absent."""
    message = usersctl_anywhere.fails(2, "-d", url, "list-users")
    assert says in message, message
    assert "s3cret" not in message and DIGITS not in message


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_parameters_sqlite_takes_keep_working(cli: Cli, db: Any) -> None:
    db.seed("alice@example.com")
    path = cli.url.split(":///", 1)[1]
    for url in (
        f"sqlite:///{path}?timeout=5",
        f"sqlite:///{path}?check_same_thread=false&cached_statements=10",
        f"sqlite:///file:{path}?uri=true&mode=ro",
    ):
        listed = cli.ok("-d", url, "list-users", "-o", "json", url=False)
        assert [row["email"] for row in json.loads(listed.stdout)] == ["alice@example.com"]
    # mode=ro is SQLite's: the file is read-only through this URL.
    read_only = f"sqlite:///file:{path}?uri=true&mode=ro"
    message = cli.fails(
        5, "-d", read_only, "create-user", "bob@example.com", "--generate-password", url=False
    )
    assert "read-only" in message
