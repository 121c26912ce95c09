"""-q/--quiet and USERSCTL_QUIET=1: no informational lines on stderr (changes, footers, counts),
but errors, warnings and a generated password all the same. Run through the installed entry
point."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl


def test_quiet_silences_what_changed_and_footers(cli: Cli, db: Database) -> None:
    db.seed("admin@example.com", is_superuser=True)
    db.seed("alice@example.com")
    loud = cli.ok("update-user", "alice@example.com", "--verified")
    assert loud.stderr == "is_verified: false -> true\n"
    quiet = cli.ok("-q", "update-user", "alice@example.com", "--superuser", "-o", "json")
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout)["is_superuser"] is True
    assert db.flag("alice@example.com", "is_superuser") is True
    for args in (["--quiet", "list-users"], ["-q", "export-users", "-"]):
        result = cli.ok(*args)
        assert result.stderr == "", args
        assert "alice@example.com" in result.stdout
    env = {"USERSCTL_QUIET": "1"}
    assert cli.ok("list-users", env=env).stderr == ""
    assert cli.ok("export-users", "-", env=env).stderr == ""
    assert cli.ok("list-users", env={"USERSCTL_QUIET": "0"}).stderr.endswith("users.\n")
    wrong = cli("list-users", env={"USERSCTL_QUIET": "perhaps"})
    assert wrong.returncode == 2
    assert "Error: Invalid value for '--quiet' / '-q' (env var: 'USERSCTL_QUIET')" in wrong.stderr


# Output, the same whatever the database: on SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_quiet_keeps_errors_warnings_and_a_generated_password(
    usersctl: Usersctl, db: Database
) -> None:
    db.seed("alice@example.com")
    # Errors.
    error = usersctl.fails(3, "-q", "show-user", "nobody@example.com")
    assert error == "Error: no user 'nobody@example.com'"
    # A generated password is the output itself.
    made = usersctl.ok("-q", "create-user", "bob@example.com", "--generate-password", "-o", "json")
    assert made.stderr == ""
    assert len(json.loads(made.stdout)["password"]) >= 16
    # Warnings.
    weak = usersctl.ok(
        "-q",
        "create-user",
        "carol@example.com",
        "--password-stdin",
        "--allow-weak-password",
        input="pw\n",
        env={"USERSCTL_QUIET": "1"},
    )
    assert weak.stderr.startswith("Warning: weak password accepted (--allow-weak-password)")
    assert db.count() == 3
