"""apply's library side (usersctl.importing.applying) without the command line: the plan
``plan_apply`` makes (which user a row names, what each step changes) and what ``carry_out``
writes with its own defaults and with its keywords (a dry run, ``force``), on UUID and on
integer ids, every effect checked with plain SQL on each test database. Quick enough for the
mutation run of importing/applying.py (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from harness import Database, execute, integer_user_table, is_sqlite, user_and_token_tables
from usersctl.errors import ConstraintConflict, InvalidInput, LastSuperuser
from usersctl.importing.applying import (
    HIDDEN,
    ApplyOptions,
    ApplyPlan,
    PlanOutdated,
    carry_out,
    plan_apply,
    read_desired,
    refuse_without_prune,
)
from usersctl.importing.checking import FileCheck
from usersctl.importing.rows import ImportConflict, ImportRejected, Row
from usersctl.passwords import BCRYPT, verify_password
from usersctl.users import UserContext, UserFilters, open_users

pytestmark = pytest.mark.usefixtures("quick_hashing")

ANN = "00000000-0000-0000-0000-00000000000a"
BEN = "00000000-0000-0000-0000-00000000000b"
CY = "00000000-0000-0000-0000-00000000000c"
BCRYPT_HASH = "$2b$04$" + "a" * 53


def make_table(url: str, *, unique_key: bool = True) -> Database:
    """FastAPI Users' user table (UUID ids) and its access token table, empty."""
    return user_and_token_tables(url, unique_key=unique_key)


def desired(ctx: UserContext, records: list[dict[str, Any]]) -> list[Row]:
    """``records`` as apply reads a file (JSON Lines, line n = records[n - 1])."""
    check = FileCheck(ctx.model, "fail", password_policy=None, passwordless=True)
    data = "".join(json.dumps(record) + "\n" for record in records).encode()
    return read_desired(io.BytesIO(data), "jsonl", check)


def planned(
    url: str, records: list[dict[str, Any]], options: ApplyOptions | None = None
) -> ApplyPlan:
    """The plan alone; nothing written."""

    async def main() -> ApplyPlan:
        async with open_users(url) as ctx:
            return await plan_apply(ctx, desired(ctx, records), options or ApplyOptions())

    return asyncio.run(main())


def apply(
    url: str, records: list[dict[str, Any]], options: ApplyOptions | None = None, **how: Any
) -> ApplyPlan:
    """Plan, then ``carry_out`` with only the keywords given (its defaults otherwise), and
    commit: the command's two sessions."""
    options = options or ApplyOptions()
    rows, plan = planned_rows(url, records, options)
    write(url, plan, rows, options, **how)
    return plan


def planned_rows(
    url: str, records: list[dict[str, Any]], options: ApplyOptions
) -> tuple[list[Row], ApplyPlan]:
    """The command's first session: the rows and their plan, for ``write``."""

    async def main() -> tuple[list[Row], ApplyPlan]:
        async with open_users(url) as ctx:
            rows = desired(ctx, records)
            return rows, await plan_apply(ctx, rows, options)

    return asyncio.run(main())


def write(
    url: str,
    plan: ApplyPlan,
    rows: list[Row],
    options: ApplyOptions,
    *,
    commit: bool = True,
    **how: Any,
) -> None:
    """The command's second session: ``carry_out``, then commit, or (``commit=False``) roll
    back, as the command does after a dry run."""

    async def main() -> None:
        async with open_users(url, write=True) as ctx:
            await carry_out(ctx, plan, rows, options, **how)
            if commit:
                await ctx.session.commit()
            else:
                await ctx.session.rollback()

    asyncio.run(main())


def state(db: Database) -> dict[str, tuple[bool, bool, bool]]:
    """Each user's (is_active, is_superuser, is_verified), by email."""
    return {
        row["email"]: (bool(row["is_active"]), bool(row["is_superuser"]), bool(row["is_verified"]))
        for row in db.rows()
    }


def test_carry_out_by_default_writes_revokes_and_keeps_the_last_superuser(
    database_url: str,
) -> None:
    db = make_table(database_url)
    db.seed_specs({"id": ANN, "email": "ann@example.com", "is_superuser": True})
    db.seed_specs({"id": BEN, "email": "ben@example.com"})
    db.execute(f"INSERT INTO accesstoken VALUES ('t', CURRENT_TIMESTAMP, '{BEN}')")
    demote = [{"email": "ann@example.com", "is_superuser": False}]
    with pytest.raises(LastSuperuser) as refused:
        apply(database_url, demote)
    assert str(refused.value) == (
        "refusing to leave no active superuser (the plan demotes, deactivates or deletes "
        "ann@example.com); use --force to do it anyway"
    )
    assert state(db)["ann@example.com"] == (True, True, False)
    # Not a dry run, and the sessions of the deactivated user end.
    plan = apply(database_url, [{"email": "ben@example.com", "is_active": False}])
    assert plan.revoked_tokens == 1
    assert state(db)["ben@example.com"] == (False, False, False)
    assert db.count("accesstoken") == 0


def test_a_pruning_plan_creates_with_the_given_hash_and_deactivates_by_email(
    database_url: str,
) -> None:
    db = make_table(database_url)
    # Ann's id sorts first, Ben's email does: the plan lists by email.
    db.seed_specs({"id": ANN, "email": "zed@example.com"}, {"id": BEN, "email": "amy@example.com"})
    new = {"email": "cy@example.com", "hashed_password": BCRYPT_HASH, "id": CY}
    # The plan gives a create the row's id (carry_out reads the id back after the insert).
    create, *_ = planned(database_url, [new], ApplyOptions(prune=True)).steps
    assert (create.action, str(create.id)) == ("create", CY)
    plan = apply(database_url, [new], ApplyOptions(prune=True))
    create, *pruned = plan.steps
    assert (create.action, str(create.id), create.line, create.password) == ("create", CY, 1, None)
    assert create.changes["hashed_password"] == (None, HIDDEN)
    assert [(step.action, step.email, step.changes) for step in pruned] == [
        ("deactivate", "amy@example.com", {"is_active": (True, False)}),
        ("deactivate", "zed@example.com", {"is_active": (True, False)}),
    ]
    assert plan.revoked_tokens == 0  # no token to revoke: none counted
    assert db.user("cy@example.com")["hashed_password"] == BCRYPT_HASH
    assert state(db) == {
        "zed@example.com": (False, False, False),
        "amy@example.com": (False, False, False),
        "cy@example.com": (True, False, False),
    }


def test_a_given_hash_of_an_existing_user_is_written_only_with_update_passwords(
    database_url: str,
) -> None:
    db = make_table(database_url)
    db.seed_specs({"id": ANN, "email": "ann@example.com"})
    before = db.stored_hash("ann@example.com")
    entry = {"email": "ann@example.com", "hashed_password": BCRYPT_HASH, "is_verified": True}
    (step,) = apply(database_url, [entry]).steps
    assert (step.action, step.line, step.changes) == ("update", 1, {"is_verified": (False, True)})
    assert db.stored_hash("ann@example.com") == before
    (step,) = apply(database_url, [entry], ApplyOptions(update_passwords=True)).steps
    assert step.changes == {"hashed_password": (HIDDEN, HIDDEN)}
    assert db.stored_hash("ann@example.com") == BCRYPT_HASH
    (step,) = planned(database_url, [entry], ApplyOptions(update_passwords=True)).steps
    assert (step.action, step.changes) == ("unchanged", {})


def test_a_password_no_stored_hash_verifies_is_set_with_the_hashing_given(
    database_url: str,
) -> None:
    db = make_table(database_url)
    # An empty hash and a locking marker: no scheme verifies them, so the password is new.
    db.seed_specs(
        {"id": ANN, "email": "ann@example.com", "hashed_password": ""},
        {"id": BEN, "email": "ben@example.com", "hashed_password": "!locked"},
    )
    entries = [
        {"email": "ann@example.com", "password": "plum tractor velvet 41 orbit"},
        {"email": "ben@example.com", "password": "quiet lantern harbour 77 mosaic"},
        {"email": "cy@example.com", "password": "amber falcon meadow 12 quartz"},
    ]
    plan = apply(database_url, entries, ApplyOptions(update_passwords=True), hashing=BCRYPT)
    assert [(step.action, step.changes.get("hashed_password")) for step in plan.steps] == [
        ("update", (HIDDEN, HIDDEN)),
        ("update", (HIDDEN, HIDDEN)),
        ("create", (None, HIDDEN)),
    ]
    for entry in entries:
        stored = db.stored_hash(entry["email"])
        assert stored.startswith("$2b$") and verify_password(entry["password"], stored)


def test_an_id_of_another_user_is_a_conflict_on_each_row(database_url: str) -> None:
    db = make_table(database_url)
    db.seed_specs(
        {"id": ANN, "email": "ann@example.com"},
        {"id": BEN, "email": "ben@example.com"},
        {"id": CY, "email": "cy@example.com"},
    )
    entries = [
        {"email": "ann@example.com", "id": BEN},
        {"email": "dee@example.com", "id": ANN},
        {"email": "cy@example.com", "id": CY, "is_verified": True},
    ]
    with pytest.raises(ImportConflict) as conflict:
        planned(database_url, entries)
    assert [str(problem) for problem in conflict.value.problems] == [
        f"line 1: id {BEN} belongs to ben@example.com",
        f"line 2: id {ANN} belongs to ann@example.com",
    ]
    # Its own id: no conflict.
    (step,) = apply(database_url, entries[2:]).steps
    assert (step.action, str(step.id)) == ("update", CY)
    assert state(db)["cy@example.com"] == (True, False, True)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_an_address_stored_in_several_cases_names_the_one_stored_exactly_so(
    database_url: str,
) -> None:
    # MariaDB's collation keeps one address in one case only.
    db = make_table(database_url, unique_key=False)
    db.seed_specs(
        {"id": ANN, "email": "dup@example.com"},
        {"id": BEN, "email": "Dup@example.com"},
        {"email": "two@example.com"},
        {"email": "TWO@example.com"},
    )
    verified: set[str] = set()
    for email, user_id in (("Dup@example.com", BEN), ("dup@example.com", ANN)):
        (step,) = apply(database_url, [{"email": email, "is_verified": True}]).steps
        assert (step.action, step.email, str(step.id)) == ("update", email, user_id)
        verified.add(email)
        assert {row["email"] for row in db.rows() if row["is_verified"]} == verified
    with pytest.raises(ImportConflict) as conflict:
        planned(database_url, [{"email": "DUP@example.com"}, {"email": "Two@example.com"}])
    assert [str(problem) for problem in conflict.value.problems] == [
        "line 1: several users have the address: Dup@example.com, dup@example.com",
        "line 2: several users have the address: TWO@example.com, two@example.com",
    ]


def test_a_plan_outdated_by_another_write_writes_nothing(database_url: str) -> None:
    db = make_table(database_url)
    db.seed_specs({"id": ANN, "email": "ann@example.com"})

    async def plan() -> tuple[list[Row], ApplyPlan]:
        async with open_users(database_url) as ctx:
            rows = desired(ctx, [{"email": "ann@example.com", "is_verified": True}])
            return rows, await plan_apply(ctx, rows, ApplyOptions())

    async def write(rows: list[Row], plan: ApplyPlan) -> None:
        async with open_users(database_url, write=True) as ctx:
            await carry_out(ctx, plan, rows, ApplyOptions())

    rows, plan = asyncio.run(plan())
    db.execute('UPDATE "user" SET is_superuser = TRUE')
    with pytest.raises(PlanOutdated) as outdated:
        asyncio.run(write(rows, plan))
    assert str(outdated.value) == (
        "the users changed since the plan was made (another command wrote meanwhile); "
        "nothing was written: run apply again"
    )
    assert state(db) == {"ann@example.com": (True, True, False)}


def test_the_rows_refused_are_listed_in_line_order(database_url: str) -> None:
    make_table(database_url)

    async def main() -> None:
        async with open_users(database_url) as ctx:
            desired(
                ctx,
                [
                    {"email": "ann@example.com"},
                    {"email": "ANN@example.com"},  # the same address: a duplicate
                    {"email": "not an address"},
                ],
            )

    with pytest.raises(ImportRejected) as rejected:
        asyncio.run(main())
    assert [problem.line for problem in rejected.value.problems] == [2, 3]


def test_filters_without_pruning_are_refused() -> None:
    refuse_without_prune(ApplyOptions(filters=UserFilters(is_active=True), prune=True))
    with pytest.raises(InvalidInput) as refused:
        refuse_without_prune(ApplyOptions(filters=UserFilters(is_active=True)))
    assert str(refused.value) == (
        "the filters choose which users --prune or --prune-delete may touch; give one of them"
    )


def test_csv_cells_are_read_formula_safe_unless_raw(database_url: str) -> None:
    make_table(database_url)

    async def emails(**how: Any) -> list[str]:
        async with open_users(database_url) as ctx:
            check = FileCheck(ctx.model, "fail", password_policy=None, passwordless=True)
            stream = io.BytesIO(b"email\n'-ann@example.com\n")
            return [row.values["email"] for row in read_desired(stream, "csv", check, **how)]

    assert asyncio.run(emails()) == ["-ann@example.com"]
    assert asyncio.run(emails(raw_csv=True)) == ["'-ann@example.com"]


def test_an_unknown_id_with_a_known_address_leaves_the_id_alone(database_url: str) -> None:
    db = make_table(database_url)
    db.seed_specs({"id": ANN, "email": "ann@example.com"})
    entry = {"email": "ann@example.com", "id": CY, "is_verified": True}
    (step,) = apply(database_url, [entry]).steps
    assert (step.action, str(step.id), step.changes) == (
        "update",
        ANN,
        {"is_verified": (False, True)},
    )
    assert [str(row["id"]) for row in db.rows()] == [ANN]
    assert state(db) == {"ann@example.com": (True, False, True)}


def make_integer_table(url: str) -> Database:
    """A user table whose integer id the database numbers (PostgreSQL's sequence, MariaDB's
    AUTO_INCREMENT, SQLite's rowid), holding ann with id 1."""
    db = integer_user_table(url, unique_email=True)
    db.seed_specs({"email": "ann@example.com"})
    return db


def ids(db: Database) -> list[tuple[int, str]]:
    """Each user's (id, email), by id."""
    return [
        (row["id"], row["email"]) for row in db.query('SELECT id, email FROM "user" ORDER BY id')
    ]


NEW_USERS = [
    {"email": "bo@example.com", "hashed_password": BCRYPT_HASH},
    {"email": "cy@example.com", "hashed_password": BCRYPT_HASH},
]


def test_a_new_user_takes_the_next_id_and_the_apps_next_insert_the_one_after(
    database_url: str,
) -> None:
    db = make_integer_table(database_url)
    # One new user: for a batch, InnoDB may set aside more ids than it uses.
    (step,) = apply(database_url, NEW_USERS[:1]).steps
    assert (step.action, step.id) == ("create", 2)
    # The app's next insert (no id given) takes the id after it.
    (dee,) = db.seed_specs({"email": "dee@example.com"})
    assert dee["id"] == 3
    assert ids(db) == [(1, "ann@example.com"), (2, "bo@example.com"), (3, "dee@example.com")]


def test_a_new_user_given_an_id_moves_the_apps_next_id_past_it(database_url: str) -> None:
    db = make_integer_table(database_url)
    (step,) = apply(database_url, [{**NEW_USERS[0], "id": 10}]).steps
    assert (step.action, step.id) == ("create", 10)
    (dee,) = db.seed_specs({"email": "dee@example.com"})
    assert dee["id"] == 11


def test_a_dry_run_takes_no_id_from_the_real_run(database_url: str) -> None:
    db = make_integer_table(database_url)
    options = ApplyOptions()
    for _ in range(2):  # a second dry run finds the ids where the first left them
        rows, plan = planned_rows(database_url, NEW_USERS, options)
        write(database_url, plan, rows, options, dry_run=True, commit=False)
    assert ids(db) == [(1, "ann@example.com")]
    plan = apply(database_url, NEW_USERS)
    assert [step.id for step in plan.steps] == [2, 3]
    assert ids(db) == [(1, "ann@example.com"), (2, "bo@example.com"), (3, "cy@example.com")]


def test_a_dry_run_lends_the_first_new_password_hash_to_the_other_new_users(
    database_url: str,
) -> None:
    db = make_table(database_url)
    db.seed_specs({"id": ANN, "email": "ann@example.com"})
    before = db.stored_hash("ann@example.com")
    entries = [
        {"email": "ann@example.com"},  # unchanged: no password of hers is hashed
        {"email": "cy@example.com", "password": "amber falcon meadow 12 quartz"},
        {"email": "dee@example.com", "password": "quiet lantern harbour 77 mosaic"},
    ]
    options = ApplyOptions()
    rows, plan = planned_rows(database_url, entries, options)
    # Committed here (the command rolls a dry run back) to see with SQL what it wrote.
    write(database_url, plan, rows, options, dry_run=True)
    lent = db.stored_hash("cy@example.com")
    assert verify_password("amber falcon meadow 12 quartz", lent)
    assert db.stored_hash("dee@example.com") == lent
    assert db.stored_hash("ann@example.com") == before


def test_a_new_users_changes_follow_the_rows_fields_with_the_hidden_hash_last(
    database_url: str,
) -> None:
    make_table(database_url)
    entry = {"email": "cy@example.com", "hashed_password": BCRYPT_HASH, "is_verified": True}
    (step,) = planned(database_url, [{**entry, "id": CY}]).steps
    assert [(name, old, str(new)) for name, (old, new) in step.changes.items()] == [
        ("email", None, "cy@example.com"),
        ("is_verified", None, "True"),
        ("id", None, CY),
        ("hashed_password", None, HIDDEN),
    ]


def test_a_write_meanwhile_that_leaves_the_users_as_they_were_keeps_the_plan(
    database_url: str,
) -> None:
    db = make_table(database_url)
    db.seed_specs({"id": ANN, "email": "ann@example.com"}, {"id": BEN, "email": "ben@example.com"})
    options = ApplyOptions(prune=True)
    rows, plan = planned_rows(database_url, [NEW_USERS[1]], options)
    # Ann deleted and inserted again as she was: the same users, read in another order (SQLite's
    # rowid, PostgreSQL's heap; InnoDB keeps them in the primary key's).
    (ann,) = db.query("SELECT * FROM \"user\" WHERE email = 'ann@example.com'")
    db.execute("DELETE FROM \"user\" WHERE email = 'ann@example.com'")
    db.insert("user", ann)
    write(database_url, plan, rows, options)
    assert state(db) == {
        "ann@example.com": (False, False, False),
        "ben@example.com": (False, False, False),
        "cy@example.com": (True, False, False),
    }


def test_force_lets_pruning_delete_the_last_superuser(database_url: str) -> None:
    db = make_table(database_url)
    db.seed_specs(
        {"id": ANN, "email": "ann@example.com", "is_superuser": True},
        {"id": BEN, "email": "ben@example.com"},
    )
    options = ApplyOptions(prune_delete=True)
    plan = apply(database_url, [{"email": "ben@example.com"}], options, force=True)
    assert [(step.action, step.email) for step in plan.steps] == [
        ("unchanged", "ben@example.com"),
        ("delete", "ann@example.com"),
    ]
    assert db.emails() == ["ben@example.com"]


def test_new_users_a_foreign_key_refuses_write_nothing_and_sqlite_names_key_and_line(
    database_url: str,
) -> None:
    id_type = "UUID" if database_url.startswith("postgresql") else "CHAR(36)"
    execute(
        database_url,
        "CREATE TABLE team (id INTEGER NOT NULL PRIMARY KEY)",
        f'CREATE TABLE "user" (id {id_type} NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, team_id INTEGER, "
        "FOREIGN KEY (team_id) REFERENCES team (id))",
        "INSERT INTO team VALUES (1)",
    )
    entries = [{**NEW_USERS[0], "team_id": 1}, {**NEW_USERS[1], "team_id": 2}]
    if is_sqlite(database_url):
        # SQLite says only "FOREIGN KEY constraint failed": the key and the first row that
        # breaks it are found for it.
        with pytest.raises(ConstraintConflict) as named:
            apply(database_url, entries)
        assert str(named.value) == (
            "refused by the database's foreign key on user.team_id: no row of team has that id "
            "(line 2)"
        )
    else:  # PostgreSQL and MariaDB name the key themselves
        with pytest.raises(IntegrityError) as refused:
            apply(database_url, entries)
        assert "foreign key constraint" in str(refused.value.orig)
    assert Database(database_url).count() == 0
