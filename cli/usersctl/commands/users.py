"""The user commands: create, list, show, update, activate, deactivate, set-password, delete."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from usersctl.commands.errors import ExitCode, call, fail, run
from usersctl.commands.named_users import (
    MissingOkOption,
    NamedUsersArgument,
    find_named,
    from_stdin,
    not_found_rows,
    read_named,
    say_skipped,
)
from usersctl.commands.options import (
    ActiveFilter,
    AllowWeakPasswordOption,
    ColumnsOption,
    CreatedAfterFilter,
    CreatedBeforeFilter,
    DryRunOption,
    EmailDomainFilter,
    EmailFilter,
    ForceOption,
    GeneratePasswordOption,
    IdFilter,
    KeepSessionsOption,
    OutputOption,
    PasswordFileOption,
    PasswordStdinOption,
    RawCsvOption,
    SearchOption,
    SetOption,
    Settings,
    SuperuserFilter,
    UserArgument,
    UsersArgument,
    VerifiedFilter,
    column_names,
    list_filters,
    only,
    settings_of,
)
from usersctl.commands.password_input import enforce_policy, read_password
from usersctl.commands.render import OutputFormat, render_rows, say, to_text, warn

if TYPE_CHECKING:
    from usersctl.passwords import Hashing
    from usersctl.references import DeleteRules
    from usersctl.users import UserContext

STATUS_COLUMNS = ["id", "email", "status"]


def _shown(value: Any, form: Any = None) -> str:
    """A value in a change line as ``--set`` spells it: true, false, null."""
    if value is None:
        return "null"
    return str(form.text(value)) if form is not None else to_text(value)


def _finish(ctx_users: Any, dry_run: bool) -> Any:
    """Commit, or roll back for a dry run (the caller awaits the result)."""
    return ctx_users.session.rollback() if dry_run else ctx_users.session.commit()


def create_user(
    ctx: typer.Context,
    email: Annotated[
        str,
        typer.Argument(metavar="EMAIL", help="The new user's email address.", show_default=False),
    ],
    superuser: Annotated[
        bool, typer.Option("--superuser", help="Make the user a superuser.")
    ] = False,
    verified: Annotated[
        bool, typer.Option("--verified", help="Mark the email as verified.")
    ] = False,
    inactive: Annotated[bool, typer.Option("--inactive", help="Create the user inactive.")] = False,
    if_not_exists: Annotated[
        bool,
        typer.Option(
            "--if-not-exists", help="Exit 0 (status unchanged) if the email already exists."
        ),
    ] = False,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    generate_password: GeneratePasswordOption = False,
    allow_weak_password: AllowWeakPasswordOption = False,
    fields: SetOption = None,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a user, asking for the password on a terminal.

    Other columns of the table are given with --set; a required one that is missing is named.
    The password must pass the password policy (on a terminal, you may accept a weak one).

    \b
    Example:
      usersctl create-user admin@example.com --superuser --generate-password
      usersctl --model app.models:User create-user ops@example.com --set tenant_id=3
    """
    settings = settings_of(ctx)
    from usersctl.emails import normalize_email

    prompting = not (password_stdin or password_file or generate_password)
    if prompting:  # a person hears about a bad address before typing a password
        normalized = call(lambda: normalize_email(email))
    secret = call(
        lambda: read_password(stdin=password_stdin, file=password_file, generate=generate_password)
    )
    helper = call(settings.password_helper)  # refused beside --user-manager
    app_rules = settings.user_manager_path is not None
    if not app_rules:
        call(
            lambda: enforce_policy(
                secret, email.strip(), allow_weak=allow_weak_password, may_ask=not password_stdin
            )
        )
    from usersctl.hash_choice import PendingHash

    # Hashing takes ~0.1 s of CPU: it starts now, and the imports and the connection overlap it.
    # The app's own hasher (--user-manager) waits for the app's validate_password instead.
    pending = None if app_rules else PendingHash(secret.password, settings.hash_scheme, helper)
    if not prompting:
        normalized = call(lambda: normalize_email(email))
    notes: list[str] = []

    async def work() -> tuple[dict[str, Any], Any]:
        from usersctl import users
        from usersctl.fields import forms_for
        from usersctl.models import field_values

        try:
            async with (
                settings.open_users(write=True) as ctx_users,
                settings.open_manager(ctx_users) as manager,
            ):
                # Answered here, before waiting for the hash; create_user checks again anyway.
                existing = if_not_exists and await users.find_by_email(
                    ctx_users, normalized, typed=email.strip()
                )
                forms = forms_for(ctx_users.model.table)
                if existing:
                    row = users.user_row(ctx_users.model, existing)
                    return {**row, "status": "unchanged"}, forms
                extra = field_values(ctx_users.model, fields or [], creating=True)
                flags = {
                    "is_superuser": superuser,
                    "is_verified": verified,
                    "is_active": not inactive,
                }
                if pending is not None:
                    choice = pending.early or await users.choose_hashing(ctx_users, "auto")
                    notes.extend([choice.note] if choice.note else [])
                    hashed = await pending.result(choice)
                else:
                    from usersctl.user_manager import user_create

                    new = user_create({"email": normalized, **flags}, secret.password)
                    hashed = await _app_hash(manager, settings, secret, new, allow_weak_password)
                result = await users.create_user(
                    ctx_users, normalized, hashed, extra=extra, dry_run=dry_run, **flags
                )
                row = users.user_row(ctx_users.model, result.user)
                await _finish(ctx_users, dry_run)
                if manager is not None and not dry_run:
                    await _hook(
                        manager, "on_after_register", result.user, done="the user was created"
                    )
                return {**row, "status": "would create" if dry_run else "created"}, forms
        finally:
            if pending is not None:
                pending.cancel()

    row, forms = run(work, settings)
    for note in notes:
        say(note)
    if row["status"] == "unchanged":
        say(f"User {row['email']} already exists; nothing changed.")
    if secret.generated and row["status"] != "unchanged":
        row["password"] = secret.password
    columns = [*row.keys()]
    render_rows([row], output, columns=columns, single=True, forms=forms)


async def _app_hash(
    manager: Any, settings: Settings, secret: Any, user: Any, allow_weak: bool
) -> str:
    """The app's ``validate_password`` (unless the password was generated, or ``allow_weak``),
    then a hash by the app's own ``password_helper``."""
    import asyncio

    from usersctl.passwords import hash_password
    from usersctl.user_manager import manager_hashing, validate_password

    if allow_weak and not secret.generated:
        warn("Warning: the app's validate_password was not run (--allow-weak-password).")
    elif not secret.generated:
        await validate_password(manager, secret.password, user)
    hashing = manager_hashing(manager, settings.user_manager_path or "")
    return await asyncio.to_thread(hash_password, secret.password, hashing)


async def _hook(manager: Any, hook: str, *args: Any, done: str) -> None:
    """Run one of the app's hooks after the commit; a failure says that ``done`` is committed."""
    from usersctl.user_manager import run_hook

    await run_hook(manager, hook, *args, committed=f"{done} (the change is committed)")


def list_users(
    ctx: typer.Context,
    active: ActiveFilter = None,
    superuser: SuperuserFilter = None,
    verified: VerifiedFilter = None,
    search: SearchOption = None,
    emails: EmailFilter = None,
    email_domain: EmailDomainFilter = None,
    ids: IdFilter = None,
    created_after: CreatedAfterFilter = None,
    created_before: CreatedBeforeFilter = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10000, help="Users per page.")] = 50,
    after: Annotated[
        str | None,
        typer.Option(
            "--after", metavar="CURSOR", help="Start after this email (the footer gives it)."
        ),
    ] = None,
    page_info: Annotated[
        bool,
        typer.Option(
            "--page-info",
            help='With -o json: print {"users": [...], "next_after": CURSOR}, the --after value '
            "of the next page, or null after the last, e.g. list-users -o json --page-info.",
        ),
    ] = False,
    columns: ColumnsOption = None,
    output: OutputOption = OutputFormat.table,
    raw_csv: RawCsvOption = False,
) -> None:
    """List users in email order, a page at a time. Filters combine: a user must match all.

    \b
    Example:
      usersctl list-users --superuser --search example.com -o json
      usersctl list-users --email-domain old-corp.net --created-before 2024-01-01
      usersctl list-users --limit 500 --after "$CURSOR" -o json --page-info
      usersctl list-users --columns email,id -o csv
    """
    settings = settings_of(ctx)
    if page_info and output is not OutputFormat.json:
        fail("--page-info needs -o json", ExitCode.USAGE)

    async def work() -> tuple[list[str], Any, Any]:
        from usersctl import users
        from usersctl.fields import forms_for

        filters = list_filters(
            active=active,
            superuser=superuser,
            verified=verified,
            search=search,
            emails=emails,
            email_domain=email_domain,
            ids=ids,
            created_after=created_after,
            created_before=created_before,
        )
        async with settings.open_users() as ctx_users:
            chosen = users.choose_columns(column_names(columns), ctx_users.model.columns)
            page = await users.list_users(ctx_users, filters, limit=limit, after=after)
            return chosen, page, forms_for(ctx_users.model.table)

    chosen, page, forms = run(work, settings)
    rows = only(page.users, chosen)
    if page_info:
        import io
        import json

        users_json = io.StringIO()
        render_rows(rows, output, columns=chosen, forms=forms, stream=users_json)
        document = {"users": json.loads(users_json.getvalue()), "next_after": page.next_after}
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        sys.stdout.flush()
    else:
        render_rows(rows, output, columns=chosen, forms=forms, raw_csv=raw_csv)
    shown = len(page.users)
    footer = f"{shown} shown of {page.total} matching user{'s' if page.total != 1 else ''}."
    if page.next_after is not None:
        footer += f" Next page: --after {shlex.quote(page.next_after)}"
    say(footer)


def _render_users(
    rows: Sequence[dict[str, Any]],
    output: OutputFormat,
    columns: Sequence[str],
    forms: Any,
    *,
    several: bool,
) -> None:
    """One user as ever (a field/value table, one JSON object); several users each as their own
    field/value table, a blank line between, or as a list: a JSON array, JSON lines, CSV rows."""
    if not several:
        render_rows(rows, output, columns=columns, single=True, forms=forms)
    elif output is OutputFormat.table:
        for index, row in enumerate(rows):
            if index:
                sys.stdout.write("\n")
            render_rows([row], output, columns=columns, single=True, forms=forms)
    else:
        render_rows(rows, output, columns=columns, forms=forms)


def show_user(
    ctx: typer.Context,
    users_: UsersArgument,
    columns: ColumnsOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show users, with their OAuth accounts and how many access tokens they hold.

    OAuth accounts show provider, account id and account email, never their tokens. Several
    users are shown one after the other; -o json prints one object for one user, as ever, and
    a list for several. A user not found is exit 3, naming each one.

    \b
    Example:
      usersctl show-user admin@example.com -o json
      usersctl show-user admin@example.com 7 ops@example.com --columns id,email,is_active
    """
    settings = settings_of(ctx)

    async def work() -> tuple[list[str], list[dict[str, Any]], Any]:
        from usersctl import logins, users
        from usersctl.fields import forms_for

        async with settings.open_users() as ctx_users:
            found = await users.find_every_user(ctx_users, users_)
            rows = []
            for each in found:
                row = users.user_row(ctx_users.model, each)
                links = await logins.oauth_links(ctx_users, each)
                tokens = await logins.count_access_tokens(ctx_users, each)
                if links is not None:
                    structured = output in (OutputFormat.json, OutputFormat.jsonl)
                    row["oauth_accounts"] = (
                        [link.as_dict() for link in links]
                        if structured
                        else ", ".join(str(link) for link in links)
                    )
                if tokens is not None:
                    row["access_tokens"] = tokens
                rows.append(row)
            extra = [name for name in ("oauth_accounts", "access_tokens") if name in rows[0]]
            available = [*ctx_users.model.columns, *extra]
            chosen = users.choose_columns(column_names(columns), available)
            return chosen, rows, forms_for(ctx_users.model.table)

    chosen, rows, forms = run(work, settings)
    _render_users(only(rows, chosen), output, chosen, forms, several=len(users_) > 1)


def update_user(
    ctx: typer.Context,
    users_: UsersArgument,
    email: Annotated[
        str | None,
        typer.Option("--email", metavar="NEW", help="New email address (of one user only)."),
    ] = None,
    superuser: Annotated[
        bool | None,
        typer.Option(
            "--superuser/--no-superuser", help="Grant or revoke superuser.", show_default=False
        ),
    ] = None,
    verified: Annotated[
        bool | None,
        typer.Option(
            "--verified/--unverified", help="Mark verified or unverified.", show_default=False
        ),
    ] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="Activate or deactivate.", show_default=False),
    ] = None,
    fields: SetOption = None,
    force: ForceOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change users' email, flags or other columns (--set). A new email makes the user
    unverified unless --verified.

    Several users are changed alike in one transaction: all of them, or (a user not found, exit
    3; a refused change) none. Output as show-user's.

    \b
    Example:
      usersctl update-user old@example.com --email new@example.com --verified
      usersctl update-user alice@example.com --set first_name=Alice --set tenant_id=null
      usersctl update-user alice@example.com bob@example.com --verified --set tenant_id=3
    """
    settings = settings_of(ctx)
    several = len(users_) > 1
    if several and email is not None:
        fail("--email gives one user a new address: name one user", ExitCode.USAGE)

    async def work() -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]], Any]:
        from usersctl import users
        from usersctl.fields import forms_for
        from usersctl.models import field_values

        async with (
            settings.open_users(write=True) as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            found = await users.find_every_user(ctx_users, users_)
            extra = field_values(ctx_users.model, fields or [], creating=False)
            every_change = []
            for each in found:
                changes = await users.update_user(
                    ctx_users,
                    each,
                    email=email,
                    is_superuser=superuser,
                    is_verified=verified,
                    is_active=active,
                    extra=extra,
                    force=force,
                )
                every_change.append(changes)
            rows = [users.user_row(ctx_users.model, each) for each in found]
            await _finish(ctx_users, dry_run)
            for each, changes in zip(found, every_change, strict=True):
                if manager is not None and changes and not dry_run:
                    # As the app's PATCH /users routes: the fields given, then the verification.
                    updated = {name: new for name, (_, new) in changes.items()}
                    done = f"{each.email} was updated"
                    await _hook(manager, "on_after_update", each, updated, done=done)
                    if updated.get("is_verified") is True:
                        await _hook(manager, "on_after_verify", each, done=done)
            return ctx_users.model.columns, rows, every_change, forms_for(ctx_users.model.table)

    columns, rows, every_change, forms = run(work, settings)
    for row, changes in zip(rows, every_change, strict=True):
        if not changes:
            row["status"] = "unchanged"
            continue
        row["status"] = "would update" if dry_run else "updated"
        whose = f"{row['email']}: " if several else ""
        for name, (old, new) in changes.items():
            old_text, new_text = _shown(old, forms.get(name)), _shown(new, forms.get(name))
            say(f"{whose}{name}: {old_text} -> {new_text}")
    _render_users(rows, output, [*columns, "status"], forms, several=several)


def _report_revoked(rows: Sequence[dict[str, Any]], dry_run: bool) -> None:
    for row in rows:
        if "revoked_tokens" in row:
            count = row["revoked_tokens"]
            verb = "Would revoke" if dry_run else "Revoked"
            plural = "" if count == 1 else "s"
            say(f"{verb} {count} access token{plural} of {row['email']}.")


def _set_active(
    ctx: typer.Context,
    given: Sequence[str],
    active: bool,
    force: bool,
    dry_run: bool,
    output: OutputFormat,
    missing_ok: bool,
    keep_sessions: bool = True,
) -> None:
    settings = settings_of(ctx)
    refs = call(lambda: read_named(given))
    verb = "activated" if active else "deactivated"

    async def work() -> tuple[list[dict[str, Any]], list[str]]:
        from usersctl import logins, users

        async with settings.open_users(write=True) as ctx_users:
            found, missing = await find_named(
                ctx_users, refs, missing_ok=missing_ok, nothing=f"nobody was {verb}"
            )
            changed, _ = await users.set_active(ctx_users, found, active, force=force)
            changed_ids = {user.id for user in changed}
            done = f"would be {verb}" if dry_run else verb
            already = "already active" if active else "already inactive"
            rows = [
                {"id": u.id, "email": u.email, "status": done if u.id in changed_ids else already}
                for u in found
            ]
            # Lock out means every user named, also one already inactive (the app may have
            # deactivated them without ending their sessions).
            revoked = (
                None if keep_sessions else await logins.revoke_each_users_tokens(ctx_users, found)
            )
            if revoked is not None:
                for row in rows:
                    row["revoked_tokens"] = revoked[row["id"]]
            await _finish(ctx_users, dry_run)
            return rows, missing

    rows, missing = run(work, settings)
    say_skipped(missing)
    columns = (
        [*STATUS_COLUMNS, "revoked_tokens"]
        if rows and "revoked_tokens" in rows[0]
        else STATUS_COLUMNS
    )
    render_rows([*rows, *not_found_rows(missing)], output, columns=columns)
    _report_revoked(rows, dry_run)


def activate_user(
    ctx: typer.Context,
    users_: NamedUsersArgument,
    missing_ok: MissingOkOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Let users log in again. Users already active are reported and left alone.

    Users are named as arguments, or one per line on stdin with -; a user that does not exist
    is exit 3 with nobody activated, unless --missing-ok.

    \b
    Example:
      usersctl activate-user alice@example.com bob@example.com
    """
    _set_active(ctx, users_, True, False, dry_run, output, missing_ok)


def deactivate_user(
    ctx: typer.Context,
    users_: NamedUsersArgument,
    missing_ok: MissingOkOption = False,
    keep_sessions: KeepSessionsOption = False,
    force: ForceOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Stop users from logging in, keeping their data. Refuses to deactivate the last superuser.

    Also revokes their database access tokens (logged-in sessions), unless --keep-sessions.
    Users are named as arguments, or one per line on stdin with -; a user that does not exist
    is exit 3 with nobody deactivated, unless --missing-ok.

    \b
    Example:
      usersctl deactivate-user mallory@example.com
      usersctl list-users --unverified -o jsonl | jq -r .id | usersctl deactivate-user -
    """
    _set_active(ctx, users_, False, force, dry_run, output, missing_ok, keep_sessions)


def set_password(
    ctx: typer.Context,
    users_: NamedUsersArgument,
    password_stdin: PasswordStdinOption = False,
    password_file: PasswordFileOption = None,
    generate_password: GeneratePasswordOption = False,
    allow_weak_password: AllowWeakPasswordOption = False,
    missing_ok: MissingOkOption = False,
    keep_sessions: KeepSessionsOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Set a user's password, asking for it on a terminal. Revokes the user's database access
    tokens (logged-in sessions), unless --keep-sessions. The password must pass the password
    policy (on a terminal, you may accept a weak one).

    Several users (or - to read them from stdin, one a line) take --generate-password: each
    gets a password of their own, shown once. A user that does not exist is exit 3 with no
    password set, unless --missing-ok.

    \b
    Example:
      printf '%s\\n' "$NEW_PASSWORD" | usersctl set-password alice@example.com --password-stdin
      usersctl set-password alice@example.com bob@example.com --generate-password -o csv
    """
    if len(users_) > 1 or from_stdin(users_):
        if password_stdin or password_file is not None or not generate_password:
            fail(
                "several users get a password each: use --generate-password (a typed, "
                "--password-stdin or --password-file password is for one user)",
                ExitCode.USAGE,
            )
        _set_generated_passwords(ctx, users_, missing_ok, keep_sessions, dry_run, output)
        return
    settings = settings_of(ctx)
    user = users_[0]
    secret = call(
        lambda: read_password(stdin=password_stdin, file=password_file, generate=generate_password)
    )
    helper = call(settings.password_helper)  # refused beside --user-manager
    app_rules = settings.user_manager_path is not None
    if not (secret.generated or app_rules):
        email = user.strip() if "@" in user else None
        if email is None and not allow_weak_password:  # named by id: the policy needs the email
            email = run(lambda: _email_of(settings, user, missing_ok), settings)
        call(
            lambda: enforce_policy(
                secret, email, allow_weak=allow_weak_password, may_ask=not password_stdin
            )
        )

    from usersctl.hash_choice import PendingHash

    pending = None if app_rules else PendingHash(secret.password, settings.hash_scheme, helper)
    notes: list[str] = []

    async def work() -> dict[str, Any]:
        from usersctl import logins, users

        async with (
            settings.open_users(write=True) as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            named, missing = await find_named(
                ctx_users, [user], missing_ok=missing_ok, nothing="no password was set"
            )
            if missing:
                if pending is not None:
                    pending.cancel()
                return not_found_rows(missing)[0]
            (found,) = named
            if pending is not None:
                choice = pending.early or await users.choose_hashing(ctx_users, "auto")
                notes.extend([choice.note] if choice.note else [])
                hashed = await pending.result(choice)
            else:
                hashed = await _app_hash(manager, settings, secret, found, allow_weak_password)
            await users.set_password(ctx_users, found, hashed)
            row: dict[str, Any] = {
                "id": found.id,
                "email": found.email,
                "status": "would set password" if dry_run else "password set",
            }
            revoked = (
                None if keep_sessions else await logins.revoke_each_users_tokens(ctx_users, [found])
            )
            if revoked is not None:
                row["revoked_tokens"] = revoked[found.id]
            await _finish(ctx_users, dry_run)
            if manager is not None and not dry_run:
                await _hook(manager, "on_after_reset_password", found, done="the password was set")
            return row

    row = run(work, settings)
    for note in notes:
        say(note)
    columns = list(STATUS_COLUMNS)
    if row["status"] == "not found":
        say_skipped([row["email"]])
        render_rows([row], output, columns=columns, single=True)
        return
    _report_revoked([row], dry_run)
    if "revoked_tokens" in row:
        columns.append("revoked_tokens")
    if secret.generated:
        row["password"] = secret.password
        columns.append("password")
    render_rows([row], output, columns=columns, single=True)


def _set_generated_passwords(
    ctx: typer.Context,
    given: Sequence[str],
    missing_ok: bool,
    keep_sessions: bool,
    dry_run: bool,
    output: OutputFormat,
) -> None:
    """set-password for several users: a generated password each. The users are looked up and
    the hashing chosen first; the passwords are hashed with no transaction open (no lock held),
    then set in one transaction (a dry run hashes one, to check the hashing, and sets none)."""
    settings = settings_of(ctx)
    refs = call(lambda: read_named(given))
    helper = call(settings.password_helper)  # refused beside --user-manager
    nothing = "no password was set"

    async def look() -> tuple[list[Any], Hashing, str | None]:
        from usersctl import users

        async with (
            settings.open_users() as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            found, _ = await find_named(ctx_users, refs, missing_ok=missing_ok, nothing=nothing)
            if manager is not None:  # the app's own password_helper hashes, as its routes do
                from usersctl.user_manager import manager_hashing

                return (
                    [u.id for u in found],
                    manager_hashing(manager, settings.user_manager_path or ""),
                    None,
                )
            choice = await users.choose_hashing(ctx_users, settings.hash_scheme, helper)
            return [u.id for u in found], choice.hashing, choice.note

    ids, hashing, note = run(look, settings)
    from usersctl.passwords import generate_password, hash_many, hash_password

    passwords = {user_id: generate_password() for user_id in ids}
    # A dry run hashes one password, which checks the hashing, and lends its hash to the rest.
    hashed_ids = ids[:1] if dry_run else ids
    with contextlib.closing(hash_many([passwords[i] for i in hashed_ids], None, hashing)) as made:
        hashes: dict[Any, str] = dict(zip(hashed_ids, made, strict=True))
    sample = next(iter(hashes.values()), None) if dry_run else None

    async def work() -> tuple[list[dict[str, Any]], list[str]]:
        import asyncio

        from usersctl import logins, users

        async with (
            settings.open_users(write=True) as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            found, missing = await find_named(
                ctx_users, refs, missing_ok=missing_ok, nothing=nothing
            )
            status = "would set password" if dry_run else "password set"
            rows = []
            for each in found:
                if each.id not in passwords:  # not there a moment ago
                    passwords[each.id] = generate_password()
                hashed = hashes.get(each.id, sample)
                if hashed is None:
                    hashed = await asyncio.to_thread(hash_password, passwords[each.id], hashing)
                await users.set_password(ctx_users, each, hashed)
                rows.append({"id": each.id, "email": each.email, "status": status})
            revoked = (
                None if keep_sessions else await logins.revoke_each_users_tokens(ctx_users, found)
            )
            if revoked is not None:
                for row in rows:
                    row["revoked_tokens"] = revoked[row["id"]]
            await _finish(ctx_users, dry_run)
            if manager is not None and not dry_run:
                for each in found:
                    await _hook(
                        manager,
                        "on_after_reset_password",
                        each,
                        done=f"the password of {each.email} was set",
                    )
            return rows, missing

    rows, missing = run(work, settings)
    if note:
        say(note)
    say_skipped(missing)
    _report_revoked(rows, dry_run)
    columns = list(STATUS_COLUMNS)
    if rows and "revoked_tokens" in rows[0]:
        columns.append("revoked_tokens")
    columns.append("password")
    for row in rows:
        row["password"] = passwords[row["id"]]
    render_rows([*rows, *not_found_rows(missing)], output, columns=columns)


async def _email_of(settings: Any, email_or_id: str, missing_ok: bool) -> str | None:
    """The email of the user named by id, for the password policy's similarity check; None for
    a user ``missing_ok`` skips."""
    async with settings.open_users() as ctx_users:
        found, _ = await find_named(
            ctx_users, [email_or_id], missing_ok=missing_ok, nothing="no password was set"
        )
        return str(found[0].email) if found else None


def _related_lines(email: str, related: Sequence[dict[str, Any]], dry_run: bool) -> list[str]:
    """What went (or would go) with a deleted user, a line per foreign key."""
    words = {"set null": "set to NULL", "set default": "set to its default"}
    lines = []
    for effect in related:
        plural = "" if effect["rows"] == 1 else "s"
        done = ("would be " if dry_run else "") + words.get(effect["action"], effect["action"])
        through = f", through {effect['through']}" if effect["through"] else ""
        lines.append(
            f"{email}: {effect['rows']} row{plural} of {effect['table']}.{effect['column']} "
            f"{done} ({effect['by']}{through})"
        )
    return lines


def delete_user(
    ctx: typer.Context,
    users_: NamedUsersArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    missing_ok: MissingOkOption = False,
    reassign_to: Annotated[
        str | None,
        typer.Option(
            "--reassign-to",
            metavar="EMAIL_OR_ID",
            help="Give the rows that refer to the deleted users (and would block the delete) "
            "to this user.",
        ),
    ] = None,
    cascade: Annotated[
        bool,
        typer.Option(
            "--cascade",
            help="Delete the rows that refer to the deleted users and would block the delete.",
        ),
    ] = False,
    cascade_into: Annotated[
        list[str] | None,
        typer.Option(
            "--cascade-into",
            metavar="TABLE",
            help="Also delete this table's rows that refer to rows being deleted (below the "
            "first level; repeatable).",
        ),
    ] = None,
    force: ForceOption = False,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete users with their OAuth accounts and access tokens. Asks first on a terminal.

    Rows of other tables that refer to a user go as the database's ON DELETE rules (and with
    --model, the model's relationships) say, and the output says what went. Rows that would
    block the delete are named (exit 4, nothing deleted) unless --reassign-to or --cascade says
    what to do with them. Users are named as arguments, or one per line on stdin with - (then
    --yes is needed); a user that does not exist is exit 3 with nobody deleted, unless
    --missing-ok.

    \b
    Example:
      usersctl delete-user mallory@example.com --yes
      usersctl list-users --inactive -o jsonl | jq -r .id | usersctl delete-user - --yes
      usersctl delete-user mallory@example.com --reassign-to admin@example.com --dry-run
      usersctl delete-user mallory@example.com --cascade --cascade-into item_comment --yes
    """
    settings = settings_of(ctx)
    if reassign_to is not None and cascade:
        fail(
            "--reassign-to and --cascade both say what to do with the same rows; choose one",
            ExitCode.USAGE,
        )
    if not (yes or dry_run) and not sys.stdin.isatty():
        fail(
            "refusing to delete without confirmation: no terminal to ask on; pass --yes",
            ExitCode.USAGE,
        )
    refs = call(lambda: read_named(users_))
    nothing = "nothing was deleted"

    async def rules_for(ctx_users: UserContext) -> DeleteRules:
        from usersctl import users
        from usersctl.references import DeleteRules

        target = await users.find_user(ctx_users, reassign_to) if reassign_to else None
        return DeleteRules(target, cascade, frozenset(cascade_into or ()))

    async def find() -> list[tuple[str, list[dict[str, Any]]]]:
        from usersctl import users

        async with settings.open_users() as ctx_users:
            found, _ = await find_named(ctx_users, refs, missing_ok=missing_ok, nothing=nothing)
            plans = await users.plan_deletes(ctx_users, found, await rules_for(ctx_users))
            return [(plan.user.email, [step.as_dict() for step in plan.walk()]) for plan in plans]

    if not (yes or dry_run):
        # Ask outside the write transaction (a person thinking must not hold SQLite's lock) and
        # outside the event loop (where Ctrl-C would not interrupt the prompt). Rows that would
        # block the delete are named before anyone is asked.
        planned = run(find, settings)
        for email, related in planned:
            for line in _related_lines(email, related, dry_run=True):
                say(line)
        emails = [email for email, _ in planned]
        question = f"Delete {len(emails)} user(s): {', '.join(emails)}?"
        if emails and not call(lambda: typer.confirm(question, err=True)):
            fail("aborted; nothing was deleted", ExitCode.FAILURE)

    async def work() -> tuple[list[dict[str, Any]], list[str]]:
        from usersctl import users

        async with (
            settings.open_users(write=True) as ctx_users,
            settings.open_manager(ctx_users) as manager,
        ):
            found, missing = await find_named(
                ctx_users, refs, missing_ok=missing_ok, nothing=nothing
            )
            rows = [{"id": u.id, "email": u.email} for u in found]
            if manager is not None:
                from usersctl.user_manager import run_hook

                for each in found:  # before the delete, in its transaction, as the app does
                    await run_hook(
                        manager, "on_before_delete", each, committed="nothing was deleted"
                    )
            rules = await rules_for(ctx_users)
            plans = await users.delete_users(ctx_users, found, force=force, rules=rules)
            await _finish(ctx_users, dry_run)
            if manager is not None and not dry_run:
                for each in found:
                    await _hook(manager, "on_after_delete", each, done=f"{each.email} was deleted")
            status = "would delete" if dry_run else "deleted"
            return [
                {**row, "status": status, "related": [step.as_dict() for step in plan.walk()]}
                for row, plan in zip(rows, plans, strict=True)
            ], missing

    deleted, missing = run(work, settings)
    say_skipped(missing)
    rows = [*deleted, *not_found_rows(missing)]
    for row in rows:
        for line in _related_lines(row["email"], row.get("related") or [], dry_run):
            say(line)
    # What went with the users is a column only when something did, as revoked_tokens is.
    columns = list(STATUS_COLUMNS)
    if any(row.get("related") for row in rows):
        columns.append("related")
        structured = output in (OutputFormat.json, OutputFormat.jsonl)
        for row in rows:
            related = row.get("related") or []
            row["related"] = related if structured else _related_summary(related)
    else:
        for row in rows:
            row.pop("related", None)
    render_rows(rows, output, columns=columns)


def _related_summary(related: Sequence[dict[str, Any]]) -> str:
    """What went with a user in one cell: ``note.user_id: 3 deleted; item.owner_id: 2 reassigned``."""
    return "; ".join(f"{e['table']}.{e['column']}: {e['rows']} {e['action']}" for e in related)


def unlink_oauth(
    ctx: typer.Context,
    user: UserArgument,
    provider: Annotated[
        str,
        typer.Argument(
            metavar="PROVIDER",
            help="The provider's name as the app registered it (oauth_name), e.g. google.",
            show_default=False,
        ),
    ],
    account_id: Annotated[
        str | None,
        typer.Option(
            "--account-id",
            metavar="ID",
            help="Only the link to this account, when the user has several with the provider.",
        ),
    ] = None,
    dry_run: DryRunOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove a user's OAuth account link; exit 3 if the user has none with that provider.

    \b
    Example:
      usersctl unlink-oauth alice@example.com github
    """
    settings = settings_of(ctx)

    async def work() -> list[dict[str, Any]]:
        from usersctl import logins, users

        async with settings.open_users(write=True) as ctx_users:
            found = await users.find_user(ctx_users, user)
            removed = await logins.unlink_oauth(ctx_users, found, provider, account_id=account_id)
            status = "would unlink" if dry_run else "unlinked"
            rows = [
                {"id": found.id, "email": found.email, **link.as_dict(), "status": status}
                for link in removed
            ]
            await _finish(ctx_users, dry_run)
            return rows

    rows = run(work, settings)
    columns = ["id", "email", "provider", "account_id", "account_email", "status"]
    render_rows(rows, output, columns=columns)
