"""import-users at the library's level (usersctl.importing.import_users from bytes or a file),
on every test database: what lands in the table under each conflict rule, the exact refusals,
dry runs, the last-superuser guard, ended sessions, integer ids and the id sequence, and the
pieces of the writing stage (multi-row INSERTs, defaults, grouped UPDATEs).

Tables are made with plain SQL, users seeded and effects checked with plain SQL. Passwords are
hashed at Argon2's lowest cost (the harness's ``quick_hashing``). Quick enough for the mutation
runs of the importing package's planning, writing and importer (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from harness import Database, app_module, execute, is_mysql, seed_hash, serial_primary_key
from usersctl.errors import ConstraintConflict, InvalidInput, LastSuperuser
from usersctl.importing import import_users
from usersctl.importing.checking import NO_PASSWORD_FOR_NEW_USER
from usersctl.importing.rows import ImportConflict, ImportRejected
from usersctl.importing.writing import PreparedInsert, _sqlite_multi_row, group_by_columns
from usersctl.passwords import verify_password

pytestmark = pytest.mark.usefixtures("quick_hashing")

ANN = "00000000-0000-0000-0000-00000000000a"
BEN = "00000000-0000-0000-0000-00000000000b"
NEW = "00000000-0000-0000-0000-0000000000ff"
BCRYPT_HASH = "$2b$04$" + "a" * 53


def make_table(url: str, *, unique_key: bool = True, tokens: bool = False) -> Database:
    """FastAPI Users' user table (UUID ids), optionally with its access token table."""
    id_type = "UUID" if url.startswith("postgresql") else "CHAR(36)"
    statements = [
        f'CREATE TABLE "user" (id {id_type} NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)"
    ]
    if unique_key:
        # MySQL/MariaDB compare in their case-insensitive collation: email itself is the key.
        key = "email" if is_mysql(url) else "lower(email)"
        statements.append(f'CREATE UNIQUE INDEX ix_user_email_lower ON "user" ({key})')
    if tokens:
        statements.append(
            "CREATE TABLE accesstoken (token VARCHAR(43) PRIMARY KEY, created_at TIMESTAMP, "
            f'user_id {id_type} NOT NULL REFERENCES "user"(id))'
        )
    execute(url, *statements)
    return Database(url)


def jsonl(*records: dict[str, Any]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def run_import(url: str, data: bytes | Path, **options: Any) -> Any:
    if isinstance(data, Path):
        with data.open("rb") as stream:
            return asyncio.run(import_users(url, stream, **options))
    return asyncio.run(import_users(url, io.BytesIO(data), **options))


def users(db: Database) -> dict[str, dict[str, Any]]:
    """The stored users by email: id as text, flags as booleans."""
    found = {}
    for row in db.query('SELECT * FROM "user"'):
        row["id"] = str(row["id"])
        for flag in ("is_active", "is_superuser", "is_verified"):
            row[flag] = bool(row[flag])
        found[row["email"]] = row
    return found


def seed_ann_and_ben(db: Database) -> None:
    db.seed_specs(
        {"id": ANN, "email": "ann@example.com", "is_superuser": True, "is_verified": True},
        {"id": BEN, "email": "Ben@example.com", "hashed_password": BCRYPT_HASH},
    )


# Creating ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["file", "pipe"])
def test_new_users_are_created_with_their_hashes_and_flags(
    database_url: str, tmp_path: Path, source: str
) -> None:
    db = make_table(database_url)
    data = jsonl(
        {"email": "Cy@Example.com", "hashed_password": BCRYPT_HASH, "is_verified": True},
        {"email": "dee@example.com", "hashed_password": BCRYPT_HASH, "id": NEW},
    )
    path = tmp_path / "users.jsonl"
    path.write_bytes(data)
    seen: list[tuple[str, int, int]] = []
    summary = run_import(
        database_url, path if source == "file" else data, progress=lambda *s: seen.append(s)
    )
    assert summary.as_dict() == {
        "created": 2,
        "updated": 0,
        "skipped": 0,
        "invalid": 0,
        "revoked_tokens": 0,
        "dry_run": False,
    }
    assert seen == [("writing", 2, 0 if source == "file" else 2)]
    stored = users(db)
    assert sorted(stored) == ["Cy@example.com", "dee@example.com"]
    assert stored["dee@example.com"]["id"] == NEW
    uuid.UUID(stored["Cy@example.com"]["id"])
    assert stored["Cy@example.com"]["hashed_password"] == BCRYPT_HASH
    flags = [stored["Cy@example.com"][f] for f in ("is_active", "is_superuser", "is_verified")]
    assert flags == [True, False, True]


def test_plaintext_passwords_are_hashed_before_they_are_written(database_url: str) -> None:
    db = make_table(database_url)
    seen: list[tuple[str, int, int]] = []
    summary = run_import(
        database_url,
        jsonl(
            {"email": "cy@example.com", "password": "cy's long passphrase"},
            {"email": "dee@example.com", "hashed_password": BCRYPT_HASH},
        ),
        progress=lambda *s: seen.append(s),
    )
    assert summary.created == 2 and summary.hash_note is None
    assert verify_password("cy's long passphrase", db.stored_hash("cy@example.com"))
    assert db.stored_hash("cy@example.com").startswith("$argon2id$")
    assert seen == [("hashing", 1, 1), ("writing", 2, 2)]


def test_bcrypt_is_chosen_where_the_table_holds_bcrypt_only(database_url: str) -> None:
    db = make_table(database_url)
    db.seed_specs({"email": "ben@example.com", "hashed_password": BCRYPT_HASH})
    summary = run_import(
        database_url, jsonl({"email": "cy@example.com", "password": "cy's long passphrase"})
    )
    assert db.stored_hash("cy@example.com").startswith("$2b$")
    assert summary.hash_note is not None and "bcrypt" in summary.hash_note


def test_a_dry_run_reports_and_writes_nothing(database_url: str, tmp_path: Path) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    before = users(db)
    data = jsonl(
        {"email": "cy@example.com", "password": "cy's long passphrase"},
        {"email": "dee@example.com", "password": "dee's long passphrase"},
        {"email": "ANN@example.com", "password": "ann's long passphrase"},
    )
    summary = run_import(database_url, data, on_conflict="update", dry_run=True)
    assert summary.as_dict() == {
        "created": 2,
        "updated": 1,
        "skipped": 0,
        "invalid": 0,
        "revoked_tokens": 0,
        "dry_run": True,
    }
    path = tmp_path / "users.jsonl"
    path.write_bytes(jsonl({"email": "eve@example.com", "hashed_password": BCRYPT_HASH}))
    assert run_import(database_url, path, dry_run=True).created == 1
    assert users(db) == before


def test_an_unknown_rule_is_refused(database_url: str) -> None:
    make_table(database_url)
    with pytest.raises(InvalidInput) as refused:
        run_import(database_url, b"", on_conflict="merge")
    assert str(refused.value) == "--on-conflict must be one of fail, skip, update"


# Conflicts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["file", "pipe"])
def test_under_fail_an_existing_address_refuses_the_whole_file(
    database_url: str, tmp_path: Path, source: str
) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    before = users(db)
    data = jsonl(
        {"email": "cy@example.com", "hashed_password": BCRYPT_HASH},
        {"email": "BEN@example.com", "hashed_password": BCRYPT_HASH},
    )
    path = tmp_path / "users.jsonl"
    path.write_bytes(data)
    with pytest.raises(ImportConflict) as conflict:
        run_import(database_url, path if source == "file" else data)
    assert [str(p) for p in conflict.value.problems] == ["line 2: BEN@example.com already exists"]
    assert users(db) == before


def test_a_conflict_is_found_before_any_password_is_hashed(database_url: str) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    seen: list[tuple[str, int, int]] = []
    data = jsonl(
        {"email": "cy@example.com", "password": "cy's long passphrase"},
        {"email": "ann@example.com", "password": "ann's long passphrase"},
    )
    with pytest.raises(ImportConflict):
        run_import(database_url, data, progress=lambda *s: seen.append(s))
    assert seen == []


def test_under_skip_existing_users_are_left_and_not_hashed_for(database_url: str) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    before = users(db)
    seen: list[tuple[str, int, int]] = []
    data = jsonl(
        {"email": "ANN@example.com", "password": "ann's long passphrase", "id": NEW},
        {"email": "cy@example.com", "password": "cy's long passphrase"},
        {"email": "ben@example.com", "password": "ben's long passphrase"},
        {"email": "cy@example.com", "password": "cy's other passphrase"},
    )
    summary = run_import(database_url, data, on_conflict="skip", progress=lambda *s: seen.append(s))
    assert (summary.created, summary.updated, summary.skipped) == (1, 0, 3)
    after = users(db)
    assert {k: v for k, v in after.items() if k != "cy@example.com"} == before
    assert verify_password("cy's long passphrase", after["cy@example.com"]["hashed_password"])
    assert seen == [("hashing", 1, 1), ("writing", 1, 1)]


def test_under_update_users_take_the_given_fields_and_keep_the_rest(database_url: str) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    db.seed_specs({"email": "zed@example.com", "is_superuser": True})
    data = jsonl(
        {"email": "ann@example.com", "hashed_password": BCRYPT_HASH, "is_superuser": False},
        {"email": "ben@example.com", "is_active": False, "id": NEW},
        {"email": "cy@example.com", "password": "cy's long passphrase"},
    )
    seen: list[tuple[str, int, int]] = []
    summary = run_import(
        database_url, data, on_conflict="update", progress=lambda *s: seen.append(s)
    )
    assert (summary.created, summary.updated, summary.skipped) == (1, 2, 0)
    stored = users(db)
    # The row's address replaces the stored spelling (Ben@ -> ben@).
    ann, ben = stored["ann@example.com"], stored["ben@example.com"]
    assert (ann["id"], ann["hashed_password"], ann["is_superuser"], ann["is_verified"]) == (
        ANN,
        BCRYPT_HASH,
        False,
        True,
    )
    assert (ben["id"], ben["hashed_password"], ben["is_active"]) == (BEN, BCRYPT_HASH, False)
    assert "cy@example.com" in stored
    assert seen[0] == ("hashing", 1, 1)
    assert seen[1:] == [("writing", 1, 3), ("writing", 2, 3), ("writing", 3, 3)]


def test_an_update_row_without_a_password_for_a_new_user_is_invalid(database_url: str) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    data = jsonl(
        {"email": "ann@example.com", "is_verified": False},
        {"email": "cy@example.com", "is_verified": True},
    )
    with pytest.raises(ImportRejected) as rejected:
        run_import(database_url, data, on_conflict="update")
    assert [str(p) for p in rejected.value.problems] == [f"line 2: {NO_PASSWORD_FOR_NEW_USER}"]
    assert db.flag("ann@example.com", "is_verified") is True


@pytest.mark.parametrize("rule", ["fail", "skip", "update"])
def test_an_id_that_belongs_to_another_address(database_url: str, rule: str) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    data = jsonl({"email": "cy@example.com", "hashed_password": BCRYPT_HASH, "id": BEN})
    if rule == "skip":
        assert run_import(database_url, data, on_conflict=rule).skipped == 1
        assert db.count() == 2
        return
    with pytest.raises(ImportConflict) as conflict:
        run_import(database_url, data, on_conflict=rule)
    assert [str(p) for p in conflict.value.problems] == [
        f"line 1: id {BEN} belongs to ben@example.com"
    ]
    # The address of one user with the id of another: the id decides it is no update.
    data = jsonl({"email": "ann@example.com", "hashed_password": BCRYPT_HASH, "id": BEN})
    with pytest.raises(ImportConflict):
        run_import(database_url, data, on_conflict=rule)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_an_address_stored_in_several_cases_is_updated_only_exactly(database_url: str) -> None:
    db = make_table(database_url, unique_key=False)
    db.seed_specs({"email": "dup@example.com"}, {"email": "Dup@example.com"})
    data = jsonl({"email": "Dup@example.com", "is_verified": True})
    assert run_import(database_url, data, on_conflict="update").updated == 1
    verified = {row["email"]: bool(row["is_verified"]) for row in db.rows()}
    assert verified == {"Dup@example.com": True, "dup@example.com": False}
    with pytest.raises(ImportConflict) as conflict:
        run_import(database_url, jsonl({"email": "DUP@example.com"}), on_conflict="update")
    assert [str(p) for p in conflict.value.problems] == [
        "line 1: several users have the address: Dup@example.com, dup@example.com"
    ]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_matches_letters_beyond_ascii_in_any_case(database_url: str, tmp_path: Path) -> None:
    # SQLite's lower() and its index fold ASCII letters only.
    db = make_table(database_url)
    db.seed_specs({"email": "élan@example.com"})
    data = jsonl({"email": "ÉLAN@example.com", "hashed_password": BCRYPT_HASH})
    path = tmp_path / "users.jsonl"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(ImportConflict) as conflict:
            run_import(database_url, source)
        assert [str(p) for p in conflict.value.problems] == [
            "line 1: ÉLAN@example.com already exists"
        ]
    assert run_import(database_url, data, on_conflict="skip").skipped == 1
    assert run_import(database_url, data, on_conflict="update").updated == 1
    assert db.count() == 1
    plain = jsonl({"email": "ölaf@example.com", "hashed_password": BCRYPT_HASH})
    assert run_import(database_url, plain).created == 1


# Guards --------------------------------------------------------------------------------------------


def test_an_update_that_leaves_no_active_superuser_is_refused_unless_forced(
    database_url: str,
) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    data = jsonl({"email": "ann@example.com", "is_active": False})
    with pytest.raises(LastSuperuser) as refused:
        run_import(database_url, data, on_conflict="update")
    assert str(refused.value) == (
        "refusing to leave no active superuser (the import demotes or deactivates "
        "ann@example.com); use --force to do it anyway"
    )
    assert db.flag("ann@example.com", "is_active") is True
    assert run_import(database_url, data, on_conflict="update", force=True).updated == 1
    assert db.flag("ann@example.com", "is_active") is False


def test_a_new_password_or_a_deactivation_ends_the_user_s_sessions(database_url: str) -> None:
    # On MariaDB the users to look up were bound as an array it does not have (a TypeError of
    # the driver) until sessions_to_end took the expanding IN of planning.among.
    db = make_table(database_url, tokens=True)
    seed_ann_and_ben(db)
    db.seed_specs({"id": NEW, "email": "cy@example.com"})
    db.execute(
        "INSERT INTO accesstoken (token, created_at, user_id) VALUES "
        f"('ann-1', CURRENT_TIMESTAMP, '{ANN}'), ('ann-2', CURRENT_TIMESTAMP, '{ANN}'), "
        f"('ben-1', CURRENT_TIMESTAMP, '{BEN}'), ('cy-1', CURRENT_TIMESTAMP, '{NEW}')"
    )
    data = jsonl(
        {"email": "ann@example.com", "hashed_password": BCRYPT_HASH},
        {"email": "ben@example.com", "hashed_password": BCRYPT_HASH, "is_verified": True},
        {"email": "cy@example.com", "is_active": False},
    )
    kept = run_import(database_url, data, on_conflict="update", keep_sessions=True)
    assert kept.revoked_tokens == 0 and db.count("accesstoken") == 4
    db.execute(
        f"UPDATE \"user\" SET hashed_password = '{seed_hash()}', is_active = true "
        f"WHERE id <> '{BEN}'"
    )
    summary = run_import(database_url, data, on_conflict="update")
    assert (summary.updated, summary.revoked_tokens) == (3, 3)
    assert [row["token"] for row in db.query("SELECT token FROM accesstoken")] == ["ben-1"]


# Integer ids -------------------------------------------------------------------------------------


def integer_table(url: str) -> Database:
    identity = serial_primary_key(url)
    execute(
        url,
        f'CREATE TABLE "user" (id {identity}, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, nick VARCHAR(20))",
    )
    return Database(url)


@pytest.mark.parametrize("source", ["file", "pipe"])
def test_imported_integer_ids_move_the_sequence_past_them(
    database_url: str, tmp_path: Path, source: str
) -> None:
    db = integer_table(database_url)
    data = jsonl(
        {"email": "a@example.com", "hashed_password": BCRYPT_HASH, "id": 7, "nick": "a"},
        {"email": "b@example.com", "hashed_password": BCRYPT_HASH, "id": 9},
        {"email": "c@example.com", "hashed_password": BCRYPT_HASH},
    )
    path = tmp_path / "users.jsonl"
    path.write_bytes(data)
    assert run_import(database_url, path if source == "file" else data).created == 3
    db.execute(
        'INSERT INTO "user" (email, hashed_password, is_active, is_superuser, is_verified) '
        "VALUES ('d@example.com', 'x', true, false, false)"
    )
    ids = {row["email"]: row["id"] for row in db.query('SELECT id, email FROM "user"')}
    assert ids["a@example.com"] == 7 and ids["b@example.com"] == 9
    assert ids["d@example.com"] > 9 and ids["c@example.com"] not in (7, 9)
    assert db.query('SELECT nick FROM "user" WHERE id = 7') == [{"nick": "a"}]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_sequence_is_never_moved_back_nor_by_a_dry_run(database_url: str) -> None:
    db = integer_table(database_url)
    db.execute("SELECT setval(pg_get_serial_sequence('\"user\"', 'id'), 50)")
    run_import(
        database_url, jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH, "id": 7})
    )
    run_import(
        database_url,
        jsonl({"email": "b@example.com", "hashed_password": BCRYPT_HASH, "id": 80}),
        dry_run=True,
    )
    run_import(
        database_url,
        jsonl({"email": "c@example.com", "password": "c's long passphrase", "id": 60}),
        dry_run=True,
    )
    db.execute(
        'INSERT INTO "user" (email, hashed_password, is_active, is_superuser, is_verified) '
        "VALUES ('d@example.com', 'x', true, false, false)"
    )
    assert db.query("SELECT id FROM \"user\" WHERE email = 'd@example.com'") == [{"id": 51}]


# The writing stage's pieces ----------------------------------------------------------------------


def test_rows_are_grouped_by_the_fields_they_give() -> None:
    rows = [{"a": 1, "b": 2}, {"b": 3, "a": 4}, {"a": 5}, {"a": 6, "b": 7}]
    assert list(group_by_columns(rows)) == [
        (("a", "b"), [rows[0], rows[1], rows[3]]),
        (("a",), [rows[2]]),
    ]


def test_sqlite_inserts_many_rows_a_statement_within_its_limit() -> None:
    statement = PreparedInsert("INSERT INTO t (a, b) VALUES (?, ?)", [(1, 2), (3, 4), (5, 6)])
    assert list(_sqlite_multi_row(statement, 4)) == [
        ("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)", (1, 2, 3, 4)),
        ("INSERT INTO t (a, b) VALUES (?, ?)", (5, 6)),
    ]
    assert list(_sqlite_multi_row(statement, 1)) == [
        ("INSERT INTO t (a, b) VALUES (?, ?)", (1, 2)),
        ("INSERT INTO t (a, b) VALUES (?, ?)", (3, 4)),
        ("INSERT INTO t (a, b) VALUES (?, ?)", (5, 6)),
    ]
    for sql in ("INSERT INTO t (a) SELECT 1", "INSERT INTO t (a) VALUES (?) RETURNING a"):
        odd = PreparedInsert(sql, [(1,)])
        assert list(_sqlite_multi_row(odd, 100)) == [(sql, [(1,)])]


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_mariadb_stores_rows_sent_in_binary_as_rows_sent_as_text(database_url: str) -> None:
    # MariaDB takes rows of text, integers and NULLs as one binary bulk statement; others (a
    # date, a column of NULLs only) as text. Both store what the file says: marks of either
    # kind (?, %s) in names and values are data, not parameters.
    db = make_table(database_url)
    db.execute('ALTER TABLE "user" ADD "50%s?" VARCHAR(50), ADD note VARCHAR(100), ADD born DATE')
    note = "? %s %% 'q' \"d\" \\ \u00e9 \U0001f600"
    binary = [
        {"email": f"b{n}@example.com", "hashed_password": BCRYPT_HASH, "50%s?": f"?{n}%s"}
        for n in range(3)
    ]
    binary[1]["note"] = note
    text = [
        {"email": "t0@example.com", "hashed_password": BCRYPT_HASH, "born": "2001-02-03"},
        {"email": "t1@example.com", "hashed_password": BCRYPT_HASH, "note": None, "is_active": 0},
    ]
    assert run_import(database_url, jsonl(*binary)).created == 3
    assert run_import(database_url, jsonl(*text)).created == 2
    stored = db.query('SELECT email, "50%s?" AS marks, note, born, is_active FROM "user"')
    assert sorted((row["email"], row["marks"], row["note"], row["born"]) for row in stored) == [
        ("b0@example.com", "?0%s", None, None),
        ("b1@example.com", "?1%s", note, None),
        ("b2@example.com", "?2%s", None, None),
        ("t0@example.com", None, None, datetime.date(2001, 2, 3)),
        ("t1@example.com", None, None, None),
    ]
    assert {row["email"]: bool(row["is_active"]) for row in stored}["t1@example.com"] is False


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("identity", ["SERIAL", "INTEGER GENERATED ALWAYS AS IDENTITY"])
def test_a_dry_run_gives_new_users_ids_without_taking_them(
    database_url: str, identity: str, tmp_path: Path
) -> None:
    execute(
        database_url,
        f'CREATE TABLE "user" (id {identity} PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)",
    )
    db = Database(database_url)
    rows = [{"email": f"u{n}@example.com", "hashed_password": BCRYPT_HASH} for n in range(3)]
    path = tmp_path / "users.jsonl"
    path.write_bytes(jsonl(*rows))
    for source in (path, jsonl(*rows)):
        assert run_import(database_url, source, dry_run=True).created == 3
    assert run_import(database_url, jsonl(*rows), on_conflict="skip", dry_run=True).created == 3
    assert db.count() == 0
    assert run_import(database_url, jsonl(*rows)).created == 3
    ids = sorted(row["id"] for row in db.query('SELECT id FROM "user"'))
    assert ids == [1, 2, 3]  # the dry runs took none


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_dry_run_keeps_the_ids_rows_give(database_url: str) -> None:
    db = integer_table(database_url)
    data = jsonl(
        {"email": "a@example.com", "hashed_password": BCRYPT_HASH, "id": 40},
        {"email": "b@example.com", "hashed_password": BCRYPT_HASH},
    )
    assert run_import(database_url, data, on_conflict="skip", dry_run=True).created == 2
    assert db.count() == 0
    assert run_import(database_url, data, on_conflict="skip").created == 2
    ids = {row["email"]: row["id"] for row in db.query('SELECT id, email FROM "user"')}
    assert ids == {"a@example.com": 40, "b@example.com": 1}


#: An app's user class inheriting from a principals table.
PRINCIPAL_MODEL = (Path(__file__).resolve().parent / "e2e" / "principal_app_model.py").read_text()


def test_an_app_s_user_subclass_is_written_through_its_mapper(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness import cli

    name = app_module(tmp_path, monkeypatch, "principal_import", PRINCIPAL_MODEL)
    model = f"{name}:User"
    created = cli(database_url, "--model", model, "init-db", cwd=tmp_path)
    assert created.exit_code == 0, created.output
    db = Database(database_url)
    data = jsonl(
        {"email": "ann@example.com", "hashed_password": BCRYPT_HASH, "nickname": "Ann"},
        {"email": "ben@example.com", "hashed_password": BCRYPT_HASH, "id": NEW},
    )
    path = tmp_path / "users.jsonl"
    path.write_bytes(data)
    assert run_import(database_url, path, model_path=model, dry_run=True).created == 2
    assert db.count("principals") == 0
    assert run_import(database_url, path, model_path=model).created == 2
    stored = {row["email"]: row for row in db.query('SELECT id, email, nickname FROM "user"')}
    parents = {
        str(row["id"]): row for row in db.query("SELECT id, type, created_at FROM principals")
    }
    assert sorted(stored) == ["ann@example.com", "ben@example.com"]
    assert str(stored["ben@example.com"]["id"]) == NEW
    assert stored["ann@example.com"]["nickname"] == "Ann"
    assert {row["type"] for row in parents.values()} == {"user"}
    assert set(parents) == {str(row["id"]) for row in stored.values()}
    assert all(row["created_at"] is not None for row in parents.values())
    update = jsonl({"email": "ann@example.com", "nickname": "Annie", "is_verified": True})
    assert run_import(database_url, update, model_path=model, on_conflict="update").updated == 1
    assert (
        db.query("SELECT nickname, is_verified FROM \"user\" WHERE email = 'ann@example.com'")[0][
            "nickname"
        ]
        == "Annie"
    )


@pytest.mark.parametrize("rule", ["fail", "update"])
@pytest.mark.parametrize("source", ["file", "pipe"])
def test_small_batches_write_and_look_up_the_same(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule: str, source: str
) -> None:
    from usersctl.importing import importer, planning, writing

    monkeypatch.setattr(planning, "LOOKUP_BATCH", 1)
    monkeypatch.setattr(writing, "WRITE_BATCH", 2)
    monkeypatch.setattr(importer, "WRITE_BATCH", 2)
    db = make_table(database_url, tokens=True)
    if rule == "update":
        seed_ann_and_ben(db)
        db.execute(f"INSERT INTO accesstoken VALUES ('t', CURRENT_TIMESTAMP, '{BEN}')")
    records = [{"email": f"new{n}@example.com", "hashed_password": BCRYPT_HASH} for n in range(5)]
    if rule == "update":
        records += [
            {"email": "ann@example.com", "is_verified": False},
            {"email": "ben@example.com", "is_active": False},
        ]
    path = tmp_path / "users.jsonl"
    path.write_bytes(jsonl(*records))
    seen: list[tuple[str, int, int]] = []
    summary = run_import(
        database_url,
        path if source == "file" else jsonl(*records),
        on_conflict=rule,
        progress=lambda *s: seen.append(s),
    )
    if rule == "update":
        assert (summary.created, summary.updated, summary.revoked_tokens) == (5, 2, 1)
        assert seen == [("writing", n, 7) for n in (2, 4, 5, 6, 7)]
        assert db.flag("ann@example.com", "is_verified") is False
        assert db.flag("ben@example.com", "is_active") is False
    else:
        assert summary.created == 5
        total = 0 if source == "file" else 5
        assert seen == [("writing", n, total) for n in (2, 4, 5)]
    assert db.count() == 5 + (2 if rule == "update" else 0)


def test_a_conflict_is_found_in_any_lookup_batch(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usersctl.importing import planning

    monkeypatch.setattr(planning, "LOOKUP_BATCH", 2)
    db = make_table(database_url)
    db.seed_specs({"email": "e@example.com"}, {"id": NEW, "email": "z@example.com"})
    records = [
        {"email": f"{letter}@example.com", "password": "a long passphrase"} for letter in "abcde"
    ]
    with pytest.raises(ImportConflict) as conflict:
        run_import(database_url, jsonl(*records))
    assert [str(p) for p in conflict.value.problems] == ["line 5: e@example.com already exists"]
    records[0]["id"] = NEW
    summary = run_import(database_url, jsonl(*records), on_conflict="skip")
    assert (summary.created, summary.skipped) == (3, 2)


MANAGER = """
import uuid

from fastapi_users import BaseUserManager, InvalidPasswordException, UUIDIDMixin
from fastapi_users.password import PasswordHelper
from pwdlib import PasswordHash
from pwdlib.hashers.bcrypt import BcryptHasher

REGISTERED = []


class UserManager(UUIDIDMixin, BaseUserManager):
    reset_password_token_secret = verification_token_secret = "secret"

    def __init__(self, user_db):
        super().__init__(user_db, PasswordHelper(PasswordHash((BcryptHasher(rounds=4),))))

    async def validate_password(self, password, user):
        if "app" not in password:
            raise InvalidPasswordException(reason="it must say app")

    async def on_after_register(self, user, request=None):
        REGISTERED.append(user.email)
"""


def test_the_app_s_user_manager_checks_hashes_and_hears_of_new_users(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    name = app_module(tmp_path, monkeypatch, "import_manager", MANAGER)
    app = importlib.import_module(name)
    db = make_table(database_url)
    manager = f"{name}:UserManager"
    with pytest.raises(ImportRejected) as rejected:
        run_import(
            database_url,
            jsonl(
                {"email": "a@example.com", "password": "the app's own passphrase"},
                {"email": "b@example.com", "password": "short"},
            ),
            user_manager_path=manager,
        )
    assert [str(p) for p in rejected.value.problems] == [
        "line 2: the app refused the password: it must say app"
    ]
    data = jsonl(
        {"email": "a@example.com", "password": "the app's own passphrase"},
        {"email": "b@example.com", "hashed_password": BCRYPT_HASH},
        {"email": "c@example.com", "password": "short"},
    )
    summary = run_import(
        database_url, data, user_manager_path=manager, hooks=True, allow_weak_passwords=True
    )
    assert summary.created == 3
    assert db.stored_hash("a@example.com").startswith("$2b$04$")
    assert verify_password("short", db.stored_hash("c@example.com"))
    assert app.REGISTERED == ["a@example.com", "b@example.com", "c@example.com"]
    path = tmp_path / "more.jsonl"
    path.write_bytes(jsonl({"email": "d@example.com", "hashed_password": BCRYPT_HASH}))
    assert run_import(database_url, path, user_manager_path=manager, hooks=True).created == 1
    assert (
        run_import(
            database_url,
            jsonl({"email": "e@example.com", "hashed_password": BCRYPT_HASH}),
            user_manager_path=manager,
        ).created
        == 1
    )
    assert app.REGISTERED == ["a@example.com", "b@example.com", "c@example.com", "d@example.com"]


def test_the_policy_refuses_weak_passwords_unless_allowed(database_url: str) -> None:
    db = make_table(database_url)
    data = jsonl({"email": "a@example.com", "password": "password"})
    with pytest.raises(ImportRejected) as rejected:
        run_import(database_url, data)
    assert str(rejected.value).startswith(
        "1 row is invalid, nothing was written: line 1: password is too weak:"
    )
    assert run_import(database_url, data, allow_weak_passwords=True).created == 1
    assert verify_password("password", db.stored_hash("a@example.com"))


def test_unknown_hashes_are_refused_unless_kept(database_url: str) -> None:
    db = make_table(database_url)
    data = jsonl({"email": "a@example.com", "hashed_password": "md5$abc"})
    with pytest.raises(ImportRejected):
        run_import(database_url, data)
    assert run_import(database_url, data, keep_unknown_hashes=True).created == 1
    assert db.stored_hash("a@example.com") == "md5$abc"


def test_a_formula_safe_csv_cell_is_read_back_unless_raw(database_url: str) -> None:
    db = make_table(database_url)
    data = f"email,hashed_password\n'=a@example.com,{BCRYPT_HASH}\n".encode()
    assert run_import(database_url, data, fmt="csv").created == 1
    assert db.emails() == ["=a@example.com"]
    data = f"email,hashed_password\n'+b@example.com,{BCRYPT_HASH}\n".encode()
    assert run_import(database_url, data, raw_csv=True).created == 1
    assert db.emails() == ["'+b@example.com", "=a@example.com"]


def test_the_hash_scheme_and_the_app_s_helper_choose_new_hashes(database_url: str) -> None:
    from pwdlib import PasswordHash
    from pwdlib.hashers.bcrypt import BcryptHasher

    from usersctl.passwords import Hashing

    db = make_table(database_url)
    run_import(
        database_url,
        jsonl({"email": "a@example.com", "password": "a long passphrase"}),
        hash_scheme="bcrypt",
    )
    assert db.stored_hash("a@example.com").startswith("$2b$")
    helper = Hashing("app", PasswordHash((BcryptHasher(rounds=5),)))
    run_import(
        database_url,
        jsonl({"email": "b@example.com", "password": "a long passphrase"}),
        password_helper=helper,
    )
    assert db.stored_hash("b@example.com").startswith("$2b$05$")


def test_every_row_is_decided_and_counted(database_url: str) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    # Two rows of new users without a password: both are reported, before any hashing.
    seen: list[tuple[str, int, int]] = []
    data = jsonl(
        {"email": "cy@example.com", "is_verified": True},
        {"email": "ann@example.com", "password": "ann's new passphrase"},
        {"email": "dee@example.com", "is_verified": True},
    )
    with pytest.raises(ImportRejected) as rejected:
        run_import(database_url, data, on_conflict="update", progress=lambda *s: seen.append(s))
    assert [str(p) for p in rejected.value.problems] == [
        f"line 1: {NO_PASSWORD_FOR_NEW_USER}",
        f"line 3: {NO_PASSWORD_FOR_NEW_USER}",
    ]
    assert seen == []
    # Two rows whose ids belong to others: both skipped.
    data = jsonl(
        {"email": "cy@example.com", "hashed_password": BCRYPT_HASH, "id": ANN},
        {"email": "dee@example.com", "hashed_password": BCRYPT_HASH, "id": BEN},
    )
    assert run_import(database_url, data, on_conflict="skip").skipped == 2
    with pytest.raises(ImportConflict) as conflict:
        run_import(database_url, data, on_conflict="fail")
    assert len(conflict.value.problems) == 2


def test_an_update_with_a_new_plaintext_password_stores_its_hash(database_url: str) -> None:
    db = make_table(database_url)
    seed_ann_and_ben(db)
    data = jsonl(
        {"email": "ann@example.com", "password": "ann's new passphrase"},
        {"email": "cy@example.com", "password": "cy's long passphrase"},
    )
    summary = run_import(database_url, data, on_conflict="update")
    assert (summary.created, summary.updated) == (1, 1)
    assert verify_password("ann's new passphrase", db.stored_hash("ann@example.com"))
    assert verify_password("cy's long passphrase", db.stored_hash("cy@example.com"))


def test_an_update_that_changes_neither_password_nor_activity_keeps_sessions(
    database_url: str,
) -> None:
    db = make_table(database_url, tokens=True)
    seed_ann_and_ben(db)
    db.execute(
        "INSERT INTO accesstoken (token, created_at, user_id) VALUES "
        f"('ann-1', CURRENT_TIMESTAMP, '{ANN}'), ('ben-1', CURRENT_TIMESTAMP, '{BEN}')"
    )
    data = jsonl(
        {"email": "ann@example.com", "is_verified": False},
        {"email": "ben@example.com", "is_active": True, "hashed_password": BCRYPT_HASH},
    )
    summary = run_import(database_url, data, on_conflict="update")
    assert (summary.updated, summary.revoked_tokens) == (2, 0)
    assert db.count("accesstoken") == 2


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_several_addresses_each_stored_in_several_cases_are_each_a_conflict(
    database_url: str,
) -> None:
    db = make_table(database_url, unique_key=False)
    db.seed_specs(
        {"email": "dup@example.com"},
        {"email": "Dup@example.com"},
        {"email": "two@example.com"},
        {"email": "TWO@example.com"},
    )
    data = jsonl({"email": "DUP@example.com"}, {"email": "Two@example.com"})
    with pytest.raises(ImportConflict) as conflict:
        run_import(database_url, data, on_conflict="update")
    assert [str(p) for p in conflict.value.problems] == [
        "line 1: several users have the address: Dup@example.com, dup@example.com",
        "line 2: several users have the address: TWO@example.com, two@example.com",
    ]


# The importer's own choices ----------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_import_turns_a_sqlite_file_to_wal(database_url: str) -> None:
    # It opens the file to write: WAL, so that the app's readers do not wait for the import.
    import sqlite3

    db = make_table(database_url)
    path = db.sqlite_path
    assert path is not None
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    run_import(database_url, jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH}))
    with sqlite3.connect(path) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_table_named_is_the_one_written(database_url: str) -> None:
    db = make_table(database_url)
    id_type = "UUID" if database_url.startswith("postgresql") else "CHAR(36)"
    db.execute(
        f"CREATE TABLE staff (id {id_type} NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, "
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)"
    )
    data = jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH})
    assert run_import(database_url, data, table="staff").created == 1
    assert db.query("SELECT email FROM staff") == [{"email": "a@example.com"}]
    assert db.count() == 0


def test_the_connect_timeout_bounds_the_wait_for_a_silent_server() -> None:
    import socket
    import time

    from usersctl.errors import DatabaseProblem

    # A server that accepts TCP but never answers PostgreSQL's startup message.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises((DatabaseProblem, TimeoutError, OSError)):
            run_import(
                f"postgresql://app@127.0.0.1:{port}/app",
                jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH}),
                connect_timeout=0.5,
            )
        assert time.monotonic() - started < 5  # the default is 10 seconds


def test_a_failing_hook_says_how_far_it_got(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usersctl.errors import HookFailed

    failing = MANAGER.replace(
        "        REGISTERED.append(user.email)",
        "        if user.email.startswith('b'):\n"
        "            raise RuntimeError('mail server down')\n"
        "        REGISTERED.append(user.email)",
    )
    name = app_module(tmp_path, monkeypatch, "import_hook_fails", failing)
    db = make_table(database_url)
    data = jsonl(
        {"email": "a@example.com", "hashed_password": BCRYPT_HASH},
        {"email": "b@example.com", "hashed_password": BCRYPT_HASH},
        {"email": "c@example.com", "hashed_password": BCRYPT_HASH},
    )
    with pytest.raises(HookFailed) as failed:
        run_import(database_url, data, user_manager_path=f"{name}:UserManager", hooks=True)
    assert str(failed.value) == (
        "the app's on_after_register hook failed (RuntimeError: mail server down); the import "
        "is committed; the hook ran for 1 of the 3 users created before b@example.com"
    )
    assert db.count() == 3


def test_a_file_read_while_written_still_refuses_a_bad_row(
    database_url: str, tmp_path: Path
) -> None:
    # A regular file under fail is written while it is read; a bad row stops that.
    db = make_table(database_url)
    path = tmp_path / "users.jsonl"
    path.write_bytes(
        jsonl(
            {"email": "a@example.com", "hashed_password": BCRYPT_HASH},
            {"email": "not an address", "hashed_password": BCRYPT_HASH},
        )
    )
    with pytest.raises(ImportRejected):
        run_import(database_url, path)
    assert db.count() == 0
    path.write_bytes(
        jsonl(
            {"email": "a@example.com", "hashed_password": BCRYPT_HASH},
            {"email": "b@example.com", "password": "b's long passphrase"},
        )
    )
    assert run_import(database_url, path).created == 2
    assert verify_password("b's long passphrase", db.stored_hash("b@example.com"))


def test_ctrl_c_while_a_batch_is_written_stops_the_import(
    database_url: str, tmp_path: Path
) -> None:
    db = make_table(database_url)
    path = tmp_path / "users.jsonl"
    path.write_bytes(jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH}))

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_import(database_url, path, progress=interrupted)
    assert db.count() == 0


def test_a_file_written_while_read_takes_the_model_s_dataclass_defaults(
    database_url: str, tmp_path: Path
) -> None:
    db = make_table(database_url)
    db.execute("ALTER TABLE \"user\" ADD COLUMN nickname VARCHAR(20) NOT NULL DEFAULT ''")
    path = tmp_path / "users.jsonl"
    path.write_bytes(jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH, "id": NEW}))
    assert run_import(database_url, path, model_path="dataclass_user_model:User").created == 1
    assert db.query('SELECT nickname FROM "user"') == [{"nickname": "anon"}]


class _InterruptedFile(io.BufferedReader):
    """A regular file whose reading is interrupted (Ctrl-C) after its first line."""

    def readline(self, size: int | None = -1) -> bytes:
        if self.tell():
            raise KeyboardInterrupt
        return super().readline(size)


def test_ctrl_c_while_the_file_is_read_stops_the_import(database_url: str, tmp_path: Path) -> None:
    db = make_table(database_url)
    path = tmp_path / "users.jsonl"
    path.write_bytes(
        jsonl(
            {"email": "a@example.com", "hashed_password": BCRYPT_HASH},
            {"email": "b@example.com", "hashed_password": BCRYPT_HASH},
        )
    )
    with _InterruptedFile(io.FileIO(path)) as stream, pytest.raises(KeyboardInterrupt):
        asyncio.run(import_users(database_url, stream))
    assert db.count() == 0


def test_a_broken_line_after_a_batch_refuses_the_file_read_while_written(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from usersctl.importing import importer

    monkeypatch.setattr(importer, "WRITE_BATCH", 1)
    db = make_table(database_url)
    path = tmp_path / "users.jsonl"
    good = jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH})
    path.write_bytes(good + b"{not json\n")
    with pytest.raises(ImportRejected) as rejected:
        run_import(database_url, path)
    assert str(rejected.value).startswith("1 row is invalid, nothing was written: line 2:")
    assert db.count() == 0


def test_a_dry_run_hashes_one_password_and_lends_its_hash(database_url: str) -> None:
    make_table(database_url)
    seen: list[tuple[str, int, int]] = []
    records = [{"email": f"{n}@example.com", "password": f"{n}'s long passphrase"} for n in "abc"]
    summary = run_import(
        database_url, jsonl(*records), dry_run=True, progress=lambda *s: seen.append(s)
    )
    assert summary.created == 3
    assert [s for s in seen if s[0] == "hashing"] == [("hashing", 1, 1)]


def test_the_format_given_is_the_one_read(database_url: str) -> None:
    db = make_table(database_url)
    data = f"- email: a@example.com\n  hashed_password: '{BCRYPT_HASH}'\n".encode()
    assert run_import(database_url, data, fmt="yaml").created == 1
    assert db.emails() == ["a@example.com"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_real_run_leaves_new_ids_to_the_sequence(database_url: str) -> None:
    db = integer_table(database_url)
    records = [{"email": f"{n}@example.com", "hashed_password": BCRYPT_HASH} for n in "ab"]
    assert run_import(database_url, jsonl(*records)).created == 2
    db.execute(
        'INSERT INTO "user" (email, hashed_password, is_active, is_superuser, is_verified) '
        "VALUES ('c@example.com', 'x', true, false, false)"
    )
    ids = {row["email"]: row["id"] for row in db.query('SELECT id, email FROM "user"')}
    assert ids == {"a@example.com": 1, "b@example.com": 2, "c@example.com": 3}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_broken_reference_is_named_with_its_line(database_url: str) -> None:
    # SQLite names no foreign key: the importer finds which, and the first row that breaks it.
    db = make_table(database_url)
    db.execute(
        "CREATE TABLE teams (id INTEGER PRIMARY KEY)",
        "INSERT INTO teams VALUES (1)",
        'ALTER TABLE "user" ADD COLUMN team_id INTEGER REFERENCES teams(id)',
    )
    records = [
        {"email": "a@example.com", "hashed_password": BCRYPT_HASH, "team_id": 1},
        {"email": "b@example.com", "hashed_password": BCRYPT_HASH, "team_id": 7},
    ]
    with pytest.raises(ConstraintConflict) as refused:
        run_import(database_url, jsonl(*records))
    assert str(refused.value).startswith("refused by the database's foreign key")
    assert str(refused.value).endswith("(line 2)")
    assert db.count() == 0


def test_the_app_s_manager_gets_the_user_database(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    reading = MANAGER.replace(
        "        REGISTERED.append(user.email)",
        "        REGISTERED.append((await self.user_db.get(user.id)).email)",
    )
    name = app_module(tmp_path, monkeypatch, "import_manager_db", reading)
    make_table(database_url)
    data = jsonl({"email": "a@example.com", "hashed_password": BCRYPT_HASH})
    run_import(database_url, data, user_manager_path=f"{name}:UserManager", hooks=True)
    assert importlib.import_module(name).REGISTERED == ["a@example.com"]


def test_a_user_gone_while_passwords_are_hashed_is_created_with_the_scheme_chosen(
    database_url: str,
) -> None:
    # Under skip, the first look leaves Ann's password unhashed (she exists); she is deleted
    # while Cy's is hashed, so the write creates her, hashing hers in the scheme asked for.
    db = make_table(database_url)
    seed_ann_and_ben(db)

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "hashing":
            db.execute("DELETE FROM \"user\" WHERE email = 'ann@example.com'")

    passwords = {"ann@example.com": "ann's new passphrase", "cy@example.com": "cy's passphrase"}
    records = [{"email": email, "password": password} for email, password in passwords.items()]
    summary = run_import(
        database_url, jsonl(*records), on_conflict="skip", hash_scheme="bcrypt", progress=progress
    )
    assert (summary.created, summary.skipped) == (2, 0)
    for email, password in passwords.items():
        stored = db.stored_hash(email)
        assert stored.startswith("$2b$") and verify_password(password, stored), email
