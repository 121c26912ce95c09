"""The built-in password policy: create-user, set-password and import-users refuse weak
passwords (exit 2, Django's words, never the password), unless --allow-weak-password or a person
at the terminal says yes; generated passwords pass; verify-password does not apply it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from terminal import type_hidden
from usersctl.password_policy import password_problems
from usersctl.passwords import hash_password, verify_password

if TYPE_CHECKING:
    from tests.cli.conftest import Cli, Database, Usersctl

TOO_SHORT = "This password is too short. It must contain at least 8 characters."
NUMERIC = "This password is entirely numeric."
SIMILAR = "The password is too similar to the email address."
COMMON = "This password is too common."


@pytest.mark.parametrize(
    ("password", "email", "reasons"),
    [
        ("pw", "ann@example.com", [TOO_SHORT]),
        ("12345678", "ann@example.com", [NUMERIC, COMMON]),
        ("48213907", "ann@example.com", [NUMERIC]),
        ("password1", "ann@example.com", [COMMON]),
        ("PassWord1", "ann@example.com", [COMMON]),
        ("annabelle@example.com", "annabelle@example.com", [SIMILAR]),
        ("annabelle1", "annabelle@example.com", [SIMILAR]),
        ("correct horse battery staple", "ann@example.com", []),
        ("ann likes long walks", "ann@example.com", []),  # a short part is not compared
    ],
)
def test_policy_reasons_read_like_djangos_validators(
    password: str, email: str, reasons: list[str]
) -> None:
    assert password_problems(password, email) == reasons


def test_create_user_refuses_a_weak_password_and_writes_nothing(cli: Cli, db: Database) -> None:
    message = cli.fails(2, "create-user", "ann@example.com", "--password-stdin", input="pw\n")
    assert TOO_SHORT in message
    assert "--allow-weak-password" in message
    assert "'pw'" not in message
    message = cli.fails(2, "create-user", "ann@example.com", "--password-stdin", input="12345678\n")
    assert NUMERIC in message and COMMON in message
    assert "12345678" not in message
    assert db.count() == 0


def test_allow_weak_password_bypasses_the_policy_and_says_so(cli: Cli, db: Database) -> None:
    result = cli.ok(
        "create-user", "ann@example.com", "--password-stdin", "--allow-weak-password", input="pw\n"
    )
    assert "Warning: weak password accepted (--allow-weak-password)" in result.stderr
    assert TOO_SHORT in result.stderr
    assert verify_password("pw", db.stored_hash("ann@example.com"))

    # verify-password checks the stored password; it does not judge it
    check = cli("verify-password", "ann@example.com", "--password-stdin", input="pw\n")
    assert check.exit_code == 0, check.output

    # a strong password is accepted without a word
    strong = cli.ok(
        "create-user", "bo@example.com", "--password-stdin", input="tangerine orbit 42\n"
    )
    assert "Warning" not in strong.stderr


def test_generated_passwords_always_pass(cli: Cli, db: Database) -> None:
    created = cli.json("create-user", "gen@example.com", "--generate-password")
    assert password_problems(created["password"], "gen@example.com") == []
    result = cli.ok("set-password", "gen@example.com", "--generate-password")
    assert "Warning" not in result.stderr


def test_set_password_checks_against_the_users_email_also_by_id(cli: Cli, db: Database) -> None:
    (user,) = db.seed("annabelle@example.com")
    before = db.stored_hash("annabelle@example.com")
    message = cli.fails(
        2, "set-password", str(user["id"]), "--password-stdin", input="annabelle1\n"
    )
    assert SIMILAR in message
    message = cli.fails(
        2, "set-password", "annabelle@example.com", "--password-stdin", input="iloveyou\n"
    )
    assert COMMON in message
    assert db.stored_hash("annabelle@example.com") == before
    cli.ok(
        "set-password",
        str(user["id"]),
        "--password-stdin",
        "--allow-weak-password",
        input="annabelle1\n",
    )
    assert verify_password("annabelle1", db.stored_hash("annabelle@example.com"))


def test_import_reports_every_weak_row_with_its_line_before_hashing(
    cli: Cli, db: Database, tmp_path: Path
) -> None:
    rows = [
        {"email": "fine@example.com", "password": "a sturdy passphrase"},
        {"email": "short@example.com", "password": "pw"},
        # a hash is taken as it is: the policy judges only plaintext
        {"email": "hashed@example.com", "hashed_password": hash_password("pw")},
        {"email": "common@example.com", "password": "password1"},
        {"email": "carl.jensen@example.com", "password": "carl.jensen"},
    ]
    path = tmp_path / "users.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    message = cli.fails(2, "import-users", str(path))
    assert "3 rows are invalid, nothing was written" in message
    assert f"line 2: password is too weak: {TOO_SHORT}" in message
    assert f"line 4: password is too weak: {COMMON}" in message
    assert f"line 5: password is too weak: {SIMILAR}" in message
    for row in rows:
        if "password" in row:
            assert f"'{row['password']}'" not in message
    assert "password1" not in message
    assert db.count() == 0

    result = cli.ok("import-users", str(path), "--allow-weak-password", "-o", "json")
    assert json.loads(result.stdout)["created"] == 5
    assert "not checked against the password policy" in result.stderr
    assert verify_password("pw", db.stored_hash("short@example.com"))


#: The prompt is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_person_at_the_terminal_may_accept_a_weak_password(spawn: Any, db: Database) -> None:
    # Refused at the question: nothing is created, exit 2 with the reasons
    child = spawn("create-user", "weak@example.com")
    child.expect("Password:")
    type_hidden(child, "pw")
    child.expect("Repeat for confirmation:")
    type_hidden(child, "pw")
    child.expect("too short")
    child.expect(r"Bypass password validation and use it anyway\? \[y/N\]")
    child.sendline("n")
    child.expect("Error: the password is too weak")
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 2
    assert db.count() == 0

    # Accepted at the question: created, and said so
    child = spawn("create-user", "weak@example.com", "-o", "json")
    child.expect("Password:")
    type_hidden(child, "pw")
    child.expect("Repeat for confirmation:")
    type_hidden(child, "pw")
    child.expect(r"\[y/N\]")
    child.sendline("y")
    child.expect("weak password accepted at the prompt")
    child.expect('"status": "created"')
    child.expect(pexpect_eof())
    child.close()
    assert child.exitstatus == 0
    assert verify_password("pw", db.stored_hash("weak@example.com"))


def test_without_a_terminal_the_entry_point_refuses_with_exit_2(
    usersctl: Usersctl, database_at: type[Database]
) -> None:
    usersctl.ok("init-db")
    message = usersctl.fails(
        2, "create-user", "ann@example.com", "--password-stdin", input="qwertyuiop\n"
    )
    assert COMMON in message
    assert database_at(usersctl.url or "").count() == 0


def pexpect_eof() -> Any:
    import pexpect

    return pexpect.EOF
