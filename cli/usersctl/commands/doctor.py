"""The doctor command: check a database against what usersctl and FastAPI Users expect."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from usersctl.commands.errors import ExitCode, call, fail, run
from usersctl.commands.options import OutputOption, settings_of
from usersctl.commands.render import OutputFormat, render_rows, say

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
    output: OutputOption = OutputFormat.table,
) -> None:
    """Check the tables, the lower(email) index, case-duplicate emails, password hashes and
    orphaned rows; exit 6 if a check fails.

    \b
    Example:
      usersctl doctor
      usersctl --model app.models:User doctor --fix -o json
    """
    settings = settings_of(ctx)
    helper = call(settings.password_helper)

    async def work() -> DoctorReport:
        from usersctl.doctor import diagnose

        return await diagnose(
            settings.database_url,
            model_path=settings.model_path,
            fix=fix,
            connect_timeout=settings.connect_timeout,
            password_helper=helper,
        )

    report = run(work, settings)
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(report.as_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        rows = []
        for check in report.checks:
            row = check.as_dict()
            if check.items:
                row["detail"] = f"{check.detail}: {'; '.join(check.items)}"
            rows.append(row)
        render_rows(rows, output, columns=CHECK_COLUMNS)
    failed = report.failed
    if failed:
        names = ", ".join(check.name for check in failed)
        fail(f"{len(failed)} check(s) failed on {report.database}: {names}", ExitCode.CHECK_FAILED)
    say(f"All checks passed on {report.database}.")
