"""Root options after the command name (usersctl list-users -d URL), as gh and kubectl take them:
every root option, the same as before the name; the command's own options and their values, and
everything after --, stay the command's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import typer

from harness import invoke

if TYPE_CHECKING:
    from harness import Database, Usersctl


def option_names(params: list[Any]) -> set[str]:
    return {
        name
        for param in params
        if getattr(param, "param_type_name", "") == "option"
        for name in (*param.opts, *param.secondary_opts)
    }


def root_options() -> set[str]:
    from usersctl.commands import app

    return option_names(typer.main.get_command(app).params)


def test_no_command_has_an_option_named_like_a_root_option() -> None:
    """Else ``usersctl COMMAND --that-option`` would be ambiguous: the command would win."""
    from usersctl.commands import COMMANDS, build_command

    root = root_options()
    assert {"-d", "--database-url", "-q", "--quiet", "--env-file"} <= root
    for name in COMMANDS:
        shared = option_names(build_command(name).params) & root
        assert not shared, f"{name} has an option named like a root option: {sorted(shared)}"


#: A value for each root option (None: a flag). Shell completion's options are left out.
ROOT_VALUES: dict[str, str | None] = {
    "--connect-timeout": "5",
    "--model": "no_such_module.models:User",
    "--table": "user",
    "--hash-scheme": "bcrypt",
    "--password-helper": "no_such_module:helper",
    "--user-manager": "no_such_module:get_user_manager",
    "-q": None,
    "--quiet": None,
    "--version": None,
}


def test_every_root_option_means_the_same_after_the_command(url: str, tmp_path: Path) -> None:
    database_url = url
    env_file = tmp_path / "app.env"
    env_file.write_text(f"USERSCTL_DATABASE_URL={database_url}\n")
    values = {
        **ROOT_VALUES,
        "-d": database_url,
        "--database-url": database_url,
        "--env-file": str(env_file),
    }
    completion = {"--install-completion", "--show-completion"}
    assert set(values) == root_options() - {"-h", "--help"} - completion
    for option, value in values.items():
        given = [option] if value is None else [option, value]
        url = [] if option in ("-d", "--database-url", "--env-file") else ["-d", database_url]
        before = invoke([*url, *given, "list-users", "-o", "json"])
        after = invoke(["list-users", *given, "-o", "json", *url])
        assert before.exit_code == after.exit_code, (option, before.output, after.output)
        assert (before.stdout, before.stderr) == (after.stdout, after.stderr), option
        assert "No such option" not in after.stderr, option
        if value is not None and option.startswith("--"):
            joined = invoke(["list-users", f"{option}={value}", "-o", "json", *url])
            assert (joined.exit_code, joined.stdout) == (before.exit_code, before.stdout), option


#: Where an option stands on the command line is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_database_url_and_quiet_after_the_command(
    usersctl_anywhere: Usersctl, db: Database
) -> None:
    db.seed("alice@example.com")
    result = usersctl_anywhere.ok("list-users", "-d", db.url, "-o", "json")
    assert [row["email"] for row in json.loads(result.stdout)] == ["alice@example.com"]
    assert result.stderr == "1 shown of 1 matching user.\n"
    shown = usersctl_anywhere.ok("show-user", "alice@example.com", f"--database-url={db.url}")
    assert "alice@example.com" in shown.stdout
    # -q of the root, given to the command.
    quiet = usersctl_anywhere.ok(
        "update-user", "alice@example.com", "--verified", "-q", "-d", db.url
    )
    assert quiet.stderr == ""
    assert db.flag("alice@example.com", "is_verified") is True
    # The later of two URLs counts, as for any option given twice.
    both = usersctl_anywhere.ok("-d", "sqlite:///nowhere/none.db", "list-users", "-d", db.url)
    assert "alice@example.com" in both.stdout


#: Where an option stands on the command line is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_values_that_look_like_root_options_stay_the_commands(
    usersctl_anywhere: Usersctl, db: Database
) -> None:
    db.seed("alice@example.com")
    # --search takes the next word, whatever it looks like: a search for "-q", not quiet.
    searched = usersctl_anywhere.ok("list-users", "--search", "-q", "-d", db.url)
    assert searched.stderr == "0 shown of 0 matching users.\n"
    # After --, nothing is a root option: "-d" is the user to show.
    error = usersctl_anywhere.fails(2, "show-user", "-d", db.url, "--", "-d")
    assert error == "Error: '-d' is neither an email address nor a valid UUID id"
    # A root option without its value is refused, not given the command name.
    result = usersctl_anywhere("show-user", "alice@example.com", "-d")
    assert result.returncode == 2
    assert result.stderr.endswith("Error: Option '-d' requires an argument.\n")


@pytest.mark.parametrize("command", ["list-users", "export-users"])
def test_help_after_the_command_is_the_commands(usersctl_anywhere: Usersctl, command: str) -> None:
    result = usersctl_anywhere.ok(command, "-d", "sqlite:///x.db", "--help", url=False)
    assert result.stdout.startswith(f"Usage: usersctl {command} [OPTIONS]")
