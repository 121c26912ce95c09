"""Which user model a command works on: the app's own (``--model``), or the table found in the
database.

Without ``--model`` the user table is found by its columns (``usersctl.user_tables``), whatever
its name, and its structure is read from the database, so an app's integer ids and extra columns
are seen and kept. ``--model module.path:ClassName`` imports the
app's mapped class, so its Python-side defaults (a ``created_at`` filled by the app) apply too.
usersctl's own tables, which ``init-db`` creates, are in ``usersctl.builtin_tables``.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Computed,
    DefaultClause,
    ForeignKey,
    Identity,
    MetaData,
    Table,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Dialect
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
    #: The database's dialect, once connected (``open_users``): how its columns store values.
    dialect: Dialect | None = field(default=None, compare=False, repr=False)

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
        text = (
            f"{where.get(self.source, self.source + ' (--model)')}; table {self.table.fullname!r}"
        )
        if self.parent_tables:
            parents = ", ".join(repr(table.fullname) for table in reversed(self.parent_tables))
            text += f" (inheriting from {parents})"
        text += f", {kind} ids"
        if self.extra_columns:
            text += f", extra columns {', '.join(self.extra_columns)}"
        return text

    def attribute(self, column_name: str) -> str:
        """The mapped attribute holding ``column_name`` (an app may name them differently)."""
        mapper: Mapper[Any] = inspect(self.user_class)
        return mapper.get_property_by_column(self.column(column_name)).key

    @property
    def parent_tables(self) -> list[Table]:
        """For a joined-table subclass (``class User(Principal)``): the tables of the classes it
        inherits from, each holding part of every user's row under the same id, parents first."""
        mapper: Mapper[Any] = inspect(self.user_class)
        return [
            table for table in mapper.tables if table is not self.table and isinstance(table, Table)
        ]

    def column(self, name: str) -> Column[Any]:
        """The column ``name`` of the user table, else of a parent table; ``KeyError`` if none."""
        for table in (self.table, *self.parent_tables):
            if name in table.c:
                column: Column[Any] = table.c[name]
                return column
        raise KeyError(name)

    @property
    def email_table(self) -> Table:
        """The table holding the email: the user table, or the parent table that holds it for a
        joined-table subclass (where its unique ``lower(email)`` index belongs)."""
        table = self.column("email").table
        assert isinstance(table, Table)
        return table

    def has_column(self, name: str) -> bool:
        return any(name in table.c for table in (self.table, *self.parent_tables))

    @property
    def selectable(self) -> Any:
        """What to select a user's columns from: the user table, or for a joined-table subclass
        the join of its parent tables with it."""
        if not self.parent_tables:
            return self.table
        mapper: Mapper[Any] = inspect(self.user_class)
        return mapper.persist_selectable

    @property
    def all_columns(self) -> list[Column[Any]]:
        """The columns that make up a user: the user table's, then the parent tables' (without
        the ids they share with it)."""
        return _all_columns(inspect(self.user_class))

    @property
    def required_columns(self) -> list[str]:
        """Columns a new user must be given a value for: NOT NULL, with no default of any kind
        (the column's, the database's, an autoincrement, or the model's dataclass field's; for a
        joined-table subclass, the id's default in the parent table, and the discriminator,
        which the ORM sets)."""
        mapper: Mapper[Any] = inspect(self.user_class)
        defaulted = self.dataclass_defaults()
        required = []
        for column in self.all_columns:
            if column.name in MANAGED_FIELDS or column.nullable or column.name in defaulted:
                continue
            if column is mapper.polymorphic_on:
                continue
            prop = _property_of(mapper, column)
            if prop is None:
                continue  # a column the model leaves unmapped: the app cannot fill it either
            shared = getattr(prop, "columns", [column])  # the id of every table in a hierarchy
            if any(
                other.default is not None
                or other.server_default is not None
                or (isinstance(other.table, Table) and other is other.table.autoincrement_column)
                for other in shared
            ):
                continue
            required.append(column.name)
        return required

    def missing_required(self, values: Mapping[str, Any]) -> list[str]:
        """The required columns that ``values`` (keyed by attribute) leaves without a value."""
        return [name for name in self.required_columns if values.get(self.attribute(name)) is None]

    def missing_required_reason(self, missing: Sequence[str]) -> str:
        """Why ``missing`` columns are required, and how to give them, in a sentence."""
        reason = (
            f"required field(s) with no default not given: {', '.join(missing)} "
            "(give them with --set FIELD=VALUE)"
        )
        if self.source == "database":
            reason += (
                "; the database has no default for them: if the app fills them in Python, "
                "--model module.path:ClassName would supply the app's own defaults"
            )
        return reason

    def dataclass_defaults(self) -> dict[str, Callable[[], Any]]:
        """For a dataclass-mapped model (``MappedAsDataclass``): the columns whose field has a
        ``default`` or ``default_factory``, by column name, each with a function making the value
        the app's constructor would give. A default of ``None`` is left out: the ORM leaves such a
        column to its own default, as if it were not given."""
        cls = self.user_class
        if not dataclasses.is_dataclass(cls):
            return {}
        fields = {spec.name: spec for spec in dataclasses.fields(cls)}
        found: dict[str, Callable[[], Any]] = {}
        mapper: Mapper[Any] = inspect(self.user_class)
        for column in self.all_columns:
            prop = _property_of(mapper, column)
            spec = fields.get(prop.key) if prop is not None else None
            if spec is None:
                continue
            if spec.default_factory is not dataclasses.MISSING:
                found[column.name] = spec.default_factory
            elif spec.default is not dataclasses.MISSING and spec.default is not None:
                found[column.name] = functools.partial(_same, spec.default)
        return found

    def insert_defaults(self) -> dict[str, Callable[[Any], Any]]:
        """The values the app fills in Python when it creates a user, by column name, in the
        table's column order: the dataclass field's default first (the constructor sets the
        attribute), else the column's own ``default=`` (a value, or a callable that may take
        SQLAlchemy's context). Each function takes that context (see ``InsertContext``)."""
        dataclass_defaults = self.dataclass_defaults()
        column_defaults = python_column_defaults(self.table)
        found: dict[str, Callable[[Any], Any]] = {}
        for column in self.table.columns:
            if column.name in dataclass_defaults:
                found[column.name] = functools.partial(
                    _without_context, dataclass_defaults[column.name]
                )
            elif column.name in column_defaults:
                found[column.name] = column_defaults[column.name]
        return found

    def new_user(self, values: Mapping[str, Any]) -> Any:
        """A new instance of the user class with ``values`` (by attribute), made the way the
        app's own code makes one, so that its constructor fills what it fills.

        A dataclass-mapped model's constructor takes only its ``init`` fields: the others are
        set afterwards, and an ``init`` field without a default that is not given is passed as
        ``None``, which leaves its column to the column's or the database's default."""
        cls = self.user_class
        if not dataclasses.is_dataclass(cls):
            return cls(**values)
        init_fields = {spec.name: spec for spec in dataclasses.fields(cls) if spec.init}
        mapper: Mapper[Any] = inspect(self.user_class)
        column_attributes = set(mapper.column_attrs.keys())
        arguments = {key: value for key, value in values.items() if key in init_fields}
        for name, spec in init_fields.items():
            if (
                name not in arguments
                and name in column_attributes
                and spec.default is dataclasses.MISSING
                and spec.default_factory is dataclasses.MISSING
            ):
                arguments[name] = None
        try:
            user = cls(**arguments)
        except TypeError as exc:  # a required argument that is not a column of the table
            raise InvalidInput(f"--model {self.source}: cannot make a user ({exc})") from None
        for key, value in values.items():
            if key not in init_fields:
                setattr(user, key, value)
        return user


def _same(value: Any) -> Any:
    return value


def _without_context(make: Callable[[], Any], context: Any) -> Any:
    return make()


class InsertContext:
    """What a column default that takes SQLAlchemy's execution context reads when usersctl
    inserts rows itself (``import-users``): the row being inserted, by column name, with the
    defaults computed before it in the table's column order (``made``: column name -> the values
    of every row, ``index`` being this row's)."""

    def __init__(self, made: Mapping[str, Sequence[Any]]) -> None:
        self.made = made
        self.row: Mapping[str, Any] = {}
        self.index = 0
        self.current_column: Column[Any] | None = None

    @property
    def current_parameters(self) -> dict[str, Any]:
        earlier = {name: values[self.index] for name, values in self.made.items()}
        return {**self.row, **earlier}

    def get_current_parameters(self, isolate_multiinsert_groups: bool = True) -> dict[str, Any]:
        return self.current_parameters


def python_column_defaults(table: Table) -> dict[str, Callable[[Any], Any]]:
    """The columns of ``table`` whose ``default=`` is computed in Python (a value, or a callable,
    which SQLAlchemy has made take the execution context), each as a function of that context.
    SQL expression and sequence defaults are left to the database, which the INSERT asks."""
    found: dict[str, Callable[[Any], Any]] = {}
    for column in table.columns:
        default: Any = column.default
        if default is None:
            continue
        if default.is_scalar:
            found[column.name] = functools.partial(_scalar_default, default.arg)
        elif default.is_callable:
            found[column.name] = default.arg
    return found


def _scalar_default(value: Any, context: Any) -> Any:
    return value


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
    name: str = USER_TABLE,
    schema: str | None = None,
) -> Table:
    """A table (the user table, or one of its related tables) built from its reflected columns
    and primary key alone.

    ``Table(autoload_with=...)`` also reads indexes, unique and check constraints and foreign
    keys (on SQLite eight queries and parsing the table's SQL), which took a third of a
    ``show-user``'s own time; none of it is used: lookups are by column, and the database
    enforces its own constraints."""
    replaced = {column.name: column for column in overrides}
    built: list[Column[Any]] = []
    for column_name, info in columns.items():
        if column_name in replaced:
            built.append(replaced[column_name])
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
                column_name,
                info["type"],
                *extras,
                primary_key=column_name in primary_key,
                nullable=info.get("nullable", True),
                autoincrement=info.get("autoincrement", "auto"),
                comment=info.get("comment"),
            )
        )
    return Table(name, metadata, *built, schema=schema)


def _mariadb_json_columns(
    connection: Connection, table_name: str, columns: Mapping[str, Any]
) -> None:
    """MariaDB's JSON is LONGTEXT with ``CHECK (json_valid(`column`))``, and SQLAlchemy reflects it
    as LONGTEXT: such columns get the JSON type back, so that a value is written, shown and
    exported as JSON, as on the other databases (MySQL's own JSON type is reflected as such)."""
    if connection.dialect.name != "mysql" or not getattr(connection.dialect, "is_mariadb", False):
        return
    from sqlalchemy import JSON
    from sqlalchemy import text as sql_text
    from sqlalchemy.dialects.mysql import LONGTEXT

    if not any(isinstance(info["type"], LONGTEXT) for info in columns.values()):
        return  # no column that can be one: no catalog query for every command

    checks = connection.execute(
        sql_text(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = :table"
        ),
        {"table": table_name},
    ).scalars()
    for clause in checks:
        quoted = clause.replace('"', "`")  # as written under ANSI_QUOTES, usersctl's sql_mode
        for column_name, info in columns.items():
            if quoted == f"json_valid(`{column_name}`)":
                info["type"] = JSON()


def reflect_user_model(connection: Connection, table_name: str | None = None) -> UserModel:
    """Read the user table (and FastAPI Users' related tables) from the database and map it.

    The user table is the one ``table_name`` (``--table``) names, else the one table with FastAPI
    Users' user columns, whatever its name (``usersctl.user_tables``); the OAuth account and
    access token tables are those whose ``user_id`` references it and that have their columns.
    A user table whose ``id`` references another table's ``id`` is a joined-table subclass (the
    app's ``class User(Account)``): it is mapped as one, each user being a row in every table of
    the chain under the same id, the root's id default giving it.
    """
    import warnings

    from sqlalchemy.exc import SAWarning

    from usersctl.user_tables import (
        find_user_table,
        parse_table_name,
        read_catalog,
    )

    postgresql = connection.dialect.name == "postgresql"
    wanted = parse_table_name(table_name, postgresql=postgresql) if table_name else None
    catalog = read_catalog(connection)
    found = find_user_table(catalog, wanted)
    chain = [*reversed(catalog.parents(found)), found]  # the root first
    inspector = inspect(connection)
    metadata = MetaData()
    id_type: TypeEngine[Any] | None = None
    tables: list[Table] = []
    for name in chain:
        columns = {
            column["name"]: column
            for column in inspector.get_columns(name.name, schema=name.schema)
        }
        _mariadb_json_columns(connection, name.name, columns)
        overrides: list[Column[Any]] = []
        if not tables:
            id_column = columns["id"]
            id_type = _uuid_type(id_column, connection.dialect.name)
            if id_type is not None:
                overrides.append(Column("id", id_type, primary_key=True, default=uuid.uuid4))
            elif isinstance(id_column["type"], Integer):
                overrides.append(
                    Column("id", id_column["type"], primary_key=True, autoincrement=True)
                )
        else:  # the parent's row gives the id
            own_type = id_type if id_type is not None else columns["id"]["type"]
            overrides.append(
                Column(
                    "id",
                    own_type,
                    ForeignKey(tables[-1].c.id),
                    primary_key=True,
                    autoincrement=False,
                )
            )
        primary_key = (
            inspector.get_pk_constraint(name.name, schema=name.schema)["constrained_columns"] or ()
        )
        tables.append(
            _user_table(metadata, columns, primary_key, overrides, name.name, name.schema)
        )
    table = tables[-1]
    add_email_lower_index(next(each for each in reversed(tables) if "email" in each.c))
    id_kind = id_type if id_type is not None else table.c.id.type
    related_tables: dict[str, Table] = {}
    for kind, wanted_columns, preferred in (
        ("oauth", OAUTH_COLUMNS, OAUTH_TABLE),
        ("token", TOKEN_COLUMNS, TOKEN_TABLE),
    ):
        related = catalog.related(found, wanted_columns, preferred)
        if related is None:
            continue
        related_columns = {
            column["name"]: column
            for column in inspector.get_columns(related.name, schema=related.schema)
        }
        related_key = inspector.get_pk_constraint(related.name, schema=related.schema)
        # user_id compares and binds as the user table's id does.
        user_id = Column(
            "user_id",
            id_kind,
            ForeignKey(table.c.id),
            nullable=related_columns["user_id"].get("nullable", True),
        )
        related_tables[kind] = _user_table(
            metadata,
            related_columns,
            related_key["constrained_columns"] or (),
            [user_id],
            related.name,
            related.schema,
        )

    mapper_registry = registry(metadata=metadata)
    mapped: type[Any] | None = None
    for each in tables:
        bases = (mapped,) if mapped is not None else ()
        doc = "The user table as found in the database."
        if each is not table:
            doc = f"The {each.name!r} table, which the user table inherits from."
        cls = type("User" if each is table else "UserParent", bases, {"__doc__": doc})
        with warnings.catch_warnings():
            # A column of the same name in a parent and in its child: one attribute writes both.
            warnings.simplefilter("ignore", SAWarning)
            mapper_registry.map_imperatively(cls, each, inherits=mapped)
        mapped = cls
    assert mapped is not None
    oauth_class = None
    oauth_table = related_tables.get("oauth")
    if oauth_table is not None and oauth_table.primary_key.columns:
        oauth_class = type("OAuthAccount", (), {})
        mapper_registry.map_imperatively(oauth_class, oauth_table)
    extra = tuple(
        column.name for column in _all_columns(inspect(mapped)) if column.name not in BASE_COLUMNS
    )
    return UserModel(
        user_class=mapped,
        source="database",
        oauth_class=oauth_class,
        token_table=related_tables.get("token"),
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


def load_user_model(path: str, table_name: str | None = None) -> UserModel:
    """Import the app's user model from ``module.path:ClassName`` and check it is a user table.

    The current folder is importable, as with other tools that load app code. The OAuth account
    class is found through the model's relationships (else among the classes mapped with it), the
    access token table among the tables of its metadata. Raises ``InvalidInput`` when the model
    cannot be imported or is not a mapped FastAPI Users user table, or maps another table than
    ``table_name`` (``--table``) names.
    """
    from usersctl.app_code import load_app_attribute

    found: Any = load_app_attribute(path, "--model", "module.path:ClassName")
    attribute_path = path.strip().partition(":")[2]
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
    if table_name and table_name.strip() not in (table.name, table.fullname):
        raise InvalidInput(
            f"--table {table_name.strip()} and --model {path} disagree: the model's table is "
            f"{table.fullname!r}; give one of them"
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
        for other in table.metadata.tables.values()  # sorted_tables fails on a dangling key
        if other is not table and set(other.c.keys()) >= TOKEN_COLUMNS and _references(other, table)
    ]
    return UserModel(
        user_class=found,
        source=path.strip(),
        oauth_class=oauth_class,
        token_table=token_tables[0] if token_tables else None,
        extra_columns=tuple(
            column.name for column in _all_columns(mapper) if column.name not in BASE_COLUMNS
        ),
    )


def _property_of(mapper: Mapper[Any], column: Column[Any]) -> Any:
    """The mapped attribute of ``column``, or None for a column the model leaves unmapped."""
    from sqlalchemy.orm.exc import UnmappedColumnError

    try:
        return mapper.get_property_by_column(column)
    except UnmappedColumnError:
        return None


def _all_columns(mapper: Mapper[Any]) -> list[Column[Any]]:
    """The user table's columns, then its parent tables' (a joined-table subclass), without the
    ids they share with it."""
    local = mapper.local_table
    assert isinstance(local, Table)
    found: list[Column[Any]] = list(local.columns)
    for table in mapper.tables:
        if table is local or not isinstance(table, Table):
            continue
        for column in table.columns:
            prop = _property_of(mapper, column)
            if prop is not None and not any(
                other.table is local for other in getattr(prop, "columns", [])
            ):
                found.append(column)
    return found


def model_tables(model: UserModel, *, oauth: bool, access_tokens: bool) -> list[Table]:
    """The tables ``init-db`` creates for an imported model, in dependency order: its user table,
    with the unique ``lower(email)`` index even if its base class does not declare one, on
    request its OAuth account and access token tables, and every table these reference through
    a foreign key (a ``tenants`` table, the parent table of a joined-table subclass), which
    must exist before them."""
    from sqlalchemy.schema import sort_tables

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
    needed: dict[str, Table] = {}
    while tables:
        table = tables.pop()
        if table.key in needed:
            continue
        needed[table.key] = table
        tables.extend(_referenced_tables(model, table))
    return sort_tables(needed.values())


def _referenced_tables(model: UserModel, table: Table) -> list[Table]:
    """The tables ``table``'s foreign keys point at; ``InvalidInput`` naming a foreign key whose
    table the model's metadata does not define."""
    from sqlalchemy.exc import NoReferencedColumnError, NoReferencedTableError

    found = []
    for fk in table.foreign_keys:
        try:
            referenced = fk.column.table
        except (NoReferencedTableError, NoReferencedColumnError):
            raise InvalidInput(
                f"--model {model.source}: {table.name}.{fk.parent.name} references "
                f"{fk.target_fullname}, which the model's metadata does not define (is the module "
                "that defines it imported with the model?)"
            ) from None
        if isinstance(referenced, Table) and referenced is not table:
            found.append(referenced)
    return found


def require_writable(model: UserModel) -> None:
    """Raise ``InvalidInput`` when a user table read from the database takes its id from a parent
    table (a joined-table subclass of the app's, such as ``class User(Principal)``): a user is
    then a row in each table, and what the app's mapper and code fill there (the discriminator,
    ``onupdate`` times) only the app's model knows. Reading such a table needs no model."""
    if model.source != "database" or not model.parent_tables:
        return
    parent = model.parent_tables[-1]  # the table the user table's id references
    raise InvalidInput(
        f"the {model.table.name!r} table takes its ids from the {parent.name!r} table (the app's "
        "user class inherits from another): writing users needs the app's model, --model "
        "module.path:ClassName, so that both rows are written as the app writes them"
    )


def require_table(connection: Connection, model: UserModel) -> None:
    """Raise ``TablesMissing`` when the database lacks the user table of an imported model."""
    if not inspect(connection).has_table(model.table.name, schema=model.table.schema):
        raise TablesMissing(
            f"the database has no {model.table.fullname!r} table for --model {model.source}; create "
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
        if not model.has_column(name):
            others = [
                column.name
                for column in model.all_columns
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
        values[key] = convert_value(model.column(name), raw, model.dialect)
    return values
