"""The doctor command: check a database against what usersctl and FastAPI Users expect."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from usersctl.commands.errors import ExitCode, call, fail, run
from usersctl.commands.options import OutputOption, settings_of
from usersctl.commands.render import OutputFormat, render_rows, say, say_lines

if TYPE_CHECKING:
    from usersctl.doctor import DoctorReport

CHECK_COLUMNS = ["check", "status", "detail"]


def doctor(
    ctx: typer.Context,
    fix: Annotated[
        bool,
        typer.Option(
            "--fix",
            help="Create the missing lower(email) index (concurrently on PostgreSQL) and remove "
            "orphaned OAuth/token rows. Never changes a user.",
        ),
    ] = False,
    apply_anyway: Annotated[
        bool,
        typer.Option(
            "--apply-anyway",
            help="With --fix, create the index on a database that Alembic manages all the same "
            "(its models must then declare it).",
        ),
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Check the tables, the lower(email) index, case-duplicate emails, password hashes and
    orphaned rows (with --model: the model's indexes against the database's); exit 6 if a check
    fails.

    On a database with an alembic_version table, --fix leaves the index to the app's migrations
    and prints the Index(...) and the migration that add it.

    \b
    Example:
      usersctl doctor
      usersctl --model app.models:User doctor --fix -o json
    """
    if apply_anyway and not fix:
        fail("--apply-anyway goes with --fix", ExitCode.USAGE)
    settings = settings_of(ctx)
    helper = call(settings.password_helper)

    async def work() -> DoctorReport:
        from usersctl.doctor import diagnose

        hashing = helper
        if settings.user_manager_path is not None:  # the hashes the manager's helper reads
            from usersctl.user_manager import password_hashing_of

            hashing = await password_hashing_of(settings.user_manager_path)
        return await diagnose(
            settings.checked_url(),
            model_path=settings.model_path,
            table=settings.table,
            fix=fix,
            connect_timeout=settings.connect_timeout,
            apply_anyway=apply_anyway,
            password_helper=hashing,
        )

    report = run(work, settings)
    found = {**report.as_dict(), "database_url_source": settings.url_source}
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(found, ensure_ascii=False, indent=2) + "\n")
    else:
        rows = []
        for check in report.checks:
            row = check.as_dict()
            if check.items:
                row["detail"] = f"{check.detail}: {'; '.join(check.items)}"
            rows.append(row)
        render_rows(rows, output, columns=CHECK_COLUMNS)
    if report.index_advice is not None:
        from usersctl.commands import alembic_advice

        if report.index_in_database:
            say_lines(alembic_advice.applied_text(report.index_advice))
        else:
            say_lines(alembic_advice.left_out_text(report.index_advice, command="doctor --fix"))
    failed = report.failed
    if failed:
        names = ", ".join(check.name for check in failed)
        fail(
            f"{len(failed)} check(s) failed on {report.database} (URL from {settings.url_source}): "
            f"{names}",
            ExitCode.CHECK_FAILED,
        )
    say(f"All checks passed on {report.database} (URL from {settings.url_source}).")
