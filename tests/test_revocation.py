"""Ending sessions: RFC 7009 revoke, logout, password change, and how fast it spreads."""

from __future__ import annotations

import time

import pymongo
import pytest
import requests
from helpers import PASSWORD, assert_documented, bearer, login, register

import store as store_module

REVOKED_CHALLENGE = (
    'Bearer realm="tokenauth", error="invalid_token", '
    'error_description="The access token was revoked"'
)
NEW_PASSWORD = "marmalade-quasar-tundra-77"
PROPAGATION_DEADLINE = 2.0


def refresh(app, refresh_token: str, **kwargs):
    """The refresh_token grant as a form body."""
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return app.post("/auth/token", body, **kwargs)


def revoke_form(app, token: str, **fields):
    """POST /auth/revoke as RFC 7009 clients send it."""
    return app.post("/auth/revoke", {"token": token, **fields})


def revoke_json(app, token: str, **fields):
    """POST /auth/revoke with a JSON body."""
    return app.post_json("/auth/revoke", {"token": token, **fields})


def assert_revoke_answer(response) -> None:
    """RFC 7009 §2.2: 200, nothing in the body, never cached."""
    assert response.status_int == 200
    assert response.body == b""
    assert response.headers["Cache-Control"] == "no-store"
    assert_documented(response, "/auth/revoke", "POST")


def assert_revoked(app, access_token: str) -> None:
    """The access token is refused as revoked."""
    answer = app.get("/users/me", headers=bearer(access_token), status=401)
    assert answer.headers["WWW-Authenticate"] == REVOKED_CHALLENGE


def assert_session_dead(app, tokens: dict) -> None:
    """Neither the access nor the refresh token of this login works any more."""
    assert_revoked(app, tokens["access_token"])
    assert refresh(app, tokens["refresh_token"], status=400).json["error"] == "invalid_grant"


def assert_session_alive(app, tokens: dict) -> dict:
    """Both tokens of this login still work; the rotated tokens."""
    app.get("/users/me", headers=bearer(tokens["access_token"]), status=200)
    return refresh(app, tokens["refresh_token"], status=200).json


# -- POST /auth/revoke ------------------------------------------------------------------
@pytest.mark.parametrize("send", [revoke_form, revoke_json], ids=["form", "json"])
def test_revoking_a_refresh_token_ends_its_session(app, send):
    register(app, "alice")
    victim, bystander = login(app, "alice").json, login(app, "alice").json
    assert_revoke_answer(send(app, victim["refresh_token"]))
    assert_session_dead(app, victim)
    assert_session_alive(app, bystander)


@pytest.mark.parametrize("send", [revoke_form, revoke_json], ids=["form", "json"])
def test_revoking_an_access_token_ends_that_token_only(app, send):
    register(app, "alice")
    first = login(app, "alice").json
    assert_revoke_answer(send(app, first["access_token"]))
    assert_revoked(app, first["access_token"])
    rotated = refresh(app, first["refresh_token"]).json
    app.get("/users/me", headers=bearer(rotated["access_token"]), status=200)


@pytest.mark.parametrize("hint", ["access_token", "refresh_token", "id_token"])
def test_token_type_hint_is_only_a_hint(app, hint):
    # RFC 7009 §2.1: a hint that does not fit the token widens the search, never fails it.
    register(app, "alice")
    by_refresh, by_access = login(app, "alice").json, login(app, "alice").json
    assert_revoke_answer(revoke_form(app, by_refresh["refresh_token"], token_type_hint=hint))
    assert_revoke_answer(revoke_json(app, by_access["access_token"], token_type_hint=hint))
    assert_session_dead(app, by_refresh)
    assert_revoked(app, by_access["access_token"])


@pytest.mark.parametrize("token", ["garbage", "", "a.b.c", "x" * 43])
def test_unknown_tokens_are_ignored(app, token):
    assert_revoke_answer(revoke_form(app, token))
    assert_revoke_answer(revoke_json(app, token, token_type_hint="refresh_token"))


def test_revoking_twice_is_still_200(app):
    register(app, "alice")
    tokens = login(app, "alice").json
    for _ in range(2):
        assert_revoke_answer(revoke_form(app, tokens["refresh_token"]))
        assert_revoke_answer(revoke_form(app, tokens["access_token"]))
    assert_session_dead(app, tokens)


@pytest.mark.parametrize(
    ("body", "send_as_json"),
    [
        ({"token_type_hint": "access_token"}, False),
        ({"token_type_hint": "access_token"}, True),
        ({"token": 42}, True),
    ],
    ids=["form-without-token", "json-without-token", "json-token-not-a-string"],
)
def test_revoke_without_a_token_string_is_invalid_request(app, body, send_as_json):
    post = app.post_json if send_as_json else app.post
    answer = post("/auth/revoke", body, status=400)
    assert answer.content_type == "application/json"
    assert answer.json["error"] == "invalid_request"
    assert set(answer.json) == {"error", "error_description"}
    assert answer.json["error_description"].startswith("token ")
    assert_documented(answer, "/auth/revoke", "POST")


def test_revoke_refuses_other_media_types_in_the_oauth_form(app):
    answer = app.post("/auth/revoke", b"token=x", content_type="text/plain", status=415)
    assert answer.json["error"] == "invalid_request"
    assert_documented(answer, "/auth/revoke", "POST")


# -- POST /auth/logout ------------------------------------------------------------------
def test_logout_revokes_the_callers_session_only(app):
    register(app, "alice")
    leaving, staying = login(app, "alice").json, login(app, "alice").json
    answer = app.post("/auth/logout", headers=bearer(leaving["access_token"]), status=204)
    assert answer.body == b""
    assert_documented(answer, "/auth/logout", "POST")
    assert_session_dead(app, leaving)
    assert_session_alive(app, staying)


def test_logout_needs_a_token(app):
    answer = app.post("/auth/logout", status=401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'
    assert_documented(answer, "/auth/logout", "POST")


def test_logout_kills_access_tokens_issued_after_rotation_too(app):
    register(app, "alice")
    first = login(app, "alice").json
    second = refresh(app, first["refresh_token"]).json
    app.post("/auth/logout", headers=bearer(first["access_token"]), status=204)
    assert_revoked(app, second["access_token"])
    assert refresh(app, second["refresh_token"], status=400).json["error"] == "invalid_grant"


# -- PUT /users/me/password -------------------------------------------------------------
def change_password(app, access_token: str, current: str, new: str, **kwargs):
    """PUT /users/me/password."""
    body = {"current_password": current, "new_password": new}
    return app.put_json("/users/me/password", body, headers=bearer(access_token), **kwargs)


def test_password_change_revokes_every_other_session(app):
    register(app, "alice")
    caller, other, another = (login(app, "alice").json for _ in range(3))
    register(app, "bob")
    stranger = login(app, "bob").json

    answer = change_password(app, caller["access_token"], PASSWORD, NEW_PASSWORD, status=204)
    assert answer.body == b""
    assert_documented(answer, "/users/me/password", "PUT")

    assert_session_dead(app, other)
    assert_session_dead(app, another)
    assert_session_alive(app, caller)
    assert_session_alive(app, stranger)
    assert login(app, "alice", PASSWORD, status=400).json["error"] == "invalid_grant"
    assert login(app, "alice", NEW_PASSWORD, status=200).json["token_type"] == "Bearer"


def test_password_change_checks_the_current_password(app):
    register(app, "alice")
    tokens = login(app, "alice").json
    answer = change_password(
        app, tokens["access_token"], "not-the-password-at-all", NEW_PASSWORD, status=422
    )
    assert answer.content_type == "application/problem+json"
    assert [e["field"] for e in answer.json["errors"]] == ["current_password"]
    assert_documented(answer, "/users/me/password", "PUT")
    login(app, "alice", PASSWORD, status=200)
    assert_session_alive(app, tokens)


@pytest.mark.parametrize(
    "new_password",
    ["short", "fourteen-chars", "1QAZ2wsx3edc4RFV", "Alice-Has-A-Long-Name"],
    ids=["under-schema-minimum", "under-policy-minimum", "common", "equals-username"],
)
def test_password_change_applies_the_password_policy(app, new_password):
    register(app, "alice-has-a-long-name")
    caller, other = login(app, "alice-has-a-long-name").json, login(app, "alice-has-a-long-name")
    answer = change_password(app, caller["access_token"], PASSWORD, new_password, status=422)
    assert answer.json["status"] == 422
    assert [e["field"] for e in answer.json["errors"]] == ["new_password"]
    assert_session_alive(app, other.json)
    login(app, "alice-has-a-long-name", PASSWORD, status=200)


def test_password_change_needs_a_token(app):
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    answer = app.put_json("/users/me/password", body, status=401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'


# -- propagation ------------------------------------------------------------------------
class CommandCounter(pymongo.monitoring.CommandListener):
    """Counts every command the driver sends."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def test_protected_requests_check_revocation_without_the_database(make_app, mongo_uri, db_name):
    counter = CommandCounter()
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[counter])
    try:
        app = make_app(store=store_module.Store(client[db_name]))
        register(app, "alice")
        kept, ended = login(app, "alice").json, login(app, "alice").json
        app.post("/auth/logout", headers=bearer(ended["access_token"]), status=204)

        counter.commands.clear()
        for _ in range(25):
            app.get("/auth/verify", headers=bearer(kept["access_token"]), status=204)
            app.get("/auth/verify", headers=bearer(ended["access_token"]), status=401)
        assert counter.commands == []
    finally:
        client.close()


def test_revocation_reaches_another_instance_within_two_seconds(gunicorn_server):
    first, second = gunicorn_server(), gunicorn_server()
    http = requests.Session()
    assert http.post(f"{first}/users", json={"username": "alice", "password": PASSWORD}).ok
    tokens = http.post(
        f"{first}/auth/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
    ).json()
    headers = bearer(tokens["access_token"])
    for _ in range(4):  # warm both workers' caches of verified tokens on the second instance
        assert requests.get(f"{second}/auth/verify", headers=headers, timeout=5).status_code == 204

    assert http.post(f"{first}/auth/logout", headers=headers, timeout=5).status_code == 204
    logged_out = time.monotonic()
    delay = poll_until_refused(f"{second}/auth/verify", headers, since=logged_out)
    print(f"revocation seen by the other instance after {delay:.2f} s")
    assert delay < PROPAGATION_DEADLINE

    # By the deadline every worker of both instances refuses it (fresh connections spread them).
    time.sleep(max(0.0, logged_out + PROPAGATION_DEADLINE - time.monotonic()))
    for base in (first, second) * 6:
        answer = requests.get(f"{base}/auth/verify", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == REVOKED_CHALLENGE


def poll_until_refused(url: str, headers: dict, *, since: float) -> float:
    """Seconds from `since` until `url` first answers 401, polling every 100 ms (bounded)."""
    deadline = since + PROPAGATION_DEADLINE + 3
    while time.monotonic() < deadline:
        if requests.get(url, headers=headers, timeout=5).status_code == 401:
            return time.monotonic() - since
        time.sleep(0.1)
    raise AssertionError(f"{url} still accepts a revoked token after {deadline - since:.1f} s")


def test_guessing_the_current_password_is_throttled_like_logins(app):
    register(app, "mallory-target")
    token = login(app, "mallory-target").json["access_token"]
    guess = {
        "current_password": "not-the-password-at-all",
        "new_password": "a-brand-new-passphrase-9",
    }
    for _ in range(5):
        app.put_json("/users/me/password", guess, headers=bearer(token), status=422)
    right = {"current_password": PASSWORD, "new_password": "a-brand-new-passphrase-9"}
    answer = app.put_json("/users/me/password", right, headers=bearer(token), status=429)
    assert int(answer.headers["Retry-After"]) > 0
    assert answer.json["status"] == 429
