"""Hostile and odd input: arbitrary text where usersctl takes emails, ids, field values and
passwords. Every run ends with exit 0, 2, 3 or 4 and either a result or an ``Error:`` line, never
a traceback, and the database holds only valid rows. Shapes Python itself chokes on (JSON nested
hundreds of thousands of levels deep, numbers of thousands of digits, a value of the wrong JSON
type in each field, arguments that are not UTF-8, an infinite timeout, a port beyond 65535, a URL
parameter nothing reads) are exit 2, and nothing is written.

Damaged import files (truncated, not UTF-8, a BOM, duplicate headers, extra columns, a line of a
million characters) are in tests/test_transfer.py (``test_damaged_files_are_rejected_with_the_line``).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import (
    PASSWORD,
    clean_env,
    cli,
    default_sigint,
    empty_folder,
    execute,
    one_error_line,
    rows,
    run,
    seed,
    stored_hash,
    usersctl_executable,
)
from usersctl.emails import normalize_email
from usersctl.passwords import is_known_hash

#: Argon2 at its lowest cost in-process (harness ``quick_hashing``): what these tests test is not
#: the hash's cost, which tests/test_password_hashing.py covers.
pytestmark = [
    pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.usefixtures("quick_hashing"),
]

#: Stable in CI: the same examples every run, no deadline (a hash takes 0.15 s, a machine may be
#: busy), and the database fixture deliberately shared by the examples of one test.
HOSTILE = settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

NASTY = [
    "",
    " ",
    "%",
    "_",
    "\\",
    "%_%\\",
    "' OR '1'='1",
    '\'; DROP TABLE "user"; --',
    "alice@example.com' --",
    "a%@example.com",
    "_lice@example.com",
    "\x00",
    "alice\x00@example.com",
    "\x1b[31mred\x1b[0m@example.com",
    "line\nbreak@example.com",
    "\u202eevil@example.com",
    "ALICE@EXAMPLE.COM",
    " alice@example.com\t",
    "null",
    "-",
    "--help",
    "x" * 10_000,
    "a@" + "b" * 10_000 + ".com",
    "@" * 5_000,
    "00000000-0000-0000-0000-000000000000",
    "0",
    "-1",
    "99999999999999999999999",
    "1e308",
    "😀@example.com",
    "用户@例子.广告",
    "a@b",
    "a@[127.0.0.1]",
    '"quoted local"@example.com',
    "ǅemo@example.com",
]

TEXT = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.text(st.characters(max_codepoint=0x3F), max_size=20),  # control characters and punctuation
    st.builds(lambda a, b: a + b, st.sampled_from(NASTY), st.text(max_size=10)),
)


@pytest.fixture
def hostile_url(url: str) -> str:
    """The test database with two more columns (a bounded text, an integer) and a few users."""
    execute(
        url,
        'ALTER TABLE "user" ADD COLUMN nickname VARCHAR(20)',
        'ALTER TABLE "user" ADD COLUMN age INTEGER',
    )
    seed(url, "alice@example.com", is_superuser=True)
    seed(url, "Ünïcödé@exämple.com")
    seed(url, "a_b%c@example.com")
    return url


def check_outcome(result: Any, allowed: tuple[int, ...] = (0, 2, 3, 4)) -> None:
    """A result or one ``Error:`` line, an allowed exit code, never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in allowed, result.output
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        assert result.stdout == "", result.stdout
        lines = result.stderr.splitlines()
        assert lines and lines[-1].startswith("Error: "), result.stderr
        # One line; Click's own usage errors come after the usage, as it prints them.
        assert len(lines) == 1 or lines[0].startswith("Usage: "), result.stderr


def check_database(url: str) -> None:
    """Every stored user is valid: a normalised email, a hash FastAPI Users can verify, values
    that fit their columns."""
    for row in rows(url):
        assert normalize_email(row["email"]) == row["email"], row
        assert is_known_hash(row["hashed_password"]), row
        nickname = row.get("nickname")
        assert nickname is None or (len(nickname) <= 20 and "\x00" not in nickname), row
        assert row.get("age") is None or -(2**31) <= row["age"] < 2**31, row


def reference_commands(text: str) -> list[list[str]]:
    """Commands that take ``text`` as a user, a filter or a field: none of them hashes."""
    return [
        ["show-user", "--", text],
        ["update-user", "--verified", "--", text],
        ["activate-user", "--", text],
        ["deactivate-user", "--", text],
        ["delete-user", "--yes", "--", text],
        ["unlink-oauth", "--", text, "github"],
        ["list-users", "--search", text, "--after", text],
        ["export-users", "-", "--search", text],
        ["update-user", "a_b%c@example.com", "--email", text],
        ["update-user", "a_b%c@example.com", "--set", f"nickname={text}"],
        ["update-user", "a_b%c@example.com", "--set", f"age={text}"],
        ["update-user", "a_b%c@example.com", "--set", f"{text}=1"],
    ]


def test_arbitrary_text_as_users_filters_and_fields(hostile_url: str) -> None:
    @HOSTILE
    @given(text=TEXT, which=st.integers(0, len(reference_commands("")) - 1))
    def run_one(text: str, which: int) -> None:
        result = cli(hostile_url, *reference_commands(text)[which])
        check_outcome(result)
        check_database(hostile_url)

    run_one()
    # alice, the only superuser, may have been deactivated only with --force: never here.
    assert any(row["is_superuser"] and row["is_active"] for row in rows(hostile_url))


def test_arbitrary_text_as_new_emails(hostile_url: str, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)

    @settings(HOSTILE, max_examples=20)
    @given(email=TEXT)
    def run_one(email: str) -> None:
        result = cli(hostile_url, "create-user", "--password-file", str(password_file), "--", email)
        check_outcome(result)
        check_database(hostile_url)

    run_one()


def test_arbitrary_passwords_from_stdin_round_trip(hostile_url: str) -> None:
    counter = iter(range(1_000_000))

    @settings(HOSTILE, max_examples=8)
    @given(given_text=st.one_of(st.sampled_from(["", "\n", "\x00", " ", "x" * 10_000]), TEXT))
    def run_one(given_text: str) -> None:
        email = f"user{next(counter)}@example.com"
        created = cli(hostile_url, "create-user", email, "--password-stdin", input=given_text)
        check_outcome(created, (0, 2))
        check_database(hostile_url)
        if created.exit_code == 0:
            # What was stored is what verify-password reads the same way: a round trip.
            checked = cli(
                hostile_url, "verify-password", email, "--password-stdin", input=given_text
            )
            assert checked.exit_code == 0, checked.output
        else:
            assert "password" in created.stderr

    run_one()


JSON_VALUE = st.one_of(
    TEXT,
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
)


def test_arbitrary_import_rows(hostile_url: str, tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"

    @settings(HOSTILE, max_examples=20)
    @given(
        records=st.lists(
            st.builds(
                lambda known, other: {**other, **known},
                st.fixed_dictionaries(
                    {"email": st.one_of(TEXT, st.just("new@example.com"))},
                    optional={
                        "id": JSON_VALUE,
                        "hashed_password": st.one_of(st.just(stored_hash()), TEXT),
                        "is_active": JSON_VALUE,
                        "is_superuser": JSON_VALUE,
                        "nickname": JSON_VALUE,
                        "age": JSON_VALUE,
                    },
                ),
                st.dictionaries(TEXT, JSON_VALUE, max_size=1),  # a column nobody knows
            ),
            min_size=1,
            max_size=4,
        ),
        rule=st.sampled_from(["fail", "skip", "update"]),
    )
    def run_one(records: list[dict[str, Any]], rule: str) -> None:
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
        result = cli(hostile_url, "import-users", str(path), "--on-conflict", rule)
        check_outcome(result, (0, 2, 4))
        check_database(hostile_url)

    run_one()


# Through the installed entry point: what a shell really passes (argv cannot hold a NUL). -----


def test_nasty_arguments_through_the_entry_point(hostile_url: str) -> None:
    for args in (
        ["show-user", "--", "alice@example.com' OR '1'='1"],
        ["list-users", "--search", "%_\\", "-o", "json"],
        ["create-user", "--generate-password", "--", "\x1b[2J" + "x" * 10_000 + "@example.com"],
    ):
        result = run(hostile_url, *args)
        assert "Traceback" not in result.stderr
        if args[0] == "list-users":
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout) == []  # % and _ are plain characters
        else:
            message = one_error_line(
                result.returncode, 3 if args[0] == "show-user" else 2, result.stdout, result.stderr
            )
            assert "\x1b" not in message  # control characters are shown escaped
    check_database(hostile_url)


# Passwords ------------------------------------------------------------------------------------


#: Passwords are read and hashed the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_passwords_over_72_bytes_empty_and_with_whitespace(url: str, tmp_path: Path) -> None:
    def verify(email: str, password_file: Path) -> int:
        return int(
            cli(url, "verify-password", email, "--password-file", str(password_file)).exit_code
        )

    def password_file(name: str, content: str) -> Path:
        path = tmp_path / name
        path.write_text(content)
        path.chmod(0o600)
        return path

    # Over 72 bytes (bcrypt's limit): Argon2 takes all of it; 72 bytes of it are not enough.
    long_password = "ü" * 50  # 100 bytes
    created = cli(url, "create-user", "long@example.com", "--password-stdin", input=long_password)
    assert created.exit_code == 0, created.output
    assert verify("long@example.com", password_file("long", long_password)) == 0
    assert verify("long@example.com", password_file("prefix", "ü" * 36)) == 6

    # Empty: refused, from stdin and from a file.
    for text in ("", "\n", "\r\n"):
        refused = cli(url, "create-user", "empty@example.com", "--password-stdin", input=text)
        assert "empty" in one_error_line(refused.exit_code, 2, refused.stdout, refused.stderr)
    refused = cli(
        url,
        "create-user",
        "empty@example.com",
        "--password-file",
        str(password_file("empty", "\n")),
    )
    one_error_line(refused.exit_code, 2, refused.stdout, refused.stderr)

    # Whitespace is kept; only the one trailing line ending goes.
    spaced = password_file("spaced", "  two  spaces\t \n")
    created = cli(url, "create-user", "spaced@example.com", "--password-file", str(spaced))
    assert created.exit_code == 0, created.output
    assert verify("spaced@example.com", password_file("same", "  two  spaces\t \r\n")) == 0
    assert verify("spaced@example.com", password_file("stripped", "two  spaces")) == 6
    two_lines = password_file("two-lines", "two lines\n\n")  # the password is "two lines\n"
    created = cli(url, "create-user", "lines@example.com", "--password-file", str(two_lines))
    assert created.exit_code == 0, created.output
    assert verify("lines@example.com", password_file("pw", "two lines")) == 6
    assert verify("lines@example.com", two_lines) == 0
    check_database(url)


# Shapes Python's own readers choke on ---------------------------------------------------------

#: JSON texts Python's reader cannot hold: arrays and objects nested far deeper than its
#: recursion goes (under the 1 MiB a line may have), and integers of more digits than ``int()``
#: reads (4300).
UNREADABLE_JSON = st.one_of(
    st.integers(1_000, 300_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1_000, 150_000).map(lambda depth: '{"a": ' * depth + "1" + "}" * depth),
    st.integers(4_301, 20_000).map(lambda digits: "9" * digits),
    st.integers(4_301, 20_000).map(lambda digits: "[-" + "1" * digits + "]"),
)

#: JSON values that no field of the test table takes, not even the flags (booleans, 0 and 1).
NOT_A_FLAG = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
    st.lists(st.integers(), min_size=1, max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
WRONG_TYPE = {
    "email": st.one_of(st.none(), st.booleans(), st.integers(), NOT_A_FLAG),
    "password": st.one_of(st.booleans(), st.integers(), NOT_A_FLAG),
    "hashed_password": st.one_of(st.booleans(), st.integers(), NOT_A_FLAG),
    "id": st.one_of(st.booleans(), st.integers(), NOT_A_FLAG),  # a UUID column
    "is_active": NOT_A_FLAG,
    "is_superuser": NOT_A_FLAG,
    "is_verified": NOT_A_FLAG,
    "nickname": st.one_of(st.booleans(), st.integers(), NOT_A_FLAG),
    "age": st.one_of(st.booleans(), NOT_A_FLAG),
}


@st.composite
def hostile_row(draw: Any, number: int) -> str:
    """A row whose one field (any of them) holds JSON Python cannot read, or a value of a
    type the field does not take; the rest of the row is valid."""
    row = {"email": f"new{number}@example.com", "hashed_password": stored_hash()}
    field = draw(st.sampled_from(sorted(WRONG_TYPE)))
    raw = draw(st.one_of(UNREADABLE_JSON, WRONG_TYPE[field].map(json.dumps)))
    if field == "password":
        del row["hashed_password"]  # else "not both" would be the reason
    row.pop(field, None)
    return json.dumps(row)[:-1] + f', "{field}": {raw}}}'  # raw: json.dumps cannot write it


@st.composite
def hostile_file(draw: Any) -> tuple[list[str], set[int]]:
    """Rows of which at least one is hostile; the other rows are valid. The rows, and the
    numbers of the hostile ones."""
    count = draw(st.integers(1, 4))
    hostile = draw(st.sets(st.integers(1, count), min_size=1))
    texts = [
        draw(hostile_row(number))
        if number in hostile
        else json.dumps({"email": f"new{number}@example.com", "hashed_password": stored_hash()})
        for number in range(1, count + 1)
    ]
    return texts, hostile


#: The file is refused line by line before any database is reached: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_json_python_cannot_read_or_of_the_wrong_type_is_refused_by_line(
    hostile_url: str, tmp_path: Path
) -> None:
    before = len(rows(hostile_url))

    @settings(HOSTILE, max_examples=30)
    @given(shape=hostile_file(), fmt=st.sampled_from(["jsonl", "json"]))
    def run_one(shape: tuple[list[str], set[int]], fmt: str) -> None:
        texts, hostile = shape
        path = tmp_path / f"users.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(text + "\n" for text in texts))
        else:
            path.write_text("[" + ",\n".join(texts) + "]")
        result = cli(hostile_url, "import-users", str(path))
        message = one_error_line(result.exit_code, 2, result.stdout, result.stderr)
        # Every hostile row is named by its line (item) number, and no other.
        assert {int(line) for line in re.findall(r"\bline (\d+): ", message)} == hostile, message
        assert "Exceeds the limit" not in message and "recursion" not in message
        assert len(rows(hostile_url)) == before

    run_one()
    check_database(hostile_url)


def _run_bytes(url: str, *args: str | bytes) -> subprocess.CompletedProcess[bytes]:
    """The installed entry point given arguments as bytes, as a shell passes them."""
    return subprocess.run(
        [usersctl_executable(), "-d", url, *args],
        env=clean_env(),
        cwd=empty_folder(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        preexec_fn=default_sigint,
    )


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


#: Arguments are refused before any database is reached: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_arguments_that_are_not_utf8_through_the_entry_point(hostile_url: str) -> None:
    before = rows(hostile_url)

    @settings(HOSTILE, max_examples=8)
    @given(
        data=st.binary(min_size=1, max_size=12).filter(lambda b: b"\0" not in b and _not_utf8(b)),
        which=st.integers(0, 3),
    )
    def run_one(data: bytes, which: int) -> None:
        args, named = [
            (["list-users", "--search", data], "--search"),
            (["show-user", "--", data], "EMAIL_OR_ID"),
            (["update-user", "a_b%c@example.com", "--set", b"nickname=" + data], "--set"),
            (["create-user", "--generate-password", "--", data + b"@example.com"], "EMAIL"),
        ][which]
        result = _run_bytes(hostile_url, *args)
        message = one_error_line(
            result.returncode, 2, result.stdout.decode(), result.stderr.decode()
        )
        assert message == f"Error: {named} is not valid UTF-8"

    run_one()
    assert rows(hostile_url) == before


def test_timeouts_and_urls_that_cannot_work_are_usage_errors(hostile_url: str) -> None:
    @settings(HOSTILE, max_examples=30)
    @given(
        timeout=st.one_of(
            st.sampled_from(["inf", "-inf", "nan", "0", "-1", "1e999", "9" * 5000]),
            st.floats(allow_nan=True).filter(lambda x: not 0.1 <= x < float("inf")).map(str),
        ),
        port=st.one_of(st.integers(65_536, 10**30), st.just(0)),
        name=st.from_regex(r"x[a-z_]{0,14}", fullmatch=True),  # no driver's parameter
        which=st.integers(0, 3),
    )
    def run_one(timeout: str, port: int, name: str, which: int) -> None:
        args = [
            ["--connect-timeout", timeout, "list-users"],
            ["-d", f"postgresql://app@127.0.0.1:{port}/app", "list-users"],
            ["-d", f"postgresql://app@127.0.0.1/app?{name}=1", "list-users"],
            ["-d", f"{hostile_url.partition('?')[0]}?{name}=1", "list-users"],
        ][which]
        result = cli(hostile_url, *args)
        check_outcome(result, (2,))

    run_one()
