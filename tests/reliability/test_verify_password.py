"""verify-password: exit 0 on a match, 6 otherwise, the same answer and the same time for a user
who does not exist, and --rehash to upgrade a bcrypt or outdated hash."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from argon2 import PasswordHasher

from harness import (
    PASSWORD,
    cli,
    one_error_line,
    rows,
    run,
    seed,
)
from terminal import type_hidden
from usersctl.passwords import hash_scheme, verify_password

NO_MATCH = (
    "Error: no match: the password is wrong, the user does not exist, or has no usable password"
)


def verify(url: str, *args: str, password: str = PASSWORD) -> Any:
    return cli(url, "verify-password", *args, "--password-stdin", input=password + "\n")


def stored(url: str, email: str) -> str:
    [row] = [row for row in rows(url) if row["email"] == email]
    hashed: str = row["hashed_password"]
    return hashed


def test_exit_0_on_a_match_and_6_with_one_answer_for_every_other_case(url: str) -> None:
    alice = seed(url, "alice@example.com", is_verified=True)
    seed(url, "disabled@example.com", "!DISABLED!")
    seed(url, "gone@example.com", is_active=False)

    for reference in (" ALICE@Example.COM ", str(alice["id"])):
        result = verify(url, reference)
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        assert result.stderr == "The password matches alice@example.com.\n"

    # A wrong password, a user who does not exist, a password login that is disabled: one answer.
    for reference, password in (
        ("alice@example.com", PASSWORD + " "),
        ("nobody@example.com", PASSWORD),
        ("00000000-0000-0000-0000-000000000000", PASSWORD),
        ("disabled@example.com", "!DISABLED!"),
    ):
        result = verify(url, reference, password=password)
        assert one_error_line(result.exit_code, 6, result.stdout, result.stderr) == NO_MATCH

    # A match for a user the app would still refuse says why.
    result = verify(url, "gone@example.com")
    assert result.exit_code == 0, result.output
    assert "inactive" in result.stderr

    # Input that names no user at all, or no password, is a usage error.
    for args, text in (
        (["not-an-id", "--password-stdin"], PASSWORD),
        (["alice@example.com", "--password-stdin"], ""),
        (["alice@example.com"], PASSWORD),  # no terminal, no source
    ):
        result = cli(url, "verify-password", *args, input=text)
        one_error_line(result.exit_code, 2, result.stdout, result.stderr)


def test_the_entry_point_reads_a_password_file_and_exits_6_on_no_match(
    url: str, tmp_path: Path
) -> None:
    seed(url, "alice@example.com")
    secret = tmp_path / "password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    matched = run(url, "verify-password", "alice@example.com", "--password-file", str(secret))
    assert matched.returncode == 0, matched.stderr
    secret.write_text("wrong\n")
    refused = run(url, "verify-password", "alice@example.com", "--password-file", str(secret))
    assert one_error_line(refused.returncode, 6, refused.stdout, refused.stderr) == NO_MATCH


def _timed(url: str, args: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one in-process command."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = cli(url, *args, input=PASSWORD + "x\n")
    assert result.exit_code in (3, 6), result.output
    return time.perf_counter() - wall, time.process_time() - cpu


#: Timing is the hasher's, whatever the database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_missing_user_takes_as_long_as_a_wrong_password(url: str) -> None:
    seed(url, "alice@example.com")
    commands = {
        "existing": ["verify-password", "alice@example.com", "--password-stdin"],
        "missing": ["verify-password", "nobody@example.com", "--password-stdin"],
        "lookup": ["show-user", "nobody@example.com"],  # the same work without a password check
    }
    _timed(url, commands["existing"])  # warm up: imports, the first connection
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(4):  # interleaved, so that a busy moment of the machine hits all of them
        for name, args in commands.items():
            samples[name].append(_timed(url, args))
    wall = {name: statistics.median(s[0] for s in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(s[1] for s in runs) for name, runs in samples.items()}
    assert 0.5 < wall["missing"] / wall["existing"] < 2, samples
    # CPU time, which a busy machine hardly disturbs, shows the password work itself is the same:
    # a missing user that skipped it would be near 0 here.
    work = (cpu["missing"] - cpu["lookup"]) / (cpu["existing"] - cpu["lookup"])
    assert 0.5 < work < 2, samples


def test_rehash_replaces_a_bcrypt_hash_with_argon2(url: str) -> None:
    old = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    seed(url, "alice@example.com", old)
    seed(url, "bob@example.com")  # an Argon2 hash: the app reads Argon2 (--hash-scheme auto)
    assert hash_scheme(old) == "bcrypt"

    result = verify(url, "alice@example.com")
    assert result.exit_code == 0, result.output
    assert "bcrypt" in result.stderr and "--rehash" in result.stderr
    assert stored(url, "alice@example.com") == old

    result = verify(url, "alice@example.com", "--rehash", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would replace its bcrypt hash" in result.stderr
    assert stored(url, "alice@example.com") == old

    result = verify(url, "alice@example.com", "--rehash", password="wrong")
    one_error_line(result.exit_code, 6, result.stdout, result.stderr)
    assert stored(url, "alice@example.com") == old

    result = verify(url, "alice@example.com", "--rehash")
    assert result.exit_code == 0, result.output
    assert "Replaced its bcrypt hash with a new Argon2 hash" in result.stderr
    new = stored(url, "alice@example.com")
    assert hash_scheme(new) == "argon2" and verify_password(PASSWORD, new)

    again = verify(url, "alice@example.com", "--rehash")
    assert again.exit_code == 0 and "Replaced" not in again.stderr
    assert stored(url, "alice@example.com") == new


def test_rehash_replaces_an_argon2_hash_with_outdated_parameters(url: str) -> None:
    old = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    seed(url, "alice@example.com", old)
    assert hash_scheme(old) == "argon2-outdated"
    result = verify(url, "alice@example.com", "--rehash")
    assert result.exit_code == 0, result.output
    assert "Replaced its outdated Argon2 hash" in result.stderr
    new = stored(url, "alice@example.com")
    assert hash_scheme(new) == "argon2" and verify_password(PASSWORD, new)


#: bcrypt's limit is the hasher's, whatever the database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bcrypt_hash_and_a_password_over_72_bytes(url: str) -> None:
    # bcrypt refuses passwords over 72 bytes: no match (exit 6), never a crash.
    long_password = "é" * 40  # 80 bytes
    seed(url, "bcrypt@example.com", bcrypt.hashpw(b"short", bcrypt.gensalt(rounds=4)).decode())
    result = verify(url, "bcrypt@example.com", password=long_password)
    assert one_error_line(result.exit_code, 6, result.stdout, result.stderr) == NO_MATCH


#: The prompt has nothing to do with the database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_on_a_terminal_it_asks_once_with_a_hidden_prompt(url: str, spawn: Any) -> None:
    seed(url, "alice@example.com")
    child = spawn("verify-password", "alice@example.com")
    child.expect("Password: ")
    type_hidden(child, PASSWORD)
    child.expect("The password matches alice@example.com.")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 0
    assert PASSWORD not in child.before

    child = spawn("verify-password", "alice@example.com")
    child.expect("Password: ")
    type_hidden(child, "wrong")
    child.expect("Error: no match")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 6


def pexpect_eof() -> Any:
    import pexpect

    return pexpect.EOF


def test_the_stored_hash_of_a_user_who_does_not_exist_is_never_written(url: str) -> None:
    # Checking for a user who does not exist hashes the password, and throws the hash away.
    result = verify(url, "nobody@example.com", "--rehash")
    assert result.exit_code == 6, result.output
    assert rows(url) == []
