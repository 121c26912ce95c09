"""Checking import rows (usersctl.importing.checking) at the library's level: what each record
becomes, the exact words of each refusal, duplicates under each conflict rule, hashing, and the
app's own password check. The user model is read from a SQLite table made with plain SQL; nothing
is written. Quick enough for the mutation run of checking.py (benchmarks/mutation.py)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from harness import execute
from usersctl.errors import InvalidInput
from usersctl.importing.checking import (
    NO_PASSWORD_FOR_NEW_USER,
    FileCheck,
    RowValidator,
    check_with_app,
    hash_passwords,
)
from usersctl.importing.reading import TextRecord, UnreadableRecord
from usersctl.importing.rows import ImportConflict, ImportRejected, Problem, Problems
from usersctl.passwords import Hashing, is_known_hash
from usersctl.users import open_users

ARGON2_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$" + "A" * 43
BCRYPT_HASH = "$2b$12$" + "a" * 53
ID = "00000000-0000-0000-0000-000000000001"
OTHER_ID = "00000000-0000-0000-0000-000000000002"


def table(url: str, hash_null: str, extra: str = "") -> None:
    execute(
        url,
        'CREATE TABLE "user" (id CHAR(36) NOT NULL PRIMARY KEY, email VARCHAR(320) NOT NULL, '
        f"hashed_password VARCHAR(60) {hash_null}, is_active BOOLEAN NOT NULL, "
        f"is_superuser BOOLEAN NOT NULL, is_verified BOOLEAN NOT NULL{extra})",
    )


async def _model(url: str) -> Any:
    async with open_users(url) as ctx:
        return ctx.model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """FastAPI Users' table (a nullable hash) with an integer ``age`` and a required ``nick``."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'users.db'}"
    table(url, "NULL", ", age INTEGER, nick VARCHAR(20) NOT NULL")
    return asyncio.run(_model(url))


@pytest.fixture(scope="module")
def strict_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """FastAPI Users' own table: the hash NOT NULL, nothing else."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'users.db'}"
    table(url, "NOT NULL")
    return asyncio.run(_model(url))


def refused(validate: RowValidator, record: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as error:
        validate(7, record)
    return str(error.value)


# One row -----------------------------------------------------------------------------------------


def test_a_row_takes_the_normalised_email_its_flags_and_converted_fields(model: Any) -> None:
    validate = RowValidator(model)
    record = {"email": " Ann@Example.COM ", "password": "pw", "nick": "a", "is_superuser": True}
    row = validate(3, {**record, "age": 4, "is_verified": False})
    assert (row.line, row.key, row.password) == (3, "ann@example.com", "pw")
    assert row.values == {
        "email": "Ann@example.com",
        "is_active": True,
        "is_superuser": True,
        "is_verified": False,
        "nick": "a",
        "age": 4,
    }
    assert row.defaulted == ("is_active",)
    text = validate(4, TextRecord(email="b@x.io", password="pw", nick="b", age="5", is_active="no"))
    assert text.values == {
        "email": "b@x.io",
        "is_active": False,
        "is_superuser": False,
        "is_verified": False,
        "nick": "b",
        "age": 5,
    }
    assert text.defaulted == ("is_superuser", "is_verified")
    # The same combination of defaulted flags is one tuple, shared by the rows.
    again = validate(5, {"email": "c@x.io", "password": "pw", "nick": "c", "is_active": True})
    assert again.defaulted is text.defaulted
    # A CSV cell is text: "null" there is NULL; in JSON it is the word.
    assert validate(6, {"email": "d@x.io", "password": "pw", "nick": "null"}).values["nick"] == (
        "null"
    )
    with pytest.raises(InvalidInput) as error:
        validate(6, TextRecord(email="d@x.io", password="pw", nick="null"))
    assert str(error.value) == "field 'nick': may not be null"
    # A value in a refusal is never quoted: a row with its columns mixed up may hold a password.
    for record in (
        {"email": "e@x.io", "password": "pw", "nick": "e", "age": "secret"},
        TextRecord(email="e@x.io", password="pw", nick="e", age="secret"),
    ):
        with pytest.raises(InvalidInput) as error:
            validate(8, record)
        assert str(error.value) == "field 'age': the value is not an integer"
    with pytest.raises(InvalidInput) as error:
        validate(9, {"email": "e@x.io", "password": "pw", "nick": "e", "is_active": "secret"})
    assert str(error.value) == "field 'is_active': the value is not a boolean (use true or false)"


def test_a_record_without_an_email_names_the_fields_there_are(model: Any) -> None:
    validate = RowValidator(model)
    assert refused(validate, {"mail": "a@x.io"}) == (
        "no email field; expected the fields email and password or hashed_password, and "
        "optionally age, id, is_active, is_superuser, is_verified, nick (a CSV file starts "
        "with a header line naming its columns)"
    )
    assert refused(validate, UnreadableRecord("nesting too deep")) == "nesting too deep"
    assert refused(validate, {"email": "a@x.io", "zz": 1, "aa": 2}) == "unknown field(s) aa, zz"


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        (3, "email must be a string (got a number)"),
        (None, "email must be a string (got null)"),
        ("  ", "email is empty"),
        (
            "not-an-email",
            "email: not a valid email address (An email address must have an @-sign)",
        ),
    ],
)
def test_an_email_that_is_no_address_is_refused(model: Any, email: Any, reason: str) -> None:
    assert refused(RowValidator(model), {"email": email, "password": "pw"}) == reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "password or hashed_password is missing"),
        (
            {"password": "pw", "hashed_password": ARGON2_HASH},
            "give password or hashed_password, not both",
        ),
        ({"hashed_password": 5}, "hashed_password must be a string (got a number)"),
        ({"password": 5}, "password must be a string (got a number)"),
        ({"password": ""}, "password is empty"),
        ({"password": "a\x00b"}, "password contains a NUL character"),
        ({"password": "a\ud800"}, "password is not valid Unicode (it holds a lone surrogate)"),
        (
            {"hashed_password": "plain"},
            "hashed_password is not an Argon2 or bcrypt hash (--keep-unknown-hashes imports "
            "such values as they are)",
        ),
        (
            {"hashed_password": "$2b$31$" + "a" * 53},
            "hashed_password: bcrypt cost 31 is outside 4-16; one login with it would take "
            "minutes (FastAPI Users' too)",
        ),
    ],
)
def test_passwords_and_hashes_are_refused_with_the_reason(
    model: Any, fields: dict[str, Any], reason: str
) -> None:
    assert refused(RowValidator(model), {"email": "a@x.io", "nick": "n", **fields}) == reason


def test_a_hash_is_kept_and_the_password_left_for_hashing(model: Any) -> None:
    validate = RowValidator(model)
    row = validate(1, {"email": "a@x.io", "nick": "n", "hashed_password": BCRYPT_HASH})
    assert row.values["hashed_password"] == BCRYPT_HASH and row.password is None
    row = validate(1, {"email": "a@x.io", "nick": "n", "password": "pw", "hashed_password": None})
    assert "hashed_password" not in row.values and row.password == "pw"


def test_an_unknown_hash_is_kept_as_text_only_when_asked_for(model: Any) -> None:
    # Costs too high in something that is no hash: it is no hash, whatever its costs say.
    odd = "$argon2id$v=19$m=65536,t=3000,p=4$not a hash"
    assert refused(
        RowValidator(model), {"email": "a@x.io", "nick": "n", "hashed_password": odd}
    ) == (
        "hashed_password is not an Argon2 or bcrypt hash (--keep-unknown-hashes imports "
        "such values as they are)"
    )
    keep = RowValidator(model, keep_unknown_hashes=True)
    assert (
        keep(1, {"email": "a@x.io", "nick": "n", "hashed_password": odd}).values["hashed_password"]
        == odd
    )
    row = keep(1, {"email": "a@x.io", "nick": "n", "hashed_password": "md5:abc"})
    assert row.values["hashed_password"] == "md5:abc" and row.password is None
    assert refused(keep, {"email": "a@x.io", "nick": "n", "hashed_password": "x" * 61}) == (
        "field 'hashed_password': longer than 60 characters"
    )


@pytest.mark.parametrize("null", [None, "null", " NULL ", "Null"])
def test_a_null_hash_is_a_user_without_a_password_where_the_column_allows_it(
    model: Any, strict_model: Any, null: Any
) -> None:
    row = RowValidator(model)(1, {"email": "a@x.io", "nick": "n", "hashed_password": null})
    assert row.values["hashed_password"] is None and row.password is None
    assert refused(RowValidator(strict_model), {"email": "a@x.io", "hashed_password": null}) == (
        "hashed_password is null, but the column does not allow NULL; give a password or a hash"
    )


def test_the_text_null_is_a_hash_only_when_short(model: Any) -> None:
    validate = RowValidator(model)
    padded = " " * 11 + "null"  # 15 characters: still null
    assert (
        validate(1, {"email": "a@x.io", "nick": "n", "hashed_password": padded}).values[
            "hashed_password"
        ]
        is None
    )
    longer = " " * 12 + "null"  # 16: a value, and no hash
    assert refused(
        validate, {"email": "a@x.io", "nick": "n", "hashed_password": longer}
    ).startswith("hashed_password is not an Argon2 or bcrypt hash")


def test_a_row_without_a_password_when_it_may_update(model: Any) -> None:
    row = RowValidator(model, passwordless=True)(1, {"email": "a@x.io", "nick": "n"})
    assert "hashed_password" not in row.values and row.password is None
    assert NO_PASSWORD_FOR_NEW_USER.startswith("password or hashed_password is missing; only")


def test_a_required_field_must_be_given(model: Any) -> None:
    assert refused(RowValidator(model), {"email": "a@x.io", "password": "pw"}) == (
        "required field(s) with no default not given: nick (give them with --set FIELD=VALUE); "
        "the database has no default for them: if the app fills them in Python, "
        "--model module.path:ClassName would supply the app's own defaults"
    )


def test_the_policy_judges_a_plaintext_password_of_a_valid_row(model: Any) -> None:
    asked: list[tuple[str, str]] = []

    def policy(password: str, email: str) -> list[str]:
        asked.append((password, email))
        return ["It is short."] if len(password) < 5 else []

    validate = RowValidator(model, password_policy=policy)
    assert refused(validate, {"email": "A@x.io", "nick": "n", "password": "abc"}) == (
        "password is too weak: It is short."
    )
    assert validate(1, {"email": "b@x.io", "nick": "n", "password": "abcdef"}).password == "abcdef"
    validate(1, {"email": "c@x.io", "nick": "n", "hashed_password": ARGON2_HASH})
    refused(validate, {"email": "d@x.io", "password": "abc"})  # no nick: refused before
    assert asked == [("abc", "A@x.io"), ("abcdef", "b@x.io")]


# A file --------------------------------------------------------------------------------------------


def rows_of(*emails: str, **fields: Any) -> list[tuple[int, dict[str, Any]]]:
    return [
        (line, {"email": email, "nick": "n", "password": "pw", **fields})
        for line, email in enumerate(emails, start=1)
    ]


def test_a_clean_file_gives_its_rows_and_notes_plaintext(model: Any) -> None:
    check = FileCheck(model, "fail")
    accepted = check.add(rows_of("a@x.io", "b@x.io"))
    assert [row.key for row in accepted] == ["a@x.io", "b@x.io"]
    assert check.clean and check.plaintext is True and check.replaced is False
    rows, skipped = check.verdict()
    assert [row.line for row in rows] == [1, 2] and skipped == 0
    hashed = FileCheck(model, "fail")
    hashed.add([(1, {"email": "a@x.io", "nick": "n", "hashed_password": ARGON2_HASH})])
    assert hashed.plaintext is False
    hashed.add(rows_of("b@x.io"))
    hashed.add([(3, {"email": "c@x.io", "nick": "n", "hashed_password": ARGON2_HASH})])
    assert hashed.plaintext


def test_duplicates_fail_skip_or_let_the_last_row_win(model: Any) -> None:
    records = rows_of("a@x.io", "b@x.io", "A@X.io", "b@x.io")
    fail = FileCheck(model, "fail")
    assert [row.line for row in fail.add(records)] == [1, 2]
    assert not fail.clean
    with pytest.raises(ImportConflict) as conflict:
        fail.verdict()
    assert [str(p) for p in conflict.value.problems] == [
        "line 3: A@x.io is also on line 1",
        "line 4: b@x.io is also on line 2",
    ]
    skip = FileCheck(model, "skip")
    skip.add(records)
    rows, skipped = skip.verdict()
    assert [row.line for row in rows] == [1, 2] and skipped == 2 and skip.replaced is False
    update = FileCheck(model, "update")
    update.add(records)
    rows, skipped = update.verdict()
    assert [row.line for row in rows] == [3, 4] and skipped == 2 and update.replaced is True


def test_problems_come_before_duplicates_and_rows_go_on_being_checked(model: Any) -> None:
    check = FileCheck(model, "fail")
    accepted = check.add([*rows_of("a@x.io", "a@x.io"), (3, {"email": "bad"}), *rows_of("c@x.io")])
    assert [row.values["email"] for row in accepted] == ["a@x.io", "c@x.io"]
    with pytest.raises(ImportRejected) as rejected:
        check.verdict()
    assert [str(p) for p in rejected.value.problems] == [
        "line 3: email: not a valid email address (An email address must have an @-sign)"
    ]
    assert len(check.duplicates) == 1 and not check.clean


def test_one_id_for_two_addresses_is_a_problem(model: Any) -> None:
    check = FileCheck(model, "skip")
    check.add(rows_of("a@x.io", "b@x.io", "A@x.io", id=ID))
    check.add(rows_of("c@x.io", id=OTHER_ID))
    with pytest.raises(ImportRejected) as rejected:
        check.verdict()
    assert [str(p) for p in rejected.value.problems] == [f"line 2: id {ID} is also on line 1"]
    assert check.skipped == 1


def test_only_update_lets_a_row_leave_the_password_out_unless_told(model: Any) -> None:
    record = [(1, {"email": "a@x.io", "nick": "n"})]
    for rule, passwordless, clean in [
        ("update", None, True),
        ("skip", None, False),
        ("fail", None, False),
        ("fail", True, True),
        ("update", False, False),
    ]:
        check = FileCheck(model, rule, passwordless=passwordless)
        check.add(record)
        assert check.clean is clean, (rule, passwordless)


def test_a_file_check_refuses_unknown_hashes_unless_told(model: Any) -> None:
    check = FileCheck(model, "fail")
    check.add([(1, {"email": "a@x.io", "nick": "n", "hashed_password": "md5:x"})])
    assert [str(p) for p in check.problems] == [
        "line 1: hashed_password is not an Argon2 or bcrypt hash (--keep-unknown-hashes "
        "imports such values as they are)"
    ]


def test_a_file_check_passes_its_options_to_the_rows(model: Any) -> None:
    check = FileCheck(
        model,
        "fail",
        keep_unknown_hashes=True,
        password_policy=lambda password, email: ["No."],
    )
    check.add([(1, {"email": "a@x.io", "nick": "n", "hashed_password": "md5:x"})])
    check.add([(2, {"email": "b@x.io", "nick": "n", "password": "pw"})])
    assert [str(p) for p in check.problems] == ["line 2: password is too weak: No."]


# Hashing and the app ----------------------------------------------------------------------------


def quick_hashing() -> Hashing:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    return Hashing(
        "app", PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))
    )


def test_plaintext_passwords_are_hashed_and_forgotten(model: Any) -> None:
    check = FileCheck(model, "fail")
    check.add(
        [
            *rows_of("a@x.io"),
            (2, {"email": "b@x.io", "nick": "n", "hashed_password": ARGON2_HASH}),
            *rows_of("c@x.io"),
        ]
    )
    rows, _ = check.verdict()
    seen: list[tuple[str, int, int]] = []
    hashing = quick_hashing()
    hash_passwords(rows, lambda *step: seen.append(step), hashing=hashing)
    assert seen == [("hashing", 1, 2), ("hashing", 2, 2)]
    assert all(row.password is None for row in rows)
    assert rows[1].values["hashed_password"] == ARGON2_HASH
    for row in (rows[0], rows[2]):
        assert is_known_hash(row.values["hashed_password"])
        assert hashing.password_hash().verify("pw", row.values["hashed_password"])
    hash_passwords(rows, lambda *step: seen.append(step), hashing=hashing)  # nothing left
    assert len(seen) == 2
    hash_passwords([], None, threading.Event(), hashing)


def test_passwords_are_hashed_by_the_hashing_given(model: Any) -> None:
    from pwdlib import PasswordHash
    from pwdlib.hashers.bcrypt import BcryptHasher

    check = FileCheck(model, "fail")
    check.add(rows_of("a@x.io"))
    rows, _ = check.verdict()
    hash_passwords(rows, hashing=Hashing("app", PasswordHash((BcryptHasher(rounds=4),))))
    assert rows[0].values["hashed_password"].startswith("$2b$04$")


def test_a_stopped_hashing_raises(model: Any) -> None:
    from usersctl.passwords import HashingStopped

    check = FileCheck(model, "fail")
    check.add(rows_of("a@x.io", "b@x.io"))
    rows, _ = check.verdict()
    stop = threading.Event()
    stop.set()
    with pytest.raises(HashingStopped):
        hash_passwords(rows, None, stop, quick_hashing())


async def test_the_app_s_password_check_adds_its_refusals_by_line(model: Any) -> None:
    from fastapi_users import BaseUserManager, InvalidPasswordException, UUIDIDMixin

    checked: list[tuple[str, Any]] = []

    class Manager(UUIDIDMixin, BaseUserManager[Any, uuid.UUID]):
        async def validate_password(self, password: str, user: Any) -> None:
            checked.append((password, user))
            if password.startswith("bad"):
                raise InvalidPasswordException(reason="too plain")

    check = FileCheck(model, "fail")
    check.problems = Problems([Problem(2, "early"), Problem(9, "late")])
    check.problems.count = 30
    check.add(
        [
            (1, {"email": "a@x.io", "nick": "n", "password": "bad1", "is_superuser": True}),
            (3, {"email": "b@x.io", "nick": "n", "hashed_password": ARGON2_HASH}),
            (4, {"email": "c@x.io", "nick": "n", "password": "good"}),
            (5, {"email": "d@x.io", "nick": "n", "password": "bad2"}),
        ]
    )
    await check_with_app(Manager(None), check)
    assert [str(p) for p in check.problems] == [
        "line 1: the app refused the password: too plain",
        "line 2: early",
        "line 5: the app refused the password: too plain",
        "line 9: late",
    ]
    assert check.problems.count == 32
    assert [password for password, _ in checked] == ["bad1", "good", "bad2"]
    first = checked[0][1]
    assert (first.email, first.password, first.is_superuser, first.is_active) == (
        "a@x.io",
        "bad1",
        True,
        True,
    )
    clean = FileCheck(model, "fail")
    clean.add(rows_of("e@x.io"))
    await check_with_app(Manager(None), clean)
    assert clean.clean and clean.problems.count == 0
