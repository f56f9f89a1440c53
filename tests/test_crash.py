"""SIGKILL the database under load through real gunicorn: no acknowledged write is lost."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
import requests
from helpers import ADMIN_PASSWORD, PASSWORD, bearer, free_port, wait_http
from processes import PROCESS_TIMEOUT, run_cli, start_gunicorn, stop

from embedded import EmbeddedServer

WRITERS = 6
# Seconds of load before each round's kill: three different moments of the stream.
KILL_AFTER = (1.0, 2.5, 4.0)
# Below this many acknowledged writes a round proves too little to pass.
MIN_ACKNOWLEDGED = 20
# The writers keep going into the dead server this long: their requests must not count.
OUTAGE = 0.5
DB_NAME = "crash"
PERSON = {"name": "Edsger Dijkstra", "email": "ewd@example.org", "age": 72}


@dataclass
class Rotation:
    """A refresh rotation the service acknowledged, and what became of its session after."""

    retired: str
    current: str
    access: str
    logout: str = "none"  # "attempted" when sent but unanswered, "done" when answered 204


@dataclass
class Ledger:
    """Every write the service answered 2xx in one round."""

    users: list[str] = field(default_factory=list)
    persons: list[dict] = field(default_factory=list)
    rotations: list[Rotation] = field(default_factory=list)

    def writes(self) -> int:
        """Acknowledged writes: registrations, persons, rotations and logouts."""
        logouts = sum(rotation.logout == "done" for rotation in self.rotations)
        return len(self.users) + len(self.persons) + len(self.rotations) + logouts


@dataclass
class Lost:
    """Acknowledged writes the database no longer has, by kind."""

    users: list[str] = field(default_factory=list)
    persons: list[str] = field(default_factory=list)
    rotations: list[str] = field(default_factory=list)
    logouts: list[str] = field(default_factory=list)

    def count(self) -> int:
        """How many acknowledged writes were lost."""
        return len(self.users) + len(self.persons) + len(self.rotations) + len(self.logouts)


# -- processes ----------------------------------------------------------------------------
@pytest.fixture
def database(tmp_path) -> Iterator[EmbeddedServer]:
    """A wire server of this test alone, on one port and one data dir for all its lives."""
    server = EmbeddedServer(tmp_path / "database")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def serve(database, tmp_path) -> Iterator:
    """Start gunicorn (two workers) on the test's database: `with serve() as base: ...`."""

    @contextlib.contextmanager
    def start() -> Iterator[str]:
        port = free_port()
        environ = {
            "TOKENAUTH_MONGODB_URI": database.uri,
            "TOKENAUTH_DB_NAME": DB_NAME,
            "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
            "TOKENAUTH_BIND": f"127.0.0.1:{port}",
            # Thousands of registrations come from one address here.
            "TOKENAUTH_REGISTRATION_LIMIT": "1000000",
            # A retired refresh token must be refused at once, with no grace window.
            "TOKENAUTH_REFRESH_REUSE_INTERVAL": "0",
        }
        process = start_gunicorn(environ, tmp_path / f"gunicorn-{port}.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(process)

    return start


def kill(server: EmbeddedServer) -> None:
    """SIGKILL the server: no shutdown, no flush."""
    os.kill(server.process.pid, signal.SIGKILL)
    assert server.process.wait(timeout=PROCESS_TIMEOUT) == -signal.SIGKILL


# -- the load -----------------------------------------------------------------------------
def post(http: requests.Session, url: str, **kwargs) -> requests.Response:
    """A POST that gives up on a dead server instead of hanging the writer."""
    return http.post(url, timeout=10, **kwargs)


def one_cycle(http, base: str, admin: str, username: str, ledger: Ledger, logout: bool) -> None:
    """Register, create a person, log in, rotate, maybe log out; note what was answered 2xx."""
    user = {"username": username, "password": PASSWORD}
    if post(http, f"{base}/users", json=user).status_code != 201:
        return
    ledger.users.append(username)
    person = post(http, f"{base}/persons", json=PERSON, headers=bearer(admin))
    if person.status_code == 201:
        ledger.persons.append(person.json())
    tokens = post(http, f"{base}/auth/token", json=user)
    if tokens.status_code != 200:
        return
    grant = {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]}
    rotated = post(http, f"{base}/auth/token", json=grant)
    if rotated.status_code != 200:
        return
    rotation = Rotation(
        retired=grant["refresh_token"],
        current=rotated.json()["refresh_token"],
        access=rotated.json()["access_token"],
    )
    ledger.rotations.append(rotation)
    if logout:
        rotation.logout = "attempted"
        answer = post(http, f"{base}/auth/logout", headers=bearer(rotation.access))
        if answer.status_code == 204:
            rotation.logout = "done"


def write(base: str, admin: str, name: str, ledger: Ledger, halt: threading.Event) -> None:
    """One writer: cycles until halted; a failed request only means "not acknowledged"."""
    with requests.Session() as http:
        number = 0
        while not halt.is_set():
            number += 1
            with contextlib.suppress(requests.RequestException):
                one_cycle(http, base, admin, f"{name}-{number}", ledger, logout=number % 2 == 0)


def load_then_kill(base: str, admin: str, server: EmbeddedServer, round_: int) -> Ledger:
    """Run the writers, SIGKILL the server mid-stream, let them hit the outage, stop them."""
    ledger, halt = Ledger(), threading.Event()
    writers = [
        threading.Thread(target=write, args=(base, admin, f"r{round_}w{n}", ledger, halt))
        for n in range(WRITERS)
    ]
    for writer in writers:
        writer.start()
    try:
        started = time.monotonic()
        deadline = started + 60
        while time.monotonic() - started < KILL_AFTER[round_] or ledger.writes() < MIN_ACKNOWLEDGED:
            assert time.monotonic() < deadline, f"only {ledger.writes()} writes in 60 s"
            time.sleep(0.05)
        kill(server)
        time.sleep(OUTAGE)
    finally:
        halt.set()
        for writer in writers:
            writer.join(timeout=PROCESS_TIMEOUT)
    assert not any(writer.is_alive() for writer in writers)
    return ledger


# -- what must have survived --------------------------------------------------------------
def answer(method: str, url: str, **kwargs) -> requests.Response:
    """One request over a fresh connection, so that either worker may take it."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return requests.request(method, url, timeout=10, headers=headers, **kwargs)


def refused_grant(base: str, refresh_token: str) -> bool:
    """True when the refresh grant answers 400 invalid_grant."""
    grant = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    refused = answer("POST", f"{base}/auth/token", json=grant)
    return refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def verify_status(base: str, access: str) -> int:
    """/auth/verify's status, waiting out the 503 of a worker that has not polled yet."""
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while (
        status := answer("GET", f"{base}/auth/verify", headers=bearer(access)).status_code
    ) == 503:
        assert time.monotonic() < deadline, "/auth/verify stayed 503"
        time.sleep(0.1)
    return status


def check_user(base: str, username: str) -> bool:
    """An acknowledged registration can log in."""
    body = {"username": username, "password": PASSWORD}
    return answer("POST", f"{base}/auth/token", json=body).status_code == 200


def check_person(base: str, admin: str, person: dict) -> bool:
    """An acknowledged person is there, as it was answered."""
    found = answer("GET", f"{base}/persons/{person['id']}", headers=bearer(admin))
    return found.status_code == 200 and found.json() == person


def check_rotation(base: str, rotation: Rotation) -> tuple[bool, bool]:
    """(rotation held, logout held) for one acknowledged rotation."""
    logout_held = True
    if rotation.logout == "done":
        logout_held = verify_status(base, rotation.access) == 401 and refused_grant(
            base, rotation.current
        )
    elif rotation.logout == "none":
        # The successor was stored: it rotates (once more) before the retired token is tried.
        grant = {"grant_type": "refresh_token", "refresh_token": rotation.current}
        if answer("POST", f"{base}/auth/token", json=grant).status_code != 200:
            return False, True
    # A retired token that works again is a lost rotation (it would let a stolen token in).
    return refused_grant(base, rotation.retired), logout_held


def lost_writes(base: str, admin: str, ledger: Ledger) -> Lost:
    """Look up every acknowledged write through a gunicorn that only knows the database."""
    lost = Lost()
    with ThreadPoolExecutor(4) as pool:
        users = pool.map(lambda name: (name, check_user(base, name)), ledger.users)
        persons = pool.map(lambda p: (p, check_person(base, admin, p)), ledger.persons)
        rotations = pool.map(lambda r: check_rotation(base, r), ledger.rotations)
        lost.users = [name for name, held in users if not held]
        lost.persons = [person["id"] for person, held in persons if not held]
        # Rotations are named by their index in the ledger: tokens stay out of the output.
        for number, (rotation_held, logout_held) in enumerate(rotations):
            if not rotation_held:
                lost.rotations.append(f"rotation {number}")
            if not logout_held:
                lost.logouts.append(f"logout of rotation {number}")
    return lost


def admin_token(base: str) -> str:
    """An access token of the admin that writes persons."""
    body = {"username": "crash-admin", "password": ADMIN_PASSWORD}
    token = answer("POST", f"{base}/auth/token", json=body)
    assert token.status_code == 200, token.text
    return token.json()["access_token"]


def test_sigkill_of_the_database_loses_no_acknowledged_write(database, serve, tmp_path):
    created = run_cli(
        ["create-user", "crash-admin", "--admin", "--password-stdin"],
        {
            "TOKENAUTH_MONGODB_URI": database.uri,
            "TOKENAUTH_DB_NAME": DB_NAME,
            "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
        },
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert created.returncode == 0, created.stderr
    port = database.port
    report = []
    with serve() as base:
        admin = admin_token(base)
        for round_ in range(len(KILL_AFTER)):
            ledger = load_then_kill(base, admin, database, round_)
            database.start()  # same data, same port
            assert database.port == port
            # The same gunicorn recovers by itself, without a restart.
            wait_http(f"{base}/health")
            # A fresh gunicorn holds only what the database kept (no revocation in memory).
            with serve() as fresh:
                lost = lost_writes(fresh, admin, ledger)
            report.append(
                f"round {round_ + 1}: {ledger.writes()} acknowledged, {lost.count()} lost"
            )
            print(report[-1], lost if lost.count() else "", file=sys.stderr)
            assert ledger.writes() >= MIN_ACKNOWLEDGED, report[-1]
            assert lost == Lost(), report[-1]
    print("; ".join(report), file=sys.stderr)
