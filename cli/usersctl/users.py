"""The operations a person asks for: find, create, update, (de)activate, delete and list users.

Each works inside the caller's transaction and raises the library's exceptions; the caller
commits (or rolls back, for a dry run). Nothing here knows about the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError, MultipleResultsFound
from sqlalchemy.ext.asyncio import AsyncSession

from usersctl.db import SQLAlchemyUserDatabase
from usersctl.emails import InvalidEmail, normalize_email
from usersctl.engine import (
    DEFAULT_CONNECT_TIMEOUT,
    check_sqlite_file,
    create_engine,
    session_factory,
)
from usersctl.errors import (
    AmbiguousUser,
    CheckFailed,
    InvalidInput,
    LastSuperuser,
    UserAlreadyExists,
    UserNotFound,
)
from usersctl.fields import INT64
from usersctl.models import UserModel, load_user_model, reflect_user_model, require_table

UserDB = SQLAlchemyUserDatabase[Any, Any]


@dataclass(frozen=True)
class UserContext:
    """An open session, the adapter over it, and the user model it works with."""

    session: AsyncSession
    db: UserDB
    model: UserModel


@asynccontextmanager
async def open_users(
    url: str,
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    write: bool = False,
    model_path: str | None = None,
) -> AsyncIterator[UserContext]:
    """Open one session on ``url``, read the user table's structure, and dispose of it all after.

    ``write=True`` takes SQLite's write lock when the transaction starts, so a check and the write
    that follows it cannot be interleaved with another process. ``model_path``
    (``module.path:ClassName``) uses the app's own model instead of reading the table's structure.
    """
    from usersctl.engine import normalize_url

    loaded = load_user_model(model_path) if model_path else None
    parsed = normalize_url(url)
    check_sqlite_file(parsed)
    engine = create_engine(
        parsed,
        connect_timeout=connect_timeout,
        sqlite_begin="BEGIN IMMEDIATE" if write else "BEGIN",
        sqlite_wal=write,  # opening a file only to read it must not change its journal mode
    )
    try:
        async with session_factory(engine)() as session:
            try:
                if loaded is None:
                    model = await session.run_sync(lambda s: reflect_user_model(s.connection()))
                else:
                    model = loaded
                    await session.run_sync(lambda s: require_table(s.connection(), loaded))
                yield UserContext(session, SQLAlchemyUserDatabase(session, model.user_class), model)
            except (asyncio.CancelledError, KeyboardInterrupt):
                # Stopped mid-statement (Ctrl-C), the connection may be half-way through a
                # message: a polite ROLLBACK would wait forever for a server that is waiting for
                # the rest. Close the socket instead; the server rolls back on its own.
                await session.invalidate()
                raise
    finally:
        await engine.dispose()


# Reading -------------------------------------------------------------------------------------


def user_row(model: UserModel, user: Any) -> dict[str, Any]:
    """The user's columns as a dict, without ``hashed_password``."""
    return {name: getattr(user, model.attribute(name)) for name in model.columns}


def parse_user_id(model: UserModel, raw: str) -> Any:
    """Convert ``raw`` to the id column's type, or raise ``InvalidInput``."""
    text = raw.strip()
    python_type: type[Any] | None
    try:
        python_type = model.table.c.id.type.python_type
    except NotImplementedError:
        python_type = None
    try:
        if model.id_is_uuid or python_type is uuid.UUID:
            return uuid.UUID(text)
        if python_type is int:
            if not text.lstrip("-").isdigit() or len(text) > 20 or int(text) not in INT64:
                raise ValueError(text)
            return int(text)
    except ValueError:
        kind = "UUID" if model.id_is_uuid else "integer"
        raise InvalidInput(f"{raw!r} is neither an email address nor a valid {kind} id") from None
    return text


async def find_user(ctx: UserContext, email_or_id: str) -> Any:
    """The user with this email (case-insensitive) or id; raises ``UserNotFound``."""
    if "@" in email_or_id:
        email = email_or_id.strip()
        if not email.isascii():
            # Unicode needs the normal form (NFC, IDNA domain); for ASCII, lower() on both sides
            # of the lookup already does what normalising would, without loading the validator.
            with contextlib.suppress(InvalidEmail):  # stored before today's rules: still matches
                email = normalize_email(email)
        user = await find_by_email(ctx, email, typed=email_or_id.strip())
    else:
        user = await ctx.db.get(parse_user_id(ctx.model, email_or_id))
    if user is None:
        raise UserNotFound(f"no user {email_or_id.strip()!r}")
    return user


async def find_by_email(ctx: UserContext, email: str, *, typed: str | None = None) -> Any:
    """The user with this address in any case, or None.

    A table made without usersctl's unique ``lower(email)`` index may hold the address more than
    once in different case; then the one stored exactly as given (``email``, or ``typed``, the
    address before normalising lowercased its domain) is meant, and with none such,
    ``AmbiguousUser`` names them all with their ids."""
    try:
        return await ctx.db.get_by_email(email)
    except MultipleResultsFound:
        pass
    table = ctx.model.table
    rows = (
        await ctx.session.execute(
            select(table.c.id, table.c.email)
            .where(func.lower(table.c.email) == func.lower(email))
            .order_by(table.c.email)
        )
    ).all()
    exact = [row.id for row in rows if row.email in (email, typed)]
    if len(exact) == 1:
        return await ctx.db.get(exact[0])
    listed = ", ".join(f"{row.email} (id {row.id})" for row in rows)
    raise AmbiguousUser(
        f"{len(rows)} users have the address {email!r} in different case: {listed}; "
        "name one by its id or its exact address (usersctl doctor lists such duplicates)"
    )


async def find_users(
    ctx: UserContext, refs: Sequence[str], *, missing_ok: bool = False
) -> tuple[list[Any], list[str]]:
    """The users named by ``refs`` (each once, in order) and the refs that matched nobody."""
    found: dict[Any, Any] = {}
    missing: list[str] = []
    for ref in refs:
        try:
            user = await find_user(ctx, ref)
        except UserNotFound:
            if not missing_ok:
                raise
            missing.append(ref)
            continue
        found.setdefault(user.id, user)
    return list(found.values()), missing


@dataclass(frozen=True)
class UserFilters:
    """What ``list-users`` and ``export-users`` select; ``None`` means either."""

    is_active: bool | None = None
    is_superuser: bool | None = None
    is_verified: bool | None = None
    search: str | None = None

    def apply(self, model: UserModel, statement: Select[Any]) -> Select[Any]:
        table = model.table
        for name in ("is_active", "is_superuser", "is_verified"):
            wanted = getattr(self, name)
            if wanted is not None:
                statement = statement.where(table.c[name].is_(wanted))
        if self.search:
            escaped = self.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            pattern = func.lower(f"%{escaped}%")
            statement = statement.where(func.lower(table.c.email).like(pattern, escape="\\"))
        return statement


@dataclass(frozen=True)
class Page:
    """One page of users, how many match in all, and the cursor of the next page (if any)."""

    users: list[dict[str, Any]]
    total: int
    next_after: str | None


async def list_users(
    ctx: UserContext, filters: UserFilters, *, limit: int, after: str | None = None
) -> Page:
    """Users in the order of their lowercased email, from just after ``after`` (keyset paging)."""
    table = ctx.model.table
    key = func.lower(table.c.email)
    statement = filters.apply(ctx.model, select(table).order_by(key))
    if after:
        statement = statement.where(key > func.lower(after))
    result = await ctx.session.execute(statement.limit(limit + 1))
    rows = [dict(row._mapping) for row in result]
    more = len(rows) > limit
    rows = rows[:limit]
    total_query = filters.apply(ctx.model, select(func.count()).select_from(table))
    total = int((await ctx.session.execute(total_query)).scalar_one())
    visible = [{name: row[name] for name in ctx.model.columns} for row in rows]
    return Page(visible, total, rows[-1]["email"] if more and rows else None)


# Writing -------------------------------------------------------------------------------------


async def _email_taken(ctx: UserContext, email: str, *, other_than: Any = None) -> bool:
    try:
        existing = await find_by_email(ctx, email)
    except AmbiguousUser:
        return True  # held by two users at least: by someone other than ``other_than``
    return existing is not None and (other_than is None or existing.id != other_than)


async def _flush(ctx: UserContext, email: str) -> None:
    try:
        await ctx.session.flush()
    except IntegrityError as exc:
        if "email" in str(exc.orig).lower():
            raise UserAlreadyExists(f"a user with email {email!r} already exists") from None
        raise


@dataclass(frozen=True)
class Created:
    """The outcome of ``create_user``: the user, and whether it was created now."""

    user: Any
    created: bool


async def create_user(
    ctx: UserContext,
    email: str,
    hashed_password: str,
    *,
    is_superuser: bool = False,
    is_verified: bool = False,
    is_active: bool = True,
    if_not_exists: bool = False,
    extra: dict[str, Any] | None = None,
) -> Created:
    """Add a user. An existing email (any case) raises ``UserAlreadyExists``, or with
    ``if_not_exists`` returns that user unchanged. ``extra`` holds other columns' values (by
    attribute); a NOT NULL column with no default that it leaves out raises ``InvalidInput``."""
    typed, email = email.strip(), normalize_email(email)
    try:
        existing = await find_by_email(ctx, email, typed=typed)
    except AmbiguousUser:
        raise UserAlreadyExists(f"a user with email {email!r} already exists") from None
    if existing is not None:
        if if_not_exists:
            return Created(existing, created=False)
        raise UserAlreadyExists(f"a user with email {existing.email!r} already exists")
    missing = ctx.model.missing_required(extra or {})
    if missing:
        raise InvalidInput(
            f"required field(s) with no default not given: {', '.join(missing)} "
            "(give them with --set FIELD=VALUE)"
        )
    values: dict[str, Any] = {
        "email": email,
        "hashed_password": hashed_password,
        "is_active": is_active,
        "is_superuser": is_superuser,
        "is_verified": is_verified,
        **(extra or {}),
    }
    user = ctx.model.user_class(**values)
    ctx.session.add(user)
    await _flush(ctx, email)
    await ctx.session.refresh(user)
    return Created(user, created=True)


async def active_superusers(ctx: UserContext) -> list[str]:
    """The emails of the active superusers, in order, locking them until the transaction ends.

    The lock (FOR UPDATE on PostgreSQL; SQLite's writer already holds the whole file) makes two
    commands that each remove a different superuser take turns, so the second one counts what
    the first left: they cannot both pass the last-superuser guard.
    """
    table = ctx.model.table
    statement = (
        select(table.c.email)
        .where(table.c.is_superuser.is_(True), table.c.is_active.is_(True))
        .order_by(table.c.email)
        .with_for_update()
    )
    return list((await ctx.session.execute(statement)).scalars())


async def guard_last_superuser(ctx: UserContext, losing: Iterable[Any], *, force: bool) -> None:
    """Refuse a change that takes away the last active superuser(s), unless ``force``."""
    lost = [user for user in losing if user.is_superuser and user.is_active]
    if force or not lost:
        return
    if len(await active_superusers(ctx)) <= len(lost):
        who = ", ".join(user.email for user in lost)
        raise LastSuperuser(
            f"refusing to leave no active superuser (would remove {who}); use --force to do it anyway"
        )


async def update_user(
    ctx: UserContext,
    user: Any,
    *,
    email: str | None = None,
    is_superuser: bool | None = None,
    is_verified: bool | None = None,
    is_active: bool | None = None,
    extra: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, tuple[Any, Any]]:
    """Apply the given changes; return ``{field: (old, new)}`` for what actually changed.

    A new email must not belong to another user (case-insensitively); changing only the case of
    one's own address is allowed. A new address (not just new case) makes the user unverified
    unless ``is_verified`` is given, as FastAPI Users does.
    """
    wanted: dict[str, Any] = dict(extra or {})
    if email is not None:
        email = normalize_email(email)
        if email.lower() != user.email.lower():
            if await _email_taken(ctx, email, other_than=user.id):
                raise UserAlreadyExists(f"a user with email {email!r} already exists")
            if is_verified is None:
                is_verified = False
        wanted["email"] = email
    for name, value in (
        ("is_superuser", is_superuser),
        ("is_verified", is_verified),
        ("is_active", is_active),
    ):
        if value is not None:
            wanted[name] = value
    losing = is_superuser is False or is_active is False
    if losing:
        await guard_last_superuser(ctx, [user], force=force)
    changes = {
        name: (getattr(user, name), value)
        for name, value in wanted.items()
        if getattr(user, name) != value
    }
    for name, (_, new) in changes.items():
        setattr(user, name, new)
    if changes:
        await _flush(ctx, user.email)
    return changes


async def set_password(ctx: UserContext, user: Any, hashed_password: str) -> None:
    """Replace the user's password hash."""
    user.hashed_password = hashed_password
    await ctx.session.flush()


async def set_active(
    ctx: UserContext, users: Sequence[Any], active: bool, *, force: bool = False
) -> tuple[list[Any], list[Any]]:
    """(De)activate users; return those changed and those already so."""
    changed = [user for user in users if user.is_active != active]
    unchanged = [user for user in users if user.is_active == active]
    if not active:
        await guard_last_superuser(ctx, changed, force=force)
    for user in changed:
        user.is_active = active
    await ctx.session.flush()
    return changed, unchanged


async def delete_users(ctx: UserContext, users: Sequence[Any], *, force: bool = False) -> None:
    """Delete users with their OAuth accounts and access tokens."""
    from usersctl.logins import delete_logins

    await guard_last_superuser(ctx, users, force=force)
    for user in users:
        await delete_logins(ctx, user.id)
        await ctx.db.delete_by_id(user.id)
        ctx.session.expunge(user)


# Checking a password -------------------------------------------------------------------------

NO_MATCH = "no match: the password is wrong, the user does not exist, or has no usable password"


@dataclass(frozen=True)
class PasswordMatch:
    """A password that matched: the user, the scheme of the hash it matched (``argon2``,
    ``argon2-outdated`` or ``bcrypt``), and whether that hash was replaced by a new Argon2 one."""

    user: Any
    scheme: str
    rehashed: bool


async def _decoy_hash(ctx: UserContext, sample: int = 100) -> str | None:
    """A stored hash of the scheme and cost most common among (a sample of) the table's users,
    to verify a password against when there is no user: the same work as a wrong password for a
    real user (bcrypt where the table's hashes are bcrypt), so timing does not tell them apart."""
    from collections import Counter

    from usersctl.passwords import is_known_hash

    column = ctx.model.table.c.hashed_password
    rows = await ctx.session.execute(select(column).where(column.is_not(None)).limit(sample))
    known = [
        hashed for hashed in rows.scalars() if isinstance(hashed, str) and is_known_hash(hashed)
    ]
    if not known:
        return None

    def cost(hashed: str) -> str:  # $argon2id$v=19$m=65536,t=3,p=4 or $2b$12
        return "$".join(hashed.split("$")[: 4 if hashed.startswith("$argon2") else 3])

    common, _ = Counter(cost(hashed) for hashed in known).most_common(1)[0]
    return next(hashed for hashed in known if cost(hashed) == common)


async def check_password(
    ctx: UserContext, email_or_id: str, password: str, *, rehash: bool = False
) -> PasswordMatch:
    """Check ``password`` as the app's login does; raise ``CheckFailed`` when it does not match.

    A missing user, a disabled or unknown hash and a wrong password raise the same
    ``CheckFailed`` after the same work: without a hash to check, the password is checked against
    a hash of the scheme and cost most users' hashes have (bcrypt in a table of bcrypt hashes),
    so neither the answer nor its timing tells whether the user exists. With ``rehash``, a matching bcrypt or outdated Argon2 hash is replaced.
    """
    import asyncio

    from usersctl.passwords import hash_password, hash_scheme, is_known_hash, verify_and_update

    try:
        user = await find_user(ctx, email_or_id)
    except UserNotFound:
        user = None
    hashed = user.hashed_password if user is not None else None
    if not isinstance(hashed, str) or not is_known_hash(hashed):
        decoy = await _decoy_hash(ctx)
        if decoy is None:  # no usable hash in the table: as FastAPI Users does, hash anyway
            await asyncio.to_thread(hash_password, password)
        else:
            await asyncio.to_thread(verify_and_update, password, decoy)
        raise CheckFailed(NO_MATCH)
    matched, new_hash = await asyncio.to_thread(verify_and_update, password, hashed)
    if not matched:
        raise CheckFailed(NO_MATCH)
    scheme = hash_scheme(hashed)
    if rehash and new_hash is not None:
        await set_password(ctx, user, new_hash)
    return PasswordMatch(user, scheme, rehashed=rehash and new_hash is not None)
