"""POST /auth/introspect: RFC 7662 answers, for admins only."""

from __future__ import annotations

import jwt
import pytest
from helpers import (
    ADMIN_PASSWORD,
    assert_documented,
    bearer,
    login,
    make_admin,
    register,
)

INACTIVE = {"active": False}


def introspect(app, admin_token: str, token: str, *, as_json: bool = False, **kwargs):
    """POST /auth/introspect as an admin, as a form (RFC 7662) or as JSON."""
    post = app.post_json if as_json else app.post
    return post("/auth/introspect", {"token": token}, headers=bearer(admin_token), **kwargs)


def assert_introspection(response, expected: dict) -> None:
    """200, exactly this body, never cached, as documented."""
    assert response.status_int == 200
    assert response.json == expected
    assert response.headers["Cache-Control"] == "no-store"
    assert_documented(response, "/auth/introspect", "POST")


@pytest.fixture
def timed_app(make_app, make_config, clock):
    """The service on the test's clock, with a one-hour session lifetime."""
    return make_app(make_config(refresh_ttl=3600), clock=clock)


def test_introspection_needs_a_token(app):
    answer = app.post("/auth/introspect", {"token": "x"}, status=401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'
    assert answer.content_type == "application/problem+json"
    assert_documented(answer, "/auth/introspect", "POST")


def test_introspection_is_for_admins_only(app, user_token):
    answer = introspect(app, user_token, user_token, status=403)
    assert answer.headers["WWW-Authenticate"] == (
        'Bearer realm="tokenauth", error="insufficient_scope", '
        'error_description="This route needs the admin role"'
    )
    assert answer.json["status"] == 403
    assert_documented(answer, "/auth/introspect", "POST")


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_active_access_token(app, admin_token, as_json):
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    answer = introspect(app, admin_token, token, as_json=as_json)
    assert_introspection(
        answer,
        {
            "active": True,
            "token_type": "Bearer",
            "sub": claims["sub"],
            "username": "alice",
            "roles": ["user"],
            "exp": claims["exp"],
            "iat": claims["iat"],
            "sid": claims["sid"],
            "jti": claims["jti"],
            "iss": "http://127.0.0.1:8000",
            "aud": "tokenauth",
            "auth_time": claims["iat"],
            "amr": ["pwd"],
            "acr": "aal1",
        },
    )
    assert answer.json["exp"] - answer.json["iat"] == 900


def test_active_refresh_token(timed_app, clock):
    admin_token = make_admin(timed_app)
    register(timed_app, "alice")
    tokens = login(timed_app, "alice").json
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert_introspection(
        introspect(timed_app, admin_token, tokens["refresh_token"]),
        {
            "active": True,
            "token_type": "refresh_token",
            "sub": claims["sub"],
            "username": "alice",
            "roles": ["user"],
            "sid": claims["sid"],
            "iat": int(clock.now.timestamp()),
            "exp": int(clock.now.timestamp()) + 3600,
            "iss": "http://127.0.0.1:8000",
            "auth_time": int(clock.now.timestamp()),
            "amr": ["pwd"],
            "acr": "aal1",
        },
    )


def test_revoked_tokens_are_inactive(app, admin_token):
    register(app, "alice")
    logged_out, revoked = login(app, "alice").json, login(app, "alice").json
    app.post("/auth/logout", headers=bearer(logged_out["access_token"]), status=204)
    app.post("/auth/revoke", {"token": revoked["access_token"]}, status=200)
    for token in (logged_out["access_token"], logged_out["refresh_token"]):
        assert_introspection(introspect(app, admin_token, token), INACTIVE)
    assert_introspection(introspect(app, admin_token, revoked["access_token"]), INACTIVE)
    # Revoking one access token leaves its session's refresh token active.
    assert introspect(app, admin_token, revoked["refresh_token"]).json["active"] is True


def test_a_used_refresh_token_is_inactive(app, admin_token):
    register(app, "alice")
    first = login(app, "alice").json
    second = app.post(
        "/auth/token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    ).json
    assert_introspection(introspect(app, admin_token, first["refresh_token"]), INACTIVE)
    assert introspect(app, admin_token, second["refresh_token"]).json["active"] is True
    # Introspection only looks: it neither rotates nor trips reuse detection.
    assert introspect(app, admin_token, second["refresh_token"]).json["active"] is True


def test_expired_access_token_is_inactive(timed_app, clock):
    register(timed_app, "alice")
    token = login(timed_app, "alice").json["access_token"]
    clock.advance(900 + 29)  # within the 30 s of allowed clock skew
    assert introspect(timed_app, make_admin(timed_app), token).json["active"] is True
    clock.advance(1)
    admin_token = make_admin(timed_app, "second-admin")
    assert_introspection(introspect(timed_app, admin_token, token), INACTIVE)


def test_expired_refresh_token_is_inactive(timed_app, clock):
    register(timed_app, "alice")
    token = login(timed_app, "alice").json["refresh_token"]
    clock.advance(3599)
    assert introspect(timed_app, make_admin(timed_app), token).json["active"] is True
    clock.advance(1)
    admin_token = login(timed_app, "root-admin", ADMIN_PASSWORD).json["access_token"]
    assert_introspection(introspect(timed_app, admin_token, token), INACTIVE)


@pytest.mark.parametrize(
    "token",
    ["garbage", "", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "a" * 43],
    ids=["word", "empty", "alg-none-jwt", "refresh-shaped"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_garbage_is_inactive(app, admin_token, token, as_json):
    assert_introspection(introspect(app, admin_token, token, as_json=as_json), INACTIVE)


def test_introspection_without_a_token_is_invalid_request(app, admin_token):
    answer = app.post_json("/auth/introspect", {}, headers=bearer(admin_token), status=400)
    assert answer.json == {"error": "invalid_request", "error_description": "token is required"}
    assert answer.content_type == "application/json"
    assert_documented(answer, "/auth/introspect", "POST")
