"""Where export-users writes: a file replaced whole, or a descriptor, pipe or device in place.

Run through the installed entry point in bash, as a person's shell line would run it.
"""

from __future__ import annotations

import json
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

# Files, descriptors and pipes, the same whatever the database: on SQLite only (export-users
# on each database is tested elsewhere).
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

#: More users than a pipe holds (64 KiB), so a reader that leaves is noticed by the writer.
MANY = 1000


def shell(usersctl: Any, line: str) -> subprocess.CompletedProcess[str]:
    """``line`` in bash, where ``usersctl`` is the installed entry point on the test database."""
    command = f"{shlex.quote(usersctl.executable)} -d {shlex.quote(usersctl.url)}"
    return subprocess.run(
        ["bash", "-c", line.replace("usersctl", command)],
        capture_output=True,
        text=True,
        cwd=usersctl.cwd,
        env=usersctl.env(),
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture
def many(db: Any) -> list[str]:
    emails = [f"user{n:04}@example.com" for n in range(MANY)]
    db.seed(*emails)
    return emails


def test_export_to_dev_stdout_appends_to_the_file_the_shell_opened(usersctl: Any, db: Any) -> None:
    db.seed("alice@example.com", "bob@example.com")
    log = usersctl.cwd / "log.txt"
    log.write_text("earlier line\n")
    result = shell(usersctl, "usersctl export-users /dev/stdout >> log.txt")
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert lines[0] == "earlier line"
    assert sorted(json.loads(line)["email"] for line in lines[1:]) == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert list(usersctl.cwd.glob("*.partial")) == []


def test_export_to_dev_stdout_into_a_pipe(usersctl: Any, db: Any) -> None:
    db.seed("alice@example.com", "bob@example.com", "carol@example.com")
    result = shell(usersctl, "usersctl export-users /dev/stdout | wc -l; exit ${PIPESTATUS[0]}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"


@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_a_reader_that_leaves_is_exit_141(usersctl: Any, many: list[str], target: str) -> None:
    result = shell(usersctl, f"usersctl export-users {target} | head -1; exit ${{PIPESTATUS[0]}}")
    assert result.returncode == 141, result.stdout[-200:] + result.stderr
    assert json.loads(result.stdout)["email"] in many
    assert "Exported" not in result.stderr


def test_exports_to_one_path_at_once_do_not_interfere(usersctl: Any, many: list[str]) -> None:
    runs = [
        subprocess.Popen(
            [usersctl.executable, "-d", usersctl.url, "export-users", "users.jsonl"],
            cwd=usersctl.cwd,
            env=usersctl.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for process in runs:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    lines = (usersctl.cwd / "users.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["email"] for line in lines) == many
    assert list(usersctl.cwd.glob("*.partial")) == []


def test_an_export_never_widens_the_permissions_of_the_file_it_replaces(
    usersctl: Any, db: Any
) -> None:
    db.seed("alice@example.com")
    kept = usersctl.cwd / "kept.jsonl"
    kept.write_text("old\n")
    kept.chmod(0o600)
    usersctl.ok("export-users", "kept.jsonl")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert json.loads(kept.read_text())["email"] == "alice@example.com"
    # With hashes inside, owner-only even where the old file was open to all.
    hashes = usersctl.cwd / "hashes.jsonl"
    hashes.write_text("old\n")
    hashes.chmod(0o644)
    usersctl.ok("export-users", "hashes.jsonl", "--include-hashes")
    assert stat.S_IMODE(hashes.stat().st_mode) == 0o600


def test_a_fifo_is_written_in_place(usersctl: Any, db: Any, tmp_path: Path) -> None:
    db.seed("alice@example.com")
    result = shell(
        usersctl,
        "mkfifo users.fifo && (cat users.fifo > got.txt &) && usersctl export-users users.fifo "
        "&& wait && sleep 0.2 && cat got.txt && test -p users.fifo",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["email"] == "alice@example.com"
