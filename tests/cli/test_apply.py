"""apply: the users a file describes, planned (+ create, ~ update, = unchanged, - deactivate,
- delete) and carried out all or nothing; a second run writes nothing and hashes nothing. On
SQLite and PostgreSQL, with every effect read back with plain SQL."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest

from harness import PASSWORD, Cli, Database, Usersctl, sql

STRONG = "plum tractor velvet 41 orbit"
OTHER = "quiet lantern harbour 77 mosaic"


@pytest.fixture
def cli(empty_cli: Cli) -> Cli:
    """The database with FastAPI Users' user and access token tables (``db`` uses it too)."""
    empty_cli.ok("init-db", "--access-tokens")
    return empty_cli


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The plaintext passwords hashed, in order (the real hasher, counted)."""
    from usersctl.importing import checking

    seen: list[str] = []
    real = checking.hash_many

    def counted(passwords: Any, *args: Any, **kwargs: Any) -> Iterator[str]:
        seen.extend(passwords)
        return real(passwords, *args, **kwargs)

    monkeypatch.setattr(checking, "hash_many", counted)
    return seen


def refused(cli: Cli, code: int, *args: str) -> str:
    """Run an apply that is refused once its plan is shown: the plan on stdout, then exit
    ``code`` with one ``Error:`` line and no traceback. Returns that line."""
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert result.stdout.splitlines()[-1].startswith("Plan: "), result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def write(cli: Cli, name: str, text: str) -> str:
    (cli.cwd / name).write_text(text)
    return name


def verifies(password: str, hashed_password: str) -> bool:
    from usersctl.passwords import verify_password

    return verify_password(password, hashed_password)


def add_tokens(db: Database, email: str, *tokens: str) -> None:
    """Sessions of the user of ``email``, inserted with SQL as the app's DatabaseStrategy would."""
    for token in tokens:
        asyncio.run(
            sql(
                db.url,
                "INSERT INTO accesstoken (token, user_id, created_at) "
                'SELECT :token, id, CURRENT_TIMESTAMP FROM "user" WHERE email = :email',
                token=token,
                email=email,
            )
        )


def tokens(db: Database) -> list[str]:
    return sorted(row["token"] for row in db.query("SELECT token FROM accesstoken"))


def snapshot(db: Database) -> list[dict[str, Any]]:
    """Every user row as stored, and on PostgreSQL its xmin (which any UPDATE changes; MySQL and
    SQLite have nothing like it: there the values alone)."""
    extra = ", xmin::text AS row_version" if db.url.startswith("postgresql") else ""
    return db.query(f'SELECT *{extra} FROM "user" ORDER BY email')


TEAM = f"""\
- email: alice@example.com
  is_superuser: true
  password: {STRONG}
- email: bob@example.com
  is_verified: true
- email: Carol@Example.com
  is_verified: true
"""


def test_plan_apply_and_a_second_run_that_writes_nothing(
    cli: Cli, db: Database, hashed: list[str]
) -> None:
    # Carol exists, unverified; the file adds Alice (with a password) and Bob (without).
    (carol,) = db.seed("carol@example.com")
    write(cli, "team.yaml", TEAM)
    before = snapshot(db)

    # The plan, as a dry run: nothing written, one password hashed (the sample).
    dry = cli.ok("apply", "team.yaml", "--dry-run")
    assert dry.stdout == (
        "+ create alice@example.com\n"
        "    is_superuser: true\n"
        "    hashed_password: (hidden)\n"
        "+ create bob@example.com (password generated)\n"
        "    is_verified: true\n"
        "    hashed_password: (hidden)\n"
        f"~ update carol@example.com (id {carol['id']})\n"
        "    email: carol@example.com -> Carol@example.com\n"
        "    is_verified: false -> true\n"
        "Plan: would create 2, update 1, deactivate 0, delete 0; 0 unchanged.\n"
    )
    assert "Dry run: nothing was written." in dry.stderr
    assert snapshot(db) == before
    assert len(hashed) == 1

    # Applied: the plan, then Bob's generated password, once.
    hashed.clear()
    applied = cli.ok("apply", "team.yaml")
    plan, _, shown = applied.stdout.partition("Plan: will create 2, update 1")
    assert plan == dry.stdout.partition("Plan:")[0]
    (line,) = [line for line in shown.splitlines() if line.startswith("password for")]
    generated = line.removeprefix("password for bob@example.com: ")
    assert len(generated) >= 40
    assert "Applied: 2 created, 1 updated." in applied.stderr
    alice, bob, carol_now = (db.user(f"{name}@example.com") for name in ("alice", "bob", "carol"))
    assert (alice["is_superuser"], alice["is_active"], alice["is_verified"]) == (True, True, False)
    assert verifies(STRONG, alice["hashed_password"])
    assert bob["is_verified"] and verifies(generated, bob["hashed_password"])
    assert (carol_now["email"], carol_now["is_verified"]) == ("Carol@example.com", True)
    assert sorted(hashed) == sorted([STRONG, generated])

    # Again: every user unchanged, no password hashed, no row written (PostgreSQL: same xmin).
    hashed.clear()
    before = snapshot(db)
    again = cli.ok("apply", "team.yaml")
    assert again.stdout.splitlines()[-1] == (
        "Plan: will create 0, update 0, deactivate 0, delete 0; 3 unchanged."
    )
    assert [line[:2] for line in again.stdout.splitlines()[:-1]] == ["= "] * 3
    assert "Nothing to do" in again.stderr
    assert snapshot(db) == before
    assert hashed == []


def test_the_plan_as_data_and_the_exit_code_of_a_dry_run(cli: Cli, db: Database) -> None:
    (carol,) = db.seed("carol@example.com")
    write(
        cli,
        "users.jsonl",
        '{"email": "carol@example.com", "is_superuser": true}\n'
        f'{{"email": "dave@example.com", "password": "{STRONG}"}}\n',
    )
    result = cli("apply", "users.jsonl", "--dry-run", "--exit-code", "-o", "json")
    assert result.exit_code == 6, result.output
    assert json.loads(result.stdout) == [
        {
            "action": "update",
            "email": "carol@example.com",
            "id": str(carol["id"]),
            "changes": {"is_superuser": {"old": False, "new": True}},
        },
        {
            "action": "create",
            "email": "dave@example.com",
            "id": None,
            "changes": {
                "email": {"old": None, "new": "dave@example.com"},
                "hashed_password": {"old": None, "new": "(hidden)"},
            },
        },
    ]
    assert db.count() == 1 and not db.flag("carol@example.com", "is_superuser")

    applied = cli.json("apply", "users.jsonl")
    (dave,) = db.query("SELECT id FROM \"user\" WHERE email = 'dave@example.com'")
    assert [step["id"] for step in applied] == [str(carol["id"]), str(dave["id"])]
    assert "password" not in applied[1]  # given, not generated
    quiet = cli("apply", "users.jsonl", "--dry-run", "--exit-code", "-o", "json")
    assert quiet.exit_code == 0, quiet.output
    assert [step["action"] for step in json.loads(quiet.stdout)] == ["unchanged"] * 2
    assert cli.fails(2, "apply", "users.jsonl", "--exit-code") == (
        "Error: --exit-code goes with --dry-run (it says whether the plan is empty)"
    )


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "users.jsonl",
            '{"email": "=eve@example.com", "is_verified": true}\n{"email": "ann@example.com"}\n',
        ),
        ("users.csv", "email,is_verified\n'=eve@example.com,true\nann@example.com,\n"),
        (
            "users.json",
            '[{"email": "=eve@example.com", "is_verified": true}, {"email": "ann@example.com"}]',
        ),
        (
            "users.yml",
            "- email: =eve@example.com\n  is_verified: yes\n- {email: ann@example.com}\n",
        ),
    ],
)
def test_every_format_import_users_reads_and_yaml(
    cli: Cli, db: Database, name: str, text: str
) -> None:
    write(cli, name, text)
    result = cli.json("apply", name)
    assert [step["action"] for step in result] == ["create", "create"]
    assert db.emails() == ["=eve@example.com", "ann@example.com"]
    assert db.flag("=eve@example.com", "is_verified") and not db.flag(
        "ann@example.com", "is_verified"
    )
    passwords = {step["email"]: step["password"] for step in result}
    assert verifies(passwords["ann@example.com"], db.stored_hash("ann@example.com"))


def test_yaml_that_would_build_python_objects_is_refused(cli: Cli, db: Database) -> None:
    write(
        cli,
        "evil.yaml",
        "- email: a@example.com\n- !!python/object/apply:os.system ['touch owned']\n",
    )
    error = cli.fails(2, "apply", "evil.yaml")
    assert error.startswith("Error: 1 row is invalid, nothing was written: line 2: not valid YAML")
    assert "python/object" in error
    assert not (cli.cwd / "owned").exists()
    write(cli, "scalar.yaml", "just text\n")
    assert "expected a YAML list of users" in cli.fails(2, "apply", "scalar.yaml")
    assert db.count() == 0


def test_a_bad_row_anywhere_writes_nothing(cli: Cli, db: Database) -> None:
    db.seed("carol@example.com")
    before = snapshot(db)
    write(
        cli,
        "users.yaml",
        "- {email: carol@example.com, is_superuser: true}\n"
        "- {email: new@example.com}\n"
        "- {email: odd@example.com, is_active: maybe}\n",
    )
    error = cli.fails(2, "apply", "users.yaml", "--prune", "--yes")
    assert error.startswith("Error: 1 row is invalid, nothing was written: line 3: ")
    assert snapshot(db) == before


def test_an_address_given_twice_in_any_case_is_invalid(cli: Cli, db: Database) -> None:
    write(cli, "users.csv", "email\nAlice@example.com\nbob@example.com\nalice@EXAMPLE.com\n")
    error = cli.fails(2, "apply", "users.csv")
    assert error == (
        "Error: 1 row is invalid, nothing was written: line 4: alice@example.com is also on line 2"
    )
    assert db.count() == 0


def test_generated_passwords_to_an_owner_only_file_or_refused(cli: Cli, db: Database) -> None:
    write(cli, "users.yaml", "- email: ann@example.com\n- email: ben@example.com\n")
    assert cli.fails(2, "apply", "users.yaml", "--require-passwords") == (
        "Error: 2 rows are invalid, nothing was written: line 1: no password or hashed_password "
        "for a new user (--require-passwords); line 2: no password or hashed_password for a new "
        "user (--require-passwords)"
    )
    assert db.count() == 0

    os.umask(0o022)
    result = cli.ok("apply", "users.yaml", "--passwords-file", "secrets.jsonl")
    assert "password for" not in result.stdout
    secrets = cli.cwd / "secrets.jsonl"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in secrets.read_text().splitlines()]
    assert [line["email"] for line in lines] == ["ann@example.com", "ben@example.com"]
    for line in lines:
        assert verifies(line["password"], db.stored_hash(line["email"]))

    # The file is created, never overwritten: a second file of passwords must not replace it.
    write(cli, "more.yaml", "- email: cat@example.com\n")
    assert cli.fails(2, "apply", "more.yaml", "--passwords-file", "secrets.jsonl") == (
        "Error: --passwords-file secrets.jsonl exists; apply writes a new file only"
    )
    assert db.count() == 2 and len(secrets.read_text().splitlines()) == 2


def test_passwords_of_existing_users_change_only_with_update_passwords(
    cli: Cli, db: Database, hashed: list[str]
) -> None:
    db.seed("carol@example.com")
    add_tokens(db, "carol@example.com", "carol-1")
    stored = db.stored_hash("carol@example.com")
    write(cli, "users.yaml", f"- email: carol@example.com\n  password: {STRONG}\n")

    # Without --update-passwords, the given password is neither hashed nor checked.
    assert cli.ok("apply", "users.yaml").stdout.startswith("= unchanged carol@example.com")
    assert db.stored_hash("carol@example.com") == stored and hashed == []

    updated = cli.ok("apply", "users.yaml", "--update-passwords", "--keep-sessions")
    assert "    hashed_password: (hidden) -> (hidden)\n" in updated.stdout
    assert verifies(STRONG, db.stored_hash("carol@example.com"))
    assert tokens(db) == ["carol-1"]

    # The same password again is unchanged (checked against the hash, not hashed again).
    hashed.clear()
    again = cli.ok("apply", "users.yaml", "--update-passwords")
    assert again.stdout.startswith("= unchanged") and hashed == []

    # A new one ends the user's sessions.
    write(cli, "users.yaml", f"- email: carol@example.com\n  password: {OTHER}\n")
    cli.ok("apply", "users.yaml", "--update-passwords")
    assert verifies(OTHER, db.stored_hash("carol@example.com"))
    assert tokens(db) == []
    # PASSWORD, seeded, was never the one given.
    assert not verifies(PASSWORD, db.stored_hash("carol@example.com"))


def test_prune_deactivates_within_the_filters_and_ends_their_sessions(
    cli: Cli, db: Database
) -> None:
    db.seed("keep@old-corp.net", "gone@old-corp.net", "other@example.com")
    db.seed("was@old-corp.net", is_active=False)
    add_tokens(db, "gone@old-corp.net", "gone-1")
    add_tokens(db, "other@example.com", "other-1")
    write(cli, "old-corp.yaml", "- email: keep@old-corp.net\n")

    # Filters narrow pruning: without it they mean nothing.
    assert "give one of them" in cli.fails(
        2, "apply", "old-corp.yaml", "--email-domain", "old-corp.net"
    )
    # No terminal to ask on, no --yes: refused after the plan, nothing written.
    before = snapshot(db)
    refused = cli("apply", "old-corp.yaml", "--prune", "--email-domain", "old-corp.net")
    assert refused.exit_code == 2, refused.output
    assert "- deactivate gone@old-corp.net" in refused.stdout
    assert refused.stderr == (
        "Error: refusing to deactivate or delete 1 user(s) without confirmation: no terminal "
        "to ask on; pass --yes\n"
    )
    assert snapshot(db) == before
    piped = cli("apply", "-", "--format", "yaml", "--prune", input="- email: keep@old-corp.net\n")
    assert piped.exit_code == 2, piped.output
    assert "stdin holds the file, not an answer; pass --yes" in piped.stderr
    assert snapshot(db) == before

    result = cli.ok("apply", "old-corp.yaml", "--prune", "--email-domain", "old-corp.net", "-y")
    assert result.stdout.splitlines()[:2] == [
        "= unchanged keep@old-corp.net (id {})".format(db.user("keep@old-corp.net")["id"]),
        "- deactivate gone@old-corp.net (id {})".format(db.user("gone@old-corp.net")["id"]),
    ]
    assert db.emails("is_active") == ["keep@old-corp.net", "other@example.com"]
    assert tokens(db) == ["other-1"]
    assert "Revoked 1 access token(s)." in result.stderr


def test_prune_keeps_sessions_when_asked(cli: Cli, db: Database) -> None:
    db.seed("keep@example.com", "gone@example.com")
    add_tokens(db, "gone@example.com", "gone-1")
    write(cli, "users.yaml", "- email: keep@example.com\n")
    cli.ok("apply", "users.yaml", "--prune", "--yes", "--keep-sessions")
    assert db.emails("is_active") == ["keep@example.com"]
    assert tokens(db) == ["gone-1"]


def test_the_last_active_superuser_is_not_pruned_without_force(cli: Cli, db: Database) -> None:
    db.seed("admin@example.com", is_superuser=True)
    db.seed("bob@example.com")
    write(cli, "users.yaml", "- email: bob@example.com\n")
    before = snapshot(db)
    for prune in ("--prune", "--prune-delete"):
        error = refused(cli, 4, "apply", "users.yaml", prune, "--yes")
        assert "refusing to leave no active superuser" in error and "admin@example.com" in error
        assert snapshot(db) == before
    # Demoting the last one through the file is refused alike.
    write(cli, "demote.yaml", "- {email: admin@example.com, is_superuser: false}\n")
    assert "--force" in refused(cli, 4, "apply", "demote.yaml")
    cli.ok("apply", "users.yaml", "--prune", "--yes", "--force")
    assert db.emails("is_active") == ["bob@example.com"]


def test_prune_delete_follows_delete_users_rules_for_owned_rows(cli: Cli, db: Database) -> None:
    id_type = "UUID" if db.url.startswith("postgresql") else "CHAR(36)"
    db.execute(
        f'CREATE TABLE item (id INTEGER PRIMARY KEY, owner_id {id_type} REFERENCES "user" (id))',
        f"CREATE TABLE note (id INTEGER PRIMARY KEY, user_id {id_type} "
        'REFERENCES "user" (id) ON DELETE CASCADE)',
    )
    _, eve, mallory = db.seed("keep@example.com", "eve@example.com", "mallory@example.com")
    db.insert("item", {"id": 1, "owner_id": eve["id"]})
    db.insert("note", {"id": 1, "user_id": mallory["id"]}, {"id": 2, "user_id": mallory["id"]})
    write(cli, "users.yaml", "- email: keep@example.com\n")

    before = snapshot(db)
    error = refused(cli, 4, "apply", "users.yaml", "--prune-delete", "--yes")
    assert "item" in error and "eve@example.com" in error
    assert snapshot(db) == before and db.count("note") == 2

    db.execute("DELETE FROM item")
    result = cli.ok("apply", "users.yaml", "--prune-delete", "--yes")
    assert "- delete eve@example.com" in result.stdout
    assert "- delete mallory@example.com" in result.stdout
    assert db.emails() == ["keep@example.com"]
    assert db.count("note") == 0


def test_apply_through_the_installed_entry_point(usersctl: Usersctl, db: Database) -> None:
    usersctl.ok("init-db")
    db.seed("admin@example.com", is_superuser=True)
    db.seed("old@example.com")
    team = "- email: admin@example.com\n  is_superuser: true\n- email: new@example.com\n"
    plan = usersctl(
        "apply", "-", "--format", "yaml", "--prune", "--dry-run", "--exit-code", input=team
    )
    assert plan.returncode == 6, plan.stdout + plan.stderr
    assert "- deactivate old@example.com" in plan.stdout
    applied = usersctl.ok(
        "apply", "-", "--format", "yaml", "--prune", "--yes", "-o", "json", input=team
    )
    steps = {step["email"]: step for step in json.loads(applied.stdout)}
    assert steps["new@example.com"]["action"] == "create"
    assert verifies(steps["new@example.com"]["password"], db.stored_hash("new@example.com"))
    assert db.emails("is_active") == ["admin@example.com", "new@example.com"]
    again = usersctl(
        "apply", "-", "--format", "yaml", "--prune", "--dry-run", "--exit-code", input=team
    )
    assert again.returncode == 0, again.stdout + again.stderr


#: The question is the same for every database: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_plan_that_removes_users_asks_on_a_terminal(
    spawn: Any, db: Database, tmp_path: Any
) -> None:
    import pexpect

    db.seed("keep@example.com", "gone@example.com")
    (tmp_path / "users.yaml").write_text("- email: keep@example.com\n")
    answers = {"n": (1, ["gone@example.com", "keep@example.com"]), "y": (0, ["keep@example.com"])}
    for answer, (code, active) in answers.items():
        child = spawn("apply", "users.yaml", "--prune")
        child.expect(r"- deactivate gone@example.com")
        child.expect(r"Apply this plan, deactivating or deleting 1 user\(s\)\? \[y/N\]")
        child.sendline(answer)
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == code, child.before
        assert db.emails("is_active") == active


def test_a_plan_is_not_written_once_the_users_have_changed(cli: Cli, db: Database) -> None:
    """The plan is made again under the write lock: a change between the plan (which a person
    may have confirmed) and the writing refuses the whole plan."""
    import io

    from usersctl.errors import Conflict
    from usersctl.importing.applying import ApplyOptions, carry_out, plan_apply, read_desired
    from usersctl.importing.checking import FileCheck
    from usersctl.users import open_users

    db.seed("keep@example.com", "gone@example.com")
    options = ApplyOptions(prune=True)

    async def make_plan() -> Any:
        async with open_users(db.url) as ctx:
            check = FileCheck(ctx.model, "fail", passwordless=True)
            rows = read_desired(io.BytesIO(b'{"email": "keep@example.com"}\n'), None, check)
            return rows, await plan_apply(ctx, rows, options)

    rows, plan = asyncio.run(make_plan())
    assert [step.action for step in plan.steps] == ["unchanged", "deactivate"]
    db.execute("UPDATE \"user\" SET is_verified = true WHERE email = 'gone@example.com'")
    before = snapshot(db)

    async def write() -> None:
        async with open_users(db.url, write=True) as ctx:
            await carry_out(ctx, plan, rows, options)

    with pytest.raises(Conflict, match="the users changed since the plan was made"):
        asyncio.run(write())
    assert snapshot(db) == before
