"""Helpers the tests share: requests as a client sends them, and real-server plumbing."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import webtest

import openapi
from embedded import free_port  # noqa: F401 - re-exported for the tests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PASSWORD = "tangerine-ocelot-harbour-41"
ADMIN_PASSWORD = "quietly-ferrous-lantern-1987"
# Registrable names and the X-Auth-Username a proxy must get for each (ASCII unchanged).
UNICODE_USERNAMES = {
    "bob": "bob",
    "дмитрий": "%D0%B4%D0%BC%D0%B8%D1%82%D1%80%D0%B8%D0%B9",
    "山田太郎": "%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E",
    "josé": "jos%C3%A9",
    "ana@example.org": "ana%40example.org",
}


def register(app: webtest.TestApp, username: str, password: str = PASSWORD, **kwargs):
    """POST /users as JSON."""
    return app.post_json("/users", {"username": username, "password": password}, **kwargs)


def login(app: webtest.TestApp, username: str, password: str = PASSWORD, **kwargs):
    """POST /auth/token with the password grant as JSON."""
    body = {"grant_type": "password", "username": username, "password": password}
    return app.post_json("/auth/token", body, **kwargs)


def bearer(token: str) -> dict[str, str]:
    """An Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def make_admin(app: webtest.TestApp, username: str = "root-admin") -> str:
    """Create an admin as the CLI does and return an access token."""
    app.app.components.accounts.register(username, ADMIN_PASSWORD, roles=("user", "admin"))
    return login(app, username, ADMIN_PASSWORD).json["access_token"]


def wait_http(url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout} s")
        time.sleep(0.1)


def service_env(**overrides: str) -> dict[str, str]:
    """The process environment with TOKENAUTH_* overrides and the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENAUTH_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(overrides)
    return env


class ManualClock:
    """A clock the test moves by hand: pass it as create_app(config, clock=...)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        # Now starts at whole seconds (kids and JWT times drop sub-second parts); a given
        # start keeps its milliseconds, the precision of BSON dates.
        if start is None:
            self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        else:
            self.now = start.replace(microsecond=start.microsecond // 1000 * 1000)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        """Move time forward; the new now."""
        self.now += dt.timedelta(seconds=seconds)
        return self.now


def assert_documented(response, path: str, method: str) -> None:
    """The answer's status, media type and body are the ones openapi.json promises."""
    document = openapi.document()
    operation = document["paths"][path][method.lower()]
    answer = operation["responses"].get(str(response.status_int))
    assert answer is not None, f"{method} {path} does not document {response.status_int}"
    while "$ref" in answer:
        answer = document["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    media_type = (response.content_type or "").split(";")[0]
    if "content" not in answer:
        assert not response.body, f"{method} {path} {response.status_int} documents no body"
        return
    assert media_type in answer["content"], f"{media_type} undocumented for {response.status_int}"
    schema = answer["content"][media_type]["schema"]
    resolver_root = {**schema, "components": document["components"]}
    jsonschema.validate(response.json, resolver_root)
