"""apply: make the users what a file says (users as code), showing the plan first."""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from usersctl.commands.errors import ExitCode, call, fail, run
from usersctl.commands.options import (
    ActiveFilter,
    AllowWeakPasswordOption,
    CreatedAfterFilter,
    CreatedBeforeFilter,
    DryRunOption,
    EmailDomainFilter,
    EmailFilter,
    ForceOption,
    IdFilter,
    SearchOption,
    SuperuserFilter,
    VerifiedFilter,
    list_filters,
    settings_of,
)
from usersctl.commands.render import for_terminal, say, to_jsonable, to_text, warn
from usersctl.commands.transfer import open_input


class ApplyFormat(str, enum.Enum):
    """Formats apply reads: import-users' and YAML."""

    jsonl = "jsonl"
    csv = "csv"
    json = "json"
    yaml = "yaml"


class PlanOutput(str, enum.Enum):
    """``-o``: the plan as lines for people, or as data."""

    table = "table"
    json = "json"
    jsonl = "jsonl"


_MARKS = {"create": "+", "update": "~", "unchanged": "=", "deactivate": "-", "delete": "-"}


def apply(
    ctx: typer.Context,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE|-", help="The users as they should be; - reads stdin.", show_default=False
        ),
    ],
    input_format: Annotated[
        ApplyFormat | None,
        typer.Option(
            "--format",
            help="jsonl, csv, json or yaml; default from the file name (.yaml, .yml too), else "
            "guessed from the content (not YAML).",
            case_sensitive=False,
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Deactivate the active users the file leaves out (among those the filters "
            "select; never deletes).",
        ),
    ] = False,
    prune_delete: Annotated[
        bool,
        typer.Option(
            "--prune-delete",
            help="Delete the users the file leaves out (among those the filters select), with "
            "delete-user's rules for the rows that refer to them.",
        ),
    ] = False,
    active: ActiveFilter = None,
    superuser: SuperuserFilter = None,
    verified: VerifiedFilter = None,
    search: SearchOption = None,
    emails: EmailFilter = None,
    email_domain: EmailDomainFilter = None,
    ids: IdFilter = None,
    created_after: CreatedAfterFilter = None,
    created_before: CreatedBeforeFilter = None,
    update_passwords: Annotated[
        bool,
        typer.Option(
            "--update-passwords",
            help="Give existing users the password or hashed_password their entry gives (a "
            "plaintext one is checked against the stored hash first; unchanged if it matches).",
        ),
    ] = False,
    require_passwords: Annotated[
        bool,
        typer.Option(
            "--require-passwords",
            help="Refuse a new user without password or hashed_password (exit 2) instead of "
            "generating one.",
        ),
    ] = False,
    passwords_file: Annotated[
        Path | None,
        typer.Option(
            "--passwords-file",
            metavar="PATH",
            dir_okay=False,
            help="Write generated passwords to this new file (owner-only; JSON lines of email "
            "and password) instead of stdout; it must not exist.",
        ),
    ] = None,
    force: ForceOption = False,
    keep_sessions: Annotated[
        bool,
        typer.Option(
            "--keep-sessions",
            help="Do not revoke the database access tokens of users deactivated or given a new "
            "password.",
        ),
    ] = False,
    allow_weak_password: AllowWeakPasswordOption = False,
    keep_unknown_hashes: Annotated[
        bool,
        typer.Option(
            "--keep-unknown-hashes",
            help="Take a hashed_password that is not Argon2 or bcrypt as it is (as import-users).",
        ),
    ] = False,
    raw_csv: Annotated[
        bool,
        typer.Option("--raw-csv", help="Read CSV cells exactly as written (as import-users)."),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Do not ask before deactivating or deleting users."),
    ] = False,
    dry_run: DryRunOption = False,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="With --dry-run: exit 6 when the plan would change something, 0 when not.",
        ),
    ] = False,
    output: Annotated[
        PlanOutput,
        typer.Option(
            "--output",
            "-o",
            help="table: the plan as lines; json or jsonl: the plan as data.",
            case_sensitive=False,
        ),
    ] = PlanOutput.table,
) -> None:
    """Make the users what FILE says, all or nothing, after showing the plan.

    FILE lists users as import-users reads them (JSON lines, CSV, a JSON array) or as a YAML
    list: email, and any of is_active, is_superuser, is_verified, the table's other columns,
    password or hashed_password. The plan says, per user: + create, ~ update (field old -> new),
    = unchanged, and with --prune - deactivate (--prune-delete: - delete) for the users the file
    leaves out; the list filters (--email-domain, --email, --id, ...) narrow which users pruning
    may touch. Fields an entry leaves out are kept; so are existing users' passwords, unless
    --update-passwords. A new user without a password gets a generated one, printed once (or
    written to --passwords-file). A run that changes nothing writes nothing. Deactivating or
    deleting asks first on a terminal; without one it needs --yes.

    \b
    Example:
      usersctl apply users.yaml --dry-run
      usersctl apply users.yaml --dry-run --exit-code -o json
      usersctl apply old-corp.yaml --prune --email-domain old-corp.net --yes
      usersctl apply staff.csv --passwords-file new-passwords.jsonl
    """
    settings = settings_of(ctx)
    if prune and prune_delete:
        fail("--prune deactivates and --prune-delete deletes; choose one", ExitCode.USAGE)
    if exit_code and not dry_run:
        fail("--exit-code goes with --dry-run (it says whether the plan is empty)", ExitCode.USAGE)
    if settings.user_manager_path is not None:
        fail(
            "apply does not run the app's user manager; use import-users --user-manager",
            ExitCode.USAGE,
        )
    if passwords_file is not None and require_passwords:
        fail(
            "--require-passwords generates no password to write to --passwords-file", ExitCode.USAGE
        )
    if passwords_file is not None and (passwords_file.exists() or passwords_file.is_symlink()):
        _refuse_existing(passwords_file)  # said before the plan; created exclusively after it
    from usersctl.importing.applying import ApplyOptions, refuse_without_prune
    from usersctl.importing.reading import format_for

    fmt = format_for(file, input_format.value if input_format else None, yaml=True)
    helper = call(settings.password_helper)
    options = call(
        lambda: ApplyOptions(
            prune=prune,
            prune_delete=prune_delete,
            filters=list_filters(
                active=active,
                superuser=superuser,
                verified=verified,
                search=search,
                emails=emails,
                email_domain=email_domain,
                ids=ids,
                created_after=created_after,
                created_before=created_before,
            ),
            update_passwords=update_passwords,
            require_passwords=require_passwords,
        )
    )
    call(lambda: refuse_without_prune(options))

    async def plan() -> Any:
        from usersctl.importing.applying import plan_apply, read_desired
        from usersctl.importing.checking import FileCheck
        from usersctl.password_policy import password_problems

        async with settings.open_users() as ctx_users:
            check = FileCheck(
                ctx_users.model,
                "fail",
                keep_unknown_hashes=keep_unknown_hashes,
                password_policy=None if allow_weak_password else password_problems,
                passwordless=True,
            )
            with open_input(file) as stream:
                rows = read_desired(stream, fmt, check, raw_csv=raw_csv)
            return rows, await plan_apply(ctx_users, rows, options)

    rows, the_plan = run(plan, settings)
    structured = output is not PlanOutput.table
    if not structured:
        _print_plan(the_plan, dry_run)
    if the_plan.empty:
        if structured:
            _print_data(the_plan, output, reveal=False)
        say("Nothing to do: the users are as the file says.")
        return
    destructive = the_plan.destructive
    if destructive and not (yes or dry_run):
        if file == "-" or not sys.stdin.isatty():
            why = "stdin holds the file, not an answer" if file == "-" else "no terminal to ask on"
            fail(
                f"refusing to deactivate or delete {len(destructive)} user(s) without "
                f"confirmation: {why}; pass --yes",
                ExitCode.USAGE,
            )
        question = f"Apply this plan, deactivating or deleting {len(destructive)} user(s)?"
        if not call(lambda: typer.confirm(question, err=True)):
            fail("aborted; nothing was changed", ExitCode.FAILURE)
    generated = [step for step in the_plan.steps if step.password is not None]
    secrets_out = (
        _create_private(passwords_file) if passwords_file and generated and not dry_run else None
    )

    async def write() -> None:
        from usersctl.importing.applying import carry_out
        from usersctl.users import choose_hashing

        async with settings.open_users(write=True) as ctx_users:
            choice = await choose_hashing(ctx_users, settings.hash_scheme, helper)
            the_plan.hash_note = choice.note
            await carry_out(
                ctx_users,
                the_plan,
                rows,
                options,
                dry_run=dry_run,
                force=force,
                keep_sessions=keep_sessions,
                hashing=choice.hashing,
            )
            if dry_run:
                await ctx_users.session.rollback()
            else:
                await ctx_users.session.commit()

    try:
        run(write, settings)
    except BaseException:
        if secrets_out is not None:
            secrets_out.close()
            passwords_file.unlink(missing_ok=True)  # type: ignore[union-attr]
        raise
    if the_plan.hash_note and not dry_run:
        say(the_plan.hash_note)
    if secrets_out is not None:
        with secrets_out:
            for step in generated:
                line = {"email": step.email, "password": step.password}
                secrets_out.write(json.dumps(line, ensure_ascii=False) + "\n")
        say(f"Wrote {len(generated)} generated password(s) to {passwords_file}.")
    reveal = not dry_run and secrets_out is None
    if structured:
        _print_data(the_plan, output, reveal=reveal)
    elif reveal:
        for step in generated:
            typer.echo(f"password for {for_terminal(step.email)}: {step.password}")
    if allow_weak_password:
        warn("Warning: plaintext passwords were not checked against the password policy.")
    if the_plan.revoked_tokens:
        say(f"Revoked {the_plan.revoked_tokens} access token(s).")
    if dry_run:
        say("Dry run: nothing was written.")
        if exit_code:
            raise typer.Exit(int(ExitCode.CHECK_FAILED))
    else:
        counts = the_plan.counts()
        say(
            "Applied: "
            + ", ".join(f"{counts[action]} {_PAST[action]}" for action in _PAST if counts[action])
            + "."
        )


_PAST = {
    "create": "created",
    "update": "updated",
    "deactivate": "deactivated",
    "delete": "deleted",
    "unchanged": "unchanged",
}


def _shown(value: Any) -> str:
    return for_terminal(to_text(value)) if value is not None else "null"


def _print_plan(plan: Any, dry_run: bool) -> None:
    """The plan as lines on stdout: ``+ create``, ``~ update`` (with ``field: old -> new``
    below), ``= unchanged``, ``- deactivate``, ``- delete``, then the counts."""
    lines = []
    for step in plan.steps:
        who = for_terminal(step.email)
        if step.id is not None and step.action != "create":
            who += f" (id {for_terminal(str(step.id))})"
        if step.action == "create" and step.password is not None:
            who += " (password generated)"
        lines.append(f"{_MARKS[step.action]} {step.action} {who}")
        for name, (old, new) in step.changes.items():
            if step.action == "update":
                lines.append(f"    {for_terminal(name)}: {_shown(old)} -> {_shown(new)}")
            elif step.action == "create" and name != "email":
                lines.append(f"    {for_terminal(name)}: {_shown(new)}")
    counts = plan.counts()
    verb = "would" if dry_run else "will"
    lines.append(
        f"Plan: {verb} create {counts['create']}, update {counts['update']}, deactivate "
        f"{counts['deactivate']}, delete {counts['delete']}; {counts['unchanged']} unchanged."
    )
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _print_data(plan: Any, output: PlanOutput, *, reveal: bool) -> None:
    """The plan as data: ``[{action, email, id, changes: {field: {old, new}}, password?}]``;
    ``password`` (a generated one) only once it is in the database and not written to a file."""
    items = []
    for step in plan.steps:
        item: dict[str, Any] = {
            "action": step.action,
            "email": step.email,
            "id": to_jsonable(step.id),
            "changes": {
                name: {"old": to_jsonable(old), "new": to_jsonable(new)}
                for name, (old, new) in step.changes.items()
            },
        }
        if reveal and step.password is not None:
            item["password"] = step.password
        items.append(item)
    if output is PlanOutput.json:
        sys.stdout.write(json.dumps(items, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    sys.stdout.flush()


def _create_private(path: Path) -> Any:
    """``path`` created for this run alone (it must not exist), readable by its owner only."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError:
        _refuse_existing(path)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}", ExitCode.USAGE)
    os.fchmod(descriptor, 0o600)  # whatever the umask
    return open(descriptor, "w", encoding="utf-8")


def _refuse_existing(path: Path) -> None:
    fail(f"--passwords-file {path} exists; apply writes a new file only", ExitCode.USAGE)
