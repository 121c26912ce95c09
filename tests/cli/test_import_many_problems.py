"""A file of a million invalid rows is refused with a count, in the memory of a small one."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


def run_measured(usersctl: Any, *args: str) -> tuple[int, str, int]:
    """Run the installed entry point; its exit code, stderr and peak memory (KiB), read from
    /proc while it runs (the resource usage of a child counts the memory of the pytest process
    it was forked from)."""
    process = subprocess.Popen(
        [usersctl.executable, "-d", usersctl.url, *args],
        cwd=usersctl.cwd,
        env=usersctl.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        time.sleep(0.05)
    assert process.stderr is not None
    return process.returncode, process.stderr.read(), peak


# Rows refused before anything reaches the database: on SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_million_invalid_rows_keep_twenty_problems_and_a_count(
    usersctl: Any, db: Any, tmp_path: Path
) -> None:
    few = tmp_path / "few.jsonl"
    few.write_text('{"password": "a long enough password"}\n' * 10_000)
    many = tmp_path / "many.jsonl"
    many.write_text('{"password": "a long enough password"}\n' * 1_000_000)

    code, small_error, small_peak = run_measured(usersctl, "import-users", str(few))
    assert code == 2, small_error
    code, error, peak = run_measured(usersctl, "import-users", str(many))
    assert code == 2, error
    assert error.startswith("Error: 1000000 rows are invalid, nothing was written: line 1: ")
    assert len(re.findall(r"\bline \d+: ", error)) == 20  # "a header line" is in each message
    assert error.rstrip().endswith("; and 999980 more")
    # Memory flat in the number of bad rows: keeping every problem took ~130 MB more here.
    assert peak < small_peak + 40 * 1024, (small_peak, peak)
    assert db.count() == 0
