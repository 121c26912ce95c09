"""Mutation testing of usersctl's core modules with mutmut: how many small changes to the code the
test suite notices. On demand, not in CI (it runs the tests once per mutant: hours for every
module on two cores).

    python benchmarks/mutation.py                          # every core module
    python benchmarks/mutation.py emails.py passwords.py   # some of them (paths under cli/usersctl)
    python benchmarks/mutation.py importing                # a package: each of its modules
    python benchmarks/mutation.py --max-children 1 --tests tests/test_emails.py emails.py
    python benchmarks/mutation.py --workdir /tmp/m --tests tests/test_emails.py emails.py  # again:
        # the same folder refreshes the copy, reruns what changed and every survivor
    python benchmarks/mutation.py --survivors-only --workdir /tmp/m --tests ... emails.py
        # new tests only: the survivors and the untested run again, nothing else; in a new
        # folder, the survivors that benchmarks/mutation-results.json records, by name
    python benchmarks/mutation.py --mutants 'usersctl.users.x_find_*' --workdir /tmp/m \
        --tests tests/test_users_reading.py users.py
        # some functions' mutants only, run again each time: verdicts printed, nothing recorded

It writes ``benchmarks/mutation-score.md``: the kill rate per module and overall, and every
surviving mutant as a diff. Each module's figures are kept in ``benchmarks/mutation-results.json``
until a run of that module replaces them, so modules run one at a time add up to one table. A
survivor that the README's "Mutation score" section names (``usersctl.fields.x_f__mutmut_3``,
one line each saying why it behaves the same) counts as equivalent: the score leaves it out of
the mutants it counts. Why mutmut rather than cosmic-ray: mutmut 3 compiles every mutant of a
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
from collections import Counter
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cli" / "usersctl"
SCORE_FILE = Path(__file__).resolve().parent / "mutation-score.md"
RESULTS_FILE = Path(__file__).resolve().parent / "mutation-results.json"
README = ROOT / "README.md"

#: The issue's core modules: the operations, import/export machinery, db/, passwords, emails,
#: engine and fields.
CORE = (
    "users.py",
    "importing/rows.py",
    "importing/reading.py",
    "importing/checking.py",
    "importing/planning.py",
    "importing/writing.py",
    "importing/importer.py",
    "importing/applying.py",
    "exporting.py",
    "db/adapter.py",
    "db/tables.py",
    "db/types.py",
    "passwords.py",
    "emails.py",
    "engine.py",
    "fields.py",
    "csv_cells.py",
)

#: Tests that cannot run from the copy: they build virtual environments from PyPI (slow marker),
#: or read files of the repository that the copy does not have (.ci/run).
NOT_IN_COPY = ("tests/test_fastapi_users_versions.py", "tests/test_readme.py")


#: Appended to the copy's tests/conftest.py. A failing example is enough to kill a mutant:
#: Hypothesis's shrinking of it, with real password hashes, took minutes per mutant. Examples
#: are derived from the test, so a rerun tries the same ones.
HYPOTHESIS_PROFILE = """

from hypothesis import Phase as _Phase
from hypothesis import settings as _settings

_settings.register_profile(
    "mutation", phases=[_Phase.explicit, _Phase.generate], derandomize=True, database=None
)
_settings.load_profile("mutation")
"""


def workspace(folder: Path, modules: list[str], tests: list[str]) -> None:
    """The copy mutmut works on, with the project's pytest settings and mutmut's. In a folder of
    an earlier run, the package and the tests are copied over again: mutmut reruns the mutants of
    the functions that changed and collects coverage for the new tests."""
    for source, target in (
        (PACKAGE, folder / "src" / "usersctl"),
        (ROOT / "tests", folder / "tests"),
    ):
        shutil.copytree(
            source, target, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
        )
    for name in NOT_IN_COPY:
        (folder / name).unlink(missing_ok=True)
    with (folder / "tests" / "conftest.py").open("a") as conftest:
        conftest.write(HYPOTHESIS_PROFILE)
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
    (folder / "mutants" / "src").mkdir(parents=True, exist_ok=True)


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


def expand(modules: list[str]) -> list[str]:
    """Paths under cli/usersctl, a package (a folder) replaced by its modules, in order."""
    found: list[str] = []
    for module in modules:
        folder = PACKAGE / module
        if folder.is_dir():
            found += sorted(p.relative_to(PACKAGE).as_posix() for p in folder.rglob("*.py"))
        else:
            found.append(module)
    return list(dict.fromkeys(found))


def module_of(mutant: str) -> str:
    """``usersctl.db.adapter.x_f__mutmut_3`` -> ``db/adapter.py``."""
    dotted = mutant.split(".x")[0].removeprefix("usersctl.")
    return dotted.replace(".", "/") + ".py"


def statuses(folder: Path) -> dict[str, str]:
    """mutmut's verdict on every mutant of the run in ``folder``."""
    found: dict[str, str] = {}
    for line in mutmut(folder, "results", "--all", "true", capture=True).splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            found[name] = status
    return found


def equivalents() -> dict[str, str]:
    """The mutants the README's "Mutation score" section calls equivalent, with its line."""
    text = README.read_text()
    section = re.search(r"^### Mutation score\n(.*?)(?=^#)", text + "\n#", re.S | re.M)
    found: dict[str, str] = {}
    for line in (section.group(1) if section else "").splitlines():
        for name in re.findall(r"usersctl\.[\w.]+__mutmut_\d+", line):
            found[name] = line.strip()
    return found


def record(
    folder: Path, modules: list[str], tests: list[str], rerun: list[str] | None = None
) -> None:
    """This run's figures for ``modules``, replacing theirs in the results file. With ``rerun``
    (the recorded survivors, tried again by name in a new folder), only their verdicts change;
    every other mutant keeps the one recorded."""
    found = statuses(folder)
    results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
    arguments = [a for a in sys.argv[1:] if a not in ("--record-only", "--survivors-only")]
    command = f"python benchmarks/mutation.py {' '.join(arguments)}".rstrip()
    if "--record-only" in sys.argv:
        command += "` (recorded with --record-only: not every mutant may have run) `"
    if rerun is not None:
        for module in modules:
            merge(
                results[module],
                {name: found[name] for name in rerun if module_of(name) == module},
                folder,
                command,
                tests,
            )
        RESULTS_FILE.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        return
    for module in modules:
        mine = {name: status for name, status in found.items() if module_of(name) == module}
        if not mine:  # nothing to mutate (a package's __init__.py of imports only)
            results.pop(module, None)
            continue
        results[module] = {
            "command": command,
            "tests": tests,
            "counts": dict(Counter(mine.values())),
            "survivors": {
                name: mutmut(folder, "show", name, capture=True).strip()
                for name in sorted(mine)
                if mine[name] == "survived"
            },
        }
    RESULTS_FILE.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


def merge(
    recorded: dict, verdicts: dict[str, str], folder: Path, command: str, tests: list[str]
) -> None:
    """A module's recorded figures with its survivors' new ``verdicts`` in place of "survived"."""
    counts = Counter(recorded["counts"])
    for name, status in verdicts.items():
        counts["survived"] -= 1
        counts[status] += 1
        if status != "survived":
            del recorded["survivors"][name]
        else:
            recorded["survivors"][name] = mutmut(folder, "show", name, capture=True).strip()
    recorded["counts"] = {status: n for status, n in counts.items() if n}
    # The score file puts the command in backticks: a note after it (--record-only) ends in " `".
    head = recorded["command"].removesuffix(" `")
    head += ";" if head != recorded["command"] else "`,"
    recorded["command"] = f"{head} its survivors then with `{command} --survivors-only"
    recorded["tests"] = list(dict.fromkeys(recorded["tests"] + tests))


def report() -> str:
    """The score file's text, from the results file and the README's equivalents."""
    results = json.loads(RESULTS_FILE.read_text())
    equivalent = equivalents()
    total: Counter[str] = Counter()
    lines = [
        "# Mutation score",
        "",
        "Written by `benchmarks/mutation.py` (see its docstring); a survivor that the README's",
        '"Mutation score" section explains as equivalent is left out of the score.',
        "",
        "| module | killed | survived | equivalent | timeout | no tests | other | score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    ordered = [m for m in CORE if m in results] + sorted(set(results) - set(CORE))
    for module in ordered:
        c = Counter(results[module]["counts"])
        c["equivalent"] = sum(name in equivalent for name in results[module]["survivors"])
        c["survived"] -= c["equivalent"]
        total.update(c)
        lines.append(row(module, c))
    lines.append(row("**all**", total))
    lines += ["", "## Commands", ""]
    for module in ordered:
        tests = ", ".join(results[module]["tests"])
        lines.append(f"- {module}: `{results[module]['command']}` (tests: {tests})")
    survivors = {
        name: diff
        for module in ordered
        for name, diff in results[module]["survivors"].items()
        if name not in equivalent
    }
    lines += ["", f"## Surviving mutants ({len(survivors)})", ""]
    for name, diff in survivors.items():
        lines += [f"### {name}", "", "```diff", diff, "```", ""]
    listed = {name for module in ordered for name in results[module]["survivors"]}
    stale = sorted(name for name in equivalent if name not in listed)
    if stale:
        lines += ["## Listed as equivalent in the README but not surviving", ""]
        lines += [f"- {name}" for name in stale] + [""]
    return "\n".join(lines).rstrip("\n") + "\n"


def row(label: str, c: Counter[str]) -> str:
    killed, survived, equivalent = c["killed"], c["survived"], c["equivalent"]
    timeout, untested = c["timeout"], c["no tests"]
    other = sum(c.values()) - killed - survived - equivalent - timeout - untested
    # A timeout is a mutant the tests noticed (it made them hang); an untested one was not.
    # An equivalent one behaves as the code does: no test could kill it.
    tried = killed + timeout + survived + untested
    rate = f"{(killed + timeout) / tried:.1%}" if tried else "-"
    return (
        f"| {label} | {killed} | {survived} | {equivalent} | {timeout} | {untested} | {other} "
        f"| {rate} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "modules",
        nargs="*",
        default=list(CORE),
        help="paths under cli/usersctl: modules, or a package's folder for each of its modules",
    )
    parser.add_argument(
        "--tests",
        action="append",
        help="a test file or folder that may kill (repeatable; default tests)",
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the copy here (default: a temporary one); a folder of an earlier run of the "
        "same modules is refreshed and run again: the changed functions' mutants, every "
        "survivor and every mutant no test reached",
    )
    parser.add_argument(
        "--survivors-only",
        action="store_true",
        help="with the --workdir of an earlier run whose module has not changed since: run only "
        "its survivors and the mutants no test reached, against the tests as they are now (new "
        "tests for the survivors; the killed stay killed); with a new --workdir, the survivors "
        "the results file records, by name, the other verdicts kept as recorded",
    )
    parser.add_argument(
        "--mutants",
        action="append",
        metavar="PATTERN",
        help="only the mutants whose names match (fnmatch, repeatable, e.g. "
        "'usersctl.users.x_find_*'), run again even when they have a verdict: a working run "
        "while writing tests for some functions; prints their verdicts and the survivors' diffs, "
        "and records nothing",
    )
    parser.add_argument(
        "--record-only",
        action="store_true",
        help="run nothing: take the verdicts of the run in --workdir as they are (a run stopped "
        "early leaves the mutants it did not try as 'not checked', counted under other)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: write the score file again from the results file and the README",
    )
    args = parser.parse_args()
    if args.report_only:
        SCORE_FILE.write_text(report())
        print(summary())
        return
    args.tests = args.tests or ["tests"]
    args.modules = expand(args.modules)
    if args.survivors_only and args.workdir is None:
        parser.error("--survivors-only needs a --workdir (an earlier run's, or a new folder)")
    if args.record_only:
        if args.workdir is None or not (args.workdir / "mutants").is_dir():
            parser.error("--record-only needs the --workdir of an earlier run")
        record(args.workdir, args.modules, args.tests)
        SCORE_FILE.write_text(report())
        print(summary())
        return
    unknown = [m for m in args.modules if not (PACKAGE / m).is_file()]
    if unknown:
        parser.error(f"not a module under cli/usersctl: {', '.join(unknown)}")
    folder = args.workdir or Path(tempfile.mkdtemp(prefix="usersctl-mutation-"))
    again = (folder / "mutants").is_dir()
    if folder.exists() and any(folder.iterdir()) and not again:
        parser.error(f"{folder} is neither empty nor the folder of an earlier run")
    try:
        workspace(folder, args.modules, args.tests)
        children = ("--max-children", str(args.max_children))
        if args.mutants:
            mutmut(folder, "run", *children, *args.mutants)
            print(selected(folder, args.mutants))
            return
        if args.survivors_only and not again:
            # A new folder: the results file names the survivors (the module unchanged since,
            # so the names are the same); they alone run, and the other verdicts stay.
            rerun = recorded_survivors(args.modules)
            if not rerun:
                parser.error("the results file records no survivor of these modules to rerun")
            mutmut(folder, "run", *children, *rerun)
            record(folder, args.modules, args.tests, rerun=rerun)
            SCORE_FILE.write_text(report())
            print(summary())
            return
        if not (again and args.survivors_only):
            mutmut(folder, "run", *children)
        if again:
            # mutmut keeps a verdict unless the function changed: a new test must be tried on
            # the survivors (and the mutants no test reached) by name, but for the equivalent.
            equivalent = equivalents()
            again_names = [
                name
                for name, status in statuses(folder).items()
                if status in ("survived", "no tests") and name not in equivalent
            ]
            if again_names:
                mutmut(folder, "run", *children, *again_names)
        record(folder, args.modules, args.tests)
        SCORE_FILE.write_text(report())
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(summary())


def selected(folder: Path, patterns: list[str]) -> str:
    """The verdicts of the mutants ``patterns`` name in the run in ``folder``, counted, and the
    survivors' diffs but the README's equivalents."""
    found = {
        name: status
        for name, status in statuses(folder).items()
        if any(fnmatch(name, pattern) for pattern in patterns)
    }
    equivalent = equivalents()
    survivors = [n for n, s in sorted(found.items()) if s == "survived" and n not in equivalent]
    counts = ", ".join(f"{status} {n}" for status, n in Counter(found.values()).most_common())
    shown = [mutmut(folder, "show", name, capture=True).strip() for name in survivors]
    listed = sum(1 for n, s in found.items() if s == "survived" and n in equivalent)
    return "\n\n".join(
        [*shown, f"{len(found)} mutants: {counts}; {listed} of the survivors listed as equivalent"]
    )


def recorded_survivors(modules: list[str]) -> list[str]:
    """The survivors the results file records for ``modules``, but the README's equivalents."""
    results = json.loads(RESULTS_FILE.read_text()) if RESULTS_FILE.exists() else {}
    equivalent = equivalents()
    return [
        name
        for module in modules
        for name in results.get(module, {}).get("survivors", {})
        if name not in equivalent
    ]


def summary() -> str:
    found = re.search(r"\| \*\*all\*\* \|.*", SCORE_FILE.read_text())
    return f"{SCORE_FILE}: {found.group(0) if found else ''}"


if __name__ == "__main__":
    main()
