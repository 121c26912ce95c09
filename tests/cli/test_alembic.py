"""Alembic-managed databases: usersctl leaves their schema to the app's migrations.

Each test builds an app project in its temporary folder with the real Alembic (``alembic init -t
async``: its env.py runs the migrations on the test's own async URL, aiosqlite or asyncpg, so no
sync driver is needed), a model of its own (``tests/e2e/alembic_app_model.py``: table ``users``,
integer ids) and a first migration made by ``alembic revision --autogenerate`` (made once per
kind of database and test process, then copied: see ``project``). usersctl runs
through its installed entry point, in that folder, with ``--model app.models:User``.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy.engine import make_url

from harness import execute as harness_execute
from harness import is_mysql, query

if TYPE_CHECKING:
    from tests.cli.conftest import Usersctl

#: On MySQL/MariaDB, FastAPI Users' own unique index on email, in a _ci collation, is the index
#: usersctl wants, so a project built from its model never lacks it: the tests of an app that
#: lacks it run on SQLite and PostgreSQL, and the last test here builds that app on MariaDB.
LACKING = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)

MODEL = Path(__file__).resolve().parents[1] / "e2e" / "alembic_app_model.py"
ALEMBIC = str(Path(sys.executable).with_name("alembic"))
INDEX = "ix_users_email_lower"
MODEL_OPTION = ("--model", "app.models:User")


@dataclass
class AlembicProject:
    """An app's folder with its models and its Alembic migrations, on the test database."""

    folder: Path
    url: str

    def alembic(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real ``alembic`` command in the project."""
        return subprocess.run(
            [ALEMBIC, *args], cwd=self.folder, capture_output=True, text=True, timeout=120
        )

    def alembic_ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.alembic(*args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    @property
    def model_file(self) -> Path:
        return self.folder / "app" / "models.py"

    def new_revision(self, message: str) -> Path:
        """``alembic revision -m message``: the new, empty revision file."""
        before = set((self.folder / "migrations" / "versions").glob("*.py"))
        self.alembic_ok("revision", "-m", message)
        (created,) = set((self.folder / "migrations" / "versions").glob("*.py")) - before
        return created

    def follow_advice(self, source: str, line: str, migration: str, message: str) -> None:
        """Do what usersctl advised: ``line`` (an ``Index(...)``) into the model's
        ``__table_args__`` (``source`` is the model's text), and ``migration`` (the functions
        ``init-db --alembic`` printed) as a new revision, then ``alembic upgrade head``."""
        assert "    __table_args__ = ()\n" in source
        source = source.replace("    __table_args__ = ()\n", f"    __table_args__ = ({line},)\n")
        names = "Index, Integer, String, text" if "text(" in line else "Index, Integer, String"
        source = source.replace(
            "from sqlalchemy import Integer, String\n", f"from sqlalchemy import {names}\n"
        )
        self.model_file.write_text(source)
        revision = self.new_revision(message)
        template = revision.read_text()
        revision.write_text(template[: template.index("def upgrade()")] + migration)
        self.alembic_ok("upgrade", "head")


def index_definition(url: str, name: str) -> str | None:
    """The SQL that defines the index ``name``, read from the database's catalogue; None if
    there is no such index."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split(":///", 1)[1]) as connection:
            row = connection.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
            ).fetchone()
        return None if row is None else str(row[0])
    if is_mysql(url):
        parts = query(
            url,
            "SELECT NON_UNIQUE AS non_unique, TABLE_NAME AS tab, COLUMN_NAME AS col "
            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() "
            "AND INDEX_NAME = :name ORDER BY SEQ_IN_INDEX",
            name=name,
        )
        if not parts:
            return None
        unique = "UNIQUE " if parts[0]["non_unique"] == 0 else ""
        columns = ", ".join(part["col"] for part in parts)
        return f"CREATE {unique}INDEX {name} ON {parts[0]['tab']} ({columns})"

    async def read() -> str | None:
        import asyncpg
        from sqlalchemy.engine import make_url

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        try:
            found = await connection.fetchval(
                "SELECT indexdef FROM pg_indexes WHERE indexname = $1", name
            )
        finally:
            await connection.close()
        return None if found is None else str(found)

    return asyncio.run(read())


def execute(url: str, sql: str) -> None:
    """Run one statement on the test database, outside usersctl."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.split(":///", 1)[1]) as connection:
            connection.execute(sql)
        return
    if is_mysql(url):
        harness_execute(url, sql)
        return

    async def run() -> None:
        import asyncpg
        from sqlalchemy.engine import make_url

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def doctor_passes_the_indexes(usersctl: Usersctl) -> None:
    """doctor, with the app's model, passes both the email index and the model's indexes."""
    doctor = usersctl(*MODEL_OPTION, "doctor", "-o", "json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    checks = {check["check"]: check for check in json.loads(doctor.stdout)["checks"]}
    assert checks["email index"]["status"] == "ok"
    assert checks["model indexes"]["status"] == "ok"


#: The migrations folder and alembic.ini that ``alembic init`` and the first ``revision
#: --autogenerate`` made, per kind of database, once per test process: later tests copy them.
_FIRST_MIGRATIONS: dict[str, Path] = {}


def _point_at(ini: Path, url: str) -> None:
    ini.write_text(
        re.sub(r"(?m)^sqlalchemy\.url = .*$", f"sqlalchemy.url = {url}", ini.read_text())
    )


@pytest.fixture
def project(
    database_url: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AlembicProject:
    """An app whose ``users`` table its first migration made, upgraded to head.

    The first test on a kind of database runs ``alembic init -t async`` and ``alembic revision
    --autogenerate`` against its empty database; the others start from a copy of what those
    made (the same files), and each runs ``alembic upgrade head`` on its own database."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(MODEL.read_text())
    made = AlembicProject(tmp_path, database_url)
    ini = tmp_path / "alembic.ini"
    kind = make_url(database_url).get_backend_name()
    first = _FIRST_MIGRATIONS.get(kind)
    if first is None:
        made.alembic_ok("init", "-t", "async", "migrations")
        _point_at(ini, database_url)
        env = tmp_path / "migrations" / "env.py"
        env.write_text(
            env.read_text().replace(
                "target_metadata = None",
                "from app.models import Base\n\ntarget_metadata = Base.metadata",
            )
        )
        made.alembic_ok("revision", "--autogenerate", "-m", "users")
        first = _FIRST_MIGRATIONS[kind] = tmp_path_factory.mktemp(f"alembic-{kind}")
        shutil.copytree(tmp_path / "migrations", first / "migrations")
        shutil.copy(ini, first / "alembic.ini")
    else:
        shutil.copytree(first / "migrations", tmp_path / "migrations")
        shutil.copy(first / "alembic.ini", ini)
        _point_at(ini, database_url)
    made.alembic_ok("upgrade", "head")
    return made


def model_line(advice: str) -> str:
    """The ``Index(...)`` line of usersctl's advice, without its trailing comma."""
    (line,) = [line.strip() for line in advice.splitlines() if line.strip().startswith("Index(")]
    return line.rstrip(",")


@LACKING
def test_init_db_and_doctor_leave_the_index_to_the_apps_migrations_whose_advice_works(
    project: AlembicProject, usersctl: Usersctl
) -> None:
    # The app's migrations made the table; Alembic finds nothing to change
    project.alembic_ok("check")

    # init-db: the tables exist, so exit 0; the index is the app's to declare, and is not added
    init = usersctl(*MODEL_OPTION, "init-db")
    assert init.returncode == 0, init.stderr
    assert init.stdout == ""
    assert "managed by Alembic" in init.stderr
    assert index_definition(project.url, INDEX) is None
    project.alembic_ok("check")  # nothing for autogenerate to drop

    # doctor --fix: the check still fails (exit 6), the index is still not added
    fix = usersctl(*MODEL_OPTION, "doctor", "--fix", "-o", "json")
    assert fix.returncode == 6, fix.stdout + fix.stderr
    report = json.loads(fix.stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["email index"]["status"] == "fail"
    assert "managed by Alembic" in checks["email index"]["detail"]
    assert report["index_advice"]["index"] == INDEX
    assert report["index_advice"]["in_database"] is False
    assert index_definition(project.url, INDEX) is None

    # init-db --alembic prints the same migration, without connecting
    printed = usersctl(*MODEL_OPTION, "init-db", "--alembic")
    assert printed.returncode == 0, printed.stderr
    migration = printed.stdout
    assert "op.create_index(" in migration and "op.drop_index(" in migration
    assert 'sa.text("lower(email)")' in migration and "unique=True" in migration
    concurrently = project.url.startswith("postgresql")
    assert ("postgresql_concurrently=True" in migration) is concurrently
    assert ("autocommit_block()" in migration) is concurrently
    for advice in (init.stderr, fix.stderr, report["index_advice"]["migration"]):
        assert migration in advice
    line = model_line(init.stderr)
    assert line == model_line(printed.stderr) == report["index_advice"]["model"]

    # Follow the advice: the Index in the model's __table_args__, the migration as a new
    # revision; alembic upgrade head builds the index, and the model and the database agree
    project.follow_advice(
        project.model_file.read_text(), line, migration, "unique lower(email) index"
    )
    built = index_definition(project.url, INDEX)
    assert built is not None
    assert "unique index" in built.lower()
    assert "loweremail" in re.sub(r'[\s"()]|::text', "", built.lower())  # on lower(email)
    project.alembic_ok("check")
    doctor_passes_the_indexes(usersctl)
    again = usersctl(*MODEL_OPTION, "init-db")
    assert again.returncode == 0, again.stderr
    assert "Nothing to do" in again.stderr

    # The migration's downgrade drops it again
    project.alembic_ok("downgrade", "-1")
    assert index_definition(project.url, INDEX) is None


@LACKING
def test_apply_anyway_adds_the_index_and_doctor_says_the_model_lacks_it(
    project: AlembicProject, usersctl: Usersctl
) -> None:
    # init-db --apply-anyway adds the index all the same, and says that the model must declare it
    applied = usersctl(*MODEL_OPTION, "init-db", "--apply-anyway")
    assert applied.returncode == 0, applied.stderr
    assert f"Created index {INDEX}" in applied.stderr
    assert "the model must declare" in applied.stderr
    assert model_line(applied.stderr) == f'Index("{INDEX}", text("lower(email)"), unique=True)'
    assert index_definition(project.url, INDEX) is not None
    if project.url.startswith("postgresql"):
        # What the advice avoids: the app's autogenerate would drop the index again. (SQLite's
        # expression indexes are not reflected, so Alembic cannot see it there.)
        check = project.alembic("check")
        assert check.returncode != 0
        assert "remove_index" in check.stdout + check.stderr

    # doctor --model: an index in the database and not in the model fails under Alembic
    found = usersctl(*MODEL_OPTION, "doctor", "-o", "json")
    assert found.returncode == 6, found.stdout + found.stderr
    report = json.loads(found.stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["email index"]["status"] == "ok"
    assert checks["model indexes"]["status"] == "fail"
    assert f"in the database but not in the model: {INDEX}" in checks["model indexes"]["detail"]
    assert "would drop" in checks["model indexes"]["detail"]
    assert report["index_advice"]["in_database"] is True
    assert model_line(found.stderr) == report["index_advice"]["model"]

    # ... and a model index that the database lacks
    execute(project.url, "DROP INDEX ix_users_email")
    missing = usersctl(*MODEL_OPTION, "doctor", "-o", "json")
    assert missing.returncode == 6, missing.stdout + missing.stderr
    checks = {check["check"]: check for check in json.loads(missing.stdout)["checks"]}
    detail = checks["model indexes"]["detail"]
    assert "in the model but not in the database: ix_users_email " in detail
    assert f"in the database but not in the model: {INDEX}" in detail


@LACKING
def test_doctor_fix_apply_anyway_builds_the_index(
    project: AlembicProject, usersctl: Usersctl
) -> None:
    refused = usersctl.fails(2, *MODEL_OPTION, "doctor", "--apply-anyway")
    assert "--fix" in refused

    fixed = usersctl(*MODEL_OPTION, "doctor", "--fix", "--apply-anyway", "-o", "json")
    report = json.loads(fixed.stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["email index"]["status"] == "fixed"
    built = index_definition(project.url, INDEX)
    assert built is not None and "unique index" in built.lower()
    # The index is in, but the model does not declare it: still a failed check, and the advice
    assert fixed.returncode == 6, fixed.stdout + fixed.stderr
    assert checks["model indexes"]["status"] == "fail"
    assert "the model must declare" in fixed.stderr
    assert report["index_advice"]["in_database"] is True


@LACKING
def test_init_db_on_an_alembic_database_without_the_tables_creates_nothing(
    database_url: str, usersctl: Usersctl
) -> None:
    execute(database_url, "CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    message = usersctl.fails(5, "init-db")
    assert "managed by Alembic" in message
    assert "lacks the table(s) user:" in message
    assert index_definition(database_url, "ix_user_email_lower") is None
    # --apply-anyway creates them all the same
    applied = usersctl("init-db", "--apply-anyway")
    assert applied.returncode == 0, applied.stderr
    assert "Created table user" in applied.stderr
    assert "the model must declare" in applied.stderr
    assert index_definition(database_url, "ix_user_email_lower") is not None
    # Without the index, the built-in user table gets the advice too, and no index
    execute(database_url, "DROP INDEX ix_user_email_lower")
    advised = usersctl("init-db")
    assert advised.returncode == 0, advised.stderr
    assert 'Index("ix_user_email_lower", text("lower(email)"), unique=True)' in advised.stderr
    assert 'op.create_index("ix_user_email_lower","user",' in re.sub(r"\s", "", advised.stderr)
    fix = usersctl("doctor", "--fix")
    assert fix.returncode == 6, fix.stdout + fix.stderr
    assert index_definition(database_url, "ix_user_email_lower") is None


def test_init_db_alembic_prints_the_migration_without_connecting(
    usersctl_anywhere: Usersctl, tmp_path: Path
) -> None:
    # Nothing listens on port 1, and the SQLite file's folder does not exist
    postgres = usersctl_anywhere.ok(
        "-d", "postgresql://app@127.0.0.1:1/app", "init-db", "--alembic"
    )
    assert postgres.stdout == (
        "def upgrade() -> None:\n"
        "    with op.get_context().autocommit_block():\n"
        "        op.create_index(\n"
        '            "ix_user_email_lower",\n'
        '            "user",\n'
        '            [sa.text("lower(email)")],\n'
        "            unique=True,\n"
        "            postgresql_concurrently=True,\n"
        "        )\n"
        "\n\n"
        "def downgrade() -> None:\n"
        "    with op.get_context().autocommit_block():\n"
        '        op.drop_index("ix_user_email_lower", table_name="user", postgresql_concurrently=True)\n'
    )
    assert 'Index("ix_user_email_lower", text("lower(email)"), unique=True)' in postgres.stderr
    sqlite = usersctl_anywhere.ok("-d", "sqlite:///./no-such-folder/app.db", "init-db", "--alembic")
    assert "postgresql_concurrently" not in sqlite.stdout
    assert "autocommit_block" not in sqlite.stdout
    assert (
        'op.create_index("ix_user_email_lower", "user", [sa.text("lower(email)")], unique=True)'
        in sqlite.stdout
    )
    assert not (tmp_path / "no-such-folder").exists()
    # MariaDB has no expression indexes: the unique index there is on email, in its _ci collation
    mysql = usersctl_anywhere.ok("-d", "mysql://app@127.0.0.1:1/app", "init-db", "--alembic")
    assert 'op.create_index("ix_user_email_lower", "user", ["email"], unique=True)' in mysql.stdout
    assert "lower(" not in mysql.stdout + mysql.stderr
    assert 'Index("ix_user_email_lower", "email", unique=True)' in mysql.stderr
    assert "(from sqlalchemy import Index):" in mysql.stderr
    # The migration is valid Python, the kind Alembic's revision template takes
    compile(sqlite.stdout + postgres.stdout + mysql.stdout, "migration", "exec")

    conflicting = usersctl_anywhere.fails(2, "init-db", "--alembic", "--sql")
    assert "--alembic" in conflicting


@LACKING
def test_without_alembic_version_usersctl_adds_the_index_and_index_differences_are_warnings(
    project: AlembicProject, usersctl: Usersctl
) -> None:
    # The same tables, no longer under Alembic (as if made by the app's create_all)
    execute(project.url, "DROP TABLE alembic_version")
    init = usersctl(*MODEL_OPTION, "init-db")
    assert init.returncode == 0, init.stderr
    assert f"Created index {INDEX}" in init.stderr
    assert "Alembic" not in init.stderr
    assert index_definition(project.url, INDEX) is not None
    # usersctl's own index is not the model's, and nothing will drop it: no complaint
    clean = usersctl(*MODEL_OPTION, "doctor", "-o", "json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    assert "index_advice" not in report
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["model indexes"]["status"] == "ok"
    # Another index that the model lacks is worth knowing, not a failure
    execute(project.url, "CREATE INDEX ix_users_display_name ON users (display_name)")
    warned = usersctl(*MODEL_OPTION, "doctor", "-o", "json")
    assert warned.returncode == 0, warned.stdout + warned.stderr
    checks = {check["check"]: check for check in json.loads(warned.stdout)["checks"]}
    assert checks["model indexes"]["status"] == "warn"
    detail = checks["model indexes"]["detail"]
    assert "in the database but not in the model: ix_users_display_name " in detail


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_on_mariadb_the_advice_is_a_unique_index_on_email(
    project: AlembicProject, usersctl: Usersctl
) -> None:
    # An app that took the unique index off email: its model declares the column without it,
    # and a migration dropped it.
    source = project.model_file.read_text()
    source = source.replace(
        "    id: Mapped[int] = mapped_column(Integer, primary_key=True)\n",
        "    id: Mapped[int] = mapped_column(Integer, primary_key=True)\n"
        "    email: Mapped[str] = mapped_column(String(length=320), nullable=False)\n",
    )
    project.model_file.write_text(source)
    execute(project.url, "DROP INDEX ix_users_email ON users")
    project.alembic_ok("check")

    # init-db leaves the index to the app's migrations, and says which: on email, not lower()
    init = usersctl(*MODEL_OPTION, "init-db")
    assert init.returncode == 0, init.stderr
    assert "managed by Alembic" in init.stderr
    assert "lower(" not in init.stderr
    line = model_line(init.stderr)
    assert line == f'Index("{INDEX}", "email", unique=True)'
    printed = usersctl.ok(*MODEL_OPTION, "init-db", "--alembic")
    migration = printed.stdout
    assert f'op.create_index("{INDEX}", "users", ["email"], unique=True)' in migration
    assert index_definition(project.url, INDEX) is None

    # Followed, the advice builds a unique index on email, which doctor takes
    project.follow_advice(source, line, migration, "unique index on email")
    assert index_definition(project.url, INDEX) == f"CREATE UNIQUE INDEX {INDEX} ON users (email)"
    project.alembic_ok("check")
    doctor_passes_the_indexes(usersctl)
    project.alembic_ok("downgrade", "-1")
    assert index_definition(project.url, INDEX) is None
