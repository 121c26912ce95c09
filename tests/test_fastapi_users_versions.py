"""usersctl installed beside apps pinned to FastAPI Users 13.0.0 and 12.1.3, the oldest it supports.

Each app's environment is a fresh virtual environment, made once per test session from PyPI:
the app's pins and a wheel of this checkout in one ``pip install``, which fails when usersctl's
dependency ranges exclude the app's pins. usersctl then runs there through its installed entry
point, and the users it writes log in through that version's own ``UserManager.authenticate``
(its ``PasswordHelper``: pwdlib for 13, passlib and bcrypt only for 12).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import shared_run_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
LOGIN_SCRIPT = Path(__file__).with_name("fastapi_users_login.py")
PASSWORD = "tr0ub4dor&3-but-longer"

#: Each app's requirements, as such apps pin them.
APPS = {
    "13.0.0": ["fastapi-users[sqlalchemy]==13.0.0"],
    "12.1.3": ["fastapi-users[sqlalchemy]==12.1.3", "bcrypt==4.0.1"],
}


@dataclass(frozen=True)
class AppEnvironment:
    """A virtual environment holding an app's pins and usersctl."""

    path: Path
    seconds: float  # how long making it took

    def run(
        self, *argv: str, input: str | None = None, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("USERSCTL_")}
        clean.pop("DATABASE_URL", None)
        clean.pop("VIRTUAL_ENV", None)
        clean["PATH"] = os.pathsep.join([str(self.path / "bin"), clean.get("PATH", "")])
        return subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env={**clean, **(env or {})},
            timeout=120,
        )

    def usersctl(self, url: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.path / "bin" / "usersctl"), "-d", url, *args, **kwargs)

    def ok(self, url: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        result = self.usersctl(url, *args, **kwargs)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def versions(self) -> dict[str, str]:
        code = (
            "import json, importlib.metadata as m; print(json.dumps({d: m.version(d) for d in "
            "('fastapi-users', 'pwdlib', 'bcrypt', 'argon2-cffi', 'email-validator')}))"
        )
        result = self.run(str(self.path / "bin" / "python"), "-c", code)
        assert result.returncode == 0, result.stderr
        found: dict[str, str] = json.loads(result.stdout)
        return found

    def login(self, url: str, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """A login through the app's own FastAPI Users."""
        python = str(self.path / "bin" / "python")
        result = self.run(python, str(LOGIN_SCRIPT), url, email, input=password + "\n")
        assert result.returncode == 0, result.stderr
        outcome: dict[str, Any] = json.loads(result.stdout)
        return outcome


def _make_environment(folder: Path, wheel: Path, requirements: list[str]) -> AppEnvironment:
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, timeout=120)
    install = subprocess.run(
        # With the MySQL/MariaDB extra (asyncmy), for the MariaDB half.
        [str(folder / "bin" / "pip"), "install", "-q", f"{wheel}[mysql]", *requirements],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, f"pip install failed:\n{install.stdout}{install.stderr}"
    return AppEnvironment(folder, time.monotonic() - start)


def _build(folder: Path) -> dict[str, Any]:
    """A wheel of this checkout, then both apps' environments side by side (pip waits on the
    network more than it works); what went wrong, as text, instead of raising."""
    try:
        build = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert build.returncode == 0, build.stdout + build.stderr
        [wheel] = folder.glob("usersctl-*.whl")
        with ThreadPoolExecutor(max_workers=len(APPS)) as pool:
            futures = {
                version: pool.submit(_make_environment, folder / version, wheel, requirements)
                for version, requirements in APPS.items()
            }
            made = {version: future.result() for version, future in futures.items()}
        return {"made": {version: env.seconds for version, env in made.items()}}
    except Exception as error:  # reported by the tests that need the environments
        return {"error": f"{type(error).__name__}: {error}"}


def prepare_in_background(run_folder: Path) -> dict[str, Any]:
    """Both environments, made once per test run whichever process asks first (the harness asks
    at the end of collection, so they are made while other tests run); the others wait for it."""
    folder = run_folder / "fastapi-users-apps"
    folder.mkdir(exist_ok=True)
    outcome = folder / "outcome.json"
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not outcome.exists():
            outcome.write_text(json.dumps(_build(folder)))
        found: dict[str, Any] = json.loads(outcome.read_text())
        return found


@pytest.fixture(scope="session")
def app_environments(request: pytest.FixtureRequest) -> dict[str, AppEnvironment]:
    """Both apps' environments, as :func:`prepare_in_background` made them."""
    run_folder = shared_run_folder(request.config)
    outcome = prepare_in_background(run_folder)
    assert "error" not in outcome, outcome["error"]
    folder = run_folder / "fastapi-users-apps"
    return {
        version: AppEnvironment(folder / version, seconds)
        for version, seconds in outcome["made"].items()
    }


def test_fastapi_users_13_pins_are_kept(app_environments: dict[str, AppEnvironment]) -> None:
    versions = app_environments["13.0.0"].versions()
    assert versions["fastapi-users"] == "13.0.0"
    assert versions["pwdlib"] == "0.2.0"
    assert versions["argon2-cffi"] == "23.1.0"


def test_fastapi_users_12_pins_are_kept(app_environments: dict[str, AppEnvironment]) -> None:
    versions = app_environments["12.1.3"].versions()
    assert versions["fastapi-users"] == "12.1.3"
    assert versions["bcrypt"] == "4.0.1"


def test_users_made_by_usersctl_log_in_to_a_fastapi_users_13_app(
    app_environments: dict[str, AppEnvironment], database_url: str
) -> None:
    app = app_environments["13.0.0"]
    app.ok(database_url, "init-db")

    # Create: FastAPI Users 13 reads Argon2, which usersctl writes.
    created = app.ok(
        database_url, "create-user", "alice@example.com", "--password-stdin", input=PASSWORD + "\n"
    )
    assert "bcrypt" not in created.stderr
    outcome = app.login(database_url, "alice@example.com")
    assert outcome == {"login": True, "error": None, "hashed_password": outcome["hashed_password"]}
    assert outcome["hashed_password"].startswith("$argon2id$")

    # Verify: the same password matches, a wrong one does not.
    app.ok(
        database_url,
        "verify-password",
        "alice@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    wrong = app.usersctl(
        database_url, "verify-password", "alice@example.com", "--password-stdin", input="wrong\n"
    )
    assert wrong.returncode == 6, wrong.stderr
    assert app.login(database_url, "alice@example.com", "wrong")["login"] is False

    # A bcrypt hash (--hash-scheme bcrypt): the app logs in and replaces it with Argon2, as
    # verify-password says it will.
    app.ok(
        database_url,
        "--hash-scheme",
        "bcrypt",
        "create-user",
        "bob@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    said = app.ok(
        database_url,
        "verify-password",
        "bob@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert "the app replaces it at the next login" in said.stderr
    outcome = app.login(database_url, "bob@example.com")
    assert outcome["login"] is True
    assert outcome["hashed_password"].startswith("$argon2id$")


def test_users_made_by_usersctl_log_in_to_a_fastapi_users_12_app(
    app_environments: dict[str, AppEnvironment], database_url: str
) -> None:
    app = app_environments["12.1.3"]
    app.ok(database_url, "init-db")

    # Create: FastAPI Users 12 verifies bcrypt only; auto sees the installed version.
    created = app.ok(
        database_url, "create-user", "alice@example.com", "--password-stdin", input=PASSWORD + "\n"
    )
    assert (
        "Writing bcrypt: the installed FastAPI Users 12.1.3 verifies bcrypt only" in created.stderr
    )
    outcome = app.login(database_url, "alice@example.com")
    assert outcome["login"] is True, outcome
    assert outcome["hashed_password"].startswith("$2b$12$")

    # Verify: a match; FastAPI Users 12 keeps the bcrypt hash, and verify-password does not
    # promise otherwise.
    said = app.ok(
        database_url,
        "verify-password",
        "alice@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert "replaces it at the next login" not in said.stderr
    assert "bcrypt hash, which stays" in said.stderr
    assert app.login(database_url, "alice@example.com", "wrong")["login"] is False

    # Import plaintext passwords: bcrypt too.
    rows = json.dumps({"email": "carol@example.com", "password": PASSWORD}) + "\n"
    imported = app.ok(database_url, "import-users", "-", "--format", "jsonl", input=rows)
    assert "Writing bcrypt" in imported.stderr
    assert app.login(database_url, "carol@example.com")["login"] is True

    # An Argon2 hash breaks this app's login (the HTTP 500 of the issue); doctor warns, and
    # verify-password --rehash under auto writes bcrypt, which logs in.
    app.ok(
        database_url,
        "--hash-scheme",
        "argon2",
        "create-user",
        "bob@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    broken = app.login(database_url, "bob@example.com")
    assert broken["login"] is False and broken["error"], broken
    doctor = app.ok(database_url, "doctor", "-o", "json")
    [hashes] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "password hashes"]
    assert hashes["status"] == "warn"
    assert "FastAPI Users 12.1.3 verifies bcrypt only" in hashes["detail"]
    # The app's own helper (passlib's CryptContext inside) says the same, as a failure.
    helper = "fastapi_users.password:PasswordHelper"
    failed = app.usersctl(database_url, "--password-helper", helper, "doctor", "-o", "json")
    assert failed.returncode == 6, failed.stdout + failed.stderr
    [hashes] = [c for c in json.loads(failed.stdout)["checks"] if c["check"] == "password hashes"]
    assert f"1 user(s) cannot log in: {helper} cannot identify their hashes" in hashes["detail"]
    said = app.ok(
        database_url,
        "verify-password",
        "bob@example.com",
        "--password-stdin",
        "--rehash",
        input=PASSWORD + "\n",
    )
    assert "Replaced its Argon2 hash with a new bcrypt hash" in said.stderr
    repaired = app.login(database_url, "bob@example.com")
    assert repaired["login"] is True, repaired
    assert repaired["hashed_password"].startswith("$2b$12$")
