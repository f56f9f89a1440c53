"""The browser client's cookie flow: POST/DELETE /auth/session, POST /auth/session/refresh."""

from __future__ import annotations

import hashlib
import re

import pytest
from helpers import PASSWORD, assert_documented, bearer, register
from test_revocation import REVOKED_CHALLENGE
from test_sessions import sid_of

SAME_ORIGIN = {"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-origin"}
COOKIE = re.compile(
    r"^__Host-tokenauth-session=([A-Za-z0-9_-]{43}); HttpOnly; Secure; SameSite=Strict; "
    r"Path=/; Max-Age=(\d+)$"
)
CLEARED = "__Host-tokenauth-session=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"
WRONG_PASSWORD = {
    "error": "invalid_grant",
    "error_description": "The username or password is incorrect",
}


def cookie_login(app, password: str = PASSWORD, headers=SAME_ORIGIN, **kwargs):
    """POST /auth/session as the client's page sends it."""
    app.cookiejar.clear()
    body = {"username": "alice", "password": password}
    return app.post_json("/auth/session", body, headers=dict(headers), **kwargs)


def with_cookie(token: str | None, headers=SAME_ORIGIN) -> dict[str, str]:
    """Request headers carrying the refresh cookie."""
    cookie = {} if token is None else {"Cookie": f"__Host-tokenauth-session={token}"}
    return {**headers, **cookie}


def cookie_refresh(app, token: str | None, headers=SAME_ORIGIN, **kwargs):
    """POST /auth/session/refresh with the cookie."""
    app.cookiejar.clear()
    return app.post("/auth/session/refresh", headers=with_cookie(token, headers), **kwargs)


def cookie_logout(app, token: str | None, headers=SAME_ORIGIN, **kwargs):
    """DELETE /auth/session with the cookie."""
    app.cookiejar.clear()
    return app.delete("/auth/session", headers=with_cookie(token, headers), **kwargs)


def cookie_of(answer) -> tuple[str, int]:
    """The refresh token and Max-Age of the answer's session cookie (a login also sets the
    provider's sign-in cookie, test_provider.py)."""
    (value,) = [
        v for v in answer.headers.getall("Set-Cookie") if v.startswith("__Host-tokenauth-session=")
    ]
    match = COOKIE.match(value)
    assert match, value
    return match.group(1), int(match.group(2))


def assert_cookie_answer(answer, path: str) -> str:
    """200, an access token only in the body, never cached; the cookie's token."""
    assert answer.status_int == 200
    assert set(answer.json) == {"access_token", "token_type", "expires_in"}
    assert answer.json["token_type"] == "Bearer"
    assert answer.json["expires_in"] == 900
    assert answer.headers["Cache-Control"] == "no-store"
    assert_documented(answer, path, "POST")
    token, _ = cookie_of(answer)
    assert token not in answer.text
    return token


@pytest.fixture
def timed(make_config, make_app, clock):
    """The service (refresh TTL one hour) on the test's clock, alice registered."""
    app = make_app(make_config(refresh_ttl=3600), clock=clock)
    register(app, "alice")
    return app


def test_login_sets_the_refresh_cookie_and_answers_the_access_token_only(timed, db):
    answer = cookie_login(timed)
    token = assert_cookie_answer(answer, "/auth/session")
    assert cookie_of(answer)[1] == 3600
    timed.get("/users/me", headers=bearer(answer.json["access_token"]), status=200)
    stored = db.sessions.find_one({"_id": sid_of(answer.json)})
    assert stored["current"] == hashlib.sha256(token.encode()).hexdigest()


def test_login_takes_a_form_body_too(timed):
    timed.cookiejar.clear()
    body = {"username": "alice", "password": PASSWORD}
    assert_cookie_answer(timed.post("/auth/session", body, headers=SAME_ORIGIN), "/auth/session")


def test_login_answers_as_the_password_grant_does(make_config, make_app):
    app = make_app(make_config(login_max_failures=2))
    register(app, "alice")
    for _ in range(2):
        refused = cookie_login(app, "not-the-password-at-all", status=400)
        assert refused.json == WRONG_PASSWORD
        assert "Set-Cookie" not in refused.headers
        assert_documented(refused, "/auth/session", "POST")
    throttled = cookie_login(app, status=429)
    assert throttled.json["error"] == "temporarily_unavailable"
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Set-Cookie" not in throttled.headers
    missing = app.post_json("/auth/session", {"username": "alice"}, headers=SAME_ORIGIN, status=400)
    assert missing.json["error"] == "invalid_request"


def test_refresh_rotates_the_cookie_and_keeps_the_absolute_end(timed, clock, db):
    first = cookie_of(cookie_login(timed))[0]
    clock.advance(100)
    answer = cookie_refresh(timed, first)
    second = assert_cookie_answer(answer, "/auth/session/refresh")
    assert second != first
    assert cookie_of(answer)[1] == 3500
    timed.get("/users/me", headers=bearer(answer.json["access_token"]), status=200)
    # Two tabs sharing the cookie: the one just rotated still works within the interval...
    clock.advance(5)
    third = assert_cookie_answer(cookie_refresh(timed, first), "/auth/session/refresh")
    # ...and past it, replaying it is reuse: the session ends, the cookie is cleared.
    clock.advance(10)
    replay = cookie_refresh(timed, first, status=401)
    assert replay.headers.getall("Set-Cookie") == [CLEARED]
    assert cookie_refresh(timed, third, status=401).headers.getall("Set-Cookie") == [CLEARED]
    assert "revoked_at" in db.sessions.find_one(
        {"current": hashlib.sha256(third.encode()).hexdigest()}
    )


@pytest.mark.parametrize("token", [None, "", "not-a-refresh-token-" + "x" * 30])
def test_refresh_without_a_live_session_is_401_and_clears_the_cookie(timed, token):
    answer = cookie_refresh(timed, token, status=401)
    assert answer.headers.getall("Set-Cookie") == [CLEARED]
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.content_type == "application/problem+json"
    assert answer.json["status"] == 401
    assert_documented(answer, "/auth/session/refresh", "POST")


def test_logout_ends_the_session_and_clears_the_cookie(timed):
    login = cookie_login(timed)
    token = cookie_of(login)[0]
    answer = cookie_logout(timed, token)
    assert answer.status_int == 204
    assert answer.body == b""
    assert answer.headers.getall("Set-Cookie") == [CLEARED]
    assert_documented(answer, "/auth/session", "DELETE")
    gone = timed.get("/users/me", headers=bearer(login.json["access_token"]), status=401)
    assert gone.headers["WWW-Authenticate"] == REVOKED_CHALLENGE
    cookie_refresh(timed, token, status=401)
    # Without a cookie (or again) it is still 204 and clears the cookie.
    for again in (None, token):
        assert cookie_logout(timed, again).headers.getall("Set-Cookie") == [CLEARED]


CROSS_SITE = {
    "no X-Requested-With": {"Sec-Fetch-Site": "same-origin"},
    "cross-site": {"X-Requested-With": "fetch", "Sec-Fetch-Site": "cross-site"},
    "same-site": {"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-site"},
    "none": {"X-Requested-With": "fetch", "Sec-Fetch-Site": "none"},
    "another origin": {"X-Requested-With": "fetch", "Origin": "http://127.0.0.1:8001"},
    "no origin": {"X-Requested-With": "fetch"},
    "a plain form": {"Origin": "http://127.0.0.1:8000"},
}


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_the_cookie_routes_refuse_cross_site_requests_and_change_nothing(timed, db, headers):
    login = cookie_login(timed)
    token = cookie_of(login)[0]
    before = (list(db.sessions.find()), list(db.throttle.find()))
    refused = [
        timed.post_json(
            "/auth/session",
            {"username": "alice", "password": PASSWORD},
            headers=headers,
            status=403,
        ),
        timed.post_json(
            "/auth/session",
            {"username": "alice", "password": "wrong-wrong-wrong"},
            headers=headers,
            status=403,
        ),
        cookie_refresh(timed, token, headers=headers, status=403),
        cookie_logout(timed, token, headers=headers, status=403),
        timed.get("/auth/session", headers=with_cookie(token, headers), status=403),
    ]
    for answer in refused:
        assert answer.content_type == "application/problem+json"
        assert answer.json["title"] == "Forbidden"
        assert answer.json["detail"].startswith("Cross-site request refused: ")
        assert "Set-Cookie" not in answer.headers
    assert_documented(refused[0], "/auth/session", "POST")
    assert (list(db.sessions.find()), list(db.throttle.find())) == before
    timed.get("/users/me", headers=bearer(login.json["access_token"]), status=200)
    assert_cookie_answer(cookie_refresh(timed, token), "/auth/session/refresh")


def test_without_fetch_metadata_the_services_own_origin_is_accepted(timed):
    own = {"X-Requested-With": "fetch", "Origin": "http://127.0.0.1:8000"}
    assert_cookie_answer(cookie_login(timed, headers=own), "/auth/session")


def test_tabs_refreshing_one_cookie_at_once_stay_signed_in(gunicorn_server, db):
    """8 concurrent refreshes with one cookie on real gunicorn (2 workers x 8 threads): all 200."""
    import requests
    from test_refresh import run_at_once

    base = gunicorn_server()
    assert requests.post(
        f"{base}/users", json={"username": "alice", "password": PASSWORD}, timeout=10
    ).ok
    origin = {**SAME_ORIGIN, "Origin": "http://127.0.0.1:8000"}
    login = requests.post(
        f"{base}/auth/session",
        json={"username": "alice", "password": PASSWORD},
        headers=origin,
        timeout=10,
    )
    assert login.status_code == 200, login.text
    # The login sets the provider's sign-in cookie too: the session cookie is the first.
    token = COOKIE.match(login.raw.headers.getlist("Set-Cookie")[0]).group(1)

    def tab() -> str:
        answer = requests.post(
            f"{base}/auth/session/refresh", headers=with_cookie(token, origin), timeout=10
        )
        assert answer.status_code == 200, answer.text
        me = requests.get(
            f"{base}/users/me", headers=bearer(answer.json()["access_token"]), timeout=10
        )
        assert me.status_code == 200
        return COOKIE.match(answer.headers["Set-Cookie"]).group(1)

    # Every tab gets the same new cookie: whichever answer the browser stores last, it holds
    # the session's current token.
    cookies = set(run_at_once(8, tab))
    assert len(cookies) == 1
    (current,) = cookies
    (session,) = db.sessions.find()
    assert "revoked_at" not in session
    assert session["current"] == hashlib.sha256(current.encode()).hexdigest()
    again = requests.post(
        f"{base}/auth/session/refresh", headers=with_cookie(current, origin), timeout=10
    )
    assert again.status_code == 200, again.text
