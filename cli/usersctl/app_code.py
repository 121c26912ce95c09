"""Loading the app's own objects (``--model``, ``--password-helper``, ``--user-manager``) from
``module.path:attribute``, as uvicorn and alembic load app code: the current folder is importable.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from usersctl.errors import InvalidInput


def load_app_attribute(path: str, option: str, form: str = "module.path:attribute") -> Any:
    """The object ``path`` names; ``InvalidInput`` naming ``option`` when the text is not of
    ``form``, the module cannot be imported (whatever it raises), or it lacks the attribute."""
    module_name, colon, attribute_path = path.strip().partition(":")
    if not colon or not module_name or not attribute_path:
        raise InvalidInput(f"{option} {path!r}: expected {form}")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:  # anything the app's module raises while it is imported
        raise InvalidInput(
            f"{option} {path}: cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    for part in attribute_path.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise InvalidInput(
                f"{option} {path}: {module_name!r} has no {attribute_path!r}"
            ) from None
    return found
