"""Where passwords come from: never argv; stdin, a file, a generator, or a hidden prompt on a tty."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer

from harness import start
from terminal import type_hidden
from usersctl.commands import app
from usersctl.passwords import verify_password

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl

SOURCES = ("--password-stdin", "--password-file", "--generate-password")


def test_no_option_takes_a_password_as_its_value(bare_cli: Cli) -> None:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    context = typer.Context(group)
    names = group.list_commands(context)
    assert "create-user" in names and "set-password" in names
    for name in names:
        command = group.get_command(context, name)
        assert command is not None
        for param in command.params:
            if not isinstance(param, typer.core.TyperOption):
                continue
            if any("password" in opt for opt in param.opts) and not param.is_flag:
                # The only valued password options name a file, never the password: one to
                # read a password from, and apply's new file of generated passwords.
                assert param.opts in (["--password-file"], ["--passwords-file"]), (name, param.opts)
    result = bare_cli("create-user", "a@example.com", "--password", "hunter2", url=False)
    assert result.exit_code == 2
    assert "hunter2" not in result.output


def test_password_from_stdin_keeps_spaces_and_strips_one_line_ending(
    cli: Cli, db: Database
) -> None:
    for email, given, password in (
        ("spaces@example.com", "  two  spaces  \n", "  two  spaces  "),
        ("crlf@example.com", "windows line\r\n", "windows line"),
        ("first-line@example.com", "line one\nline two\n", "line one"),
        ("no-newline@example.com", "no line ending at all", "no line ending at all"),
    ):
        result = cli.ok("create-user", email, "--password-stdin", "-o", "json", input=given)
        assert password.strip() not in result.output
        stored = db.stored_hash(email)
        assert stored not in result.output
        assert verify_password(password, stored), email
    assert not verify_password("two  spaces", db.stored_hash("spaces@example.com"))


def test_password_from_a_file(cli: Cli, db: Database, tmp_path: Path) -> None:
    private = tmp_path / "private.txt"
    private.write_text(" file password \n")
    private.chmod(0o600)
    result = cli.ok("create-user", "file@example.com", "--password-file", str(private))
    assert result.stderr == ""
    assert "file password" not in result.output
    assert verify_password(" file password ", db.stored_hash("file@example.com"))
    # Only one line ending is removed.
    two_lines = tmp_path / "two-lines.txt"
    two_lines.write_text("two lines\n\n")
    two_lines.chmod(0o600)
    cli.ok("create-user", "two@example.com", "--password-file", str(two_lines))
    assert verify_password("two lines\n", db.stored_hash("two@example.com"))


def test_a_password_file_others_can_read_is_used_with_a_warning(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    shared = tmp_path / "shared.txt"
    shared.write_text("shared secret\n")
    shared.chmod(0o644)
    result = cli.ok(
        "create-user", "shared@example.com", "--password-file", str(shared), "-o", "json"
    )
    assert "Warning" in result.stderr and str(shared) in result.stderr
    assert "shared secret" not in result.output
    assert json.loads(result.stdout)["email"] == "shared@example.com"  # stdout stays clean
    assert verify_password("shared secret", db.stored_hash("shared@example.com"))


def test_unusable_password_sources_are_usage_errors(cli: Cli, db: Database, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    empty.chmod(0o600)
    assert "empty" in cli.fails(2, "create-user", "a@example.com", "--password-stdin", input="")
    assert "empty" in cli.fails(2, "create-user", "a@example.com", "--password-stdin", input="\n")
    assert "empty" in cli.fails(2, "create-user", "a@example.com", "--password-file", str(empty))
    assert "does not exist" in cli.fails(
        2, "create-user", "a@example.com", "--password-file", str(tmp_path / "missing.txt")
    )
    two = cli.fails(2, "create-user", "a@example.com", "--password-stdin", "--generate-password")
    assert "--password-stdin" in two and "--generate-password" in two
    assert db.count() == 0


@pytest.mark.parametrize("command", ["create-user", "set-password"])
def test_no_terminal_and_no_source_is_exit_2_naming_the_options(
    cli: Cli, db: Database, command: str
) -> None:
    db.seed("alice@example.com")
    message = cli.fails(
        2, command, "alice@example.com" if command == "set-password" else "b@example.com"
    )
    for option in SOURCES:
        assert option in message


def test_no_terminal_never_waits_for_input(usersctl: Usersctl, db: Database) -> None:
    # stdin is a pipe that stays open and silent: usersctl must not read it without being told.
    process = start(db.url, "create-user", "a@example.com", cwd=usersctl.cwd)
    try:
        code = process.wait(timeout=20)
        stderr = process.stderr.read() if process.stderr else ""
    finally:
        process.kill()
        process.communicate()
    assert code == 2, stderr
    assert "--password-stdin" in stderr


def test_set_password_replaces_the_hash(cli: Cli, db: Database, tmp_path: Path) -> None:
    db.seed("alice@example.com")
    before = db.stored_hash("alice@example.com")
    result = cli.ok(
        "set-password", "ALICE@example.com", "--password-stdin", "-o", "json", input="the new one\n"
    )
    assert json.loads(result.stdout) == {
        "id": json.loads(result.stdout)["id"],
        "email": "alice@example.com",
        "status": "password set",
    }
    after = db.stored_hash("alice@example.com")
    assert after != before
    assert before not in result.output and after not in result.output
    assert verify_password("the new one", after)
    assert not verify_password(db.password, after)
    # A generated one is shown once, in the field `password`.
    generated = cli.json("set-password", "alice@example.com", "--generate-password")
    assert verify_password(generated["password"], db.stored_hash("alice@example.com"))
    assert not verify_password("the new one", db.stored_hash("alice@example.com"))
    # --dry-run changes nothing.
    unchanged = db.stored_hash("alice@example.com")
    would = cli.json(
        "set-password",
        "alice@example.com",
        "--dry-run",
        "--password-stdin",
        input="a dry-run password\n",
    )
    assert would["status"] == "would set password"
    assert db.stored_hash("alice@example.com") == unchanged
    # Unknown users and bad ids.
    cli.fails(3, "set-password", "bob@example.com", "--generate-password")
    cli.fails(2, "set-password", "not-an-id", "--generate-password")


# On a terminal: prompts answered through a pseudo-terminal ----------------------------------


def transcript(child: Any) -> io.StringIO:
    """Record everything the child prints on its terminal."""
    log = io.StringIO()
    child.logfile_read = log
    return log


#: The prompt is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_create_user_asks_twice_with_a_hidden_prompt(spawn: Any, db: Database) -> None:
    child = spawn("create-user", "prompted@example.com", "-o", "json")
    log = transcript(child)
    child.expect("Password:")
    type_hidden(child, "first try")
    child.expect("Repeat for confirmation:")
    type_hidden(child, "does not match")
    child.expect("do not match")
    child.expect("Password:")
    type_hidden(child, "s3cret typed")
    child.expect("Repeat for confirmation:")
    type_hidden(child, "s3cret typed")
    child.expect('"status": "created"')
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 0, log.getvalue()
    # Nothing typed was echoed.
    for typed in ("first try", "does not match", "s3cret typed"):
        assert typed not in log.getvalue()
    assert verify_password("s3cret typed", db.stored_hash("prompted@example.com"))


#: The prompt is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_set_password_asks_on_a_terminal(spawn: Any, db: Database) -> None:
    db.seed("alice@example.com")
    child = spawn("set-password", "alice@example.com")
    log = transcript(child)
    child.expect("Password:")
    type_hidden(child, "from the tty")
    child.expect("Repeat for confirmation:")
    type_hidden(child, "from the tty")
    child.expect("password set")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 0, log.getvalue()
    assert "from the tty" not in log.getvalue()
    assert verify_password("from the tty", db.stored_hash("alice@example.com"))


def test_ctrl_c_at_the_prompt_exits_130_and_creates_nothing(spawn: Any, db: Database) -> None:
    child = spawn("create-user", "interrupted@example.com")
    child.expect("Password:")
    # As a person would: while the prompt waits for the password, its echo turned off.
    assert child.waitnoecho(timeout=10)
    child.sendintr()
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 130
    assert db.count() == 0


#: Hashing is stopped before any row is written, whatever the database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_ctrl_c_while_an_import_hashes_exits_130_and_imports_nothing(
    spawn: Any, db: Database, tmp_path: Path
) -> None:
    import os

    rows = 6 * (os.cpu_count() or 1)
    source = tmp_path / "plain.jsonl"
    source.write_text(
        "".join(
            json.dumps({"email": f"plain{n}@example.com", "password": f"password number {n}"})
            + "\n"
            for n in range(rows)
        )
    )
    child = spawn("import-users", str(source))
    log = transcript(child)
    child.expect("hashing")  # the progress bar, on the terminal
    child.sendintr()
    child.expect("interrupted; nothing was committed")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 130, log.getvalue()
    assert db.count() == 0


def pexpect_eof() -> Any:
    import pexpect

    return pexpect.EOF
