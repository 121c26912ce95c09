"""usersctl's benchmark suite: builds its own users, measures, prints a comparison table.

    python benchmarks/run.py                 # the issue's sizes (1,000,000 users), both databases
    python benchmarks/run.py --quick         # small sizes, under a minute: a smoke test
    python benchmarks/run.py --sqlite-only   # without PostgreSQL
    python benchmarks/run.py --users 200000  # another table size
    python benchmarks/run.py --mariadb mysql+asyncmy://root@127.0.0.1:3306/  # and MariaDB

Every comparison is made in the same run, on the same users, on this machine. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import build_data
import lookups
import timing

HERE = Path(__file__).resolve().parent
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
METRICS = ("lookup", "import", "plaintext", "export", "list", "startup")


# Sizes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much of everything a run uses."""

    users: int  # the big table: lookups, export, list-users, show-user
    small_users: int  # the smaller export, to see that memory does not grow with the table
    import_rows: int
    plaintext_rows: int
    fast_lookups: int  # lookups timed at least, when an index serves them
    slow_lookups: int  # ... when every lookup scans the table
    lookup_seconds: float  # and at least this long, per adapter and database
    import_runs: int
    export_runs: int
    list_runs: int
    startup_runs: int
    hash_samples: int


def sizes_for(quick: bool, users: int | None, cores: int) -> Sizes:
    if quick:
        sizes = Sizes(
            users=20_000,
            small_users=2_000,
            import_rows=10_000,
            plaintext_rows=4 * cores,
            fast_lookups=300,
            slow_lookups=10,
            lookup_seconds=0.5,
            import_runs=1,
            export_runs=1,
            list_runs=3,
            startup_runs=3,
            hash_samples=3,
        )
    else:
        sizes = Sizes(
            users=1_000_000,
            small_users=100_000,
            import_rows=100_000,
            plaintext_rows=40 * cores,
            fast_lookups=2_000,
            slow_lookups=15,
            lookup_seconds=4.0,
            import_runs=3,
            export_runs=3,
            list_runs=7,
            startup_runs=15,
            hash_samples=10,
        )
    if users is not None:
        sizes = replace(sizes, users=users, small_users=max(1, users // 10))
    return sizes


# Results ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    metric: str
    database: str
    usersctl: str
    reference: str
    target: str
    verdict: str


def rss(run: timing.Run) -> float:
    assert run.max_rss_mb is not None, "measured without memory=True"
    return run.max_rss_mb


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def seconds(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.3f} ms"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def rate(value: float, unit: str = "rows") -> str:
    return f"{value:,.0f} {unit}/s" if value >= 100 else f"{value:.1f} {unit}/s"


def megabytes(value: float) -> str:
    return f"{value:.0f} MB"


def count(value: int) -> str:
    return f"{value:,}"


def print_table(rows: list[Row]) -> None:
    headers = ("metric", "database", "usersctl", "reference", "ratio/target", "PASS/FAIL")
    cells = [
        headers,
        *((r.metric, r.database, r.usersctl, r.reference, r.target, r.verdict) for r in rows),
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for values in cells[1:]:
        print(line(values))


# Databases -------------------------------------------------------------------------------------


@dataclass
class Database:
    """The databases of one kind (SQLite files, PostgreSQL or MariaDB databases) a run works on.

    ``big``: users in a table made by ``usersctl init-db``; ``fastapi_users``: the same users in
    a table made by FastAPI Users' ``create_all``; ``small``: the first ``small_users`` of them
    (init-db); ``empty``: an init-db table that imports start from.
    """

    kind: str  # "sqlite", "postgresql" or "mariadb"
    big: str
    fastapi_users: str
    small: str
    empty: str
    built: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return {"sqlite": "SQLite", "postgresql": "PostgreSQL", "mariadb": "MariaDB"}[self.kind]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def async_url(url: str) -> str:
    """The URL as SQLAlchemy's async engine wants it (the CLI accepts the plain one)."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    if url.startswith("mysql+asyncmy://"):
        return url
    return "postgresql+asyncpg://" + url.removeprefix("postgresql://")


def database_url(server_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(server_url).set(database=database).render_as_string(hide_password=False)


async def postgres_admin(admin_url: str, statements: list[str]) -> None:
    import asyncpg

    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


# The suite -------------------------------------------------------------------------------------


class Suite:
    """Builds the data a metric needs (once), measures, and collects table rows."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.cores = os.cpu_count() or 1
        self.sizes = sizes_for(args.quick, args.users, self.cores)
        self.rows: list[Row] = []
        self.groups: list[int] = []  # the metric of each row, to print them grouped
        self.notes: list[str] = []
        self.started = time.perf_counter()
        self.env = timing.clean_env()
        self.python = sys.executable
        self.usersctl = self._find_usersctl()
        self.postgres_databases: list[str] = []
        self.mariadb_databases: list[str] = []
        self.hashed_password = ""
        self.hash_cpu_seconds = 0.0
        self.hash_wall_seconds = 0.0
        self.bulk_hash_cpu_seconds = 0.0
        self.databases: list[Database] = [self._sqlite_databases()]
        if not args.sqlite_only:
            postgres = self._postgres_databases()
            if postgres is not None:
                self.databases.append(postgres)
        if args.mariadb:
            mariadb = self._mariadb_databases()
            if mariadb is not None:
                self.databases.append(mariadb)

    # Set-up ------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"[{elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        start = time.perf_counter()
        self.log(message + " ...")
        yield
        self.log(f"{message}: {time.perf_counter() - start:.1f} s")

    def _find_usersctl(self) -> str:
        beside = Path(self.python).with_name("usersctl")
        found = str(beside) if beside.exists() else shutil.which("usersctl")
        if not found:
            raise SystemExit("usersctl is not installed in this environment (pip install -e .)")
        return found

    def _sqlite_databases(self) -> Database:
        return Database(
            kind="sqlite",
            big=sqlite_url(self.work / "usersctl.db"),
            fastapi_users=sqlite_url(self.work / "fastapi_users.db"),
            small=sqlite_url(self.work / "small.db"),
            empty=sqlite_url(self.work / "empty.db"),
        )

    def _postgres_databases(self) -> Database | None:
        admin = self.args.postgres_url
        try:
            asyncio.run(postgres_admin(admin, ["SELECT 1"]))
        except Exception as exc:
            self.notes.append(f"PostgreSQL skipped: cannot connect to {admin} ({exc}).")
            self.log(self.notes[-1])
            return None
        return self._databases_on("postgresql", admin)

    def _mariadb_databases(self) -> Database | None:
        """MariaDB, only when named: ``usersctl_bench_*`` databases on that server."""
        server = self.args.mariadb
        if not server.startswith("mysql+asyncmy://"):
            raise SystemExit(f"--mariadb: a mysql+asyncmy:// URL, not {server}")
        try:
            ((version,),) = asyncio.run(build_data.mariadb_execute(server, ["SELECT VERSION()"]))
        except Exception as exc:
            self.notes.append(f"MariaDB skipped: cannot connect to {server} ({exc}).")
            self.log(self.notes[-1])
            return None
        self.notes.append(
            f"MariaDB {version} at {server}, asyncmy driving usersctl and the bare loops."
        )
        return self._databases_on("mariadb", server)

    def _databases_on(self, kind: str, server: str) -> Database:
        prefix = f"usersctl_bench_{os.getpid()}"
        big, fastapi_users, small, empty = (
            database_url(server, f"{prefix}_{role}")
            for role in ("big", "fastapi_users", "small", "empty")
        )
        return Database(kind, big, fastapi_users, small, empty)

    def _create_database(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        assert name and name.startswith("usersctl_bench_")
        if url.startswith("mysql"):
            create = f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            asyncio.run(build_data.mariadb_execute(self.args.mariadb, [create]))
            self.mariadb_databases.append(name)
        else:
            asyncio.run(postgres_admin(self.args.postgres_url, [f'CREATE DATABASE "{name}"']))
            self.postgres_databases.append(name)

    def drop_databases(self) -> None:
        """Drop every PostgreSQL and MariaDB database this run created."""
        names, self.postgres_databases = self.postgres_databases, []
        if names:
            statements = [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names]
            asyncio.run(postgres_admin(self.args.postgres_url, statements))
        names, self.mariadb_databases = self.mariadb_databases, []
        if names:
            statements = [f"DROP DATABASE IF EXISTS `{name}`" for name in names]
            asyncio.run(build_data.mariadb_execute(self.args.mariadb, statements))

    def usersctl_cmd(self, url: str, *args: str) -> list[str]:
        return [self.usersctl, "-d", url, *args]

    def run(self, argv: Sequence[str], **kwargs: Any) -> timing.Run:
        return timing.run_process(argv, env=self.env, cwd=self.work, **kwargs)

    def init_db(self, url: str) -> None:
        if url.startswith(("postgresql", "mysql")):
            self._create_database(url)
        self.run(self.usersctl_cmd(url, "init-db"))

    def measure_hashing(self) -> None:
        """One Argon2 hash at FastAPI Users' cost: CPU seconds and wall seconds, one at a time."""
        from fastapi_users.password import PasswordHelper

        helper = PasswordHelper()
        self.hashed_password = helper.hash("benchmark-password")
        samples = self.sizes.hash_samples
        cpu, wall = time.process_time(), time.perf_counter()
        for number in range(samples):
            helper.hash(f"benchmark-password-{number}")
        self.hash_cpu_seconds = (time.process_time() - cpu) / samples
        self.hash_wall_seconds = (time.perf_counter() - wall) / samples
        # usersctl's bulk hashing (what import-users runs), for the notes: CPU per hash.
        from usersctl.passwords import hash_many

        cpu = time.process_time()
        for _ in hash_many([f"bulk-password-{number}" for number in range(2 * samples)]):
            pass
        self.bulk_hash_cpu_seconds = (time.process_time() - cpu) / (2 * samples)

    def ensure(self, db: Database, part: str) -> None:
        """Build ``part`` of ``db`` ("big", "fastapi_users", "small", "empty") once."""
        if part in db.built:
            return
        if part in ("fastapi_users", "small"):
            self.ensure(db, "big")
        users = self.sizes.users
        if part == "big":
            with self.step(f"{db.label}: init-db and {count(users)} users"):
                self.init_db(db.big)
                if db.kind == "sqlite":
                    build_data.load_sqlite(sqlite_path(db.big), users, self.hashed_password)
                elif db.kind == "mariadb":
                    asyncio.run(build_data.load_mariadb(db.big, users, self.hashed_password))
                else:
                    asyncio.run(build_data.load_postgres(db.big, users, self.hashed_password))
        elif part == "fastapi_users":
            with self.step(f"{db.label}: FastAPI Users' create_all and the same users"):
                if db.kind != "sqlite":
                    self._create_database(db.fastapi_users)
                asyncio.run(lookups.create_fastapi_users_table(async_url(db.fastapi_users)))
                if db.kind == "sqlite":
                    build_data.copy_sqlite_users(sqlite_path(db.big), sqlite_path(db.fastapi_users))
                elif db.kind == "mariadb":
                    asyncio.run(build_data.copy_mariadb_users(db.big, db.fastapi_users))
                else:
                    asyncio.run(
                        build_data.copy_postgres_users(
                            db.big, db.fastapi_users, self.work / "copy.bin"
                        )
                    )
            self._check_schemas(db)
        elif part == "small":
            small = self.sizes.small_users
            with self.step(f"{db.label}: init-db and the first {count(small)} users"):
                self.init_db(db.small)
                if db.kind == "sqlite":
                    build_data.copy_sqlite_users(sqlite_path(db.big), sqlite_path(db.small), small)
                elif db.kind == "mariadb":
                    asyncio.run(build_data.copy_mariadb_users(db.big, db.small, small))
                else:
                    asyncio.run(
                        build_data.copy_postgres_users(
                            db.big, db.small, self.work / "copy.bin", small
                        )
                    )
        elif part == "empty":
            self.init_db(db.empty)
        db.built.add(part)

    def _schema(self, url: str) -> list[str]:
        if url.startswith("sqlite"):
            return build_data.sqlite_schema(sqlite_path(url))
        if url.startswith("mysql"):
            rows = asyncio.run(build_data.mariadb_execute(url, ["SHOW CREATE TABLE user"]))
            return [str(rows[0][1])]
        return asyncio.run(build_data.postgres_schema(url))

    def _check_schemas(self, db: Database) -> None:
        """The premise of the comparison: only usersctl's table has the lower(email) index. On
        MariaDB (no expression indexes) both have the same unique index on ``email``: what
        differs is the adapters' query, ``email = :x`` against ``lower(email) = lower(:x)``."""
        ours = " ".join(self._schema(db.big)).lower()
        theirs = " ".join(self._schema(db.fastapi_users)).lower()
        if db.kind == "mariadb":
            email_index = "unique key `ix_user_email` (`email`)"
            wrong = email_index not in ours or email_index not in theirs
        else:
            wrong = "lower(" not in ours or "lower(" in theirs
        if wrong:
            raise SystemExit(
                f"{db.label}: unexpected schemas\n  usersctl: {ours}\n  FastAPI Users: {theirs}"
            )

    def reset_empty(self, db: Database) -> None:
        """Empty the import target again (not timed)."""
        self.ensure(db, "empty")
        if db.kind == "sqlite":
            con = sqlite3.connect(sqlite_path(db.empty))
            with con:
                con.execute('DELETE FROM "user"')
            con.execute("VACUUM")
            con.close()
        elif db.kind == "mariadb":
            asyncio.run(build_data.mariadb_execute(db.empty, ["TRUNCATE TABLE user"]))
        else:
            asyncio.run(postgres_admin(db.empty, ['TRUNCATE "user"']))

    # Metrics -----------------------------------------------------------------------------------

    def lookup(self, db: Database) -> None:
        """(1) get_by_email: usersctl's adapter vs FastAPI Users' on its own table."""
        self.ensure(db, "fastapi_users")
        sizes = self.sizes
        rnd = random.Random(1)
        emails = [
            build_data.random_case(build_data.email_for(rnd.randrange(sizes.users)), rnd)
            for _ in range(max(sizes.fast_lookups * 4, 1000))
        ]
        # On MariaDB, FastAPI Users' lower(email) = lower(:x) scans the init-db table too.
        on_ours_lookups = sizes.slow_lookups if db.kind == "mariadb" else sizes.fast_lookups
        contestants = {
            "usersctl": lookups.Contestant(async_url(db.big), "usersctl", sizes.fast_lookups),
            "fastapi-users on init-db": lookups.Contestant(
                async_url(db.big), "fastapi-users", on_ours_lookups
            ),
            "fastapi-users": lookups.Contestant(
                async_url(db.fastapi_users), "fastapi-users", sizes.slow_lookups
            ),
        }
        with self.step(f"{db.label}: get_by_email, three adapters in turn"):
            results = asyncio.run(
                lookups.time_lookups(contestants, emails, budget_seconds=sizes.lookup_seconds)
            )
        ours, theirs = results["usersctl"], results["fastapi-users"]
        on_ours = results["fastapi-users on init-db"]
        detail = f" (median of {on_ours.count})" if db.kind == "mariadb" else ""
        ratio = theirs.median / ours.median
        self.rows.append(
            Row(
                f"get_by_email, {count(sizes.users)} users (median of {ours.count} / {theirs.count})",
                db.label,
                seconds(ours.median),
                f"{seconds(theirs.median)} FastAPI Users",
                f"{ratio:,.0f}x faster (>= 100x)",
                verdict(ratio >= 100),
            )
        )
        self.rows.append(
            Row(
                f"  FastAPI Users' adapter on the init-db table{detail}",
                db.label,
                seconds(on_ours.median),
                f"{seconds(theirs.median)} FastAPI Users",
                f"{theirs.median / on_ours.median:,.0f}x faster (info)",
                "info",
            )
        )
        if db.kind == "mariadb":
            bare = asyncio.run(lookups.time_bare_mariadb_lookups(db.big, emails, ours.count))
            self.rows.append(
                Row(
                    f"  bare asyncmy loop, email = %s (median of {bare.count})",
                    db.label,
                    seconds(ours.median),
                    f"{seconds(bare.median)} bare asyncmy loop",
                    f"{bare.median / ours.median:.2f}x bare (info)",
                    "info",
                )
            )

    def import_hashed(self, db: Database) -> None:
        """(2) import-users of rows with hashed_password, whole process; on MariaDB against a bare
        asyncmy loop (``bare_import.py``) taking turns with it."""
        rows = self.sizes.import_rows
        target = 50_000 if db.kind == "sqlite" else 30_000
        bare = [self.python, str(HERE / "bare_import.py"), db.empty]
        for full_rows, label in ((True, "id, email, hash, flags"), (False, "email + hash")):
            path = self.work / f"import-{'full' if full_rows else 'short'}.jsonl"
            if not path.exists():
                build_data.write_import_file(
                    path, rows, self.hashed_password, full_rows=full_rows, prefix="imported."
                )
            times, bare_times = [], []
            with self.step(f"{db.label}: import-users, {count(rows)} rows ({label})"):
                for _ in range(self.sizes.import_runs):
                    self.reset_empty(db)
                    run = self.run(
                        self.usersctl_cmd(db.empty, "import-users", str(path), "-o", "json")
                    )
                    self._check_created(run, rows)
                    times.append(run.seconds)
                    if db.kind == "mariadb":
                        self.reset_empty(db)
                        bare_times.append(self.run([*bare, str(path)]).seconds)
                        count_rows = build_data.mariadb_execute(
                            db.empty, ["SELECT COUNT(*) FROM user"]
                        )
                        ((written,),) = asyncio.run(count_rows)
                        if written != rows:
                            raise SystemExit(f"bare_import.py wrote {written} rows, not {rows}")
            value = rows / statistics.median(times)
            if bare_times:
                bare_value = rows / statistics.median(bare_times)
                reference, ratio = f"{rate(bare_value)} bare asyncmy loop", value / bare_value
                goal, ok = f">= 0.70x bare ({ratio:.2f}x)", ratio >= 0.7
            else:
                reference, goal, ok = "", f">= {count(target)} rows/s", value >= target
            self.rows.append(
                Row(
                    f"import-users {count(rows)} hashed rows ({label}), median of {len(times)}",
                    db.label,
                    rate(value),
                    reference,
                    goal,
                    verdict(ok),
                )
            )

    def _check_created(self, run: timing.Run, expected: int) -> None:
        summary = json.loads(run.stdout)
        if summary.get("created") != expected:
            raise SystemExit(f"import-users created {summary.get('created')}, not {expected}")

    def import_plaintext(self, db: Database) -> None:
        """(3) import-users with plaintext passwords, against what the cores can hash."""
        rows = self.sizes.plaintext_rows
        path = self.work / "import-plaintext.jsonl"
        if not path.exists():
            build_data.write_plaintext_file(path, rows, prefix="plain.")
        self.reset_empty(db)
        with self.step(f"{db.label}: import-users, {rows} plaintext passwords"):
            run = self.run(self.usersctl_cmd(db.empty, "import-users", str(path), "-o", "json"))
        self._check_created(run, rows)
        value = rows / run.seconds
        bound = self.cores / self.hash_cpu_seconds
        self.rows.append(
            Row(
                f"import-users {rows} plaintext passwords (whole process)",
                db.label,
                rate(value, "passwords"),
                f"bound {rate(bound, 'passwords')}",
                f"{value / bound:.0%} of bound (>= 90%)",
                verdict(value >= 0.9 * bound),
            )
        )

    def hashing_rows(self) -> None:
        bound = self.cores / self.hash_cpu_seconds
        loop = 1 / self.hash_wall_seconds
        self.rows.append(
            Row(
                f"  a plain hashing loop (one hash: {self.hash_cpu_seconds:.3f} CPU s"
                f" in {self.hash_wall_seconds:.3f} s)",
                "",
                rate(loop, "passwords"),
                f"bound {rate(bound, 'passwords')}",
                f"{loop / bound:.0%} of bound (info)",
                "info",
            )
        )
        self.rows.append(
            Row(
                "  usersctl's hash_many, as import-users hashes: CPU s per hash",
                "",
                f"{self.bulk_hash_cpu_seconds:.3f} CPU s",
                f"{self.hash_cpu_seconds:.3f} CPU s",
                f"{self.bulk_hash_cpu_seconds / self.hash_cpu_seconds:.2f}x (info)",
                "info",
            )
        )

    def export(self, db: Database) -> None:
        """(4) export-users -o jsonl: rows/s in list-users' order (the default) against a bare loop
        in the same order, and with --unordered against a bare loop without an order; peak memory
        at two table sizes."""
        self.ensure(db, "small")
        sizes = self.sizes
        target = 200_000 if db.kind == "sqlite" else 150_000
        bare_target = str(sqlite_path(db.big)) if db.kind == "sqlite" else db.big
        bare_small = str(sqlite_path(db.small)) if db.kind == "sqlite" else db.small
        driver = {"sqlite": "sqlite3", "postgresql": "asyncpg", "mariadb": "asyncmy"}[db.kind]
        bare_label = f"bare {driver} loop"
        # MariaDB: usersctl renders the rows in Python there, as the bare loop does.
        fraction = 0.7 if db.kind == "mariadb" else 1.0

        def ours(url: str, out: Path | bool, *options: str) -> timing.Run:
            argv = self.usersctl_cmd(url, "export-users", "-", "-o", "jsonl", *options)
            return self.run(argv, stdout=out, memory=True)

        def bare(target_: str, out: Path | bool, *options: str) -> timing.Run:
            argv = [self.python, str(HERE / "bare_export.py"), db.kind, target_, *options]
            return self.run(argv, stdout=out, memory=True)

        with self.step(f"{db.label}: export-users, {count(sizes.small_users)} users"):
            small_out, bare_out = self.work / "export-small.jsonl", self.work / "bare-small.jsonl"
            small_runs = [ours(db.small, small_out) for _ in range(sizes.export_runs)]
            bare_small_run = bare(bare_small, bare_out, "--ordered")
            self._compare_exports(db, small_out, bare_out, ordered=True)
            small_out.unlink()
            bare_out.unlink()
        with self.step(f"{db.label}: export-users, {count(sizes.users)} users, in order"):
            big_runs = [ours(db.big, False) for _ in range(sizes.export_runs)]
            bare_big_run = bare(bare_target, False, "--ordered")
        with self.step(f"{db.label}: export-users --unordered, {count(sizes.users)} users"):
            loose_runs = [ours(db.big, False, "--unordered") for _ in range(sizes.export_runs)]
            bare_loose_run = bare(bare_target, False)
        big_seconds = statistics.median(run.seconds for run in big_runs)
        loose_seconds = statistics.median(run.seconds for run in loose_runs)
        small_seconds = statistics.median(run.seconds for run in small_runs)
        big_rss = max(rss(run) for run in big_runs + loose_runs)
        small_rss = max(rss(run) for run in small_runs)
        value = sizes.users / big_seconds
        bare_value = sizes.users / bare_big_run.seconds
        loose_value = sizes.users / loose_seconds
        bare_loose_value = sizes.users / bare_loose_run.seconds
        loose_ratio = loose_value / bare_loose_value
        if db.kind == "mariadb":
            loose_target, loose_ok = f">= 0.70x bare ({loose_ratio:.2f}x)", loose_ratio >= 0.7
        else:
            loose_target = f">= {count(target)} rows/s ({loose_ratio:.2f}x bare)"
            loose_ok = loose_value >= target
        self.rows += [
            Row(
                f"export-users -o jsonl, {count(sizes.users)} users, in order",
                db.label,
                rate(value),
                f"{rate(bare_value)} {bare_label}, same order",
                f">= {fraction:.2f}x bare ({value / bare_value:.2f}x)",
                verdict(value >= fraction * bare_value),
            ),
            Row(
                f"export-users -o jsonl --unordered, {count(sizes.users)} users",
                db.label,
                rate(loose_value),
                f"{rate(bare_loose_value)} {bare_label}, no order",
                loose_target,
                verdict(loose_ok),
            ),
            Row(
                f"  export-users -o jsonl, {count(sizes.small_users)} users, in order",
                db.label,
                rate(sizes.small_users / small_seconds),
                f"{rate(sizes.small_users / bare_small_run.seconds)} {bare_label}, same order",
                "(info)",
                "info",
            ),
            Row(
                f"export-users peak RSS, {count(sizes.users)} users",
                db.label,
                megabytes(big_rss),
                f"{megabytes(max(rss(bare_big_run), rss(bare_loose_run)))} {bare_label}",
                "< 150 MB",
                verdict(big_rss < 150),
            ),
            Row(
                f"export-users peak RSS, {count(sizes.small_users)} -> {count(sizes.users)} users",
                db.label,
                f"{megabytes(small_rss)} -> {megabytes(big_rss)}",
                f"{megabytes(rss(bare_small_run))} -> {megabytes(rss(bare_big_run))}",
                f"{big_rss - small_rss:+.1f} MB (within 20 MB)",
                verdict(abs(big_rss - small_rss) <= 20),
            ),
        ]

    def _compare_exports(self, db: Database, ours: Path, bare: Path, *, ordered: bool) -> None:
        """usersctl must export the same users, with the same values, as the bare loop (and, when
        both are ``ordered``, in the same order)."""
        with ours.open() as a, bare.open() as b:
            mine, reference = a.read().splitlines(), b.read().splitlines()
        if ordered:
            ids, expected_ids = ([json.loads(line)["id"] for line in x] for x in (mine, reference))
            if ids != expected_ids:
                self.notes.append(f"{db.label}: export-users' order differs from the bare loop's")
        if sorted(mine) == sorted(reference):
            return
        parsed = sorted(mine, key=lambda line: json.loads(line)["id"])
        expected = sorted(reference, key=lambda line: json.loads(line)["id"])
        if [json.loads(line) for line in parsed] == [json.loads(line) for line in expected]:
            self.notes.append(
                f"{db.label}: export-users writes the same JSON values as the bare loop, but"
                f" spaced differently: {parsed[0]}"
            )
            return
        first = next(
            (f"{x} != {y}" for x, y in zip(parsed, expected, strict=False) if x != y),
            f"{len(mine)} lines != {len(reference)} lines",
        )
        self.notes.append(f"{db.label}: export-users output differs from the bare loop: {first}")

    def list_users(self, db: Database) -> None:
        """(5) list-users --limit 50, first page and a deep one, whole process."""
        self.ensure(db, "big")
        where = sqlite_path(db.big) if db.kind == "sqlite" else db.big
        late = asyncio.run(build_data.email_at_offset_from_end(where, 1000))
        commands: dict[str, Callable[[int], Sequence[str]]] = {
            "first page": lambda _: self.usersctl_cmd(db.big, "list-users", "--limit", "50"),
            "deep page": lambda _: self.usersctl_cmd(
                db.big, "list-users", "--limit", "50", "--after", late
            ),
        }
        with self.step(f"{db.label}: list-users"):
            medians = timing.median_runs(
                commands, self.sizes.list_runs, env=self.env, cwd=self.work
            )
        for name, value in medians.items():
            detail = (
                "" if name == "first page" else f" (--after the {count(self.sizes.users - 1000)}th)"
            )
            self.rows.append(
                Row(
                    f"list-users --limit 50, {name}{detail} (median of {self.sizes.list_runs})",
                    db.label,
                    seconds(value),
                    "",
                    "< 0.5 s",
                    verdict(value < 0.5),
                )
            )

    def startup(self) -> None:
        """(6) whole-process start-up: --help, show-user, create-user, against references."""
        db = self.databases[0]
        self.ensure(db, "big")
        runs = self.sizes.startup_runs
        typer_app = str(HERE / "minimal_typer_app.py")
        plain_env = {**self.env, "MINIMAL_TYPER_HELP": "plain"}
        with self.step(f"start-up: --help, {runs} runs each"):
            helps = timing.median_runs(
                {
                    "usersctl": lambda _: [self.usersctl, "--help"],
                    "rich": lambda _: [self.python, typer_app, "--help"],
                },
                runs,
                env=self.env,
                cwd=self.work,
            )
            helps |= timing.median_runs(
                {"plain": lambda _: [self.python, typer_app, "--help"]},
                runs,
                env=plain_env,
                cwd=self.work,
            )
        self.rows.append(
            Row(
                f"start-up: usersctl --help (median of {runs})",
                "",
                seconds(helps["usersctl"]),
                f"minimal Typer app: Rich {seconds(helps['rich'])}, plain {seconds(helps['plain'])}",
                "< 100 ms",
                verdict(helps["usersctl"] < 0.1),
            )
        )

        rnd = random.Random(2)
        email = build_data.random_case(build_data.email_for(rnd.randrange(self.sizes.users)), rnd)
        stack = "import typer, sqlalchemy.ext.asyncio, sqlalchemy.orm, aiosqlite"
        with self.step(f"start-up: show-user, {runs} runs each"):
            shows = timing.median_runs(
                {
                    "usersctl": lambda _: self.usersctl_cmd(db.big, "show-user", email),
                    "imports": lambda _: [self.python, "-c", stack],
                },
                runs,
                env=self.env,
                cwd=self.work,
            )
        ratio = shows["usersctl"] / shows["imports"]
        self.rows.append(
            Row(
                f"start-up: usersctl show-user (median of {runs})",
                db.label,
                seconds(shows["usersctl"]),
                f"{seconds(shows['imports'])} importing its stack",
                f"{ratio:.2f}x (<= 1.15x)",
                verdict(ratio <= 1.15),
            )
        )

        create_db = self.work / "create.db"
        cookbook_db = self.work / "cookbook.db"
        self.run(self.usersctl_cmd(sqlite_url(create_db), "init-db"))
        cookbook = [self.python, str(HERE / "fastapi_users_create_superuser.py")]
        cookbook_url = async_url(sqlite_url(cookbook_db))
        self.run([*cookbook, cookbook_url, "--create-tables"])
        with self.step(f"start-up: create-user, {runs} runs each"):
            creates = timing.median_runs(
                {
                    "usersctl": lambda n: self.usersctl_cmd(
                        sqlite_url(create_db),
                        "create-user",
                        f"admin{n}@example.com",
                        "--superuser",
                        "--generate-password",
                    ),
                    "cookbook": lambda n: [
                        *cookbook,
                        cookbook_url,
                        f"admin{n}@example.com",
                        f"correct-horse-{n}",
                    ],
                },
                runs,
                env=self.env,
                cwd=self.work,
            )
        ratio = creates["usersctl"] / creates["cookbook"]
        self.rows.append(
            Row(
                f"start-up: usersctl create-user --generate-password (median of {runs})",
                db.label,
                seconds(creates["usersctl"]),
                f"{seconds(creates['cookbook'])} FastAPI Users cookbook",
                f"{ratio:.2f}x (<= 0.5x)",
                verdict(ratio <= 0.5),
            )
        )

    def compile_usersctl(self) -> None:
        """Write usersctl's bytecode, as ``pip install`` does for everything it installs.

        An editable install leaves that to the first run, which cannot write it where
        PYTHONDONTWRITEBYTECODE is set (some CI images set it): every run would then compile
        usersctl's sources again, and only usersctl's, since its dependencies were installed
        compiled. usersctl is measured as installed."""
        import usersctl

        package = Path(usersctl.__file__).parent
        self.run([self.python, "-m", "compileall", "-q", str(package)])
        self.notes.append(f"usersctl's bytecode was compiled first ({package}), as pip does.")

    # The whole run -----------------------------------------------------------------------------

    def measure(self, selected: set[str]) -> None:
        """Run the selected metrics: each database in turn, then start-up (SQLite)."""
        self.compile_usersctl()
        with self.step("one Argon2 hash at FastAPI Users' cost"):
            self.measure_hashing()
        per_database: dict[str, Callable[[Database], None]] = {
            "lookup": self.lookup,
            "import": self.import_hashed,
            "plaintext": self.import_plaintext,
            "export": self.export,
            "list": self.list_users,
        }
        for db in self.databases:
            for metric, measure in per_database.items():
                if metric in selected:
                    self._grouped(metric, lambda measure=measure, db=db: measure(db))
            if db.kind != "sqlite":
                self.drop_databases()  # free the disk before the next part
        if "plaintext" in selected:
            self._grouped("plaintext", self.hashing_rows)
        if "startup" in selected:
            self._grouped("startup", self.startup)

    def _grouped(self, metric: str, measure: Callable[[], None]) -> None:
        first = len(self.rows)
        measure()
        self.groups += [METRICS.index(metric)] * (len(self.rows) - first)

    def table(self) -> list[Row]:
        """The rows, each metric's together (SQLite, then PostgreSQL)."""
        order = sorted(range(len(self.rows)), key=lambda index: self.groups[index])
        return [self.rows[index] for index in order]


def versions() -> str:
    from importlib.metadata import version

    parts = [
        f"usersctl {version('usersctl')}",
        f"fastapi-users {version('fastapi-users')}",
        f"fastapi-users-db-sqlalchemy {version('fastapi-users-db-sqlalchemy')}",
        f"SQLAlchemy {version('sqlalchemy')}",
        f"Python {platform.python_version()}",
        f"SQLite {sqlite3.sqlite_version}",
    ]
    return ", ".join(parts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke test under a minute"
    )
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--users",
        type=int,
        metavar="N",
        help="users in the big table (default 1,000,000; 20,000 with --quick)",
    )
    parser.add_argument(
        "--only",
        metavar="METRICS",
        help=f"comma-separated subset of {','.join(METRICS)} (default: all)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("USERSCTL_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="a PostgreSQL server's maintenance database; usersctl_bench_* databases are created"
        " there and dropped at the end (default: $USERSCTL_BENCH_POSTGRES_URL or %(default)s)",
    )
    parser.add_argument(
        "--mariadb",
        metavar="URL",
        default=os.environ.get("USERSCTL_BENCH_MARIADB_URL"),
        help="also measure MariaDB on this server (mysql+asyncmy://root@127.0.0.1:3306/);"
        " usersctl_bench_* databases are created there and dropped at the end (default:"
        " $USERSCTL_BENCH_MARIADB_URL; without either, no MariaDB)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (SQLite files)"
    )
    args = parser.parse_args(argv)
    selected = set(args.only.split(",")) if args.only else set(METRICS)
    unknown = selected - set(METRICS)
    if unknown:
        parser.error(
            f"unknown metric(s) {', '.join(sorted(unknown))}; choose from {', '.join(METRICS)}"
        )
    args.selected = selected
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="usersctl-bench-"))
    load_before = os.getloadavg()
    started = time.perf_counter()
    suite: Suite | None = None
    try:
        suite = Suite(args, work)
        suite.measure(args.selected)
    finally:
        if suite is not None:
            suite.drop_databases()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    sizes = suite.sizes
    print()
    print(
        f"usersctl benchmarks ({'--quick' if args.quick else 'full'} run), {time.strftime('%Y-%m-%d %H:%M')}"
    )
    print(
        f"{suite.cores} cores, load average {load_before[0]:.2f} at start and {load_after[0]:.2f} at end;"
        f" {versions()}"
    )
    print(
        f"{count(sizes.users)} users (export also at {count(sizes.small_users)}), imports of"
        f" {count(sizes.import_rows)} rows, {sizes.plaintext_rows} plaintext passwords;"
        f" total {time.perf_counter() - started:.0f} s"
    )
    print()
    print_table(suite.table())
    if args.quick or sizes.users != 1_000_000:
        suite.notes.append(
            "Sizes differ from the issue's (1,000,000 users, imports of 100,000 rows): verdicts on"
            " size-dependent targets (get_by_email ratio, export speed and memory) are indicative."
        )
    for note in suite.notes:
        print(f"Note: {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
