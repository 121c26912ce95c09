"""The operations of usersctl.users that take users away or check them, at the library's level:
the last-superuser guard, (de)activation, password replacement, the parent rows of a
joined-table subclass, planning and carrying out deletes (OAuth accounts, access tokens, rows
that refer to the user), choosing the scheme of new hashes, and checking a password (the decoy
for a user without a usable hash, the rehash). Called directly on each test database, seeded
and checked with plain SQL; no command line, so quick enough for the mutation run of users.py
(benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Any, TypeVar

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from harness import PASSWORD, Database, execute, seed_hash, user_and_token_tables
from usersctl.db import SQLAlchemyBaseUserTable
from usersctl.errors import CheckFailed, InvalidInput, LastSuperuser
from usersctl.passwords import ARGON2, BCRYPT, Hashing, verify_password
from usersctl.references import DeletePlan, DeleteRules, RowsReferToUser
from usersctl.users import (
    NO_MATCH,
    PasswordMatch,
    UserContext,
    _checkable,
    _decoy_hash,
    _delete_parent_rows,
    _holds_hash_like,
    active_superusers,
    check_password,
    choose_hashing,
    delete_users,
    guard_last_superuser,
    open_users,
    plan_deletes,
    set_active,
    set_password,
    touch_parent_rows,
)

pytestmark = pytest.mark.usefixtures("quick_hashing")

T = TypeVar("T")

ANN = uuid.UUID("00000000-0000-0000-0000-00000000000a")
BEN = uuid.UUID("00000000-0000-0000-0000-00000000000b")
CY = uuid.UUID("00000000-0000-0000-0000-00000000000c")
DEE = uuid.UUID("00000000-0000-0000-0000-00000000000d")
EMAILS = {
    ANN: "ann@example.com",
    BEN: "ben@example.com",
    CY: "cy@example.com",
    DEE: "dee@example.com",
}


def run(
    url: str,
    work: Callable[[UserContext], Awaitable[T]],
    *,
    model_path: str | None = None,
    commit: bool = True,
) -> T:
    """``work`` in one writing session of usersctl's on ``url``, committed unless it raises."""

    async def main() -> T:
        async with open_users(url, write=True, model_path=model_path) as ctx:
            result = await work(ctx)
            if commit:
                await ctx.session.commit()
            return result

    return asyncio.run(main())


async def load(ctx: UserContext, *ids: Any) -> list[Any]:
    """The users of ``ids``, as the ORM loads them."""
    return [await ctx.session.get(ctx.model.user_class, user_id) for user_id in ids]


def id_type(url: str) -> str:
    return "UUID" if url.startswith("postgresql") else "CHAR(36)"


def user_tables(url: str) -> Database:
    """FastAPI Users' user, access token and OAuth account tables (UUID ids), empty."""
    db = user_and_token_tables(url)
    db.execute(
        f"CREATE TABLE oauth_account (id {id_type(url)} NOT NULL PRIMARY KEY, "
        "oauth_name VARCHAR(100) NOT NULL, access_token VARCHAR(1024) NOT NULL, "
        "account_id VARCHAR(320) NOT NULL, account_email VARCHAR(320) NOT NULL, "
        f'user_id {id_type(url)} NOT NULL, FOREIGN KEY (user_id) REFERENCES "user" (id))'
    )
    return db


def people(url: str, **flags: dict[str, Any]) -> Database:
    """The tables with ann, ben, cy and dee (each with the columns ``flags`` gives it by name)."""
    db = user_tables(url)
    db.seed_specs(
        *(
            {"id": user_id, "email": email, **flags.get(email.split("@")[0], {})}
            for user_id, email in EMAILS.items()
        )
    )
    return db


def states(db: Database) -> dict[str, tuple[bool, bool]]:
    """Each user's (is_active, is_superuser), by email, as stored."""
    return {row["email"]: (bool(row["is_active"]), bool(row["is_superuser"])) for row in db.rows()}


# The last active superuser ---------------------------------------------------------------------


def test_the_active_superusers_are_listed_by_email(database_url: str) -> None:
    people(
        database_url,
        ann={"is_superuser": True, "is_active": False},
        ben={"is_superuser": True},
    )
    Database(database_url).seed_specs({"email": "al@example.com", "is_superuser": True})
    assert run(database_url, active_superusers) == ["al@example.com", "ben@example.com"]


def guards(url: str, *cases: tuple[list[uuid.UUID], bool]) -> list[str | None]:
    """For each (ids, force), in one session: None when the guard lets those users go, else
    its message."""

    async def work(ctx: UserContext) -> list[str | None]:
        said: list[str | None] = []
        for ids, force in cases:
            try:
                await guard_last_superuser(ctx, await load(ctx, *ids), force=force)
            except LastSuperuser as refused:
                said.append(str(refused))
            else:
                said.append(None)
        return said

    return run(url, work)


def test_the_guard_refuses_to_lose_every_active_superuser(database_url: str) -> None:
    people(database_url, ann={"is_superuser": True}, ben={"is_superuser": True})
    assert guards(
        database_url, ([ANN, CY, BEN], False), ([BEN, CY], False), ([ANN, BEN], True)
    ) == [
        "refusing to leave no active superuser (would remove ann@example.com, ben@example.com); "
        "use --force to do it anyway",
        None,  # one of the two may go
        None,
    ]


def test_the_guard_counts_only_active_superusers_lost(database_url: str) -> None:
    # Ann is the one active superuser: losing Ben (inactive) or Cy (no superuser) leaves her.
    people(database_url, ann={"is_superuser": True}, ben={"is_superuser": True, "is_active": False})
    assert guards(database_url, ([BEN, CY], False), ([ANN], False)) == [
        None,
        "refusing to leave no active superuser (would remove ann@example.com); "
        "use --force to do it anyway",
    ]


# A joined-table subclass: the user is a member, a principal and an entity ------------------------


class Base(DeclarativeBase):
    pass


class Entity(Base):
    """The grandparent table: no ``onupdate`` column."""

    __tablename__ = "entity"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(20))
    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "entity"}  # noqa: RUF012 (as apps write it)


class Principal(Entity):
    """The parent table, whose ``updated_at`` the app's ORM fills on every update."""

    __tablename__ = "principal"
    id: Mapped[int] = mapped_column(ForeignKey("entity.id"), primary_key=True)
    updated_at: Mapped[int] = mapped_column(default=0, onupdate=lambda: 1)
    __mapper_args__ = {"polymorphic_identity": "principal"}  # noqa: RUF012 (as apps write it)


class Member(SQLAlchemyBaseUserTable[int], Principal):
    __tablename__ = "member"
    id: Mapped[int] = mapped_column(ForeignKey("principal.id"), primary_key=True)
    __mapper_args__ = {"polymorphic_identity": "member"}  # noqa: RUF012 (as apps write it)


MEMBER = f"{__name__}:Member"


def members(url: str, **flags: Any) -> Database:
    """The three tables, members 1, 2, 3 (m1@example.com...), each row under the same id, the
    member rows with the columns ``flags`` gives (``is_active=[True, False, True]``)."""
    execute(
        url,
        "CREATE TABLE entity (id INTEGER NOT NULL PRIMARY KEY, kind VARCHAR(20) NOT NULL)",
        "CREATE TABLE principal (id INTEGER NOT NULL PRIMARY KEY, "
        "updated_at INTEGER NOT NULL, FOREIGN KEY (id) REFERENCES entity (id))",
        "CREATE TABLE member (id INTEGER NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, "
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, "
        "FOREIGN KEY (id) REFERENCES principal (id))",
    )
    db = Database(url)
    for number in (1, 2, 3):
        db.execute(
            f"INSERT INTO entity VALUES ({number}, 'member')",
            f"INSERT INTO principal VALUES ({number}, 0)",
        )
    db.seed_specs(
        *(
            {
                "id": number,
                "email": f"m{number}@example.com",
                **{name: values[number - 1] for name, values in flags.items()},
            }
            for number in (1, 2, 3)
        ),
        table="member",
    )
    return db


def updated(db: Database) -> dict[int, int]:
    """The parent rows' ``updated_at``, by id."""
    return {row["id"]: row["updated_at"] for row in db.query("SELECT * FROM principal")}


def test_touching_fills_the_parent_s_onupdate_column_of_those_users_only(database_url: str) -> None:
    db = members(database_url)

    async def work(ctx: UserContext) -> None:
        await touch_parent_rows(ctx, [])
        await touch_parent_rows(ctx, [1, 3])

    run(database_url, work, model_path=MEMBER)
    assert updated(db) == {1: 1, 2: 0, 3: 1}
    assert db.query("SELECT id, kind FROM entity ORDER BY id") == [
        {"id": 1, "kind": "member"},
        {"id": 2, "kind": "member"},
        {"id": 3, "kind": "member"},
    ]


#: Whether an UPDATE is written is the same on every database: SQLite alone (whose trigger is
#: the shortest to write).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_parent_without_onupdate_columns_is_not_written(database_url: str) -> None:
    # As an app's audit trigger would, one on the grandparent notes every UPDATE of its rows.
    db = members(database_url)
    db.execute(
        "CREATE TABLE entity_log (id INTEGER NOT NULL)",
        "CREATE TRIGGER entity_written AFTER UPDATE ON entity "
        "BEGIN INSERT INTO entity_log VALUES (NEW.id); END",
    )

    async def work(ctx: UserContext) -> None:
        await touch_parent_rows(ctx, [2])

    run(database_url, work, model_path=MEMBER)
    assert updated(db) == {1: 0, 2: 1, 3: 0}
    assert db.count("entity_log") == 0


def test_the_parent_rows_go_nearest_parent_first(database_url: str) -> None:
    db = members(database_url)

    async def work(ctx: UserContext) -> None:
        await ctx.session.execute(Member.__table__.delete().where(Member.__table__.c.id == 2))
        await _delete_parent_rows(ctx, 2)

    run(database_url, work, model_path=MEMBER)
    assert [row["id"] for row in db.query("SELECT id FROM principal ORDER BY id")] == [1, 3]
    assert [row["id"] for row in db.query("SELECT id FROM entity ORDER BY id")] == [1, 3]


def test_set_password_replaces_the_hash_and_touches_the_parent(database_url: str) -> None:
    db = members(database_url)

    async def work(ctx: UserContext) -> None:
        (user,) = await load(ctx, 2)
        await set_password(ctx, user, "$2b$04$" + "n" * 53)

    run(database_url, work, model_path=MEMBER)
    hashes = {row["id"]: row["hashed_password"] for row in db.query("SELECT * FROM member")}
    assert hashes == {1: seed_hash(), 2: "$2b$04$" + "n" * 53, 3: seed_hash()}
    assert updated(db) == {1: 0, 2: 1, 3: 0}


# (De)activating --------------------------------------------------------------------------------


def activate(
    url: str, ids: list[Any], active: bool, model_path: str | None = None, **options: Any
) -> tuple[list[str], list[str]]:
    """``set_active``, committed: the emails of the users changed and of those already so."""

    async def work(ctx: UserContext) -> tuple[list[str], list[str]]:
        changed, unchanged = await set_active(ctx, await load(ctx, *ids), active, **options)
        return [user.email for user in changed], [user.email for user in unchanged]

    return run(url, work, model_path=model_path)


def test_set_active_changes_those_not_so_and_touches_their_parents(database_url: str) -> None:
    db = members(database_url, is_active=[True, False, True])
    assert activate(database_url, [1, 2], False, MEMBER) == (["m1@example.com"], ["m2@example.com"])
    actives = {row["id"]: bool(row["is_active"]) for row in db.query("SELECT * FROM member")}
    assert actives == {1: False, 2: False, 3: True}
    assert updated(db) == {1: 1, 2: 0, 3: 0}
    assert activate(database_url, [2, 3], True, MEMBER) == (["m2@example.com"], ["m3@example.com"])
    actives = {row["id"]: bool(row["is_active"]) for row in db.query("SELECT * FROM member")}
    assert actives == {1: False, 2: True, 3: True}


def test_deactivating_the_last_superuser_needs_force(database_url: str) -> None:
    db = people(database_url, ann={"is_superuser": True}, ben={"is_superuser": True})
    with pytest.raises(LastSuperuser, match=r"would remove ann@example.com, ben@example.com\)"):
        activate(database_url, [ANN, BEN], False)
    assert states(db)["ann@example.com"] == (True, True)
    assert activate(database_url, [ANN, BEN], False, force=True) == (
        ["ann@example.com", "ben@example.com"],
        [],
    )
    assert states(db)["ann@example.com"] == (False, True)
    # Activating guards nothing.
    assert activate(database_url, [ANN], True) == (["ann@example.com"], [])


# Deleting --------------------------------------------------------------------------------------


def app_tables(url: str) -> Database:
    """The people, and the app's tables that refer to them: ann owns items 1 and 2 (item 1 with
    two comments) and notes 1 and 2 (ON DELETE CASCADE), ben owns item 3, dee note 3; message 1
    is from ann to ben. Ann, ben and dee have an OAuth account each, ann, ben and cy an access
    token each."""
    db = people(url)
    kind = id_type(url)
    db.execute(
        f"CREATE TABLE item (id INTEGER NOT NULL PRIMARY KEY, owner_id {kind} NOT NULL, "
        'CONSTRAINT fk_item_owner FOREIGN KEY (owner_id) REFERENCES "user" (id))',
        "CREATE TABLE comment (id INTEGER NOT NULL PRIMARY KEY, item_id INTEGER NOT NULL, "
        "CONSTRAINT fk_comment_item FOREIGN KEY (item_id) REFERENCES item (id))",
        f"CREATE TABLE note (id INTEGER NOT NULL PRIMARY KEY, user_id {kind} NOT NULL, "
        'FOREIGN KEY (user_id) REFERENCES "user" (id) ON DELETE CASCADE)',
        f"CREATE TABLE message (id INTEGER NOT NULL PRIMARY KEY, sender_id {kind} NOT NULL, "
        f"recipient_id {kind} NOT NULL, "
        'CONSTRAINT fk_message_sender FOREIGN KEY (sender_id) REFERENCES "user" (id), '
        'CONSTRAINT fk_message_recipient FOREIGN KEY (recipient_id) REFERENCES "user" (id))',
    )
    db.insert("item", {"id": 1, "owner_id": ANN}, {"id": 2, "owner_id": ANN})
    db.insert("item", {"id": 3, "owner_id": BEN})
    db.insert("comment", {"id": 1, "item_id": 1}, {"id": 2, "item_id": 1})
    db.insert(
        "note", {"id": 1, "user_id": ANN}, {"id": 2, "user_id": ANN}, {"id": 3, "user_id": DEE}
    )
    db.insert("message", {"id": 1, "sender_id": ANN, "recipient_id": BEN})
    for user_id in (ANN, BEN, DEE):
        db.insert(
            "oauth_account",
            {
                "id": uuid.uuid4(),
                "oauth_name": "github",
                "access_token": "secret",
                "account_id": str(user_id),
                "account_email": EMAILS[user_id],
                "user_id": user_id,
            },
        )
    db.execute(
        *(
            f"INSERT INTO accesstoken VALUES ('{EMAILS[user_id]}', CURRENT_TIMESTAMP, '{user_id}')"
            for user_id in (ANN, BEN, CY)
        )
    )
    return db


def owners(db: Database, table: str, column: str) -> dict[int, str]:
    """``{row id: the email of the user its column refers to}``, read with SQL."""
    found = db.query(f'SELECT t.id, u.email FROM {table} t JOIN "user" u ON u.id = t.{column}')
    return {row["id"]: row["email"] for row in found}


def left(db: Database) -> dict[str, Any]:
    """What is left of the app's rows: users, logins, items, comments, notes, messages."""
    return {
        "user": sorted(db.emails()),
        "oauth_account": sorted(row["account_email"] for row in db.rows("oauth_account")),
        "accesstoken": sorted(row["token"] for row in db.rows("accesstoken")),
        "item": owners(db, "item", "owner_id"),
        "comment": sorted(row["id"] for row in db.rows("comment")),
        "note": db.count("note"),
        "message": db.count("message"),
    }


ALL = {
    "user": sorted(EMAILS.values()),
    "oauth_account": ["ann@example.com", "ben@example.com", "dee@example.com"],
    "accesstoken": ["ann@example.com", "ben@example.com", "cy@example.com"],
    "item": {1: "ann@example.com", 2: "ann@example.com", 3: "ben@example.com"},
    "comment": [1, 2],
    "note": 3,
    "message": 1,
}


def summary(plans: list[DeletePlan]) -> list[tuple[str, list[tuple[str, int, str, str]]]]:
    """Each plan's user and its steps as (where, rows, action, by), sorted."""
    return [
        (
            plan.user.email,
            sorted(
                (step.reference.where, step.rows, step.action.value, step.by)
                for step in plan.walk()
            ),
        )
        for plan in plans
    ]


def delete(url: str, ids: list[uuid.UUID], **options: Any) -> list[Any]:
    """``delete_users`` on the users of ``ids``, committed; the plans' summary, and whether the
    users deleted are still in the session."""

    async def work(ctx: UserContext) -> list[Any]:
        users = await load(ctx, *ids)
        done = await delete_users(ctx, users, **options)
        return [summary(done), [user in ctx.session for user in users]]

    return run(url, work)


GO_WITH_THE_USER = "OAuth accounts and access tokens go with the user"


def test_a_user_goes_with_its_oauth_accounts_access_tokens_and_cascading_rows(
    database_url: str,
) -> None:
    db = app_tables(database_url)
    assert delete(database_url, [DEE]) == [
        [
            (
                "dee@example.com",
                [
                    ("note.user_id", 1, "deleted", "ON DELETE CASCADE"),
                    ("oauth_account.user_id", 1, "deleted", GO_WITH_THE_USER),
                ],
            )
        ],
        [False],  # no longer in the session
    ]
    assert delete(database_url, [CY]) == [
        [("cy@example.com", [("accesstoken.user_id", 1, "deleted", GO_WITH_THE_USER)])],
        [False],
    ]
    assert left(db) == {
        **ALL,
        "user": ["ann@example.com", "ben@example.com"],
        "oauth_account": ["ann@example.com", "ben@example.com"],
        "accesstoken": ["ann@example.com", "ben@example.com"],
        "note": 2,
    }


def test_rows_without_a_rule_block_the_delete_and_nothing_goes(database_url: str) -> None:
    db = app_tables(database_url)
    with pytest.raises(RowsReferToUser) as refused:
        delete(database_url, [ANN])
    assert str(refused.value) == (
        "rows still refer to the user(s) to delete, and nothing was deleted: ann@example.com: "
        "2 rows of item.owner_id (foreign key fk_item_owner, no ON DELETE rule); "
        "1 row of message.sender_id (foreign key fk_message_sender, no ON DELETE rule); "
        "move the rows to another user with --reassign-to EMAIL_OR_ID, or delete them with "
        "--cascade (--dry-run shows what would go)"
    )
    assert left(db) == ALL


def test_cascade_deletes_the_rows_and_cascade_into_those_further_down(database_url: str) -> None:
    db = app_tables(database_url)
    rules = DeleteRules(cascade=True, cascade_into=frozenset({"comment"}))
    assert delete(database_url, [ANN], rules=rules) == [
        [
            (
                "ann@example.com",
                [
                    ("accesstoken.user_id", 1, "deleted", GO_WITH_THE_USER),
                    ("comment.item_id", 2, "deleted", "--cascade-into"),
                    ("item.owner_id", 2, "deleted", "--cascade"),
                    ("message.sender_id", 1, "deleted", "--cascade"),
                    ("note.user_id", 2, "deleted", "ON DELETE CASCADE"),
                    ("oauth_account.user_id", 1, "deleted", GO_WITH_THE_USER),
                ],
            )
        ],
        [False],
    ]
    assert left(db) == {
        "user": ["ben@example.com", "cy@example.com", "dee@example.com"],
        "oauth_account": ["ben@example.com", "dee@example.com"],
        "accesstoken": ["ben@example.com", "cy@example.com"],
        "item": {3: "ben@example.com"},
        "comment": [],
        "note": 1,
        "message": 0,
    }


def test_reassign_to_gives_the_rows_to_another_user(database_url: str) -> None:
    db = app_tables(database_url)

    async def work(ctx: UserContext) -> Any:
        ann, dee = await load(ctx, ANN, DEE)
        return summary(await delete_users(ctx, [ann], rules=DeleteRules(reassign_to=dee)))

    assert run(database_url, work) == [
        (
            "ann@example.com",
            [
                ("accesstoken.user_id", 1, "deleted", GO_WITH_THE_USER),
                ("item.owner_id", 2, "reassigned", "--reassign-to dee@example.com"),
                ("message.sender_id", 1, "reassigned", "--reassign-to dee@example.com"),
                ("note.user_id", 2, "deleted", "ON DELETE CASCADE"),
                ("oauth_account.user_id", 1, "deleted", GO_WITH_THE_USER),
            ],
        )
    ]
    assert left(db)["item"] == {1: "dee@example.com", 2: "dee@example.com", 3: "ben@example.com"}
    assert owners(db, "message", "sender_id") == {1: "dee@example.com"}
    assert left(db)["comment"] == [1, 2]


def test_each_user_s_rows_are_counted_after_those_deleted_before(database_url: str) -> None:
    # The message from ann to ben goes with ann: ben's plan does not count it again.
    db = app_tables(database_url)
    rules = DeleteRules(cascade=True, cascade_into=frozenset({"comment"}))
    [done, in_session] = delete(database_url, [ANN, BEN, DEE], rules=rules)
    assert [(email, [where for where, *_ in steps]) for email, steps in done] == [
        (
            "ann@example.com",
            [
                "accesstoken.user_id",
                "comment.item_id",
                "item.owner_id",
                "message.sender_id",
                "note.user_id",
                "oauth_account.user_id",
            ],
        ),
        ("ben@example.com", ["accesstoken.user_id", "item.owner_id", "oauth_account.user_id"]),
        ("dee@example.com", ["note.user_id", "oauth_account.user_id"]),
    ]
    assert in_session == [False, False, False]
    assert left(db) == {
        "user": ["cy@example.com"],
        "oauth_account": [],
        "accesstoken": ["cy@example.com"],
        "item": {},
        "comment": [],
        "note": 0,
        "message": 0,
    }


def test_deleting_the_last_superuser_needs_force(database_url: str) -> None:
    db = people(database_url, cy={"is_superuser": True})
    with pytest.raises(LastSuperuser, match=r"would remove cy@example.com\)"):
        delete(database_url, [CY, DEE])
    assert db.count() == 4
    assert delete(database_url, [CY, DEE], force=True) == [
        [("cy@example.com", []), ("dee@example.com", [])],
        [False, False],
    ]
    assert db.emails() == ["ann@example.com", "ben@example.com"]


def test_a_member_s_parent_rows_go_with_it(database_url: str) -> None:
    db = members(database_url)

    async def work(ctx: UserContext) -> Any:
        return summary(await delete_users(ctx, await load(ctx, 2)))

    assert run(database_url, work, model_path=MEMBER) == [("m2@example.com", [])]
    assert [row["id"] for row in db.query("SELECT id FROM member ORDER BY id")] == [1, 3]
    assert [row["id"] for row in db.query("SELECT id FROM principal ORDER BY id")] == [1, 3]
    assert [row["id"] for row in db.query("SELECT id FROM entity ORDER BY id")] == [1, 3]


# Planning, nothing written ---------------------------------------------------------------------


def plan(url: str, ids: list[uuid.UUID], rules: DeleteRules | None = None) -> Any:
    """``plan_deletes`` for the users of ``ids``, summed up; rolled back."""

    async def work(ctx: UserContext) -> Any:
        return summary(await plan_deletes(ctx, await load(ctx, *ids), rules))

    return run(url, work, commit=False)


def test_a_plan_says_what_deleting_would_do_and_writes_nothing(database_url: str) -> None:
    db = app_tables(database_url)
    assert plan(database_url, [CY, DEE]) == [
        ("cy@example.com", [("accesstoken.user_id", 1, "deleted", GO_WITH_THE_USER)]),
        (
            "dee@example.com",
            [
                ("note.user_id", 1, "deleted", "ON DELETE CASCADE"),
                ("oauth_account.user_id", 1, "deleted", GO_WITH_THE_USER),
            ],
        ),
    ]
    rules = DeleteRules(cascade=True, cascade_into=frozenset({"comment"}))
    assert plan(database_url, [ANN], rules) == [
        (
            "ann@example.com",
            [
                ("accesstoken.user_id", 1, "deleted", GO_WITH_THE_USER),
                ("comment.item_id", 2, "deleted", "--cascade-into"),
                ("item.owner_id", 2, "deleted", "--cascade"),
                ("message.sender_id", 1, "deleted", "--cascade"),
                ("note.user_id", 2, "deleted", "ON DELETE CASCADE"),
                ("oauth_account.user_id", 1, "deleted", GO_WITH_THE_USER),
            ],
        )
    ]
    with pytest.raises(RowsReferToUser, match=r"^rows still refer .*: ben@example.com: 1 row of "):
        plan(database_url, [BEN])
    assert left(db) == ALL


def test_the_user_to_reassign_to_must_not_be_deleted_too(database_url: str) -> None:
    db = app_tables(database_url)

    async def work(ctx: UserContext) -> Any:
        cy, dee = await load(ctx, CY, DEE)
        rules = DeleteRules(reassign_to=dee)
        with pytest.raises(InvalidInput) as refused:
            await plan_deletes(ctx, [cy, dee], rules)
        with pytest.raises(InvalidInput):
            await delete_users(ctx, [dee], rules=rules)
        return str(refused.value), summary(await plan_deletes(ctx, [cy], rules))

    assert run(database_url, work, commit=False) == (
        "--reassign-to dee@example.com: that user is being deleted too",
        [("cy@example.com", [("accesstoken.user_id", 1, "deleted", GO_WITH_THE_USER)])],
    )
    assert left(db) == ALL


def test_tables_to_cascade_into_must_exist(database_url: str) -> None:
    db = app_tables(database_url)
    rules = DeleteRules(cascade=True, cascade_into=frozenset({"zebra", "comment", "ant"}))
    with pytest.raises(InvalidInput) as refused:
        plan(database_url, [ANN], rules)
    assert str(refused.value) == "--cascade-into ant, zebra: the database has no such table"
    with pytest.raises(InvalidInput, match=r"^--cascade-into ant, zebra: "):
        delete(database_url, [ANN], rules=rules)
    assert left(db) == ALL


# Choosing the scheme of new hashes -------------------------------------------------------------


@cache
def bcrypt_hash(rounds: int = 4, password: str = PASSWORD) -> str:
    return BcryptHasher(rounds=rounds).hash(password)


@cache
def argon2_hash(time_cost: int = 1, password: str = PASSWORD) -> str:
    """An Argon2id hash; ``time_cost=1`` is the quick hashing's own (current), others outdated."""
    return Argon2Hasher(time_cost=time_cost, memory_cost=1024, parallelism=1).hash(password)


def bad_bcrypt(letter: str) -> str:
    """A bcrypt hash of 31 rounds: too costly to verify."""
    return "$2b$31$" + letter * 53


def hashes(url: str, *stored: str) -> list[uuid.UUID]:
    """The tables with one user per hash (u0@example.com...), whose ids sort in that order."""
    db = user_tables(url)
    ids = [uuid.UUID(int=number + 1) for number in range(len(stored))]
    db.seed_specs(
        *(
            {"id": user_id, "email": f"u{number}@example.com", "hashed_password": hashed}
            for number, (user_id, hashed) in enumerate(zip(ids, stored, strict=True))
        )
    )
    return ids


def choose(url: str, requested: str = "auto", helper: Hashing | None = None) -> Any:
    """The hashing ``choose_hashing`` picks and its reason, and what ``_holds_hash_like``
    says of the patterns of Argon2 and bcrypt hashes."""

    async def work(ctx: UserContext) -> Any:
        choice = await choose_hashing(ctx, requested, helper)
        holds = [await _holds_hash_like(ctx, pattern) for pattern in ("$argon2%", "$2%$%")]
        return choice.hashing, choice.reason, holds

    return run(url, work, commit=False)


BCRYPT_ONLY = (
    "the table's password hashes are bcrypt, none Argon2, so the app may verify bcrypt only"
)


def test_auto_writes_argon2_where_the_table_holds_any(database_url: str) -> None:
    hashes(database_url, bcrypt_hash(), argon2_hash(), "!DISABLED!")
    assert choose(database_url) == (ARGON2, None, [True, True])


def test_auto_writes_bcrypt_where_the_table_holds_bcrypt_alone(database_url: str) -> None:
    hashes(database_url, "!DISABLED!", bcrypt_hash())
    assert choose(database_url) == (BCRYPT, BCRYPT_ONLY, [False, True])


def test_auto_writes_argon2_where_the_table_holds_neither(database_url: str) -> None:
    # Almost: no 2 after the $, no $ after the cost, no 2 after argon.
    hashes(database_url, "!DISABLED!", "$3b$04$x", "$2b04", "x$2b$04$", "$argon")
    assert choose(database_url) == (ARGON2, None, [False, False])


def test_a_scheme_asked_for_or_the_app_s_helper_wins_over_the_table(database_url: str) -> None:
    hashes(database_url, argon2_hash())
    assert choose(database_url, "bcrypt") == (BCRYPT, None, [True, False])
    helper = Hashing("app", PasswordHash((BcryptHasher(),)))
    assert choose(database_url, "argon2", helper) == (helper, None, [True, False])


# Which stored hashes are worth checking --------------------------------------------------------


class NoHashers:
    """An app's helper that hashes and verifies but cannot be asked which hashes it knows."""

    def hash(self, password: str) -> str:
        return argon2_hash(password=password)

    def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        return verify_password(password, hashed), None


def test_without_a_helper_argon2_and_bcrypt_hashes_of_a_sane_cost_are_checkable() -> None:
    stored = (argon2_hash(), bcrypt_hash(), bad_bcrypt("a"), "plain", "")
    assert [_checkable(hashed, ARGON2) for hashed in stored] == [True, True, False, False, False]
    assert _checkable(argon2_hash(time_cost=17), BCRYPT) is False


def test_a_helper_decides_what_it_knows_or_takes_any_hash_when_it_cannot_say() -> None:
    bcrypt_only = Hashing("app", PasswordHash((BcryptHasher(),)))
    assert [_checkable(h, bcrypt_only) for h in (bcrypt_hash(), argon2_hash(), "plain")] == [
        True,
        False,
        False,
    ]
    anything = Hashing("app", NoHashers())
    assert [_checkable(h, anything) for h in ("plain", "", bad_bcrypt("a"))] == [
        True,
        False,
        False,
    ]


# The decoy for a user without a usable hash ----------------------------------------------------


def decoy(url: str, hashing: Hashing = ARGON2, **sample: int) -> str | None:
    """The hash ``_decoy_hash`` picks (``sample=n``: among the first n rows)."""

    async def work(ctx: UserContext) -> str | None:
        return await _decoy_hash(ctx, hashing, **sample)

    return run(url, work, commit=False)


def test_the_decoy_is_of_the_most_common_argon2_parameters(database_url: str) -> None:
    hashes(database_url, argon2_hash(2), argon2_hash(password="a"), argon2_hash(password="b"))
    assert decoy(database_url) == argon2_hash(password="a")


def test_the_decoy_is_of_the_most_common_bcrypt_cost_among_checkable_hashes(
    database_url: str,
) -> None:
    stored = [bcrypt_hash(5), bcrypt_hash(password="a"), bcrypt_hash(password="b")]
    stored += [bad_bcrypt("x"), bad_bcrypt("y"), bad_bcrypt("z"), "plain", "plain", "plain"]
    hashes(database_url, *stored)
    assert decoy(database_url) == bcrypt_hash(password="a")


def test_the_decoy_is_one_the_app_s_helper_knows(database_url: str) -> None:
    hashes(database_url, argon2_hash(), argon2_hash(password="a"), bcrypt_hash(password="b"))
    bcrypt_only = Hashing("app", PasswordHash((BcryptHasher(),)))
    assert decoy(database_url, bcrypt_only) == bcrypt_hash(password="b")


def test_no_decoy_without_a_checkable_hash(database_url: str) -> None:
    hashes(database_url, "!DISABLED!", "plain", bad_bcrypt("a"))
    assert decoy(database_url) is None


def test_the_decoy_comes_from_a_sample_of_the_table(database_url: str) -> None:
    hashes(database_url, argon2_hash(), bcrypt_hash(password="a"), bcrypt_hash(password="b"))
    assert decoy(database_url, sample=2) == argon2_hash()
    assert decoy(database_url, sample=3) == bcrypt_hash(password="a")


def test_the_sample_is_of_a_hundred_users(database_url: str) -> None:
    # 50 bcrypt and 50 Argon2 hashes, bcrypt first (the tie goes to it), then one more Argon2.
    stored = [bcrypt_hash(), *[argon2_hash()] * 50, *[bcrypt_hash()] * 49, argon2_hash()]
    hashes(database_url, *stored)
    assert decoy(database_url) == bcrypt_hash()


# Checking a password ---------------------------------------------------------------------------


class NotingHash(PasswordHash):
    """An app's own helper, pwdlib's ``PasswordHash``: it hashes and verifies for real, and
    notes each (password, hash) it verified and how many passwords it hashed."""

    def __init__(self, *hashers: Any) -> None:
        super().__init__(hashers)
        self.verified: list[tuple[str | bytes, str | bytes]] = []
        self.hashed = 0

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashed += 1
        return super().hash(password, salt=salt)

    def verify_and_update(
        self, password: str | bytes, hash: str | bytes
    ) -> tuple[bool, str | None]:
        self.verified.append((password, hash))
        return super().verify_and_update(password, hash)


def checks(
    url: str, *calls: tuple[str, str, dict[str, Any]], model_path: str | None = None
) -> list[Any]:
    """``check_password`` for each (email or id, password, options), in one session, committed:
    each match as (email, scheme, rehashed, replacement), each failure as its message."""

    async def work(ctx: UserContext) -> list[Any]:
        said: list[Any] = []
        for who, password, options in calls:
            try:
                match = await check_password(ctx, who, password, **options)
            except CheckFailed as failed:
                said.append(str(failed))
            else:
                assert isinstance(match, PasswordMatch)
                said.append((match.user.email, match.scheme, match.rehashed, match.replacement))
        return said

    return run(url, work, model_path=model_path)


def stored(db: Database) -> dict[str, str]:
    """Each user's stored hash, by email."""
    return {row["email"]: row["hashed_password"] for row in db.rows()}


def test_a_right_password_matches_a_wrong_one_does_not(database_url: str) -> None:
    db = people(database_url)
    assert checks(
        database_url,
        ("ann@example.com", PASSWORD, {}),
        (str(BEN), PASSWORD, {"rehash": True}),
        ("ann@example.com", "wrong", {}),
    ) == [
        ("ann@example.com", "argon2", False, None),
        ("ben@example.com", "argon2", False, None),
        NO_MATCH,
    ]
    assert set(stored(db).values()) == {seed_hash()}


def test_a_bcrypt_hash_is_replaced_only_with_rehash(database_url: str) -> None:
    hashes(database_url, bcrypt_hash(), bcrypt_hash(password="b"))
    assert checks(
        database_url,
        ("u0@example.com", PASSWORD, {}),
        ("u1@example.com", "b", {"rehash": True}),
    ) == [
        ("u0@example.com", "bcrypt", False, "argon2"),
        ("u1@example.com", "bcrypt", True, "argon2"),
    ]
    after = stored(Database(database_url))
    assert after["u0@example.com"] == bcrypt_hash()
    assert after["u1@example.com"].startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert verify_password("b", after["u1@example.com"])
    # Bcrypt asked for: 4 rounds are outdated to FastAPI Users' 12.
    assert checks(
        database_url, ("u0@example.com", PASSWORD, {"rehash": True, "hashing": BCRYPT})
    ) == [("u0@example.com", "bcrypt", True, "bcrypt")]
    after = stored(Database(database_url))
    assert after["u0@example.com"].startswith("$2b$12$")
    assert verify_password(PASSWORD, after["u0@example.com"])


def test_an_outdated_argon2_hash_is_replaced_in_the_scheme_asked_for(database_url: str) -> None:
    hashes(database_url, argon2_hash(2), argon2_hash(2, "b"))
    assert checks(
        database_url,
        ("u0@example.com", PASSWORD, {"rehash": True, "hashing": BCRYPT}),
        ("u1@example.com", "b", {"rehash": True}),
    ) == [
        ("u0@example.com", "argon2-outdated", True, "bcrypt"),
        ("u1@example.com", "argon2-outdated", True, "argon2"),
    ]
    after = stored(Database(database_url))
    assert after["u0@example.com"].startswith("$2b$12$")
    assert verify_password(PASSWORD, after["u0@example.com"])
    assert after["u1@example.com"].startswith("$argon2id$v=19$m=1024,t=1,p=1$")


def test_the_app_s_helper_says_which_parameters_are_outdated(database_url: str) -> None:
    # Its Argon2 takes two passes: the quick hashing's one-pass hash is outdated to it.
    hashes(database_url, argon2_hash())
    helper = Hashing("app", PasswordHash((Argon2Hasher(time_cost=2, memory_cost=1024),)))
    assert checks(database_url, ("u0@example.com", PASSWORD, {"hashing": helper})) == [
        ("u0@example.com", "argon2-outdated", False, "argon2")
    ]


def test_a_rehashed_member_s_parent_is_touched(database_url: str) -> None:
    db = members(database_url)
    db.execute(f"UPDATE member SET hashed_password = '{bcrypt_hash()}' WHERE id = 2")
    assert checks(
        database_url, ("m2@example.com", PASSWORD, {"rehash": True}), model_path=MEMBER
    ) == [("m2@example.com", "bcrypt", True, "argon2")]
    assert updated(db) == {1: 0, 2: 1, 3: 0}


def test_no_user_or_no_usable_hash_is_checked_against_the_decoy(database_url: str) -> None:
    # Most hashes are bcrypt: the decoy is the first of them; even its password does not match.
    hashes(database_url, "!DISABLED!", argon2_hash(), bcrypt_hash(), bcrypt_hash(password="b"))
    noted = NotingHash(Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1), BcryptHasher())
    helper = Hashing("app", noted)
    assert checks(
        database_url,
        ("nobody@example.com", PASSWORD, {"hashing": helper}),
        ("u0@example.com", PASSWORD, {"hashing": helper}),
    ) == [NO_MATCH, NO_MATCH]
    assert noted.verified == [(PASSWORD, bcrypt_hash()), (PASSWORD, bcrypt_hash())]
    assert noted.hashed == 0


def test_without_any_usable_hash_the_password_is_hashed_instead(database_url: str) -> None:
    hashes(database_url, "!DISABLED!", "plain")
    noted = NotingHash(Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1))
    helper = Hashing("app", noted)
    assert checks(
        database_url,
        ("nobody@example.com", PASSWORD, {"hashing": helper}),
        ("u0@example.com", PASSWORD, {"hashing": helper}),
    ) == [NO_MATCH, NO_MATCH]
    assert (noted.verified, noted.hashed) == ([], 2)


def test_without_a_helper_an_unknown_hash_is_no_match(database_url: str) -> None:
    hashes(database_url, "plain", bcrypt_hash())
    assert checks(
        database_url, ("u0@example.com", "plain", {}), ("nobody@example.com", PASSWORD, {})
    ) == [NO_MATCH, NO_MATCH]
