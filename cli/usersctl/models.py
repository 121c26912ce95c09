"""Which user model a command works on: the app's own (``--model``), or the table found in the
database.

Without ``--model`` the ``user`` table's structure is read from the database, so an app's
integer ids and extra columns are seen and kept. ``--model module.path:ClassName`` imports the
app's mapped class, so its Python-side defaults (a ``created_at`` filled by the app) apply too.
usersctl's own tables, which ``init-db`` creates, are in ``usersctl.builtin_tables``.
"""

from __future__ import annotations

import importlib
import os
import sys
import typing
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Computed, DefaultClause, Identity, MetaData, Table, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning
from sqlalchemy.orm import Mapper, configure_mappers, registry
from sqlalchemy.types import CHAR, NCHAR, VARCHAR, Integer, String, TypeDecorator, TypeEngine, Uuid

from usersctl.db import GUID, add_email_lower_index
from usersctl.errors import InvalidInput, TablesMissing

USER_TABLE = "user"
OAUTH_TABLE = "oauth_account"
TOKEN_TABLE = "accesstoken"
#: The columns every FastAPI Users user table has.
BASE_COLUMNS = ("id", "email", "hashed_password", "is_active", "is_superuser", "is_verified")
#: The columns of FastAPI Users' OAuth account and access token tables that usersctl relies on.
OAUTH_COLUMNS = frozenset({"oauth_name", "account_id", "account_email", "user_id"})
TOKEN_COLUMNS = frozenset({"token", "user_id"})
#: Columns that have an option of their own; ``--set`` names it instead of writing them.
MANAGED_FIELDS = {
    "email": "--email",
    "hashed_password": "set-password",
    "is_active": "--active/--inactive (or --inactive on create-user)",
    "is_superuser": "--superuser",
    "is_verified": "--verified",
}


@dataclass(frozen=True)
class UserModel:
    """The mapped user class a command works with, and what is known of its table."""

    user_class: type[Any]
    source: str  # "built-in", "database", or the module.path:ClassName given to --model
    oauth_class: type[Any] | None = None
    token_table: Table | None = None
    extra_columns: tuple[str, ...] = field(default=())

    @property
    def table(self) -> Table:
        table = inspect(self.user_class).local_table
        assert isinstance(table, Table)
        return table

    @property
    def id_is_uuid(self) -> bool:
        return is_uuid_type(self.table.c.id.type)

    @property
    def columns(self) -> list[str]:
        """Columns shown to people: all but ``hashed_password``, base columns first."""
        names = [name for name in BASE_COLUMNS if name != "hashed_password"]
        return names + list(self.extra_columns)

    @property
    def oauth_table(self) -> Table | None:
        """FastAPI Users' OAuth account table, when the app has one."""
        if self.oauth_class is None:
            return None
        table = inspect(self.oauth_class).local_table
        return table if isinstance(table, Table) else None

    @property
    def description(self) -> str:
        """Which model this is, and its id type and extra columns, in a phrase."""
        where = {"built-in": "usersctl's built-in model", "database": "read from the database"}
        kind = "UUID" if self.id_is_uuid else self.table.c.id.type.__class__.__name__.lower()
        text = f"{where.get(self.source, self.source + ' (--model)')}; table {self.table.name!r}"
        text += f", {kind} ids"
        if self.extra_columns:
            text += f", extra columns {', '.join(self.extra_columns)}"
        return text

    def attribute(self, column_name: str) -> str:
        """The mapped attribute holding ``column_name`` (an app may name them differently)."""
        mapper: Mapper[Any] = inspect(self.user_class)
        return mapper.get_property_by_column(self.table.c[column_name]).key

    @property
    def required_columns(self) -> list[str]:
        """Columns a new user must be given a value for: NOT NULL, with no default of any kind."""
        table = self.table
        return [
            column.name
            for column in table.columns
            if column.name not in MANAGED_FIELDS
            and not column.nullable
            and column.default is None
            and column.server_default is None
            and column is not table.autoincrement_column
        ]

    def missing_required(self, values: Mapping[str, Any]) -> list[str]:
        """The required columns that ``values`` (keyed by attribute) leaves without a value."""
        return [name for name in self.required_columns if values.get(self.attribute(name)) is None]


def _uuid_type(column: Any, dialect: str) -> TypeEngine[Any] | None:
    """The type that reads a reflected id column as UUIDs, if it holds them: a native UUID or
    FastAPI Users' CHAR(36) hyphenated text (GUID), or SQLAlchemy's own ``Uuid`` stored as
    CHAR(32) hex on SQLite (declared so, or ``UUID``), which must be written back in that form."""
    kind = column["type"]
    if isinstance(kind, Uuid):
        return GUID() if dialect == "postgresql" else Uuid(as_uuid=True)
    if isinstance(kind, (CHAR, NCHAR, VARCHAR, String)):
        length = getattr(kind, "length", None)
        if length == 36:
            return GUID()
        if length == 32:
            return Uuid(as_uuid=True)
    return None


def _user_table(
    metadata: MetaData,
    columns: Mapping[str, Any],
    primary_key: Sequence[str],
    overrides: Sequence[Column[Any]],
) -> Table:
    """The user table built from its reflected columns and primary key alone.

    ``Table(autoload_with=...)`` also reads indexes, unique and check constraints and foreign
    keys (on SQLite eight queries and parsing the table's SQL), which took a third of a
    ``show-user``'s own time; none of it is used: lookups are by column, and the database
    enforces its own constraints."""
    replaced = {column.name: column for column in overrides}
    built: list[Column[Any]] = []
    for name, info in columns.items():
        if name in replaced:
            built.append(replaced[name])
            continue
        extras: list[Any] = []
        if info.get("default") is not None:
            extras.append(DefaultClause(text(info["default"])))
        if info.get("computed"):
            extras.append(Computed(**info["computed"]))
        if info.get("identity"):
            extras.append(Identity(**info["identity"]))
        built.append(
            Column(
                name,
                info["type"],
                *extras,
                primary_key=name in primary_key,
                nullable=info.get("nullable", True),
                autoincrement=info.get("autoincrement", "auto"),
                comment=info.get("comment"),
            )
        )
    return Table(USER_TABLE, metadata, *built)


def reflect_user_model(connection: Connection) -> UserModel:
    """Read the user table (and FastAPI Users' related tables) from the database and map it."""
    inspector = inspect(connection)
    names = set(inspector.get_table_names())
    if USER_TABLE not in names:
        raise TablesMissing(
            f"the database has no {USER_TABLE!r} table; run `usersctl init-db` to create it"
        )
    columns = {column["name"]: column for column in inspector.get_columns(USER_TABLE)}
    missing = [name for name in BASE_COLUMNS if name not in columns]
    if missing:
        raise TablesMissing(
            f"table {USER_TABLE!r} lacks the column(s) {', '.join(missing)} that FastAPI Users needs"
        )
    metadata = MetaData()
    overrides: list[Column[Any]] = []
    id_column = columns["id"]
    id_type = _uuid_type(id_column, connection.dialect.name)
    if id_type is not None:
        overrides.append(Column("id", id_type, primary_key=True, default=uuid.uuid4))
    elif isinstance(id_column["type"], Integer):
        overrides.append(Column("id", id_column["type"], primary_key=True, autoincrement=True))
    primary_key = inspector.get_pk_constraint(USER_TABLE)["constrained_columns"] or ()
    table = _user_table(metadata, columns, primary_key, overrides)
    add_email_lower_index(table)
    for related in (OAUTH_TABLE, TOKEN_TABLE):
        if related in names:
            with warnings.catch_warnings():
                # Expression indexes are not reflected, and are not needed.
                warnings.filterwarnings(
                    "ignore", message="Skipped unsupported reflection", category=SAWarning
                )
                related_table = Table(related, metadata, autoload_with=connection)
            for fk in related_table.foreign_keys:
                if fk.references(table) and id_type is not None:
                    fk.parent.type = id_type  # compare user ids the way the user table stores them

    mapper_registry = registry(metadata=metadata)
    user_class = type("User", (), {"__doc__": "The user table as found in the database."})
    mapper_registry.map_imperatively(user_class, table)
    oauth_class = None
    if OAUTH_TABLE in metadata.tables:
        oauth_class = type("OAuthAccount", (), {})
        mapper_registry.map_imperatively(oauth_class, metadata.tables[OAUTH_TABLE])
    extra = tuple(name for name in columns if name not in BASE_COLUMNS)
    return UserModel(
        user_class=user_class,
        source="database",
        oauth_class=oauth_class,
        token_table=metadata.tables.get(TOKEN_TABLE),
        extra_columns=extra,
    )


def is_uuid_type(kind: Any) -> bool:
    """Whether a column type holds UUIDs: usersctl's GUID, SQLAlchemy's Uuid, or another GUID
    type decorator such as ``fastapi_users_db_sqlalchemy``'s (whose Python type is a UUID)."""
    if isinstance(kind, (GUID, Uuid)):
        return True
    if isinstance(kind, TypeDecorator):
        # SQLAlchemy does not ask the decorated type; fastapi_users_db_sqlalchemy's GUID
        # declares its Python type on its CHAR(36) implementation.
        kind = kind.impl_instance
        if isinstance(kind, Uuid):
            return True
    try:
        python_type = kind.python_type
    except NotImplementedError:
        return False
    # pydantic's UUID4 is Annotated[UUID, ...]: look through the annotation.
    origin = typing.get_args(python_type)[0] if typing.get_origin(python_type) else python_type
    return isinstance(origin, type) and issubclass(origin, uuid.UUID)


def _references(table: Table, user_table: Table) -> bool:
    try:
        return any(fk.references(user_table) for fk in table.foreign_keys)
    except Exception:  # a foreign key to a table this metadata does not have
        return False


def load_user_model(path: str) -> UserModel:
    """Import the app's user model from ``module.path:ClassName`` and check it is a user table.

    The current folder is importable, as with other tools that load app code. The OAuth account
    class is found through the model's relationships (else among the classes mapped with it), the
    access token table among the tables of its metadata. Raises ``InvalidInput`` when the model
    cannot be imported or is not a mapped FastAPI Users user table.
    """
    module_name, colon, attribute_path = path.strip().partition(":")
    if not colon or not module_name or not attribute_path:
        raise InvalidInput(f"--model {path!r}: expected module.path:ClassName")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # anything the app's module raises while it is imported
        raise InvalidInput(
            f"--model {path}: cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    found: Any = module
    for part in attribute_path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise InvalidInput(
                f"--model {path}: {module_name!r} has no {attribute_path!r}"
            ) from None
    mapper: Any = inspect(found, raiseerr=False) if isinstance(found, type) else None
    if not isinstance(mapper, Mapper):
        raise InvalidInput(f"--model {path}: {attribute_path} is not a mapped SQLAlchemy class")
    try:
        configure_mappers()
    except Exception as exc:
        raise InvalidInput(
            f"--model {path}: the app's models do not configure ({type(exc).__name__}: {exc})"
        ) from None
    table = mapper.local_table
    missing = [name for name in BASE_COLUMNS if not isinstance(table, Table) or name not in table.c]
    if not isinstance(table, Table) or missing:
        raise InvalidInput(
            f"--model {path}: {attribute_path} is not a FastAPI Users user table "
            f"(it lacks the column(s) {', '.join(missing)})"
        )
    oauth_class = None
    candidates = [rel.mapper for rel in mapper.relationships] + list(mapper.registry.mappers)
    for other in candidates:
        other_table = other.local_table
        if (
            isinstance(other_table, Table)
            and other_table is not table
            and set(other_table.c.keys()) >= OAUTH_COLUMNS
            and _references(other_table, table)
        ):
            oauth_class = other.class_
            break
    token_tables = [
        other
        for other in table.metadata.sorted_tables
        if other is not table and set(other.c.keys()) >= TOKEN_COLUMNS and _references(other, table)
    ]
    return UserModel(
        user_class=found,
        source=path.strip(),
        oauth_class=oauth_class,
        token_table=token_tables[0] if token_tables else None,
        extra_columns=tuple(
            column.name for column in table.columns if column.name not in BASE_COLUMNS
        ),
    )


def model_tables(model: UserModel, *, oauth: bool, access_tokens: bool) -> list[Table]:
    """The tables ``init-db`` creates for an imported model: its user table, with the unique
    ``lower(email)`` index even if its base class does not declare one, and on request its OAuth
    account and access token tables."""
    add_email_lower_index(model.table)
    tables = [model.table]
    for wanted, table, what in (
        (oauth, model.oauth_table, "OAuth account table (--oauth)"),
        (access_tokens, model.token_table, "access token table (--access-tokens)"),
    ):
        if wanted and table is None:
            raise InvalidInput(f"--model {model.source}: the model has no {what}")
        if wanted and table is not None:
            tables.append(table)
    return tables


def require_table(connection: Connection, model: UserModel) -> None:
    """Raise ``TablesMissing`` when the database lacks the user table of an imported model."""
    if not inspect(connection).has_table(model.table.name):
        raise TablesMissing(
            f"the database has no {model.table.name!r} table for --model {model.source}; create "
            "it with the app's migrations (or `usersctl init-db` for the built-in model)"
        )


def field_values(model: UserModel, assignments: Sequence[str], *, creating: bool) -> dict[str, Any]:
    """``FIELD=VALUE`` texts (``--set``) as the values of the user's attributes, each converted to
    its column's type; an unknown field, a field with an option of its own, or a value that does
    not convert raises ``InvalidInput`` naming the field."""
    from usersctl.fields import convert_value

    table = model.table
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, equals, raw = assignment.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InvalidInput(f"--set {assignment!r}: expected FIELD=VALUE")
        if name in MANAGED_FIELDS:
            raise InvalidInput(f"--set {name}: use {MANAGED_FIELDS[name]} for this field")
        if name not in table.c:
            others = [
                column.name
                for column in table.columns
                if column.name not in MANAGED_FIELDS and (creating or column.name != "id")
            ]
            known = f"; its other columns: {', '.join(others)}" if others else ""
            raise InvalidInput(
                f"--set {name}: unknown field, the {table.name!r} table has no such column{known}"
            )
        if name == "id" and not creating:
            raise InvalidInput("--set id: a user's id cannot be changed")
        key = model.attribute(name)
        if key in values:
            raise InvalidInput(f"--set {name}: given more than once")
        values[key] = convert_value(table.c[name], raw)
    return values
