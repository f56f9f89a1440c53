"""The Bearer middleware: every way a token is refused, with the RFC 6750 challenge."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from helpers import bearer, free_port, login, register

from auth import REQUIRED_CLAIMS
from keys import CLOCK_SKEW

NO_TOKEN_CHALLENGE = 'Bearer realm="tokenauth"'
INVALID_TOKEN_CHALLENGE = re.compile(
    r'Bearer realm="tokenauth", error="invalid_token", error_description="(?P<why>[^"\\]+)"'
)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWS uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: dict) -> str:
    """A JWS header or payload segment."""
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def refused(app, token: str | None = None, *, header: str | None = None, path="/auth/verify"):
    """GET a protected route expecting 401; the response."""
    if header is None and token is not None:
        header = f"Bearer {token}"
    headers = {} if header is None else {"Authorization": header}
    return app.get(path, headers=headers, status=401)


def assert_invalid_token(response, reason: str) -> None:
    """401 problem+json with the invalid_token challenge whose description names `reason`."""
    challenge = response.headers["WWW-Authenticate"]
    match = INVALID_TOKEN_CHALLENGE.fullmatch(challenge)
    assert match, challenge
    assert reason in match["why"].lower(), challenge
    assert response.content_type == "application/problem+json"
    assert response.json == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": match["why"],
    }


@pytest.fixture
def issued(app):
    """A valid token of alice, its header and its claims, and the service's current key."""
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    return {
        "token": token,
        "header": jwt.get_unverified_header(token),
        "claims": jwt.decode(token, options={"verify_signature": False}),
        "key": app.app.components.keyring.current,
    }


def resign(issued, *, claims=None, header=None, key=None) -> str:
    """A token with the given claims and header, signed with `key` (default: the service's)."""
    headers = {**issued["header"], **(header or {})}
    headers.pop("alg", None)
    return jwt.encode(
        claims if claims is not None else issued["claims"],
        key if key is not None else issued["key"].signing_key,
        algorithm="EdDSA",
        headers=headers,
    )


# -- no token, or not a Bearer token ----------------------------------------------------
def test_missing_header_gets_a_bare_challenge(app):
    response = refused(app)
    assert response.headers["WWW-Authenticate"] == NO_TOKEN_CHALLENGE
    assert response.content_type == "application/problem+json"
    assert response.json["status"] == 401
    assert response.json["title"] == "Unauthorized"


def test_empty_header_gets_a_bare_challenge(app):
    response = refused(app, header="")
    assert response.headers["WWW-Authenticate"] == NO_TOKEN_CHALLENGE


@pytest.mark.parametrize(
    "header",
    ["Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer   ", "Token abc.def.ghi", "Bearer a b"],
    ids=["basic", "bearer-alone", "bearer-blank", "other-scheme", "two-tokens"],
)
def test_malformed_header_is_invalid_token(app, header):
    assert_invalid_token(refused(app, header=header), "bearer <token>")


@pytest.mark.parametrize("token", ["garbage", "not.a.jwt", "a.b.c.d", "eyJhbGciOi.x.y"])
def test_garbage_token_is_invalid_token(app, token):
    assert_invalid_token(refused(app, token), "malformed")


# -- forged signatures ------------------------------------------------------------------
def test_alg_none_token_is_refused(app, issued):
    header = {"alg": "none", "typ": "at+jwt", "kid": issued["header"]["kid"]}
    token = f"{b64url_json(header)}.{b64url_json(issued['claims'])}."
    assert_invalid_token(refused(app, token), "algorithm")


def test_token_signed_by_another_ed25519_key_with_the_same_kid_is_refused(app, issued):
    token = resign(issued, key=ed25519.Ed25519PrivateKey.generate())
    assert jwt.get_unverified_header(token)["kid"] == issued["header"]["kid"]
    assert_invalid_token(refused(app, token), "signature")


@pytest.mark.parametrize("encoding", ["pem", "raw"])
def test_hs256_token_keyed_with_the_public_key_is_refused(app, issued, encoding):
    # Key confusion: a verifier that takes alg from the header would HMAC with the public key.
    public = issued["key"].verifying_key
    secret = (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if encoding == "pem"
        else public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": issued["header"]["kid"]}
    signing_input = f"{b64url_json(header)}.{b64url_json(issued['claims'])}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    assert_invalid_token(refused(app, token), "algorithm")


def test_tampered_claims_are_refused(app, issued):
    header, _, signature = issued["token"].split(".")
    claims = {**issued["claims"], "roles": ["user", "admin"]}
    token = f"{header}.{b64url_json(claims)}.{signature}"
    assert_invalid_token(refused(app, token), "signature")


# -- claims -----------------------------------------------------------------------------
def test_wrong_audience_is_refused(app, issued):
    token = resign(issued, claims={**issued["claims"], "aud": "someone-else"})
    assert_invalid_token(refused(app, token), "audience")


def test_wrong_issuer_is_refused(app, issued):
    token = resign(issued, claims={**issued["claims"], "iss": "https://evil.example"})
    assert_invalid_token(refused(app, token), "issuer")


def test_unknown_kid_is_refused(app, issued):
    token = resign(issued, header={"kid": "20200101T000000Z-deadbeef"})
    assert_invalid_token(refused(app, token), "unknown key")


def test_missing_kid_is_refused(app, issued):
    headers = {"typ": "at+jwt"}
    token = jwt.encode(issued["claims"], issued["key"].signing_key, "EdDSA", headers=headers)
    assert "kid" not in jwt.get_unverified_header(token)
    assert_invalid_token(refused(app, token), "unknown key")


@pytest.mark.parametrize("typ", [None, "JWT", "id+jwt"], ids=["missing", "JWT", "id+jwt"])
def test_token_that_is_not_typed_at_jwt_is_refused(app, issued, typ):
    token = resign(issued, header={"typ": typ})
    assert jwt.get_unverified_header(token).get("typ") == typ
    assert_invalid_token(refused(app, token), "at+jwt")


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_token_missing_a_required_claim_is_refused(app, issued, claim):
    claims = {k: v for k, v in issued["claims"].items() if k != claim}
    assert_invalid_token(refused(app, resign(issued, claims=claims)), f"{claim} claim")


def test_required_claims_are_the_ones_rfc_9068_and_the_contract_name():
    assert set(REQUIRED_CLAIMS) == {
        "iss", "sub", "aud", "exp", "iat", "jti", "sid", "username", "roles",
    }  # fmt: skip


def test_token_issued_in_the_future_is_refused(app, issued):
    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {**issued["claims"], "iat": now + 3600, "exp": now + 7200}
    assert_invalid_token(refused(app, resign(issued, claims=claims)), "future")


# -- expiry, with an injected clock -----------------------------------------------------
@pytest.fixture
def clocked(make_app, clock):
    """An app on the hand-moved clock, and a token issued at its start."""
    app = make_app(clock=clock)
    register(app, "alice")
    return app, login(app, "alice").json["access_token"]


def test_expired_token_is_refused_past_the_skew(clocked, clock, make_config):
    app, token = clocked
    clock.advance(make_config().access_ttl + CLOCK_SKEW + 1)
    assert_invalid_token(refused(app, token), "expired")


def test_token_is_accepted_within_the_skew_and_refused_after(clocked, clock, make_config):
    app, token = clocked
    clock.advance(make_config().access_ttl + CLOCK_SKEW - 1)
    app.get("/auth/verify", headers=bearer(token), status=204)
    # Now verified once (and cached per worker): the cache must still honour expiry.
    clock.advance(2)
    assert_invalid_token(refused(app, token), "expired")


def test_token_issued_on_an_injected_clock_ahead_of_the_wall_clock_is_accepted(make_app, clock):
    # Every time check follows the injected clock, none the wall clock underneath it.
    clock.advance(3600)
    app = make_app(clock=clock)
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    app.get("/auth/verify", headers=bearer(token), status=204)


# -- revocation and roles ---------------------------------------------------------------
def test_revoked_token_is_invalid_token(app, issued):
    app.post("/auth/logout", headers=bearer(issued["token"]), status=204)
    assert_invalid_token(refused(app, issued["token"]), "revoked")


def test_user_on_an_admin_route_gets_insufficient_scope(app, user_token):
    response = app.get("/users", headers=bearer(user_token), status=403)
    assert response.headers["WWW-Authenticate"] == (
        'Bearer realm="tokenauth", error="insufficient_scope", '
        'error_description="This route needs the admin role"'
    )
    assert response.content_type == "application/problem+json"
    assert response.json == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "This route needs the admin role",
    }


# -- a valid token on /auth/verify ------------------------------------------------------
def test_verify_answers_204_with_the_identity(app, issued):
    response = app.get("/auth/verify", headers=bearer(issued["token"]), status=204)
    assert response.headers["X-Auth-Subject"] == issued["claims"]["sub"]
    assert response.headers["X-Auth-Username"] == "alice"
    assert response.headers["X-Auth-Roles"] == "user"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.body == b""


def test_a_worker_that_never_reached_the_database_does_not_verify(
    app, issued, make_app, make_config
):
    # A second instance sharing the keys, whose database is a port nobody listens on: its
    # revocation set was never filled, so a logout it cannot know of would pass. 503, not 204.
    unreachable = make_config(
        mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        db_timeout_ms=200,
    )
    offline = make_app(unreachable)
    response = offline.get("/auth/verify", headers=bearer(issued["token"]), status=503)
    assert response.headers["Retry-After"] == "5"
    assert response.json["detail"] == "Revocations could not be checked lately; try again shortly"
    assert offline.get("/health", status=503).json == {
        "status": "unavailable",
        "revocations_age": None,
    }
    # A token that fails on its own is refused as ever: no revocation set is needed for that.
    assert_invalid_token(refused(offline, "garbage"), "malformed")
    offline.get("/users/me", headers=bearer(issued["token"]), status=503)
