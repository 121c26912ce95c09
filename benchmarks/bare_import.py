"""The reference for ``import-users`` of hashed rows on MariaDB: a bare asyncmy loop.

No framework: read the JSON lines, make an id where a row has none (uuid4, as usersctl does),
and write every row with the driver's ``executemany`` (multi-row INSERTs) in one transaction.

    python bare_import.py mysql+asyncmy://USER@HOST:PORT/DATABASE FILE
"""

import asyncio
import json
import sys
import uuid

from build_data import COLUMNS, mariadb_connect

BATCH = 5_000  # rows per INSERT statement, well under max_allowed_packet


async def import_mariadb(url: str, path: str) -> None:
    rows = []
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            rows.append(
                (
                    record.get("id") or str(uuid.uuid4()),
                    record["email"],
                    record["hashed_password"],
                    record.get("is_active", True),
                    record.get("is_superuser", False),
                    record.get("is_verified", False),
                )
            )
    insert = f"INSERT INTO user ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    connection = await mariadb_connect(url)
    async with connection.cursor() as cursor:
        for start in range(0, len(rows), BATCH):
            await cursor.executemany(insert, rows[start : start + BATCH])
    await connection.commit()
    await connection.ensure_closed()


if __name__ == "__main__":
    asyncio.run(import_mariadb(sys.argv[1], sys.argv[2]))
