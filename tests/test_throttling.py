"""Login and registration throttling: limits, windows, addresses, atomic counters, proxies."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import threading
import time

import falcon.testing
import pymongo.errors
import pytest
import requests
from helpers import PASSWORD, ManualClock, assert_documented, login, register

import openapi
from config import Config
from errors import ConfigError
from middleware import client_address
from passwords import PasswordHasher
from throttle import counter_key

WRONG = "definitely-not-the-password"
OTHER_ADDRESS = {"REMOTE_ADDR": "198.51.100.77"}


def cheap_hashing(app) -> None:
    """Throttling is not about hashing cost: a minimal argon2id keeps these tests quick."""
    app.app.components.accounts.hasher = PasswordHasher(time_cost=1, memory_cost=8)


def throttled_app(make_app, make_config, clock, **overrides):
    """The service with cheap hashing and these throttle settings."""
    app = make_app(make_config(**overrides), clock=clock)
    cheap_hashing(app)
    return app


def assert_oauth_throttled(response, retry_after: int) -> None:
    """429 the RFC 6749 way, with Retry-After and no-store."""
    assert response.status_int == 429
    assert response.headers["Retry-After"] == str(retry_after)
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert set(response.json) == {"error", "error_description"}
    assert response.json["error"] == "temporarily_unavailable"
    assert f"{retry_after} seconds" in response.json["error_description"]


def assert_invalid_grant(response) -> None:
    """400 invalid_grant: a wrong password or an unknown user."""
    assert response.status_int == 400
    assert response.json == {
        "error": "invalid_grant",
        "error_description": "The username or password is incorrect",
    }


def fail_logins(app, username: str, times: int, **kwargs) -> None:
    """`times` wrong passwords, each answered 400 invalid_grant."""
    for _ in range(times):
        assert_invalid_grant(login(app, username, WRONG, status="*", **kwargs))


# -- one username from one address ------------------------------------------------------
def test_failures_past_the_limit_get_429_even_with_the_right_password(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=3, login_window=600)
    register(app, "alice")
    fail_logins(app, "alice", 3)
    assert_oauth_throttled(login(app, "alice", status="*"), 600)
    assert_oauth_throttled(login(app, "alice", WRONG, status="*"), 600)


def test_the_block_lifts_when_the_window_passes(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=3, login_window=600)
    register(app, "alice")
    fail_logins(app, "alice", 3)
    clock.advance(599)
    assert_oauth_throttled(login(app, "alice", status="*"), 1)
    clock.advance(1)
    assert login(app, "alice").status_int == 200


def test_failures_below_the_limit_do_not_block_and_success_clears_them(
    make_app, make_config, clock
):
    app = throttled_app(make_app, make_config, clock, login_max_failures=3, login_window=600)
    register(app, "alice")
    fail_logins(app, "alice", 2)
    assert login(app, "alice").status_int == 200
    fail_logins(app, "alice", 2)  # the success cleared the first two
    assert login(app, "alice").status_int == 200


def test_another_address_is_not_blocked(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=3)
    register(app, "alice")
    fail_logins(app, "alice", 3)
    assert login(app, "alice", status="*").status_int == 429
    assert login(app, "alice", extra_environ=OTHER_ADDRESS).status_int == 200


def test_another_username_from_the_same_address_is_not_blocked(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=3)
    register(app, "alice")
    register(app, "bob")
    fail_logins(app, "alice", 3)
    assert login(app, "bob").status_int == 200


def test_unknown_usernames_are_throttled_like_known_ones(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=2, login_window=60)
    fail_logins(app, "nobody-here", 2)
    assert_oauth_throttled(login(app, "nobody-here", status="*"), 60)


def test_the_username_is_throttled_without_regard_to_case(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=2)
    register(app, "alice")
    fail_logins(app, "Alice", 1)
    fail_logins(app, "ALICE", 1)
    assert login(app, "alice", status="*").status_int == 429


# -- the account from every address (ASVS 2.2.1) ---------------------------------------
def test_an_account_takes_at_most_100_failures_an_hour_from_all_addresses(
    make_app, make_config, clock
):
    app = throttled_app(make_app, make_config, clock, login_max_failures=5, login_window=900)
    register(app, "alice")
    for n in range(20):
        fail_logins(app, "alice", 5, extra_environ={"REMOTE_ADDR": f"203.0.113.{n + 1}"})
    fresh = {"REMOTE_ADDR": "203.0.113.200"}
    assert_oauth_throttled(login(app, "alice", status="*", extra_environ=fresh), 3600)
    clock.advance(3599)
    assert_oauth_throttled(login(app, "alice", status="*", extra_environ=fresh), 1)
    clock.advance(1)
    assert login(app, "alice", extra_environ=fresh).status_int == 200


# -- one address across usernames (password spraying) ----------------------------------
def test_one_address_spraying_many_usernames_is_stopped(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=5, login_window=900)
    register(app, "alice")
    address_limit = app.app.components.accounts.throttle.address_limit
    assert address_limit > 5  # higher than the per-username limit
    for n in range(address_limit):
        fail_logins(app, f"sprayed-{n}", 1)
    assert_oauth_throttled(login(app, "alice", status="*"), 900)
    assert login(app, "alice", extra_environ=OTHER_ADDRESS).status_int == 200


# -- counters in MongoDB -----------------------------------------------------------------
def test_concurrent_failures_are_counted_exactly(app):
    store = app.app.components.store
    now = dt.datetime.now(dt.UTC)
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        taken = list(
            pool.map(lambda _: store.take("test:race", now=now, window=60, limit=1000), range(40))
        )
    assert taken == [True] * 40
    assert store.counter("test:race", now=now)[0] == 40


def test_concurrent_takes_never_pass_the_limit(app):
    store = app.app.components.store
    now = dt.datetime.now(dt.UTC)
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        taken = list(
            pool.map(lambda _: store.take("test:take", now=now, window=60, limit=7), range(30))
        )
    assert taken.count(True) == 7
    assert store.counter("test:take", now=now)[0] == 7


def test_concurrent_wrong_passwords_get_exactly_the_allowed_number_of_tries(make_app, make_config):
    app = make_app(make_config(login_max_failures=5, login_window=600))
    register(app, "alice")
    body = {"grant_type": "password", "username": "alice", "password": WRONG}

    def attempt(_):
        return falcon.testing.simulate_post(
            app.app, "/auth/token", json=body, remote_addr="192.0.2.99"
        ).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(16)))
    assert statuses.count(400) == 5
    assert statuses.count(429) == 11
    throttle = app.app.components.store.throttle
    assert throttle.find_one({"_id": counter_key("login:account", "alice")})["count"] == 5


def test_counters_live_in_mongodb_with_a_ttl_index(app, db):
    register(app, "alice")
    login(app, "alice", WRONG, status=400)
    ttl = {
        next(iter(index["key"])): index.get("expireAfterSeconds")
        for index in db["throttle"].list_indexes()
    }
    assert ttl["expires_at"] == 0
    ids = {doc["_id"] for doc in db["throttle"].find()}
    assert ids == {
        counter_key("login:pair", "192.0.2.10", "alice"),
        counter_key("login:account", "alice"),
        counter_key("login:address", "192.0.2.10"),
        counter_key("register:address", "192.0.2.10"),
    }


def test_expired_counters_are_removed_by_the_ttl_index(make_app, make_config, mongo, db):
    two_hours_ago = ManualClock(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    app = make_app(make_config(login_window=60), clock=two_hours_ago)
    cheap_hashing(app)
    login(app, "alice", WRONG, status=400)
    assert db["throttle"].count_documents({}) == 3
    remove_expired_documents(mongo, db)
    assert db["throttle"].count_documents({}) == 0


def remove_expired_documents(mongo, db, timeout: float = 75.0) -> None:
    """Run the TTL monitor now (the embedded server's command), or wait for mongod's."""
    try:
        mongo.admin.command("secantusAdmin.pruneTtl")
        return
    except pymongo.errors.OperationFailure:
        pass  # a real mongod: its TTL monitor runs every 60 s
    deadline = time.monotonic() + timeout
    while db["throttle"].count_documents({}) and time.monotonic() < deadline:
        time.sleep(1)


# -- registration ------------------------------------------------------------------------
def test_registration_is_rate_limited_per_address(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, registration_limit=3)
    assert register(app, "user-1").status_int == 201
    assert register(app, "user-2").status_int == 201
    assert register(app, "user-2", status=409).status_int == 409  # attempts count, not successes
    limited = register(app, "user-4", status=429)
    assert limited.headers["Retry-After"] == "3600"
    assert limited.headers["Content-Type"] == "application/problem+json"
    assert limited.json["status"] == 429
    assert limited.json["type"] == "about:blank"
    assert limited.json["title"] == "Too Many Requests"
    assert register(app, "user-4", extra_environ=OTHER_ADDRESS).status_int == 201
    clock.advance(3600)
    assert register(app, "user-5").status_int == 201


def test_registration_limit_defaults_to_20_an_hour_and_is_configurable():
    assert Config().registration_limit == 20
    assert Config.from_env({"TOKENAUTH_REGISTRATION_LIMIT": "500"}).registration_limit == 500
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"TOKENAUTH_REGISTRATION_LIMIT": "0"})
    assert refused.value.variable == "TOKENAUTH_REGISTRATION_LIMIT"


# -- the document ------------------------------------------------------------------------
def documented_headers(path: str, method: str, status: int) -> dict:
    """The headers openapi.json promises for this answer."""
    components = openapi.document()["components"]
    answer = openapi.document()["paths"][path][method.lower()]["responses"][str(status)]
    while "$ref" in answer:
        answer = components["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return answer.get("headers", {})


@pytest.mark.parametrize(("path", "method"), [("/auth/token", "POST"), ("/users", "POST")])
def test_throttled_answers_are_the_documented_ones(make_app, make_config, clock, path, method):
    app = throttled_app(make_app, make_config, clock, login_max_failures=1, registration_limit=1)
    register(app, "alice")
    login(app, "alice", WRONG, status=400)
    throttled = (
        login(app, "alice", status=429)
        if path == "/auth/token"
        else register(app, "bob", status=429)
    )
    assert_documented(throttled, path, method)
    assert set(documented_headers(path, method, 429)) == {"Retry-After"}
    assert int(throttled.headers["Retry-After"]) > 0


# -- the client address ------------------------------------------------------------------
def address_of(peer: str, forwarded: str | None, trusted: tuple[str, ...]) -> str:
    headers = {"X-Forwarded-For": forwarded} if forwarded is not None else {}
    return client_address(falcon.testing.create_req(remote_addr=peer, headers=headers), trusted)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # No trusted proxy: the peer, whatever the header says.
        ("192.0.2.1", "203.0.113.9", (), "192.0.2.1"),
        # An untrusted peer cannot speak for anyone else.
        ("192.0.2.1", "203.0.113.9", ("10.0.0.0/8",), "192.0.2.1"),
        # A trusted proxy: the entry it appended.
        ("10.0.0.5", "203.0.113.9", ("10.0.0.0/8",), "203.0.113.9"),
        # Entries left of it come from the client and are ignored.
        ("10.0.0.5", "1.2.3.4, 203.0.113.9", ("10.0.0.0/8",), "203.0.113.9"),
        # A chain of trusted proxies: the right-most address that is not one of them.
        ("10.0.0.5", "1.2.3.4, 203.0.113.9, 10.0.0.7", ("10.0.0.0/8",), "203.0.113.9"),
        # A trusted proxy that sent no header: itself.
        ("10.0.0.5", None, ("10.0.0.0/8",), "10.0.0.5"),
        # Garbage where an address belongs: the last hop we could trust.
        ("10.0.0.5", "203.0.113.9, unknown", ("10.0.0.0/8",), "10.0.0.5"),
        ("10.0.0.5", "unknown, 10.0.0.6", ("10.0.0.0/8",), "10.0.0.6"),
        # Every hop trusted: the left-most.
        ("10.0.0.5", "10.0.0.9, 10.0.0.6", ("10.0.0.0/8",), "10.0.0.9"),
        # Addresses are canonical, so one client cannot hide behind spellings.
        ("::1", "2001:DB8:0:0::1", ("::1",), "2001:db8::1"),
        ("::ffff:192.0.2.1", None, (), "192.0.2.1"),
    ],
)
def test_client_address(peer, forwarded, trusted, expected):
    assert address_of(peer, forwarded, trusted) == expected


def test_trusted_proxies_are_read_from_the_environment():
    config = Config.from_env({"TOKENAUTH_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1 ,::1"})
    assert config.trusted_proxies == ("10.0.0.0/8", "192.0.2.1", "::1")
    assert Config().trusted_proxies == ()
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"TOKENAUTH_TRUSTED_PROXIES": "10.0.0.0/8,proxy.example"})
    assert refused.value.variable == "TOKENAUTH_TRUSTED_PROXIES"


def post_login(base: str, password: str, forwarded: str) -> requests.Response:
    return requests.post(
        f"{base}/auth/token",
        json={"grant_type": "password", "username": "alice", "password": password},
        headers={"X-Forwarded-For": forwarded},
        timeout=10,
    )


def start_small_gunicorn(gunicorn_server, **env: str) -> str:
    """One worker is enough here, and cheaper for a 2-core machine."""
    env.setdefault("TOKENAUTH_LOGIN_MAX_FAILURES", "2")
    return gunicorn_server(env, ("--workers", "1", "--threads", "4"))


def test_spoofed_x_forwarded_for_from_an_untrusted_peer_is_ignored(gunicorn_server):
    base = start_small_gunicorn(gunicorn_server)
    body = {"username": "alice", "password": PASSWORD}
    assert requests.post(f"{base}/users", json=body, timeout=10).status_code == 201
    assert post_login(base, WRONG, "203.0.113.1").status_code == 400
    assert post_login(base, WRONG, "203.0.113.2").status_code == 400
    blocked = post_login(base, PASSWORD, "203.0.113.3")
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0


def test_x_forwarded_for_from_a_trusted_proxy_names_the_client(gunicorn_server):
    base = start_small_gunicorn(gunicorn_server, TOKENAUTH_TRUSTED_PROXIES="127.0.0.1")
    body = {"username": "alice", "password": PASSWORD}
    assert requests.post(f"{base}/users", json=body, timeout=10).status_code == 201
    assert post_login(base, WRONG, "203.0.113.1").status_code == 400
    # The client forges an entry; the proxy appends the real address on the right.
    assert post_login(base, WRONG, "198.51.100.1, 203.0.113.1").status_code == 400
    assert post_login(base, PASSWORD, "203.0.113.1").status_code == 429
    assert post_login(base, PASSWORD, "203.0.113.2").status_code == 200


def test_a_burst_of_right_passwords_is_never_told_to_wait_the_window(make_app, make_config):
    # 32 clients logging in to one account at once (a load test, an app retrying): attempts
    # still being checked fill the pair's limit, but they are not failures.
    app = make_app(make_config(login_max_failures=5, login_window=900))
    register(app, "alice")
    body = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    start = threading.Barrier(32)

    def attempt(_):
        start.wait()
        return falcon.testing.simulate_post(
            app.app, "/auth/token", json=body, remote_addr="192.0.2.99"
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(attempt, range(32)))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 5
    for answer in answers:
        if answer.status_code == 429:
            assert int(answer.headers["Retry-After"]) <= 2
            assert answer.json["error"] == "temporarily_unavailable"
    # Nothing failed, so nothing is held against the account afterwards.
    assert (
        falcon.testing.simulate_post(
            app.app, "/auth/token", json=body, remote_addr="192.0.2.99"
        ).status_code
        == 200
    )


def test_failures_still_block_for_the_window_after_a_burst(make_app, make_config, clock):
    app = throttled_app(make_app, make_config, clock, login_max_failures=3, login_window=600)
    register(app, "alice")
    for _ in range(3):
        assert_invalid_grant(login(app, "alice", WRONG, status=400))
    assert_oauth_throttled(login(app, "alice", PASSWORD, status=429), 600)
