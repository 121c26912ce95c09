"""Commands about the database itself: init-db."""

from __future__ import annotations

from typing import Annotated

import typer

from usersctl.commands.errors import run
from usersctl.commands.options import DryRunOption, settings_of
from usersctl.commands.render import say


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
    dry_run: DryRunOption = False,
) -> None:
    """Create the user table and its unique lower(email) index; safe to run again.

    On an existing FastAPI Users table it only adds the index, which makes logins an index lookup.
    It creates the table ``--table`` names (with --oauth and --access-tokens, FastAPI Users' other
    two tables referencing it); without --table it refuses to create ``user`` beside a user table
    of another name.

    \b
    Example:
      usersctl init-db
      usersctl -d postgresql://app@db/app init-db --sql
      usersctl --table users init-db
    """
    settings = settings_of(ctx)

    async def work() -> object:
        from usersctl import schema

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
        )

    result = run(work, settings)
    if isinstance(result, str):
        typer.echo(result, nl=False)
        return
    from usersctl.engine import mask_url

    where = mask_url(settings.database_url)
    if not result.changed:  # type: ignore[attr-defined]
        say(f"Nothing to do: {where} already has the tables and the lower(email) index.")
        return
    done = "Would create" if dry_run else "Created"
    for name in result.created_tables:  # type: ignore[attr-defined]
        say(f"{done} table {name}")
    for name in result.created_indexes:  # type: ignore[attr-defined]
        say(f"{done} index {name}")
    say(f"Dry run: nothing was changed in {where}" if dry_run else f"Database ready: {where}")
