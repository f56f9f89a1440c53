"""Login failures do not tell whether a username exists: same bytes, same headers, same time."""

from __future__ import annotations

import statistics
import time

import pytest
import requests
from helpers import PASSWORD, login, register

WRONG = "definitely-not-the-password"
TRIES = 15


@pytest.fixture
def roomy_app(make_app, make_config):
    """Throttling far away: these tests fail on purpose many times from one address."""
    app = make_app(make_config(login_max_failures=1000))
    register(app, "alice")
    return app


def answer(response) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers (Date aside) and body bytes: everything a client could compare."""
    headers = sorted((k.lower(), v) for k, v in response.headerlist if k.lower() != "date")
    return response.status_int, headers, response.body


@pytest.mark.parametrize("unknown", ["nobody", "x", "nobody-with-a-much-longer-name-than-alice"])
def test_unknown_user_and_wrong_password_answer_the_same_bytes(roomy_app, unknown):
    wrong_password = login(roomy_app, "alice", WRONG, status=400)
    unknown_user = login(roomy_app, unknown, WRONG, status=400)
    assert answer(unknown_user) == answer(wrong_password)
    assert wrong_password.json == {
        "error": "invalid_grant",
        "error_description": "The username or password is incorrect",
    }


def test_form_encoded_failures_answer_the_same_bytes(roomy_app):
    def form_login(username: str):
        body = {"grant_type": "password", "username": username, "password": WRONG}
        return roomy_app.post("/auth/token", body, status=400)

    assert answer(form_login("nobody")) == answer(form_login("alice"))


def test_unknown_user_and_wrong_password_take_comparable_time(roomy_app):
    # Warm both paths once (caches, connections), then interleave so drift hits both alike.
    login(roomy_app, "alice", WRONG, status=400)
    login(roomy_app, "nobody", WRONG, status=400)
    wrong_password, unknown_user = [], []
    for _ in range(TRIES):
        wrong_password.append(timed(lambda: login(roomy_app, "alice", WRONG, status=400)))
        unknown_user.append(timed(lambda: login(roomy_app, "nobody", WRONG, status=400)))
    wrong_median = statistics.median(wrong_password)
    unknown_median = statistics.median(unknown_user)
    assert max(wrong_median, unknown_median) <= 2 * min(wrong_median, unknown_median), (
        f"medians: wrong password {wrong_median:.4f} s, unknown user {unknown_median:.4f} s"
    )


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_registration_of_a_taken_name_answers_409(app):
    register(app, "alice")
    taken = register(app, "ALICE", status=409)
    assert taken.headers["Content-Type"] == "application/problem+json"
    assert taken.json["status"] == 409
    assert taken.json["title"] == "Conflict"
    assert taken.json["errors"] == [{"field": "username", "message": "is already taken"}]


def test_over_http_only_the_date_differs(gunicorn_server):
    base = gunicorn_server(
        {"TOKENAUTH_LOGIN_MAX_FAILURES": "1000"}, ("--workers", "1", "--threads", "2")
    )
    body = {"username": "alice", "password": PASSWORD}
    assert requests.post(f"{base}/users", json=body, timeout=10).status_code == 201

    def attempt(username: str) -> tuple[int, list[tuple[str, str]], bytes]:
        body = {"grant_type": "password", "username": username, "password": WRONG}
        response = requests.post(f"{base}/auth/token", json=body, timeout=10)
        headers = sorted((k.lower(), v) for k, v in response.headers.items() if k != "Date")
        return response.status_code, headers, response.content

    assert attempt("nobody") == attempt("alice")
    assert attempt("alice")[0] == 400
