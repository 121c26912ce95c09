"""The library's exceptions. Each says what went wrong in one sentence; the CLI maps them to exit codes."""

from __future__ import annotations


class UsersctlError(Exception):
    """Base class: a failure whose message is fit to show a person as it is."""


class InvalidInput(UsersctlError):
    """A value given by the caller is not acceptable (email, id, field, password, file)."""


class NotFound(UsersctlError):
    """What was named does not exist."""


class UserNotFound(NotFound):
    """No user has the given email or id."""


class OAuthAccountNotFound(NotFound):
    """The user has no OAuth account with the given provider."""


class Conflict(UsersctlError):
    """The change clashes with what is in the database."""


class UserAlreadyExists(Conflict):
    """Another user already has this email (compared case-insensitively)."""


class AmbiguousUser(Conflict):
    """Several users have the address in different case (a table without the lower(email)
    index), and none is stored exactly as given."""


class ConstraintConflict(Conflict):
    """A unique or foreign-key constraint refuses the change (named by usersctl where SQLite
    does not name it)."""


class LastSuperuser(Conflict):
    """The change would leave the database without an active superuser."""


class DatabaseProblem(UsersctlError):
    """The database cannot be reached or used as it is."""


class TablesMissing(DatabaseProblem):
    """The user table does not exist yet."""


class CheckFailed(UsersctlError):
    """A check answered no (a password that does not match, a failed doctor check)."""


class HookFailed(UsersctlError):
    """One of the app's UserManager hooks raised after the change was committed."""
