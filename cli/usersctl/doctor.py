"""``usersctl doctor``: check a database against what usersctl and FastAPI Users expect.

Each check gives a ``CheckResult``: ``ok``, ``warn`` (worth knowing, not wrong), ``fail``, ``skip``
(could not be checked) or ``fixed`` (failed, and ``--fix`` repaired it). Fixing is limited to what
is safe on a live database: the unique ``lower(email)`` index (built without blocking writes on
PostgreSQL) and OAuth or token rows whose user no longer exists. A user is never changed. On a
database that Alembic manages the index is the app's to declare and migrate: the report carries
the advice instead, unless ``apply_anyway``.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Column, MetaData, String, Table, delete, exists, func, inspect, select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.schema import CreateIndex, DropIndex, Index
from sqlalchemy.types import (
    JSON,
    Boolean,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    Numeric,
    Time,
    TypeDecorator,
    TypeEngine,
    Uuid,
)

from usersctl.db import email_lower_index_name
from usersctl.email_case import case_key
from usersctl.engine import (
    DEFAULT_CONNECT_TIMEOUT,
    check_sqlite_file,
    create_engine,
    mask_url,
    normalize_url,
)
from usersctl.errors import TablesMissing
from usersctl.hash_choice import app_verifies_argon2, fastapi_users_version
from usersctl.migrations import (
    IndexAdvice,
    database_index_names,
    email_index_advice,
    is_alembic_managed,
)
from usersctl.models import (
    OAUTH_TABLE,
    TOKEN_TABLE,
    UserModel,
    is_uuid_type,
    load_user_model,
    reflect_user_model,
)
from usersctl.passwords import Hashing, hash_cost_problem, hash_scheme, is_disabled_marker
from usersctl.schema import (
    build_email_index_concurrently,
    case_sensitive_message,
    email_collation,
    email_index_state,
)

#: The hash schemes counted, in the order they are shown.
HASH_SCHEMES = ("argon2", "argon2-outdated", "bcrypt", "unknown", "disabled")
MAX_LISTED = 20  # duplicate groups listed in a check's items
HASH_BATCH = 10_000

OK, WARN, FAIL, SKIP, FIXED = "ok", "warn", "fail", "skip", "fixed"


@dataclass(frozen=True)
class CheckResult:
    """One check: its name, status, a one-line detail, and what it found (listed or counted)."""

    name: str
    status: str
    detail: str
    items: tuple[str, ...] = ()
    counts: Mapping[str, int] | None = None
    fixable: bool = False  # whether --fix can repair this failure now

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"check": self.name, "status": self.status, "detail": self.detail}
        if self.items:
            found["items"] = list(self.items)
        if self.counts is not None:
            found["counts"] = dict(self.counts)
        return found


@dataclass(frozen=True)
class DoctorReport:
    """Every check run on one database, and which user model they were run with."""

    database: str
    model: str
    checks: tuple[CheckResult, ...]
    #: On an Alembic-managed database: how the app declares and migrates the lower(email) index,
    #: and whether the database has it already (then only the model lacks it).
    index_advice: IndexAdvice | None = None
    index_in_database: bool = False

    @property
    def failed(self) -> list[CheckResult]:
        return [check for check in self.checks if check.failed]

    def check(self, name: str) -> CheckResult:
        return next(check for check in self.checks if check.name == name)

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "database": self.database,
            "model": self.model,
            "passed": not self.failed,
            "checks": [check.as_dict() for check in self.checks],
        }
        if self.index_advice is not None:
            advice = self.index_advice.as_dict()
            found["index_advice"] = {**advice, "in_database": self.index_in_database}
        return found


# Types ----------------------------------------------------------------------------------------


def type_family(kind: TypeEngine[Any], dialect: Dialect) -> str:
    """What a column type stores, as far as compatibility goes: ``uuid``, ``integer``, ``text``...

    Type decorators are looked through as the dialect stores them, so FastAPI Users' GUID is
    ``uuid`` on PostgreSQL and ``text`` (CHAR(36)) on SQLite, like the column reflected there.
    """
    if isinstance(kind, TypeDecorator):
        kind = kind.load_dialect_impl(dialect)
    if isinstance(kind, Uuid) and not (kind.native_uuid and dialect.supports_native_uuid):
        return "text"  # SQLite keeps UUIDs as text (32 hex digits), declared UUID or CHAR(32)
    checks: list[tuple[type[Any] | tuple[type[Any], ...], str]] = [
        (Uuid, "uuid"),
        (Boolean, "boolean"),
        (Integer, "integer"),
        (DateTime, "datetime"),
        (Date, "date"),
        (Time, "time"),
        (Numeric, "number"),
        (JSON, "json"),
        (String, "text"),
        (LargeBinary, "binary"),
    ]
    for classes, family in checks:
        if isinstance(kind, classes):
            return family
    if is_uuid_type(kind):
        return "uuid"
    return type(kind).__name__.lower()


#: What FastAPI Users' columns may be, when no model says more (the table is read as it is), by
#: the table's role, whatever its name: these are the columns FastAPI Users' adapters use.
EXPECTED_FAMILIES: dict[str, dict[str, set[str]]] = {
    "user": {
        "id": {"uuid", "integer", "text"},
        "email": {"text"},
        "hashed_password": {"text"},
        "is_active": {"boolean"},
        "is_superuser": {"boolean"},
        "is_verified": {"boolean"},
    },
    "oauth": {
        "id": {"uuid", "integer", "text"},
        "oauth_name": {"text"},
        "access_token": {"text"},
        "expires_at": {"integer"},
        "refresh_token": {"text"},
        "account_id": {"text"},
        "account_email": {"text"},
        "user_id": {"uuid", "integer", "text"},
    },
    # The creation time (``created_at`` to FastAPI Users) is an attribute the app's model may
    # map to a column of another name (``created_on``): any datetime column will do.
    "token": {
        "token": {"text"},
        "user_id": {"uuid", "integer", "text"},
    },
}


def _compare_table(
    connection: Connection,
    expected: Table | None,
    name: str,
    user_id_family: str | None,
    role: str,
    schema: str | None = None,
    inherited: Sequence[Table] = (),
) -> tuple[list[str], list[str]]:
    """Problems with the database's table ``name`` (in ``schema``) against ``expected`` (a model's
    table) or, without one, against the columns FastAPI Users needs in a table of that ``role``
    (``user``, ``oauth``, ``token``); and the columns found only in the database. The columns of
    the ``inherited`` tables (a joined-table subclass's parents) count as the table's own."""
    dialect = connection.dialect
    inspector = inspect(connection)
    found = {column["name"]: column for column in inspector.get_columns(name, schema=schema)}
    for parent in inherited:
        for column in inspector.get_columns(parent.name, schema=parent.schema):
            found.setdefault(column["name"], column)
    problems: list[str] = []
    if expected is not None:
        wanted = {column.name: {type_family(column.type, dialect)} for column in expected.columns}
    else:
        wanted = EXPECTED_FAMILIES[role]
    for column_name, families in wanted.items():
        if column_name not in found:
            problems.append(f"column {column_name} is missing")
            continue
        family = type_family(found[column_name]["type"], dialect)
        if family not in families:
            problems.append(
                f"column {column_name} is {found[column_name]['type']}, expected {'/'.join(sorted(families))}"
            )
    if expected is None and role == "token":
        times = [
            column_name
            for column_name, column in found.items()
            if type_family(column["type"], dialect) == "datetime"
        ]
        if not times:
            problems.append("no datetime column for the token's creation time (created_at)")
    if user_id_family is not None and "user_id" in found:
        family = type_family(found["user_id"]["type"], dialect)
        if family != user_id_family:
            problems.append(f"user_id is {family} but the user table's id is {user_id_family}")
    extra = [column for column in found if column not in wanted]
    for column_name in extra:
        column = found[column_name]
        if expected is not None and not column["nullable"] and column.get("default") is None:
            problems.append(
                f"column {column_name} is NOT NULL without a default but the model lacks it "
                "(inserts would fail)"
            )
    return problems, extra


# Reading the database -------------------------------------------------------------------------


@dataclass
class _State:
    """What the first pass found out about the database, for the checks that follow."""

    model: UserModel | None
    tables: set[str] = field(default_factory=set)  # the model's tables found, by full name
    checks: list[CheckResult] = field(default_factory=list)


def _structure(
    connection: Connection, loaded: UserModel | None, table_name: str | None = None
) -> _State:
    inspector = inspect(connection)
    state = _State(model=loaded)
    if loaded is None:
        try:
            state.model = reflect_user_model(connection, table_name)
        except TablesMissing as exc:
            state.checks.append(CheckResult("model", SKIP, "no user table to read"))
            state.checks.append(CheckResult("user table", FAIL, str(exc)))
            return state
    model = state.model
    assert model is not None
    state.checks.append(CheckResult("model", OK, model.description))
    user = model.table
    if not inspector.has_table(user.name, schema=user.schema):
        state.checks.append(
            CheckResult(
                "user table",
                FAIL,
                f"no {user.fullname!r} table; run `usersctl init-db` (or the app's migrations)",
            )
        )
        return state
    state.tables.add(user.fullname)
    expected = user if model.source != "database" else None
    parents = model.parent_tables if expected is None else []
    problems, extra = _compare_table(
        connection, expected, user.name, None, "user", user.schema, inherited=parents
    )
    detail = f"{user.fullname!r} has FastAPI Users' columns"
    if parents:
        inherits = ", ".join(repr(parent.fullname) for parent in reversed(parents))
        detail = f"{user.fullname!r} (with {inherits}, which it inherits from) has FastAPI Users' columns"
    if expected is None and extra:
        detail += f", and {', '.join(extra)}"
    elif extra:
        detail += f"; only in the database, not in the model: {', '.join(extra)}"
    state.checks.append(
        CheckResult("user table", FAIL if problems else OK, "; ".join(problems) or detail)
    )
    id_family = type_family(user.c.id.type, connection.dialect)
    related = (
        (OAUTH_TABLE, "oauth_account table", "OAuth account", model.oauth_table, "oauth"),
        (TOKEN_TABLE, "accesstoken table", "access token", model.token_table, "token"),
    )
    for default_name, check_name, what, table, role in related:
        if table is None:
            # Found by its foreign key to the user table: a table of FastAPI Users' name that
            # does not reference it is another table, not this one. One that does, but was not
            # taken for the app's table, lacks the columns FastAPI Users needs: say which.
            if _references_user_table(inspector, default_name, user):
                problems, _ = _compare_table(connection, None, default_name, id_family, role)
                detail = "; ".join(problems) or f"{default_name!r} has FastAPI Users' columns"
                state.checks.append(CheckResult(check_name, FAIL if problems else OK, detail))
                continue
            if inspector.has_table(default_name):
                detail = f"no {what} table references {user.fullname!r} ({default_name!r} does not)"
            else:
                detail = f"no {default_name!r} table (not used)"
            state.checks.append(CheckResult(check_name, OK, detail))
            continue
        known = model.source != "database"
        if not inspector.has_table(table.name, schema=table.schema):
            state.checks.append(
                CheckResult(
                    check_name, FAIL, f"the model has {table.fullname!r} but the database not"
                )
            )
            continue
        state.tables.add(table.fullname)
        problems, _ = _compare_table(
            connection, table if known else None, table.name, id_family, role, table.schema
        )
        status = FAIL if problems else OK
        detail = "; ".join(problems) or f"{table.fullname!r} has FastAPI Users' columns"
        state.checks.append(CheckResult(check_name, status, detail))
    return state


def _references_user_table(inspector: Any, name: str, user: Table) -> bool:
    """Whether the table ``name`` (in the default schema) has a foreign key to the user table."""
    if not inspector.has_table(name):
        return False
    return any(
        key["referred_table"] == user.name and key.get("referred_schema") in (None, user.schema)
        for key in inspector.get_foreign_keys(name)
    )


def _index_and_duplicates(
    connection: Connection, model: UserModel, alembic: bool, apply_anyway: bool
) -> list[CheckResult]:
    table = model.email_table  # a joined-table subclass's parent may hold the email
    # lower(email); on SQLite also for letters beyond ASCII, which its lower() leaves alone.
    key = case_key(table.c.email)
    shared = select(key.label("key")).group_by(key).having(func.count() > 1).subquery()
    # Grouped by the database's key, not again in Python: on MySQL/MariaDB the key is the email
    # in its _ci collation, which makes rené@ and rene@ one address as well.
    statement = (
        select(shared.c.key, table.c.email)
        .select_from(table.join(shared, key == shared.c.key))
        .order_by(shared.c.key, table.c.email)
    )
    groups: dict[str, list[str]] = {}
    for group, email in connection.execute(statement):
        groups.setdefault(group, []).append(email)
    # The groups the database's own lower() sees too: those block its unique index.
    blocking = [emails for emails in groups.values() if _index_sees_alike(connection, emails)]
    if groups:
        users = sum(len(emails) for emails in groups.values())
        # A _ci collation of MySQL/MariaDB also compares accents (and trailing spaces) away.
        differing = "case or accents" if connection.dialect.name == "mysql" else "case"
        beyond = len(groups) - len(blocking)
        if not beyond:
            why = "FastAPI Users' login fails for them (MultipleResultsFound)"
        else:
            why = (
                f"{beyond} of them only in letters beyond ASCII, which SQLite's lower() (and so "
                "its index and the app's login) tells apart, and usersctl and PostgreSQL do not"
            )
            if blocking:
                why += "; FastAPI Users' login fails for the others (MultipleResultsFound)"
        duplicates = CheckResult(
            "case duplicates",
            FAIL,
            f"{len(groups)} address(es) used by {users} users differing only in {differing}: "
            f"{why}; "
            "change or delete all but one",
            items=tuple(" = ".join(emails) for emails in list(groups.values())[:MAX_LISTED]),
        )
    else:
        duplicates = CheckResult("case duplicates", OK, "no two emails differ only in case")
    state, _ = email_index_state(connection, table.name, table.schema)
    name = email_lower_index_name(table.name)
    mysql = connection.dialect.name == "mysql"
    if state == "ok" and mysql:
        collation = email_collation(connection, table.name)
        index = CheckResult(
            "email index",
            OK,
            f"unique index on email of {table.name!r}, whose collation {collation} ignores case "
            "(and accents: rené@ and rene@ are one address to it, to usersctl and to the app; "
            "and trailing spaces)",
        )
    elif state == "ok":
        index = CheckResult("email index", OK, f"unique index on lower(email) of {table.name!r}")
    elif state == "case-sensitive":
        index = CheckResult("email index", FAIL, case_sensitive_message(connection, table.name))
    else:
        if state == "invalid":
            what = f"index {name} is invalid (an interrupted concurrent build)"
        elif state == "wrong":
            shape = (
                "email (not unique, on a prefix" if mysql else "lower(email) (not unique, partial"
            )
            what = (
                f"index {name} is not a unique index on {shape}, or on other columns): "
                "addresses differing only in case can be created"
            )
        else:
            what = (
                f"no unique index on {'email' if mysql else 'lower(email)'}: logins scan the "
                "table, and addresses differing only in case can be created"
            )
        if blocking:
            index = CheckResult(
                "email index",
                FAIL,
                f"{what}; the case duplicates must be resolved before --fix can create it",
            )
        elif alembic and not apply_anyway:
            index = CheckResult(
                "email index",
                FAIL,
                f"{what}; the database is managed by Alembic, so the app's model and migrations "
                "add it (as printed below), or --fix --apply-anyway",
            )
        else:
            index = CheckResult("email index", FAIL, f"{what}; --fix creates it", fixable=True)
    return [index, duplicates]


def _index_sees_alike(connection: Connection, emails: list[str]) -> bool:
    """Whether the database's own ``lower()`` makes two of ``emails`` (equal under ``fold_case``)
    one: always on PostgreSQL; on SQLite, whose lower() folds only A to Z, when two differ only
    in the case of ASCII letters."""
    if connection.dialect.name != "sqlite":
        return True
    return len({email.translate(_ASCII_LOWER) for email in emails}) < len(emails)


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _made_here(index: Index, connection: Connection) -> bool:
    """Whether ``create_all`` makes ``index`` on this database: an index declared with
    ``ddl_if`` (usersctl.db's lower(email) one, which MySQL/MariaDB do without) may not be."""
    condition = getattr(index, "_ddl_if", None)
    if condition is None:
        return True
    return bool(condition._should_execute(CreateIndex(index), index, connection))


def _model_indexes(connection: Connection, model: UserModel, alembic: bool) -> CheckResult:
    """The indexes of the model's user table against the database's, by name, as Alembic's
    autogenerate compares them: one only in the database is one it would drop."""
    table = model.table
    declared = {
        index.name
        for index in table.indexes
        if isinstance(index.name, str) and _made_here(index, connection)
    }
    present = set(database_index_names(connection, table.name))
    # usersctl's own index, which init-db and doctor --fix add, is only Alembic's concern.
    ours = set() if alembic else {email_lower_index_name(table.name)}
    problems = []
    only_database = sorted(present - declared - ours)
    only_model = sorted(declared - present)
    if only_database:
        problems.append(
            f"in the database but not in the model: {', '.join(only_database)} (the app's "
            "`alembic revision --autogenerate` would drop them; declare them in the model)"
        )
    if only_model:
        problems.append(
            f"in the model but not in the database: {', '.join(only_model)} (run the app's "
            "migrations)"
        )
    if not problems:
        return CheckResult(
            "model indexes", OK, f"the indexes of {table.name!r} match the model's ({len(present)})"
        )
    # Under Alembic a difference is a migration that drops or adds an index: `alembic check` fails.
    return CheckResult("model indexes", FAIL if alembic else WARN, "; ".join(problems))


async def _hashes(
    connection: AsyncConnection, model: UserModel, helper: Hashing | None
) -> CheckResult:
    """Hashes by scheme, and by scheme those the app cannot use: with the app's ``helper``,
    those it does not identify (a failure: those users cannot log in); without, unknown ones,
    and Argon2 ones when the installed FastAPI Users verifies bcrypt only (a warning). A
    disabled marker locks its account on purpose, and is counted apart."""
    counts: Counter[str] = Counter({scheme: 0 for scheme in HASH_SCHEMES})
    unusable: Counter[str] = Counter()
    costly: Counter[str] = Counter()  # cost parameters far beyond what a login can verify
    bcrypt_only = helper is None and app_verifies_argon2() is False
    result = await connection.stream(
        select(model.column("hashed_password")), execution_options={"yield_per": HASH_BATCH}
    )
    async for batch in result.partitions(HASH_BATCH):
        for (hashed,) in batch:
            if hashed is None or is_disabled_marker(hashed):
                counts["disabled"] += 1
                continue
            scheme = hash_scheme(hashed, helper)
            counts[scheme] += 1
            if scheme != "unknown" and hash_cost_problem(hashed) is not None:
                costly[scheme] += 1
                continue
            identified = helper.identifies(hashed) if helper is not None else None
            if identified is None:  # no helper, or one that cannot be asked
                identified = scheme != "unknown" and not (bcrypt_only and scheme != "bcrypt")
            if not identified:
                unusable[scheme] += 1
    shown = ", ".join(f"{counts[scheme]} {scheme}" for scheme in HASH_SCHEMES)
    if costly:
        by_scheme = ", ".join(f"{count} {scheme}" for scheme, count in costly.items())
        detail = (
            f"{shown}: {sum(costly.values())} hash(es) with a cost far beyond FastAPI Users' "
            f"({by_scheme}): each login with one ties up a core for minutes; set their passwords"
        )
        return CheckResult("password hashes", FAIL, detail, counts=dict(counts))
    if not unusable:
        return CheckResult("password hashes", OK, shown, counts=dict(counts))
    by_scheme = ", ".join(f"{count} {scheme}" for scheme, count in unusable.items())
    if helper is not None:
        why = f"{helper.helper_path} cannot identify their hashes ({by_scheme})"
    elif bcrypt_only and set(unusable) - {"unknown"}:
        version = ".".join(map(str, fastapi_users_version() or ()))
        why = (
            f"the installed FastAPI Users {version} verifies bcrypt only ({by_scheme}; an Argon2 "
            "hash fails its login with HTTP 500 until set-password writes bcrypt)"
        )
    else:
        why = f"FastAPI Users cannot verify their hashes ({by_scheme})"
    detail = f"{shown}: {sum(unusable.values())} user(s) cannot log in: {why}"
    status = FAIL if helper is not None else WARN
    return CheckResult("password hashes", status, detail, counts=dict(counts))


def _orphan_statements(model: UserModel, tables: set[str]) -> list[tuple[Table, Any]]:
    user = model.table
    found = []
    for table in (model.oauth_table, model.token_table):
        if table is not None and table.fullname in tables:
            gone = ~exists(select(user.c.id).where(user.c.id == table.c.user_id))
            found.append((table, gone))
    return found


def _orphans(connection: Connection, model: UserModel, tables: set[str]) -> CheckResult:
    statements = _orphan_statements(model, tables)
    if not statements:
        return CheckResult("orphan rows", OK, "no OAuth or access token tables")
    counts = {
        table.name: int(
            connection.execute(select(func.count()).select_from(table).where(gone)).scalar_one()
        )
        for table, gone in statements
    }
    if any(counts.values()):
        shown = ", ".join(f"{count} in {name}" for name, count in counts.items() if count)
        return CheckResult(
            "orphan rows",
            FAIL,
            f"rows whose user no longer exists: {shown}; --fix removes them",
            counts=counts,
            fixable=True,
        )
    names = " and ".join(counts)
    return CheckResult("orphan rows", OK, f"every row of {names} has its user", counts=counts)


async def _run_checks(
    engine: AsyncEngine,
    loaded: UserModel | None,
    table_name: str | None,
    apply_anyway: bool = False,
    helper: Hashing | None = None,
) -> tuple[str, list[CheckResult], bool]:
    """The model's description, the checks, and whether Alembic manages the database."""
    async with engine.connect() as connection:
        state = await connection.run_sync(_structure, loaded, table_name)
        model = state.model
        checks = list(state.checks)
        if model is None or model.table.fullname not in state.tables:
            for name in ("email index", "case duplicates", "password hashes", "orphan rows"):
                checks.append(CheckResult(name, SKIP, "no user table"))
            return "none", checks, False
        alembic = await connection.run_sync(is_alembic_managed)
        checks += await connection.run_sync(_index_and_duplicates, model, alembic, apply_anyway)
        if loaded is not None:
            checks.append(await connection.run_sync(_model_indexes, loaded, alembic))
        checks.append(await _hashes(connection, model, helper))
        checks.append(await connection.run_sync(_orphans, model, state.tables))
        return model.description, checks, alembic


# Fixing ---------------------------------------------------------------------------------------


async def _create_email_index(engine: AsyncEngine, model: UserModel) -> str:
    """Build the unique lower(email) index; on PostgreSQL concurrently, so writes go on."""
    email_table = model.email_table  # a joined-table subclass's parent may hold the email
    name = email_lower_index_name(email_table.name)
    # A bare table of the same name: the index must not join the app's own metadata.
    table = Table(email_table.name, MetaData(), Column("email", String), schema=email_table.schema)
    if engine.dialect.name == "postgresql":
        await build_email_index_concurrently(engine, table.name, table.schema)
        return f"created unique index {name} on lower(email) concurrently"
    mysql = engine.dialect.name == "mysql"  # no expression index: email in its _ci collation
    index = Index(name, table.c.email if mysql else func.lower(table.c.email), unique=True)
    async with engine.begin() as connection:
        _, stale_indexes = await connection.run_sync(email_index_state, table.name)
        for stale in stale_indexes:
            await connection.execute(DropIndex(Index(stale, table.c.email)))
        await connection.execute(CreateIndex(index, if_not_exists=True))
    return f"created unique index {name} on {'email' if mysql else 'lower(email)'}"


def _existing(connection: Connection, model: UserModel) -> list[str]:
    """The model's OAuth and token tables that the database has (a model's may be missing)."""
    inspector = inspect(connection)
    return [
        table.fullname
        for table in (model.oauth_table, model.token_table)
        if table is not None and inspector.has_table(table.name, schema=table.schema)
    ]


async def _delete_orphans(engine: AsyncEngine, model: UserModel) -> str:
    removed = []
    async with engine.begin() as connection:
        tables = set(await connection.run_sync(_existing, model))
        for table, gone in _orphan_statements(model, tables):
            result = await connection.execute(delete(table).where(gone))
            if result.rowcount:
                removed.append(f"{result.rowcount} from {table.name}")
    return f"removed rows whose user no longer exists: {', '.join(removed) or 'none'}"


async def _fix(
    engine: AsyncEngine, model: UserModel, failures: Sequence[CheckResult]
) -> dict[str, str]:
    """Repair the fixable failures; return what was done, by check name."""
    names = {check.name for check in failures if check.fixable}
    done = {}
    if "email index" in names:
        done["email index"] = await _create_email_index(engine, model)
    if "orphan rows" in names:
        done["orphan rows"] = await _delete_orphans(engine, model)
    return done


async def _model_for_fix(
    engine: AsyncEngine, loaded: UserModel | None, table_name: str | None
) -> UserModel:
    if loaded is not None:
        return loaded
    async with engine.connect() as connection:
        return await connection.run_sync(reflect_user_model, table_name)


# The whole check ------------------------------------------------------------------------------


async def _index_advice(
    engine: AsyncEngine,
    loaded: UserModel | None,
    table_name: str | None,
    checks: Sequence[CheckResult],
    alembic: bool,
) -> tuple[IndexAdvice | None, bool]:
    """On an Alembic-managed database, the advice for the lower(email) index when it is missing,
    just added by ``--apply-anyway``, or in the database but not in the model (``--model``); and
    whether the database has it."""
    check = next((check for check in checks if check.name == "email index"), None)
    if not alembic or check is None or check.status == SKIP:
        return None, False
    async with engine.connect() as connection:
        model = loaded
        if model is None:
            model = await connection.run_sync(reflect_user_model, table_name)
        table = model.email_table
        advice = email_index_advice(table.name, engine.dialect.name, schema=table.schema)
        if check.failed:
            return advice, False
        present = await connection.run_sync(database_index_names, table.name)
    declared = {index.name for index in loaded.table.indexes} if loaded is not None else set()
    undeclared = loaded is not None and advice.index_name in set(present) - declared
    # The model must declare it, or the app's next autogenerate drops it.
    if check.status == FIXED or undeclared:
        return advice, True
    return None, True


async def diagnose(
    url: str,
    *,
    model_path: str | None = None,
    table: str | None = None,
    fix: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    apply_anyway: bool = False,
    password_helper: Hashing | None = None,
) -> DoctorReport:
    """Run every check on the database at ``url``; with ``fix``, repair what can be repaired
    safely and check again (a repaired check reads ``fixed``). ``table`` names the user table
    (``--table``); without it, it is found by its columns. On a database that Alembic manages
    the ``lower(email)`` index is left to the app, unless ``apply_anyway``. With the app's own
    ``password_helper``, every stored hash is checked against it."""
    loaded = load_user_model(model_path, table) if model_path else None
    parsed = normalize_url(url)
    check_sqlite_file(parsed)
    engine = create_engine(
        parsed, connect_timeout=connect_timeout, sqlite_begin="BEGIN", sqlite_wal=False
    )
    try:
        described, checks, alembic = await _run_checks(
            engine, loaded, table, apply_anyway, password_helper
        )
        fixable = [check for check in checks if check.failed and check.fixable]
        if fix and fixable:
            model = await _model_for_fix(engine, loaded, table)
            done = await _fix(engine, model, fixable)
            described, checks, alembic = await _run_checks(
                engine, loaded, table, apply_anyway, password_helper
            )
            checks = [
                replace(check, status=FIXED, detail=done[check.name])
                if check.name in done and not check.failed
                else check
                for check in checks
            ]
        advice, in_database = await _index_advice(engine, loaded, table, checks, alembic)
        # The URL as the user wrote it, its password hidden.
        return DoctorReport(mask_url(url), described, tuple(checks), advice, in_database)
    finally:
        await engine.dispose()
