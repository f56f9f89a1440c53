"""Auth events are logged as one JSON line each, with ids and addresses but never a secret."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import requests
from helpers import PASSWORD, bearer

NEW_PASSWORD = "saffron-kestrel-meadow-2024"
WRONG = "wrong-but-long-password-guess"
ADDRESS = "192.0.2.10"  # what make_app's TestApp sends as REMOTE_ADDR

# Which fields each event must carry (more are allowed, secrets never).
EXPECTED_FIELDS = {
    "user_registered": {"user_id", "address"},
    "login_succeeded": {"user_id", "sid", "address"},
    "login_failed": {"user_id", "address"},
    "token_refreshed": {"user_id", "sid", "address"},
    "refresh_reuse_detected": {"user_id", "sid", "address"},
    "session_revoked": {"user_id", "sid", "address"},
    "logout": {"user_id", "sid", "address"},
    "password_changed": {"user_id", "sid", "address"},
    "login_throttled": {"address"},
}


def refresh(post, refresh_token: str):
    return post("/auth/token", {"grant_type": "refresh_token", "refresh_token": refresh_token})


def walk_a_full_session(post_json, put_json, secrets: list[str]) -> None:
    """Register, log in, fail, refresh, reuse, revoke, log out, change password, get throttled.

    `post_json(path, body, token=None, status=...)` and `put_json` talk to the service; every
    password and token used is appended to `secrets`.
    """
    secrets += [PASSWORD, NEW_PASSWORD, WRONG]
    assert post_json("/users", {"username": "alice", "password": PASSWORD}).status == 201
    first = post_json(
        "/auth/token", {"grant_type": "password", "username": "alice", "password": PASSWORD}
    ).json
    secrets += [first["access_token"], first["refresh_token"]]
    failed = {"grant_type": "password", "username": "alice", "password": WRONG}
    assert post_json("/auth/token", failed).status == 400
    second = refresh(post_json, first["refresh_token"]).json
    secrets += [second["access_token"], second["refresh_token"]]
    # The first refresh token again (no reuse interval here): the whole session is revoked.
    assert refresh(post_json, first["refresh_token"]).status == 400
    other = post_json(
        "/auth/token", {"grant_type": "password", "username": "alice", "password": PASSWORD}
    ).json
    secrets += [other["access_token"], other["refresh_token"]]
    assert post_json("/auth/revoke", {"token": other["refresh_token"]}).status == 200
    third = post_json(
        "/auth/token", {"grant_type": "password", "username": "alice", "password": PASSWORD}
    ).json
    secrets += [third["access_token"], third["refresh_token"]]
    assert post_json("/auth/logout", None, token=third["access_token"]).status == 204
    fourth = post_json(
        "/auth/token", {"grant_type": "password", "username": "alice", "password": PASSWORD}
    ).json
    secrets += [fourth["access_token"], fourth["refresh_token"]]
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert put_json("/users/me/password", change, token=fourth["access_token"]).status == 204
    # Two failures reach the limit (the tests run with TOKENAUTH_LOGIN_MAX_FAILURES=2).
    wrong = {"grant_type": "password", "username": "alice", "password": WRONG}
    assert post_json("/auth/token", wrong).status == 400
    assert post_json("/auth/token", wrong).status == 400
    throttled = {"grant_type": "password", "username": "alice", "password": NEW_PASSWORD}
    assert post_json("/auth/token", throttled).status == 429


class Answer:
    """Status and JSON body, whichever client produced them."""

    def __init__(self, status: int, json_body) -> None:
        self.status = status
        self.json = json_body


def stored_secrets(db, keys_dir: Path) -> list[str]:
    """The password hashes in the database and the signing keys on disk, whole and in parts."""
    found = []
    for user in db["users"].find():
        phc = user["password_hash"]
        found += [phc, *(part for part in phc.split("$") if len(part) >= 16)]
    for key_file in keys_dir.iterdir():
        if key_file.suffix in (".pem", ".secret"):
            text = key_file.read_text()
            found.append(text.strip())
            found += [line for line in text.splitlines() if line and not line.startswith("-----")]
    assert found, "no hash or key found to look for"
    return found


def token_parts(secrets: list[str]) -> list[str]:
    """Each JWT's signature too: a log line holding half a token holds too much."""
    return [part for secret in secrets for part in secret.split(".")[2:] if len(part) >= 16]


def assert_no_secret_in(lines: list[str], secrets: list[str]) -> None:
    leaks = [(secret[:12] + "…", line) for line in lines for secret in secrets if secret in line]
    assert leaks == []


def assert_events_complete(events: list[dict]) -> None:
    """Every auth event of the walk is there, with the fields that apply to it."""
    seen = {event["event"] for event in events}
    assert set(EXPECTED_FIELDS) <= seen
    for event in events:
        missing = EXPECTED_FIELDS.get(event["event"], set()) - {k for k, v in event.items() if v}
        assert missing == set(), f"{event['event']} lacks {missing}"


# -- in process, through logging -------------------------------------------------------
@pytest.fixture
def session_app(make_app, make_config):
    return make_app(make_config(login_max_failures=2, refresh_reuse_interval=0))


def test_a_full_session_logs_each_event_as_one_json_line_without_secrets(
    session_app, db, make_config, caplog
):
    app = session_app
    caplog.set_level(logging.INFO)

    def post_json(path, body, token=None):
        headers = bearer(token) if token else {}
        if body is None:
            response = app.post(path, headers=headers, status="*")
        else:
            response = app.post_json(path, body, headers=headers, status="*")
        return Answer(response.status_int, response.json if response.body else None)

    def put_json(path, body, token):
        response = app.put_json(path, body, headers=bearer(token), status="*")
        return Answer(response.status_int, None)

    secrets: list[str] = []
    walk_a_full_session(post_json, put_json, secrets)
    secrets += token_parts(secrets) + stored_secrets(db, make_config().keys_dir)

    event_records = [r for r in caplog.records if r.name == "tokenauth.events"]
    assert all(r.levelno == logging.INFO for r in event_records)
    messages = [r.getMessage() for r in event_records]
    assert all("\n" not in m for m in messages)
    events = [json.loads(m) for m in messages]
    assert all(isinstance(e, dict) for e in events)
    assert_events_complete(events)
    assert {e["address"] for e in events} == {ADDRESS}
    reuse = next(e for e in events if e["event"] == "refresh_reuse_detected")
    refreshed = next(e for e in events if e["event"] == "token_refreshed")
    assert reuse["sid"] == refreshed["sid"]
    assert_no_secret_in([caplog.text, *messages], secrets)


def test_log_event_writes_one_json_line_even_for_odd_values(caplog):
    import events

    caplog.set_level(logging.INFO, logger="tokenauth.events")
    events.log_event("example", user_id="u1", address="192.0.2.1", odd='quote " and\nnewline')
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert json.loads(record.getMessage())["odd"] == 'quote " and\nnewline'


# -- under gunicorn, on stderr ---------------------------------------------------------
def read_events(log_file: Path, wanted: set[str], timeout: float = 10.0) -> list[str]:
    """The log's lines once every wanted event shows (workers write as they go)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        seen = {json.loads(line)["event"] for line in lines if line.startswith('{"')}
        if wanted <= seen or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_gunicorn_writes_the_events_to_its_log_without_secrets(gunicorn_server, db, tmp_path):
    base = gunicorn_server(
        {"TOKENAUTH_LOGIN_MAX_FAILURES": "2", "TOKENAUTH_REFRESH_REUSE_INTERVAL": "0"},
        ("--workers", "1", "--threads", "4"),
    )

    def post_json(path, body, token=None):
        headers = bearer(token) if token else {}
        response = requests.post(f"{base}{path}", json=body, headers=headers, timeout=10)
        return Answer(response.status_code, response.json() if response.content else None)

    def put_json(path, body, token):
        response = requests.put(f"{base}{path}", json=body, headers=bearer(token), timeout=10)
        return Answer(response.status_code, None)

    secrets: list[str] = []
    walk_a_full_session(post_json, put_json, secrets)
    secrets += token_parts(secrets) + stored_secrets(db, tmp_path / "var" / "keys")

    port = base.rsplit(":", 1)[1]
    lines = read_events(tmp_path / f"gunicorn-{port}.log", set(EXPECTED_FIELDS))
    events = [json.loads(line) for line in lines if line.startswith('{"')]
    assert_events_complete(events)
    assert {e["address"] for e in events} == {"127.0.0.1"}
    assert_no_secret_in(lines, secrets)
