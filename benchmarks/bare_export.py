"""The reference for ``export-users -o jsonl``: a bare loop writing the same JSON lines to stdout.

No framework: the driver's rows, ``json.dumps``, ``write``. usersctl's output is compared with
this script's, line for line, on the smaller export.

    python bare_export.py sqlite PATH [--ordered]
    python bare_export.py postgresql DSN [--ordered]
    python bare_export.py mariadb mysql+asyncmy://USER@HOST:PORT/DATABASE [--ordered]

``--ordered``: in ``lower(email)`` order, as ``export-users`` writes by default (served by the
unique ``lower(email)`` index ``init-db`` makes); without it, in the order the database reads
the table, as ``export-users --unordered`` writes. On MariaDB the order is ``ORDER BY email``, as
``export-users`` writes there: the unique index is on ``email``, in its case-insensitive collation.
"""

import json
import sys
from collections.abc import Iterable
from typing import Any

QUERY = 'SELECT id, email, is_active, is_superuser, is_verified FROM "user"'
ORDER = " ORDER BY lower(email)"
MARIADB_QUERY, MARIADB_ORDER = QUERY.replace('"', "`"), " ORDER BY email"
KEYS = ("id", "email", "is_active", "is_superuser", "is_verified")


def write_rows(rows: Iterable[tuple[Any, ...]]) -> None:
    """Write rows whose booleans are stored as 0 and 1 (SQLite, MariaDB) as JSON lines."""
    dumps, write = json.dumps, sys.stdout.write
    for user_id, email, active, superuser, verified in rows:
        record = {
            "id": user_id,
            "email": email,
            "is_active": bool(active),
            "is_superuser": bool(superuser),
            "is_verified": bool(verified),
        }
        write(dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")


def export_sqlite(path: str, query: str) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    write_rows(connection.execute(query))
    connection.close()


async def export_postgresql(dsn: str, query: str) -> None:
    import asyncpg

    dumps, write = json.dumps, sys.stdout.write
    connection = await asyncpg.connect(dsn)
    async with connection.transaction():
        async for user_id, email, active, superuser, verified in connection.cursor(
            query, prefetch=10_000
        ):
            record = {
                "id": str(user_id),
                "email": email,
                "is_active": active,
                "is_superuser": superuser,
                "is_verified": verified,
            }
            write(dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
    await connection.close()


async def export_mariadb(url: str, query: str) -> None:
    from asyncmy.cursors import SSCursor

    from build_data import mariadb_connect

    connection = await mariadb_connect(url)
    async with connection.cursor(SSCursor) as cursor:
        await cursor.execute(query)
        while rows := await cursor.fetchmany(10_000):
            write_rows(rows)
    await connection.ensure_closed()


if __name__ == "__main__":
    kind, target = sys.argv[1:3]
    ordered = "--ordered" in sys.argv[3:]
    if kind == "sqlite":
        export_sqlite(target, QUERY + ORDER if ordered else QUERY)
    else:
        import asyncio

        if kind == "mariadb":
            query = MARIADB_QUERY + MARIADB_ORDER if ordered else MARIADB_QUERY
            asyncio.run(export_mariadb(target, query))
        else:
            asyncio.run(export_postgresql(target, QUERY + ORDER if ordered else QUERY))
    sys.stdout.flush()
