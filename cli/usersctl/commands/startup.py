"""Start-up: the cyclic garbage collector waits while a command loads its modules.

Importing SQLAlchemy and the rest makes a couple of hundred thousand objects that live as long as
the process. The collector would walk them all several times over while they load, and once more
at exit, and find nothing to free: a sixth of a ``show-user``. So the entry point pauses it; when
a command starts its database work, the modules that work needs are loaded, frozen (they are never
scanned again), and collection resumes for what the command itself makes.

The libraries' own loggers are quieted too: what they would print (asyncio's ``socket.send()
raised exception.`` after a lost connection) would stand beside the command's one ``Error:`` line.
"""

from __future__ import annotations

import gc
import os

_paused = False


def pause_collector() -> None:
    """Pause collection until :func:`resume_collector` (the console-script entry point only)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_collector() -> None:
    """If :func:`pause_collector` paused collection: load what database work needs, freeze it,
    and resume."""
    global _paused
    if not _paused:
        return
    _paused = False
    import usersctl.users  # noqa: F401  (SQLAlchemy's asyncio and ORM layers come with it)

    gc.freeze()
    gc.enable()


#: Loggers of the libraries a command runs on; usersctl itself reports what failed.
LIBRARY_LOGGERS = ("asyncio", "asyncpg", "aiosqlite", "sqlalchemy")


def quiet_library_loggers() -> None:
    """Keep the libraries' log records off stderr (the console-script entry point only), unless
    ``USERSCTL_DEBUG`` is set: then they go to stderr as Python prints them by default."""
    import logging

    if os.environ.get("USERSCTL_DEBUG"):
        return
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
