"""The findings of the security review, one test (or a few) each: see docs/SECURITY.md."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import logging
import os
import signal
import socket
import threading
import time

import falcon.testing
import jwt
import pytest
import requests
from helpers import PASSWORD, bearer, free_port, login, register
from processes import children, command_line

import auth
import embedded
import errors
from keys import KeyRing
from passwords import PasswordHasher
from sessions import Sessions
from throttle import counter_key

NEW_PASSWORD = "an-entirely-new-passphrase-77"
WRONG = "definitely-not-the-password"


def refresh(app, token: str, **kwargs):
    """The refresh grant as JSON."""
    body = {"grant_type": "refresh_token", "refresh_token": token}
    return app.post_json("/auth/token", body, **kwargs)


def change_password(app, access: str, current: str, new: str, **kwargs):
    """PUT /users/me/password."""
    body = {"current_password": current, "new_password": new}
    return app.put_json("/users/me/password", body, headers=bearer(access), **kwargs)


def cheap_hashing(app) -> None:
    """These tests are not about hashing cost: a minimal argon2id keeps them quick."""
    app.app.components.accounts.hasher = PasswordHasher(time_cost=1, memory_cost=8)


# -- 1. the background refresher survives anything ----------------------------------------
def test_the_refresher_survives_a_dangling_key_link_and_still_learns_of_logouts(
    make_app, make_config, caplog
):
    config = make_config()
    worker, other = make_app(config), make_app(config)
    register(other, "alice")
    tokens = login(other, "alice").json
    (config.keys_dir / "zz.pem").symlink_to("/nonexistent")
    other.post("/auth/logout", headers=bearer(tokens["access_token"]), status=204)

    with caplog.at_level(logging.WARNING, logger="tokenauth"):
        for _ in range(3):
            worker.app.components.refresher.run_once()  # raised OSError, once, before the fix
    worker.get("/auth/verify", headers=bearer(tokens["access_token"]), status=401)
    skipped = [r.getMessage() for r in caplog.records if "zz.pem" in r.getMessage()]
    assert skipped == ["key file zz.pem skipped: No such file or directory"]


def test_a_task_failing_in_any_way_is_logged_once_by_name_and_the_others_still_run(caplog):
    calls: list[str] = []
    failures = iter([RuntimeError("x"), RuntimeError("x"), KeyError("y"), None, None])

    def flaky() -> None:
        calls.append("flaky")
        failure = next(failures)
        if failure is not None:
            raise failure

    refresher = auth.BackgroundRefresher(
        [("flaky", flaky), ("steady", lambda: calls.append("steady"))], interval=1.0
    )
    with caplog.at_level(logging.WARNING, logger="tokenauth"):
        for _ in range(5):
            refresher.run_once()
    assert calls == ["flaky", "steady"] * 5
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert messages[0].startswith("background task flaky failed: RuntimeError at ")
    assert messages[1].startswith("background task flaky failed: KeyError at ")
    assert messages[2] == "background task flaky recovered"


def test_an_unreadable_key_is_skipped_one_by_one_and_deletions_are_still_followed(
    make_app, make_config, caplog, clock
):
    config = make_config()
    app = make_app(config, clock=clock)
    register(app, "alice")
    old = login(app, "alice").json["access_token"]
    KeyRing(config.keys_dir, config.signing_alg, access_ttl=config.access_ttl, clock=clock).rotate()
    (config.keys_dir / "broken.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    (config.keys_dir / "gone.pem").symlink_to(config.keys_dir / "nowhere.pem")
    keyring = app.app.components.keyring
    with caplog.at_level(logging.WARNING, logger="tokenauth"):
        assert keyring.refresh() is True  # picked up the new key despite two bad files
        new = login(app, "alice").json["access_token"]
        # The old key was compromised: deleting its file must stop its tokens at once.
        # (By the token's kid: the RS256 ID-token key is a .pem of the directory too.)
        old_kid = jwt.get_unverified_header(old)["kid"]
        (config.keys_dir / f"{old_kid}.pem").unlink()
        assert keyring.refresh() is True
    app.get("/auth/verify", headers=bearer(old), status=401)
    app.get("/auth/verify", headers=bearer(new), status=204)
    skipped = sorted(r.getMessage() for r in caplog.records if "skipped" in r.getMessage())
    assert skipped == [
        "key file broken.pem skipped: broken.pem is not a readable private key",
        "key file gone.pem skipped: No such file or directory",
    ]


def test_health_shows_how_old_the_revocation_set_is(app):
    body = app.get("/health", status=200).json
    assert body["status"] == "ok"
    assert 0 <= body["revocations_age"] < 5


def test_a_stale_revocation_set_is_logged_when_it_passes_the_bound(make_config, make_app, caplog):
    unreachable = make_config(
        mongodb_uri=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
        db_timeout_ms=200,
    )
    with caplog.at_level(logging.WARNING, logger="tokenauth"):
        make_app(unreachable)
    messages = [r.getMessage() for r in caplog.records]
    assert (
        "revocation set is stale (never polled, bound 3.2 s): protected routes answer 503"
        in messages
    )


# -- 2. revocation never fails open ------------------------------------------------------
def test_a_revoked_token_never_passes_a_worker_cut_off_from_the_database(gunicorn_server, tmp_path):
    """Logout, SIGSTOP the database, restart the workers: the token is 401 or 503, never 204."""
    server = embedded.EmbeddedServer(tmp_path / "db")
    server.start()
    try:
        base = gunicorn_server({"TOKENAUTH_MONGODB_URI": server.uri})
        requests.post(f"{base}/users", json={"username": "alice", "password": PASSWORD}, timeout=10)
        tokens = requests.post(
            f"{base}/auth/token", json={"username": "alice", "password": PASSWORD}, timeout=10
        ).json()
        headers = {**bearer(tokens["access_token"]), "Connection": "close"}
        assert requests.post(f"{base}/auth/logout", headers=headers, timeout=10).status_code == 204
        time.sleep(2.5)  # revocation reaches every worker within 2 s
        (master,) = [p for p in children(os.getpid()) if "gunicorn.conf.py" in command_line(p)]
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            for worker in children(master):
                os.kill(worker, signal.SIGTERM)  # gunicorn forks fresh workers, with empty sets
            statuses = []
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                try:
                    answer = requests.get(f"{base}/auth/verify", headers=headers, timeout=5)
                    statuses.append(answer.status_code)
                except requests.RequestException:
                    statuses.append("no answer")
                time.sleep(0.2)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        assert 204 not in statuses, statuses
        assert 503 in statuses, statuses
        deadline = time.monotonic() + 20
        while requests.get(f"{base}/auth/verify", headers=headers, timeout=5).status_code != 401:
            assert time.monotonic() < deadline, "the revoked token was not refused after recovery"
            time.sleep(0.2)
    finally:
        server.stop()


# -- 3. a password change ends logins that were in flight ----------------------------------
def test_a_login_that_checked_the_old_password_before_a_change_cannot_open_a_session(app):
    register(app, "alice")
    caller = login(app, "alice").json
    components = app.app.components
    # The login checks the old password, then the change lands (ending every other session),
    # then the login opens its session: exactly the interleaving of the review.
    user = components.accounts.authenticate("alice", PASSWORD, address="192.0.2.1")
    change_password(app, caller["access_token"], PASSWORD, NEW_PASSWORD, status=204)
    with pytest.raises(errors.InvalidGrant, match="password changed during this login"):
        components.sessions.open(user)
    # The caller's own session was re-stamped and lives on.
    assert refresh(app, caller["refresh_token"], status=200).json["access_token"]


def test_a_session_opened_under_an_older_password_cannot_refresh_and_its_tokens_stop(app, db):
    register(app, "alice")
    caller = login(app, "alice").json
    change_password(app, caller["access_token"], PASSWORD, NEW_PASSWORD, status=204)
    # A session stamped with the credentials before the change, as a login in flight would
    # have written it had it escaped both the change and its own check.
    components = app.app.components
    user = components.store.find_user_by_name("alice")
    now = dt.datetime.now(dt.UTC)
    components.store.create_session(
        sid="straggler",
        user_id=user["id"],
        token_hash=hashlib.sha256(b"straggler-refresh-token").hexdigest(),
        credential_version=0,
        now=now,
        expires_at=now + dt.timedelta(hours=1),
    )
    access, _ = components.tokens.issue(user=user, sid="straggler")
    answer = refresh(app, "straggler-refresh-token", status=400)
    assert answer.json == {
        "error": "invalid_grant",
        "error_description": "The password changed since this session began; sign in again",
    }
    assert "revoked_at" in db.sessions.find_one({"_id": "straggler"})
    app.get("/users/me", headers=bearer(access), status=401)
    assert refresh(app, caller["refresh_token"], status=200).json["access_token"]


def test_concurrent_old_password_logins_during_a_change_leave_no_working_session(
    make_app, make_config
):
    app = make_app(make_config(login_max_failures=50))
    cheap_hashing(app)
    register(app, "alice")
    caller = login(app, "alice").json
    start = threading.Barrier(7)
    body = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    change = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}

    def run(number: int):
        start.wait()
        if number == 6:
            time.sleep(0.005)  # let the logins reach their password checks first
            return falcon.testing.simulate_put(
                app.app, "/users/me/password", json=change, headers=bearer(caller["access_token"])
            )
        return falcon.testing.simulate_post(app.app, "/auth/token", json=body)

    with concurrent.futures.ThreadPoolExecutor(max_workers=7) as pool:
        *logins, changed = pool.map(run, range(7))
    assert changed.status_code == 204
    opened = [answer.json for answer in logins if answer.status_code == 200]
    for tokens in opened:
        after = refresh(app, tokens["refresh_token"], expect_errors=True)
        app.app.components.revocations.poll()
        me = app.get("/users/me", headers=bearer(tokens["access_token"]), expect_errors=True)
        # Either the login finished before the change (and the change ended it) or after.
        assert after.status_int == 400, after.body
        assert me.status_int == 401


def test_a_rehash_on_login_never_puts_back_a_password_changed_meanwhile(app, db):
    register(app, "alice")
    accounts = app.app.components.accounts
    user_id = db.users.find_one()["_id"]
    weak = PasswordHasher(time_cost=1, memory_cost=8)
    db.users.update_one({"_id": user_id}, {"$set": {"password_hash": weak.hash(PASSWORD)}})
    changed_hash = accounts.hasher.hash(NEW_PASSWORD)
    real_hash = accounts.hasher.hash

    def hash_while_a_change_lands(password: str) -> str:
        # The change lands between the login's check of the old hash and its rehash write.
        db.users.update_one({"_id": user_id}, {"$set": {"password_hash": changed_hash}})
        return real_hash(password)

    accounts.hasher.hash = hash_while_a_change_lands
    try:
        accounts.authenticate("alice", PASSWORD, address="192.0.2.1")
    finally:
        accounts.hasher.hash = real_hash
    assert db.users.find_one()["password_hash"] == changed_hash
    login(app, "alice", NEW_PASSWORD, status=200)
    login(app, "alice", PASSWORD, status=400)


# -- 5. throttle keys cannot collide ------------------------------------------------------
def test_colliding_names_and_ipv6_addresses_do_not_share_a_counter(make_app, make_config):
    app = make_app(make_config(trusted_proxies=("192.0.2.10",), login_max_failures=5))
    cheap_hashing(app)
    register(app, "bob")
    body = {"grant_type": "password", "username": "0:bob", "password": WRONG}
    for _ in range(6):
        answer = app.post_json(
            "/auth/token", body, headers={"X-Forwarded-For": "2001:db8::1"}, status=400
        )
        assert answer.json["error"] == "invalid_grant"
    right = app.post_json(
        "/auth/token",
        {"grant_type": "password", "username": "bob", "password": PASSWORD},
        headers={"X-Forwarded-For": "2001:db8::1:0"},
    )
    assert right.status_int == 200


def test_an_impossible_username_costs_a_hash_and_counts_nothing(app, db):
    accounts = app.app.components.accounts
    verified: list[object] = []
    real_verify = accounts.hasher.verify

    def counting_verify(password_hash, password):
        verified.append(password_hash)
        return real_verify(password_hash, password)

    accounts.hasher.verify = counting_verify
    try:
        answer = login(app, "0:bob", WRONG, status=400)
    finally:
        accounts.hasher.verify = real_verify
    assert answer.json["error_description"] == "The username or password is incorrect"
    assert verified == [None]  # the dummy hash: the same time as a wrong password
    assert db.throttle.count_documents({}) == 0


def test_throttle_keys_are_unambiguous():
    assert counter_key("login:pair", "2001:db8::1", "0:bob") != counter_key(
        "login:pair", "2001:db8::1:0", "bob"
    )


# -- 6. refresh tokens are bounded -------------------------------------------------------
def test_a_session_keeps_a_bounded_number_of_retired_tokens_and_refreshes_are_limited(
    make_app, make_config, db, clock
):
    app = make_app(make_config(), clock=clock)
    register(app, "alice")
    first = login(app, "alice").json
    token, tokens = first["refresh_token"], [first["refresh_token"]]
    sid = auth_claims(first["access_token"])["sid"]
    for _ in range(Sessions.REFRESH_LIMIT):
        token = refresh(app, token, status=200).json["refresh_token"]
        tokens.append(token)
    limited = refresh(app, token, status=429)
    assert limited.headers["Retry-After"] == str(Sessions.REFRESH_WINDOW)
    assert limited.json["error"] == "temporarily_unavailable"
    clock.advance(Sessions.REFRESH_WINDOW)
    for _ in range(40):
        token = refresh(app, token, status=200).json["refresh_token"]
        tokens.append(token)

    assert db.sessions.count_documents({}) == 1
    session = db.sessions.find_one({"_id": sid})
    assert len(session["retired"]) == Sessions.RETIRED_KEPT
    assert "refresh_tokens" not in db.list_collection_names()
    # A token older than the remembered generations is simply unknown...
    assert refresh(app, tokens[0], status=400).json["error"] == "invalid_grant"
    assert "revoked_at" not in db.sessions.find_one({"_id": sid})
    # ...and a recently retired one is reuse: the session ends.
    refresh(app, tokens[-3], status=400)
    assert "revoked_at" in db.sessions.find_one({"_id": sid})
    refresh(app, token, status=400)


# -- 7. control characters never reach a log line -----------------------------------------
def test_a_newline_in_the_path_does_not_forge_an_access_log_line(gunicorn_server, tmp_path):
    base = gunicorn_server({"TOKENAUTH_ACCESS_LOG": "on"})
    port = base.rsplit(":", 1)[1]
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as conn:
        conn.sendall(
            b'GET /x%0a%7B"event":"login_succeeded"%7D HTTP/1.1\r\nHost: x\r\n'
            b"Connection: close\r\n\r\n"
        )
        assert conn.recv(100).startswith(b"HTTP/1.1 404")
    time.sleep(0.5)
    lines = (tmp_path / f"gunicorn-{port}.log").read_text().splitlines()
    assert not [line for line in lines if "login_succeeded" in line and line.startswith("{")]
    assert [line for line in lines if '"GET /x\\u000a{' in line]


def test_an_unexpected_error_logs_the_path_escaped(app, caplog):
    class Broken:
        public_methods = auth.EVERY_METHOD

        def on_get(self, req, resp, tail):
            raise ZeroDivisionError

    app.app.add_route("/broken/{tail}", Broken())
    with caplog.at_level(logging.ERROR, logger="tokenauth"):
        answer = falcon.testing.simulate_get(app.app, "/broken/x%0aforged")
    assert answer.status_code == 500
    (message,) = [r.getMessage() for r in caplog.records if "unhandled" in r.getMessage()]
    assert "\n" not in message
    assert "GET /broken/x\\u000aforged at " in message


# -- 8. the verified-token cache never keeps a result checked with a deleted key ------------
def test_a_token_checked_while_its_key_is_deleted_is_not_cached(make_app, make_config, clock):
    config = make_config()
    app = make_app(config, clock=clock)
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    components = app.app.components
    keyring, tokens = components.keyring, components.tokens
    KeyRing(config.keys_dir, config.signing_alg, access_ttl=config.access_ttl, clock=clock).rotate()
    keyring.refresh()
    old_key_file = config.keys_dir / f"{jwt.get_unverified_header(token)['kid']}.pem"
    user = components.store.find_user_by_name("alice")
    real_verifying_key = keyring.verifying_key
    deleted: list[bool] = []

    def key_deleted_during_the_check(kid):
        key = real_verifying_key(kid)
        if not deleted:
            deleted.append(True)
            old_key_file.unlink()  # the worker's poller sees the deletion...
            keyring.refresh()
            # ...and another request thread checks a token meanwhile, starting a new cache.
            newer, _ = tokens.issue(user=user, sid="another")
            tokens.verify(newer)
        return key

    keyring.verifying_key = key_deleted_during_the_check
    try:
        assert tokens.verify(token)["username"] == "alice"  # checked before the deletion
    finally:
        keyring.verifying_key = real_verifying_key
    with pytest.raises(errors.InvalidToken, match="unknown key"):
        tokens.verify(token)


# -- 9. media types in any case -----------------------------------------------------------
@pytest.mark.parametrize(
    "content_type", ["APPLICATION/JSON", "Application/Json; Charset=UTF-8", "application/json"]
)
def test_json_media_types_are_case_insensitive(app, content_type):
    body = b'{"username": "alice", "password": "%s"}' % PASSWORD.encode()
    app.post("/users", body, headers={"Content-Type": content_type}, status=201)
    token = app.post(
        "/auth/token",
        b'{"username": "alice", "password": "%s"}' % PASSWORD.encode(),
        headers={"Content-Type": content_type},
        status=200,
    )
    assert token.json["token_type"] == "Bearer"


def test_form_media_types_are_case_insensitive(app):
    register(app, "alice")
    answer = app.post(
        "/auth/token",
        f"grant_type=password&username=alice&password={PASSWORD}".encode(),
        headers={"Content-Type": "APPLICATION/X-WWW-FORM-URLENCODED; CHARSET=UTF-8"},
        status=200,
    )
    assert answer.json["token_type"] == "Bearer"


def auth_claims(access_token: str) -> dict:
    """The claims of an access token, unverified (the tests issued it)."""
    return jwt.decode(access_token, options={"verify_signature": False})
