"""Timing whole processes: wall time and the peak memory of that one process."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ProcessFailed(RuntimeError):
    """A measured command exited with an error."""


PEAK_RSS = Path(__file__).resolve().with_name("peak_rss.py")


@dataclass(frozen=True)
class Run:
    """One finished process: wall seconds, peak resident memory (if measured), what it printed."""

    seconds: float
    max_rss_mb: float | None
    stdout: str
    stderr: str


def clean_env() -> dict[str, str]:
    """The environment for measured commands: no database URL from the caller's shell, no colour."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("USERSCTL_DATABASE_URL", "DATABASE_URL", "USERSCTL_DEBUG")
    }
    env["NO_COLOR"] = "1"
    return env


def run_process(
    argv: Sequence[str],
    *,
    stdout: Path | bool | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    memory: bool = False,
) -> Run:
    """Run ``argv`` to completion and time it; raise ``ProcessFailed`` if it fails.

    ``stdout``: ``None`` captures it, ``False`` sends it to /dev/null, a path writes it there.
    ``memory``: also measure the peak RSS, by starting the command from ``peak_rss.py`` (which
    then also takes the time, leaving out its own start-up).
    """
    with (
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as captured,
        tempfile.NamedTemporaryFile("r") as report,
    ):
        command = list(argv)
        if memory:
            command = [sys.executable, "-S", str(PEAK_RSS), report.name, *command]
        with contextlib.ExitStack() as stack:
            sink: Any
            if stdout is False:
                sink = subprocess.DEVNULL
            elif isinstance(stdout, Path):
                sink = stack.enter_context(stdout.open("wb"))
            else:
                sink = captured
            start = time.perf_counter()
            process = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=sink, stderr=err, env=env, cwd=cwd
            )
            seconds = time.perf_counter() - start
        returncode = process.returncode
        max_rss_mb = None
        if memory and returncode == 0:
            measured, max_rss_kb, code = report.read().split()
            seconds, max_rss_mb, returncode = float(measured), int(max_rss_kb) / 1024, int(code)
        err.seek(0)
        captured.seek(0)
        run = Run(
            seconds=seconds,
            max_rss_mb=max_rss_mb,
            stdout=captured.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )
    if returncode != 0:
        raise ProcessFailed(
            f"{' '.join(argv)} exited with {returncode}: {run.stderr.strip()[-2000:]}"
        )
    return run


def median_runs(
    commands: dict[str, Callable[[int], Sequence[str]]],
    runs: int,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    warmup: int = 1,
) -> dict[str, float]:
    """Median wall seconds of each command over ``runs`` runs, after ``warmup`` unmeasured ones.

    The commands take turns (A B C A B C …) so that a burst of load elsewhere on the machine
    hits them alike. Each is given the run's number, to make e.g. a unique email.
    """
    times: dict[str, list[float]] = {name: [] for name in commands}
    for number in range(-warmup, runs):
        for name, argv_for in commands.items():
            run = run_process(argv_for(number + warmup), stdout=False, env=env, cwd=cwd)
            if number >= 0:
                times[name].append(run.seconds)
    return {name: statistics.median(values) for name, values in times.items()}
