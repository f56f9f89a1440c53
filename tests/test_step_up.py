"""Step-up (RFC 9470): recent sign-ins for sensitive routes, second factors, re-authentication,
and the sign-in claims in tokens, introspection and forward-auth."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import jwt
import pymongo
import pytest
from helpers import ADMIN_PASSWORD, PASSWORD, assert_documented, bearer, login, make_admin, register
from mfa_helpers import code_at, enable_totp, mfa_login, step_clock
from test_cookie_session import cookie_of, with_cookie
from test_ttl_indexes import Recorder

import store as store_module

STALE = (
    'Bearer realm="tokenauth", error="insufficient_user_authentication", '
    'error_description="This operation needs a sign-in within the last 600 seconds; sign in '
    'again", max_age=600'
)
WEAK = (
    'Bearer realm="tokenauth", error="insufficient_user_authentication", '
    'error_description="This operation needs a sign-in with a second factor; sign in again", '
    'max_age=600, acr_values="aal2"'
)
STALE_AND_WEAK = (
    'Bearer realm="tokenauth", error="insufficient_user_authentication", '
    'error_description="This operation needs a sign-in with a second factor within the last '
    '600 seconds; sign in again", max_age=600, acr_values="aal2"'
)
PERSON = {"name": "Ada Lovelace", "email": "ada@example.org"}


@pytest.fixture
def clock():
    """The app's clock, 5 s into a TOTP step."""
    return step_clock()


@pytest.fixture
def app(make_app, clock):
    """The service on that clock."""
    return make_app(clock=clock)


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def assert_step_up(answer, challenge: str) -> None:
    """401 with this RFC 9470 challenge and a problem+json body saying the same."""
    assert answer.status_int == 401
    assert answer.headers["WWW-Authenticate"] == challenge
    assert answer.content_type == "application/problem+json"
    detail = challenge.split('error_description="')[1].split('"')[0]
    assert answer.json == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": detail,
    }


# -- every step-up route refuses a sign-in older than TOKENAUTH_STEP_UP_MAX_AGE -------------------
ROUTES = [
    ("DELETE", "/users/me", {"current_password": ADMIN_PASSWORD}),
    (
        "PUT",
        "/users/me/password",
        {"current_password": ADMIN_PASSWORD, "new_password": "another-long-passphrase"},
    ),
    ("DELETE", "/users/me/sessions", None),
    ("PUT", "/users/me/email", {"email": "root@example.org", "current_password": ADMIN_PASSWORD}),
    ("POST", "/users/me/mfa/totp", None),
    ("DELETE", "/users/me/mfa/totp", None),
    ("POST", "/users/me/mfa/recovery-codes", None),
    ("POST", "/persons", PERSON),
    ("PATCH", "/persons/{person_id}", {"age": 37}),
    ("DELETE", "/persons/{person_id}", None),
    ("PATCH", "/users/{user_id}", {"disabled": True}),
    ("DELETE", "/users/{user_id}/sessions", None),
]


def snapshot(db) -> dict:
    """What a refused request must not change."""
    return {
        name: sorted(map(repr, db[name].find()))
        for name in ("users", "persons", "sessions", "outbox", "throttle")
    }


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_a_stale_sign_in_is_refused_and_changes_nothing(app, clock, db, method, path, body):
    admin = make_admin(app)
    person = app.post_json("/persons", PERSON, headers=bearer(admin), status=201).json
    register(app, "alice")
    login(app, "alice")
    alice_id = db["users"].find_one({"username": "alice"})["_id"]
    url = path.replace("{person_id}", person["id"]).replace("{user_id}", str(alice_id))
    clock.advance(601)  # the access token (900 s) is still valid; the sign-in is too old
    before = snapshot(db)
    answer = app.request(
        url,
        method=method,
        headers={**bearer(admin), **({"Content-Type": "application/json"} if body else {})},
        body=json.dumps(body).encode() if body else b"",
        expect_errors=True,
    )
    assert_step_up(answer, STALE)
    assert_documented(answer, path, method)
    assert snapshot(db) == before


def test_the_limit_is_inclusive_and_configurable(make_app, make_config, clock):
    app = make_app(make_config(step_up_max_age=60), clock=clock)
    admin = make_admin(app)
    clock.advance(60)
    app.post_json("/persons", PERSON, headers=bearer(admin), status=201)
    clock.advance(1)
    answer = app.post_json("/persons", PERSON, headers=bearer(admin), expect_errors=True)
    assert_step_up(answer, STALE.replace("600", "60"))


def test_a_fresh_login_passes_again(app, clock):
    admin = make_admin(app)
    clock.advance(601)
    app.post_json("/persons", PERSON, headers=bearer(admin), status=401)
    fresh = login(app, "root-admin", ADMIN_PASSWORD).json["access_token"]
    app.post_json("/persons", PERSON, headers=bearer(fresh), status=201)


def test_a_refresh_keeps_the_sign_in_time(app, clock):
    register(app, "alice")
    tokens = login(app, "alice").json
    clock.advance(601)
    refreshed = app.post(
        "/auth/token", {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    ).json
    answer = app.delete(
        "/users/me/sessions", headers=bearer(refreshed["access_token"]), expect_errors=True
    )
    assert_step_up(answer, STALE)


def test_the_role_is_checked_before_the_sign_in(app, clock):
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    clock.advance(601)
    answer = app.post_json("/persons", PERSON, headers=bearer(token), status=403)
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]


# -- a second factor, where the account has one -------------------------------------------------
def test_an_account_with_a_factor_needs_it_for_step_up(app, clock):
    register(app, "alice")
    weak = login(app, "alice").json["access_token"]
    secret, _ = enable_totp(app, weak, clock)
    change = {"current_password": PASSWORD, "new_password": "another-long-passphrase"}
    answer = app.put_json("/users/me/password", change, headers=bearer(weak), expect_errors=True)
    assert_step_up(answer, WEAK)
    assert_documented(answer, "/users/me/password", "PUT")
    strong = mfa_login(app, secret, clock)["access_token"]
    clock.advance(601)
    answer = app.put_json("/users/me/password", change, headers=bearer(strong), expect_errors=True)
    assert_step_up(answer, STALE_AND_WEAK)
    strong = mfa_login(app, secret, clock)["access_token"]
    app.put_json("/users/me/password", change, headers=bearer(strong), status=204)


def test_admin_writes_need_the_admins_second_factor(app, clock):
    weak = make_admin(app)
    app.post_json("/persons", PERSON, headers=bearer(weak), status=201)  # no factor yet
    secret, _ = enable_totp(app, weak, clock)
    answer = app.post_json("/persons", PERSON, headers=bearer(weak), expect_errors=True)
    assert_step_up(answer, WEAK)
    strong = mfa_login(app, secret, clock, username="root-admin", password=ADMIN_PASSWORD)[
        "access_token"
    ]
    app.post_json("/persons", PERSON, headers=bearer(strong), status=201)
    # Reads need neither.
    clock.advance(601)
    app.get("/persons", headers=bearer(weak), status=200)
    app.get("/users", headers=bearer(weak), status=200)


def test_a_fresh_two_factor_token_steps_up_without_a_read(make_app, mongo_uri, db_name, clock):
    commands: list[str] = []
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[Recorder(commands)])
    try:
        app = make_app(store=store_module.Store(client[db_name]), clock=clock)
        weak = make_admin(app)
        secret, _ = enable_totp(app, weak, clock)
        strong = mfa_login(app, secret, clock, username="root-admin", password=ADMIN_PASSWORD)
        commands.clear()
        app.post_json("/persons", PERSON, headers=bearer(strong["access_token"]), status=201)
        assert commands == ["insert"]
        commands.clear()
        app.post_json("/persons", PERSON, headers=bearer(weak), status=401)
        assert commands == ["find"]  # whether the admin has a factor
    finally:
        client.close()


def test_admin_writes_without_the_factor_when_the_operator_says_so(make_app, make_config, clock):
    app = make_app(make_config(admin_requires_mfa=False), clock=clock)
    weak = make_admin(app)
    secret, _ = enable_totp(app, weak, clock)
    app.post_json("/persons", PERSON, headers=bearer(weak), status=201)
    # Still a recent sign-in, though; and the admin's own account routes still need the factor.
    clock.advance(601)
    assert_step_up(
        app.post_json("/persons", PERSON, headers=bearer(weak), expect_errors=True), STALE
    )
    fresh = login(app, "root-admin", ADMIN_PASSWORD, status=403)
    assert fresh.json["error"] == "mfa_required"
    strong = mfa_login(app, secret, clock, username="root-admin", password=ADMIN_PASSWORD)[
        "access_token"
    ]
    app.post("/users/me/mfa/recovery-codes", headers=bearer(strong), status=200)


# -- re-authenticating the browser's session ------------------------------------------------------
def cookie_login(app, cookie: str | None, username: str = "alice", **kwargs):
    app.cookiejar.clear()
    body = {"username": username, "password": PASSWORD}
    return app.post_json("/auth/session", body, headers=with_cookie(cookie), **kwargs)


def test_a_login_with_the_users_live_cookie_re_authenticates_that_session(app, clock):
    register(app, "alice")
    first = cookie_login(app, None)
    cookie, _ = cookie_of(first)
    sid = claims_of(first.json["access_token"])["sid"]
    clock.advance(700)
    again = cookie_login(app, cookie)
    new_cookie, max_age = cookie_of(again)
    claims = claims_of(again.json["access_token"])
    assert new_cookie != cookie
    assert claims["sid"] == sid
    assert claims["auth_time"] == int(clock.now.timestamp())
    assert max_age == 1_209_600 - 700  # the session's end does not move
    sessions = app.get("/users/me/sessions", headers=bearer(again.json["access_token"])).json
    assert [s["id"] for s in sessions["items"]] == [sid]
    app.delete("/users/me/sessions", headers=bearer(again.json["access_token"]), status=204)
    # The old cookie retired as a rotation retires it: within the reuse interval (another
    # tab refreshing just then) it gives the same new cookie, whose session is the strong one.
    clock.advance(5)
    app.cookiejar.clear()
    racing = app.post("/auth/session/refresh", headers=with_cookie(cookie), status=200)
    assert cookie_of(racing)[0] == new_cookie
    assert claims_of(racing.json["access_token"])["auth_time"] == claims["auth_time"]
    app.cookiejar.clear()
    app.post("/auth/session/refresh", headers=with_cookie(new_cookie), status=200)
    # Past the interval it is reuse, as after any rotation.
    clock.advance(10)
    app.cookiejar.clear()
    app.post("/auth/session/refresh", headers=with_cookie(cookie), status=401)


def test_a_login_without_the_cookie_opens_another_session(app):
    register(app, "alice")
    first = cookie_login(app, None)
    second = cookie_login(app, None)
    assert (
        claims_of(first.json["access_token"])["sid"]
        != claims_of(second.json["access_token"])["sid"]
    )


def test_another_users_cookie_is_left_alone(app):
    register(app, "alice")
    register(app, "bob")
    alice = cookie_login(app, None)
    alice_cookie, _ = cookie_of(alice)
    bob = cookie_login(app, alice_cookie, username="bob")
    assert (
        claims_of(bob.json["access_token"])["sub"] != claims_of(alice.json["access_token"])["sub"]
    )
    app.cookiejar.clear()
    app.post("/auth/session/refresh", headers=with_cookie(alice_cookie), status=200)


def test_the_two_step_login_re_authenticates_the_session_with_a_second_factor(app, clock):
    register(app, "alice")
    first = cookie_login(app, None)
    cookie, _ = cookie_of(first)
    sid = claims_of(first.json["access_token"])["sid"]
    secret, _ = enable_totp(app, first.json["access_token"], clock)
    step = cookie_login(app, cookie, status=403)
    app.cookiejar.clear()
    done = app.post_json(
        "/auth/session",
        {"mfa_token": step.json["mfa_token"], "otp": code_at(secret, clock)},
        headers=with_cookie(cookie),
        status=200,
    )
    claims = claims_of(done.json["access_token"])
    assert (claims["sid"], claims["amr"], claims["acr"]) == (sid, ["pwd", "otp", "mfa"], "aal2")
    app.post("/users/me/mfa/recovery-codes", headers=bearer(done.json["access_token"]), status=200)


# -- the claims, where they are read ---------------------------------------------------------------
def test_introspection_tells_how_the_user_signed_in(app, clock):
    admin = make_admin(app)
    register(app, "alice")
    secret, _ = enable_totp(app, login(app, "alice").json["access_token"], clock)
    signed_in = int(clock.now.timestamp())
    tokens = mfa_login(app, secret, clock)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        answer = app.post("/auth/introspect", {"token": token}, headers=bearer(admin))
        assert {k: answer.json[k] for k in ("auth_time", "amr", "acr")} == {
            "auth_time": signed_in,
            "amr": ["pwd", "otp", "mfa"],
            "acr": "aal2",
        }
        assert_documented(answer, "/auth/introspect", "POST")


def test_forward_auth_passes_the_methods_and_can_require_a_second_factor(app, clock):
    register(app, "alice")
    weak = login(app, "alice").json["access_token"]
    answer = app.get("/auth/verify", headers=bearer(weak), status=204)
    assert answer.headers["X-Auth-Amr"] == "pwd"
    app.get("/auth/verify?acr=aal1", headers=bearer(weak), status=204)
    refused = app.get("/auth/verify?acr=aal2", headers=bearer(weak), expect_errors=True)
    assert refused.status_int == 401
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer realm="tokenauth", error="insufficient_user_authentication", '
        'error_description="This resource needs a sign-in with a second factor", '
        'acr_values="aal2"'
    )
    assert_documented(refused, "/auth/verify", "GET")
    secret, _ = enable_totp(app, weak, clock)
    strong = mfa_login(app, secret, clock)["access_token"]
    answer = app.get("/auth/verify?acr=aal2", headers=bearer(strong), status=204)
    assert answer.headers["X-Auth-Amr"] == "pwd,otp,mfa"
    bad = app.get("/auth/verify?acr=aal3", headers=bearer(strong), status=422)
    assert bad.json["errors"] == [{"field": "acr", "message": "must be one of aal1, aal2"}]


def test_tokens_from_before_the_claims_still_verify_but_never_step_up(app):
    register(app, "alice")
    login(app, "alice")
    components = app.app.components
    user = components.store.find_user_by_name("alice")
    (sid,) = components.store.live_sessions_of(user["id"], now=components.clock())
    legacy, claims = components.tokens.issue(user=user, sid=sid)
    assert not {"auth_time", "amr", "acr"} & set(claims)
    answer = app.get("/auth/verify", headers=bearer(legacy), status=204)
    assert "X-Auth-Amr" not in answer.headers
    app.get("/auth/verify?acr=aal2", headers=bearer(legacy), status=401)
    assert_step_up(
        app.delete("/users/me/sessions", headers=bearer(legacy), expect_errors=True), STALE
    )


def test_sessions_from_before_the_claims_count_as_password_logins_when_they_opened(app, clock):
    register(app, "alice")
    components = app.app.components
    user = components.store.find_user_by_name("alice")
    opened = clock.now
    # A session as the service wrote them before it kept the sign-in (no auth fields).
    components.store.create_session(
        sid="before-upgrade",
        user_id=user["id"],
        token_hash=hashlib.sha256(b"a-refresh-token-from-before").hexdigest(),
        credential_version=0,
        now=opened,
        expires_at=opened + dt.timedelta(days=1),
    )
    clock.advance(60)
    answer = app.post(
        "/auth/token",
        {"grant_type": "refresh_token", "refresh_token": "a-refresh-token-from-before"},
        status=200,
    )
    claims = claims_of(answer.json["access_token"])
    assert (claims["auth_time"], claims["amr"], claims["acr"]) == (
        int(opened.timestamp()),
        ["pwd"],
        "aal1",
    )
