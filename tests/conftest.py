"""The tests' one harness is tests/harness.py; it is registered here as a plugin, so its fixtures
(``database_url``, ``cli``, ``db``, ``usersctl``, ``spawn``...) serve every test by name."""

pytest_plugins = ["harness"]
