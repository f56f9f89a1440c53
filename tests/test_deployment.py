"""The service as it is deployed: gunicorn workers sharing keys, and the `make run` path."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from helpers import ADMIN_PASSWORD, PASSWORD, bearer, free_port, wait_http
from processes import (
    alive,
    children,
    command_line,
    pids_with_argument,
    run_cli,
    start_gunicorn,
    stop,
    wait_gone,
    wait_until,
)

LOGINS = 20
CALLS_PER_TOKEN = 2
PERSON = {"name": "Grace Hopper", "email": "grace@example.org", "age": 85}


def fresh(method: str, url: str, **kwargs) -> requests.Response:
    """One request over a new connection (no session), so any worker may take it."""
    headers = {"Connection": "close", **kwargs.pop("headers", {})}
    return requests.request(method, url, timeout=10, headers=headers, **kwargs)


def gunicorn_master_of_this_test() -> int:
    """The pid of the gunicorn master this test process started."""
    (master,) = [pid for pid in children(os.getpid()) if "gunicorn.conf.py" in command_line(pid)]
    return master


# -- (a) two workers, one trust ---------------------------------------------------------
def test_tokens_issued_by_one_worker_verify_at_every_worker(gunicorn_server, db):
    base = gunicorn_server()
    master = gunicorn_master_of_this_test()
    # The first worker may answer /health before the second has booted.
    wait_until(lambda: len(children(master)) == 2, what="two workers (the default)")
    workers = children(master)

    tokens = []
    for number in range(LOGINS):
        username = f"user{number:02d}"
        created = fresh("POST", f"{base}/users", json={"username": username, "password": PASSWORD})
        assert created.status_code == 201, created.text
        answer = fresh(
            "POST", f"{base}/auth/token", json={"username": username, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        tokens.append((username, answer.json()["access_token"]))

    # Each token over fresh connections: with two workers, both verify tokens the other signed.
    for username, token in tokens:
        for _ in range(CALLS_PER_TOKEN):
            me = fresh("GET", f"{base}/users/me", headers=bearer(token))
            assert me.status_code == 200, me.text
            assert me.json()["username"] == username
    assert db.users.count_documents({}) == LOGINS
    assert sorted(children(gunicorn_master_of_this_test())) == sorted(workers)


# -- (b) and (c): the `make run` path ---------------------------------------------------
@pytest.fixture
def make_run(tmp_path) -> Iterator[Callable[[], tuple[subprocess.Popen, str]]]:
    """Start gunicorn the `make run` way: no TOKENAUTH_MONGODB_URI, data in tmp_path/var."""
    started: list[subprocess.Popen] = []
    data_dir = tmp_path / "var"

    def start() -> tuple[subprocess.Popen, str]:
        port = free_port()
        environ = {"TOKENAUTH_DATA_DIR": str(data_dir), "TOKENAUTH_BIND": f"127.0.0.1:{port}"}
        process = start_gunicorn(environ, tmp_path / "gunicorn.log")
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        return process, base

    yield start
    for process in started:
        stop(process)


def embedded_pid(data_dir: Path) -> int:
    """The pid the running embedded server advertises in the data dir."""
    return json.loads((data_dir / "embedded.json").read_text())["pid"]


def login_token(base: str, username: str, password: str) -> str:
    """An access token from the password grant."""
    answer = fresh("POST", f"{base}/auth/token", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def test_make_run_starts_and_stops_the_embedded_server_and_keeps_the_data(make_run, tmp_path):
    data_dir = tmp_path / "var"
    storage = str(data_dir / "db")
    master, base = make_run()

    database = embedded_pid(data_dir)
    assert database in children(master.pid)
    assert "--storage-path" in command_line(database)
    assert pids_with_argument(storage) == [database]
    workers = [pid for pid in children(master.pid) if pid != database]
    assert len(workers) == 2
    assert fresh("GET", f"{base}/health").json()["status"] == "ok"

    created = fresh("POST", f"{base}/users", json={"username": "alice", "password": PASSWORD})
    assert created.status_code == 201, created.text
    # The CLI finds the running embedded server through the data dir, and starts none.
    cli = run_cli(
        ["create-user", "root", "--admin", "--password-stdin"],
        {"TOKENAUTH_DATA_DIR": str(data_dir)},
        stdin=ADMIN_PASSWORD + "\n",
    )
    assert cli.returncode == 0, cli.stderr
    assert pids_with_argument(storage) == [database]
    admin = login_token(base, "root", ADMIN_PASSWORD)
    person = fresh("POST", f"{base}/persons", json=PERSON, headers=bearer(admin))
    assert person.status_code == 201, person.text
    early_token = login_token(base, "alice", PASSWORD)

    assert stop(master, signal.SIGINT) == 0
    wait_gone([master.pid, database, *workers])
    assert pids_with_argument(storage) == []
    assert not (data_dir / "embedded.json").exists()

    again, base = make_run()
    database_again = embedded_pid(data_dir)
    assert database_again != database and alive(database_again)
    token = login_token(base, "alice", PASSWORD)
    page = fresh("GET", f"{base}/persons", headers=bearer(token))
    assert page.status_code == 200, page.text
    assert page.json()["items"] == [person.json()]
    # The key on disk is reused: a token of the first run still verifies.
    verified = fresh("GET", f"{base}/auth/verify", headers=bearer(early_token))
    assert verified.status_code == 204
    assert verified.headers["X-Auth-Username"] == "alice"

    assert stop(again, signal.SIGINT) == 0
    wait_gone([database_again])


def test_make_run_generates_its_key_under_the_data_dir_owner_only(make_run, tmp_path):
    make_run()
    keys_dir = tmp_path / "var" / "keys"
    # The service's EdDSA key, and the RS256 key of OpenID Connect ID tokens.
    keys = [path for path in keys_dir.iterdir() if path.suffix == ".pem"]
    assert len(keys) == 2
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys_dir.stat().st_mode) & 0o077 == 0


# -- (d) the `make run` path heals itself when the embedded server dies ------------------
# The supervisor's bound: a killed server answers again within this many seconds.
RESTART_BOUND = 10.0
GIVE_UP = "not restarting it again"


def advertised(data_dir: Path) -> dict | None:
    """The marker of the embedded server ({"pid", "uri"}), or None while there is none."""
    try:
        return json.loads((data_dir / "embedded.json").read_text())
    except FileNotFoundError:
        return None


def databases_of(master: int) -> list[int]:
    """The master's secantusd-py children."""
    return [pid for pid in children(master) if any("secantusd" in a for a in command_line(pid))]


def assert_unavailable(health: requests.Response) -> None:
    """/health while the database is down: 503, Retry-After, the unavailable body."""
    assert health.status_code == 503, health.text
    assert health.headers["Retry-After"] == "5"
    body = health.json()
    assert set(body) == {"status", "revocations_age"}
    assert body["status"] == "unavailable"


def test_make_run_restarts_a_killed_embedded_server_on_the_same_port(make_run, tmp_path):
    data_dir = tmp_path / "var"
    master, base = make_run()
    created = fresh("POST", f"{base}/users", json={"username": "alice", "password": PASSWORD})
    assert created.status_code == 201, created.text
    before = advertised(data_dir)
    workers = sorted(pid for pid in children(master.pid) if pid != before["pid"])

    os.kill(before["pid"], signal.SIGKILL)
    killed, unavailable = time.monotonic(), 0
    while (health := fresh("GET", f"{base}/health")).status_code != 200:
        assert_unavailable(health)
        unavailable += 1
        assert time.monotonic() - killed < RESTART_BOUND, "no recovery within the bound"
        time.sleep(0.05)
    restart_time = time.monotonic() - killed

    wait_until(lambda: advertised(data_dir)["pid"] != before["pid"], RESTART_BOUND, "new marker")
    after = advertised(data_dir)
    assert after["uri"] == before["uri"], "the same port: workers reconnect by themselves"
    assert databases_of(master.pid) == [after["pid"]]
    assert not alive(before["pid"])
    # No gunicorn restart: the same master and the same workers serve what was there before.
    assert master.poll() is None
    assert sorted(pid for pid in children(master.pid) if pid != after["pid"]) == workers
    login_token(base, "alice", PASSWORD)
    log = (tmp_path / "gunicorn.log").read_text()
    assert f"embedded server (pid {before['pid']}) exited; restarted as pid {after['pid']}" in log
    print(f"kill -> /health 200 in {restart_time:.2f} s, {unavailable} 503s", file=sys.stderr)

    # The restarted child was forked by the supervisor's thread: it still dies with the master.
    master.kill()
    wait_gone([after["pid"], *workers])


def test_make_run_stops_restarting_an_embedded_server_in_a_crash_loop(make_run, tmp_path):
    data_dir = tmp_path / "var"
    master, base = make_run()
    killed: list[int] = []
    for _ in range(5):
        wait_until(
            lambda: (info := advertised(data_dir)) and info["pid"] not in killed,
            RESTART_BOUND,
            "a restarted embedded server",
        )
        killed.append(advertised(data_dir)["pid"])
        os.kill(killed[-1], signal.SIGKILL)

    log_path = tmp_path / "gunicorn.log"
    wait_until(lambda: GIVE_UP in log_path.read_text(), RESTART_BOUND, "the give-up line")
    time.sleep(2.0)  # ten polls of the supervisor: time enough to restart, if it would
    assert databases_of(master.pid) == []
    assert advertised(data_dir) is None
    assert_unavailable(fresh("GET", f"{base}/health"))
    assert master.poll() is None
    log = log_path.read_text()
    (line,) = [line for line in log.splitlines() if GIVE_UP in line]
    assert "embedded server exited 5 times within 60 s" in line
    assert str(data_dir / "embedded.log") in line
    assert "Traceback" not in log


def squat(port: int, timeout: float = 5.0) -> socket.socket:
    """Listen on `port` as soon as it is free (another program taking it)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def test_make_run_says_when_the_embedded_port_is_taken_and_recovers_once_free(make_run, tmp_path):
    data_dir = tmp_path / "var"
    master, base = make_run()
    before = advertised(data_dir)
    port = int(before["uri"].split(":")[2].split("/")[0])
    log_path = tmp_path / "gunicorn.log"

    os.kill(before["pid"], signal.SIGKILL)
    with squat(port):
        wait_until(lambda: "is taken by another process" in log_path.read_text(), RESTART_BOUND)
        assert_unavailable(fresh("GET", f"{base}/health"))
    wait_http(f"{base}/health", timeout=RESTART_BOUND)
    assert advertised(data_dir)["uri"] == before["uri"]
    assert master.poll() is None
    # One line per attempt while the port is taken, each saying why.
    lines = [line for line in log_path.read_text().splitlines() if "is taken" in line]
    assert lines
    for line in lines:
        assert (
            f"(pid {before['pid']}) exited and its port {port} is taken by another process" in line
        )
        assert line.endswith("; retrying in 1 s")
