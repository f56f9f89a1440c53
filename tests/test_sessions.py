"""Sessions a person can see and end: GET/DELETE /users/me/sessions[/{sid}]."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

import jwt
import pytest
import requests
from helpers import PASSWORD, assert_documented, bearer, login, register
from test_revocation import (
    PROPAGATION_DEADLINE,
    REVOKED_CHALLENGE,
    assert_session_alive,
    assert_session_dead,
    poll_until_refused,
)

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
NOT_FOUND = {
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "You have no live session with this id",
}


def sid_of(tokens: dict) -> str:
    """The session id of a login's access token."""
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]


def stamp(moment: dt.datetime) -> str:
    """An RFC 3339 UTC time as the service writes it."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sign_in(app, agent: str, address: str) -> dict:
    """A password login from this browser and address."""
    environ = {"REMOTE_ADDR": address}
    return login(app, "alice", headers={"User-Agent": agent}, extra_environ=environ).json


@pytest.fixture
def timed(make_config, make_app, clock):
    """The service on the test's clock, alice registered."""
    app = make_app(make_config(), clock=clock)
    register(app, "alice")
    return app


def test_the_list_shows_each_live_session_and_marks_the_callers(timed, clock):
    started = clock.now
    laptop = sign_in(timed, CHROME, "198.51.100.7")
    clock.advance(60)
    phone = sign_in(timed, FIREFOX, "203.0.113.9")

    answer = timed.get("/users/me/sessions", headers=bearer(laptop["access_token"]))
    assert answer.status_int == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json == {
        "items": [
            {
                "id": sid_of(phone),
                "created_at": stamp(started + dt.timedelta(seconds=60)),
                "last_used_at": stamp(started + dt.timedelta(seconds=60)),
                "address": "203.0.113.9",
                "device": "Firefox 133 on Windows",
                "current": False,
            },
            {
                "id": sid_of(laptop),
                "created_at": stamp(started),
                "last_used_at": stamp(started),
                "address": "198.51.100.7",
                "device": "Chrome 131 on Linux",
                "current": True,
            },
        ]
    }
    assert_documented(answer, "/users/me/sessions", "GET")


def test_a_refresh_updates_last_used_and_where_from(timed, clock):
    started = clock.now
    laptop = sign_in(timed, CHROME, "198.51.100.7")
    clock.advance(300)
    body = {"grant_type": "refresh_token", "refresh_token": laptop["refresh_token"]}
    timed.post(
        "/auth/token",
        body,
        headers={"User-Agent": FIREFOX},
        extra_environ={"REMOTE_ADDR": "203.0.113.50"},
    )
    (item,) = timed.get("/users/me/sessions", headers=bearer(laptop["access_token"])).json["items"]
    assert item == {
        "id": sid_of(laptop),
        "created_at": stamp(started),
        "last_used_at": stamp(started + dt.timedelta(seconds=300)),
        "address": "203.0.113.50",
        "device": "Firefox 133 on Windows",
        "current": True,
    }


def test_unknown_agents_and_ended_sessions(timed):
    mine = login(timed, "alice", headers={"User-Agent": ""}).json
    ended = login(timed, "alice").json
    timed.post("/auth/logout", headers=bearer(ended["access_token"]), status=204)
    items = timed.get("/users/me/sessions", headers=bearer(mine["access_token"])).json["items"]
    assert [(i["id"], i["device"], i["address"]) for i in items] == [
        (sid_of(mine), None, "192.0.2.10")
    ]


def test_ending_one_session_stops_it_and_logs_session_ended(timed, db, caplog):
    laptop = sign_in(timed, CHROME, "198.51.100.7")
    phone = sign_in(timed, FIREFOX, "203.0.113.9")
    headers = {**bearer(laptop["access_token"]), "User-Agent": CHROME}

    with caplog.at_level(logging.INFO, logger="tokenauth.events"):
        answer = timed.delete(f"/users/me/sessions/{sid_of(phone)}", headers=headers)
    assert answer.status_int == 204
    assert answer.body == b""
    assert_documented(answer, "/users/me/sessions/{sid}", "DELETE")
    assert_session_dead(timed, phone)
    assert_session_alive(timed, laptop)
    (line,) = [json.loads(r.getMessage()) for r in caplog.records]
    assert {k: line[k] for k in ("event", "user_id", "sid", "by_sid", "address")} == {
        "event": "session_ended",
        "user_id": jwt.decode(laptop["access_token"], options={"verify_signature": False})["sub"],
        "sid": sid_of(phone),
        "by_sid": sid_of(laptop),
        "address": "192.0.2.10",
    }
    kept = db.events.find_one({"event": "session_ended"})
    assert kept["user_agent"] == CHROME
    # Ended twice: not a live session of the caller any more.
    again = timed.delete(f"/users/me/sessions/{sid_of(phone)}", headers=headers, status=404)
    assert again.json == NOT_FOUND
    assert again.content_type == "application/problem+json"


def test_ending_the_callers_own_session_works_too(timed):
    mine = login(timed, "alice").json
    timed.delete(f"/users/me/sessions/{sid_of(mine)}", headers=bearer(mine["access_token"]))
    answer = timed.get("/users/me", headers=bearer(mine["access_token"]), status=401)
    assert answer.headers["WWW-Authenticate"] == REVOKED_CHALLENGE


def test_another_users_session_or_an_unknown_id_is_404(timed):
    register(timed, "mallory")
    mallory = login(timed, "mallory").json
    alice = login(timed, "alice").json
    for sid in (sid_of(alice), "no-such-session", "0123456789abcdef01234567"):
        answer = timed.delete(
            f"/users/me/sessions/{sid}", headers=bearer(mallory["access_token"]), status=404
        )
        assert answer.json == NOT_FOUND
        assert_documented(answer, "/users/me/sessions/{sid}", "DELETE")
    assert_session_alive(timed, alice)


def test_ending_all_other_sessions_keeps_the_callers(timed, db):
    mine = login(timed, "alice").json
    others = [login(timed, "alice").json for _ in range(3)]
    register(timed, "bob")
    bob = login(timed, "bob").json

    answer = timed.delete("/users/me/sessions", headers=bearer(mine["access_token"]))
    assert answer.status_int == 204
    assert answer.body == b""
    assert_documented(answer, "/users/me/sessions", "DELETE")
    for other in others:
        assert_session_dead(timed, other)
    assert_session_alive(timed, bob)
    mine = assert_session_alive(timed, mine)
    items = timed.get("/users/me/sessions", headers=bearer(mine["access_token"])).json["items"]
    assert [item["id"] for item in items] == [sid_of(mine)]
    assert db.events.count_documents({"event": "session_ended"}) == 3


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/me/sessions"),
        ("DELETE", "/users/me/sessions"),
        ("DELETE", "/users/me/sessions/x"),
    ],
)
def test_the_session_routes_need_a_token(app, method, path):
    answer = app.request(path, method=method, status=401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'
    assert answer.content_type == "application/problem+json"


def test_an_ended_session_stops_at_another_instance_within_two_seconds(gunicorn_server):
    first, second = gunicorn_server(), gunicorn_server()
    http = requests.Session()
    assert http.post(f"{first}/users", json={"username": "alice", "password": PASSWORD}).ok
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    mine = http.post(f"{first}/auth/token", data=form, timeout=10).json()
    other = http.post(f"{first}/auth/token", data=form, timeout=10).json()
    headers = bearer(other["access_token"])
    for _ in range(4):  # warm both workers' caches of verified tokens on the second instance
        assert requests.get(f"{second}/auth/verify", headers=headers, timeout=5).status_code == 204

    url = f"{first}/users/me/sessions/{sid_of(other)}"
    assert http.delete(url, headers=bearer(mine["access_token"]), timeout=5).status_code == 204
    ended = time.monotonic()
    delay = poll_until_refused(f"{second}/auth/verify", headers, since=ended)
    print(f"ended session refused by the other instance after {delay:.2f} s")
    assert delay < PROPAGATION_DEADLINE
    time.sleep(max(0.0, ended + PROPAGATION_DEADLINE - time.monotonic()))
    for base in (first, second) * 6:
        answer = requests.get(f"{base}/auth/verify", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == REVOKED_CHALLENGE
