"""Typing into a prompt on a pseudo-terminal (pexpect), as a person does."""

from __future__ import annotations

from typing import Any


def type_hidden(child: Any, text: str) -> None:
    """Type ``text`` and Enter at a hidden prompt, once the prompt has turned echo off.

    Typer prints "Password:" before getpass takes the terminal; getpass then turns echo off and
    flushes what was typed ahead. Typed any earlier, the text could be echoed or thrown away.
    """
    assert child.waitnoecho(timeout=10), "the prompt never turned echo off"
    child.sendline(text)
