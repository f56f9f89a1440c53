"""The deployment the README recommends: real nginx running deploy/nginx.conf before gunicorn."""

from __future__ import annotations

import getpass
import http.server
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from helpers import PASSWORD, ROOT, UNICODE_USERNAMES, bearer, free_port, service_env
from processes import PROCESS_TIMEOUT, stop, wait_until
from test_readme import run_walk_through

DEPLOY_FILE = ROOT / "deploy" / "nginx.conf"
# The directives holding the placeholders that the file's header documents.
SERVICE_PLACEHOLDER = "    server 127.0.0.1:8000;\n"
PRIVATE_PLACEHOLDER = "    server 127.0.0.1:9000;\n"
LISTEN_PLACEHOLDER = "    listen 80;\n"
SMALL = ("--workers", "1", "--threads", "4")  # enough where no load is applied
WRONG = "not-the-password-at-all-1"
BEARER_CHALLENGE = 'Bearer realm="tokenauth"'
REVOCATION_DEADLINE = 2.0
SLOW_CLIENTS = 48
SLOW_SECONDS = 10.0
PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 1.0


def nginx_binary() -> str:
    """Debian's nginx (in /usr/sbin, which a user's PATH may lack); a failure without it."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.fail("nginx is needed: `make system-deps` installs Debian's package")
    return found


# The frame the test puts around the site file, as Debian's /etc/nginx/nginx.conf does;
# paths nginx would otherwise take from its build (/var/lib/nginx, /var/log) point here.
MAIN_CONF = """\
{user}worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/tokenauth.conf;
}}
"""


def site_config(service_port: str, private_port: int, listen_port: int) -> str:
    """deploy/nginx.conf with its documented placeholders replaced, and nothing else."""
    text = DEPLOY_FILE.read_text()
    replacements = {
        SERVICE_PLACEHOLDER: f"    server 127.0.0.1:{service_port};\n",
        PRIVATE_PLACEHOLDER: f"    server 127.0.0.1:{private_port};\n",
        LISTEN_PLACEHOLDER: f"    listen 127.0.0.1:{listen_port};\n",
    }
    for placeholder, value in replacements.items():
        assert text.count(placeholder) == 1, f"{placeholder!r} is not once in {DEPLOY_FILE}"
        text = text.replace(placeholder, value)
    return text


class PrivateApp(http.server.ThreadingHTTPServer):
    """The upstream that /private/ protects: answers 200 and records the headers it got."""

    def __init__(self) -> None:
        self.received: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", free_port()), _PrivateHandler)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.server_address[1]


class _PrivateHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.received.append(dict(self.headers.items()))
        body = f"private {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        """Quiet: pytest shows failures, not every request."""


@pytest.fixture
def private_app() -> Iterator[PrivateApp]:
    """The private upstream, serving from a thread of this test."""
    server = PrivateApp()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=PROCESS_TIMEOUT)


@pytest.fixture
def nginx(tmp_path, private_app) -> Iterator[Callable[[str], str]]:
    """Start nginx on deploy/nginx.conf in front of a service base URL; nginx's base URL."""
    binary = nginx_binary()
    started: list[subprocess.Popen] = []

    def start(service_base: str) -> str:
        prefix = tmp_path / f"nginx-{len(started)}"
        prefix.mkdir()
        port = free_port()
        service_port = service_base.rsplit(":", 1)[1]
        (prefix / "tokenauth.conf").write_text(site_config(service_port, private_app.port, port))
        # Workers run as the test's user, so they can use the temp paths under tmp_path.
        user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(MAIN_CONF.format(user=user, prefix=prefix))
        command = [binary, "-e", f"{prefix}/error.log", "-p", f"{prefix}/"]
        command += ["-c", f"{prefix}/nginx.conf", "-g", f"daemon off; pid {prefix}/nginx.pid;"]
        log = open(prefix / "stderr.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: process.poll() is not None or answers_200(f"{base}/health"),
            what=f"nginx serving {base}/health",
        )
        if process.poll() is not None:
            errors = (prefix / "stderr.log").read_text() + _read(prefix / "error.log")
            pytest.fail(f"nginx exited with {process.returncode}: {errors}")
        return base

    yield start
    for process in started:
        stop(process)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def answers_200(url: str) -> bool:
    """True when `url` answers 200 now."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


class _FromAddress(requests.adapters.HTTPAdapter):
    """Connections from one local address: 127.0.0.0/8 is all loopback on Linux."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    """A requests session whose connections come from `address`."""
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def log_in(session: requests.Session, base: str, username: str, password: str, **kwargs):
    """The password grant as JSON, with an optional forged X-Forwarded-For."""
    body = {"grant_type": "password", "username": username, "password": password}
    return session.post(f"{base}/auth/token", json=body, timeout=10, **kwargs)


def register_and_log_in(base: str, username: str) -> tuple[str, str]:
    """Register through `base` and log in: (user id, access token)."""
    body = {"username": username, "password": PASSWORD}
    created = requests.post(f"{base}/users", json=body, timeout=10)
    assert created.status_code == 201, created.text
    answer = requests.post(f"{base}/auth/token", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    return created.json()["id"], answer.json()["access_token"]


# -- the file the README shows is the file that runs --------------------------------------
def test_the_readme_shows_deploy_nginx_conf_byte_for_byte():
    blocks = re.findall(r"```nginx\n(.*?)```", (ROOT / "README.md").read_text(), re.DOTALL)
    assert blocks == [DEPLOY_FILE.read_text()]


def test_the_readme_walk_through_runs_through_nginx(
    gunicorn_server, nginx, mongo_uri, db_name, tmp_path
):
    front = nginx(gunicorn_server({"TOKENAUTH_TRUSTED_PROXIES": "127.0.0.1"}, SMALL))
    # The service's data directory, so that `tokenauth mail` reads the Maildir it writes.
    env = service_env(
        TOKENAUTH_MONGODB_URI=mongo_uri,
        TOKENAUTH_DB_NAME=db_name,
        TOKENAUTH_DATA_DIR=str(tmp_path / "var"),
    )
    walk = tmp_path / "walk"
    walk.mkdir()
    run_walk_through(front.rsplit(":", 1)[1], env, walk)


def post_json_bytes(base: str, size: int) -> requests.Response:
    """POST /users with a JSON body of exactly `size` bytes (a username far too long)."""
    frame = b'{"username": "", "password": "x"}'
    body = frame.replace(b'""', b'"' + b"a" * (size - len(frame)) + b'"')
    assert len(body) == size
    headers = {"Content-Type": "application/json"}
    return requests.post(f"{base}/users", data=body, headers=headers, timeout=10)


def test_nginx_and_the_service_draw_the_body_limit_at_the_same_byte(gunicorn_server, nginx):
    front = nginx(gunicorn_server(args=SMALL))
    limit = 64 * 1024
    # At the limit the service itself judges the body (and refuses the username).
    judged = post_json_bytes(front, limit)
    assert judged.status_code == 422
    assert judged.headers["Content-Type"] == "application/problem+json"
    # One byte over, nginx answers 413 with its own page: gunicorn never sees the body.
    refused = post_json_bytes(front, limit + 1)
    assert refused.status_code == 413
    assert refused.headers["Content-Type"] == "text/html"
    assert "413 Request Entity Too Large" in refused.text


# -- the client address behind nginx ---------------------------------------------------------
def fail_five_times_from(base: str, address: str, username: str) -> None:
    """TOKENAUTH_LOGIN_MAX_FAILURES wrong passwords, each with a different forged XFF."""
    with client_at(address) as session:
        for number in range(5):
            forged = {"X-Forwarded-For": f"203.0.113.{number}"}
            answer = log_in(session, base, username, WRONG, headers=forged)
            assert answer.status_code == 400, answer.text


def test_trusting_nginx_the_throttle_sees_each_clients_own_address(gunicorn_server, nginx):
    environ = {"TOKENAUTH_TRUSTED_PROXIES": "127.0.0.1", "TOKENAUTH_LOGIN_MAX_FAILURES": "5"}
    front = nginx(gunicorn_server(environ, SMALL))
    register_and_log_in(front, "alice")
    fail_five_times_from(front, "127.0.0.2", "alice")

    with client_at("127.0.0.2") as two, client_at("127.0.0.3") as three:
        # A forged header naming another address changes nothing: nginx replaces it.
        blocked = log_in(two, front, "alice", PASSWORD, headers={"X-Forwarded-For": "127.0.0.3"})
        assert blocked.status_code == 429, blocked.text
        assert int(blocked.headers["Retry-After"]) > 0
        assert blocked.json()["error"] == "temporarily_unavailable"
        spoof = {"X-Forwarded-For": "127.0.0.2"}
        assert log_in(three, front, "alice", PASSWORD, headers=spoof).status_code == 200


def test_without_trusting_nginx_every_client_shares_its_address(gunicorn_server, nginx):
    front = nginx(gunicorn_server({"TOKENAUTH_LOGIN_MAX_FAILURES": "5"}, SMALL))
    register_and_log_in(front, "alice")
    fail_five_times_from(front, "127.0.0.2", "alice")

    with client_at("127.0.0.3") as three:
        blocked = log_in(three, front, "alice", PASSWORD)
        assert blocked.status_code == 429, blocked.text
        assert int(blocked.headers["Retry-After"]) > 0


# -- forward-auth: auth_request to /auth/verify ----------------------------------------------
def test_auth_request_guards_the_private_upstream_until_logout(gunicorn_server, nginx, private_app):
    # Two workers, as deployed: the logout and the refused request may meet different ones.
    front = nginx(gunicorn_server({"TOKENAUTH_TRUSTED_PROXIES": "127.0.0.1"}))
    user_id, token = register_and_log_in(front, "alice")

    anonymous = requests.get(f"{front}/private/report", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == BEARER_CHALLENGE
    bad = requests.get(f"{front}/private/report", headers=bearer("not-a-jwt"), timeout=10)
    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"].startswith(f'{BEARER_CHALLENGE}, error="invalid_token"')
    assert private_app.received == []

    # The client's own X-Auth-* and X-Forwarded-For are replaced, never passed on.
    forged = {
        "X-Auth-Subject": "0" * 24,
        "X-Auth-Username": "root",
        "X-Auth-Amr": "pwd,otp,mfa",
        "X-Forwarded-For": "10.9.9.9",
    }
    with client_at("127.0.0.2") as two:
        answer = two.get(f"{front}/private/report", headers={**bearer(token), **forged}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.text == "private /private/report"
    (received,) = private_app.received
    assert received["X-Auth-Subject"] == user_id
    assert received["X-Auth-Username"] == "alice"
    assert received["X-Auth-Roles"] == "user"
    assert received["X-Auth-Amr"] == "pwd"
    assert received["X-Forwarded-For"] == "127.0.0.2"

    logout = requests.post(f"{front}/auth/logout", headers=bearer(token), timeout=10)
    assert logout.status_code == 204
    deadline = time.monotonic() + REVOCATION_DEADLINE
    while True:
        refused = requests.get(f"{front}/private/report", headers=bearer(token), timeout=10)
        if refused.status_code == 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert refused.status_code == 401, "the logged-out token still opened /private/ after 2 s"
    assert refused.headers["WWW-Authenticate"].startswith(
        f'{BEARER_CHALLENGE}, error="invalid_token"'
    )


def test_auth_request_passes_unicode_usernames_percent_encoded(gunicorn_server, nginx, private_app):
    front = nginx(gunicorn_server(args=SMALL))
    for username, encoded in UNICODE_USERNAMES.items():
        user_id, token = register_and_log_in(front, username)
        answer = requests.get(f"{front}/private/me", headers=bearer(token), timeout=10)
        assert answer.status_code == 200, (username, answer.status_code)
        received = private_app.received[-1]
        assert received["X-Auth-Username"] == encoded
        assert received["X-Auth-Subject"] == user_id


# -- slow clients ----------------------------------------------------------------------------
def hold_slow_clients(port: int, stop_event: threading.Event) -> None:
    """SLOW_CLIENTS sockets, each sending a request's headers one byte a second, reopened
    when the server closes them, until `stop_event`."""
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    sockets: list[tuple[socket.socket, int]] = []
    try:
        while not stop_event.is_set():
            while len(sockets) < SLOW_CLIENTS:
                sockets.append((socket.create_connection(("127.0.0.1", port), timeout=2), 0))
            kept = []
            for sock, sent in sockets:
                try:
                    sock.sendall(request[sent : sent + 1])
                    kept.append((sock, sent + 1))
                except OSError:
                    sock.close()
            sockets = kept
            stop_event.wait(1.0)
    finally:
        for sock, _ in sockets:
            sock.close()


def health_latencies_under_slow_clients(
    port: int, health_url: str, timeout: float = PROBE_TIMEOUT
) -> list[float]:
    """Hold the slow clients on `port` for SLOW_SECONDS, probing `health_url` every
    PROBE_INTERVAL: each probe's seconds to a 200 (inf for an error or a timeout)."""
    stop_event = threading.Event()
    holder = threading.Thread(target=hold_slow_clients, args=(port, stop_event), daemon=True)
    holder.start()
    latencies = []
    try:
        time.sleep(1.0)  # every slow client connected and sending
        deadline = time.monotonic() + SLOW_SECONDS
        while time.monotonic() < deadline:
            began = time.monotonic()
            try:
                answer = requests.get(health_url, timeout=timeout, headers={"Connection": "close"})
                took = time.monotonic() - began if answer.status_code == 200 else float("inf")
            except requests.RequestException:
                took = float("inf")
            latencies.append(took)
            time.sleep(max(0.0, PROBE_INTERVAL - (time.monotonic() - began)))
    finally:
        stop_event.set()
        holder.join(timeout=PROCESS_TIMEOUT)
    return latencies


def test_slow_clients_at_nginx_do_not_delay_health(gunicorn_server, nginx):
    # The deployed settings (2 workers x 8 threads): 48 slow clients outnumber the threads.
    service = gunicorn_server()
    front = nginx(service)
    through_nginx = health_latencies_under_slow_clients(
        int(front.rsplit(":", 1)[1]), f"{front}/health"
    )
    # Measured, not asserted (run with -s to see it): the same clients at gunicorn directly,
    # probed with a longer timeout so that a delay shows as a number.
    direct = health_latencies_under_slow_clients(
        int(service.rsplit(":", 1)[1]), f"{service}/health", timeout=SLOW_SECONDS
    )
    in_time = sum(took < PROBE_TIMEOUT for took in direct)
    print(
        f"\n{SLOW_CLIENTS} slow clients for {SLOW_SECONDS:.0f} s, worst /health: through nginx "
        f"{max(through_nginx):.3f} s ({len(through_nginx)} probes); "
        f"gunicorn directly {max(direct):.3f} s ({in_time} of "
        f"{len(direct)} probes 200 within {PROBE_TIMEOUT:.0f} s; inf: none within "
        f"{SLOW_SECONDS:.0f} s), direct probes: {', '.join(f'{t:.2f}' for t in direct)}"
    )
    assert len(through_nginx) >= SLOW_SECONDS / PROBE_INTERVAL - 1
    assert all(took < PROBE_TIMEOUT for took in through_nginx), through_nginx
