"""Accounts an admin manages: GET/PATCH /users/{id}, GET/DELETE /users/{id}/sessions."""

from __future__ import annotations

import json
import logging
import time

import jwt
import pytest
import requests
from helpers import ADMIN_PASSWORD, PASSWORD, assert_documented, bearer, login, make_admin, register
from test_revocation import (
    PROPAGATION_DEADLINE,
    REVOKED_CHALLENGE,
    assert_session_alive,
    assert_session_dead,
    poll_until_refused,
)
from test_sessions import sid_of

WRONG_PASSWORD = {
    "error": "invalid_grant",
    "error_description": "The username or password is incorrect",
}
LAST_ADMIN = {
    "type": "about:blank",
    "title": "Conflict",
    "status": 409,
    "detail": "The last active admin cannot do this; make another admin first",
}
NO_USER = {
    "type": "about:blank",
    "title": "Not Found",
    "status": 404,
    "detail": "No user has this id",
}


def user_id(app, token: str) -> str:
    """The id of the token's user."""
    return app.get("/users/me", headers=bearer(token)).json["id"]


def patch(app, admin_token: str, uid: str, body: dict, **kwargs):
    """PATCH /users/{id} as an admin."""
    return app.patch_json(f"/users/{uid}", body, headers=bearer(admin_token), **kwargs)


def events(caplog, name: str) -> list[dict]:
    """The logged events of this name."""
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "tokenauth.events"]
    return [line for line in lines if line["event"] == name]


@pytest.fixture
def alice(app) -> dict:
    """alice registered and logged in: her tokens and id."""
    created = register(app, "alice").json
    return {**login(app, "alice").json, "id": created["id"], "created_at": created["created_at"]}


def test_an_admin_reads_one_user_with_disabled(app, admin_token, alice):
    answer = app.get(f"/users/{alice['id']}", headers=bearer(admin_token))
    assert answer.status_int == 200
    assert answer.json == {
        "id": alice["id"],
        "username": "alice",
        "roles": ["user"],
        "created_at": alice["created_at"],
        "disabled": False,
    }
    assert_documented(answer, "/users/{user_id}", "GET")
    for missing in ("0123456789abcdef01234567", "not-an-id"):
        gone = app.get(f"/users/{missing}", headers=bearer(admin_token), status=404)
        assert gone.json == NO_USER
        assert_documented(gone, "/users/{user_id}", "GET")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/users/{id}"),
        ("PATCH", "/users/{id}"),
        ("GET", "/users/{id}/sessions"),
        ("DELETE", "/users/{id}/sessions"),
    ],
)
def test_the_admin_routes_refuse_users_and_strangers(app, alice, method, path):
    url = path.replace("{id}", alice["id"])
    kwargs = {"body": b'{"disabled": true}', "content_type": "application/json"}
    kwargs = kwargs if method == "PATCH" else {}
    anonymous = app.request(url, method=method, status=401, **kwargs)
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'
    refused = app.request(
        url, method=method, headers=bearer(alice["access_token"]), status=403, **kwargs
    )
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer realm="tokenauth", error="insufficient_scope", '
        'error_description="This route needs the admin role"'
    )
    assert_session_alive(app, alice)


def test_disabling_ends_every_session_and_refuses_login_like_a_wrong_password(
    app, admin_token, alice, caplog
):
    other = login(app, "alice").json
    with caplog.at_level(logging.INFO, logger="tokenauth.events"):
        answer = patch(app, admin_token, alice["id"], {"disabled": True})
        assert answer.status_int == 200
        assert answer.json["disabled"] is True
        assert_documented(answer, "/users/{user_id}", "PATCH")
        assert_session_dead(app, alice)
        assert_session_dead(app, other)

        refused = login(app, "alice", status=400)
        wrong = login(app, "alice", "not-her-password-at-all", status=400)
    assert refused.json == wrong.json == WRONG_PASSWORD
    assert refused.headers["Cache-Control"] == wrong.headers["Cache-Control"] == "no-store"
    (disabled,) = events(caplog, "user_disabled")
    assert (disabled["user_id"], disabled["by"], disabled["sessions_revoked"]) == (
        alice["id"],
        user_id(app, admin_token),
        2,
    )
    (attempt,) = events(caplog, "login_disabled")
    assert (attempt["user_id"], attempt["address"]) == (alice["id"], "192.0.2.10")
    assert app.get(f"/users/{alice['id']}", headers=bearer(admin_token)).json["disabled"] is True

    enabled = patch(app, admin_token, alice["id"], {"disabled": False})
    assert enabled.json["disabled"] is False
    assert_session_alive(app, login(app, "alice").json)


def test_a_disabled_accounts_right_password_counts_as_a_failure(make_config, make_app):
    app = make_app(make_config(login_max_failures=2))
    admin_token = make_admin(app)
    uid = register(app, "alice").json["id"]
    patch(app, admin_token, uid, {"disabled": True})
    assert login(app, "alice", status=400).json == WRONG_PASSWORD
    assert login(app, "alice", status=400).json == WRONG_PASSWORD
    throttled = login(app, "alice", status=429)
    assert throttled.json["error"] == "temporarily_unavailable"


def test_a_disabled_user_cannot_refresh_a_session_that_escaped_revocation(app, db, alice):
    # As a login in flight while the account was disabled: its session was never ended.
    from bson import ObjectId

    db.users.update_one({"_id": ObjectId(alice["id"])}, {"$set": {"disabled": True}})
    body = {"grant_type": "refresh_token", "refresh_token": alice["refresh_token"]}
    answer = app.post("/auth/token", body, status=400)
    assert answer.json == {
        "error": "invalid_grant",
        "error_description": "The refresh token is expired or revoked",
    }
    assert "revoked_at" in db.sessions.find_one({"_id": sid_of(alice)})


def test_the_last_active_admin_cannot_be_disabled_or_demoted(app, admin_token):
    me = user_id(app, admin_token)
    for body in ({"disabled": True}, {"roles": ["user"]}, {"disabled": True, "roles": ["user"]}):
        answer = patch(app, admin_token, me, body, status=409)
        assert answer.json == LAST_ADMIN
        assert answer.content_type == "application/problem+json"
        assert_documented(answer, "/users/{user_id}", "PATCH")
    unchanged = app.get(f"/users/{me}", headers=bearer(admin_token)).json
    assert (unchanged["roles"], unchanged["disabled"]) == (["user", "admin"], False)


def test_a_disabled_admin_does_not_count_as_an_active_one(app, admin_token):
    me = user_id(app, admin_token)
    second = make_admin(app, "second-admin")
    second_id = user_id(app, second)
    assert patch(app, admin_token, second_id, {"disabled": True}).json["disabled"] is True
    assert patch(app, admin_token, me, {"roles": ["user"]}, status=409).json == LAST_ADMIN
    # Account deletion counts the same way.
    gone = app.delete_json(
        "/users/me", {"current_password": ADMIN_PASSWORD}, headers=bearer(admin_token), status=409
    )
    assert gone.json == LAST_ADMIN
    # Enabled again, the second admin lets the first step down.
    patch(app, admin_token, second_id, {"disabled": False})
    assert patch(app, admin_token, me, {"roles": ["user"]}).json["roles"] == ["user"]


def test_roles_come_from_a_fixed_set_and_taking_one_away_ends_sessions(app, admin_token, alice):
    promoted = patch(app, admin_token, alice["id"], {"roles": ["admin", "user"]})
    assert promoted.json["roles"] == ["user", "admin"]
    assert_session_alive(app, alice)
    tokens = login(app, "alice").json
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["roles"] == ["user", "admin"]

    demoted = patch(app, admin_token, alice["id"], {"roles": ["user"]})
    assert demoted.json["roles"] == ["user"]
    assert_session_dead(app, tokens)

    for body, field in (
        ({"roles": ["root"]}, "roles.0"),
        ({"roles": []}, "roles"),
        ({"roles": ["user", "user"]}, "roles"),
        ({"disabled": "yes"}, "disabled"),
        ({"username": "mallory"}, "username"),
    ):
        refused = patch(app, admin_token, alice["id"], body, status=422)
        assert field in [error["field"] for error in refused.json["errors"]], refused.json
    assert (
        patch(app, admin_token, "0123456789abcdef01234567", {"disabled": True}, status=404).json
        == NO_USER
    )


def test_an_admin_lists_and_ends_a_users_sessions(app, admin_token, alice, caplog):
    other = login(app, "alice").json
    listed = app.get(f"/users/{alice['id']}/sessions", headers=bearer(admin_token))
    assert listed.status_int == 200
    assert listed.headers["Cache-Control"] == "no-store"
    assert_documented(listed, "/users/{user_id}/sessions", "GET")
    assert sorted(item["id"] for item in listed.json["items"]) == sorted(
        [sid_of(alice), sid_of(other)]
    )
    for item in listed.json["items"]:
        assert set(item) == {"id", "created_at", "last_used_at", "address", "device"}
        assert item["address"] == "192.0.2.10"

    with caplog.at_level(logging.INFO, logger="tokenauth.events"):
        ended = app.delete(f"/users/{alice['id']}/sessions", headers=bearer(admin_token))
    assert ended.status_int == 204
    assert ended.body == b""
    assert_documented(ended, "/users/{user_id}/sessions", "DELETE")
    assert_session_dead(app, alice)
    assert_session_dead(app, other)
    assert sorted(e["sid"] for e in events(caplog, "session_ended")) == sorted(
        [sid_of(alice), sid_of(other)]
    )
    assert app.get(f"/users/{alice['id']}/sessions", headers=bearer(admin_token)).json == {
        "items": []
    }
    app.get("/users/me", headers=bearer(admin_token), status=200)
    for method in ("GET", "DELETE"):
        missing = app.request(
            "/users/0123456789abcdef01234567/sessions",
            method=method,
            headers=bearer(admin_token),
            status=404,
        )
        assert missing.json == NO_USER


def test_disabling_reaches_another_instance_within_two_seconds(gunicorn_server, app):
    first, second = gunicorn_server(), gunicorn_server()
    app.app.components.accounts.register("root-admin", ADMIN_PASSWORD, roles=("user", "admin"))
    http = requests.Session()
    created = http.post(f"{first}/users", json={"username": "alice", "password": PASSWORD}).json()
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    alice = http.post(f"{first}/auth/token", data=form, timeout=10).json()
    admin = {**form, "username": "root-admin", "password": ADMIN_PASSWORD}
    admin_token = http.post(f"{first}/auth/token", data=admin, timeout=10).json()["access_token"]
    headers = bearer(alice["access_token"])
    for _ in range(4):
        assert requests.get(f"{second}/auth/verify", headers=headers, timeout=5).status_code == 204

    url = f"{first}/users/{created['id']}"
    changed = http.patch(url, json={"disabled": True}, headers=bearer(admin_token), timeout=5)
    assert changed.status_code == 200
    disabled = time.monotonic()
    delay = poll_until_refused(f"{second}/auth/verify", headers, since=disabled)
    print(f"disabled user's token refused by the other instance after {delay:.2f} s")
    assert delay < PROPAGATION_DEADLINE
    time.sleep(max(0.0, disabled + PROPAGATION_DEADLINE - time.monotonic()))
    for base in (first, second) * 6:
        answer = requests.get(f"{base}/auth/verify", headers=headers, timeout=5)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == REVOKED_CHALLENGE
