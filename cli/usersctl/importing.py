"""import-users: read a file of users, validate every row, hash in parallel, write all or nothing.

The work happens in three steps so that the database transaction stays short: read and validate
every row (nothing is written if one is bad), hash plaintext passwords on all cores, then decide
conflicts and write everything in one transaction.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import csv
import functools
import gc
import io
import itertools
import json
import os
import re
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import Integer, String, bindparam, func, insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError

from usersctl.csv_cells import from_formula_safe
from usersctl.email_case import case_key, fold_case, index_key
from usersctl.emails import EmailNormalizer, InvalidEmail
from usersctl.errors import Conflict, InvalidInput, LastSuperuser, UsersctlError
from usersctl.fields import (
    NESTING_TOO_DEEP,
    Converter,
    converter_for,
    encodes_as_utf8,
    json_kind,
)
from usersctl.models import InsertContext, UserModel, python_column_defaults
from usersctl.password_policy import WeakPassword
from usersctl.passwords import ARGON2, Hashing, hash_cost_problem, hash_many, is_known_hash
from usersctl.users import (
    NextIds,
    UserContext,
    active_superusers,
    choose_hashing,
    overriding_system_value,
    peek_next_ids,
    with_overriding,
)

FORMATS = ("jsonl", "csv", "json")
CONFLICT_RULES = ("fail", "skip", "update")
MAX_LINE_BYTES = 1 << 20  # a longer line is refused rather than read into memory
MAX_REPORTED = 20  # problems listed in an error message
FLAGS = {"is_active": True, "is_superuser": False, "is_verified": False}
WRITE_BATCH = 5_000
LOOKUP_BATCH = 5_000  # emails per lookup query (one bound parameter)

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class Problem:
    """Why one row was refused; ``line`` counts from 1 (for JSON arrays, the item number)."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


class Problems:
    """The first ``MAX_REPORTED`` problems and how many there were in all: a file of a million
    bad rows takes the memory of twenty."""

    def __init__(self, problems: Iterable[Problem] = ()) -> None:
        self.first: list[Problem] = []
        self.count = 0
        for problem in problems:
            self.append(problem)

    def append(self, problem: Problem) -> None:
        self.count += 1
        if len(self.first) < MAX_REPORTED:
            self.first.append(problem)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.first)

    def listed(self) -> str:
        """The first problems, one after the other on one line, and how many more there are."""
        shown = "; ".join(str(problem) for problem in self.first)
        more = self.count - len(self.first)
        return f"{shown}; and {more} more" if more > 0 else shown


class ImportRejected(InvalidInput):
    """Some rows are invalid; nothing was written. ``problems`` keeps the first few and the count."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = problems if isinstance(problems, Problems) else Problems(problems)
        count = self.problems.count
        noun = "row is" if count == 1 else "rows are"
        super().__init__(f"{count} {noun} invalid, nothing was written: {self.problems.listed()}")


class ImportConflict(Conflict):
    """Rows clash with existing users (or each other) under ``--on-conflict fail``."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = problems if isinstance(problems, Problems) else Problems(problems)
        super().__init__(
            f"{self.problems.count} row(s) conflict with existing users, nothing was written "
            f"(use --on-conflict skip or update): {self.problems.listed()}"
        )


@dataclass
class ImportSummary:
    """What an import did (or, for a dry run, would do)."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    #: Database access tokens of updated users whose password changed or who were deactivated.
    revoked_tokens: int = 0
    dry_run: bool = False
    #: Why plaintext passwords were hashed with bcrypt (``HashChoice.note``), not in the output.
    hash_note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "invalid": self.invalid,
            "revoked_tokens": self.revoked_tokens,
            "dry_run": self.dry_run,
        }


@dataclass
class Row:
    """One validated row: the column values to write, and its plaintext password until hashed."""

    line: int
    key: str  # the lowercased email (``fold_case``), which conflicts are decided on
    values: dict[str, Any]
    password: str | None = field(default=None, repr=False)
    #: The flags the row left out, in ``values`` with their defaults: a new user takes those, an
    #: updated one keeps its own.
    defaulted: tuple[str, ...] = ()


# Reading -------------------------------------------------------------------------------------


class TextRecord(dict[str, str]):
    """A CSV row: every value is text, read by each column's text form (JSON lines and JSON
    give JSON values instead), with the ``'`` of a formula-safe cell taken off."""


class UnreadableRecord(dict[str, Any]):
    """A record Python's JSON reader cannot hold (a value nested too deep, a number of
    thousands of digits): a problem of its line, as an invalid row is, and the file's other
    lines are still checked. Empty, so that the validator stops at its first test."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class _LongNumber:
    """Stands in for an integer with more digits than ``int()`` reads (4300 by default)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _int_or_long(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _LongNumber(len(text.lstrip("-")))


#: Reads JSON as ``json.loads`` does, but a number too long for ``int()`` becomes a marker.
_MARKING_DECODER = json.JSONDecoder(parse_int=_int_or_long)


def _long_number_reason(value: Any) -> str | None:
    """Why ``value`` (read by ``_MARKING_DECODER``) cannot be read: the field whose number has
    too many digits; None when it has no such number."""
    pending: list[tuple[Any, str | None]] = [(value, None)]
    while pending:
        item, field_name = pending.pop()
        if isinstance(item, _LongNumber):
            where = f"field {field_name!r}: " if field_name is not None else ""
            return f"{where}number has too many digits ({item.digits})"
        if isinstance(item, dict):
            pending.extend((child, field_name or key) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, field_name) for child in item)
    return None


def _unreadable(text: str, start: int = 0) -> tuple[Any, int]:
    """The JSON value at ``start`` of ``text`` and where it ends, for a value ``json.loads``
    could not hold: an ``UnreadableRecord`` saying why, or the value when it reads after all.
    Raises ``json.JSONDecodeError`` for text that is not JSON."""
    try:
        value, end = _MARKING_DECODER.raw_decode(text, start)
    except RecursionError:
        return UnreadableRecord(NESTING_TOO_DEEP), _value_end(text, start)
    reason = _long_number_reason(value)
    return (value if reason is None else UnreadableRecord(reason)), end


_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r'[\[\]{}"]')


def _value_end(text: str, start: int) -> int:
    """Where the array or object at ``start`` ends (its brackets counted, strings skipped), or
    the end of ``text`` when it does not."""
    depth = 0
    position = start
    while True:
        found = _BRACKETS.search(text, position)
        if found is None:
            return len(text)
        mark, position = found.group(), found.end()
        if mark == '"':
            rest = _STRING_REST.match(text, position)
            if rest is None:
                return len(text)
            position = rest.end()
        elif mark in "[{":
            depth += 1
        else:
            depth -= 1
            if depth <= 0:
                return position


def format_for(name: str | None, given: str | None) -> str | None:
    """The input format: ``given``, else the file name's ending (``.jsonl``, ``.ndjson``, ``.csv``,
    ``.json``); ``None`` when it must be guessed from the content."""
    if given:
        return given
    if not name or name == "-":
        return None
    lowered = name.lower()
    for ending, kind in (
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".csv", "csv"),
        (".json", "json"),
    ):
        if lowered.endswith(ending):
            return kind
    return None


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    """Decoded lines with their numbers; refuses a BOM, invalid UTF-8 and over-long lines."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise ImportRejected([Problem(number, f"line is longer than {MAX_LINE_BYTES} bytes")])
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raise ImportRejected(
                [Problem(1, "the file starts with a byte-order mark; save it as UTF-8 without BOM")]
            )
        try:
            text = raw.decode("utf-8")  # a line break never splits a UTF-8 sequence
        except UnicodeDecodeError:
            raise ImportRejected([Problem(number, "not valid UTF-8")]) from None
        yield number, text


def read_records(
    stream: IO[bytes], fmt: str | None, *, raw_csv: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records from a JSON lines, CSV or JSON file, each with its line (or item) number.

    With ``fmt=None`` the first character decides: ``[`` JSON, ``{`` JSON lines, else CSV. A
    CSV cell written formula-safe (``usersctl.csv_cells``) is read back as the text it holds,
    unless ``raw_csv``.
    """
    lines = _lines(stream)
    if fmt is None:
        first = next(lines, None)
        if first is None:
            return
        start = first[1].lstrip()
        fmt = "json" if start.startswith("[") else "jsonl" if start.startswith("{") else "csv"
        lines = _chain(first, lines)
    if fmt == "jsonl":
        yield from _read_jsonl(lines)
    elif fmt == "csv":
        yield from _read_csv(lines, raw_csv)
    elif fmt == "json":
        yield from _read_json(lines)
    else:
        raise InvalidInput(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _read_jsonl(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _not_json(exc, number) from None
        except (RecursionError, ValueError):
            # Nested too deep, or a number of thousands of digits: a problem of this line.
            try:
                record, _ = _unreadable(text, len(text) - len(text.lstrip()))
            except json.JSONDecodeError as exc:
                raise _not_json(exc, number) from None
        if not isinstance(record, dict):
            raise ImportRejected([Problem(number, "expected a JSON object")])
        yield number, record


def _not_json(exc: json.JSONDecodeError, line: int | None = None) -> ImportRejected:
    return ImportRejected(
        [Problem(exc.lineno if line is None else line, f"not valid JSON ({exc.msg})")]
    )


def _read_json(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    text = "".join(line for _, line in lines)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _not_json(exc) from None
    except (RecursionError, ValueError):
        # An item nested too deep, or a number of thousands of digits: read item by item.
        yield from _json_items(text)
        return
    if not isinstance(document, list):
        raise ImportRejected([Problem(1, "expected a JSON array of objects")])
    for index, record in enumerate(document, start=1):
        if not isinstance(record, dict):
            raise ImportRejected([Problem(index, "expected a JSON object")])
        yield index, record


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_items(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The items of a JSON array one by one, for an array ``json.loads`` cannot hold: each item
    nested too deep, or holding a number of thousands of digits, is an ``UnreadableRecord``, and
    the items after it are still read."""

    def skip(position: int) -> int:
        found = _SPACE.match(text, position)
        return found.end() if found else position

    position = skip(0)
    if not text.startswith("[", position):
        raise ImportRejected([Problem(1, "expected a JSON array of objects")])
    position = skip(position + 1)
    index = 0
    try:
        while not (index == 0 and text.startswith("]", position)):
            index += 1
            record, end = _unreadable(text, position)
            if not isinstance(record, dict):
                raise ImportRejected([Problem(index, "expected a JSON object")])
            yield index, record
            if end >= len(text):
                return  # an item nested too deep that never ends: nothing after it to read
            position = skip(end)
            if text.startswith("]", position):
                break
            if not text.startswith(",", position):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
            position = skip(position + 1)
        if skip(position + 1) != len(text):
            raise json.JSONDecodeError("Extra data", text, skip(position + 1))
    except json.JSONDecodeError as exc:
        raise _not_json(exc) from None


def _read_csv(
    lines: Iterator[tuple[int, str]], raw_csv: bool
) -> Iterator[tuple[int, dict[str, Any]]]:
    numbers: list[int] = [0]

    def texts() -> Iterator[str]:
        for number, text in lines:
            numbers[0] = number
            yield text

    reader = csv.reader(texts(), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip() for name in header]
        seen: set[str] = set()
        for name in header:
            if not name:
                raise ImportRejected([Problem(1, "the header has an empty column name")])
            if name in seen:
                raise ImportRejected([Problem(1, f"the header names {name!r} twice")])
            seen.add(name)
        for cells in reader:
            if not cells or cells == [""]:
                continue
            if len(cells) != len(header):
                raise ImportRejected(
                    [Problem(numbers[0], f"expected {len(header)} fields, found {len(cells)}")]
                )
            # An empty cell means "not given": the column's default applies.
            yield (
                numbers[0],
                TextRecord(
                    (name, cell if raw_csv else from_formula_safe(cell))
                    for name, cell in zip(header, cells, strict=True)
                    if cell != ""
                ),
            )
    except csv.Error as exc:
        raise ImportRejected([Problem(numbers[0], f"malformed CSV ({exc})")]) from None


# Validating ----------------------------------------------------------------------------------


def _is_null(value: Any) -> bool:
    """JSON's null, or the text ``null`` (any case), which is how CSV carries a NULL hash."""
    if value is None:
        return True
    return isinstance(value, str) and len(value) < 16 and value.strip().lower() == "null"


#: The fields every imported row has.
REQUIRED_FIELDS = frozenset({"email", "password", "hashed_password"})
#: Why a row without a password is refused, under ``--on-conflict update``, for a new user.
NO_PASSWORD_FOR_NEW_USER = (
    "password or hashed_password is missing; only a row that updates an existing user may "
    "leave them out"
)


class RowValidator:
    """Checks records against the user table and turns them into ``Row`` objects."""

    def __init__(
        self,
        model: UserModel,
        *,
        keep_unknown_hashes: bool = False,
        password_policy: Callable[[str, str], list[str]] | None = None,
        passwordless: bool = False,
    ) -> None:
        self.model = model
        self.keep_unknown_hashes = keep_unknown_hashes
        #: A row may leave out both password fields (``--on-conflict update``): an existing
        #: user keeps its hash; ``_decide`` refuses such a row for a new user.
        self.passwordless = passwordless
        #: (password, email) -> the reasons to refuse it; None accepts any password.
        self.password_policy = password_policy
        self.normalize = EmailNormalizer()
        managed = {"email", "hashed_password", *FLAGS}
        columns = [column for column in model.all_columns if column.name not in managed]
        # One converter per column, chosen once: per-row type dispatch would dominate the import.
        self.converters: dict[str, Converter] = {
            column.name: converter_for(column, textual=False, quote=False) for column in columns
        }
        self.text_converters: dict[str, Converter] = {
            column.name: converter_for(column, quote=False) for column in columns
        }
        self.flag_converters = {
            name: converter_for(model.column(name), quote=False) for name in FLAGS
        }
        # A kept unknown hash is checked as the column's text: length, NUL, valid UTF-8.
        hash_column = model.column("hashed_password")
        self.hash_as_text = converter_for(hash_column, quote=False)
        self.hash_nullable = bool(hash_column.nullable)
        self.allowed = frozenset({*self.converters, *FLAGS, "email", "password", "hashed_password"})
        self.required = model.required_columns
        self.defaulted_forms: dict[tuple[str, ...], tuple[str, ...]] = {}

    def __call__(self, line: int, record: dict[str, Any]) -> Row:
        # A row's values are never quoted: in a file whose columns are mixed up (a CSV without
        # its header, swapped columns), any of them may be a password.
        if "email" not in record:
            if isinstance(record, UnreadableRecord):
                raise InvalidInput(record.reason)
            # Without an email field, the "field names" may be a headerless CSV's first row.
            raise InvalidInput(
                "no email field; expected the fields email and password or hashed_password, "
                "and optionally "
                + ", ".join(sorted(self.allowed - REQUIRED_FIELDS))
                + " (a CSV file starts with a header line naming its columns)"
            )
        unknown = record.keys() - self.allowed
        if unknown:
            raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}")
        raw_email = record.get("email")
        if not isinstance(raw_email, str):
            raise InvalidInput(f"email must be a string (got {json_kind(raw_email)})")
        if not raw_email.strip():
            raise InvalidInput("email is empty")
        try:
            email = self.normalize(raw_email)
        except InvalidEmail as exc:
            raise InvalidInput(f"email: {exc.reason}") from None
        values: dict[str, Any] = {"email": email}
        password = record.get("password")
        hashed = record.get("hashed_password")
        if "hashed_password" in record and _is_null(hashed):
            hashed = None
            if password is None:
                # A user without a password (who logs in through OAuth only), as exported.
                if not self.hash_nullable:
                    raise InvalidInput(
                        "hashed_password is null, but the column does not allow NULL; "
                        "give a password or a hash"
                    )
                values["hashed_password"] = None
        elif password is not None and hashed is not None:
            raise InvalidInput("give password or hashed_password, not both")
        elif password is None and hashed is None and not self.passwordless:
            raise InvalidInput("password or hashed_password is missing")
        if hashed is not None:
            if not isinstance(hashed, str):
                raise InvalidInput(f"hashed_password must be a string (got {json_kind(hashed)})")
            costly = hash_cost_problem(hashed) if is_known_hash(hashed) else None
            if costly is not None:
                raise InvalidInput(
                    f"hashed_password: {costly}; one login with it would take minutes "
                    "(FastAPI Users' too)"
                )
            if not is_known_hash(hashed):
                if not self.keep_unknown_hashes:
                    raise InvalidInput(
                        "hashed_password is not an Argon2 or bcrypt hash "
                        "(--keep-unknown-hashes imports such values as they are)"
                    )
                hashed = self.hash_as_text(hashed)
            values["hashed_password"] = hashed
        elif password is None:
            pass  # no password at all: NULL, checked above
        elif not isinstance(password, str):
            raise InvalidInput(f"password must be a string (got {json_kind(password)})")
        elif not password:
            raise InvalidInput("password is empty")
        elif "\x00" in password:
            raise InvalidInput("password contains a NUL character")
        elif not encodes_as_utf8(password):
            raise InvalidInput("password is not valid Unicode (it holds a lone surrogate)")
        defaulted: tuple[str, ...] = ()
        for name, default in FLAGS.items():
            given = record.get(name)
            if given is None:
                values[name] = default
                defaulted += (name,)
            elif given is True or given is False:
                values[name] = given
            else:
                values[name] = self.flag_converters[name](given)
        converters = self.text_converters if isinstance(record, TextRecord) else self.converters
        for name, convert in converters.items():
            if name in record:
                values[name] = convert(record[name])
        for name in self.required:
            if values.get(name) is None:
                raise InvalidInput(self.model.missing_required_reason([name]))
        # The policy judges the password of an otherwise valid row: a row whose columns are
        # mixed up is said to be so, rather than its "password" to be weak.
        if hashed is None and password is not None and self.password_policy is not None:
            reasons = self.password_policy(password, email)
            if reasons:
                raise WeakPassword(reasons, subject="password", hint=False)
        # One tuple object per combination, shared by the rows (a million rows, a few tuples).
        defaulted = self.defaulted_forms.setdefault(defaulted, defaulted)
        key = fold_case(email)
        return Row(line, key, values, password if hashed is None else None, defaulted)


class FileCheck:
    """Validates a file's records batch by batch, keeping what the verdict needs: the accepted rows
    (duplicates within the file resolved by the conflict rule), and the first problems and
    duplicates with their counts."""

    def __init__(
        self,
        model: UserModel,
        on_conflict: str,
        *,
        keep_unknown_hashes: bool = False,
        password_policy: Callable[[str, str], list[str]] | None = None,
    ) -> None:
        self.validate = RowValidator(
            model,
            keep_unknown_hashes=keep_unknown_hashes,
            password_policy=password_policy,
            passwordless=on_conflict == "update",
        )
        self.on_conflict = on_conflict
        self.rows: dict[str, Row] = {}
        self.ids: dict[Any, tuple[str, int]] = {}  # id: (lowercased email, first line)
        self.problems = Problems()
        self.duplicates = Problems()
        self.skipped = 0
        self.plaintext = False  # some row has a password to hash
        self.replaced = False  # a later row replaced an accepted one (--on-conflict update)

    @property
    def clean(self) -> bool:
        return not (self.problems or self.duplicates)

    def add(self, records: Iterable[tuple[int, dict[str, Any]]]) -> list[Row]:
        """Check ``records``; return the rows accepted for the first time."""
        accepted = []
        for line, record in records:
            try:
                row = self.validate(line, record)
            except UsersctlError as exc:
                self.problems.append(Problem(line, str(exc)))
                continue
            row_id = row.values.get("id")
            if row_id is not None:
                # One id for two addresses is an error; the same row twice is a duplicate,
                # which the conflict rule decides below.
                key, earlier_line = self.ids.setdefault(row_id, (row.key, line))
                if key != row.key:
                    self.problems.append(
                        Problem(line, f"id {row_id} is also on line {earlier_line}")
                    )
                    continue
            self.plaintext = self.plaintext or row.password is not None
            earlier = self.rows.get(row.key)
            if earlier is None:
                self.rows[row.key] = row
                accepted.append(row)
            elif self.on_conflict == "fail":
                self.duplicates.append(
                    Problem(line, f"{row.values['email']} is also on line {earlier.line}")
                )
            elif self.on_conflict == "skip":
                self.skipped += 1
            else:
                self.rows[row.key] = row  # update: the last row for an address wins
                self.skipped += 1
                self.replaced = True
        return accepted

    def verdict(self) -> tuple[list[Row], int]:
        """Raise ``ImportRejected`` or ``ImportConflict`` if the file is not fit to import;
        else return its rows and how many were skipped."""
        if self.problems:
            raise ImportRejected(self.problems)
        if self.duplicates:
            raise ImportConflict(self.duplicates)
        return list(self.rows.values()), self.skipped


def hash_passwords(
    rows: list[Row],
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    hashing: Hashing = ARGON2,
) -> None:
    """Hash the plaintext passwords of ``rows`` on every core (Argon2 and bcrypt release the GIL),
    in ``hashing``'s scheme.

    Setting ``stop`` (the import was interrupted) raises ``HashingStopped`` once the hashes under
    way are done, rather than after all of them. With ``--user-manager``, ``hashing`` is the
    manager's own ``password_helper`` (``user_manager.manager_hashing``)."""
    pending = [row for row in rows if row.password is not None]
    if not pending:
        return
    passwords = [row.password for row in pending if row.password is not None]
    with contextlib.closing(hash_many(passwords, stop, hashing)) as hashes:
        for done, (row, hashed) in enumerate(zip(pending, hashes, strict=True), start=1):
            row.values["hashed_password"] = hashed
            row.password = None
            if progress:
                progress("hashing", done, len(pending))


async def check_with_app(manager: Any, check: FileCheck) -> None:
    """Run the app's ``validate_password`` on every plaintext password of the accepted rows; the
    refused join the file's problems, by line, before anything is hashed."""
    from usersctl.user_manager import user_create, validate_password

    refused: list[Problem] = []
    for row in check.rows.values():
        if row.password is None:
            continue
        fields = {name: row.values[name] for name in ("email", *FLAGS)}
        try:
            await validate_password(manager, row.password, user_create(fields, row.password))
        except InvalidInput as exc:
            refused.append(Problem(row.line, str(exc)))
    if refused:  # reported by line, among the first problems the file check kept
        found = check.problems
        check.problems = Problems(sorted([*found, *refused], key=lambda problem: problem.line))
        check.problems.count = found.count + len(refused)


# Writing -------------------------------------------------------------------------------------


def _bound_list(dialect: Dialect, name: str, element: Any) -> Any:
    """The elements of the list bound as ``name``, as a one-column subquery.

    A whole batch travels as one parameter (a JSON array on SQLite, an array on PostgreSQL), so a
    lookup of thousands of keys costs one statement, not thousands of bound parameters.
    """
    if dialect.name == "sqlite":
        value: Any = func.json_each(bindparam(name)).table_valued("value").c.value
    else:
        value = func.unnest(bindparam(name, type_=ARRAY(element))).column_valued("value")
    return value


def _among(dialect: Dialect, key: Any, name: str, element: Any, wrap: Any = None) -> Any:
    """The condition that ``key`` is one of the elements of the list bound as ``name`` (each
    passed through ``wrap``, a SQL function, where given). MySQL/MariaDB have neither arrays nor
    a JSON table function SQLAlchemy knows: there the list is an expanding ``IN`` (its driver
    writes the values into the statement, so no limit on bound parameters applies)."""
    if dialect.name == "mysql":
        return key.in_(bindparam(name, expanding=True, type_=element))
    value = _bound_list(dialect, name, element)
    return key.in_(select(wrap(value) if wrap is not None else value).scalar_subquery())


def _bind(dialect: Dialect, values: list[Any], element: Any) -> Any:
    if dialect.name != "sqlite":
        return values
    process = element.dialect_impl(dialect).bind_processor(dialect)
    return json.dumps([process(value) if process else value for value in values])


async def _existing(
    ctx: UserContext, rows: list[Row]
) -> tuple[dict[str, list[tuple[Any, str]]], dict[Any, str]]:
    """Existing users matching the rows: ``{lowercased email: [(id, stored email), ...]}`` (more
    than one where a table without the lower(email) index holds the address in several cases)
    and ``{id: lowercased email}``, lowercased by ``fold_case``.

    Emails are lowered by the database, so matching follows its idea of case, as its index does;
    on SQLite, whose lower() folds ASCII letters only, rows with other letters are also matched
    with usersctl's own function (one scan of the table, only when there are such rows).
    """
    model = ctx.model
    dialect = ctx.session.bind.dialect
    user_id, email = model.table.c.id, model.column("email")
    id_type = user_id.type
    by_email: dict[str, list[tuple[Any, str]]] = {}
    by_id: dict[Any, str] = {}
    users = select(user_id, email).select_from(model.selectable)
    emails_statement = users.where(_among(dialect, index_key(email), "keys", String(), index_key))
    ids_statement = users.where(_among(dialect, user_id, "ids", id_type))

    def found(user_id: Any, email: str) -> None:
        same = by_email.setdefault(fold_case(email), [])
        if (user_id, email) not in same:  # found by both statements
            same.append((user_id, email))
        by_id[user_id] = fold_case(email)

    emails = [row.values["email"] for row in rows]
    async for user_id, email in _each_match(ctx, emails_statement, "keys", emails, String()):
        found(user_id, email)
    async for user_id, email in _matches_beyond_ascii(ctx, rows):
        found(user_id, email)
    given_ids = [row.values["id"] for row in rows if row.values.get("id") is not None]
    async for user_id, email in _each_match(ctx, ids_statement, "ids", given_ids, id_type):
        by_id[user_id] = fold_case(email)
    return by_email, by_id


async def _each_match(
    ctx: UserContext, statement: Any, name: str, keys: list[Any], element: Any
) -> AsyncIterator[Any]:
    """The rows ``statement`` finds for ``keys``, bound as the list parameter ``name`` (see
    ``_bound_list``), ``LOOKUP_BATCH`` keys per query."""
    dialect = ctx.session.bind.dialect
    for start in range(0, len(keys), LOOKUP_BATCH):
        batch = _bind(dialect, keys[start : start + LOOKUP_BATCH], element)
        for row in await ctx.session.execute(statement, {name: batch}):
            yield row


def _keys_beyond_ascii(ctx: UserContext, rows: Iterable[Row]) -> list[str]:
    """On SQLite, the keys of the rows whose address has a character beyond ASCII: the ones its
    ``lower(email)`` index does not match in every case."""
    if ctx.session.bind.dialect.name != "sqlite":
        return []
    return sorted({row.key for row in rows if not row.values["email"].isascii()})


async def _matches_beyond_ascii(ctx: UserContext, rows: list[Row]) -> AsyncIterator[Any]:
    """On SQLite, the users (id, email) whose address is one of the rows' with letters beyond
    ASCII, in any case: one scan of the table for them all (none without such rows)."""
    keys = _keys_beyond_ascii(ctx, rows)
    if not keys:
        return
    model = ctx.model
    statement = (
        select(model.column("id"), model.column("email"))
        .select_from(model.selectable)
        .where(_key_among(ctx, "keys"))
    )
    for row in await ctx.session.execute(statement, {"keys": _bind_keys(ctx, keys)}):
        yield row


async def _clash_beyond_ascii(ctx: UserContext, rows: Iterable[Row]) -> bool:
    """On SQLite, after inserting ``rows`` on the strength of the ``lower(email)`` index: whether
    one with letters beyond ASCII now shares its address (in other case) with another user,
    which the index, folding ASCII letters only, let in. One scan, only for such rows."""
    keys = _keys_beyond_ascii(ctx, rows)
    if not keys:
        return False
    key = case_key(ctx.model.column("email"))
    statement = (
        select(key)
        .select_from(ctx.model.selectable)
        .where(_key_among(ctx, "keys"))
        .group_by(key)
        .having(func.count() > 1)
        .limit(1)
    )
    shared = await ctx.session.execute(statement, {"keys": _bind_keys(ctx, keys)})
    return shared.first() is not None


def _key_among(ctx: UserContext, name: str) -> Any:
    """The condition that a user's ``case_key(email)`` is one of the keys bound as ``name``."""
    bound = _bound_list(ctx.session.bind.dialect, name, String())
    return case_key(ctx.model.column("email")).in_(select(bound).scalar_subquery())


def _bind_keys(ctx: UserContext, keys: list[str]) -> Any:
    """``keys`` bound whole, as one parameter (one scan of the table for them all)."""
    return _bind(ctx.session.bind.dialect, keys, String())


async def _lock_table(ctx: UserContext) -> None:
    """On PostgreSQL, make concurrent inserts wait for this import instead of slipping in
    between its checks and its writes (on SQLite, BEGIN IMMEDIATE already holds the lock); a
    joined-table subclass's parent tables too, parents first, as inserts take them."""
    dialect = ctx.session.bind.dialect
    if dialect.name == "postgresql":
        tables = (*ctx.model.parent_tables, ctx.model.table)
        names = ", ".join(dialect.identifier_preparer.format_table(table) for table in tables)
        await ctx.session.execute(sql_text(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE"))


async def _advance_id_sequence(ctx: UserContext, rows: Iterable[Row]) -> None:
    """After rows that brought their own integer ids, move PostgreSQL's id sequence past them,
    so that the app's next insert does not collide with an imported id (SQLite needs nothing).

    Only ever forward: ``setval`` is not undone by a rollback, and a sequence moved back below
    ids already handed out gives a deleted user's id (and so their still-valid JWTs, whose
    ``sub`` is the id) to the next new user. The caller does not call this for a dry run."""
    dialect = ctx.session.bind.dialect
    owner = (*ctx.model.parent_tables, ctx.model.table)[0]  # a hierarchy's root gives the ids
    id_column = next(iter(owner.primary_key.columns), None)
    if id_column is None or dialect.name != "postgresql" or not isinstance(id_column.type, Integer):
        return
    if not any(row.values.get("id") is not None for row in rows):
        return
    table = dialect.identifier_preparer.format_table(owner)
    column = dialect.identifier_preparer.quote(id_column.name)
    # pg_sequence_last_value is NULL while the sequence has handed out nothing.
    await ctx.session.execute(
        sql_text(
            "SELECT setval(s.seq, m.top) FROM "
            "(SELECT pg_get_serial_sequence(:table, :column)::regclass AS seq) AS s, "
            f"(SELECT max({column}) AS top FROM {table}) AS m "
            "WHERE s.seq IS NOT NULL AND m.top > COALESCE(pg_sequence_last_value(s.seq), 0)"
        ),
        {"table": table, "column": id_column.name},
    )


async def write_rows(
    ctx: UserContext,
    rows: list[Row],
    on_conflict: str,
    summary: ImportSummary,
    progress: Progress | None = None,
    *,
    force: bool = False,
    keep_sessions: bool = False,
    hashing: Hashing = ARGON2,
    created: list[str] | None = None,
    stand_ins: NextIds | None = None,
) -> None:
    """Decide each row against the database and write them, in the caller's transaction.
    The emails of the users created are added to ``created``, when it is given. In a dry run,
    ``stand_ins`` gives the new users without an id theirs (see ``_with_stand_ins``).

    Updates that would leave no active superuser are refused (``LastSuperuser``) unless
    ``force``, as update-user and deactivate-user refuse them. An updated user whose password
    changes or who is deactivated loses their database access tokens, as with set-password and
    deactivate-user, unless ``keep_sessions``."""
    await _lock_table(ctx)
    if on_conflict == "fail" and await _insert_all_or_nothing(ctx, rows, progress, stand_ins):
        summary.created += len(rows)
        if created is not None:
            created.extend(row.values["email"] for row in rows)
        return
    plan = _decide(rows, *await _existing(ctx, rows), on_conflict)
    if plan.invalid:
        raise ImportRejected(plan.invalid)
    if plan.conflicts:
        raise ImportConflict(plan.conflicts)
    # Rows left unhashed because the first look found their users, who have gone since.
    unhashed = [row for row in plan.inserts if row.password]
    if unhashed:
        await asyncio.to_thread(hash_passwords, unhashed, None, None, hashing)
    inserts = [row.values for row in plan.inserts]
    if created is not None:
        created.extend(values["email"] for values in inserts)
    updates = plan.updates
    summary.skipped += plan.skipped
    total = len(inserts) + len(updates)
    for start in range(0, len(inserts), WRITE_BATCH):
        batch = inserts[start : start + WRITE_BATCH]
        await _insert(ctx, batch, stand_ins)
        if progress:
            progress("writing", start + len(batch), total)
    superusers = await active_superusers(ctx) if updates and not force else []
    ending = [] if keep_sessions or not updates else await _sessions_to_end(ctx, updates)
    written = len(inserts)
    for columns, batch in _group_by_columns(updates):
        for statement, names in _update_statements(ctx.model, columns):
            if len(names) < len(columns):  # a parent table: its own columns only
                await ctx.session.execute(statement, [{n: v[n] for n in names} for v in batch])
            else:
                await ctx.session.execute(statement, batch)
        written += len(batch)
        if progress:
            progress("writing", written, total)
    if superusers and not await active_superusers(ctx):
        raise LastSuperuser(
            "refusing to leave no active superuser (the import demotes or deactivates "
            f"{', '.join(superusers)}); use --force to do it anyway"
        )
    if ending:
        from usersctl.logins import revoke_access_tokens_of

        summary.revoked_tokens += await revoke_access_tokens_of(ctx, ending) or 0
    summary.created += len(inserts)
    summary.updated += len(updates)


def _update_statements(
    model: UserModel, columns: tuple[str, ...]
) -> list[tuple[Any, tuple[str, ...]]]:
    """The UPDATEs that write ``columns`` of the users whose ids are bound as ``_id``, each with
    the names it binds: one for the user table and, for a joined-table subclass, one for each
    parent table that has some of them or columns with an ``onupdate`` (an ``updated_at``),
    which the UPDATE fills."""
    table = model.table
    statements = []
    for target in (table, *model.parent_tables):
        names = tuple(name for name in columns if name == "_id" or name in target.c)
        values: dict[Any, Any] = {name: bindparam(name) for name in names if name != "_id"}
        key = target.c.id if target is table else next(iter(target.primary_key.columns))
        if not values:
            if target is table or all(column.onupdate is None for column in target.columns):
                continue
            values = {key: key}  # nothing given: the UPDATE sets only its onupdate columns
        statements.append((update(target).where(key == bindparam("_id")).values(values), names))
    return statements


@dataclass
class _Plan:
    """What to do with each row, decided against the users the database holds."""

    inserts: list[Row] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)  # values, and the user's "_id"
    skipped: int = 0
    conflicts: list[Problem] = field(default_factory=list)
    #: New users without a password (rows that may leave it out only to update a user).
    invalid: list[Problem] = field(default_factory=list)


def _decide(
    rows: list[Row],
    by_email: dict[str, list[tuple[Any, str]]],
    by_id: dict[Any, str],
    on_conflict: str,
) -> _Plan:
    """Each row's fate under ``on_conflict``, given the matching users (see ``_existing``)."""
    plan = _Plan()
    for row in rows:
        matches = by_email.get(row.key, [])
        if len(matches) > 1:  # the same rule as for commands: the address stored exactly so
            exact = [user_id for user_id, stored in matches if stored == row.values["email"]]
            if len(exact) != 1:
                listed = ", ".join(sorted(stored for _, stored in matches))
                plan.conflicts.append(
                    Problem(row.line, f"several users have the address: {listed}")
                )
                continue
            matches = [(exact[0], row.values["email"])]
        existing_id = matches[0][0] if matches else None
        row_id = row.values.get("id")
        id_owner = by_id.get(row_id) if row_id is not None else None
        if existing_id is None and id_owner is None:
            if row.password is None and "hashed_password" not in row.values:
                plan.invalid.append(Problem(row.line, NO_PASSWORD_FOR_NEW_USER))
                continue
            plan.inserts.append(row)
        elif existing_id is None or (id_owner is not None and row_id != existing_id):
            # The row's id belongs to a user with another address: no rule makes that right.
            if on_conflict == "skip":
                plan.skipped += 1
            else:
                plan.conflicts.append(Problem(row.line, f"id {row_id} belongs to {id_owner}"))
        elif on_conflict == "fail":
            plan.conflicts.append(Problem(row.line, f"{row.values['email']} already exists"))
        elif on_conflict == "skip":
            plan.skipped += 1
        else:  # update: the existing user takes the row's fields and keeps its id
            kept = ("id", *row.defaulted)  # and the flags the row does not give
            plan.updates.append(
                {**{k: v for k, v in row.values.items() if k not in kept}, "_id": existing_id}
            )
    return plan


async def passwords_worth_hashing(ctx: UserContext, rows: list[Row], on_conflict: str) -> list[Row]:
    """The rows whose plaintext passwords the import will store, by a first look at the database
    (it ends before the hashing starts, so no lock is held meanwhile): a conflict refuses the
    import before any hashing (``ImportConflict``); under ``skip`` the rows of users who exist
    are not hashed. ``write_rows`` decides again, and hashes what changed meanwhile."""
    if not any(row.password for row in rows):
        return rows
    try:
        plan = _decide(rows, *await _existing(ctx, rows), on_conflict)
    finally:
        await ctx.session.rollback()
    if plan.invalid:
        raise ImportRejected(plan.invalid)
    if plan.conflicts:
        raise ImportConflict(plan.conflicts)
    return rows if on_conflict == "update" else plan.inserts


async def _sessions_to_end(ctx: UserContext, updates: list[dict[str, Any]]) -> list[Any]:
    """The ids of the users these updates give a new password or deactivate (before they run)."""
    if ctx.model.token_table is None:
        return []
    model = ctx.model
    dialect = ctx.session.bind.dialect
    user_id = model.table.c.id
    statement = (
        select(user_id, model.column("hashed_password"), model.column("is_active"))
        .select_from(model.selectable)
        .where(user_id.in_(select(_bound_list(dialect, "ids", user_id.type)).scalar_subquery()))
    )
    ids = [values["_id"] for values in updates]
    stored: dict[Any, tuple[str, bool]] = {}
    async for found, hashed, active in _each_match(ctx, statement, "ids", ids, user_id.type):
        stored[found] = (hashed, active)
    ending = []
    for values in updates:
        hashed, active = stored[values["_id"]]
        if values.get("hashed_password", hashed) != hashed or (
            active and values.get("is_active", True) is False
        ):
            ending.append(values["_id"])
    return ending


async def _insert_all_or_nothing(
    ctx: UserContext, rows: list[Row], progress: Progress | None, stand_ins: NextIds | None
) -> bool:
    """Insert every row, trusting the unique indexes to catch conflicts (and on SQLite, a look
    at the rows with letters beyond ASCII, which its index does not fold); False (and nothing
    inserted) when one is hit, so that the caller can look the conflicts up and report them.

    In ``fail`` mode any conflict aborts the import, so checking first would only cost time.
    """
    savepoint = await ctx.session.begin_nested()
    try:
        for start in range(0, len(rows), WRITE_BATCH):
            batch = rows[start : start + WRITE_BATCH]
            await _insert(ctx, [row.values for row in batch], stand_ins)
            if progress:
                progress("writing", start + len(batch), len(rows))
        clash = await _clash_beyond_ascii(ctx, rows)
    except IntegrityError:
        clash = True
    if clash:
        await savepoint.rollback()
        return False
    await savepoint.commit()
    return True


@dataclass(frozen=True)
class PreparedInsert:
    """An INSERT compiled for one set of columns, and its rows as driver-ready tuples."""

    sql: str
    params: list[tuple[Any, ...]]


def prepare_inserts(
    table: Any,
    dialect: Dialect,
    rows: list[dict[str, Any]],
    defaults: Mapping[str, Callable[[Any], Any]] | None = None,
) -> list[PreparedInsert]:
    """Compile the INSERTs for ``rows`` and convert their values for the driver, once per column.

    SQLAlchemy's per-row parameter handling costs more than SQLite's own work at this volume;
    the statement is still compiled by SQLAlchemy and each value goes through its column type's
    bind processor, so what is stored is exactly what an ORM insert would store. Pure Python and
    no I/O, so it can run in a worker thread while the previous batch is being written.

    ``defaults`` are what the app fills in Python for the columns a row leaves out (see
    ``UserModel.insert_defaults``: a dataclass field's default, a column's ``default=``);
    without it, the columns' own ``default=``.
    """
    if defaults is None:
        defaults = python_column_defaults(table)
    prepared = []
    for columns, group in _group_by_columns(rows):
        filled = [name for name in defaults if name not in columns]
        named = (*columns, *filled)
        compiled = (
            insert(table).values({name: bindparam(name) for name in named}).compile(dialect=dialect)
        )
        order = list(compiled.positiontup or named)
        for name in order:
            if name not in named:
                raise InvalidInput(
                    f"column {name!r} has a default usersctl cannot compute; give it"
                )
        # Python-side defaults (a uuid4 id, a created_at) are filled here, as the app would.
        made = _fill_defaults(table, group, filled, defaults) if filled else {}
        # Column by column: one bind processor per column, chosen once. None stays None, as an
        # ORM insert leaves it (a JSON column's processor would store the text 'null').
        values: list[list[Any]] = []
        for name in order:
            column_values = [row[name] for row in group] if name in columns else made[name]
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                column_values = [None if v is None else process(v) for v in column_values]
            values.append(column_values)
        prepared.append(PreparedInsert(compiled.string, list(zip(*values, strict=True))))
    return prepared


def _fill_defaults(
    table: Any,
    group: list[dict[str, Any]],
    names: list[str],
    defaults: Mapping[str, Callable[[Any], Any]],
) -> dict[str, list[Any]]:
    """The default of each column in ``names`` (in the table's order) for each row of ``group``;
    a default that takes a context sees the row and the defaults computed before it."""
    made: dict[str, list[Any]] = {}
    context = InsertContext(made)
    for name in names:
        make = defaults[name]
        context.current_column = table.c[name]
        column_values = []
        try:
            for index, row in enumerate(group):
                context.row, context.index = row, index
                column_values.append(make(context))
        except Exception as exc:  # the app's own code: whatever it raises, name the column
            raise InvalidInput(
                f"column {name!r}: the model's default failed ({type(exc).__name__}: {exc}); "
                "give the column a value"
            ) from None
        made[name] = column_values
    return made


async def _execute_inserts(ctx: UserContext, prepared: list[PreparedInsert]) -> None:
    connection = await ctx.session.connection()
    limit = sqlite_variable_limit() if connection.dialect.name == "sqlite" else 0
    for statement in prepared:
        if limit:
            for sql, params in _sqlite_multi_row(statement, limit):
                await connection.exec_driver_sql(sql, params)
        else:
            await connection.exec_driver_sql(statement.sql, statement.params)


@functools.cache
def sqlite_variable_limit() -> int:
    """How many parameters one SQLite statement may bind with this build of SQLite (its
    MAX_VARIABLE_NUMBER, read off a fresh connection), at most 32,766: longer statements gain
    nothing. Python 3.10 cannot read it and takes the default of the version."""
    import sqlite3

    probe = sqlite3.connect(":memory:")
    try:
        getlimit = getattr(probe, "getlimit", None)  # Python 3.11 and later
        if getlimit is None:
            return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999
        limit: int = getlimit(getattr(sqlite3, "SQLITE_LIMIT_VARIABLE_NUMBER", 9))
        return min(limit, 32766)
    finally:
        probe.close()


def _sqlite_multi_row(statement: PreparedInsert, limit: int) -> Iterator[tuple[str, Any]]:
    """``statement`` as INSERTs of many rows each (``VALUES (?, ?), (?, ?), ...``), as many as
    SQLite's ``limit`` on bound parameters allows. executemany runs the statement once per row and
    takes the GIL back after each, so a thread checking the next batch meanwhile slows it down
    more than it gains (measured); one statement for thousands of rows releases the GIL once."""
    head, _, row = statement.sql.rpartition(" VALUES ")
    if not head or not row.startswith("(") or row.strip("(?, )"):
        yield statement.sql, statement.params  # not a plain one-row VALUES: leave it as it is
        return
    per_statement = max(1, limit // max(1, row.count("?")))
    rows = statement.params
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        values = ", ".join([row] * len(chunk))
        yield f"{head} VALUES {values}", tuple(itertools.chain.from_iterable(chunk))


async def _insert(
    ctx: UserContext, batch: list[dict[str, Any]], stand_ins: NextIds | None = None
) -> None:
    """Insert rows through the driver's executemany (see ``prepare_inserts``)."""
    if ctx.model.parent_tables:
        await _insert_through_mapper(ctx, batch, stand_ins)
        return
    dialect = ctx.session.bind.dialect
    defaults = ctx.model.insert_defaults()
    prepared = _prepare_batch(ctx.model.table, dialect, batch, defaults, stand_ins)
    await _execute_inserts(ctx, prepared)


def _with_stand_ins(
    batch: list[dict[str, Any]], stand_ins: NextIds
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A dry run's batch as the rows that give their id and the rows that do not, these with
    the ids PostgreSQL's sequence would give them, read without taking them (``NextIds``:
    ``nextval`` is not rolled back, so a dry run that drew ids would move the sequence)."""
    given = [row for row in batch if row.get("id") is not None]
    new = [{**row, "id": stand_ins.take()} for row in batch if row.get("id") is None]
    return given, new


def _prepare_batch(
    table: Any,
    dialect: Dialect,
    batch: list[dict[str, Any]],
    defaults: Mapping[str, Callable[[Any], Any]],
    stand_ins: NextIds | None,
) -> list[PreparedInsert]:
    """``prepare_inserts`` for a batch; in a dry run, see ``_with_stand_ins``: the rows given
    an id here are inserted on their own, over a ``GENERATED ALWAYS`` id too."""
    if stand_ins is None:
        return prepare_inserts(table, dialect, batch, defaults)
    given, new = _with_stand_ins(batch, stand_ins)
    prepared = prepare_inserts(table, dialect, given, defaults) if given else []
    for statement in prepare_inserts(table, dialect, new, defaults) if new else []:
        if stand_ins.always:
            statement = PreparedInsert(with_overriding(statement.sql), statement.params)
        prepared.append(statement)
    return prepared


async def _insert_through_mapper(
    ctx: UserContext, batch: list[dict[str, Any]], stand_ins: NextIds | None
) -> None:
    """Insert the users of a joined-table subclass through the app's mapper, as the app does:
    each user's row in every parent table first (its defaults filled, the discriminator set),
    then in the user table, in the caller's transaction. In a dry run, see ``_with_stand_ins``."""
    if stand_ins is None:
        await _add_through_mapper(ctx, batch)
        return
    given, new = _with_stand_ins(batch, stand_ins)
    await _add_through_mapper(ctx, given)
    connection = await ctx.session.connection()
    overriding = overriding_system_value(connection.sync_connection, stand_ins.table)
    with overriding if stand_ins.always else contextlib.nullcontext():
        await _add_through_mapper(ctx, new)


async def _add_through_mapper(ctx: UserContext, batch: list[dict[str, Any]]) -> None:
    model = ctx.model
    keys: dict[str, str] = {}
    users = []
    for row in batch:
        for name in row.keys() - keys.keys():
            keys[name] = model.attribute(name)
        users.append(model.new_user({keys[name]: value for name, value in row.items()}))
    ctx.session.add_all(users)
    await ctx.session.flush()
    for user in users:
        ctx.session.expunge(user)  # a million users must not stay in the session


def _group_by_columns(
    rows: list[dict[str, Any]],
) -> Iterator[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """executemany needs the same keys in every row; rows giving different fields go separately."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(row)), []).append(row)
    yield from groups.items()


# The whole import -----------------------------------------------------------------------------


async def import_users(
    url: str,
    stream: IO[bytes],
    *,
    fmt: str | None = None,
    on_conflict: str = "fail",
    dry_run: bool = False,
    connect_timeout: float = 10.0,
    progress: Progress | None = None,
    model_path: str | None = None,
    table: str | None = None,
    keep_unknown_hashes: bool = False,
    force: bool = False,
    keep_sessions: bool = False,
    allow_weak_passwords: bool = False,
    user_manager_path: str | None = None,
    hooks: bool = False,
    hash_scheme: str = "auto",
    password_helper: Hashing | None = None,
    raw_csv: bool = False,
) -> ImportSummary:
    """Import users from ``stream`` into the database at ``url``, all or nothing.

    ``keep_unknown_hashes`` takes a ``hashed_password`` in no format FastAPI Users verifies as it
    is (a legacy scheme, a marker that locks the account): such users cannot log in with a
    password until it is set again. Without it, such a row is invalid. ``force`` lets updates
    leave no active superuser; ``keep_sessions`` keeps the access tokens of updated users.
    Plaintext passwords must pass the password policy, checked with the rest of each row
    (before any is hashed), unless ``allow_weak_passwords``; they are hashed in the scheme
    ``hash_scheme`` chooses (``choose_hashing``), or by the app's own ``password_helper``. With
    ``user_manager_path`` (the app's user manager), its ``validate_password`` is the policy and
    its ``password_helper`` hashes; with ``hooks`` its ``on_after_register`` runs for each user
    created, after the commit. A CSV cell written formula-safe is read as the text it holds
    (one ``'`` off ``'=x``), unless ``raw_csv``."""

    if on_conflict not in CONFLICT_RULES:
        raise InvalidInput(f"--on-conflict must be one of {', '.join(CONFLICT_RULES)}")
    summary = ImportSummary(dry_run=dry_run)
    # Rows are kept until the end: the collector would scan them again and again for nothing.
    gc.disable()
    try:
        return await _import(
            url,
            stream,
            summary,
            fmt=fmt,
            on_conflict=on_conflict,
            connect_timeout=connect_timeout,
            progress=progress,
            model_path=model_path,
            table=table,
            keep_unknown_hashes=keep_unknown_hashes,
            force=force,
            keep_sessions=keep_sessions,
            allow_weak_passwords=allow_weak_passwords,
            user_manager_path=user_manager_path,
            hooks=hooks,
            hash_scheme=hash_scheme,
            password_helper=password_helper,
            raw_csv=raw_csv,
        )
    finally:
        gc.enable()


async def _import(
    url: str,
    stream: IO[bytes],
    summary: ImportSummary,
    *,
    fmt: str | None,
    on_conflict: str,
    connect_timeout: float,
    progress: Progress | None,
    model_path: str | None,
    table: str | None,
    keep_unknown_hashes: bool,
    force: bool,
    keep_sessions: bool,
    allow_weak_passwords: bool,
    user_manager_path: str | None,
    hooks: bool,
    hash_scheme: str,
    password_helper: Hashing | None,
    raw_csv: bool,
) -> ImportSummary:
    from usersctl.password_policy import password_problems
    from usersctl.users import open_users

    dry_run = summary.dry_run
    async with (
        open_users(
            url, connect_timeout=connect_timeout, write=True, model_path=model_path, table=table
        ) as ctx,
        _open_manager(user_manager_path, ctx) as manager,
    ):
        if ctx.session.bind.dialect.name == "sqlite":
            # A bigger page cache (64 MiB, this connection only) keeps the indexes being
            # filled in memory instead of re-reading their pages for every few rows.
            connection = await ctx.session.connection()
            await connection.exec_driver_sql("PRAGMA cache_size = -65536")
        #: The emails of the users created, for the app's on_after_register (``hooks``).
        created: list[str] | None = [] if manager is not None and hooks else None
        check = FileCheck(
            ctx.model,
            on_conflict,
            keep_unknown_hashes=keep_unknown_hashes,
            password_policy=None if allow_weak_passwords or manager else password_problems,
        )
        records = read_records(stream, fmt, raw_csv=raw_csv)
        # A dry run takes no id from PostgreSQL's sequence: see _with_stand_ins.
        stand_ins = await peek_next_ids(ctx) if dry_run else None
        # Writing while reading suits a file; a pipe may be slow, and its writer must not hold
        # the database's lock while it waits for the other end.
        fast = on_conflict == "fail" and _is_regular_file(stream) and not ctx.model.parent_tables
        if fast and await _stream_rows(ctx, check, records, progress, stand_ins):
            summary.created = len(check.rows)
            if created is not None:
                created.extend(row.values["email"] for row in check.rows.values())
            if not dry_run:
                await _advance_id_sequence(ctx, check.rows.values())
        else:
            # The careful path: the whole file checked, passwords hashed with no transaction
            # open, then conflicts looked up and everything written in one transaction.
            await ctx.session.rollback()
            check.add(records)  # whatever the streaming path did not read
            if manager is not None and not allow_weak_passwords:
                await check_with_app(manager, check)
            rows, summary.skipped = check.verdict()
            needed = await passwords_worth_hashing(ctx, rows, on_conflict)
            hashing = ARGON2
            if manager is not None:  # the app's own password_helper hashes, as its routes do
                from usersctl.user_manager import manager_hashing

                hashing = manager_hashing(manager, user_manager_path or "")
            elif any(row.password for row in rows):  # decided before any hashing, lock-free
                choice = await choose_hashing(ctx, hash_scheme, password_helper)
                await ctx.session.rollback()
                hashing, summary.hash_note = choice.hashing, choice.note
            # A dry run hashes one password, which checks the hashing, and lends its hash to the
            # other rows: what it writes is rolled back, and hashing them all took minutes.
            plaintext = [row for row in needed if row.password is not None]
            hashed_now = plaintext[:1] if dry_run else plaintext
            stop = threading.Event()
            try:
                await asyncio.to_thread(hash_passwords, hashed_now, progress, stop, hashing)
            finally:
                stop.set()  # on Ctrl-C, asyncio waits for this thread before exiting
            for row in plaintext[len(hashed_now) :]:
                row.values["hashed_password"] = hashed_now[0].values["hashed_password"]
                row.password = None
            try:
                await write_rows(
                    ctx,
                    rows,
                    on_conflict,
                    summary,
                    progress,
                    force=force,
                    keep_sessions=keep_sessions,
                    hashing=hashing,
                    created=created,
                    stand_ins=stand_ins,
                )
            except IntegrityError as exc:
                # SQLite names no foreign key, nor a unique index: usersctl finds which.
                from usersctl.users import name_violation

                lines = [row.line for row in rows]
                await name_violation(ctx, exc, [row.values for row in rows], lines=lines)
                raise
            if not dry_run:
                await _advance_id_sequence(ctx, rows)
        if dry_run:
            await ctx.session.rollback()
        else:
            await ctx.session.commit()
            if manager is not None and hooks:
                await _registered(ctx, manager, created if created is not None else [])
    return summary


def _open_manager(path: str | None, ctx: UserContext) -> Any:
    from contextlib import nullcontext

    if path is None:
        return nullcontext(None)
    from usersctl.user_manager import open_manager

    return open_manager(path, ctx.db)


async def _registered(ctx: UserContext, manager: Any, emails: list[str]) -> None:
    """The app's ``on_after_register`` for each user the import created (after the commit)."""
    from usersctl.user_manager import run_hook
    from usersctl.users import find_by_email

    for done, email in enumerate(emails):
        user = await find_by_email(ctx, email)
        await run_hook(
            manager,
            "on_after_register",
            user,
            committed=f"the import is committed; the hook ran for {done} of the "
            f"{len(emails)} users created before {email}",
        )


def _is_regular_file(stream: IO[bytes]) -> bool:
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


async def _stream_rows(
    ctx: UserContext,
    check: FileCheck,
    records: Iterator[tuple[int, dict[str, Any]]],
    progress: Progress | None,
    stand_ins: NextIds | None,
) -> bool:
    """The fast path for a file of hashes under ``--on-conflict fail``: each batch is written
    while the next one is being checked, inside the one transaction the caller commits.

    Returns True when every row is in; False as soon as the file needs the careful path (a
    password to hash, an invalid row, a duplicate, a conflict with the database), leaving the
    rest of ``records`` unread and the transaction for the caller to roll back.
    """

    table = ctx.model.table
    dialect = ctx.session.bind.dialect
    defaults = ctx.model.insert_defaults()
    await _lock_table(ctx)

    def next_batch() -> list[PreparedInsert] | None:
        batch = list(itertools.islice(records, WRITE_BATCH))
        if not batch:
            return None
        accepted = check.add(batch)
        if not check.clean or check.plaintext:
            return []
        return _prepare_batch(table, dialect, [row.values for row in accepted], defaults, stand_ins)

    # A batch is checked in a thread while the previous one is written: by the server process
    # on PostgreSQL; on SQLite by aiosqlite's thread, which holds the GIL only to bind a batch's
    # values, as its rows go in one statement (see _sqlite_multi_row).
    writing: asyncio.Future[None] | None = None
    written = 0
    try:
        while True:
            prepared = await asyncio.to_thread(next_batch)
            if writing is not None:
                await writing
                writing = None
            if prepared is None:
                # SQLite's index lets in what differs in the case of letters beyond ASCII.
                return not await _clash_beyond_ascii(ctx, check.rows.values())
            if not check.clean or check.plaintext:
                return False
            writing = asyncio.ensure_future(_execute_inserts(ctx, prepared))
            written += sum(len(statement.params) for statement in prepared)
            if progress:
                progress("writing", written, 0)
    except IntegrityError:
        return False
    except (asyncio.CancelledError, KeyboardInterrupt):
        # Ctrl-C: the batch being written is given up, not waited for (its statement may be
        # half-sent); the caller closes the connection and the server rolls back.
        if writing is not None and not writing.done():
            writing.cancel()
            await asyncio.wait([writing], timeout=1)
            writing = None
        raise
    finally:
        if writing is not None and not writing.done():
            await asyncio.wait([writing])
