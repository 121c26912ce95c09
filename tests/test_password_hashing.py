"""Password hashing: FastAPI Users' exact configuration, checked against the real package."""

from __future__ import annotations

import base64
import re

import argon2
import bcrypt
import pytest
from fastapi_users.password import PasswordHelper
from hypothesis import given, settings
from hypothesis import strategies as st

from usersctl import passwords
from usersctl.passwords import (
    generate_password,
    hash_many,
    hash_password,
    hash_scheme,
    is_known_hash,
    verify_and_update,
    verify_password,
)

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def our_hash() -> str:
    return hash_password(PASSWORD)


@pytest.fixture(scope="module")
def their_hash() -> str:
    return PasswordHelper().hash(PASSWORD)


@pytest.fixture(scope="module")
def bcrypt_hash() -> str:
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


@pytest.fixture(scope="module")
def outdated_argon2_hash() -> str:
    # RFC 9106's second recommended option: argon2id, but not argon2-cffi's defaults.
    return argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash(PASSWORD)


def is_current_argon2(hashed: str) -> bool:
    parameters = argon2.extract_parameters(hashed)
    return (
        parameters.type,
        parameters.memory_cost,
        parameters.time_cost,
        parameters.parallelism,
    ) == (argon2.Type.ID, 65536, 3, 4)


def test_new_hashes_are_argon2id_with_argon2_cffi_defaults(our_hash: str) -> None:
    assert re.fullmatch(
        r"\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}", our_hash
    )
    assert is_current_argon2(our_hash)
    assert hash_scheme(our_hash) == "argon2"


def test_each_hash_has_its_own_salt(our_hash: str) -> None:
    again = hash_password(PASSWORD)
    assert again != our_hash
    assert verify_password(PASSWORD, again)


def test_our_hash_verifies_with_fastapi_users(our_hash: str) -> None:
    helper = PasswordHelper()
    assert helper.verify_and_update(PASSWORD, our_hash) == (True, None)
    assert helper.verify_and_update(PASSWORD + "!", our_hash) == (False, None)


def test_fastapi_users_hash_verifies_here(their_hash: str) -> None:
    assert verify_and_update(PASSWORD, their_hash) == (True, None)
    assert verify_and_update(PASSWORD.upper(), their_hash) == (False, None)
    assert verify_password(PASSWORD, their_hash) is True
    assert hash_scheme(their_hash) == "argon2"


def test_a_bcrypt_hash_verifies_and_is_upgraded_to_argon2(bcrypt_hash: str) -> None:
    assert hash_scheme(bcrypt_hash) == "bcrypt"

    verified, new_hash = verify_and_update(PASSWORD, bcrypt_hash)

    assert verified is True
    assert new_hash is not None and is_current_argon2(new_hash)
    assert verify_and_update(PASSWORD, new_hash) == (True, None)
    # FastAPI Users does the same at login
    assert PasswordHelper().verify_and_update(PASSWORD, new_hash) == (True, None)


def test_a_wrong_password_against_bcrypt_is_no_match_and_no_upgrade(bcrypt_hash: str) -> None:
    assert verify_and_update("wrong", bcrypt_hash) == (False, None)


def test_an_outdated_argon2_hash_is_upgraded(outdated_argon2_hash: str) -> None:
    assert hash_scheme(outdated_argon2_hash) == "argon2-outdated"

    verified, new_hash = verify_and_update(PASSWORD, outdated_argon2_hash)

    assert verified is True
    assert new_hash is not None and is_current_argon2(new_hash)
    assert hash_scheme(new_hash) == "argon2"
    assert verify_and_update("wrong", outdated_argon2_hash) == (False, None)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "!DISABLED!",
        "garbage",
        "$argon2id$garbage",
        "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$bm90IGEgcmVhbCBoYXNo",
        "$2b$12$short",
        "$2b$04$" + "." * 53,
        "$pbkdf2-sha256$29000$abc$def",
        "\x00",
    ],
)
def test_unknown_or_disabled_hashes_are_no_match(stored: str) -> None:
    assert verify_and_update(PASSWORD, stored) == (False, None)
    assert verify_password(PASSWORD, stored) is False


def test_bcrypt_check_of_a_password_over_72_bytes_is_no_match(bcrypt_hash: str) -> None:
    long_password = PASSWORD + "x" * 72
    assert len(long_password.encode()) > 72
    with pytest.raises(ValueError):  # what bcrypt itself does, and FastAPI Users passes on
        PasswordHelper().verify_and_update(long_password, bcrypt_hash)

    assert verify_and_update(long_password, bcrypt_hash) == (False, None)
    # Multi-byte characters count in bytes: 25 characters, 75 bytes
    assert verify_and_update("€" * 25, bcrypt_hash) == (False, None)


@pytest.mark.parametrize(
    ("stored", "scheme"),
    [
        ("", "unknown"),
        ("!DISABLED!", "unknown"),
        ("$argon2id$v=19$m=65536,t=3,p=4$" + "A" * 22 + "$" + "A" * 43, "argon2"),
        ("$argon2id$v=19$m=19456,t=2,p=1$" + "A" * 22 + "$" + "A" * 43, "argon2-outdated"),
        ("$argon2i$v=19$m=65536,t=3,p=4$" + "A" * 22 + "$" + "A" * 43, "argon2-outdated"),
        ("$2b$12$" + "a" * 53, "bcrypt"),
        ("$2a$10$" + "a" * 53, "bcrypt"),
        ("$2b$12$" + "a" * 52, "unknown"),
        ("plain-text-password", "unknown"),
    ],
)
def test_hash_scheme_classifies_stored_hashes(stored: str, scheme: str) -> None:
    assert hash_scheme(stored) == scheme
    assert is_known_hash(stored) is (scheme != "unknown")


# Each example costs two Argon2 runs (about 0.1 s each): few examples, any text.
@settings(max_examples=8, deadline=None)
@given(password=st.text(max_size=80))
def test_any_password_verifies_against_its_own_hash(password: str) -> None:
    assert verify_and_update(password, hash_password(password)) == (True, None)


# Hashing many at once -----------------------------------------------------------------------------


def test_hashes_made_in_bulk_are_the_hashes_fastapi_users_makes() -> None:
    given = [PASSWORD, "pässwörd €", PASSWORD, "x" * 300]

    hashes = list(hash_many(given))

    assert len(hashes) == len(given)
    assert hashes[0] != hashes[2]  # a fresh salt each
    helper = PasswordHelper()
    for password, hashed in zip(given, hashes, strict=True):
        assert is_current_argon2(hashed)
        assert helper.verify_and_update(password, hashed) == (True, None)
        assert helper.verify_and_update(password + "!", hashed) == (False, None)


# Each example costs two Argon2 runs.
@settings(max_examples=4, deadline=None)
@given(password=st.text(max_size=40), salt=st.binary(min_size=16, max_size=16))
def test_bulk_hashing_computes_argon2_cffis_own_hash(password: str, salt: bytes) -> None:
    memory = passwords._Argon2Memory.for_current_hasher()
    assert memory is not None
    try:
        ours = memory.hash(password, salt=salt)
    finally:
        memory.release()
    theirs = argon2.low_level.hash_secret(
        password.encode(), salt, 3, 65536, 4, 32, argon2.Type.ID
    ).decode()
    assert ours == theirs


def test_each_hashing_thread_keeps_one_block_of_argon2_memory() -> None:
    from concurrent.futures import ThreadPoolExecutor

    memory = passwords._Argon2Memory.for_current_hasher()
    assert memory is not None
    with ThreadPoolExecutor(max_workers=2) as pool:
        hashes = list(pool.map(memory.hash, [f"pw-{n}" for n in range(6)]))
    blocks = list(memory.blocks)
    sizes = [len(mapped) for mapped, _ in blocks]
    memory.release()

    assert sizes in ([65536 * 1024], [65536 * 1024] * 2)
    assert all(mapped.closed for mapped, _ in blocks)
    assert memory.blocks == []
    assert all(verify_password(f"pw-{n}", hashed) for n, hashed in enumerate(hashes))


def test_bulk_hashing_follows_a_hasher_configured_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher

    cheaper = PasswordHash((Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1),))
    monkeypatch.setattr(passwords, "password_hash", lambda: cheaper)

    assert passwords._Argon2Memory.for_current_hasher() is None
    hashes = list(hash_many(["one", "two"]))

    assert [argon2.extract_parameters(hashed).time_cost for hashed in hashes] == [2, 2]
    assert cheaper.verify("two", hashes[1])


def test_generated_passwords_are_distinct_and_256_bits() -> None:
    passwords = [generate_password() for _ in range(200)]

    assert len(set(passwords)) == 200
    for password in passwords:
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", password)
        assert len(base64.urlsafe_b64decode(password + "=")) == 32
    # Drawn from the whole alphabet, not a few characters of it
    assert len(set("".join(passwords))) == 64


# What a stored hash costs to verify: refused beyond FastAPI Users' own costs -------------------

_SALT_AND_DIGEST = "$c2FsdHNhbHQ$aGFzaGhhc2g"
_BCRYPT_TAIL = "$" + "a" * 53


def _argon2(memory: int | str, time_cost: int | str, parallelism: int | str) -> str:
    return f"$argon2id$v=19$m={memory},t={time_cost},p={parallelism}{_SALT_AND_DIGEST}"


@pytest.mark.parametrize(
    ("hashed", "problem"),
    [
        ("$2b$04" + _BCRYPT_TAIL, None),
        ("$2b$16" + _BCRYPT_TAIL, None),
        ("$2b$03" + _BCRYPT_TAIL, "bcrypt cost 3 is outside 4-16"),
        ("$2b$17" + _BCRYPT_TAIL, "bcrypt cost 17 is outside 4-16"),
        ("$2b$31" + _BCRYPT_TAIL, "bcrypt cost 31 is outside 4-16"),
        (_argon2(65536, 3, 4), None),
        (_argon2(8, 1, 1), None),  # the least Argon2 allows
        (_argon2(16 * 64, 1, 64), None),
        (_argon2(1 << 20, 0, 1), "Argon2 time cost 0 is outside 1-16"),
        (
            _argon2(65536, 16, 1),
            "Argon2 memory 65536 KiB times 16 passes is over 983040 "
            "(five times FastAPI Users' cost)",
        ),
        (_argon2(61440, 16, 1), None),  # 983040 exactly
        (
            _argon2(61441, 16, 1),
            "Argon2 memory 61441 KiB times 16 passes is over 983040 "
            "(five times FastAPI Users' cost)",
        ),
        (_argon2(1 << 20, 17, 1), "Argon2 time cost 17 is outside 1-16"),
        (_argon2((1 << 20) + 1, 1, 1), "Argon2 memory 1048577 KiB is outside 8-1048576"),
        (
            _argon2(1 << 20, 1, 1),
            "Argon2 memory 1048576 KiB times 1 passes is over 983040 "
            "(five times FastAPI Users' cost)",
        ),
        (_argon2(31, 1, 4), "Argon2 memory 31 KiB is outside 32-1048576"),
        (_argon2(32, 1, 4), None),
        (_argon2(512, 1, 0), "Argon2 parallelism 0 is outside 1-64"),
        (_argon2(8 * 65, 1, 65), "Argon2 parallelism 65 is outside 1-64"),
        (_argon2("1" * 12, 1, 1), "Argon2 memory 111111111111 KiB is outside 8-1048576"),
        (_argon2("1" * 13, 1, 1), "an Argon2 cost parameter has too many digits"),
        (_argon2(8, "1" * 13, 1), "an Argon2 cost parameter has too many digits"),
        (_argon2(8, 1, "1" * 13), "an Argon2 cost parameter has too many digits"),
        ("plain text", None),  # not a hash this judges
    ],
)
def test_hash_cost_problem_names_what_is_out_of_bounds(hashed: str, problem: str | None) -> None:
    assert passwords.hash_cost_problem(hashed) == problem


def test_outdated_asks_the_helper_hasher_that_identifies_the_hash(
    our_hash: str, outdated_argon2_hash: str, bcrypt_hash: str
) -> None:
    from pwdlib import PasswordHash
    from pwdlib.hashers.argon2 import Argon2Hasher
    from pwdlib.hashers.bcrypt import BcryptHasher

    app = passwords.Hashing("app", PasswordHash((Argon2Hasher(), BcryptHasher())), "app:hash")
    assert app.outdated(our_hash) is False
    assert app.outdated(outdated_argon2_hash) is True
    assert app.outdated(bcrypt_hash) is True  # 4 rounds, the hasher's own are 12
    bcrypt_only = passwords.Hashing("app", PasswordHash((BcryptHasher(),)), "app:hash")
    assert bcrypt_only.outdated(our_hash) is None  # no hasher of its identifies it
    assert passwords.ARGON2.outdated(our_hash) is None  # no helper
    # The app's own costs decide: its parameters are the outdated hash's
    slow = Argon2Hasher(time_cost=2, memory_cost=19456, parallelism=1)
    assert (
        passwords.hash_scheme(outdated_argon2_hash, passwords.Hashing("app", PasswordHash((slow,))))
        == "argon2"
    )
    assert passwords.hash_scheme(our_hash, passwords.Hashing("app", PasswordHash((slow,)))) == (
        "argon2-outdated"
    )


def test_hashing_in_the_background_gives_a_hash_of_the_password() -> None:
    future = passwords.hash_password_in_background(PASSWORD, passwords.BCRYPT)
    hashed = future.result(timeout=30)
    assert hashed.startswith("$2b$12$") and bcrypt.checkpw(PASSWORD.encode(), hashed.encode())


def test_hashing_in_the_background_hands_over_the_error() -> None:
    future = passwords.hash_password_in_background("x" * 100, passwords.BCRYPT)
    with pytest.raises(ValueError):  # bcrypt refuses a password over 72 bytes
        future.result(timeout=30)


class _RecordingHash:
    """pwdlib's bcrypt (8 rounds) that notes which thread made each hash, and when it ended."""

    def __init__(self) -> None:
        import threading

        from pwdlib import PasswordHash
        from pwdlib.hashers.bcrypt import BcryptHasher

        self.inner = PasswordHash((BcryptHasher(rounds=8),))
        self.lock = threading.Lock()
        self.threads: list[str] = []
        self.daemons: list[bool] = []

    def hash(self, password: str) -> str:
        import threading

        hashed = self.inner.hash(password)
        with self.lock:
            self.threads.append(threading.current_thread().name)
            self.daemons.append(threading.current_thread().daemon)
        return hashed


def test_bulk_hashing_runs_on_one_named_thread_per_core() -> None:
    import os

    helper = _RecordingHash()
    hashing = passwords.Hashing("app", helper, "tests:recording")
    hashes = list(hash_many([f"pw-{n}" for n in range(8)], hashing=hashing))
    assert [bcrypt.checkpw(f"pw-{n}".encode(), h.encode()) for n, h in enumerate(hashes)] == [
        True
    ] * 8
    assert all(name.startswith("usersctl-hash") for name in helper.threads)
    assert len(set(helper.threads)) == min(8, os.cpu_count() or 1)


def test_bulk_hashing_stopped_early_cancels_what_has_not_started_and_waits_for_the_rest() -> None:
    import time

    helper = _RecordingHash()
    hashing = passwords.Hashing("app", helper, "tests:recording")
    hashes = hash_many([f"pw-{n}" for n in range(40)], hashing=hashing)
    next(hashes)
    hashes.close()  # the consumer stops: no new hash starts, a running one ends first
    done = len(helper.threads)
    assert done < 40
    time.sleep(0.3)
    assert len(helper.threads) == done


def test_an_argon2_error_is_raised_in_argon2s_words() -> None:
    from argon2.exceptions import HashingError

    with pytest.raises(HashingError) as error:
        passwords._Argon2Memory(_parameters(1)).hash(PASSWORD)
    assert str(error.value) == "Memory cost is too small"


def test_a_helper_with_no_hashers_to_ask_identifies_nothing(our_hash: str) -> None:
    # Neither pwdlib's hashers nor passlib's context: usersctl cannot tell, and says so.
    assert passwords.Hashing("app", object(), "app:helper").identifies(our_hash) is None
    assert passwords.Hashing("app", object(), "app:helper").outdated(our_hash) is None


def test_hashing_in_the_background_runs_on_a_named_daemon_thread() -> None:
    helper = _RecordingHash()
    hashing = passwords.Hashing("app", helper, "tests:recording")
    hashed = passwords.hash_password_in_background(PASSWORD, hashing).result(timeout=30)
    assert bcrypt.checkpw(PASSWORD.encode(), hashed.encode())
    # A daemon: a command that fails meanwhile exits without waiting for the hash.
    assert (helper.threads, helper.daemons) == (["usersctl-hash"], [True])


def _parameters(memory_cost: int) -> argon2.Parameters:
    return argon2.Parameters(
        type=argon2.Type.ID,
        version=19,
        salt_len=16,
        hash_len=32,
        time_cost=1,
        memory_cost=memory_cost,
        parallelism=1,
    )


# cffi hands an exception in a callback to sys.unraisablehook, which prints it: not here
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_memory_that_cannot_be_had_is_argon2s_allocation_error_without_a_traceback(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from argon2.exceptions import HashingError

    with pytest.raises(HashingError) as error:
        passwords._Argon2Memory(_parameters(2**32 - 1)).hash(PASSWORD)  # 4 TiB
    assert str(error.value) == "Memory allocation error"
    assert capfd.readouterr() == ("", "")


def test_hashing_memory_works_again_after_its_release() -> None:
    memory = passwords._Argon2Memory(_parameters(1024))
    first = memory.hash(PASSWORD)
    memory.release()
    second = memory.hash(PASSWORD)
    assert first != second  # salts differ
    assert argon2.PasswordHasher().verify(second, PASSWORD)
    assert len(memory.blocks) == 1
    memory.release()
