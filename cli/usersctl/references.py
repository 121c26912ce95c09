"""The rows that refer to a user, and what deleting the user does with them.

Before ``delete-user`` deletes, every foreign key that refers to the user table is read from the
database (with ``--model``, from the model's metadata too), and the rows that refer to each user
are counted, down through the rows that would go with them. Each foreign key gets one rule: the
model's relationship (as the app's own ORM delete treats it), else the database's ``ON DELETE``,
else the person's choice (``--reassign-to``, ``--cascade``); rows with none would block the
delete, and ``RowsReferToUser`` names them before anything is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Column,
    MetaData,
    Select,
    Table,
    and_,
    delete,
    func,
    inspect,
    not_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from usersctl.errors import Conflict

if TYPE_CHECKING:
    from usersctl.models import UserModel


class RowsReferToUser(Conflict):
    """Rows of other tables refer to a user being deleted, and no rule says what becomes of them."""


class Action(str, Enum):
    """What happens to the rows that refer to a deleted row."""

    DELETE = "deleted"
    SET_NULL = "set null"
    SET_DEFAULT = "set default"
    REASSIGN = "reassigned"
    BLOCK = "blocking"


@dataclass(frozen=True)
class Reference:
    """A foreign key: ``table.columns`` refer to ``target.target_columns``.

    ``on_delete`` is the database's rule in capitals (``CASCADE``, ``SET NULL``...), or None;
    ``orm_rule`` what the model's relationship does on delete (``--model``), ``relationship``
    which one it is, in words (``User.items, cascade delete``)."""

    table: Table
    columns: tuple[str, ...]
    target: str  # the referred table's full name (schema.name)
    target_columns: tuple[str, ...]
    name: str | None = None
    on_delete: str | None = None
    relationship: str | None = None
    orm_rule: Action | None = None

    @property
    def nullable(self) -> bool:
        return all(self.table.c[name].nullable for name in self.columns)

    @property
    def where(self) -> str:
        """``table.column`` (or ``table.(a, b)``) in words."""
        if len(self.columns) == 1:
            return f"{self.table.name}.{self.columns[0]}"
        return f"{self.table.name}.({', '.join(self.columns)})"


@dataclass(frozen=True)
class ReferenceGraph:
    """The foreign keys among the tables of the user table's schema, by the table they refer to.

    ``login_tables`` are the OAuth account and access token tables, which usersctl deletes with
    the user whatever their keys say (``usersctl.logins``)."""

    by_target: Mapping[str, Sequence[Reference]]
    login_tables: frozenset[str] = frozenset()
    table_names: frozenset[str] = frozenset()

    def referring_to(self, table_name: str) -> Sequence[Reference]:
        return self.by_target.get(table_name, ())


def _full_name(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name


def _sqlite_on_delete(connection: Connection, table: str) -> dict[tuple[tuple[str, ...], str], str]:
    """SQLite's ON DELETE rules from ``PRAGMA foreign_key_list``: SQLAlchemy's reflection parses
    them from the table's SQL and misses those written on a column (``x REFERENCES t ON DELETE
    CASCADE``)."""
    quoted = connection.dialect.identifier_preparer.quote(table)
    rows = connection.exec_driver_sql(f"PRAGMA foreign_key_list({quoted})").all()
    columns: dict[int, list[str]] = {}
    rules: dict[int, tuple[str, str]] = {}
    for row in rows:
        columns.setdefault(row[0], []).append(row[3])
        rules[row[0]] = (row[2], str(row[6]).upper())
    return {(tuple(columns[key]), rules[key][0]): rules[key][1] for key in columns}


def read_references(connection: Connection, model: UserModel) -> ReferenceGraph:
    """Every foreign key in the user table's schema (and, with ``--model``, those the model's
    metadata declares on tables the database has), with the model's relationships' rules."""
    inspector = inspect(connection)
    schema = model.table.schema
    sqlite = connection.dialect.name == "sqlite"
    metadata = MetaData()
    tables: dict[str, Table] = {}
    with warnings.catch_warnings():
        # A column type SQLAlchemy does not know (PostGIS's geometry...) is not needed here.
        warnings.simplefilter("ignore", SAWarning)
        every_column = inspector.get_multi_columns(schema=schema)
    for (table_schema, name), reflected in every_column.items():
        # Only names and NULL-ability are used: statements compare columns, never bind values.
        built: list[Column[Any]] = [
            Column(c["name"], nullable=c.get("nullable", True)) for c in reflected
        ]
        table = Table(name, metadata, *built, schema=table_schema)
        tables[table.fullname] = table
    found: dict[tuple[str, tuple[str, ...], str], Reference] = {}
    for (table_schema, name), keys in inspector.get_multi_foreign_keys(schema=schema).items():
        referring = tables.get(_full_name(table_schema, name))
        if referring is None:
            continue
        pragma = _sqlite_on_delete(connection, name) if sqlite else {}
        for key in keys:
            columns = tuple(key["constrained_columns"])
            target = _full_name(key.get("referred_schema") or table_schema, key["referred_table"])
            on_delete = (key.get("options") or {}).get("ondelete") or pragma.get(
                (columns, key["referred_table"])
            )
            found[(referring.fullname, columns, target)] = Reference(
                referring,
                columns,
                target,
                tuple(key["referred_columns"]),
                name=key.get("name"),
                on_delete=_rule_name(on_delete),
            )
    if model.source not in ("database", "built-in"):
        _add_model_references(model, tables, found)
    by_target: dict[str, list[Reference]] = {}
    for reference in found.values():
        by_target.setdefault(reference.target, []).append(reference)
    logins = frozenset(
        table.fullname for table in (model.oauth_table, model.token_table) if table is not None
    )
    return ReferenceGraph(by_target, logins, frozenset(table.name for table in tables.values()))


def _rule_name(on_delete: str | None) -> str | None:
    rule = " ".join((on_delete or "").upper().split())
    return None if rule in ("", "NO ACTION") else rule


def _add_model_references(
    model: UserModel,
    tables: Mapping[str, Table],
    found: dict[tuple[str, tuple[str, ...], str], Reference],
) -> None:
    """The foreign keys the model declares that the database lacks, and the model's
    relationships' rules on every foreign key they follow."""
    from sqlalchemy.orm import Mapper, RelationshipDirection

    for declared in model.table.metadata.tables.values():
        table = tables.get(declared.fullname)
        if table is None:
            continue
        for constraint in declared.foreign_key_constraints:
            columns = tuple(column.name for column in constraint.columns)
            if constraint.referred_table is None or not all(c in table.c for c in columns):
                continue
            target = constraint.referred_table.fullname
            found.setdefault(
                (table.fullname, columns, target),
                Reference(
                    table,
                    columns,
                    target,
                    tuple(element.column.name for element in constraint.elements),
                    name=constraint.name if isinstance(constraint.name, str) else None,
                    on_delete=_rule_name(constraint.ondelete),
                ),
            )
    user_mapper: Mapper[Any] = inspect(model.user_class)
    for mapper in user_mapper.registry.mappers:
        for relationship in mapper.relationships:
            if relationship.viewonly or relationship.passive_deletes:
                continue  # the ORM leaves these rows to the database
            child: Any
            name = f"{mapper.class_.__name__}.{relationship.key}"
            if relationship.direction is RelationshipDirection.ONETOMANY:
                child = relationship.mapper.local_table
                rule = Action.DELETE if relationship.cascade.delete else Action.SET_NULL
                said = f"{name}, cascade delete" if rule is Action.DELETE else name
            elif relationship.direction is RelationshipDirection.MANYTOMANY:
                child = relationship.secondary
                rule = Action.DELETE  # the ORM removes the user's rows of the association
                said = f"{name}, many-to-many"
            else:
                continue
            if not isinstance(child, Table) or not isinstance(mapper.local_table, Table):
                continue
            columns = tuple(child_column.name for _, child_column in relationship.synchronize_pairs)
            key = (child.fullname, columns, mapper.local_table.fullname)
            reference = found.get(key)
            if reference is None or reference.orm_rule is Action.DELETE:
                continue  # a delete cascade wins over a plain relationship on the same key
            found[key] = Reference(
                reference.table,
                reference.columns,
                reference.target,
                reference.target_columns,
                name=reference.name,
                on_delete=reference.on_delete,
                relationship=said,
                orm_rule=rule,
            )


# Planning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeleteRules:
    """The person's choices for rows that would block a delete.

    ``reassign_to`` (a user's row) receives the rows that refer to a deleted user directly;
    ``cascade`` deletes them; ``cascade_into`` names the tables whose rows may be deleted further
    down (rows that refer to rows being deleted)."""

    reassign_to: Any = None
    cascade: bool = False
    cascade_into: frozenset[str] = frozenset()


@dataclass
class Step:
    """The rows of one foreign key that refer to rows being deleted, and what becomes of them."""

    reference: Reference
    rows: int
    action: Action
    by: str  # the rule: "ON DELETE CASCADE", "relationship User.items", "--cascade"...
    depth: int  # 1: they refer to the user; 2: to rows that refer to the user...
    through: str | None  # below depth 1, the table whose rows they refer to
    predicate: ColumnElement[bool]
    usersctl_acts: bool  # usersctl carries it out (else the database does, or usersctl.logins)
    children: list[Step] = field(default_factory=list)
    cyclic: bool = False  # they are rows of a table already on the way down: not followed
    #: The keys by which rows of the table refer to other rows of it (a reply to a comment).
    self_references: tuple[Reference, ...] = ()

    def walk(self) -> Iterable[Step]:
        yield self
        for child in self.children:
            yield from child.walk()

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.reference.table.name,
            "column": ", ".join(self.reference.columns),
            "constraint": self.reference.name,
            "rows": self.rows,
            "action": self.action.value,
            "by": self.by,
            "through": self.through,
        }


@dataclass
class DeletePlan:
    """What deleting one user does to the rows that refer to it."""

    user: Any
    steps: list[Step]

    def walk(self) -> Iterable[Step]:
        for step in self.steps:
            yield from step.walk()

    @property
    def blocking(self) -> list[Step]:
        return [step for step in self.walk() if step.action is Action.BLOCK]


def _rows_of(table: Table, predicate: ColumnElement[bool], columns: Sequence[str]) -> Select[Any]:
    # No correlation: a table that refers to itself must read its rows from a FROM of its own.
    return select(*(table.c[name] for name in columns)).where(predicate).correlate(None)


def _referring(reference: Reference, parent_rows: Select[Any]) -> ColumnElement[bool]:
    columns = [reference.table.c[name] for name in reference.columns]
    left: Any = columns[0] if len(columns) == 1 else tuple_(*columns)
    result: ColumnElement[bool] = left.in_(parent_rows)
    return result


def _rule(
    graph: ReferenceGraph,
    reference: Reference,
    *,
    depth: int,
    cyclic: bool,
    user_table: str,
    rules: DeleteRules,
) -> tuple[Action, str, bool]:
    """The action for the rows of ``reference``, the rule that decides it, and whether usersctl
    carries it out."""
    if depth == 1 and reference.table.fullname in graph.login_tables:
        return Action.DELETE, "OAuth accounts and access tokens go with the user", False
    if reference.orm_rule is Action.DELETE:
        return Action.DELETE, f"relationship {reference.relationship}", True
    if reference.orm_rule is Action.SET_NULL and reference.nullable:
        return Action.SET_NULL, f"relationship {reference.relationship}", True
    if reference.on_delete == "CASCADE":
        return Action.DELETE, "ON DELETE CASCADE", False
    if reference.on_delete == "SET NULL":
        return Action.SET_NULL, "ON DELETE SET NULL", False
    if reference.on_delete == "SET DEFAULT":
        return Action.SET_DEFAULT, "ON DELETE SET DEFAULT", False
    if depth == 1 and rules.reassign_to is not None:
        return Action.REASSIGN, f"--reassign-to {rules.reassign_to.email}", True
    blocked_by = f"ON DELETE {reference.on_delete}" if reference.on_delete else "no ON DELETE rule"
    if reference.table.fullname == user_table:
        return Action.BLOCK, f"{blocked_by}; --cascade never deletes users", False
    if cyclic:
        return Action.BLOCK, f"{blocked_by}; a cycle back to {reference.target}", False
    if depth == 1 and rules.cascade:
        return Action.DELETE, "--cascade", True
    if depth > 1 and reference.table.name in rules.cascade_into:
        return Action.DELETE, "--cascade-into", True
    return Action.BLOCK, blocked_by, False


async def _steps(
    session: AsyncSession,
    graph: ReferenceGraph,
    parent: Table,
    parent_rows: ColumnElement[bool],
    *,
    depth: int,
    path: tuple[str, ...],
    user_table: str,
    rules: DeleteRules,
) -> list[Step]:
    steps = []
    for reference in graph.referring_to(parent.fullname):
        if not all(name in parent.c for name in reference.target_columns):
            continue
        predicate = _referring(reference, _rows_of(parent, parent_rows, reference.target_columns))
        if reference.table is parent:
            # A table that refers to itself (a reply to a comment): rows that go in the same
            # statement do not count; the others would be left pointing at nothing.
            predicate = and_(predicate, not_(parent_rows))
        count = select(func.count()).select_from(reference.table).where(predicate)
        rows = int((await session.execute(count)).scalar_one())
        if rows == 0:
            continue
        cyclic = reference.table.fullname in path
        action, by, usersctl_acts = _rule(
            graph, reference, depth=depth, cyclic=cyclic, user_table=user_table, rules=rules
        )
        step = Step(
            reference,
            rows,
            action,
            by,
            depth,
            parent.name if depth > 1 else None,
            predicate,
            usersctl_acts,
            cyclic=cyclic,
            self_references=tuple(
                key
                for key in graph.referring_to(reference.table.fullname)
                if key.table is reference.table
            ),
        )
        if action is Action.DELETE and not cyclic:
            step.children = await _steps(
                session,
                graph,
                reference.table,
                predicate,
                depth=depth + 1,
                path=(*path, reference.table.fullname),
                user_table=user_table,
                rules=rules,
            )
        steps.append(step)
    return steps


async def plan_delete(
    session: AsyncSession, graph: ReferenceGraph, user_table: Table, user: Any, rules: DeleteRules
) -> DeletePlan:
    """Count the rows that refer to ``user`` (and, below those that would be deleted, the rows
    that refer to them), each with the action that deleting the user takes on them."""
    steps = await _steps(
        session,
        graph,
        user_table,
        user_table.c.id == user.id,
        depth=1,
        path=(user_table.fullname,),
        user_table=user_table.fullname,
        rules=rules,
    )
    return DeletePlan(user, steps)


def refuse_blocked(plans: Sequence[DeletePlan]) -> None:
    """Raise ``RowsReferToUser`` naming every table, column and row count that blocks a delete."""
    parts = []
    shallow = False
    for plan in plans:
        blocking = plan.blocking
        if not blocking:
            continue
        listed = []
        for step in blocking:
            plural = "" if step.rows == 1 else "s"
            constraint = f" {step.reference.name}" if step.reference.name else ""
            through = f"; they refer to rows of {step.through} that would be deleted"
            listed.append(
                f"{step.rows} row{plural} of {step.reference.where} "
                f"(foreign key{constraint}, {step.by}{through if step.through else ''})"
            )
            shallow = shallow or step.depth == 1
        parts.append(f"{plan.user.email}: {'; '.join(listed)}")
    if not parts:
        return
    advice = []
    if shallow:
        advice.append(
            "move the rows to another user with --reassign-to EMAIL_OR_ID, or delete them with "
            "--cascade"
        )
    # Rows of a table met again on the way down (a cycle) are not followed, named or not.
    deeper = {
        step.reference.table.name
        for plan in plans
        for step in plan.blocking
        if step.depth > 1 and not step.cyclic
    }
    if deeper:
        named = " ".join(f"--cascade-into {name}" for name in sorted(deeper))
        advice.append(f"delete the rows further down as well with {named}")
    if not advice:
        advice.append("change or delete those rows first")
    raise RowsReferToUser(
        "rows still refer to the user(s) to delete, and nothing was deleted: "
        + " | ".join(parts)
        + "; "
        + ", or ".join(advice)
        + " (--dry-run shows what would go)"
    )


# Carrying it out -----------------------------------------------------------------------------


async def carry_out(
    session: AsyncSession, plan: DeletePlan, user_table: Table, rules: DeleteRules
) -> None:
    """Do what ``plan`` says usersctl must do, deepest rows first, before the user is deleted
    (the database then does what its own ON DELETE rules say)."""
    for step in plan.steps:
        await _carry_out_step(session, step, user_table, rules)


async def _unlink_from_each_other(session: AsyncSession, step: Step) -> None:
    """MySQL/MariaDB: InnoDB checks a foreign key row by row, not at the end of the statement as
    the standard has it, so deleting a comment before the reply to it (both going) would fail;
    the rows going stop referring to each other first (keys that may be NULL)."""
    table = step.reference.table
    for key in step.self_references:
        if key.nullable:
            nulls = dict.fromkeys(key.columns)
            await session.execute(update(table).where(step.predicate).values(nulls))


async def _carry_out_step(
    session: AsyncSession, step: Step, user_table: Table, rules: DeleteRules
) -> None:
    reference = step.reference
    table = reference.table
    if step.action is Action.DELETE:
        for child in step.children:
            await _carry_out_step(session, child, user_table, rules)
        if step.usersctl_acts:
            if session.bind.dialect.name == "mysql":
                await _unlink_from_each_other(session, step)
            await session.execute(delete(table).where(step.predicate))
    elif step.usersctl_acts and step.action is Action.SET_NULL:
        nulls = dict.fromkeys(reference.columns)
        await session.execute(update(table).where(step.predicate).values(nulls))
    elif step.action is Action.REASSIGN:
        new_owner = user_table.c.id == rules.reassign_to.id
        values = {
            column: select(user_table.c[target]).where(new_owner).correlate(None).scalar_subquery()
            for column, target in zip(reference.columns, reference.target_columns, strict=True)
        }
        await session.execute(update(table).where(step.predicate).values(values))
