"""Case beyond ASCII: `Ärger@` and `ärger@` are one address on SQLite as on PostgreSQL.

SQLite's lower() folds A to Z only, so its unique lower(email) index lets both in; usersctl
compares them as PostgreSQL's lower() does (in a UTF-8 locale) in every command of its own,
and doctor reports the duplicates that the app's connections can still make.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from harness import is_sqlite, seed_hash

if TYPE_CHECKING:
    from harness import Cli, Database, Usersctl

PASSWORD = "unicode case correct horse"


def created(cli: Cli | Usersctl, email: str) -> None:
    cli.ok("create-user", email, "--password-stdin", input=PASSWORD + "\n")


def test_an_address_in_other_case_beyond_ascii_is_taken(
    usersctl: Usersctl, cli: Cli, db: Database
) -> None:
    # Create, through the installed entry point (the rest in-process)
    created(usersctl, "Ärger@example.com")
    # The same address, its Ä lowercased: refused as an ASCII duplicate is, naming the stored one
    message = cli.fails(
        4, "create-user", "ärger@example.com", "--password-stdin", input=PASSWORD + "\n"
    )
    assert message == "Error: a user with email 'Ärger@example.com' already exists"
    assert db.emails() == ["Ärger@example.com"]
    # With --if-not-exists it is the existing user, unchanged
    unchanged = json.loads(
        cli.ok(
            "create-user",
            "ÄRGER@example.com",
            "--if-not-exists",
            "--generate-password",
            "-o",
            "json",
        ).stdout
    )
    assert (unchanged["email"], unchanged["status"]) == ("Ärger@example.com", "unchanged")
    # Another user may not take it by update-user either
    created(cli, "bob@example.com")
    message = cli.fails(4, "update-user", "bob@example.com", "--email", "ÄRGER@example.com")
    assert message == "Error: a user with email 'ÄRGER@example.com' already exists"
    # İ lowers to an ASCII i in PostgreSQL's lower(), and here: it is ilker's address
    db.seed("ilker@example.com")
    cli.fails(4, "create-user", "İLKER@example.com", "--generate-password")
    assert db.emails() == ["bob@example.com", "ilker@example.com", "Ärger@example.com"]


def test_the_user_is_found_in_any_case_beyond_ascii(cli: Cli, db: Database) -> None:
    db.seed("Ärger@example.com", is_verified=True)
    db.seed("JÖRG@example.com", "joerg@example.com", "zoë@example.com")
    # show-user, in a case the address is not stored in
    shown = json.loads(cli.ok("show-user", "ärger@example.com", "-o", "json").stdout)
    assert shown["email"] == "Ärger@example.com"
    # list-users --search, in either direction
    listed = cli.ok("list-users", "--search", "örg", "-o", "json")
    assert [user["email"] for user in json.loads(listed.stdout)] == ["JÖRG@example.com"]
    listed = cli.ok("list-users", "--search", "ZOË", "-o", "json")
    assert [user["email"] for user in json.loads(listed.stdout)] == ["zoë@example.com"]
    # update-user: changing only the case of one's own address keeps it verified
    cli.ok("update-user", "äRGER@example.com", "--email", "ärger@example.com")
    assert db.user("ärger@example.com")["email"] == "ärger@example.com"
    assert db.flag("ärger@example.com", "is_verified") is True
    # deactivate-user, delete-user
    cli.ok("deactivate-user", "jörg@EXAMPLE.com")
    assert db.flag("JÖRG@example.com", "is_active") is False
    cli.ok("delete-user", "ZOË@example.com", "--yes")
    assert db.emails() == ["joerg@example.com", "JÖRG@example.com", "ärger@example.com"]


def test_an_import_refuses_a_pair_in_the_file_and_a_clash_with_a_user(
    cli: Cli, db: Database
) -> None:
    db.seed("Ärger@example.com")
    hashed = seed_hash()

    def file_of(*emails: str) -> str:
        path = cli.cwd / "users.jsonl"  # a file: its hashes are written while read
        path.write_text(
            "".join(json.dumps({"email": e, "hashed_password": hashed}) + "\n" for e in emails)
        )
        return str(path)

    # Two rows of the file, differing only in the case of Ö
    message = cli.fails(4, "import-users", file_of("ZÖE@example.com", "zöe@example.com"))
    assert "line 2: zöe@example.com is also on line 1" in message
    # A row that is an existing user's address: hashes from a file (written as they are read)
    # and from a pipe (written at once), and plaintext passwords (looked up before hashing)
    message = cli.fails(4, "import-users", file_of("new@example.com", "ärger@example.com"))
    assert message.endswith("line 2: ärger@example.com already exists")
    piped = (cli.cwd / "users.jsonl").read_text()
    message = cli.fails(4, "import-users", "-", "--format", "jsonl", input=piped)
    assert message.endswith("line 2: ärger@example.com already exists")
    rows = f"email,password\nnew@example.com,{PASSWORD}\nÄRGER@example.com,{PASSWORD}\n"
    message = cli.fails(4, "import-users", "-", "--format", "csv", input=rows)
    assert message.endswith("line 3: ÄRGER@example.com already exists")
    assert db.emails() == ["Ärger@example.com"]
    # skip keeps the user; update gives it the row's address, in the row's case
    skipped = cli.ok(
        "import-users", file_of("new@example.com", "ärger@example.com"), "--on-conflict", "skip"
    )
    assert "created         1" in skipped.stdout and "skipped         1" in skipped.stdout
    before = db.user("Ärger@example.com")["id"]
    cli.ok("import-users", file_of("ärger@example.com"), "--on-conflict", "update")
    assert db.emails() == ["new@example.com", "ärger@example.com"]
    assert db.user("ärger@example.com")["id"] == before


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_doctor_reports_duplicates_that_sqlite_let_in(cli: Cli, db: Database) -> None:
    # The app's connections have no usersctl_lower(): SQLite's index takes both, as the app's
    # registration would (PostgreSQL's index refuses the second).
    db.seed("Ärger@example.com", "ärger@example.com", "alice@example.com")
    report = cli("doctor", "-o", "json")
    assert report.returncode == 6, report.stderr
    checks = {check["check"]: check for check in json.loads(report.stdout)["checks"]}
    duplicates = checks["case duplicates"]
    assert duplicates["status"] == "fail"
    assert duplicates["detail"].startswith(
        "1 address(es) used by 2 users differing only in case: 1 of them only in letters beyond "
        "ASCII, which SQLite's lower() (and so its index and the app's login) tells apart"
    )
    assert duplicates["items"] == ["Ärger@example.com = ärger@example.com"]
    assert checks["email index"]["status"] == "ok"
    # Named in another case the address is ambiguous (exit 4); named exactly, each is found
    message = cli.fails(4, "show-user", "ÄRGER@example.com")
    assert "2 users have the address 'ÄRGER@example.com' in different case" in message
    shown = json.loads(cli.ok("show-user", "ärger@example.com", "-o", "json").stdout)
    assert shown["email"] == "ärger@example.com"
    cli.fails(4, "create-user", "ÄRGER@example.com", "--generate-password")
    # Resolved, doctor passes
    cli.ok("delete-user", "ärger@example.com", "--yes")
    cli.ok("doctor")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_duplicates_beyond_ascii_do_not_block_sqlites_index(cli: Cli, db: Database) -> None:
    db.execute('DROP INDEX "ix_user_email_lower"')
    db.seed("Ärger@example.com", "ärger@example.com")
    report = cli("doctor", "--fix", "-o", "json")
    checks = {check["check"]: check for check in json.loads(report.stdout)["checks"]}
    # SQLite's lower() tells them apart: its index can be built, and is
    assert checks["email index"]["status"] == "fixed", checks["email index"]
    assert checks["case duplicates"]["status"] == "fail"
    assert report.returncode == 6
    assert db.count() == 2


def test_the_app_connections_need_nothing_of_usersctls(cli: Cli, db: Database) -> None:
    # Nothing in the file calls usersctl_lower(): a plain connection (the app's) still writes.
    created(cli, "Ärger@example.com")
    if is_sqlite(db.url):
        db.seed("ärger@example.com")  # what the app's own registration can do on SQLite
        assert db.count() == 2
    else:
        with pytest.raises(Exception, match=r"(?i)unique|duplicate entry"):  # MySQL says the latter
            db.seed("ärger@example.com")
        assert db.count() == 1
