"""Secrets: every command run with known secrets, and every byte it printed searched for them.

The secrets: passwords given on stdin and in files, every password hash the database ever held,
and the password in the database URL (PostgreSQL: a role of its own with a password). Only
``--generate-password`` may print a password, the one it generated, once.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness import cli, execute, is_mysql, is_sqlite, one_error_line, rows, run, stored_hash

#: Argon2 at its lowest cost in-process (harness ``quick_hashing``): what these tests test is not
#: the hash's cost, which tests/test_password_hashing.py covers.
pytestmark = pytest.mark.usefixtures("quick_hashing")

URL_SECRET = "Url-Secret-7f3a9c"
STDIN_SECRET = "stdin secret 4b1e "  # the trailing space is part of it
FILE_SECRET = "file-secret-8d2c"
NEW_SECRET = "new-secret-5e6f"
IMPORT_SECRET = "import-secret-0a9b"
WRONG_SECRET = "wrong-secret-3c4d"


@pytest.fixture
def secret_url(url: str) -> Iterator[str]:
    """The test database through a URL that carries a password. On PostgreSQL, a role of its own
    with that password (the local server trusts it anyway, but the URL holds the secret); on
    MySQL/MariaDB an account of its own."""
    if is_sqlite(url):
        yield url
        return
    role = f"usersctl_secret_{uuid.uuid4().hex[:8]}"
    if is_mysql(url):  # an account of its own, with every right on the test database
        database = make_url(url).database
        create = [
            f"CREATE USER '{role}'@'%' IDENTIFIED BY '{URL_SECRET}'",
            f"GRANT ALL ON `{database}`.* TO '{role}'@'%'",
        ]
        drop = [f"DROP USER '{role}'@'%'"]
    else:
        create = [
            f"CREATE ROLE {role} LOGIN PASSWORD '{URL_SECRET}'",
            f"GRANT ALL ON SCHEMA public TO {role}",
            f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
        ]
        drop = [f"DROP OWNED BY {role}", f"DROP ROLE {role}"]
    execute(url, *create)
    try:
        yield (
            make_url(url)
            .set(username=role, password=URL_SECRET)
            .render_as_string(hide_password=False)
        )
    finally:
        execute(url, *drop)


@dataclass
class Transcript:
    """Everything the commands printed, and every secret they must not have printed."""

    url: str
    admin_url: str
    outputs: list[tuple[list[str], str]] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    generated: list[str] = field(default_factory=list)

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> Any:
        result = cli(self.url, *args, input=input, env={"USERSCTL_DEBUG": "1"})
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
        assert result.exit_code == code, (args, result.output)
        if code:
            one_error_line(result.exit_code, code, result.stdout, result.stderr)
        self.outputs.append((list(args), result.stdout + result.stderr))
        self.collect_hashes()
        return result

    def collect_hashes(self) -> None:
        self.secrets.update(row["hashed_password"] for row in rows(self.admin_url))

    def generated_password(self, result: Any) -> str:
        password: str = json.loads(result.stdout)["password"]
        self.generated.append(password)
        return password

    def check(self, *extra: str) -> None:
        """No output holds a secret; each generated password is printed exactly once."""
        secrets = self.secrets | {URL_SECRET, STDIN_SECRET, FILE_SECRET, NEW_SECRET}
        secrets |= {IMPORT_SECRET, WRONG_SECRET, stored_hash()}
        everything = "\n".join(output for _, output in self.outputs) + "\n".join(extra)
        for args, output in self.outputs:
            for secret in secrets:
                assert secret not in output, (args, secret, output)
            assert "[parameters" not in output and "INSERT INTO" not in output, output
        for password in self.generated:
            assert everything.count(password) == 1, password


def test_no_command_prints_a_secret(
    url: str, secret_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    say = Transcript(secret_url, url)
    password_file = tmp_path / "password"
    password_file.write_text(FILE_SECRET + "\n")
    password_file.chmod(0o600)

    say("init-db")
    say("create-user", "alice@example.com", "--password-stdin", "-o", "json", input=STDIN_SECRET)
    say("create-user", "bob@example.com", "--password-file", str(password_file))
    carol = say(
        "create-user", "carol@example.com", "--superuser", "--generate-password", "-o", "json"
    )
    say.generated_password(carol)
    for output in ("table", "csv"):
        say("list-users", "-o", output)
        say("show-user", "alice@example.com", "-o", output)
    say("update-user", "alice@example.com", "--email", "alice2@example.com", "--verified")
    say("deactivate-user", "bob@example.com")
    say("activate-user", "bob@example.com")
    say("set-password", "alice2@example.com", "--password-stdin", input=NEW_SECRET + "\n")
    dave = say("set-password", "bob@example.com", "--generate-password", "-o", "json")
    say.generated_password(dave)
    say("verify-password", "alice2@example.com", "--password-stdin", "--rehash", input=NEW_SECRET)
    say("verify-password", "alice2@example.com", "--password-stdin", input=WRONG_SECRET, code=6)
    say("verify-password", "carol@example.com", "--password-file", str(password_file), code=6)
    say("export-users", "-")
    say("export-users", "-", "-o", "csv")
    say("export-users", str(tmp_path / "backup.jsonl"), "--include-hashes")  # to the file only
    import_file = tmp_path / "import.jsonl"
    import_file.write_text(
        json.dumps({"email": "erin@example.com", "password": IMPORT_SECRET})
        + "\n"
        + json.dumps({"email": "frank@example.com", "hashed_password": stored_hash()})
        + "\n"
    )
    say("import-users", str(import_file), "-o", "json")
    say("import-users", str(import_file), "--dry-run", "--on-conflict", "update")
    say("doctor", "-o", "json")
    say("unlink-oauth", "alice2@example.com", "github", code=3)  # no OAuth table
    say("delete-user", "frank@example.com", "--yes")
    # Errors, which could carry a value: a conflict, an unknown user, an import conflict.
    say("create-user", "ALICE2@example.com", "--password-stdin", input=STDIN_SECRET, code=4)
    say("show-user", "nobody@example.com", code=3)
    say("import-users", str(import_file), code=4)
    say.check(caplog.text)


def _refuse_writes(url: str) -> None:
    """A trigger that fails every insert and update of a user, after the row with its hash has
    been sent to the database as a parameter of the statement."""
    if is_sqlite(url):
        execute(
            url,
            'CREATE TRIGGER refuse_insert BEFORE INSERT ON "user" '
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END",
            'CREATE TRIGGER refuse_update BEFORE UPDATE ON "user" '
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END",
        )
    elif is_mysql(url):
        execute(
            url,
            *(
                f'CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON "user" FOR EACH ROW '
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused by trigger'"
                for event in ("INSERT", "UPDATE")
            ),
        )
    else:
        execute(
            url,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by trigger'; END $$",
            'CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "user" '
            "FOR EACH ROW EXECUTE FUNCTION refuse()",
        )


def test_database_errors_do_not_show_the_parameters_that_carry_secrets(
    url: str, secret_url: str, tmp_path: Path
) -> None:
    say = Transcript(secret_url, url)
    say("create-user", "alice@example.com", "--password-stdin", input=STDIN_SECRET)
    _refuse_writes(url)
    for args, text in (
        (["create-user", "bob@example.com", "--password-stdin"], FILE_SECRET),
        (["set-password", "alice@example.com", "--password-stdin"], NEW_SECRET),
        (["verify-password", "alice@example.com", "--password-stdin"], STDIN_SECRET),
    ):
        result = say(*args, input=text, code=0 if args[0] == "verify-password" else 5)
        if result.exit_code == 5:
            assert "refused by trigger" in result.stderr, result.stderr
    # An import carrying hashes and passwords; and a unique violation whose detail (on
    # PostgreSQL, "Key (hashed_password)=(...) already exists") holds the hash.
    import_file = tmp_path / "import.jsonl"
    import_file.write_text(
        json.dumps({"email": "carol@example.com", "password": IMPORT_SECRET})
        + "\n"
        + json.dumps({"email": "dave@example.com", "hashed_password": stored_hash()})
        + "\n"
    )
    say("import-users", str(import_file), code=5)
    _allow_writes(url)
    execute(url, 'CREATE UNIQUE INDEX ix_user_hash ON "user" (hashed_password)')
    twins = tmp_path / "twins.jsonl"
    twins.write_text(
        "".join(
            json.dumps({"email": f"twin{n}@example.com", "hashed_password": stored_hash()}) + "\n"
            for n in range(2)
        )
    )
    say("import-users", str(twins), code=4)  # a unique constraint: a conflict, named in words
    say.check()


def _allow_writes(url: str) -> None:
    if is_sqlite(url) or is_mysql(url):
        execute(url, "DROP TRIGGER refuse_insert", "DROP TRIGGER refuse_update")
    else:
        execute(url, 'DROP TRIGGER refuse ON "user"', "DROP FUNCTION refuse()")


def test_only_generate_password_prints_a_password_once_through_the_entry_point(
    url: str, secret_url: str
) -> None:
    created = run(
        secret_url, "create-user", "admin@example.com", "--generate-password", "-o", "json"
    )
    assert created.returncode == 0, created.stderr
    password = json.loads(created.stdout)["password"]
    assert (created.stdout + created.stderr).count(password) == 1
    assert URL_SECRET not in created.stdout + created.stderr
    # A failure through the entry point, with the URL in the environment: no URL password.
    failed = run(
        None,
        "create-user",
        "admin@example.com",
        "--password-stdin",
        input=STDIN_SECRET,
        env={"USERSCTL_DATABASE_URL": secret_url, "USERSCTL_DEBUG": "1"},
    )
    message = one_error_line(failed.returncode, 4, failed.stdout, failed.stderr)
    assert URL_SECRET not in message and STDIN_SECRET not in message
    # Help shows where the URL comes from, never the URL itself.
    helped = run(None, "--help", env={"USERSCTL_DATABASE_URL": secret_url})
    assert helped.returncode == 0 and URL_SECRET not in helped.stdout + helped.stderr


#: A file's permissions are checked before any database is reached: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_password_file_others_can_read_is_used_with_a_warning(url: str, tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(FILE_SECRET + "\n")
    for mode, warned in ((0o600, False), (0o400, False), (0o640, True), (0o644, True)):
        password_file.chmod(mode)
        result = cli(
            url, "verify-password", "nobody@example.com", "--password-file", str(password_file)
        )
        assert result.exit_code == 6, result.output
        warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
        assert bool(warning) is warned, (oct(mode), result.stderr)
        if warned:
            assert "readable by other users" in warning[0] and str(password_file) in warning[0]
        assert FILE_SECRET not in result.output
