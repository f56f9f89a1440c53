"""Seeding through the contract: an admin by the CLI, a user and persons over HTTP."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import json
import subprocess
from typing import Any
from urllib.parse import urlsplit

from bench.processes import BIN, ROOT

PASSWORD = "violet-anchor-quarry-2718"
ADMIN_USERNAME = "bench-admin"
ADMIN_PASSWORD = "copper-meadow-lantern-5309"
PERSONS = 1000
# The throttle counts each login attempt while it is in flight, and refuses a sixth at once
# for one (user, address) pair: logins at full speed take turns over this many users. The
# registration limit (20 an hour from one address) still leaves room for them all.
LOGIN_USERS = 16
USERNAMES = tuple(f"bench-user-{n:02d}" for n in range(1, LOGIN_USERS + 1))


class SeedError(RuntimeError):
    """The service refused a seeding step."""


class Client:
    """A keep-alive HTTP/1.1 client for JSON requests to one server."""

    def __init__(self, base: str, timeout: float = 10.0) -> None:
        parts = urlsplit(base)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def request(
        self, method: str, path: str, body: Any = None, *, token: str | None = None
    ) -> tuple[int, Any]:
        """Status and decoded JSON body (None when empty)."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.connection.request(method, path, body=data, headers=headers)
        answer = self.connection.getresponse()
        raw = answer.read()
        return answer.status, (json.loads(raw) if raw else None)

    def expect(self, status: int, method: str, path: str, body: Any = None, **kwargs) -> Any:
        """The JSON body of a request that must answer `status`; SeedError otherwise."""
        got, answer = self.request(method, path, body, **kwargs)
        if got != status:
            raise SeedError(f"{method} {path} answered {got}, expected {status}: {answer}")
        return answer

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


@dataclasses.dataclass(frozen=True)
class Seeded:
    """What the rows need: the first user's id and token, and every user's login body."""

    user_id: str
    user_token: str
    login_bodies: tuple[str, ...]


def login_body(username: str, password: str = PASSWORD) -> str:
    """The JSON body of a password grant with the right password."""
    return json.dumps({"grant_type": "password", "username": username, "password": password})


def login(client: Client, username: str, password: str = PASSWORD) -> str:
    """An access token for the user."""
    body = json.loads(login_body(username, password))
    return client.expect(200, "POST", "/auth/token", body)["access_token"]


def create_admin(env: dict[str, str]) -> None:
    """`tokenauth create-user bench-admin --admin --password-stdin`, as an operator does."""
    done = subprocess.run(
        [str(BIN / "tokenauth"), "create-user", ADMIN_USERNAME, "--admin", "--password-stdin"],
        input=ADMIN_PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise SeedError(f"tokenauth create-user failed: {done.stderr.strip()}")


def seed(base: str, env: dict[str, str], *, persons: int = PERSONS) -> Seeded:
    """An admin, LOGIN_USERS ordinary users and `persons` persons; the first user's token."""
    create_admin(env)
    client = Client(base)
    try:
        users = [
            client.expect(201, "POST", "/users", {"username": name, "password": PASSWORD})
            for name in USERNAMES
        ]
        admin_token = login(client, ADMIN_USERNAME, ADMIN_PASSWORD)
        user_token = login(client, USERNAMES[0])
    finally:
        client.close()
    if persons:
        create_persons(base, admin_token, persons)
    return Seeded(
        user_id=users[0]["id"],
        user_token=user_token,
        login_bodies=tuple(login_body(name) for name in USERNAMES),
    )


def create_persons(base: str, admin_token: str, total: int, parallel: int = 4) -> None:
    """POST /persons `total` times, from a few connections at once."""

    def create_share(offset: int) -> None:
        client = Client(base)
        try:
            for n in range(offset, total, parallel):
                person = {
                    "name": f"Person {n:04d}",
                    "email": f"person{n}@example.org",
                    "age": n % 100,
                }
                client.expect(201, "POST", "/persons", person, token=admin_token)
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        for share in [pool.submit(create_share, offset) for offset in range(parallel)]:
            share.result()
