"""The command-line tests hash at Argon2's lowest cost in-process (see ``quick_hashing`` in
tests/harness.py); everything else they use comes from the harness, by fixture name or with
``from harness import ...``."""

import pytest


@pytest.fixture(autouse=True)
def _quick_hashing(quick_hashing: None) -> None:
    """Every test here gets ``quick_hashing``."""
