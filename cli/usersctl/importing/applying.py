"""apply: users as code. A file says what the users should be; apply plans the difference
(create, update, unchanged, and with pruning deactivate or delete) and carries it out in one
transaction.

It shares import-users' stages (``reading``, ``checking``, ``planning``'s lookups, ``writing``)
and differs in how it decides: a row is compared field by field with the user it names, a
password of an existing user is left alone unless asked, and the users the file leaves out may
be pruned. Planning reads only; the plan is made again under the write lock before anything is
written, and refused when the users changed in between (so a confirmed plan is the one done).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import select

from usersctl.email_case import fold_case
from usersctl.errors import Conflict, InvalidInput
from usersctl.importing.checking import FileCheck, hash_passwords
from usersctl.importing.planning import among, each_match, existing_users
from usersctl.importing.reading import read_records
from usersctl.importing.rows import ImportConflict, ImportRejected, Problem, Problems, Row
from usersctl.importing.writing import (
    advance_id_sequence,
    execute_updates,
    group_by_columns,
    insert_rows,
    lock_table,
    refuse_no_superuser_left,
)
from usersctl.passwords import ARGON2, Hashing
from usersctl.users import UserContext, UserFilters

#: A plan's actions, in the order a plan lists them.
ACTIONS = ("create", "update", "unchanged", "deactivate", "delete")
#: What a plan shows for a password hash: its value never leaves the database through a plan.
HIDDEN = "(hidden)"
#: Why a new user without a password is refused under ``--require-passwords``.
NO_PASSWORD = "no password or hashed_password for a new user (--require-passwords)"


class PlanOutdated(Conflict):
    """The users changed between the plan and its writing (another command wrote meanwhile)."""


@dataclass
class Step:
    """One line of a plan: what happens to one user, and each field's ``(old, new)``."""

    action: str
    email: str
    id: Any = None
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    line: int | None = None
    #: A new user's generated password, shown once after the commit.
    password: str | None = field(default=None, repr=False)
    #: The validated row behind a create or an update.
    row: Row | None = field(default=None, repr=False)

    @property
    def loses_superuser(self) -> bool:
        """Whether this step may take away an active superuser."""
        if self.action in ("deactivate", "delete"):
            return True
        return any(
            name in ("is_active", "is_superuser") and old is True and new is False
            for name, (old, new) in self.changes.items()
        )

    @property
    def ends_sessions(self) -> bool:
        """A new password or a deactivation ends the user's database sessions."""
        if self.action == "deactivate":
            return True
        if self.action != "update":
            return False
        active = self.changes.get("is_active")
        return "hashed_password" in self.changes or (active is not None and active[1] is False)


@dataclass
class ApplyPlan:
    """What apply does, one step per user, and what it saw of the database to decide it."""

    steps: list[Step]
    #: The users' state the plan was made from: made again before writing, and compared.
    observed: Any = field(default=None, repr=False)
    #: Database access tokens revoked when it was carried out.
    revoked_tokens: int = 0
    #: Why plaintext passwords were hashed with bcrypt (``HashChoice.note``).
    hash_note: str | None = None

    @property
    def empty(self) -> bool:
        return all(step.action == "unchanged" for step in self.steps)

    @property
    def destructive(self) -> list[Step]:
        return [step for step in self.steps if step.action in ("deactivate", "delete")]

    def counts(self) -> dict[str, int]:
        counted = dict.fromkeys(ACTIONS, 0)
        for step in self.steps:
            counted[step.action] += 1
        return counted


@dataclass(frozen=True)
class ApplyOptions:
    """How apply decides: see ``usersctl apply --help``."""

    prune: bool = False
    prune_delete: bool = False
    #: Which users pruning may touch (the list filters); the file's entries apply wherever.
    filters: UserFilters = field(default_factory=UserFilters)
    update_passwords: bool = False
    require_passwords: bool = False


@dataclass(frozen=True)
class _Observed:
    """The database as a plan saw it: each row's user (by the row's key), the state of those
    users and of the ones pruning considers. Equal observations give equal plans."""

    matches: tuple[tuple[str, Any], ...]
    state: tuple[tuple[Any, tuple[Any, ...]], ...]
    pruned: tuple[Any, ...]


def read_desired(
    stream: IO[bytes],
    fmt: str | None,
    check: FileCheck,
    *,
    raw_csv: bool = False,
) -> list[Row]:
    """The file's entries, each checked as import-users checks a row; an address given twice (in
    any case) is an invalid row here, not a conflict: a desired state says each user once."""
    check.add(read_records(stream, fmt, raw_csv=raw_csv))
    if check.problems or check.duplicates:
        merged = sorted([*check.problems, *check.duplicates], key=lambda problem: problem.line)
        problems = Problems(merged)
        problems.count = check.problems.count + check.duplicates.count
        raise ImportRejected(problems)
    return list(check.rows.values())


def _state_columns(ctx: UserContext) -> list[Any]:
    model = ctx.model
    return [model.column(name) for name in (*model.columns, "hashed_password")]


async def _observe(ctx: UserContext, rows: list[Row], options: ApplyOptions) -> _Observed:
    """Which user each row names (the rule of import-users' lookups), the state of those users,
    and the users pruning would touch (those the filters select and the file does not name:
    active ones for ``--prune``, all for ``--prune-delete``)."""
    model = ctx.model
    by_email, by_id = await existing_users(ctx, rows)
    matches: dict[str, Any] = {}
    conflicts: list[Problem] = []
    for row in rows:
        found = by_email.get(row.key, [])
        if len(found) > 1:  # the rule of commands: the address stored exactly so, else none
            exact = [user_id for user_id, stored in found if stored == row.values["email"]]
            if len(exact) != 1:
                listed = ", ".join(sorted(stored for _, stored in found))
                conflicts.append(Problem(row.line, f"several users have the address: {listed}"))
                continue
            found = [(exact[0], row.values["email"])]
        user_id = found[0][0] if found else None
        row_id = row.values.get("id")
        owner = by_id.get(row_id) if row_id is not None else None
        if owner is not None and owner != row.key:
            conflicts.append(Problem(row.line, f"id {row_id} belongs to {owner}"))
            continue
        matches[row.key] = user_id
    if conflicts:
        raise ImportConflict(conflicts)
    columns = _state_columns(ctx)
    names = [column.name for column in columns]
    user_id_column = model.table.c.id
    users = select(*columns).select_from(model.selectable)
    state: dict[Any, tuple[Any, ...]] = {}
    wanted = [user_id for user_id in matches.values() if user_id is not None]
    dialect = ctx.session.bind.dialect
    by_ids = users.where(among(dialect, user_id_column, "ids", user_id_column.type))
    async for found_row in each_match(ctx, by_ids, "ids", wanted, user_id_column.type):
        state[found_row[names.index("id")]] = tuple(found_row)
    pruned: list[Any] = []
    if options.prune or options.prune_delete:
        statement = options.filters.apply(model, users)
        if not options.prune_delete:
            statement = statement.where(model.column("is_active").is_(True))
        named = set(wanted)
        for found_row in await ctx.session.execute(statement):
            user_id = found_row[names.index("id")]
            if user_id not in named:
                state[user_id] = tuple(found_row)
                pruned.append(user_id)
    return _Observed(
        tuple(sorted(matches.items())),
        tuple(sorted(state.items(), key=lambda item: str(item[0]))),
        tuple(sorted(pruned, key=str)),
    )


def _decide_steps(
    ctx: UserContext,
    rows: list[Row],
    observed: _Observed,
    options: ApplyOptions,
    password_matches: Callable[[str, str | None], bool],
) -> list[Step]:
    """The steps that make the database what ``rows`` say, given what ``_observe`` saw."""
    names = [column.name for column in _state_columns(ctx)]
    state = {user_id: dict(zip(names, values, strict=True)) for user_id, values in observed.state}
    matches = dict(observed.matches)
    steps: list[Step] = []
    refused: list[Problem] = []
    for row in rows:
        user_id = matches[row.key]
        if user_id is None:
            step = Step("create", row.values["email"], row.values.get("id"), line=row.line)
            if row.password is None and "hashed_password" not in row.values:
                if options.require_passwords:
                    refused.append(Problem(row.line, NO_PASSWORD))
                    continue
                from usersctl.passwords import generate_password

                step.password = row.password = generate_password()
            for name, value in row.values.items():
                if name != "hashed_password" and name not in row.defaulted:
                    step.changes[name] = (None, value)
            if "hashed_password" in row.values or row.password is not None:
                step.changes["hashed_password"] = (None, HIDDEN)
            step.row = row
            steps.append(step)
            continue
        stored = state[user_id]
        step = Step("unchanged", stored["email"], user_id, line=row.line, row=row)
        for name, value in row.values.items():
            if name in ("id", "hashed_password") or name in row.defaulted:
                continue
            if name not in stored or stored[name] != value:
                step.changes[name] = (stored.get(name), value)
        if options.update_passwords and "hashed_password" in row.values:
            if row.values["hashed_password"] != stored["hashed_password"]:
                step.changes["hashed_password"] = (HIDDEN, HIDDEN)
        elif (
            options.update_passwords
            and row.password is not None
            and not password_matches(row.password, stored["hashed_password"])
        ):
            step.changes["hashed_password"] = (HIDDEN, HIDDEN)
        else:
            # Not to be written: a plaintext left unhashed, a hash left out of the update.
            row.password = None
            row.values.pop("hashed_password", None)
        if step.changes:
            step.action = "update"
        else:
            row.password = None
        steps.append(step)
    if refused:
        raise ImportRejected(refused)
    action = "delete" if options.prune_delete else "deactivate"
    pruned = sorted(observed.pruned, key=lambda user_id: fold_case(state[user_id]["email"]))
    for user_id in pruned:
        step = Step(action, state[user_id]["email"], user_id)
        if action == "deactivate":
            step.changes["is_active"] = (True, False)
        steps.append(step)
    return steps


async def _password_checker(
    rows: list[Row], observed: _Observed, ctx: UserContext, options: ApplyOptions
) -> Callable[[str, str | None], bool]:
    """Whether a given plaintext password is the one a user has: checked (on all cores, with
    no lock held) only under ``--update-passwords``, for the rows of existing users."""
    if not options.update_passwords:
        return lambda password, hashed: True
    from usersctl.passwords import verify_password

    names = [column.name for column in _state_columns(ctx)]
    hashes = {user_id: values[names.index("hashed_password")] for user_id, values in observed.state}
    matches = dict(observed.matches)
    pairs = [
        (row.password, hashes[matches[row.key]])
        for row in rows
        if row.password is not None and matches.get(row.key) is not None
    ]

    def check(pair: tuple[str, str | None]) -> bool:
        password, hashed = pair
        if not hashed:
            return False
        try:
            return verify_password(password, hashed)
        except Exception:  # a hash no scheme verifies (a legacy one, a locking marker)
            return False

    results = await asyncio.gather(*(asyncio.to_thread(check, pair) for pair in pairs))
    known = {pair: result for pair, result in zip(pairs, results, strict=True)}
    return lambda password, hashed: known.get((password, hashed), False)


async def plan_apply(ctx: UserContext, rows: list[Row], options: ApplyOptions) -> ApplyPlan:
    """The plan for ``rows`` against the database ``ctx`` reads; reads only."""
    observed = await _observe(ctx, rows, options)
    await ctx.session.rollback()  # verifying passwords takes a while: hold nothing meanwhile
    matches = await _password_checker(rows, observed, ctx, options)
    return ApplyPlan(_decide_steps(ctx, rows, observed, options, matches), observed)


async def carry_out(
    ctx: UserContext,
    plan: ApplyPlan,
    rows: list[Row],
    options: ApplyOptions,
    *,
    dry_run: bool = False,
    force: bool = False,
    keep_sessions: bool = False,
    hashing: Hashing = ARGON2,
) -> None:
    """Write ``plan`` in the caller's transaction (``ctx`` opened for writing), after seeing
    the users as the plan saw them (``PlanOutdated`` otherwise). Plaintext passwords are hashed
    first, with the lock let go; a dry run hashes one and lends its hash to the others, and
    writes what a real run would, for the caller to roll back.

    The last active superuser cannot be deactivated, demoted or deleted unless ``force``; users
    given a new password or deactivated lose their database access tokens unless
    ``keep_sessions``."""
    from usersctl.users import active_superusers, peek_next_ids

    to_hash = [
        step.row for step in plan.steps if step.row is not None and step.row.password is not None
    ]
    await ctx.session.rollback()
    hashed_now = to_hash[:1] if dry_run else to_hash
    await asyncio.to_thread(hash_passwords, hashed_now, None, None, hashing)
    for row in to_hash[len(hashed_now) :]:
        row.values["hashed_password"] = hashed_now[0].values["hashed_password"]
        row.password = None
    await lock_table(ctx)
    if await _observe(ctx, rows, options) != plan.observed:
        raise PlanOutdated(
            "the users changed since the plan was made (another command wrote meanwhile); "
            "nothing was written: run apply again"
        )
    stand_ins = await peek_next_ids(ctx) if dry_run else None
    creates = [step for step in plan.steps if step.action == "create"]
    superusers = (
        await active_superusers(ctx)
        if not force and any(step.loses_superuser for step in plan.steps)
        else []
    )
    new_rows = [step.row for step in creates if step.row is not None]
    if new_rows:
        from sqlalchemy.exc import IntegrityError

        try:
            await insert_rows(ctx, [row.values for row in new_rows], stand_ins)
        except IntegrityError as exc:
            from usersctl.users import name_violation

            lines = [row.line for row in new_rows]
            await name_violation(ctx, exc, [row.values for row in new_rows], lines=lines)
            raise
    updates = []
    for step in plan.steps:
        if step.action not in ("update", "deactivate"):
            continue
        values = {name: new for name, (_, new) in step.changes.items()}
        if "hashed_password" in values and step.row is not None:
            values["hashed_password"] = step.row.values["hashed_password"]
        updates.append({**values, "_id": step.id})
    for columns, batch in group_by_columns(updates):
        await execute_updates(ctx, columns, batch)
    deleting = [step for step in plan.steps if step.action == "delete"]
    if deleting:
        from usersctl.users import delete_users

        users = [await ctx.db.get(step.id) for step in deleting]
        await delete_users(ctx, [user for user in users if user is not None], force=force)
    await refuse_no_superuser_left(ctx, superusers, "the plan demotes, deactivates or deletes")
    ending = [step.id for step in plan.steps if step.ends_sessions]
    if ending and not keep_sessions:
        from usersctl.logins import revoke_access_tokens_of

        plan.revoked_tokens = await revoke_access_tokens_of(ctx, ending) or 0
    if new_rows and not dry_run:
        await advance_id_sequence(ctx, new_rows)
        by_email, _ = await existing_users(ctx, new_rows)
        for step, row in zip(creates, new_rows, strict=True):
            found = by_email.get(row.key)
            if found:
                step.id = found[0][0]


def shown_changes(step: Step) -> Sequence[tuple[str, Any, Any]]:
    """A step's changes as ``(field, old, new)``, in the order of the row's fields."""
    return [(name, old, new) for name, (old, new) in step.changes.items()]


def refuse_without_prune(options: ApplyOptions) -> None:
    """The list filters narrow pruning; without it they would mean nothing."""
    if options.filters != UserFilters() and not (options.prune or options.prune_delete):
        raise InvalidInput(
            "the filters choose which users --prune or --prune-delete may touch; give one of them"
        )
