"""Password hashing exactly as FastAPI Users does it: Argon2id for new hashes, bcrypt still verified.

Apps on FastAPI Users 12 or older verify bcrypt only; for them new hashes are bcrypt
(``Hashing``, chosen in ``usersctl.hash_choice``), and an app's own helper can make every hash.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pwdlib import PasswordHash

#: Stored in ``hashed_password`` by apps to make an account impossible to log in to.
DISABLED_MARKERS = ("", "!DISABLED!")


def is_disabled_marker(hashed: str) -> bool:
    """Whether ``hashed`` locks its account on purpose: empty, or ``!``/``*`` first, as in
    /etc/shadow (``!``, ``!DISABLED!``, ``*``), which no password hash begins with."""
    return hashed in DISABLED_MARKERS or hashed.startswith(("!", "*"))


@lru_cache(maxsize=1)
def password_hash() -> PasswordHash:
    """FastAPI Users' own ``PasswordHash``: Argon2 (argon2-cffi defaults) first, then bcrypt."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher
    from pwdlib.hashers.bcrypt import BcryptHasher

    return PasswordHash((Argon2Hasher(), BcryptHasher()))


#: The schemes usersctl writes, and what ``--hash-scheme`` accepts besides ``auto``.
SCHEMES = ("argon2", "bcrypt")


@dataclass(frozen=True)
class Hashing:
    """Which scheme new hashes get; stored hashes of either scheme are verified all the same.

    With ``helper`` (the app's own ``PasswordHelper`` or ``pwdlib.PasswordHash``, scheme
    ``app``), the helper makes every hash and every check, as the app's login does."""

    scheme: str = "argon2"
    helper: Any = None
    #: Where the helper came from (``module.path:attribute``), to name it in messages.
    helper_path: str | None = None

    def password_hash(self) -> Any:
        """What hashes and verifies: the helper, else pwdlib's ``PasswordHash`` that writes this
        scheme and verifies both."""
        if self.helper is not None:
            return self.helper
        argon2_first = password_hash()
        if self.scheme == "argon2":
            return argon2_first
        return _bcrypt_first(argon2_first)

    def hash(self, password: str) -> str:
        """A new hash of ``password`` in this scheme."""
        hashed: str = self.password_hash().hash(password)
        return hashed

    def identifies(self, hashed: str) -> bool | None:
        """Whether the helper recognises ``hashed`` as one of its schemes (None: no helper, or
        one whose hashers cannot be asked). Asks pwdlib's hashers (a ``PasswordHash``, or the
        ``password_hash`` of FastAPI Users 13+'s helper) or passlib's ``CryptContext`` (the
        ``context`` of FastAPI Users 12's helper); no password is hashed."""
        helper = self.helper
        if helper is None:
            return None
        hashers = self._hashers()
        if hashers is not None:
            return any(hasher.identify(hashed) for hasher in hashers)
        context = getattr(helper, "context", None)
        if context is not None and hasattr(context, "identify"):
            return context.identify(hashed, required=False) is not None
        return None

    def _hashers(self) -> Sequence[Any] | None:
        """The helper's pwdlib hashers: a ``PasswordHash``'s, or FastAPI Users 13+'s helper's."""
        return getattr(getattr(self.helper, "password_hash", self.helper), "hashers", None)

    def outdated(self, hashed: str) -> bool | None:
        """Whether the helper would re-hash ``hashed`` for its parameters (an Argon2 hash of
        other costs than its own), as the pwdlib hasher that identifies it says. None: no
        helper, none of its hashers identifies it, or it has none to ask (FastAPI Users 12's
        passlib helper, bcrypt only); no password is hashed."""
        hasher = next((h for h in self._hashers() or () if h.identify(hashed)), None)
        return None if hasher is None else bool(hasher.check_needs_rehash(hashed))


ARGON2 = Hashing("argon2")
BCRYPT = Hashing("bcrypt")


@lru_cache(maxsize=2)
def _bcrypt_first(argon2_first: PasswordHash) -> PasswordHash:
    """``argon2_first`` with its bcrypt hasher (FastAPI Users' 12 rounds, ``$2b$``) put first."""
    from pwdlib import PasswordHash
    from pwdlib.hashers.bcrypt import BcryptHasher

    others = [hasher for hasher in argon2_first.hashers if not isinstance(hasher, BcryptHasher)]
    return PasswordHash((BcryptHasher(), *others))


def hash_password(password: str, hashing: Hashing = ARGON2) -> str:
    """A new hash of ``password``: Argon2id unless ``hashing`` says bcrypt."""
    return hashing.hash(password)


def hash_password_in_background(password: str, hashing: Hashing = ARGON2) -> Future[str]:
    """Start hashing ``password`` in a daemon thread and return the future hash.

    Argon2 releases the GIL, so a command's imports and its connection to the database proceed
    while the ~0.1 s of hashing happens; a command that fails meanwhile does not wait for it.
    """
    future: Future[str] = Future()

    def work() -> None:
        if not future.set_running_or_notify_cancel():
            return  # nobody wants it any more
        try:
            hashed = hash_password(password, hashing)
        except BaseException as exc:  # handed to whoever awaits the hash
            future.set_exception(exc)
        else:
            future.set_result(hashed)

    threading.Thread(target=work, name="usersctl-hash", daemon=True).start()
    return future


class HashingStopped(Exception):
    """``hash_many`` was told to stop before every password was hashed."""


def hash_many(
    passwords: Sequence[str], stop: threading.Event | None = None, hashing: Hashing = ARGON2
) -> Generator[str, None, None]:
    """New hashes of ``passwords`` (Argon2id unless ``hashing`` says bcrypt), in order, hashed
    on every core at once (both release the GIL).

    They are the hashes ``hash_password`` makes (same parameters, a fresh salt each), but for
    Argon2 each worker thread keeps one block of memory (64 MiB at FastAPI Users' cost) for all
    of its passwords, instead of the block being mapped and faulted in page by page for every
    one. Once ``stop`` is set no new hash starts, and ``HashingStopped`` is raised where the next
    hash would have been.
    """
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(len(passwords), os.cpu_count() or 1))
    memory = _Argon2Memory.for_current_hasher() if hashing == ARGON2 else None
    hasher = memory.hash if memory else hashing.hash

    def hash_unless_stopped(password: str) -> str:
        if stop is not None and stop.is_set():
            raise HashingStopped
        return hasher(password)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="usersctl-hash")
    try:
        yield from pool.map(hash_unless_stopped, passwords)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if memory:
            memory.release()


_ARGON2_MEMORY_ALLOCATION_ERROR = -22


def _quietly(*exc_info: object) -> None:
    """cffi's hook for an exception in a callback: the callback's ``error`` value says enough."""


class _Argon2Memory:
    """Argon2id hashing through argon2-cffi's low-level ``argon2_ctx``, with the memory the C
    library asks for served from one reusable block per thread (its allocation callbacks).

    The library wipes the block after each hash, as it does memory it frees.
    """

    def __init__(self, parameters: Any) -> None:
        from argon2.low_level import ffi

        self.parameters = parameters
        self.blocks: list[tuple[Any, Any]] = []  # (mmap, its cffi pointer), to release at the end
        self.lock = threading.Lock()
        self.local = threading.local()
        # cffi callbacks; kept as attributes so they live as long as the contexts that use them.
        # A failed allocation is Argon2's own error, raised as HashingError, with no traceback.
        self.allocate = ffi.callback(
            "int(uint8_t **, size_t)",
            self._allocate,
            error=_ARGON2_MEMORY_ALLOCATION_ERROR,
            onerror=_quietly,
        )
        self.free = ffi.callback("void(uint8_t *, size_t)", self._free)

    @classmethod
    def for_current_hasher(cls) -> _Argon2Memory | None:
        """One for the parameters of FastAPI Users' Argon2 hasher, or None where this cannot be
        (a platform that refuses cffi callbacks, or a hasher whose hashes would differ)."""
        import argon2
        from argon2.low_level import ARGON2_VERSION

        hasher = argon2.PasswordHasher()  # pwdlib's Argon2Hasher uses argon2-cffi's defaults too
        parameters = argon2.Parameters(
            type=hasher.type,
            version=ARGON2_VERSION,
            salt_len=hasher.salt_len,
            hash_len=hasher.hash_len,
            time_cost=hasher.time_cost,
            memory_cost=hasher.memory_cost,
            parallelism=hasher.parallelism,
        )
        try:
            memory = cls(parameters)
        except (MemoryError, OSError):  # cffi cannot make callbacks here
            return None
        sample = memory.encode(bytes(hasher.salt_len), bytes(hasher.hash_len))
        if password_hash().current_hasher.check_needs_rehash(sample):
            return None
        return memory

    def hash(self, password: str, salt: bytes | None = None) -> str:
        """A new hash of ``password``, with a random salt unless ``salt`` is given."""
        from argon2.low_level import core, ffi

        p = self.parameters
        secret = password.encode("utf-8")
        salt = salt or secrets.token_bytes(p.salt_len)
        # The buffers must outlive the context, which only points at them.
        out = ffi.new("uint8_t[]", p.hash_len)
        secret_buffer = ffi.new("uint8_t[]", secret)
        salt_buffer = ffi.new("uint8_t[]", salt)
        context = ffi.new(
            "argon2_context *",
            {
                "out": out,
                "outlen": p.hash_len,
                "pwd": secret_buffer,
                "pwdlen": len(secret),
                "salt": salt_buffer,
                "saltlen": len(salt),
                "secret": ffi.NULL,
                "secretlen": 0,
                "ad": ffi.NULL,
                "adlen": 0,
                "t_cost": p.time_cost,
                "m_cost": p.memory_cost,
                "lanes": p.parallelism,
                "threads": p.parallelism,
                "version": p.version,
                "allocate_cbk": self.allocate,
                "free_cbk": self.free,
                "flags": 0,  # ARGON2_DEFAULT_FLAGS
            },
        )
        error = core(context, p.type.value)
        if error:
            from argon2.exceptions import HashingError
            from argon2.low_level import error_to_str

            raise HashingError(error_to_str(error))
        return self.encode(salt, bytes(ffi.buffer(out, p.hash_len)))

    def encode(self, salt: bytes, digest: bytes) -> str:
        """The PHC string argon2-cffi writes: unpadded standard base64."""
        from base64 import b64encode

        p = self.parameters
        return (
            f"$argon2{p.type.name.lower()}$v={p.version}"
            f"$m={p.memory_cost},t={p.time_cost},p={p.parallelism}"
            f"${b64encode(salt).decode().rstrip('=')}${b64encode(digest).decode().rstrip('=')}"
        )

    def _allocate(self, memory: Any, size: int) -> int:
        import mmap

        from argon2.low_level import ffi

        block = getattr(self.local, "block", None)
        if block is None or block[0].closed or len(block[0]) < size:
            mapped = mmap.mmap(-1, size)
            block = (mapped, ffi.from_buffer(mapped))
            self.local.block = block
            with self.lock:
                self.blocks.append(block)
        memory[0] = ffi.cast("uint8_t *", block[1])
        return 0

    def _free(self, memory: Any, size: int) -> None:
        """Nothing to do: the block stays with its thread for the next hash."""

    def release(self) -> None:
        """Unmap every block; call once no hash is running."""
        from argon2.low_level import ffi

        with self.lock:
            blocks, self.blocks = self.blocks, []
            self.local = threading.local()  # no thread may find a released block
        for mapped, pointer in blocks:
            ffi.release(pointer)
            mapped.close()


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches ``hashed``; an unknown, disabled or unusable hash is no match."""
    return verify_and_update(password, hashed)[0]


def verify_and_update(
    password: str, hashed: str, hashing: Hashing = ARGON2
) -> tuple[bool, str | None]:
    """Check ``password`` and, on a match with a hash of the other scheme than ``hashing``'s or
    with outdated parameters, return a new hash in ``hashing``'s scheme.

    Never raises for a bad hash: an unknown scheme, a disabled marker, or a bcrypt check of a
    password over 72 bytes (which bcrypt refuses) all mean "no match".
    """
    from pwdlib.exceptions import UnknownHashError

    if hashed in DISABLED_MARKERS:
        return False, None
    try:
        matched, new_hash = hashing.password_hash().verify_and_update(password, hashed)
    except (UnknownHashError, ValueError, TypeError):
        return False, None
    return bool(matched), new_hash


# The encodings FastAPI Users' hashers produce and accept (argon2-cffi's PHC string, modular bcrypt).
_ARGON2 = re.compile(
    r"\$argon2(?:id|i|d)\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}"
)
_BCRYPT = re.compile(r"\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}")


def hash_scheme(hashed: str, hashing: Hashing | None = None) -> str:
    """Classify a stored hash: ``argon2``, ``argon2-outdated``, ``bcrypt`` or ``unknown``.

    ``argon2-outdated`` is an Argon2 hash whose parameters differ from those of new hashes, which
    the app re-hashes at the next login: FastAPI Users' parameters, or those of the app's own
    helper (``hashing``) when it reads the hash.
    """
    if _ARGON2.fullmatch(hashed):
        outdated = hashing.outdated(hashed) if hashing is not None else None
        if outdated is None:
            outdated = password_hash().current_hasher.check_needs_rehash(hashed)
        return "argon2-outdated" if outdated else "argon2"
    if _BCRYPT.fullmatch(hashed):
        return "bcrypt"
    return "unknown"


def is_known_hash(hashed: str) -> bool:
    """Whether ``hashed`` is an Argon2 or bcrypt hash that FastAPI Users can verify."""
    return bool(_ARGON2.fullmatch(hashed) or _BCRYPT.fullmatch(hashed))


#: Cost bounds of a hash worth verifying. FastAPI Users writes bcrypt with 12 rounds and Argon2
#: with m=65536 KiB, t=3, p=4; a stored hash far beyond (bcrypt 31 rounds, Argon2 t=3000) makes
#: every login with it, the app's too, tie up a core for minutes, and cannot be interrupted.
BCRYPT_ROUNDS = range(4, 17)  # 16 rounds: 16 times FastAPI Users' cost, about 4 s
ARGON2_MAX_MEMORY_KIB = 1 << 20  # 1 GiB
ARGON2_MAX_TIME_COST = 16
ARGON2_MAX_PARALLELISM = 64
#: Memory times passes: 5 times FastAPI Users' 65536 KiB x 3.
ARGON2_MAX_WORK = 5 * 65536 * 3
_ARGON2_COSTS = re.compile(r"\$argon2(?:id|i|d)\$v=\d+\$m=(\d+),t=(\d+),p=(\d+)\$")


def hash_cost_problem(hashed: str) -> str | None:
    """Why ``hashed`` (an Argon2 or bcrypt hash) costs too much, or too little, to verify; None
    when its parameters are within what FastAPI Users' hashers produce and verify in time."""
    if _BCRYPT.fullmatch(hashed):
        rounds = int(hashed[4:6])
        if rounds not in BCRYPT_ROUNDS:
            return f"bcrypt cost {rounds} is outside {BCRYPT_ROUNDS.start}-{BCRYPT_ROUNDS.stop - 1}"
        return None
    found = _ARGON2_COSTS.match(hashed)
    if found is None:
        return None
    # An import's hashes share a handful of parameter sets: each is judged once.
    return _argon2_cost_problem(found.group(0))


@functools.lru_cache(maxsize=256)
def _argon2_cost_problem(parameters: str) -> str | None:
    """``hash_cost_problem`` of an Argon2 hash's ``$argon2id$v=19$m=...,t=...,p=...$``."""
    found = _ARGON2_COSTS.match(parameters)
    assert found is not None
    if any(len(part) > 12 for part in found.groups()):  # int() refuses thousands of digits
        return "an Argon2 cost parameter has too many digits"
    memory, time_cost, parallelism = (int(part) for part in found.groups())
    if not 1 <= parallelism <= ARGON2_MAX_PARALLELISM:
        return f"Argon2 parallelism {parallelism} is outside 1-{ARGON2_MAX_PARALLELISM}"
    if not 8 * parallelism <= memory <= ARGON2_MAX_MEMORY_KIB:
        return f"Argon2 memory {memory} KiB is outside {8 * parallelism}-{ARGON2_MAX_MEMORY_KIB}"
    if not 1 <= time_cost <= ARGON2_MAX_TIME_COST:
        return f"Argon2 time cost {time_cost} is outside 1-{ARGON2_MAX_TIME_COST}"
    if memory * time_cost > ARGON2_MAX_WORK:
        return (
            f"Argon2 memory {memory} KiB times {time_cost} passes is over {ARGON2_MAX_WORK} "
            "(five times FastAPI Users' cost)"
        )
    return None


def generate_password() -> str:
    """A random password from ``secrets`` (256 bits, URL-safe), as FastAPI Users generates them."""
    return secrets.token_urlsafe(32)
