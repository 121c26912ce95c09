"""The two sides of every story: usersctl run beside the app, and an HTTP client of the app.

usersctl runs in-process through the harness (tests/harness.py) in a worker thread, since each
command starts its own event loop and the app's runs the test.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
from typer.testing import Result

from harness import invoke


@dataclass
class Usersctl:
    """usersctl on the test database, with ``--model`` when one is given."""

    url: str
    model: str | None = None

    def invoke(self, *args: str, input: str | None = None) -> Result:
        argv = ["-d", self.url, *(["--model", self.model] if self.model else []), *args]
        return invoke(argv, input=input)

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        return await asyncio.to_thread(self.invoke, *args, input=input)

    async def ok(self, *args: str, input: str | None = None) -> Result:
        result = await self(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    async def json(self, *args: str, input: str | None = None) -> Any:
        return json.loads((await self.ok(*args, "-o", "json", input=input)).stdout)

    async def fails(self, code: int, *args: str, input: str | None = None) -> str:
        """Run a command that must fail with ``code``: one ``Error:`` line, no traceback."""
        result = await self(*args, input=input)
        assert result.exit_code == code, result.output
        lines = result.stderr.splitlines()
        assert lines and lines[-1].startswith("Error: "), result.stderr
        assert "Traceback" not in result.output
        return lines[-1]


@dataclass
class Client:
    """An HTTP client of the app, with the few calls the stories make."""

    http: httpx.AsyncClient

    async def login(self, backend: str, email: str, password: str) -> str | None:
        """A bearer token from ``/auth/{backend}/login``, or None when the login is refused."""
        response = await self.http.post(
            f"/auth/{backend}/login", data={"username": email, "password": password}
        )
        if response.status_code == 200:
            token: str = response.json()["access_token"]
            return token
        assert response.status_code == 400, response.text
        assert response.json()["detail"] == "LOGIN_BAD_CREDENTIALS"
        return None

    async def get(self, path: str, token: str) -> httpx.Response:
        return await self.http.get(path, headers={"Authorization": f"Bearer {token}"})

    async def register(self, email: str, password: str, **extra: Any) -> dict[str, Any]:
        response = await self.http.post(
            "/auth/register", json={"email": email, "password": password, **extra}
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created
