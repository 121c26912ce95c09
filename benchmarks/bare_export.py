"""The reference for ``export-users -o jsonl``: a bare loop writing the same JSON lines to stdout.

No framework: the driver's rows, ``json.dumps``, ``write``. usersctl's output is compared with
this script's, line for line, on the smaller export.

    python bare_export.py sqlite PATH [--ordered]
    python bare_export.py postgresql DSN [--ordered]

``--ordered``: in ``lower(email)`` order, as ``export-users`` writes by default (served by the
unique ``lower(email)`` index ``init-db`` makes); without it, in the order the database reads
the table, as ``export-users --unordered`` writes.
"""

import json
import sys

QUERY = 'SELECT id, email, is_active, is_superuser, is_verified FROM "user"'
ORDER = " ORDER BY lower(email)"
KEYS = ("id", "email", "is_active", "is_superuser", "is_verified")


def export_sqlite(path: str, query: str) -> None:
    import sqlite3

    dumps, write = json.dumps, sys.stdout.write
    connection = sqlite3.connect(path)
    for user_id, email, active, superuser, verified in connection.execute(query):
        record = {
            "id": user_id,
            "email": email,
            "is_active": bool(active),
            "is_superuser": bool(superuser),
            "is_verified": bool(verified),
        }
        write(dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
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


if __name__ == "__main__":
    kind, target = sys.argv[1:3]
    query = QUERY + ORDER if "--ordered" in sys.argv[3:] else QUERY
    if kind == "sqlite":
        export_sqlite(target, query)
    else:
        import asyncio

        asyncio.run(export_postgresql(target, query))
    sys.stdout.flush()
