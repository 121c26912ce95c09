"""apply's library side (usersctl.importing.applying) without the command line: the plan
``plan_apply`` makes (which user a row names, what each step changes) and what ``carry_out``
writes with its own defaults, every effect checked with plain SQL on each test database. Quick
enough for the mutation run of importing/applying.py (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from harness import Database, user_and_token_tables
from usersctl.errors import InvalidInput, LastSuperuser
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

    async def main() -> ApplyPlan:
        async with open_users(url) as ctx:
            rows = desired(ctx, records)
            plan = await plan_apply(ctx, rows, options)
        async with open_users(url, write=True) as ctx:
            await carry_out(ctx, plan, rows, options, **how)
            await ctx.session.commit()
        return plan

    return asyncio.run(main())


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
