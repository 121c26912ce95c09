"""verify-password does the same work for a missing user as for a real one with a wrong password.

Measured in CPU time of the installed entry point (steadier than wall time on a shared machine):
in a table of bcrypt hashes, the decoy for a missing user must be bcrypt work of the same cost,
not a (much cheaper) Argon2 hash.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

#: A cost whose verification (about a second) dwarfs the command's start-up.
ROUNDS = 14


def cpu_seconds(usersctl: Any, *args: str, input: str) -> tuple[int, float]:
    """The exit code and the CPU time (user + system) of one run of the installed entry point."""
    process = subprocess.Popen(
        [usersctl.executable, "-d", usersctl.url, *args],
        cwd=usersctl.cwd,
        env=usersctl.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(input)
    process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


#: The decoy's cost is the hasher's, whatever the database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_missing_user_costs_what_a_bcrypt_user_costs(usersctl: Any, db: Any) -> None:
    from pwdlib.hashers.bcrypt import BcryptHasher

    db.seed("alice@example.com", "bob@example.com", "carol@example.com")
    bcrypt_hash = BcryptHasher(rounds=ROUNDS).hash(db.password)
    db.execute(f"UPDATE \"user\" SET hashed_password = '{bcrypt_hash}'")

    code, real = cpu_seconds(
        usersctl, "verify-password", "alice@example.com", "--password-stdin", input="wrong\n"
    )
    assert code == 6
    code, missing = cpu_seconds(
        usersctl, "verify-password", "nobody@example.com", "--password-stdin", input="wrong\n"
    )
    assert code == 6
    # An Argon2 decoy costs a fraction of bcrypt at this cost; the same work costs the same.
    assert missing > 0.75 * real, (missing, real)
    assert real > 0.75 * missing, (missing, real)
