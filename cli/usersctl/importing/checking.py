"""Checking rows: each record against the user table (emails normalised, types converted, the
password policy), duplicates within the file, and hashing the accepted plaintext passwords."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from usersctl.email_case import fold_case
from usersctl.emails import EmailNormalizer, InvalidEmail
from usersctl.errors import InvalidInput, UsersctlError
from usersctl.fields import (
    Converter,
    converter_for,
    encodes_as_utf8,
    json_kind,
)
from usersctl.importing.reading import TextRecord, UnreadableRecord
from usersctl.importing.rows import (
    FLAGS,
    ImportConflict,
    ImportRejected,
    Problem,
    Problems,
    Progress,
    Row,
)
from usersctl.models import UserModel
from usersctl.password_policy import WeakPassword
from usersctl.passwords import ARGON2, Hashing, hash_cost_problem, hash_many, is_known_hash


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
        #: user keeps its hash; ``decide_import`` refuses such a row for a new user.
        self.passwordless = passwordless
        #: (password, email) -> the reasons to refuse it; None accepts any password.
        self.password_policy = password_policy
        self.normalize = EmailNormalizer()
        managed = {"email", "hashed_password", *FLAGS}
        columns = [column for column in model.all_columns if column.name not in managed]
        # One converter per column, chosen once: per-row type dispatch would dominate the import.
        self.converters: dict[str, Converter] = {
            column.name: converter_for(column, textual=False, quote=False, dialect=model.dialect)
            for column in columns
        }
        self.text_converters: dict[str, Converter] = {
            column.name: converter_for(column, quote=False, dialect=model.dialect)
            for column in columns
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
        if not record.keys() <= self.allowed:
            unknown = record.keys() - self.allowed
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
            known = is_known_hash(hashed)
            costly = hash_cost_problem(hashed) if known else None
            if costly is not None:
                raise InvalidInput(
                    f"hashed_password: {costly}; one login with it would take minutes "
                    "(FastAPI Users' too)"
                )
            if not known:
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
        passwordless: bool | None = None,
    ) -> None:
        # Rows may leave out the password where they may update a user (see RowValidator).
        self.validate = RowValidator(
            model,
            keep_unknown_hashes=keep_unknown_hashes,
            password_policy=password_policy,
            passwordless=on_conflict == "update" if passwordless is None else passwordless,
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
