"""Users named for a command that takes several: as arguments or, with ``-``, one a line on
stdin; and ``--missing-ok``. One way for activate-user, deactivate-user, delete-user,
set-password and revoke-sessions: the same rules, the same messages."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from usersctl.commands.options import complete_user
from usersctl.commands.render import say
from usersctl.errors import InvalidInput

if TYPE_CHECKING:
    from usersctl.users import UserContext

_NAMED = typer.Argument(
    metavar="EMAIL_OR_ID...",
    help="Emails (any case) or ids of the users; - reads them from stdin, one a line.",
    autocompletion=complete_user,
    show_default=False,
)
NamedUsersArgument = Annotated[list[str], _NAMED]
#: For a command that may also take no users (revoke-sessions --all).
OptionalNamedUsersArgument = Annotated[list[str] | None, _NAMED]
MissingOkOption = Annotated[
    bool,
    typer.Option(
        "--missing-ok", help="Skip users that do not exist (said on stderr) instead of exit 3."
    ),
]


def from_stdin(given: Sequence[str]) -> bool:
    """Whether the users are read from stdin (``-``), which then holds no password."""
    return "-" in given


def read_named(given: Sequence[str]) -> list[str]:
    """The users as named: ``given``, or with ``-`` (alone) the lines of stdin, stripped, blank
    lines skipped. Raises ``InvalidInput`` for ``-`` beside names, or nobody on stdin."""
    if not from_stdin(given):
        return list(given)
    if list(given) != ["-"]:
        raise InvalidInput("- reads the users from stdin; give it alone")
    try:
        text = sys.stdin.read()
    except UnicodeDecodeError:
        raise InvalidInput("stdin is not UTF-8 text (one email or id a line)") from None
    refs = [line.strip() for line in text.splitlines() if line.strip()]
    if not refs:
        raise InvalidInput("no users on stdin (one email or id a line)")
    return refs


async def find_named(
    ctx_users: UserContext, refs: Sequence[str], *, missing_ok: bool, nothing: str
) -> tuple[list[Any], list[str]]:
    """The users ``refs`` name (each once, in order) and the refs that match nobody. Without
    ``missing_ok`` any such ref raises ``UserNotFound`` naming all of them, and ``nothing``
    (``"nothing was deleted"``) says that the command wrote nothing."""
    from usersctl import users
    from usersctl.errors import UserNotFound

    found, missing = await users.find_users(ctx_users, refs, missing_ok=True)
    missing = [ref.strip() for ref in missing]
    if missing and not missing_ok:
        named = ", ".join(repr(ref) for ref in missing)
        raise UserNotFound(f"no user {named}; {nothing} (--missing-ok skips them)")
    return found, missing


def say_skipped(missing: Sequence[str]) -> None:
    """One line on stderr for each user ``--missing-ok`` skipped."""
    for ref in missing:
        say(f"No user {ref!r}: skipped.")


def not_found_rows(missing: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of the skipped users in a command's id, email, status output."""
    return [{"id": None, "email": ref, "status": "not found"} for ref in missing]
