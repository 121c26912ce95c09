"""Benchmark data: deterministic users, bulk-loaded into SQLite, PostgreSQL and MariaDB user tables.

Every user shares one precomputed Argon2 hash, so a million rows take seconds to make. Emails are
unique, spread over 100 domains, and about one in five has capitals in its local part (domains
are stored lowercased, as FastAPI Users' ``EmailStr`` normalises them).
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

COLUMNS = ("id", "email", "hashed_password", "is_active", "is_superuser", "is_verified")
SEED = 20240521


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words(
    "alice bob carol dave erin frank grace heidi ivan judy karl laura mallory niaj olivia peggy "
    "quentin rupert sybil trent ursula victor walter xavier yvonne zoe amir bea chen dara elif "
    "farid gita hana ines jonas kofi lena mateo nora oscar priya rosa sami tariq uma vera wen "
    "yusuf zara"
)
LAST_NAMES = _words(
    "smith jones garcia miller davis lopez wilson moore taylor thomas white harris martin clark "
    "lewis walker hall young allen king wright scott green baker adams nelson hill campbell "
    "mitchell roberts carter phillips evans turner torres parker collins edwards stewart morris "
    "murphy cook rogers morgan cooper peterson reed bailey bell kelly"
)
DOMAIN_NAMES = _words("acme globex initech umbrella hooli stark wayne wonka cyberdyne tyrell")
TOP_LEVEL = _words("com org net io de fr co.uk dev app info")
DOMAINS = [f"{name}.{top}" for name in DOMAIN_NAMES for top in TOP_LEVEL]  # 100 domains


def email_for(index: int, prefix: str = "") -> str:
    """The address of user ``index``: unique, and capitalised for one user in five."""
    first = FIRST_NAMES[index % len(FIRST_NAMES)]
    last = LAST_NAMES[(index // len(FIRST_NAMES)) % len(LAST_NAMES)]
    if index % 5 == 0:
        first, last = first.capitalize(), last.capitalize()
    domain = DOMAINS[(index * 7 + index // 100) % len(DOMAINS)]
    return f"{prefix}{first}.{last}{index}@{domain}"


def flags_for(index: int) -> tuple[bool, bool, bool]:
    """``(is_active, is_superuser, is_verified)`` of user ``index``."""
    return index % 50 != 7, index % 100_000 == 3, index % 3 != 0


def uuid4_strings(count: int, seed: int) -> Iterator[str]:
    """``count`` random version-4 UUIDs as text, the same for the same seed (uuid.UUID is slow)."""
    rnd = random.Random(seed)
    variant = "89ab"
    while count:
        chunk = min(count, 4096)
        count -= chunk
        text = rnd.randbytes(16 * chunk).hex()
        for o in range(0, 32 * chunk, 32):
            yield (
                f"{text[o : o + 8]}-{text[o + 8 : o + 12]}-4{text[o + 13 : o + 16]}-"
                f"{variant[int(text[o + 16], 16) & 3]}{text[o + 17 : o + 20]}-{text[o + 20 : o + 32]}"
            )


def user_rows(
    count: int, hashed_password: str, *, start: int = 0, prefix: str = ""
) -> Iterator[tuple[str, str, str, bool, bool, bool]]:
    """Users ``start .. start+count-1`` in ``COLUMNS`` order; the same indexes give the same rows."""
    ids = uuid4_strings(count, SEED + start)
    for index, user_id in zip(range(start, start + count), ids, strict=True):
        yield (user_id, email_for(index, prefix), hashed_password, *flags_for(index))


def random_case(email: str, rnd: random.Random) -> str:
    """The address with each letter's case chosen at random: how people type them at login."""
    return "".join(ch.upper() if rnd.random() < 0.5 else ch.lower() for ch in email)


def write_import_file(
    path: Path, count: int, hashed_password: str, *, full_rows: bool, prefix: str
) -> None:
    """A JSON lines file of ``count`` new users with ``hashed_password``.

    ``full_rows`` writes every column, as ``export-users --include-hashes`` does (id and flags);
    otherwise only ``email`` and ``hashed_password``.
    """
    dumps = json.dumps
    with path.open("w", encoding="utf-8") as out:
        for user_id, email, hashed, active, superuser, verified in user_rows(
            count, hashed_password, start=0, prefix=prefix
        ):
            if full_rows:
                record: dict[str, Any] = {
                    "id": user_id,
                    "email": email,
                    "hashed_password": hashed,
                    "is_active": active,
                    "is_superuser": superuser,
                    "is_verified": verified,
                }
            else:
                record = {"email": email, "hashed_password": hashed}
            out.write(dumps(record) + "\n")


def write_plaintext_file(path: Path, count: int, prefix: str) -> None:
    """A JSON lines file of ``count`` new users with plaintext passwords."""
    rnd = random.Random(SEED)
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            password = "".join(rnd.choice("abcdefghijkmnopqrstuvwxyz23456789") for _ in range(20))
            out.write(json.dumps({"email": email_for(index, prefix), "password": password}) + "\n")


# SQLite ----------------------------------------------------------------------------------------


def _open_for_loading(path: Path) -> tuple[sqlite3.Connection, str]:
    con = sqlite3.connect(path, isolation_level=None)
    (mode,) = con.execute("PRAGMA journal_mode").fetchone()
    con.execute("PRAGMA journal_mode = MEMORY")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -131072")  # 128 MiB
    return con, str(mode)


def _sqlite_bulk(con: sqlite3.Connection, insert: Any) -> None:
    """Run ``insert(con)`` in one transaction with the table's indexes dropped, then recreate
    them from their own definitions (a sorted build is much faster than random inserts)."""
    indexes = [
        (name, sql)
        for name, sql in con.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'user'"
            " AND sql IS NOT NULL"
        )
    ]
    con.execute("BEGIN")
    for name, _ in indexes:
        con.execute(f'DROP INDEX "{name}"')
    insert(con)
    for _, sql in indexes:
        con.execute(sql)
    con.execute("COMMIT")


def load_sqlite(path: Path, count: int, hashed_password: str) -> None:
    """Append ``count`` users to the ``user`` table of the SQLite file at ``path``.

    The journal is kept in memory and nothing is synced: this builds data, it is not measured.
    The file's journal mode (WAL, as ``init-db`` leaves it) is restored after.
    """
    con, mode = _open_for_loading(path)
    try:
        placeholders = ", ".join("?" for _ in COLUMNS)
        _sqlite_bulk(
            con,
            lambda con: con.executemany(
                f'INSERT INTO "user" ({", ".join(COLUMNS)}) VALUES ({placeholders})',
                user_rows(count, hashed_password),
            ),
        )
        con.execute(f"PRAGMA journal_mode = {mode}")
    finally:
        con.close()


def copy_sqlite_users(source: Path, target: Path, limit: int | None = None) -> None:
    """Copy the users of ``source`` (in storage order, the first ``limit``) into ``target``."""
    con, mode = _open_for_loading(target)
    try:
        con.execute("ATTACH DATABASE ? AS source", (str(source),))
        columns = ", ".join(COLUMNS)
        suffix = f" ORDER BY rowid LIMIT {int(limit)}" if limit is not None else ""
        _sqlite_bulk(
            con,
            lambda con: con.execute(
                f'INSERT INTO main."user" ({columns}) SELECT {columns} FROM source."user"{suffix}'
            ),
        )
        con.execute("DETACH DATABASE source")
        con.execute(f"PRAGMA journal_mode = {mode}")
    finally:
        con.close()


def sqlite_schema(path: Path) -> list[str]:
    """The DDL of the ``user`` table and its indexes, as SQLite keeps it."""
    con = sqlite3.connect(path)
    try:
        rows = con.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'user' AND sql IS NOT NULL"
            " ORDER BY type DESC, name"
        ).fetchall()
    finally:
        con.close()
    return [sql for (sql,) in rows]


# PostgreSQL ------------------------------------------------------------------------------------


async def _postgres_bulk(connection: Any, insert: Any) -> None:
    """Run ``insert()`` in one transaction with the table's constraints and indexes dropped,
    then recreate them from their own definitions, and VACUUM ANALYZE the table, as
    autovacuum would leave a live one (otherwise the first reader of each page pays for
    setting its hint bits)."""
    await connection.execute("SET synchronous_commit = off")
    await connection.execute("SET maintenance_work_mem = '256MB'")
    constraints = await connection.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
        " WHERE conrelid = '\"user\"'::regclass AND contype IN ('p', 'u')"
    )
    indexes = await connection.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " AND tablename = 'user'"
    )
    owned = {row["conname"] for row in constraints}
    async with connection.transaction():
        for row in constraints:
            await connection.execute(f'ALTER TABLE "user" DROP CONSTRAINT "{row["conname"]}"')
        for row in indexes:
            if row["indexname"] not in owned:
                await connection.execute(f'DROP INDEX "{row["indexname"]}"')
        await insert()
        for row in indexes:
            if row["indexname"] not in owned:
                await connection.execute(row["indexdef"])
        for row in constraints:
            await connection.execute(
                f'ALTER TABLE "user" ADD CONSTRAINT "{row["conname"]}" {row["definition"]}'
            )
    await connection.execute('VACUUM ANALYZE "user"')


async def load_postgres(dsn: str, count: int, hashed_password: str) -> None:
    """Append ``count`` users to the ``user`` table with COPY."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        await _postgres_bulk(
            connection,
            lambda: connection.copy_records_to_table(
                "user", records=user_rows(count, hashed_password), columns=list(COLUMNS)
            ),
        )
    finally:
        await connection.close()


async def copy_postgres_users(
    source_dsn: str, target_dsn: str, scratch: Path, limit: int | None = None
) -> None:
    """Copy the users of one database into another's ``user`` table (binary COPY via a file)."""
    import asyncpg

    columns = ", ".join(COLUMNS)
    suffix = f" LIMIT {int(limit)}" if limit is not None else ""
    source = await asyncpg.connect(source_dsn)
    try:
        await source.copy_from_query(
            f'SELECT {columns} FROM "user"{suffix}', output=scratch, format="binary"
        )
    finally:
        await source.close()
    target = await asyncpg.connect(target_dsn)
    try:
        await _postgres_bulk(
            target,
            lambda: target.copy_to_table(
                "user", source=scratch, columns=list(COLUMNS), format="binary"
            ),
        )
    finally:
        await target.close()
    scratch.unlink()


async def postgres_schema(dsn: str) -> list[str]:
    """The definitions of the ``user`` table's indexes and constraints."""
    import asyncpg

    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT indexdef AS d FROM pg_indexes WHERE tablename = 'user' UNION ALL"
            " SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = '\"user\"'::regclass ORDER BY 1"
        )
    finally:
        await connection.close()
    return [row["d"] for row in rows]


# MariaDB ---------------------------------------------------------------------------------------


async def mariadb_connect(url: str, **options: Any) -> Any:
    """An asyncmy connection to a ``mysql+asyncmy://user:password@host:port/database`` URL."""
    from urllib.parse import unquote, urlsplit

    import asyncmy

    parts = urlsplit(url)
    return await asyncmy.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=parts.path.strip("/") or None,
        charset="utf8mb4",
        **options,
    )


async def mariadb_execute(url: str, statements: list[str]) -> list[tuple[Any, ...]]:
    """Run ``statements`` in autocommit; the rows of the last one."""
    connection = await mariadb_connect(url, autocommit=True)
    rows: list[tuple[Any, ...]] = []
    try:
        async with connection.cursor() as cursor:
            for statement in statements:
                await cursor.execute(statement)
                rows = list(await cursor.fetchall())
    finally:
        await connection.ensure_closed()
    return rows


async def _mariadb_bulk(url: str, insert: Any) -> None:
    """Run ``insert(cursor)`` in one transaction with the table's secondary indexes dropped, then
    add them again from their own definitions (a sorted build, not a million random inserts into
    a B-tree larger than the buffer pool)."""
    connection = await mariadb_connect(url)
    try:
        async with connection.cursor() as cursor:
            await cursor.execute(
                "SELECT index_name, non_unique, GROUP_CONCAT(CONCAT('`', column_name, '`',"
                " IFNULL(CONCAT('(', sub_part, ')'), '')) ORDER BY seq_in_index)"
                " FROM information_schema.statistics WHERE table_schema = DATABASE()"
                " AND table_name = 'user' AND index_name <> 'PRIMARY' GROUP BY index_name,"
                " non_unique"
            )
            indexes = list(await cursor.fetchall())
            for name, _, _ in indexes:
                await cursor.execute(f"ALTER TABLE user DROP INDEX `{name}`")
            await cursor.execute("SET unique_checks = 0, foreign_key_checks = 0")
            await insert(cursor)
            await connection.commit()
            for name, non_unique, columns in indexes:
                unique = "" if non_unique else "UNIQUE "
                await cursor.execute(f"ALTER TABLE user ADD {unique}INDEX `{name}` ({columns})")
            await cursor.execute("ANALYZE TABLE user")
            await cursor.fetchall()
    finally:
        await connection.ensure_closed()


async def load_mariadb(url: str, count: int, hashed_password: str) -> None:
    """Append ``count`` users to the ``user`` table with multi-row INSERTs, in the order of their
    ids (InnoDB's clustered primary key then grows at its end)."""
    rows = sorted(user_rows(count, hashed_password))
    insert = f"INSERT INTO user ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"

    async def write(cursor: Any) -> None:
        for start in range(0, len(rows), 5_000):  # a statement well under max_allowed_packet
            await cursor.executemany(insert, rows[start : start + 5_000])

    await _mariadb_bulk(url, write)


async def copy_mariadb_users(source_url: str, target_url: str, limit: int | None = None) -> None:
    """Copy the users of one database into another's on the same server (the first ``limit``
    in primary-key order)."""
    source = source_url.rsplit("/", 1)[1]
    columns = ", ".join(COLUMNS)
    suffix = f" ORDER BY id LIMIT {int(limit)}" if limit is not None else ""

    async def write(cursor: Any) -> None:
        await cursor.execute(
            f"INSERT INTO user ({columns}) SELECT {columns} FROM `{source}`.user{suffix}"
        )

    await _mariadb_bulk(target_url, write)


async def email_at_offset_from_end(dsn_or_path: str | Path, offset: int) -> str:
    """The stored email ``offset`` places before the last in ``lower(email)`` order."""
    if isinstance(dsn_or_path, Path):
        con = sqlite3.connect(dsn_or_path)
        try:
            (email,) = con.execute(
                'SELECT email FROM "user" ORDER BY lower(email) DESC LIMIT 1 OFFSET ?', (offset,)
            ).fetchone()
        finally:
            con.close()
        return str(email)
    if dsn_or_path.startswith("mysql"):
        query = f"SELECT email FROM user ORDER BY email DESC LIMIT 1 OFFSET {int(offset)}"
        ((email,),) = await mariadb_execute(dsn_or_path, [query])
        return str(email)
    import asyncpg

    connection = await asyncpg.connect(dsn_or_path)
    try:
        email = await connection.fetchval(
            'SELECT email FROM "user" ORDER BY lower(email) DESC LIMIT 1 OFFSET $1', offset
        )
    finally:
        await connection.close()
    return str(email)
