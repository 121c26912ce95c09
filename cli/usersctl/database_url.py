"""Where the database URL comes from: the option, the environment, a dotenv file, or the default.

Apps keep their URL in a ``.env`` file more often than in the shell's environment; usersctl reads
it there too, and says where the URL it used came from, so that a command that reached the wrong
database says which setting sent it there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from usersctl import DEFAULT_DATABASE_URL
from usersctl.errors import DatabaseProblem, InvalidInput

#: The variables that hold the URL, in the order they are looked at.
URL_VARIABLES = ("USERSCTL_DATABASE_URL", "DATABASE_URL")
DEFAULT_SOURCE = "the built-in default"
DOTENV = ".env"


@dataclass(frozen=True)
class DatabaseURL:
    """A database URL and, in words, where it came from (``--database-url``, ``DATABASE_URL``,
    ``DATABASE_URL in .env``, the built-in default)."""

    url: str
    source: str = DEFAULT_SOURCE

    @property
    def is_default(self) -> bool:
        return self.source == DEFAULT_SOURCE


def _from_file(path: Path) -> tuple[str, str] | None:
    """The first of ``URL_VARIABLES`` a dotenv file defines, as (name, value)."""
    from dotenv import dotenv_values  # only when there is a file to read

    values = dotenv_values(path)
    for name in URL_VARIABLES:
        if values.get(name):
            return name, str(values[name])
    return None


def resolve_database_url(
    option: str | None,
    env_file: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> DatabaseURL:
    """The URL to use: ``--database-url``, else the one in ``--env-file``, else
    ``USERSCTL_DATABASE_URL``, then ``DATABASE_URL``, else the one in ``./.env``, else the default.

    A file named explicitly beats the environment (it was asked for); ``./.env`` does not (as with
    other tools that read it). Raises ``InvalidInput`` when ``env_file`` defines neither variable
    and nothing else gives a URL."""
    if option:
        return DatabaseURL(option, "--database-url")
    if env_file is not None:
        found = _from_file(env_file)
        if found is not None:
            return DatabaseURL(found[1], f"{found[0]} in {env_file} (--env-file)")
    for name in URL_VARIABLES:
        if environ.get(name):
            return DatabaseURL(environ[name], name)
    if env_file is not None:
        raise InvalidInput(
            f"--env-file {env_file} defines neither {' nor '.join(URL_VARIABLES)}, and no "
            "other setting gives the database URL"
        )
    here = Path(DOTENV)
    if here.is_file():
        found = _from_file(here)
        if found is not None:
            return DatabaseURL(found[1], f"{found[0]} in ./{DOTENV}")
    return DatabaseURL(DEFAULT_DATABASE_URL)


def require_database(database: DatabaseURL) -> str:
    """The URL, unless it is the built-in default and its file does not exist: then no setting
    pointed at a database, and ``DatabaseProblem`` says so rather than advise creating one."""
    if database.is_default:
        from usersctl.engine import normalize_url, sqlite_path

        path = sqlite_path(normalize_url(database.url))
        if path is not None and not path.exists():
            shown = path if path.is_absolute() else f"./{path}"
            raise DatabaseProblem(
                f"{shown}, {DEFAULT_SOURCE}, does not exist, and no setting names another database "
                f"(--database-url, --env-file, {', '.join(URL_VARIABLES)} or ./{DOTENV})"
            )
    return database.url
