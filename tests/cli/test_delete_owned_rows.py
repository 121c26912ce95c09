"""delete-user on an app whose tables refer to its users: items owned through a foreign key
without ON DELETE, notes that cascade, reviews set to NULL, comments on items two levels down, and
(with --model) the model's own relationships. In-process, and two tests through the installed
entry point, on SQLite and PostgreSQL; every effect is checked with plain SQL."""

from __future__ import annotations

import asyncio
import importlib
import json
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    text,
)

from harness import Cli, sql_engine
from usersctl.db import GUID

# The app's schema, as its own migrations would build it beside the user table -----------------

APP = MetaData()
USER = Table(
    "user",
    APP,
    Column("id", GUID, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("hashed_password", String(1024), nullable=False),
    Column("is_active", Boolean, nullable=False),
    Column("is_superuser", Boolean, nullable=False),
    Column("is_verified", Boolean, nullable=False),
)
ITEM = Table(  # owned through a foreign key that says nothing about deletes
    "item",
    APP,
    Column("id", Integer, primary_key=True),
    Column("title", String(50), nullable=False),
    Column("owner_id", GUID, ForeignKey("user.id", name="fk_item_owner"), nullable=False),
)
NOTE = Table(
    "note",
    APP,
    Column("id", Integer, primary_key=True),
    Column("user_id", GUID, ForeignKey("user.id", ondelete="CASCADE"), nullable=False),
)
REVIEW = Table(  # created by the DDL in build()
    "review",
    APP,
    Column("id", Integer, primary_key=True),
    Column("reviewer_id", GUID, ForeignKey("user.id", ondelete="SET NULL"), nullable=True),
)
ITEM_COMMENT = Table(  # the second level: comments on the items
    "item_comment",
    APP,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("item.id", name="fk_comment_item"), nullable=False),
)


async def _run(url: str, work: Any) -> Any:
    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            if url.startswith("sqlite"):
                await connection.execute(text("PRAGMA foreign_keys = ON"))
            return await work(connection)
    finally:
        await engine.dispose()


def build(url: str) -> dict[str, uuid.UUID]:
    """The app's tables and rows: mallory owns 2 items (with 3 comments), 3 notes and 1 review;
    eve owns 1 item without comments; admin owns nothing."""
    ids = {name: uuid.uuid4() for name in ("admin", "mallory", "eve")}

    async def work(connection: Any) -> None:
        by_metadata = [table for table in APP.sorted_tables if table is not REVIEW]
        await connection.run_sync(lambda c: APP.create_all(c, by_metadata, checkfirst=True))
        # Written by hand, as in many migrations: the rule on the column (SQLite's reflection
        # does not read it there; PRAGMA foreign_key_list does).
        id_type = "UUID" if connection.dialect.name == "postgresql" else "CHAR(36)"
        await connection.execute(
            text(
                "CREATE TABLE review (id INTEGER PRIMARY KEY, "
                f'reviewer_id {id_type} REFERENCES "user" (id) ON DELETE SET NULL)'
            )
        )
        await connection.execute(
            USER.insert(),
            [
                {
                    "id": user_id,
                    "email": f"{name}@example.com",
                    "hashed_password": "x",
                    "is_active": True,
                    "is_superuser": name == "admin",
                    "is_verified": True,
                }
                for name, user_id in ids.items()
            ],
        )
        await connection.execute(
            ITEM.insert(),
            [
                {"id": 1, "title": "lamp", "owner_id": ids["mallory"]},
                {"id": 2, "title": "desk", "owner_id": ids["mallory"]},
                {"id": 3, "title": "chair", "owner_id": ids["eve"]},
            ],
        )
        await connection.execute(
            ITEM_COMMENT.insert(),
            [{"id": 1, "item_id": 1}, {"id": 2, "item_id": 1}, {"id": 3, "item_id": 2}],
        )
        await connection.execute(
            NOTE.insert(), [{"id": n, "user_id": ids["mallory"]} for n in (1, 2, 3)]
        )
        await connection.execute(
            REVIEW.insert(),
            [{"id": 1, "reviewer_id": ids["mallory"]}, {"id": 2, "reviewer_id": ids["eve"]}],
        )

    asyncio.run(_run(url, work))
    return ids


def counts(url: str) -> dict[str, int]:
    """Rows per table, read with plain SQL."""

    async def work(connection: Any) -> dict[str, int]:
        found = {}
        for table in (USER, ITEM, NOTE, REVIEW, ITEM_COMMENT):
            query = select(func.count()).select_from(table)
            found[table.name] = (await connection.execute(query)).scalar_one()
        return found

    result: dict[str, int] = asyncio.run(_run(url, work))
    return result


def column_values(url: str, column: Any) -> list[Any]:
    async def work(connection: Any) -> list[Any]:
        rows = await connection.execute(select(column).order_by(column.table.c.id))
        return list(rows.scalars())

    result: list[Any] = asyncio.run(_run(url, work))
    return result


def related(row: dict[str, Any]) -> dict[str, tuple[int, str, str]]:
    """A deleted user's JSON ``related`` list as ``{table.column: (rows, action, by)}``."""
    return {
        f"{e['table']}.{e['column']}": (e["rows"], e["action"], e["by"]) for e in row["related"]
    }


UNTOUCHED = {"user": 3, "item": 3, "note": 3, "review": 2, "item_comment": 3}


def test_rows_that_block_a_delete_are_named_and_nothing_is_deleted(
    usersctl: Any, empty_cli: Cli, database_url: str
) -> None:
    """The first refusal through the installed entry point, the others in-process."""
    empty_cli.ok("init-db")
    build(database_url)
    message = usersctl.fails(4, "delete-user", "mallory@example.com", "--yes")
    assert "2 rows of item.owner_id" in message, message
    assert "fk_item_owner" in message
    assert "--reassign-to" in message and "--cascade" in message
    # Notes and reviews have rules of their own: they do not block.
    assert "note" not in message and "review" not in message
    assert counts(database_url) == UNTOUCHED
    # A dry run is refused the same way.
    empty_cli.fails(4, "delete-user", "mallory@example.com", "--dry-run")
    # --cascade would reach the comments on the items: refused until they are named.
    message = empty_cli.fails(4, "delete-user", "mallory@example.com", "--cascade", "--yes")
    assert "3 rows of item_comment.item_id" in message, message
    assert "--cascade-into item_comment" in message
    assert counts(database_url) == UNTOUCHED
    message = empty_cli.fails(
        2, "delete-user", "mallory@example.com", "--cascade", "--cascade-into", "comments", "--yes"
    )
    assert "comments" in message
    # Both ways forward at once is a usage error.
    empty_cli.fails(
        2, "delete-user", "mallory@example.com", "--cascade", "--reassign-to", "admin@example.com"
    )
    # The user to reassign to must exist, and must not be deleted too.
    empty_cli.fails(
        3, "delete-user", "mallory@example.com", "--reassign-to", "nobody@example.com", "--yes"
    )
    empty_cli.fails(
        2, "delete-user", "mallory@example.com", "--reassign-to", "MALLORY@example.com", "--yes"
    )
    assert counts(database_url) == UNTOUCHED


def test_dry_runs_show_what_each_way_forward_would_do(empty_cli: Cli, database_url: str) -> None:
    empty_cli.ok("init-db")
    build(database_url)
    result = empty_cli.ok(
        "delete-user",
        "mallory@example.com",
        "--reassign-to",
        "admin@example.com",
        "--dry-run",
        "-o",
        "json",
    )
    [row] = json.loads(result.stdout)
    assert row["status"] == "would delete"
    assert related(row) == {
        "item.owner_id": (2, "reassigned", "--reassign-to admin@example.com"),
        "note.user_id": (3, "deleted", "ON DELETE CASCADE"),
        "review.reviewer_id": (1, "set null", "ON DELETE SET NULL"),
    }
    assert "2 rows of item.owner_id would be reassigned" in result.stderr
    result = empty_cli.ok(
        "delete-user", "mallory@example.com", "--cascade", "--cascade-into", "item_comment",
        "--dry-run", "-o", "json",
    )  # fmt: skip
    [row] = json.loads(result.stdout)
    assert related(row) == {
        "item.owner_id": (2, "deleted", "--cascade"),
        "item_comment.item_id": (3, "deleted", "--cascade-into"),
        "note.user_id": (3, "deleted", "ON DELETE CASCADE"),
        "review.reviewer_id": (1, "set null", "ON DELETE SET NULL"),
    }
    [comments] = [e for e in row["related"] if e["table"] == "item_comment"]
    assert comments["through"] == "item"
    assert counts(database_url) == UNTOUCHED


def test_reassign_moves_the_blocking_rows_in_the_same_transaction(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    ids = build(database_url)
    result = empty_cli.ok(
        "delete-user", "mallory@example.com", "--reassign-to", str(ids["admin"]), "--yes"
    )
    assert "mallory@example.com" in result.stdout and "deleted" in result.stdout
    assert "3 rows of note.user_id deleted (ON DELETE CASCADE)" in result.stderr
    assert counts(database_url) == {**UNTOUCHED, "user": 2, "note": 0}
    assert column_values(database_url, ITEM.c.owner_id) == [ids["admin"], ids["admin"], ids["eve"]]
    assert column_values(database_url, REVIEW.c.reviewer_id) == [None, ids["eve"]]


def test_cascade_deletes_the_rows_and_those_named_below_them(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    ids = build(database_url)
    result = empty_cli.ok(
        "delete-user", "mallory@example.com", "eve@example.com", "--cascade",
        "--cascade-into", "item_comment", "--yes", "-o", "json",
    )  # fmt: skip
    rows = {row["email"]: row for row in json.loads(result.stdout)}
    assert related(rows["mallory@example.com"])["item.owner_id"] == (2, "deleted", "--cascade")
    assert related(rows["eve@example.com"]) == {
        "item.owner_id": (1, "deleted", "--cascade"),
        "review.reviewer_id": (1, "set null", "ON DELETE SET NULL"),
    }
    assert counts(database_url) == {"user": 1, "item": 0, "note": 0, "review": 2, "item_comment": 0}
    assert column_values(database_url, USER.c.id) == [ids["admin"]]


def test_a_user_who_owns_nothing_blocking_is_deleted_with_a_report(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    build(database_url)
    # Admin owns nothing: deleted outright, and nothing else is said.
    result = empty_cli.ok("delete-user", "admin@example.com", "--yes", "--force")
    assert "admin@example.com" in result.stdout and "deleted" in result.stdout
    assert "related" not in result.stdout
    assert result.stderr == ""
    # Eve's item goes to mallory; the table says what went with eve.
    result = empty_cli.ok(
        "delete-user", "eve@example.com", "--reassign-to", "mallory@example.com", "--yes"
    )
    assert "item.owner_id: 1 reassigned" in result.stdout, result.stdout
    assert "review.reviewer_id: 1 set null" in result.stdout
    assert counts(database_url) == {**UNTOUCHED, "user": 1}


# With --model: the app's relationships decide, as its own delete does ----------------------------

MODELS = """
    from __future__ import annotations

    import datetime as dt

    from sqlalchemy import Column, ForeignKey, Integer, String, Table
    from sqlalchemy.orm import DeclarativeBase, Mapped, MappedAsDataclass, mapped_column, relationship


    class Base(MappedAsDataclass, DeclarativeBase):
        pass


    user_teams = Table(
        "user_teams",
        Base.metadata,
        Column("user_id", ForeignKey("users.id"), primary_key=True),
        Column("team_id", ForeignKey("teams.id"), primary_key=True),
    )


    class User(Base):
        __tablename__ = "users"

        id: Mapped[int] = mapped_column(Integer, primary_key=True, init=False)
        email: Mapped[str] = mapped_column(String(320), unique=True)
        hashed_password: Mapped[str] = mapped_column(String(1024))
        is_active: Mapped[bool] = mapped_column(default=True)
        is_superuser: Mapped[bool] = mapped_column(default=False)
        is_verified: Mapped[bool] = mapped_column(default=False)
        # The app's own delete removes a user's items and keeps their posts, without an author.
        items: Mapped[list[Item]] = relationship(
            cascade="all, delete-orphan", default_factory=list, repr=False
        )
        posts: Mapped[list[Post]] = relationship(default_factory=list, repr=False)
        teams: Mapped[list[Team]] = relationship(
            secondary=user_teams, default_factory=list, repr=False
        )


    class Team(Base):
        __tablename__ = "teams"

        id: Mapped[int] = mapped_column(primary_key=True, init=False)


    class Item(Base):
        __tablename__ = "items"

        id: Mapped[int] = mapped_column(primary_key=True, init=False)
        owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))  # no ON DELETE
        comments: Mapped[list[ItemComment]] = relationship(
            cascade="all, delete-orphan", default_factory=list, repr=False
        )


    class ItemComment(Base):
        __tablename__ = "item_comments"

        id: Mapped[int] = mapped_column(primary_key=True, init=False)
        item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))


    class Post(Base):
        __tablename__ = "posts"

        id: Mapped[int] = mapped_column(primary_key=True, init=False)
        author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


    class Ticket(Base):
        # No relationship on User: the database's missing rule blocks, as it does for the app.
        __tablename__ = "tickets"

        id: Mapped[int] = mapped_column(primary_key=True, init=False)
        user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
"""


@pytest.fixture
def app_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app's models as a module in the folder usersctl runs in (its current folder)."""
    name = f"shop_models_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def build_shop(url: str, models: Any) -> None:
    """Users 1 (admin), 2 (mallory), 3 (eve); mallory owns 2 items with 1 comment, 2 posts."""
    meta = models.Base.metadata
    users, items, comments, posts = (
        meta.tables[name] for name in ("users", "items", "item_comments", "posts")
    )

    async def work(connection: Any) -> None:
        await connection.run_sync(meta.create_all)
        await connection.execute(
            users.insert(),
            [
                {
                    "id": n,
                    "email": f"{name}@example.com",
                    "hashed_password": "x",
                    "is_active": True,
                    "is_superuser": n == 1,
                    "is_verified": True,
                }
                for n, name in ((1, "admin"), (2, "mallory"), (3, "eve"))
            ],
        )
        await connection.execute(
            items.insert(), [{"id": 1, "owner_id": 2}, {"id": 2, "owner_id": 2}]
        )
        await connection.execute(comments.insert(), [{"id": 1, "item_id": 1}])
        await connection.execute(meta.tables["teams"].insert(), [{"id": 1}])
        await connection.execute(
            meta.tables["user_teams"].insert(),
            [{"user_id": 2, "team_id": 1}, {"user_id": 3, "team_id": 1}],
        )
        await connection.execute(
            posts.insert(),
            [{"id": 1, "author_id": 2}, {"id": 2, "author_id": 2}, {"id": 3, "author_id": 3}],
        )

    asyncio.run(_run(url, work))


def shop_counts(url: str, models: Any) -> dict[str, Any]:
    meta = models.Base.metadata

    async def work(connection: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in ("users", "items", "item_comments", "tickets", "user_teams"):
            query = select(func.count()).select_from(meta.tables[name])
            found[name] = (await connection.execute(query)).scalar_one()
        posts = meta.tables["posts"]
        found["post_authors"] = list(
            (await connection.execute(select(posts.c.author_id).order_by(posts.c.id))).scalars()
        )
        return found

    result: dict[str, Any] = asyncio.run(_run(url, work))
    return result


def test_model_relationships_delete_and_unset_as_the_app_does(
    empty_cli: Cli, database_url: str, app_models: Any
) -> None:
    build_shop(database_url, app_models)
    model = f"{app_models.__name__}:User"
    before = shop_counts(database_url, app_models)
    assert before == {
        "users": 3, "items": 2, "item_comments": 1, "tickets": 0, "user_teams": 2,
        "post_authors": [2, 2, 3],
    }  # fmt: skip
    result = empty_cli.ok("--model", model, "delete-user", "2", "--dry-run", "-o", "json")
    [row] = json.loads(result.stdout)
    assert related(row) == {
        "items.owner_id": (2, "deleted", "relationship User.items, cascade delete"),
        "item_comments.item_id": (1, "deleted", "relationship Item.comments, cascade delete"),
        "posts.author_id": (2, "set null", "relationship User.posts"),
        "user_teams.user_id": (1, "deleted", "relationship User.teams, many-to-many"),
    }
    assert shop_counts(database_url, app_models) == before
    empty_cli.ok("--model", model, "delete-user", "mallory@example.com", "--yes")
    assert shop_counts(database_url, app_models) == {
        "users": 2, "items": 0, "item_comments": 0, "tickets": 0, "user_teams": 1,
        "post_authors": [None, None, 3],
    }  # fmt: skip


def test_model_rows_without_a_rule_still_block(
    empty_cli: Cli, database_url: str, app_models: Any
) -> None:
    build_shop(database_url, app_models)
    tickets = app_models.Base.metadata.tables["tickets"]
    asyncio.run(
        _run(database_url, lambda c: c.execute(tickets.insert(), [{"id": 1, "user_id": 3}]))
    )
    model = f"{app_models.__name__}:User"
    message = empty_cli.fails(4, "--model", model, "delete-user", "eve@example.com", "--yes")
    assert "1 row of tickets.user_id" in message, message
    assert "posts" not in message
    assert shop_counts(database_url, app_models)["users"] == 3
    empty_cli.ok("--model", model, "delete-user", "3", "--reassign-to", "1", "--yes")
    assert shop_counts(database_url, app_models) == {
        "users": 2, "items": 2, "item_comments": 1, "tickets": 1, "user_teams": 1,
        "post_authors": [2, 2, None],
    }  # fmt: skip


# Unique and foreign-key violations in any command: exit 4 naming the constraint -----------------


def test_unique_and_foreign_key_violations_are_conflicts_named_in_words(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    build(database_url)

    async def extend(connection: Any) -> None:
        await connection.execute(text("CREATE TABLE tenant (id INTEGER PRIMARY KEY)"))
        await connection.execute(text("INSERT INTO tenant (id) VALUES (1)"))
        await connection.execute(text('ALTER TABLE "user" ADD COLUMN username VARCHAR(30)'))
        await connection.execute(
            text('ALTER TABLE "user" ADD COLUMN tenant_id INTEGER REFERENCES tenant (id)')
        )
        await connection.execute(text('CREATE UNIQUE INDEX uq_user_username ON "user" (username)'))

    asyncio.run(_run(database_url, extend))
    empty_cli.ok("update-user", "eve@example.com", "--set", "username=taken")
    message = empty_cli.fails(4, "update-user", "admin@example.com", "--set", "username=taken")
    assert "unique constraint" in message and "username" in message, message
    assert "IntegrityError" not in message
    assert "uq_user_username" in message  # on SQLite, found by usersctl: SQLite names the column
    message = empty_cli.fails(4, "update-user", "admin@example.com", "--set", "tenant_id=7")
    assert "foreign key" in message and "tenant_id" in message and "tenant" in message, message
    assert "IntegrityError" not in message
    empty_cli.ok("update-user", "admin@example.com", "--set", "tenant_id=1")
    # The same on create-user.
    message = empty_cli.fails(
        4, "create-user", "new@example.com", "--generate-password", "--set", "tenant_id=9"
    )
    assert "foreign key" in message and "tenant_id" in message, message
    assert counts(database_url)["user"] == 3
    # And on import-users (whose rows SQLite does not name: the constraint's kind is said).
    rows = empty_cli.cwd / "rows.jsonl"
    rows.write_text('{"email": "new@example.com", "password": "pw-123456", "username": "taken"}\n')
    message = empty_cli.fails(4, "import-users", str(rows))
    assert "unique constraint" in message and "username" in message, message
    rows.write_text(
        '{"email": "new@example.com", "password": "pw-123456", "tenant_id": 1}\n'
        '{"email": "newer@example.com", "password": "pw-123456", "tenant_id": 9}\n'
    )
    message = empty_cli.fails(4, "import-users", str(rows))
    assert "foreign key" in message and "tenant_id" in message, message
    if database_url.startswith("sqlite"):
        assert "line 2" in message  # found by empty_cli, SQLite does not say
    assert counts(database_url)["user"] == 3


def test_users_who_refer_to_a_user_are_reassigned_never_cascaded(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    ids = build(database_url)
    id_type = "UUID" if database_url.startswith("postgresql") else "CHAR(36)"
    invitations = Table(
        "user", MetaData(), Column("id", GUID, primary_key=True), Column("invited_by", GUID)
    )

    async def extend(connection: Any) -> None:
        await connection.execute(
            text(f'ALTER TABLE "user" ADD COLUMN invited_by {id_type} REFERENCES "user" (id)')
        )
        invited = invitations.c.id.in_([ids["eve"], ids["admin"]])
        await connection.execute(
            invitations.update().where(invited).values(invited_by=ids["mallory"])
        )

    asyncio.run(_run(database_url, extend))
    # Deleting the users who were invited is never what --cascade means.
    message = empty_cli.fails(
        4, "delete-user", "mallory@example.com", "--cascade", "--cascade-into", "item_comment",
        "--yes",
    )  # fmt: skip
    assert "2 rows of user.invited_by" in message, message
    assert "--cascade never deletes users" in message
    assert counts(database_url) == UNTOUCHED
    empty_cli.ok(
        "delete-user", "mallory@example.com", "--reassign-to", "admin@example.com", "--yes"
    )
    assert column_values(database_url, invitations.c.invited_by) == [ids["admin"], ids["admin"]]
    assert counts(database_url)["user"] == 2


# On a terminal: what would go is shown before the question; a blocked delete asks nothing --------


def test_the_question_comes_after_what_would_go(
    spawn: Any, usersctl: Any, database_url: str
) -> None:
    import pexpect

    usersctl.ok("init-db")
    build(database_url)
    child = spawn("delete-user", "mallory@example.com")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4
    assert "2 rows of item.owner_id" in (child.before or "")
    assert "[y/N]" not in (child.before or "")
    child = spawn("delete-user", "mallory@example.com", "--reassign-to", "admin@example.com")
    child.expect(r"2 rows of item.owner_id would be reassigned")
    child.expect(r"3 rows of note.user_id would be deleted \(ON DELETE CASCADE\)")
    child.expect(r"Delete 1 user\(s\): mallory@example.com\? \[y/N\]")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    assert counts(database_url) == {**UNTOUCHED, "user": 2, "note": 0}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # schemas are PostgreSQL's
def test_a_key_from_another_schema_is_still_a_named_conflict(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    ids = build(database_url)

    async def extend(connection: Any) -> None:
        await connection.execute(text("DROP SCHEMA IF EXISTS books CASCADE"))
        await connection.execute(text("CREATE SCHEMA books"))
        await connection.execute(
            text(
                "CREATE TABLE books.entry (id INTEGER PRIMARY KEY, "
                'user_id UUID CONSTRAINT fk_entry_user REFERENCES public."user" (id))'
            )
        )
        await connection.execute(
            text("INSERT INTO books.entry VALUES (1, :id)"), {"id": ids["eve"]}
        )

    async def drop(connection: Any) -> None:
        await connection.execute(text("DROP SCHEMA books CASCADE"))

    asyncio.run(_run(database_url, extend))
    try:
        # Only the user table's own schema is searched; the database still refuses, and says why.
        message = empty_cli.fails(
            4, "delete-user", "eve@example.com", "--reassign-to", "admin@example.com", "--yes"
        )
        assert "fk_entry_user" in message and "entry" in message, message
        assert "IntegrityError" not in message
        assert counts(database_url) == UNTOUCHED
    finally:
        asyncio.run(_run(database_url, drop))


def test_replies_go_with_the_comments_they_answer_but_no_cycle_is_followed(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    build(database_url)

    async def add_replies(connection: Any) -> None:
        await connection.execute(
            text(
                "ALTER TABLE item_comment ADD COLUMN reply_to INTEGER REFERENCES item_comment (id)"
            )
        )
        await connection.execute(text("UPDATE item_comment SET reply_to = 1 WHERE id = 2"))

    asyncio.run(_run(database_url, add_replies))
    cascade = ("--cascade", "--cascade-into", "item_comment")
    # Comment 2 answers comment 1, and both go: nothing blocks.
    result = empty_cli.ok("delete-user", "mallory@example.com", *cascade, "--dry-run", "-o", "json")
    [row] = json.loads(result.stdout)
    assert related(row)["item_comment.item_id"] == (3, "deleted", "--cascade-into")
    assert "item_comment.reply_to" not in related(row)

    async def answer_from_elsewhere(connection: Any) -> None:
        await connection.execute(
            text("INSERT INTO item_comment (id, item_id, reply_to) VALUES (4, 3, 1)")
        )

    asyncio.run(_run(database_url, answer_from_elsewhere))
    # A reply on eve's item to mallory's comment would point at nothing: refused, and named.
    message = empty_cli.fails(4, "delete-user", "mallory@example.com", *cascade, "--yes")
    assert "1 row of item_comment.reply_to" in message, message
    assert "a cycle back to item_comment" in message
    assert counts(database_url) == {**UNTOUCHED, "item_comment": 4}

    async def withdraw_the_answer(connection: Any) -> None:
        await connection.execute(text("DELETE FROM item_comment WHERE id = 4"))

    asyncio.run(_run(database_url, withdraw_the_answer))
    # Done for real, the comment and the reply to it go together (InnoDB, which checks a key
    # row by row, included).
    empty_cli.ok("delete-user", "mallory@example.com", *cascade, "--yes")
    after = counts(database_url)
    assert (after["user"], after["item_comment"]) == (2, 0)


def test_a_key_the_model_declares_counts_where_the_database_lacks_it(
    empty_cli: Cli, database_url: str, app_models: Any
) -> None:
    build_shop(database_url, app_models)

    async def without_the_key(connection: Any) -> None:
        await connection.execute(text("DROP TABLE tickets"))
        await connection.execute(
            text("CREATE TABLE tickets (id INTEGER PRIMARY KEY, user_id INTEGER)")
        )
        await connection.execute(text("INSERT INTO tickets VALUES (1, 3)"))

    asyncio.run(_run(database_url, without_the_key))
    model = f"{app_models.__name__}:User"
    # The database would let the ticket point at nobody; the model says it is eve's.
    message = empty_cli.fails(4, "--model", model, "delete-user", "eve@example.com", "--yes")
    assert "1 row of tickets.user_id" in message, message
    assert shop_counts(database_url, app_models)["users"] == 3
