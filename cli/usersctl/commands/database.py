"""Commands about the database itself: init-db."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from usersctl.commands.errors import ExitCode, fail, run
from usersctl.commands.options import DryRunOption, settings_of
from usersctl.commands.render import say, say_lines

if TYPE_CHECKING:
    from usersctl.migrations import IndexAdvice
    from usersctl.schema import InitReport


def init_db(
    ctx: typer.Context,
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the DDL for the URL's dialect; change nothing.")
    ] = False,
    oauth: Annotated[
        bool, typer.Option("--oauth", help="Also create FastAPI Users' oauth_account table.")
    ] = False,
    access_tokens: Annotated[
        bool,
        typer.Option("--access-tokens", help="Also create FastAPI Users' accesstoken table."),
    ] = False,
    alembic: Annotated[
        bool,
        typer.Option(
            "--alembic",
            help="Print an Alembic migration that adds the lower(email) index, for the URL's "
            "dialect; change nothing.",
        ),
    ] = False,
    apply_anyway: Annotated[
        bool,
        typer.Option(
            "--apply-anyway",
            help="Change a database that Alembic manages all the same (its models must then "
            "declare the index).",
        ),
    ] = False,
    dry_run: DryRunOption = False,
) -> None:
    """Create the user table and its unique lower(email) index; safe to run again.

    On an existing FastAPI Users table it only adds the index, which makes logins an index lookup.
    It creates the table ``--table`` names (with --oauth and --access-tokens, FastAPI Users' other
    two tables referencing it); without --table it refuses to create ``user`` beside a user table
    of another name. A database with an alembic_version table is left to the app's migrations:
    init-db prints the Index(...) for the model and the migration to add instead (--apply-anyway
    adds it).

    \b
    Example:
      usersctl init-db
      usersctl -d postgresql://app@db/app init-db --sql
      usersctl --table users init-db
      usersctl -d postgresql://app@db/app --model app.models:User init-db --alembic
    """
    settings = settings_of(ctx)

    async def work() -> str | IndexAdvice | InitReport:
        from usersctl import migrations, schema

        if alembic:
            return migrations.index_advice_for(
                settings.database_url, settings.model_path, settings.table
            )
        if settings.model_path:
            from usersctl.models import load_user_model, model_tables

            model = load_user_model(settings.model_path, settings.table)
            tables = model_tables(model, oauth=oauth, access_tokens=access_tokens)
        else:
            from usersctl import user_tables

            tables = schema.built_in_tables(oauth=oauth, access_tokens=access_tokens)
            if settings.table:
                name = user_tables.table_for_url(settings.database_url, settings.table)
                id_type = None
                if (oauth or access_tokens) and not sql:  # user_id is typed like the app's id
                    id_type = await user_tables.existing_id_type(
                        settings.database_url, name, connect_timeout=settings.connect_timeout
                    )
                tables = user_tables.renamed_tables(tables, name, id_type)
            elif not sql:
                await user_tables.refuse_beside_user_table(
                    settings.database_url, connect_timeout=settings.connect_timeout
                )
        if sql:
            return schema.schema_sql(settings.database_url, tables)
        return await schema.init_database(
            settings.database_url,
            tables,
            connect_timeout=settings.connect_timeout,
            dry_run=dry_run,
            apply_anyway=apply_anyway,
        )

    if alembic and (sql or dry_run or apply_anyway or oauth or access_tokens):
        fail(
            "--alembic prints the index's migration alone; it takes no --sql, --dry-run, "
            "--apply-anyway, --oauth or --access-tokens",
            ExitCode.USAGE,
        )
    result = run(work, settings)
    if isinstance(result, str):
        typer.echo(result, nl=False)
        return
    from usersctl.commands import alembic_advice
    from usersctl.engine import mask_url, normalize_url
    from usersctl.migrations import IndexAdvice

    if isinstance(result, IndexAdvice):
        typer.echo(result.migration, nl=False)
        say_lines(alembic_advice.model_paragraph(result))
        return
    where = mask_url(settings.database_url)
    advice = result.index_advice
    if advice is not None and result.index_left_out:
        say_lines(alembic_advice.left_out_text(advice, command="init-db"))
        return
    if not result.changed:
        # MySQL/MariaDB have no lower(email) index: the unique index on email in its _ci
        # collation does that work there.
        mysql = normalize_url(settings.database_url).get_backend_name() == "mysql"
        index = "unique index on email" if mysql else "lower(email) index"
        say(f"Nothing to do: {where} already has the tables and the {index}.")
        return
    done = "Would create" if dry_run else "Created"
    for name in result.created_tables:
        say(f"{done} table {name}")
    for name in result.created_indexes:
        concurrently = " concurrently (the app's writes go on)"
        say(f"{done} index {name}{concurrently if name in result.concurrent_indexes else ''}")
    if advice is not None:
        say_lines(alembic_advice.applied_text(advice))
    say(f"Dry run: nothing was changed in {where}" if dry_run else f"Database ready: {where}")
