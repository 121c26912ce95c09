"""The app's own ``UserManager`` (``--user-manager module.path:attribute``): loaded from the app,
built over usersctl's adapter and session, and its rules run where FastAPI Users' routes run
them, with ``request=None``: ``validate_password`` before anything is written, the ``on_after_*``
hooks after the commit.

The attribute is the app's ``get_user_manager`` dependency (an async generator taking the user
database, as FastAPI Users' documentation writes it) or its ``UserManager`` class.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from usersctl.app_code import load_app_attribute
from usersctl.errors import Conflict, HookFailed, InvalidInput

if TYPE_CHECKING:
    from usersctl.passwords import Hashing


def load_manager_factory(path: str) -> Any:
    """Import ``module.path:attribute`` (the current folder is importable, as for ``--model``)."""
    found = load_app_attribute(path, "--user-manager")
    attribute_path = path.strip().partition(":")[2]
    if not (inspect.isasyncgenfunction(found) or isinstance(found, type)):
        raise InvalidInput(
            f"--user-manager {path}: {attribute_path} is neither an async generator "
            "(get_user_manager) nor a UserManager class"
        )
    return found


@asynccontextmanager
async def open_manager(path: str, user_db: Any) -> AsyncIterator[Any]:
    """The app's user manager over ``user_db`` (usersctl's adapter on its session)."""
    factory = load_manager_factory(path)
    if isinstance(factory, type):
        manager = factory(user_db)
        _check(path, manager)
        yield manager
        return
    generator = factory(user_db)
    try:
        manager = await generator.__anext__()
    except StopAsyncIteration:
        raise InvalidInput(f"--user-manager {path}: the generator yielded no manager") from None
    _check(path, manager)
    try:
        yield manager
    finally:
        await generator.aclose()


def _check(path: str, manager: Any) -> None:
    missing = [
        name
        for name in ("validate_password", "on_after_register", "password_helper")
        if not hasattr(manager, name)
    ]
    if missing:
        raise InvalidInput(
            f"--user-manager {path}: {type(manager).__name__} is not a FastAPI Users user "
            f"manager (no {', '.join(missing)})"
        )


async def validate_password(manager: Any, password: str, user: Any) -> None:
    """The app's ``validate_password``; its ``InvalidPasswordException`` is ``InvalidInput``
    with the app's own reason (it never quotes the password)."""
    from fastapi_users.exceptions import InvalidPasswordException

    try:
        await manager.validate_password(password, user)
    except InvalidPasswordException as exc:
        raise InvalidInput(f"the app refused the password: {exc.reason}") from None


def user_create(values: dict[str, Any], password: str) -> Any:
    """What FastAPI Users hands ``validate_password`` for a new user: a ``UserCreate``."""
    from fastapi_users.schemas import BaseUserCreate

    return BaseUserCreate.model_construct(**values, password=password)


async def run_hook(manager: Any, hook: str, *args: Any, committed: str) -> None:
    """Run the hook ``hook`` after a commit; a failure says that ``committed`` is done."""
    try:
        await getattr(manager, hook)(*args, request=None)
    except Exception as exc:  # whatever the app's hook raises, reported, never hidden
        raise HookFailed(
            f"the app's {hook} hook failed ({type(exc).__name__}: {exc}); {committed}"
        ) from exc


def manager_hashing(manager: Any, path: str) -> Hashing:
    """The manager's own ``password_helper`` as usersctl's ``Hashing`` (the app may hash its own
    way): with ``--user-manager`` it makes every new hash, and neither ``--password-helper`` nor
    ``--hash-scheme`` is taken beside it (``Settings.password_helper``)."""
    from usersctl.passwords import Hashing

    return Hashing("app", manager.password_helper, path.strip())


async def password_hashing_of(path: str) -> Hashing:
    """The manager's ``password_helper`` alone, for a command that runs none of its rules
    (``doctor``): the manager is built without a user database (None), which it only stores."""
    async with open_manager(path, None) as manager:
        return manager_hashing(manager, path)


async def forgot_password(manager: Any, user: Any) -> None:
    """The app's ``forgot_password``: it makes the token and hands it to its own hook."""
    from fastapi_users import exceptions

    try:
        await manager.forgot_password(user, None)
    except exceptions.UserInactive:
        raise Conflict(f"{user.email} is inactive: the app makes no reset token for them") from None


async def request_verify(manager: Any, user: Any) -> None:
    """The app's ``request_verify``: it makes the token and hands it to its own hook."""
    from fastapi_users import exceptions

    try:
        await manager.request_verify(user, None)
    except exceptions.UserInactive:
        raise Conflict(f"{user.email} is inactive: the app does not verify them") from None
    except exceptions.UserAlreadyVerified:
        raise Conflict(f"{user.email} is already verified") from None


def secret_value(secret: Any) -> str:
    """A manager's secret: a string, or pydantic's ``SecretStr``."""
    getter = getattr(secret, "get_secret_value", None)
    return str(getter() if getter else secret)
