"""Start-up: the cyclic garbage collector waits while a command loads its modules.

Importing SQLAlchemy and the rest makes a couple of hundred thousand objects that live as long as
the process. The collector would walk them all several times over while they load, and once more
at exit, and find nothing to free: a sixth of a ``show-user``. So the entry point pauses it; when
a command starts its database work, the modules that work needs are loaded, frozen (they are never
scanned again), and collection resumes for what the command itself makes.

The libraries' own loggers are quieted too: what they would print (asyncio's ``socket.send()
raised exception.`` after a lost connection) would stand beside the command's one ``Error:`` line.
So would Python's "Exception ignored in ..." report of a Ctrl-C that landed where it cannot be
raised (a callback of the import system's module locks, while a module loads): that interrupt is
delivered again instead, to the command's own handler.
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


def deliver_lost_interrupts() -> None:
    """A Ctrl-C raised inside a callback Python cannot raise from (a weakref callback, a
    finalizer) would be printed with its traceback and then lost, and the command would go on
    as if no one had pressed it. The entry point sends it again to the main thread instead,
    where the command's SIGINT handler takes it as it takes any other (the console-script entry
    point only). Other such exceptions are reported as Python reports them."""
    import _thread
    import sys
    import threading

    report = sys.unraisablehook

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # From another thread, a moment later: sent from this one, or at once, it would
            # be raised here again, inside the callback, and lost again.
            later = threading.Timer(0.01, _thread.interrupt_main)
            later.daemon = True
            later.start()
        else:
            report(unraisable)

    sys.unraisablehook = hook
