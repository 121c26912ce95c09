"""Mutation testing of usersctl's core modules with mutmut: how many small changes to the code the
test suite notices. On demand, not in CI (it runs the tests once per mutant: hours for every
module on two cores).

    python benchmarks/mutation.py                          # every core module
    python benchmarks/mutation.py emails.py passwords.py   # some of them (paths under cli/usersctl)
    python benchmarks/mutation.py --max-children 1 --tests tests/test_emails.py emails.py

It writes ``benchmarks/mutation-score.md``: the kill rate per module and overall, and every
surviving mutant as a diff. Why mutmut rather than cosmic-ray: mutmut 3 compiles every mutant of a
module into one copy (a trampoline picks the live one) and runs, for each mutant, only the tests
that reached the mutated function, in a process forked from a warm pytest; cosmic-ray rewrites the
file and starts the whole test command again per mutant, several times slower here.

mutmut expects the package under ``src/`` (it names mutants by their path), so the run works on a
copy: ``<workdir>/src/usersctl`` and ``<workdir>/tests``. The tests that run the installed entry
point in a subprocess also run the mutant: ``PYTHONPATH`` puts the mutated copy first, and mutmut's
``MUTANT_UNDER_TEST`` is inherited. The PostgreSQL half runs when ``USERSCTL_TEST_POSTGRES_URL``
(or the default server) is there, as in the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    sys.exit("benchmarks/mutation.py needs Python 3.11 or newer (tomllib)")
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cli" / "usersctl"
SCORE_FILE = Path(__file__).resolve().parent / "mutation-score.md"

#: The issue's core modules: the operations, import/export machinery, db/, passwords, emails,
#: engine and fields.
CORE = (
    "users.py",
    "importing/reading.py",
    "importing/checking.py",
    "importing/planning.py",
    "importing/writing.py",
    "importing/importer.py",
    "exporting.py",
    "db/adapter.py",
    "db/tables.py",
    "db/types.py",
    "passwords.py",
    "emails.py",
    "engine.py",
    "fields.py",
)

#: Tests that cannot run from the copy: they build virtual environments from PyPI (slow marker),
#: or read files of the repository that the copy does not have (.ci/run).
NOT_IN_COPY = ("tests/test_fastapi_users_versions.py", "tests/test_readme.py")


def workspace(folder: Path, modules: list[str], tests: list[str]) -> None:
    """The copy mutmut works on, with the project's pytest settings and mutmut's."""
    shutil.copytree(
        PACKAGE, folder / "src" / "usersctl", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    for name in NOT_IN_COPY:
        (folder / name).unlink(missing_ok=True)
    pytest_settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
        "ini_options"
    ]
    config = {
        "source_paths": ["src/usersctl"],
        "only_mutate": [f"src/usersctl/{module}" for module in modules],
        "pytest_add_cli_args": ["-p", "no:randomly", "-p", "no:xdist", "-m", "not slow"],
        "pytest_add_cli_args_test_selection": tests,
    }
    lines = ["[tool.pytest.ini_options]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in pytest_settings.items()]
    lines += ["", "[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n")
    # It must exist before Python starts: a PYTHONPATH entry that is missing at start-up is
    # remembered as unusable, and the tests would import the unmutated package.
    (folder / "mutants" / "src").mkdir(parents=True)


def mutmut(folder: Path, *args: str, capture: bool = False) -> str:
    env = {**os.environ, "PYTHONPATH": str(folder / "mutants" / "src")}
    process = subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=folder,
        env=env,
        text=True,
        stdout=subprocess.PIPE if capture else None,
        check=False,
    )
    if process.returncode != 0:
        sys.exit(f"mutmut {' '.join(args)} failed with exit code {process.returncode}")
    return process.stdout or ""


def module_of(mutant: str) -> str:
    """``usersctl.db.adapter.x_f__mutmut_3`` -> ``db/adapter.py``."""
    dotted = mutant.split(".x")[0].removeprefix("usersctl.")
    return dotted.replace(".", "/") + ".py"


def report(folder: Path, modules: list[str], tests: list[str]) -> str:
    """The score file's text, from mutmut's results."""
    statuses: dict[str, str] = {}
    for line in mutmut(folder, "results", "--all", "true", capture=True).splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses[name] = status
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for name, status in statuses.items():
        counts[module_of(name)][status] += 1
    total: Counter[str] = Counter()
    lines = [
        "# Mutation score",
        "",
        f"Command: `python benchmarks/mutation.py {' '.join(sys.argv[1:])}`".rstrip() + "  ",
        f"Tests: {', '.join(tests)}",
        "",
        "| module | killed | survived | timeout | no tests | other | kill rate |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for module in modules:
        c = counts.get(module, Counter())
        total.update(c)
        lines.append(row(module, c))
    lines.append(row("**all**", total))
    survivors = sorted(name for name, status in statuses.items() if status == "survived")
    lines += ["", f"## Surviving mutants ({len(survivors)})", ""]
    for name in survivors:
        diff = mutmut(folder, "show", name, capture=True).strip()
        lines += [f"### {name}", "", "```diff", diff, "```", ""]
    return "\n".join(lines) + "\n"


def row(label: str, c: Counter[str]) -> str:
    killed, survived = c["killed"], c["survived"]
    timeout, untested = c["timeout"], c["no tests"]
    other = sum(c.values()) - killed - survived - timeout - untested
    # A timeout is a mutant the tests noticed (it made them hang); an untested one was not.
    tried = killed + timeout + survived + untested
    rate = f"{(killed + timeout) / tried:.1%}" if tried else "-"
    return f"| {label} | {killed} | {survived} | {timeout} | {untested} | {other} | {rate} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=list(CORE), help="paths under cli/usersctl")
    parser.add_argument(
        "--tests",
        action="append",
        help="a test file or folder that may kill (repeatable; default tests)",
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--workdir", type=Path, help="keep the copy here (default: a temporary one)"
    )
    args = parser.parse_args()
    args.tests = args.tests or ["tests"]
    unknown = [m for m in args.modules if not (PACKAGE / m).is_file()]
    if unknown:
        parser.error(f"not a module under cli/usersctl: {', '.join(unknown)}")
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="usersctl-mutation-"))
    if folder.exists() and any(folder.iterdir()):
        parser.error(f"{folder} is not empty")
    try:
        workspace(folder, args.modules, args.tests)
        mutmut(folder, "run", "--max-children", str(args.max_children))
        SCORE_FILE.write_text(report(folder, args.modules, args.tests))
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    summary = re.search(r"\| \*\*all\*\* \|.*", SCORE_FILE.read_text())
    print(f"{SCORE_FILE}: {summary.group(0) if summary else ''}")


if __name__ == "__main__":
    main()
