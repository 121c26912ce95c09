"""The README is the manual: its shell examples run as written, on SQLite and on PostgreSQL.

Every line of every ```sh block runs with ``USERSCTL_DATABASE_URL`` naming the test database
(``-d URL`` in an example is pointed at it too) and must exit 0. A plain ``usersctl ...`` line
runs in-process through Typer's runner (quick); a line with pipes or variables runs with bash
and the installed ``usersctl`` on PATH; a line that asks something runs on a pseudo-terminal.
The users and files the examples name are made first.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import typer

from harness import Database, clean_env, default_sigint, init_db, invoke, spawn_terminal
from terminal import type_hidden

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The one-liners that create a virtual environment; they are not run here.
SETUP_PREFIX = "python3 -m venv .venv && . .venv/bin/activate && pip install "

#: Users the examples name, created before they run.
EXAMPLE_USERS = [
    {"email": "old@example.com"},
    {"email": "alice@example.com"},
    {"email": "mallory@example.com"},
    {"email": "eve@example.com"},
    {"email": "someone@example.com", "id": "0b3f6a56-2c6e-4e39-9f0b-5b1c1a2d3e4f"},
    # The domain the offboarding example deactivates, and an address it must leave alone.
    {"email": "ann@old-corp.net"},
    {"email": "Bob@OLD-CORP.net"},
    {"email": "x@old-corp.net.evil.com"},
]
EXAMPLE_ENV = {
    "PASSWORD": "ops password from a vault",
    "NEW_PASSWORD": "alice's new password",
    "RESET_SECRET": "the app's reset_password_token_secret, 32 bytes or more",
    "VERIFY_SECRET": "the app's verification_token_secret, 32 bytes or more",
    "JWT_SECRET": "the app's JWTStrategy secret, 32 bytes or more",
}
TERMINAL_PASSWORD = "typed on a terminal"
#: Files that import examples read, written just before such an example runs.
IMPORT_FILES = {
    "new-users.jsonl": '{"email": "imported@example.com", "password": "imported password"}\n',
    "staff.csv": "email,password,is_verified\nstaff@example.com,staff password,true\n",
    "legacy.jsonl": '{"email": "legacy@example.com", "hashed_password": "md5$salt$digest"}\n',
}


def shell_lines() -> list[str]:
    """Each command line of the README's ```sh blocks, in order."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    return [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def section(heading: str) -> str:
    """The README's text from ``heading`` (a whole line) to the next heading of its level."""
    text = README.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


#: The section whose scripts run through the installed entry point, as a script runs them.
WORKED_EXAMPLES = "## Worked examples: ops scripts"


def worked_example_lines() -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", section(WORKED_EXAMPLES), flags=re.M | re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def example_files() -> dict[str, str]:
    """The files the README shows in ```yaml blocks whose first line is ``# NAME``."""
    blocks = re.findall(r"^```yaml\n# (\S+)\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    return dict(blocks)


def setup_lines() -> list[str]:
    return [line for line in shell_lines() if line.startswith(SETUP_PREFIX)]


def example_lines() -> list[str]:
    return [line for line in shell_lines() if not line.startswith(SETUP_PREFIX)]


def example_env(url: str | None) -> dict[str, str]:
    """What the examples' shell has beyond the harness's clean environment."""
    env = dict(EXAMPLE_ENV)
    if url is not None:
        env["USERSCTL_DATABASE_URL"] = url
    return env


def point_at(line: str, url: str) -> str:
    """The example with any ``-d URL`` / ``--database-url URL`` naming the test database."""
    return re.sub(r"(\s(?:-d|--database-url))\s+\S+", rf"\1 {shlex.quote(url)}", line)


def needs_terminal(words: list[str]) -> bool:
    if "set-password" in words or "create-user" in words:
        return not {"--password-stdin", "--password-file", "--generate-password"} & set(words)
    if "delete-user" in words:
        return not {"--yes", "-y", "--dry-run"} & set(words)
    if "revoke-sessions" in words and "--all" in words:
        return not {"--yes", "-y", "--dry-run"} & set(words)
    return False


def run_line(
    line: str, env: dict[str, str], cwd: Path, *, installed: bool = False
) -> tuple[int, str]:
    """Run one example: in-process when it is a plain ``usersctl`` command (quick), else with
    bash (pipes, variables, or ``installed``: the entry point a script runs), on a
    pseudo-terminal when it asks something."""
    words = shlex.split(line)
    plain = words[0] == "usersctl" and not re.search(r"[|&;<>$`]", line) and not installed
    if plain and not needs_terminal(words):
        result = invoke(words[1:], env=env, cwd=cwd)
        return result.exit_code, result.output + (
            repr(result.exception) if result.exception else ""
        )
    if not needs_terminal(words):
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", line],
            env=clean_env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            preexec_fn=default_sigint,
        )
        return result.returncode, result.stdout + result.stderr
    import pexpect

    child = spawn_terminal("bash", ["-c", line], env=env, cwd=cwd, timeout=30)
    try:
        while True:
            index = child.expect(
                [r"Password:", r"Repeat for confirmation:", r"\[y/N\]", pexpect.EOF]
            )
            if index in (0, 1):
                type_hidden(child, TERMINAL_PASSWORD)
            elif index == 2:
                child.sendline("y")
            else:
                break
        child.close()
        return int(child.exitstatus if child.exitstatus is not None else -1), child.before or ""
    finally:
        child.close(force=True)


# The setup one-liners -------------------------------------------------------------------------


def test_the_readme_has_the_two_setup_one_liners() -> None:
    main_job, tests = setup_lines()
    assert main_job == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install . && usersctl init-db && "
        "usersctl create-user admin@example.com --superuser --generate-password"
    )
    assert (
        tests
        == "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest -n 2"
    )


def test_ci_runs_the_readmes_test_command_verbatim() -> None:
    _, tests = setup_lines()
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_main_job_runs_on_a_fresh_database(database_url: str, tmp_path: Path) -> None:
    """The usersctl part of the main job's one-liner; on SQLite with the embedded default."""
    main_job, _ = setup_lines()
    job = main_job.removeprefix(SETUP_PREFIX + ". && ")
    assert job.startswith("usersctl init-db && ")
    sqlite = database_url.startswith("sqlite")
    env = example_env(None if sqlite else database_url)
    code, output = run_line(job, env, tmp_path)
    assert code == 0, output
    if sqlite:
        assert (tmp_path / "users.db").is_file()
    code, listed = run_line("usersctl list-users --superuser -o csv", env, tmp_path)
    assert code == 0, listed
    assert "admin@example.com" in listed


# Every other example --------------------------------------------------------------------------


def test_every_command_is_documented() -> None:
    from usersctl.commands import app

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    headings = " ".join(re.findall(r"^### (.+)$", README.read_text(), flags=re.M))
    for command in group.list_commands(typer.Context(group)):
        assert command in headings, f"README has no section for {command}"


def prepare(url: str, folder: Path) -> None:
    """Create the tables and the users the examples name, and the password file one reads."""
    init_db(url)
    Database(url).seed_specs(*EXAMPLE_USERS)
    password_file = folder / "new-password.txt"
    password_file.write_text("from the file\n")
    password_file.chmod(0o600)
    for name, text in example_files().items():
        (folder / name).write_text(text)


def test_the_readme_examples_run(database_url: str, tmp_path: Path) -> None:
    prepare(database_url, tmp_path)
    env = example_env(database_url)
    worked = worked_example_lines()
    assert len(worked) >= 5, worked
    ran = 0
    for line in example_lines():
        if re.fullmatch(r"export (USERSCTL_DATABASE_URL|DATABASE_URL)=\S+", line):
            continue  # the example's server is a placeholder; the test database stands in
        assert "usersctl" in line, f"an example that is not a usersctl command: {line}"
        words = shlex.split(line)
        for name in set(words) & set(IMPORT_FILES) if "import-users" in words else ():
            (tmp_path / name).write_text(IMPORT_FILES[name])
        installed = line in worked
        code, output = run_line(point_at(line, database_url), env, tmp_path, installed=installed)
        assert code == 0, f"{line}\n{output}"
        assert "Traceback" not in output
        ran += 1
    assert ran >= 15

    # What the examples did, as the README says.
    code, listed = run_line("usersctl list-users --limit 1000 -o csv", env, tmp_path)
    assert code == 0, listed
    emails = {row.split(",")[1] for row in listed.splitlines()[1:] if "," in row}
    assert {"new@example.com", "ops@example.com", "admin@example.com"} <= emails
    assert not {"old@example.com", "mallory@example.com"} & emails

    # The worked examples, as the README says: the team provisioned once (its passwords in an
    # owner-only file), the domain offboarded exactly, and the rest exported.
    db = Database(database_url)
    team = {"admin@example.com", "dev1@example.com", "dev2@example.com"}
    assert team <= set(db.emails("is_active"))
    assert db.flag("dev1@example.com", "is_verified") and db.flag(
        "admin@example.com", "is_superuser"
    )
    passwords = tmp_path / "team-passwords.jsonl"
    assert passwords.stat().st_mode & 0o777 == 0o600
    assert {"dev1@example.com", "dev2@example.com"} <= {
        json.loads(line)["email"] for line in passwords.read_text().splitlines()
    }
    old_corp = db.emails("lower(email) LIKE '%@old-corp.net'")
    assert [email.lower() for email in old_corp] == [
        "ann@old-corp.net",
        "archive@old-corp.net",
        "bob@old-corp.net",
    ]
    assert db.emails("lower(email) LIKE '%@old-corp.net' AND is_active") == []
    exported = {
        json.loads(line)["email"]
        for line in (tmp_path / "remaining.jsonl").read_text().splitlines()
    }
    assert exported == set(db.emails("is_active"))
    assert "x@old-corp.net.evil.com" in exported
