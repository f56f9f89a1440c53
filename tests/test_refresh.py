"""Refresh tokens: opaque, stored as a hash, rotated on use, reuse kills the session."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading

import bson
import jwt
import pytest
from helpers import PASSWORD, assert_documented, bearer, login, register

import errors

URL_SAFE_256_BITS = re.compile(r"^[A-Za-z0-9_-]{43,}$")
REVOKED_CHALLENGE = (
    'Bearer realm="tokenauth", error="invalid_token", '
    'error_description="The access token was revoked"'
)


def refresh_json(app, refresh_token: str, **kwargs):
    """The refresh_token grant as a JSON body."""
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return app.post_json("/auth/token", body, **kwargs)


def refresh_form(app, refresh_token: str, **kwargs):
    """The refresh_token grant as a form body, as RFC 6749 clients send it."""
    body = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return app.post("/auth/token", body, **kwargs)


def claims_of(access_token: str) -> dict:
    """The claims of an access token, read without checking (the service checks)."""
    return jwt.decode(access_token, options={"verify_signature": False})


def assert_token_answer(response) -> None:
    """A 200 token answer: the RFC 6749 §5.1 members, never cached."""
    assert response.status_int == 200
    assert set(response.json) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert response.json["token_type"] == "Bearer"
    assert response.json["expires_in"] == 900
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert_documented(response, "/auth/token", "POST")


def assert_invalid_grant(response) -> None:
    """A 400 invalid_grant answer in the RFC 6749 §5.2 form."""
    assert response.status_int == 400
    assert response.content_type == "application/json"
    assert response.json["error"] == "invalid_grant"
    assert set(response.json) == {"error", "error_description"}
    assert_documented(response, "/auth/token", "POST")


def assert_revoked(app, access_token: str) -> None:
    """The access token is refused as revoked."""
    answer = app.get("/users/me", headers=bearer(access_token), status=401)
    assert answer.headers["WWW-Authenticate"] == REVOKED_CHALLENGE
    assert answer.content_type == "application/problem+json"


def test_password_grant_returns_opaque_refresh_token(app):
    register(app, "alice")
    first = login(app, "alice")
    second = login(app, "alice")
    assert_token_answer(first)
    token = first.json["refresh_token"]
    # 32 random bytes in base64url are 43 characters: at least 256 bits, no JWT structure.
    assert URL_SAFE_256_BITS.match(token)
    assert "." not in token
    assert token != second.json["refresh_token"]


def test_refresh_token_is_stored_only_as_its_sha256_hash(make_config, make_app, db, clock):
    app = make_app(make_config(refresh_ttl=7200), clock=clock)
    register(app, "alice")
    answer = login(app, "alice")
    token = answer.json["refresh_token"]
    sid = claims_of(answer.json["access_token"])["sid"]

    for name in db.list_collection_names():
        for document in db[name].find():
            assert token.encode() not in bson.encode(document), f"raw token in {name}"
    session = db.sessions.find_one({"_id": sid})
    assert session["current"] == hashlib.sha256(token.encode()).hexdigest()
    assert session["retired"] == []
    assert session["expires_at"] == clock.now + dt.timedelta(seconds=7200)
    assert session["user_id"] == claims_of(answer.json["access_token"])["sub"]


@pytest.mark.parametrize("send", [refresh_form, refresh_json], ids=["form", "json"])
def test_refresh_grant_rotates_tokens(app, db, send):
    register(app, "alice")
    first = login(app, "alice").json
    second = send(app, first["refresh_token"])
    assert_token_answer(second)
    assert second.json["refresh_token"] != first["refresh_token"]
    assert second.json["access_token"] != first["access_token"]
    assert claims_of(second.json["access_token"])["sid"] == claims_of(first["access_token"])["sid"]
    me = app.get("/users/me", headers=bearer(second.json["access_token"]))
    assert me.json["username"] == "alice"
    old_hash = hashlib.sha256(first["refresh_token"].encode()).hexdigest()
    new_hash = hashlib.sha256(second.json["refresh_token"].encode()).hexdigest()
    session = db.sessions.find_one({"_id": claims_of(first["access_token"])["sid"]})
    assert (session["current"], session["retired"]) == (new_hash, [old_hash])
    assert_token_answer(send(app, second.json["refresh_token"]))


def test_rotation_never_extends_the_session_lifetime(make_config, make_app, db, clock):
    logged_in_at = clock.now
    app = make_app(make_config(refresh_ttl=3600), clock=clock)
    register(app, "alice")
    token = login(app, "alice").json["refresh_token"]

    clock.advance(3590)
    token = refresh_json(app, token).json["refresh_token"]
    clock.advance(9)
    token = refresh_json(app, token).json["refresh_token"]
    stored = db.sessions.find_one({"current": hashlib.sha256(token.encode()).hexdigest()})
    assert stored["expires_at"] == logged_in_at + dt.timedelta(seconds=3600)

    clock.advance(1)  # login + TTL exactly: the session is over, however recently it rotated
    assert_invalid_grant(refresh_json(app, token, status=400))


def test_unknown_refresh_token_is_invalid_grant(app):
    answer = refresh_json(app, "not-a-refresh-token-" + "x" * 40, status=400)
    assert_invalid_grant(answer)
    assert answer.headers["Cache-Control"] == "no-store"


def test_refresh_grant_without_token_is_invalid_request(app):
    answer = app.post("/auth/token", {"grant_type": "refresh_token"}, status=400)
    assert answer.json == {
        "error": "invalid_request",
        "error_description": "refresh_token is required",
    }


def test_reused_refresh_token_revokes_the_whole_session(make_config, make_app, clock):
    app = make_app(make_config(), clock=clock)
    register(app, "alice")
    first = login(app, "alice").json
    other_session = login(app, "alice").json
    second = refresh_json(app, first["refresh_token"]).json
    clock.advance(10)  # the default reuse interval is over

    assert_invalid_grant(refresh_json(app, first["refresh_token"], status=400))

    # The thief's or the victim's newer token dies with the session, and so do its access tokens.
    assert_invalid_grant(refresh_json(app, second["refresh_token"], status=400))
    assert_revoked(app, first["access_token"])
    assert_revoked(app, second["access_token"])
    app.get("/users/me", headers=bearer(other_session["access_token"]), status=200)
    assert_token_answer(refresh_json(app, other_session["refresh_token"]))


def test_concurrent_use_of_one_refresh_token_is_marked_used_once(app):
    """store.rotate_refresh_token is one atomic find-and-modify: exactly one caller rotates."""
    register(app, "alice")
    store = app.app.components.store
    for _ in range(10):
        token = login(app, "alice").json["refresh_token"]
        token_hash = hashlib.sha256(token.encode()).hexdigest()

        def rotate(h=token_hash) -> str:
            outcome, _ = store.rotate_refresh_token(
                h, secrets.token_hex(32), now=dt.datetime.now(dt.UTC), keep=10, limit=60, window=600
            )
            return outcome

        outcomes = run_at_once(8, rotate)
        assert outcomes.count("rotated") == 1
        assert outcomes.count("reused") == 7


def test_concurrent_refreshes_with_one_token_at_most_one_succeeds(make_config, make_app, db):
    app = make_app(make_config(refresh_reuse_interval=0))
    register(app, "alice")
    sessions = app.app.components.sessions
    for _ in range(10):
        answer = login(app, "alice").json
        token, sid = answer["refresh_token"], claims_of(answer["access_token"])["sid"]

        def attempt(token=token) -> bool:
            try:
                sessions.refresh(token)
            except errors.InvalidGrant:
                return False
            return True

        outcomes = run_at_once(8, attempt)
        assert outcomes.count(True) <= 1
        # The losers presented a token already used: reuse detection ended the session.
        assert "revoked_at" in db.sessions.find_one({"_id": sid})


def run_at_once(count: int, call) -> list:
    """Run `call` in `count` threads released together; their results."""
    barrier = threading.Barrier(count)
    results: list = []
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        try:
            results.append(call())
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert len(results) == count
    return results


def test_refresh_after_password_login_keeps_user_and_roles(app):
    register(app, "alice")
    first = login(app, "alice", PASSWORD).json
    second = refresh_json(app, first["refresh_token"]).json
    before, after = claims_of(first["access_token"]), claims_of(second["access_token"])
    assert (after["sub"], after["username"], after["roles"]) == (
        before["sub"],
        before["username"],
        before["roles"],
    )
    assert after["jti"] != before["jti"]


# -- the reuse interval (concurrent tabs) ------------------------------------------------
def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def graced(make_config, make_app, clock):
    """An app with the default reuse interval (10 s) on the test's clock, alice registered."""
    app = make_app(make_config(), clock=clock)
    register(app, "alice")
    return app


def test_the_default_reuse_interval_is_ten_seconds():
    from config import Config

    assert Config().refresh_reuse_interval == 10
    assert Config.from_env({"TOKENAUTH_REFRESH_REUSE_INTERVAL": "0"}).refresh_reuse_interval == 0


@pytest.mark.parametrize("waited", [0, 9, 9.999])
def test_the_token_just_rotated_works_again_within_the_interval(graced, db, clock, waited):
    first = login(graced, "alice").json
    sid = claims_of(first["access_token"])["sid"]
    second = refresh_json(graced, first["refresh_token"]).json
    clock.advance(waited)

    again = refresh_json(graced, first["refresh_token"])
    assert_token_answer(again)
    third = again.json
    assert claims_of(third["access_token"])["sid"] == sid
    # The same successor again: racing tabs end with one cookie value, in whatever order
    # their answers were stored. A new access token each time.
    assert third["refresh_token"] == second["refresh_token"] != first["refresh_token"]
    assert third["access_token"] != second["access_token"]
    graced.get("/users/me", headers=bearer(third["access_token"]), status=200)
    graced.get("/users/me", headers=bearer(second["access_token"]), status=200)
    session = db.sessions.find_one({"_id": sid})
    # One current token and the one just rotated, its window unmoved.
    assert session["current"] == _hash(second["refresh_token"])
    assert session["previous"] == _hash(first["refresh_token"])
    assert session["rotated_at"] == clock.now - dt.timedelta(seconds=waited)
    assert "revoked_at" not in session
    assert_token_answer(refresh_json(graced, third["refresh_token"]))


def test_the_database_holds_the_successor_only_sealed(graced, db):
    """What a grace use hands back is sealed with the token it retired: a copy of the
    database alone yields no usable refresh token."""
    first = login(graced, "alice").json
    second = refresh_json(graced, first["refresh_token"]).json
    session = db.sessions.find_one({"_id": claims_of(first["access_token"])["sid"]})
    stored = repr(session).encode()
    assert second["refresh_token"].encode() not in stored
    assert first["refresh_token"].encode() not in stored
    assert isinstance(session["sealed"], bytes) and len(session["sealed"]) > 12 + 16


def test_at_ten_seconds_the_token_just_rotated_is_reuse(graced, db, clock):
    first = login(graced, "alice").json
    sid = claims_of(first["access_token"])["sid"]
    second = refresh_json(graced, first["refresh_token"]).json
    clock.advance(10)  # the window is [rotation, rotation + 10 s): its end is reuse

    assert_invalid_grant(refresh_json(graced, first["refresh_token"], status=400))
    assert "revoked_at" in db.sessions.find_one({"_id": sid})
    assert_invalid_grant(refresh_json(graced, second["refresh_token"], status=400))
    assert_revoked(graced, second["access_token"])


def test_a_grace_use_does_not_extend_the_window(graced, db, clock):
    first = login(graced, "alice").json
    sid = claims_of(first["access_token"])["sid"]
    refresh_json(graced, first["refresh_token"])
    clock.advance(6)
    refresh_json(graced, first["refresh_token"], status=200)
    clock.advance(4)  # 10 s after the rotation, 4 s after the grace use
    assert_invalid_grant(refresh_json(graced, first["refresh_token"], status=400))
    assert "revoked_at" in db.sessions.find_one({"_id": sid})


def test_a_token_two_generations_old_is_reuse_even_within_the_interval(graced, db):
    first = login(graced, "alice").json
    sid = claims_of(first["access_token"])["sid"]
    second = refresh_json(graced, first["refresh_token"]).json
    refresh_json(graced, second["refresh_token"], status=200)

    assert_invalid_grant(refresh_json(graced, first["refresh_token"], status=400))
    assert "revoked_at" in db.sessions.find_one({"_id": sid})


def test_live_refresh_tokens_per_session_are_two_at_most(graced, db, clock):
    """However many uses race within the window, a session has two live refresh tokens:
    `current`, and until the window ends the one it replaced."""
    first = login(graced, "alice").json
    sid = claims_of(first["access_token"])["sid"]
    issued = {refresh_json(graced, first["refresh_token"]).json["refresh_token"] for _ in range(6)}
    assert len(issued) == 1
    (successor,) = issued
    session = db.sessions.find_one({"_id": sid})
    assert session["current"] == _hash(successor)
    assert session["previous"] == _hash(first["refresh_token"])
    assert session["refresh_count"] == 1  # grace uses mint no refresh token: not counted
    clock.advance(10)
    assert_token_answer(refresh_json(graced, successor))  # past the window, the current works
    assert_invalid_grant(refresh_json(graced, first["refresh_token"], status=400))
    assert "revoked_at" in db.sessions.find_one({"_id": sid})


def test_a_zero_interval_turns_the_window_off(make_config, make_app, db, clock):
    app = make_app(make_config(refresh_reuse_interval=0), clock=clock)
    register(app, "alice")
    first = login(app, "alice").json
    refresh_json(app, first["refresh_token"])
    assert_invalid_grant(refresh_json(app, first["refresh_token"], status=400))
    assert "revoked_at" in db.sessions.find_one({"_id": claims_of(first["access_token"])["sid"]})


def test_concurrent_refreshes_within_the_interval_keep_the_session(graced, db):
    """8 threads with one token: each gets a working pair, all with the same new token."""
    sessions = graced.app.components.sessions
    tokens = graced.app.components.tokens
    for _ in range(5):
        answer = login(graced, "alice").json
        token, sid = answer["refresh_token"], claims_of(answer["access_token"])["sid"]

        def attempt(token=token, sid=sid) -> str:
            user, session, new_token = sessions.refresh(token)
            assert session["id"] == sid
            access, _ = tokens.issue(user=user, sid=session["id"])
            graced.get("/users/me", headers=bearer(access), status=200)
            return new_token

        issued = set(run_at_once(8, attempt))
        assert len(issued) == 1
        session = db.sessions.find_one({"_id": sid})
        assert "revoked_at" not in session
        assert session["current"] == _hash(next(iter(issued)))
        assert_token_answer(refresh_json(graced, next(iter(issued))))
