"""MongoDB goes away and comes back: 503 with Retry-After meanwhile, recovery without a rebuild."""

from __future__ import annotations

import time

import pytest
from helpers import bearer, login, make_admin, register

from embedded import EmbeddedServer

RECOVERY_TIMEOUT = 20.0
PERSON = {"name": "Ada Lovelace", "email": "ada@example.org", "age": 36}


@pytest.fixture
def server(tmp_path):
    """A wire server of this test alone, so that stopping it harms no other test."""
    embedded = EmbeddedServer(tmp_path / "outage")
    embedded.start()
    yield embedded
    embedded.stop()


@pytest.fixture
def before(server, make_app, make_config):
    """An app on that server, with a user, an admin, a person and a refresh token."""
    app = make_app(make_config(mongodb_uri=server.uri, db_timeout_ms=300))
    register(app, "alice")
    tokens = login(app, "alice").json
    admin = make_admin(app)
    person = app.post_json("/persons", PERSON, headers=bearer(admin), status=201).json
    return {"app": app, "tokens": tokens, "admin": admin, "person": person}


def assert_problem_503(response) -> None:
    """503 problem+json that asks the client to retry."""
    assert response.status_int == 503
    assert response.headers["Retry-After"] == "5"
    assert response.content_type == "application/problem+json"
    assert response.json["status"] == 503
    assert response.json["title"] == "Service Unavailable"
    assert set(response.json) == {"type", "title", "status", "detail"}


def wait_healthy(app) -> None:
    """Poll /health until the database answers again (the driver reconnects on its own)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while app.get("/health", expect_errors=True).status_int != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the app did not recover within {RECOVERY_TIMEOUT} s")
        time.sleep(0.2)


def wait_for_verify(app, access: str, status: int):
    """Poll /auth/verify until it answers `status` (bounded); that answer."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        answer = app.get("/auth/verify", headers=bearer(access), expect_errors=True)
        if answer.status_int == status:
            return answer
        if time.monotonic() > deadline:
            raise TimeoutError(f"/auth/verify did not answer {status} in {RECOVERY_TIMEOUT} s")
        time.sleep(0.2)


def test_outage_answers_503_and_the_same_app_recovers(server, before):
    app, access = before["app"], before["tokens"]["access_token"]
    server.stop()

    assert_problem_503(app.get("/persons", headers=bearer(access), expect_errors=True))
    assert_problem_503(app.get("/users/me", headers=bearer(access), expect_errors=True))
    assert_problem_503(
        app.post_json("/users", {"username": "bob", "password": "x" * 20}, expect_errors=True)
    )
    assert_problem_503(
        app.post_json("/persons", PERSON, headers=bearer(before["admin"]), expect_errors=True)
    )

    token = login(app, "alice", expect_errors=True)
    assert token.status_int == 503
    assert token.headers["Retry-After"] == "5"
    assert token.headers["Cache-Control"] == "no-store"
    assert token.content_type == "application/json"
    assert token.json["error"] == "temporarily_unavailable"
    assert set(token.json) == {"error", "error_description"}

    health = app.get("/health", expect_errors=True)
    assert health.status_int == 503
    assert health.headers["Retry-After"] == "5"
    assert health.json["status"] == "unavailable"
    assert health.json["revocations_age"] > 0

    # Forward-auth needs no database while its revocation set is fresh; once the set is older
    # than its bound, verify answers 503 rather than trust it (a logout it missed would pass).
    assert_problem_503(wait_for_verify(app, access, 503))

    server.start()  # same storage, same port
    wait_healthy(app)
    assert app.get("/health").json["status"] == "ok"
    verified = wait_for_verify(app, access, 204)
    assert verified.headers["X-Auth-Username"] == "alice"

    # Everything written before the outage is still there, through the same app.
    page = app.get("/persons", headers=bearer(access), status=200).json
    assert page["items"] == [before["person"]]
    assert app.get("/users/me", headers=bearer(access), status=200).json["username"] == "alice"
    assert login(app, "alice").status_int == 200
    refreshed = app.post_json(
        "/auth/token",
        {"grant_type": "refresh_token", "refresh_token": before["tokens"]["refresh_token"]},
        status=200,
    )
    assert refreshed.json["refresh_token"] != before["tokens"]["refresh_token"]
    register(app, "bob", status=201)
