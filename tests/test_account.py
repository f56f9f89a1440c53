"""The account pages' API: the policy, the caller's recent activity, deleting one's account."""

from __future__ import annotations

import datetime as dt

import pytest
from helpers import ADMIN_PASSWORD, PASSWORD, bearer, login, make_admin, register

from config import Config
from errors import ConfigError
from throttle import counter_key

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
WRONG = "not-the-password-at-all"


# -- the policy ------------------------------------------------------------------------------
def test_the_policy_is_what_the_service_enforces(make_app, make_config):
    app = make_app(make_config(password_min_length=20))
    answer = app.get("/auth/policy", status=200)
    assert answer.json == {
        "password_min_length": 20,
        "password_max_length": 256,
        "username_min_length": 3,
        "username_max_length": 64,
        "username_pattern": "^[\\p{L}\\p{N}._@-]+$",
        "username_rule": "letters, digits and . _ - @",
        "email_required": False,
    }
    assert answer.headers["Cache-Control"] == "no-cache"
    refused = app.post_json("/users", {"username": "alice", "password": "x" * 19}, status=422)
    assert refused.json["errors"] == [
        {"field": "password", "message": "must be at least 20 characters"}
    ]
    app.post_json("/users", {"username": "alice", "password": PASSWORD[:20] + "!"}, status=201)


# -- recent activity -----------------------------------------------------------------------
def test_the_caller_sees_a_failed_login_with_its_address_and_device(make_app, clock):
    app = make_app(clock=clock)
    register(app, "alice", headers={"User-Agent": CHROME})
    clock.advance(1)
    login(app, "alice", WRONG, status=400, extra_environ={"REMOTE_ADDR": "198.51.100.7"})
    clock.advance(1)
    token = login(app, "alice", headers={"User-Agent": "curl/8.5.0"}).json["access_token"]
    events = app.get("/users/me/events", headers=bearer(token), status=200).json
    assert events["next_cursor"] is None
    assert events["items"] == [
        {
            "event": "login_succeeded",
            "time": stamp(clock.now),
            "address": "192.0.2.10",
            "device": "curl 8",
        },
        {
            "event": "login_failed",
            "time": stamp(clock.now - dt.timedelta(seconds=1)),
            "address": "198.51.100.7",
        },
        {
            "event": "user_registered",
            "time": stamp(clock.now - dt.timedelta(seconds=2)),
            "address": "192.0.2.10",
            "device": "Chrome 131 on Linux",
        },
    ]


def test_events_are_paged_newest_first_and_only_the_callers(make_app, clock):
    app = make_app(clock=clock)
    register(app, "alice")
    register(app, "bob")
    for _ in range(4):
        clock.advance(1)
        login(app, "alice", WRONG, status=400)
    login(app, "bob", WRONG, status=400)
    token = login(app, "alice").json["access_token"]
    seen, cursor = [], None
    for _ in range(5):
        query = "/users/me/events?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = app.get(query, headers=bearer(token)).json
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["event"] for e in seen] == ["login_succeeded"] + ["login_failed"] * 4 + [
        "user_registered"
    ]
    assert [e["time"] for e in seen] == sorted((e["time"] for e in seen), reverse=True)
    app.get("/users/me/events?cursor=garbage", headers=bearer(token), status=422)


def test_events_are_kept_for_the_configured_days_by_ttl_index(make_app, make_config, db, clock):
    app = make_app(make_config(event_retention=30), clock=clock)
    register(app, "alice")
    (stored,) = db.events.find()
    assert stored["expires_at"] - stored["time"] == dt.timedelta(days=30)
    ttl = {
        next(iter(index["key"])): index.get("expireAfterSeconds")
        for index in db.events.list_indexes()
    }
    assert ttl["expires_at"] == 0


@pytest.mark.parametrize("value", ["0", "3651", "ninety"])
def test_event_retention_is_checked_at_start(value):
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"TOKENAUTH_EVENT_RETENTION": value})
    assert refused.value.variable == "TOKENAUTH_EVENT_RETENTION"


def test_event_retention_defaults_to_90_days():
    assert Config.from_env({}).event_retention == 90


# -- deleting one's account ------------------------------------------------------------------
def test_deleting_my_account_removes_it_and_stops_every_token(app, db):
    register(app, "alice")
    first = login(app, "alice").json
    second = login(app, "alice").json
    user_id = db.users.find_one({"username": "alice"})["_id"]
    app.delete_json(
        "/users/me",
        {"current_password": PASSWORD},
        headers=bearer(first["access_token"]),
        status=204,
    )
    assert db.users.count_documents({}) == 0
    assert db.events.count_documents({"user_id": str(user_id)}) == 0
    for tokens in (first, second):
        app.get("/auth/verify", headers=bearer(tokens["access_token"]), status=401)
        refused = app.post_json(
            "/auth/token",
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            status=400,
        )
        assert refused.json["error"] == "invalid_grant"
    login(app, "alice", status=400)
    register(app, "alice", status=201)  # the name is free again


def test_a_wrong_password_deletes_nothing_and_counts_as_a_failed_login(app, db):
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    answer = app.delete_json(
        "/users/me", {"current_password": WRONG}, headers=bearer(token), status=422
    )
    assert answer.json["errors"] == [{"field": "current_password", "message": "is incorrect"}]
    assert db.users.count_documents({}) == 1
    assert db.throttle.find_one({"_id": counter_key("login:account", "alice")})["count"] == 1
    app.get("/users/me", headers=bearer(token), status=200)


def test_the_last_admin_cannot_delete_itself_but_one_of_two_can(app, db):
    token = make_admin(app)
    answer = app.delete_json(
        "/users/me", {"current_password": ADMIN_PASSWORD}, headers=bearer(token), status=409
    )
    assert answer.json["detail"] == "The last active admin cannot do this; make another admin first"
    assert db.users.count_documents({}) == 1
    app.app.components.accounts.register("second-admin", ADMIN_PASSWORD, roles=("user", "admin"))
    app.delete_json(
        "/users/me", {"current_password": ADMIN_PASSWORD}, headers=bearer(token), status=204
    )
    assert [u["username"] for u in db.users.find()] == ["second-admin"]


def test_the_deletion_is_logged_without_the_username(app, caplog):
    register(app, "alice-the-unique")
    token = login(app, "alice-the-unique").json["access_token"]
    with caplog.at_level("INFO", logger="tokenauth.events"):
        app.delete_json(
            "/users/me", {"current_password": PASSWORD}, headers=bearer(token), status=204
        )
    (line,) = [r.getMessage() for r in caplog.records if "account_deleted" in r.getMessage()]
    assert "alice-the-unique" not in line
    assert '"sessions_revoked": 1' in line


def stamp(value: dt.datetime) -> str:
    """RFC 3339 with milliseconds, as the API writes times."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
