"""Where a new password comes from: a hidden prompt, stdin, a file, or a generator. Never argv."""

from __future__ import annotations

import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import typer

from usersctl.commands.render import warn
from usersctl.errors import InvalidInput

SOURCES_HINT = "--password-stdin, --password-file PATH or --generate-password"


@dataclass(frozen=True)
class PasswordInput:
    """The password to set, and whether usersctl generated it (then it is shown once)."""

    password: str
    generated: bool


def strip_newline(text: str) -> str:
    """Remove one trailing line ending; every other character, spaces included, is kept."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def prompt_hidden(*, confirm: bool) -> str:
    """Ask for a password on the terminal without echoing it (twice with ``confirm``)."""
    # Typer imports getpass only after it has printed "Password:". A Ctrl-C that lands in
    # that import is raised in an importlib callback, which CPython prints and drops, and the
    # prompt then waits as if nothing happened. Imported here, it is loaded before the prompt.
    import getpass  # noqa: F401

    answer: str = typer.prompt("Password", hide_input=True, confirmation_prompt=confirm, err=True)
    return answer


def read_password(*, stdin: bool, file: Path | None, generate: bool) -> PasswordInput:
    """Read the password from the one source chosen, or prompt on a terminal."""
    chosen = [
        name
        for name, on in (
            ("--password-stdin", stdin),
            ("--password-file", file is not None),
            ("--generate-password", generate),
        )
        if on
    ]
    if len(chosen) > 1:
        raise InvalidInput(f"choose one password source, not {' and '.join(chosen)}")
    if generate:
        from usersctl.passwords import generate_password

        return PasswordInput(generate_password(), generated=True)
    if stdin:
        password = strip_newline(sys.stdin.readline())
    elif file is not None:
        password = _read_file(file)
    elif sys.stdin.isatty():
        password = prompt_hidden(confirm=True)
    else:
        raise InvalidInput(f"no terminal to ask for the password on; use {SOURCES_HINT}")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:  # bytes that are not UTF-8 arrive as lone surrogates
        raise InvalidInput("the password is not valid UTF-8 text") from None
    if not password:
        raise InvalidInput("the password is empty")
    if "\x00" in password:
        raise InvalidInput("the password contains a NUL character")
    return PasswordInput(password, generated=False)


def enforce_policy(
    secret: PasswordInput, email: str | None, *, allow_weak: bool, may_ask: bool
) -> None:
    """Refuse a password that the built-in policy finds weak (``WeakPassword``, exit 2), unless
    ``allow_weak``, or a person at the terminal says yes (``may_ask``: stdin is not the
    password's source). A generated password always passes; a weak one let through is reported."""
    if secret.generated:
        return
    from usersctl.password_policy import WeakPassword, password_problems

    reasons = password_problems(secret.password, email)
    if not reasons:
        return
    if allow_weak:
        warn(f"Warning: weak password accepted (--allow-weak-password): {' '.join(reasons)}")
        return
    if may_ask and sys.stdin.isatty():
        for reason in reasons:
            warn(reason)
        if typer.confirm("Bypass password validation and use it anyway?", err=True):
            warn("Warning: weak password accepted at the prompt.")
            return
    raise WeakPassword(reasons)


def _read_file(path: Path) -> str:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"password file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidInput(f"password file {path} is a directory") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"password file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read password file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(f"Warning: password file {path} is readable by other users; chmod 600 it")
    elif mode & (stat.S_IWGRP | stat.S_IWOTH):
        # Others cannot read it, but they can replace the password before it is read.
        warn(f"Warning: password file {path} is writable by other users; chmod 600 it")
    return strip_newline(text)
