"""export-users at the library's level (usersctl.exporting.export_users into a string), on every
test database: the exact bytes of each format, by the database's rendering and by Python's,
which must be the same; the hash guard, the chosen columns, filters, batches and progress.

The table is made with plain SQL, the users seeded with plain SQL: nothing of usersctl's but the
export runs. Quick enough for the mutation run of exporting.py (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from harness import Database, execute, is_mysql, serial_primary_key
from usersctl import exporting
from usersctl.errors import InvalidInput
from usersctl.exporting import CsvRows, export_users, renders_in_database
from usersctl.users import UserFilters, open_users

ALICE = "00000000-0000-0000-0000-000000000001"
BOB = "00000000-0000-0000-0000-000000000002"

#: Extra columns: a text column the database renders, or a decimal that Python renders.
BY_DATABASE = ", note VARCHAR(100)"
BY_PYTHON = ", note VARCHAR(100), score NUMERIC(5, 2)"


def make_table(url: str, extra: str = "", *, unique_key: bool = True) -> Database:
    """FastAPI Users' user table (a nullable hash: an OAuth-only user has none) with ``extra``."""
    id_type = "UUID" if url.startswith("postgresql") else "CHAR(36)"
    statements = [
        f'CREATE TABLE "user" (id {id_type} NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024), is_active BOOLEAN NOT NULL, "
        f"is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL{extra})"
    ]
    if unique_key and not is_mysql(url):
        statements.append('CREATE UNIQUE INDEX ix_user_email_lower ON "user" (lower(email))')
    execute(url, *statements)
    return Database(url)


def seed_two(db: Database, **extra: Any) -> None:
    """Bob (no hash, superuser) and Alice (inactive, an email that starts a formula), seeded in
    the opposite of the export's order."""
    bob = {"id": BOB, "email": "Bob@example.com", "hashed_password": None, "is_superuser": True}
    alice = {"id": ALICE, "email": "=alice@example.com", "hashed_password": "h1"}
    alice["is_active"] = False
    db.seed_specs({**bob, **extra.get("bob", {})}, {**alice, **extra.get("alice", {})})


def export(url: str, **options: Any) -> tuple[int, str]:
    out = io.StringIO()
    written = asyncio.run(export_users(url, out, **options))
    return written, out.getvalue()


async def _model(url: str) -> tuple[Any, str]:
    async with open_users(url) as ctx:
        return ctx.model, ctx.session.bind.dialect.name


def model_of(url: str) -> tuple[Any, str]:
    """The user model usersctl reads from the table, and the dialect's name."""
    return asyncio.run(_model(url))


def json_lines(extra_alice: str = "", extra_bob: str = "", *, hashes: bool = True) -> list[str]:
    alice_hash = '"hashed_password":"h1",' if hashes else ""
    bob_hash = '"hashed_password":null,' if hashes else ""
    return [
        f'{{"id":"{ALICE}","email":"=alice@example.com",{alice_hash}"is_active":false,'
        f'"is_superuser":false,"is_verified":false{extra_alice}}}',
        f'{{"id":"{BOB}","email":"Bob@example.com",{bob_hash}"is_active":true,'
        f'"is_superuser":true,"is_verified":false{extra_bob}}}',
    ]


# The formats, byte for byte -------------------------------------------------------------------


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
def test_jsonl_is_one_compact_object_a_line_in_email_order(database_url: str, extra: str) -> None:
    db = make_table(database_url, extra)
    seed_two(db, alice={"note": "Ünïcode ☃"})
    score = ',"score":null' if extra == BY_PYTHON else ""
    written, text = export(database_url, include_hashes=True)
    assert written == 2
    lines = json_lines(f',"note":"Ünïcode ☃"{score}', f',"note":null{score}')
    assert text == "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
def test_json_is_an_array_with_one_object_a_line(database_url: str, extra: str) -> None:
    db = make_table(database_url, extra)
    seed_two(db)
    score = ',"score":null' if extra == BY_PYTHON else ""
    written, text = export(database_url, fmt="json")
    assert written == 2
    lines = json_lines(f',"note":null{score}', f',"note":null{score}', hashes=False)
    assert text == "[\n" + ",\n".join(lines) + "\n]\n"


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_no_users_is_an_empty_array_nothing_or_the_header(
    database_url: str, extra: str, fmt: str
) -> None:
    make_table(database_url, extra)
    written, text = export(database_url, fmt=fmt)
    header = "id,email,is_active,is_superuser,is_verified,note"
    header += ",score\n" if extra == BY_PYTHON else "\n"
    assert written == 0
    assert text == {"json": "[]\n", "jsonl": "", "csv": header}[fmt]


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
def test_csv_is_formula_safe_and_writes_a_missing_hash_as_null(
    database_url: str, extra: str
) -> None:
    db = make_table(database_url, extra)
    seed_two(db, alice={"note": "=1+1"}, bob={"note": ""})
    written, text = export(database_url, fmt="csv", include_hashes=True)
    assert written == 2
    score = "," if extra == BY_PYTHON else ""
    header = "id,email,hashed_password,is_active,is_superuser,is_verified,note"
    assert text == (
        f"{header}{',score' if score else ''}\n"
        f"{ALICE},'=alice@example.com,h1,false,false,false,'=1+1{score}\n"
        # An empty text and NULL are both an empty cell; only the hash writes NULL as null.
        f"{BOB},Bob@example.com,null,true,true,false,{score}\n"
    )


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
def test_raw_csv_keeps_text_as_it_is(database_url: str, extra: str) -> None:
    db = make_table(database_url, extra)
    seed_two(db, alice={"note": "=1+1"})
    _, text = export(database_url, fmt="csv", raw_csv=True, columns=["email", "note"])
    assert text == "email,note\n=alice@example.com,=1+1\nBob@example.com,\n"


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
def test_a_row_with_a_carriage_return_is_quoted_whole(database_url: str, extra: str) -> None:
    db = make_table(database_url, extra)
    seed_two(db, alice={"note": "one\rtwo"}, bob={"note": "three\nfour"})
    _, text = export(database_url, fmt="csv", columns=["email", "note", "is_active"])
    assert text == (
        'email,note,is_active\n"\'=alice@example.com","one\rtwo","false"\n'
        'Bob@example.com,"three\nfour",true\n'
    )


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
def test_the_values_python_renders_are_their_text_and_json_forms(
    database_url: str, extra: str
) -> None:
    db = make_table(database_url, extra)
    values = {"note": "n", "score": 1.5} if extra == BY_PYTHON else {"note": "n"}
    seed_two(db, alice=values, bob={"is_verified": True})
    columns = ["email", *values, "is_verified"]
    _, jsonl = export(database_url, columns=columns)
    _, csv = export(database_url, fmt="csv", columns=columns)
    if extra == BY_PYTHON:
        assert jsonl == (
            '{"email":"=alice@example.com","note":"n","score":"1.50","is_verified":false}\n'
            '{"email":"Bob@example.com","note":null,"score":null,"is_verified":true}\n'
        )
        assert csv == (
            "email,note,score,is_verified\n'=alice@example.com,n,1.50,false\n"
            "Bob@example.com,,,true\n"
        )
    else:
        assert jsonl == (
            '{"email":"=alice@example.com","note":"n","is_verified":false}\n'
            '{"email":"Bob@example.com","note":null,"is_verified":true}\n'
        )
        assert csv == "email,note,is_verified\n'=alice@example.com,n,false\nBob@example.com,,true\n"


# Options ----------------------------------------------------------------------------------------


def test_the_hash_leaves_only_when_asked_for(database_url: str) -> None:
    db = make_table(database_url)
    seed_two(db)
    _, text = export(database_url, fmt="csv")
    assert text.splitlines()[0] == "id,email,is_active,is_superuser,is_verified"
    assert "h1" not in text
    with pytest.raises(InvalidInput) as refused:
        export(database_url, columns=["email", "hashed_password"])
    assert str(refused.value) == (
        "--columns: hashed_password is exported only with --include-hashes"
    )
    _, text = export(database_url, columns=["hashed_password", "email"], include_hashes=True)
    assert text == (
        '{"hashed_password":"h1","email":"=alice@example.com"}\n'
        '{"hashed_password":null,"email":"Bob@example.com"}\n'
    )


@pytest.mark.parametrize("extra", [BY_DATABASE, BY_PYTHON], ids=["database", "python"])
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv"])
def test_batches_join_into_the_same_bytes_and_report_progress(
    database_url: str, extra: str, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = make_table(database_url, extra)
    seed_two(db)
    db.seed_specs({"email": "carol@example.com", "hashed_password": "h3"})
    whole = export(database_url, fmt=fmt, columns=["email", "is_active"])
    monkeypatch.setattr(exporting, "BATCH", 2)
    seen: list[tuple[int, int]] = []
    filters = UserFilters(is_superuser=False)
    written, text = export(
        database_url,
        fmt=fmt,
        columns=["email", "is_active"],
        progress=lambda done, total: seen.append((done, total)),
    )
    assert (written, text) == whole
    assert seen == [(2, 3), (3, 3)]
    seen.clear()
    written, text = export(
        database_url,
        fmt=fmt,
        filters=filters,
        columns=["email"],
        progress=lambda done, total: seen.append((done, total)),
    )
    assert written == 2
    assert seen == [(2, 2)]
    expected = {
        "json": '[\n{"email":"=alice@example.com"},\n{"email":"carol@example.com"}\n]\n',
        "jsonl": '{"email":"=alice@example.com"}\n{"email":"carol@example.com"}\n',
        "csv": "email\n'=alice@example.com\ncarol@example.com\n",
    }
    assert text == expected[fmt]


def test_users_that_differ_only_in_case_come_in_id_order(database_url: str) -> None:
    db = make_table(database_url, unique_key=False)
    db.seed_specs(
        {"id": BOB, "email": "Dup@example.com", "hashed_password": "h"},
        {"id": ALICE, "email": "dup@example.com", "hashed_password": "h"},
        {"id": "00000000-0000-0000-0000-000000000003", "email": "DUP@example.com"},
    )
    _, text = export(database_url, fmt="csv", columns=["email"])
    assert text == "email\ndup@example.com\nDup@example.com\nDUP@example.com\n"


# Who renders -------------------------------------------------------------------------------------


def test_the_database_renders_fastapi_users_own_columns(database_url: str) -> None:
    make_table(database_url, ", note VARCHAR(10), age INTEGER, score NUMERIC(5, 2)")
    model, dialect = model_of(database_url)
    own = ["id", "email", "hashed_password", "is_active", "note", "age"]
    assert renders_in_database(model, own, dialect) is (not is_mysql(database_url))
    assert renders_in_database(model, own, "mysql") is False
    assert renders_in_database(model, ["email", "score"], dialect) is False
    assert renders_in_database(model, ["score", "email"], dialect) is False
    assert renders_in_database(model, ["id", "score"], dialect) is False
    assert renders_in_database(model, ["is_active", "score"], dialect) is False
    assert renders_in_database(model, ["age", "score"], dialect) is False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_renders_uuids_only_where_they_are_stored_hyphenated(database_url: str) -> None:
    # SQLAlchemy's Uuid keeps 32 hex digits in CHAR(32) on SQLite: Python writes them hyphenated.
    make_table(database_url)
    assert renders_in_database(model_of(database_url)[0], ["id", "email"], "sqlite") is True
    execute(
        database_url,
        'DROP TABLE "user"',
        'CREATE TABLE "user" (id CHAR(32) NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        "hashed_password VARCHAR(1024), is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)",
        "INSERT INTO \"user\" VALUES ('0000000000000000000000000000000a', 'a@example.com', "
        "'h', 1, 0, 0)",
    )
    model = model_of(database_url)[0]
    assert renders_in_database(model, ["email", "id"], "sqlite") is False
    assert renders_in_database(model, ["email", "id"], "postgresql") is True
    _, text = export(database_url, fmt="csv", columns=["id", "is_active"])
    assert text == "id,is_active\n00000000-0000-0000-0000-00000000000a,true\n"


def test_csv_rows_quote_only_rows_with_a_carriage_return() -> None:
    out = io.StringIO()
    rows = CsvRows(out)
    rows.writerows([["a", "b"], [1, None]])
    rows.writerows([["c\rd", "e"], ["f", 2]])
    assert out.getvalue() == 'a,b\n1,\n"c\rd","e"\nf,2\n'


def test_a_batch_whose_every_cell_holds_a_carriage_return_is_quoted() -> None:
    out = io.StringIO()
    CsvRows(out).writerows([["c\rd"], ["e\r"]])
    assert out.getvalue() == '"c\rd"\n"e\r"\n'


def test_numbers_are_never_taken_for_formulas(database_url: str) -> None:
    db = make_table(database_url, ", age INTEGER, score NUMERIC(5, 2)")
    db.seed_specs({"email": "a@example.com", "age": -3, "score": -1.5})
    _, by_database = export(database_url, fmt="csv", columns=["age"])
    assert by_database == "age\n-3\n"
    _, by_python = export(database_url, fmt="csv", columns=["age", "score"])
    assert by_python == "age,score\n-3,-1.50\n"


def test_raw_csv_keeps_text_as_it_is_in_python_s_rendering_and_the_hash_too(
    database_url: str,
) -> None:
    db = make_table(database_url, BY_PYTHON)
    seed_two(db, alice={"note": "=1+1", "score": 2, "hashed_password": "=h"})
    columns = ["email", "hashed_password", "note", "score"]
    _, text = export(database_url, fmt="csv", raw_csv=True, columns=columns, include_hashes=True)
    assert text == (
        "email,hashed_password,note,score\n=alice@example.com,=h,=1+1,2.00\n"
        "Bob@example.com,null,,\n"
    )
    _, text = export(
        database_url, fmt="csv", raw_csv=True, columns=columns[:3], include_hashes=True
    )
    assert text == "email,hashed_password,note\n=alice@example.com,=h,=1+1\nBob@example.com,null,\n"
    _, text = export(database_url, fmt="csv", columns=columns[:2], include_hashes=True)
    assert text == "email,hashed_password\n'=alice@example.com,'=h\nBob@example.com,null\n"


def test_a_boolean_left_null_is_null_and_empty(database_url: str) -> None:
    db = make_table(database_url, ", consent BOOLEAN")
    seed_two(db, alice={"consent": True})
    _, jsonl = export(database_url, columns=["email", "consent"])
    assert jsonl == (
        '{"email":"=alice@example.com","consent":true}\n{"email":"Bob@example.com","consent":null}\n'
    )
    _, csv = export(database_url, fmt="csv", columns=["email", "consent"])
    assert csv == "email,consent\n'=alice@example.com,true\nBob@example.com,\n"


@pytest.mark.parametrize("database_url", ["sqlite", "mariadb"], indirect=True)
def test_any_number_but_zero_in_a_boolean_is_true(database_url: str) -> None:
    # As SQLAlchemy reads it (bool(2)); another program may have written 2 or -1 (MariaDB's
    # BOOLEAN is a TINYINT, which holds them too).
    db = make_table(database_url, ", consent BOOLEAN")
    seed_two(db)
    db.execute('UPDATE "user" SET is_verified = 2, consent = -1')
    _, csv = export(database_url, fmt="csv", columns=["email", "is_verified", "consent"])
    assert csv == (
        "email,is_verified,consent\n'=alice@example.com,true,true\nBob@example.com,true,true\n"
    )
    _, jsonl = export(database_url, columns=["is_verified", "consent"])
    assert jsonl == '{"is_verified":true,"consent":true}\n' * 2


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_python_writes_stored_values_as_their_column_types_read_them(
    database_url: str, fmt: str
) -> None:
    # Python renders (a decimal column); the driver's values of text, integers, booleans and
    # UUIDs go through shortcuts, which must write what the types' own reading writes: an id
    # stored in capitals (by another program) in lowercase, text with quotes, backslashes,
    # control characters and letters beyond ASCII escaped as json.dumps escapes them.
    db = make_table(database_url, BY_PYTHON + ', "50%s" INTEGER')
    note = '-1 "q" \\ \x01\x1f\x7f \u2028 \u00e9 \U0001f600 \n'
    stored_id = "ABCDEF00-0000-4000-8000-00000000000A"
    db.seed_specs({"id": stored_id, "email": "Carol@example.com", "note": note, "50%s": 7})
    if not database_url.startswith("postgresql"):  # a native UUID has no case
        db.execute('UPDATE "user" SET id = upper(id)')
        assert db.query('SELECT id FROM "user"') == [{"id": stored_id}]
    _, text = export(database_url, fmt=fmt, columns=["id", "note", "50%s", "is_active", "score"])
    expected = {"id": stored_id.lower(), "note": note, "50%s": 7, "is_active": True, "score": None}
    if fmt == "csv":
        quoted = note.replace('"', '""')  # CSV doubles quotes; the note starts like a formula
        cells = ["id,note,50%s,is_active,score", f'{stored_id.lower()},"\'{quoted}",7,true,']
        assert text == "\n".join(cells) + "\n"
    else:
        assert text == json.dumps(expected, ensure_ascii=False, separators=(",", ":")) + "\n"


def test_table_names_the_user_table_among_several(database_url: str) -> None:
    db = make_table(database_url)
    seed_two(db)
    id_type = "UUID" if database_url.startswith("postgresql") else "CHAR(36)"
    execute(
        database_url,
        f"CREATE TABLE staff (id {id_type} NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, "
        "hashed_password VARCHAR(1024), is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL)",
        f"INSERT INTO staff VALUES ('{BOB}', 'staff@example.com', NULL, true, true, true)",
    )
    _, text = export(database_url, fmt="csv", columns=["email"], table="staff")
    assert text == "email\nstaff@example.com\n"


def test_the_app_s_model_chooses_the_columns(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = make_table(database_url, ", secret VARCHAR(20)")
    seed_two(db, alice={"secret": "s"})
    (tmp_path / "export_app_model.py").write_text(
        "from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID\n"
        "from sqlalchemy.orm import DeclarativeBase\n\n\n"
        "class Base(DeclarativeBase):\n    pass\n\n\n"
        "class User(SQLAlchemyBaseUserTableUUID, Base):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    _, text = export(database_url, fmt="csv")
    assert text.splitlines()[0] == "id,email,is_active,is_superuser,is_verified,secret"
    _, text = export(database_url, fmt="csv", model_path="export_app_model:User")
    assert text.splitlines()[0] == "id,email,is_active,is_superuser,is_verified"


def test_a_user_table_that_inherits_exports_its_parent_s_columns(database_url: str) -> None:
    # The member table's rows joined to their account rows, one user each (staff is no member).
    serial = serial_primary_key(database_url, sqlite="INTEGER PRIMARY KEY AUTOINCREMENT")
    execute(
        database_url,
        f"CREATE TABLE account (id {serial}, email VARCHAR(320) NOT NULL)",
        "CREATE TABLE member (id INTEGER PRIMARY KEY REFERENCES account (id), "
        "hashed_password VARCHAR(1024) NOT NULL, is_active BOOLEAN NOT NULL, "
        "is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL, nickname VARCHAR(30))",
        "INSERT INTO account (email) VALUES ('ann@example.com')",
        "INSERT INTO member VALUES (1, 'h', true, false, true, 'Ann')",
        "INSERT INTO account (email) VALUES ('staff@example.com')",
    )
    _, text = export(database_url, columns=["id", "email", "nickname", "is_verified"])
    assert text == '{"id":1,"email":"ann@example.com","nickname":"Ann","is_verified":true}\n'
    _, text = export(database_url, fmt="csv", columns=["email", "nickname"])
    assert text == "email,nickname\nann@example.com,Ann\n"
