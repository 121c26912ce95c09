"""Configuration every command shares: which database, --version, help, shell completion."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import typer

import usersctl
from harness import run_module
from usersctl.commands import app

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl


def registered_commands() -> list[str]:
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    context = typer.Context(group)
    names = group.list_commands(context)
    assert all(group.get_command(context, name) is not None for name in names)
    return sorted(names)


# Which database -------------------------------------------------------------------------------


def test_database_url_option_then_usersctl_variable_then_database_url(
    db: Database, cli: Cli, database_at: type[Database], tmp_path: Path
) -> None:
    db.seed("chosen@example.com")
    usersctl_env = f"sqlite+aiosqlite:///{tmp_path / 'usersctl-env.db'}"
    database_env = f"sqlite:///{tmp_path / 'database-env.db'}"  # as apps write it
    for url, email in ((usersctl_env, "usersctl-env@example.com"), (database_env, "db-env@x.org")):
        assert cli("-d", url, "init-db", url=False).exit_code == 0
        database_at(url).seed(email)

    def listed(*args: str, **env: str) -> list[str]:
        result = cli(*args, "list-users", "-o", "json", env=env, url=False)
        assert result.exit_code == 0, result.output
        return [row["email"] for row in json.loads(result.stdout)]

    both = {"USERSCTL_DATABASE_URL": usersctl_env, "DATABASE_URL": database_env}
    # --database-url/-d wins over both variables ...
    assert listed("-d", cli.url, **both) == ["chosen@example.com"]
    assert listed("--database-url", cli.url, **both) == ["chosen@example.com"]
    # ... then USERSCTL_DATABASE_URL, then DATABASE_URL.
    assert listed(**both) == ["usersctl-env@example.com"]
    assert listed(USERSCTL_DATABASE_URL=cli.url, DATABASE_URL=database_env) == [
        "chosen@example.com"
    ]
    assert listed(DATABASE_URL=cli.url) == ["chosen@example.com"]


def test_default_database_is_users_db_in_the_current_folder(usersctl_anywhere: Usersctl) -> None:
    folder = usersctl_anywhere.cwd
    # A read command does not create the file, and says that nothing named a database (not to
    # run init-db: an app's database may just not have been pointed at) ...
    missing = usersctl_anywhere("list-users")
    assert missing.returncode == 5, missing.stderr
    assert "./users.db, the built-in default, does not exist" in missing.stderr
    assert "init-db" not in missing.stderr
    assert not (folder / "users.db").exists()
    # ... init-db does, in the current folder.
    created = usersctl_anywhere("init-db")
    assert created.returncode == 0, created.stderr
    assert (folder / "users.db").is_file()
    made = usersctl_anywhere(
        "create-user", "first@example.com", "--generate-password", "-o", "json"
    )
    assert made.returncode == 0, made.stderr
    listed = usersctl_anywhere("list-users", "-o", "json")
    assert [row["email"] for row in json.loads(listed.stdout)] == ["first@example.com"]


def test_the_entry_point_reports_an_unreachable_server_quickly(usersctl_anywhere: Usersctl) -> None:
    started = time.monotonic()
    message = usersctl_anywhere.fails(
        5, "-d", "postgresql://postgres:s3cretpw@127.0.0.1:1/x", "show-user", "a@example.com"
    )
    assert time.monotonic() - started < 10
    assert "s3cretpw" not in message


# Version and help -----------------------------------------------------------------------------


def test_version(bare_cli: Cli) -> None:
    result = bare_cli("--version", url=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"usersctl {usersctl.__version__}\n"
    # python -m usersctl is the same program.
    module = run_module("--version")
    assert (module.returncode, module.stdout) == (0, result.stdout)


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_root_help_lists_commands_and_exit_codes(bare_cli: Cli, flag: str) -> None:
    result = bare_cli(flag, url=False)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    for command in registered_commands():
        assert command in text
    for option in (
        "--database-url",
        "-d",
        "--connect-timeout",
        "--version",
        "USERSCTL_DATABASE_URL",
    ):
        assert option in text
    for code in (
        "0 success",
        "1 unexpected failure",
        "2 usage or invalid input",
        "3 user not found",
        "4 conflict",
        "5 database problem",
    ):
        assert code in text


def test_usersctl_alone_prints_help(bare_cli: Cli) -> None:
    result = bare_cli(url=False)
    # Click's convention: help on stderr and exit 2, as for any other usage error.
    assert result.exit_code == 2, result.output
    assert "Usage: usersctl" in result.output
    assert "Commands" in result.output
    assert "create-user" in result.output


@pytest.mark.parametrize("command", registered_commands())
def test_every_command_has_help_with_an_example(bare_cli: Cli, command: str) -> None:
    for flag in ("-h", "--help"):
        result = bare_cli(command, flag, url=False)
        assert result.exit_code == 0, result.output
        assert f"Usage: usersctl {command}" in result.stdout
        assert "Example:" in result.stdout, f"{command} --help has no example"
        # The example paragraph (up to the next blank line) shows this very command.
        examples = result.stdout.split("Example:", 1)[1].split("\n\n", 1)[0]
        assert f"usersctl {command}" in examples, examples


# Shell completion, through the protocol the shell scripts use -------------------------------


def complete(usersctl_anywhere: Usersctl, words: str, **env: str) -> tuple[list[str], str]:
    """What bash would be offered for the last word of ``words``, and what went to stderr."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = usersctl_anywhere(
        url=False,
        env={
            "_USERSCTL_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
            **env,
        },
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split(), result.stderr


def test_completion_offers_at_most_50_matching_emails(
    db: Database, usersctl_anywhere: Usersctl
) -> None:
    db.seed(*(f"user{n:02}@example.com" for n in range(60)), "other@example.com")
    env = {"USERSCTL_DATABASE_URL": db.url}

    offered, errors = complete(usersctl_anywhere, "usersctl show-user user", **env)
    assert offered == [f"user{n:02}@example.com" for n in range(50)]
    assert errors == ""

    # -d on the command line is used too, for any of several users; emails match in any case,
    # and what was typed is kept (usersctl finds users in any case).
    words = f"usersctl -d {db.url} delete-user user00@example.com OTH"
    offered, _ = complete(usersctl_anywhere, words)
    assert offered == ["OTHer@example.com"]


def test_completion_is_silent_when_the_database_is_unreachable(
    usersctl_anywhere: Usersctl, silent_server: int, tmp_path: Path
) -> None:
    missing_file = tmp_path / "missing.db"
    for url in (
        "postgresql://postgres:s3cretpw@127.0.0.1:1/nothing",
        f"postgresql://postgres:s3cretpw@127.0.0.1:{silent_server}/nothing",
        f"sqlite:///{missing_file}",
    ):
        started = time.monotonic()
        offered, errors = complete(
            usersctl_anywhere, "usersctl show-user a", USERSCTL_DATABASE_URL=url
        )
        assert (offered, errors) == ([], ""), url
        assert time.monotonic() - started < 10, url
    assert not missing_file.exists()
