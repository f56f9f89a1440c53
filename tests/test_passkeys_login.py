"""Signing in with passkeys: the second factor after a password, passwordless sign-in (grant
and cookie), amr/acr, counters, single-use challenges, throttling, and real gunicorn."""

from __future__ import annotations

import json
import logging
import threading

import jwt
import pytest
import requests
from authenticator import SoftAuthenticator, b64url
from helpers import PASSWORD, assert_documented, bearer, login, register
from mfa_helpers import enable_totp, step_clock
from passkey_helpers import (
    MFA_GRANT,
    ORIGIN,
    PASSKEY_GRANT,
    RP_ID,
    SAME_ORIGIN,
    WRONG_PASSKEY,
    add_passkey,
    password_then_passkey,
    passwordless,
    request_options,
)
from test_cookie_session import assert_cookie_answer, cookie_refresh
from test_step_up import WEAK, assert_step_up


@pytest.fixture
def clock():
    """The app's clock, 5 s into a TOTP step."""
    return step_clock()


@pytest.fixture
def app(make_app, clock):
    """The service on that clock."""
    return make_app(clock=clock)


@pytest.fixture
def key() -> SoftAuthenticator:
    """A device-bound authenticator that verifies its user."""
    return SoftAuthenticator(ORIGIN)


@pytest.fixture
def alice(app, key) -> dict:
    """alice with one passkey (on `key`): the passkey."""
    register(app, "alice")
    return add_passkey(app, login(app, "alice").json["access_token"], key)


def claims_of(answer) -> dict:
    return jwt.decode(answer.json["access_token"], options={"verify_signature": False})


def sign_in_facts(answer) -> tuple[list[str], str]:
    claims = claims_of(answer)
    return claims["amr"], claims["acr"]


def events_of(app, answer) -> list[str]:
    items = app.get("/users/me/events", headers=bearer(answer.json["access_token"])).json["items"]
    return [e["event"] for e in items]


# -- the second factor after a password --------------------------------------------------------
def test_a_password_alone_answers_mfa_required_with_passkey(app, alice, clock):
    answer = login(app, "alice", status=403).json
    assert answer["mfa_methods"] == ["passkey"]
    assert answer["error_description"] == (
        "This account has a second factor: complete the login with the mfa_token and one of passkey"
    )
    token = app.post_json(
        "/auth/token", {"grant_type": MFA_GRANT, "mfa_token": answer["mfa_token"]}, status=400
    )
    assert token.json == {
        "error": "invalid_request",
        "error_description": "Give exactly one of otp, recovery_code, passkey",
    }


def test_options_for_a_second_step_allow_the_accounts_passkeys(app, alice, key):
    mfa_token = login(app, "alice", status=403).json["mfa_token"]
    answer = app.post_json("/auth/passkey/options", {"mfa_token": mfa_token}, status=200)
    assert answer.headers["Cache-Control"] == "no-store"
    assert_documented(answer, "/auth/passkey/options", "POST")
    options = answer.json["options"]
    assert options["rpId"] == RP_ID
    assert options["allowCredentials"] == [
        {
            "id": b64url(key.credentials[0].credential_id),
            "type": "public-key",
            "transports": ["internal"],
        }
    ]
    assert options["userVerification"] == "preferred"
    assert answer.json["challenge_id"] == options["challenge"]
    refused = app.post_json("/auth/passkey/options", {"mfa_token": "nope"}, status=422)
    assert refused.json["errors"] == [
        {"field": "mfa_token", "message": "is invalid, expired or already used"}
    ]


def test_the_mfa_grant_takes_a_passkey(app, alice, key, clock):
    signed_in = int(clock.now.timestamp())
    done = password_then_passkey(app, key)
    assert set(done.json) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert_documented(done, "/auth/token", "POST")
    assert sign_in_facts(done) == (["pwd", "hwk", "user", "mfa"], "aal2")
    assert claims_of(done)["auth_time"] == signed_in
    status = app.get("/users/me/mfa", headers=bearer(done.json["access_token"])).json
    assert status["passkeys"][0]["last_used_at"] == status["passkeys"][0]["created_at"]
    assert events_of(app, done)[:2] == ["login_succeeded", "passkey_used"]


def test_a_synced_passkey_is_a_software_key(app):
    register(app, "bob")
    synced = SoftAuthenticator(ORIGIN, backup_eligible=True)
    add_passkey(app, login(app, "bob").json["access_token"], synced)
    assert sign_in_facts(password_then_passkey(app, synced, "bob")) == (
        ["pwd", "swk", "user", "mfa"],
        "aal2",
    )
    assert sign_in_facts(passwordless(app, synced)) == (["swk", "user", "mfa"], "aal2")


def test_the_mfa_grant_takes_a_form_body(app, alice, key):
    mfa_token = login(app, "alice", status=403).json["mfa_token"]
    options = request_options(app, mfa_token)
    body = {
        "grant_type": MFA_GRANT,
        "mfa_token": mfa_token,
        "passkey": json.dumps(key.get(options["options"])),
    }
    assert sign_in_facts(app.post("/auth/token", body, status=200))[1] == "aal2"


def test_a_second_step_needs_a_challenge_issued_for_it(app, alice, key):
    mfa_token = login(app, "alice", status=403).json["mfa_token"]
    anyones = request_options(app)  # passwordless options: not bound to this login
    body = {"grant_type": MFA_GRANT, "mfa_token": mfa_token, "passkey": key.get(anyones["options"])}
    assert app.post_json("/auth/token", body, status=400).json == WRONG_PASSKEY
    # A wrong proof leaves the mfa_token usable.
    options = request_options(app, mfa_token)
    body["passkey"] = key.get(options["options"])
    app.post_json("/auth/token", body, status=200)


def test_the_cookie_login_finishes_with_a_passkey(app, alice, key):
    app.cookiejar.clear()
    body = {"username": "alice", "password": PASSWORD}
    first = app.post_json("/auth/session", body, headers=SAME_ORIGIN, status=403).json
    options = request_options(app, first["mfa_token"])
    second = app.post_json(
        "/auth/session",
        {"mfa_token": first["mfa_token"], "passkey": key.get(options["options"])},
        headers=SAME_ORIGIN,
    )
    assert_cookie_answer(second, "/auth/session")
    assert sign_in_facts(second) == (["pwd", "hwk", "user", "mfa"], "aal2")


def test_an_account_with_totp_and_a_passkey_offers_both(app, clock, key):
    register(app, "carol")
    token = login(app, "carol").json["access_token"]
    enable_totp(app, token, clock)
    weak = app.post("/users/me/passkeys/options", headers=bearer(token), status=401)
    assert_step_up(weak, WEAK)
    mfa_token = login(app, "carol", status=403).json
    assert mfa_token["mfa_methods"] == ["otp", "recovery_code"]


# -- passwordless -----------------------------------------------------------------------------
def test_a_user_verified_passkey_signs_in_alone_at_aal2(app, alice, key, clock):
    options = app.post("/auth/passkey/options", status=200)
    assert_documented(options, "/auth/passkey/options", "POST")
    assert options.json["options"]["allowCredentials"] == []
    body = {
        "grant_type": PASSKEY_GRANT,
        "passkey": key.get(options.json["options"]),
        "challenge_id": options.json["challenge_id"],
    }
    answer = app.post_json("/auth/token", body, status=200)
    assert answer.headers["Cache-Control"] == "no-store"
    assert set(answer.json) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert_documented(answer, "/auth/token", "POST")
    claims = claims_of(answer)
    assert (claims["username"], claims["amr"], claims["acr"]) == (
        "alice",
        ["hwk", "user", "mfa"],
        "aal2",
    )
    assert claims["auth_time"] == int(clock.now.timestamp())
    # aal2 is enough for the second-factor step-up: removing a passkey.
    app.delete(
        f"/users/me/passkeys/{alice['id']}", headers=bearer(answer.json["access_token"]), status=204
    )


def test_a_passkey_without_user_verification_is_one_factor(app):
    register(app, "dave")
    presence_only = SoftAuthenticator(ORIGIN, verifies_user=False)
    passkey = add_passkey(app, login(app, "dave").json["access_token"], presence_only)
    answer = passwordless(app, presence_only)
    assert sign_in_facts(answer) == (["hwk", "user"], "aal1")
    weak = app.delete(
        f"/users/me/passkeys/{passkey['id']}",
        headers=bearer(answer.json["access_token"]),
        status=401,
    )
    assert_step_up(weak, WEAK)
    # After a password, the same passkey makes two factors.
    assert sign_in_facts(password_then_passkey(app, presence_only, "dave"))[1] == "aal2"


def test_the_cookie_login_signs_in_with_a_passkey_alone(app, alice, key):
    app.cookiejar.clear()
    options = request_options(app)
    answer = app.post_json(
        "/auth/session",
        {"passkey": key.get(options["options"]), "challenge_id": options["challenge_id"]},
        headers=SAME_ORIGIN,
    )
    refresh_token = assert_cookie_answer(answer, "/auth/session")
    assert sign_in_facts(answer) == (["hwk", "user", "mfa"], "aal2")
    refreshed = cookie_refresh(app, refresh_token, status=200)
    assert sign_in_facts(refreshed) == (["hwk", "user", "mfa"], "aal2")


def test_the_passkey_grant_needs_both_fields(app, alice):
    answer = app.post_json("/auth/token", {"grant_type": PASSKEY_GRANT}, status=400)
    assert answer.json == {
        "error": "invalid_request",
        "error_description": "passkey and challenge_id are required",
    }
    cookie = app.post_json(
        "/auth/session", {"passkey": {"id": "x"}}, headers=SAME_ORIGIN, status=400
    )
    assert cookie.json["error"] == "invalid_request"


def test_a_sign_in_challenge_works_once(app, alice, key):
    options = request_options(app)
    body = {
        "grant_type": PASSKEY_GRANT,
        "passkey": key.get(options["options"]),
        "challenge_id": options["challenge_id"],
    }
    app.post_json("/auth/token", body, status=200)
    replayed = app.post_json("/auth/token", body, status=400)
    assert replayed.json == WRONG_PASSKEY
    body["passkey"] = key.get(options["options"])  # signed anew, higher counter
    assert app.post_json("/auth/token", body, status=400).json == WRONG_PASSKEY


def test_a_sign_in_challenge_lives_five_minutes(app, alice, key, clock):
    early, late = request_options(app), request_options(app)
    clock.advance(299)
    body = {"grant_type": PASSKEY_GRANT, "challenge_id": early["challenge_id"]}
    app.post_json("/auth/token", {**body, "passkey": key.get(early["options"])}, status=200)
    clock.advance(1)
    body = {"grant_type": PASSKEY_GRANT, "challenge_id": late["challenge_id"]}
    answer = app.post_json("/auth/token", {**body, "passkey": key.get(late["options"])}, status=400)
    assert answer.json == WRONG_PASSKEY


@pytest.mark.parametrize(
    "forged",
    [
        {"origin": "https://evil.example"},
        {"rp_id": "evil.example"},
        {"challenge": b"a challenge the service never gave"},
        {"forge_signature": True},
    ],
    ids=["origin", "rp-id", "challenge", "signature"],
)
def test_a_wrong_assertion_is_refused(app, alice, key, forged):
    assert passwordless(app, key, status=400, **forged).json == WRONG_PASSKEY
    assert password_then_passkey(app, key, status=400, **forged).json == WRONG_PASSKEY


def test_the_challenge_id_must_be_the_assertions(app, alice, key):
    first, second = request_options(app), request_options(app)
    body = {
        "grant_type": PASSKEY_GRANT,
        "passkey": key.get(first["options"]),
        "challenge_id": second["challenge_id"],
    }
    assert app.post_json("/auth/token", body, status=400).json == WRONG_PASSKEY


def test_a_disabled_account_cannot_sign_in_with_its_passkey(app, alice, key, db):
    db["users"].update_one({"username": "alice"}, {"$set": {"disabled": True}})
    assert passwordless(app, key, status=400).json == WRONG_PASSKEY


# -- signature counters ------------------------------------------------------------------------
def test_a_counter_that_does_not_increase_is_a_cloned_authenticator(app, alice, key, db):
    passwordless(app, key)  # counter 1
    passwordless(app, key)  # counter 2
    for count in (2, 1, 0):
        assert passwordless(app, key, status=400, sign_count=count).json == WRONG_PASSKEY
    (stored,) = db["users"].find_one({"username": "alice"})["passkeys"]
    assert stored["sign_count"] == 2
    answer = passwordless(app, key)  # the genuine authenticator goes on at 3
    assert events_of(app, answer).count("passkey_sign_count_regressed") == 3


def test_an_authenticator_without_a_counter_signs_in_every_time(app):
    register(app, "erin")
    counterless = SoftAuthenticator(ORIGIN, backup_eligible=True, counter_step=0)
    add_passkey(app, login(app, "erin").json["access_token"], counterless)
    for _ in range(3):
        passwordless(app, counterless)


# -- throttling --------------------------------------------------------------------------------
def test_failed_assertions_count_as_failed_logins(app, alice, key):
    for _ in range(5):  # TOKENAUTH_LOGIN_MAX_FAILURES
        passwordless(app, key, status=400, forge_signature=True)
    refused = passwordless(app, key, status=429)
    assert refused.headers["Retry-After"] == "900"
    assert refused.json["error"] == "temporarily_unavailable"
    # The same count as her password's: the pair (alice, this address) is throttled.
    assert login(app, "alice", status=429).headers["Retry-After"] == "900"


def test_failed_second_steps_with_a_passkey_are_throttled(app, alice, key):
    for _ in range(5):
        password_then_passkey(app, key, status=400, forge_signature=True)
    mfa_token = login(app, "alice", status=429)
    assert mfa_token.headers["Retry-After"] == "900"


def test_assertions_of_unknown_credentials_are_throttled_by_address(app, alice, key):
    stranger = SoftAuthenticator(ORIGIN)  # a credential made for this site, never registered
    stranger.create({"rp": {"id": RP_ID}, "user": {"id": "AAAA"}, "challenge": "AAAA"})
    for _ in range(5):
        assert passwordless(app, stranger, status=400).json == WRONG_PASSKEY
    assert passwordless(app, stranger, status=429).headers["Retry-After"] == "900"
    # alice's own passkey is another pair: she still signs in.
    passwordless(app, key)


# -- any worker or instance finishes a ceremony ---------------------------------------------------
def test_a_ceremony_begun_on_one_instance_finishes_on_another(gunicorn_server):
    first, second = gunicorn_server(), gunicorn_server()
    key = SoftAuthenticator(ORIGIN)
    with requests.Session() as http:
        http.post(f"{first}/users", json={"username": "alice", "password": PASSWORD})
        body = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        token = http.post(f"{first}/auth/token", json=body).json()["access_token"]
        options = http.post(f"{first}/users/me/passkeys/options", headers=bearer(token)).json()
        added = http.post(
            f"{second}/users/me/passkeys",
            json={
                "credential": key.create(options),
                "name": "Laptop",
                "challenge_id": options["challenge_id"],
            },
            headers=bearer(token),
        )
        assert added.status_code == 201, added.text
        request = http.post(f"{second}/auth/passkey/options").json()
        body = {
            "grant_type": PASSKEY_GRANT,
            "passkey": key.get(request["options"]),
            "challenge_id": request["challenge_id"],
        }
        signed_in = http.post(f"{first}/auth/token", json=body)
        assert signed_in.status_code == 200, signed_in.text
        replayed = http.post(f"{second}/auth/token", json=body)
        assert (replayed.status_code, replayed.json()) == (400, WRONG_PASSKEY)


def test_a_cookie_login_with_a_password_and_an_empty_passkey_is_a_password_login(app, alice):
    # A form field left empty is still a field: the password decides.
    body = {"username": "alice", "password": PASSWORD, "passkey": ""}
    answer = app.post("/auth/session", body, headers=SAME_ORIGIN, status=403)
    assert answer.json["mfa_methods"] == ["passkey"]


def at_once(posts: list[tuple[str, dict]]) -> list[int]:
    """POST each (url, JSON body) from its own thread, released together: the statuses."""
    barrier = threading.Barrier(len(posts))
    statuses: list[int | None] = [None] * len(posts)

    def send(index: int) -> None:
        url, body = posts[index]
        barrier.wait()
        statuses[index] = requests.post(url, json=body, timeout=10).status_code

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return sorted(s for s in statuses if s is not None)


def test_one_assertion_or_one_counter_value_signs_in_once_across_instances(gunicorn_server):
    bases = [gunicorn_server(), gunicorn_server()]
    key = SoftAuthenticator(ORIGIN)
    requests.post(f"{bases[0]}/users", json={"username": "alice", "password": PASSWORD}, timeout=10)
    body = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    token = requests.post(f"{bases[0]}/auth/token", json=body, timeout=10).json()["access_token"]
    options = requests.post(
        f"{bases[0]}/users/me/passkeys/options", headers=bearer(token), timeout=10
    ).json()
    registration = {
        "credential": key.create(options),
        "name": "Laptop",
        "challenge_id": options["challenge_id"],
    }
    added = requests.post(
        f"{bases[1]}/users/me/passkeys", json=registration, headers=bearer(token), timeout=10
    )
    assert added.status_code == 201, added.text

    def grant(count: int) -> dict:
        request = requests.post(f"{bases[0]}/auth/passkey/options", timeout=10).json()
        return {
            "grant_type": PASSKEY_GRANT,
            "passkey": key.get(request["options"], sign_count=count),
            "challenge_id": request["challenge_id"],
        }

    # The same assertion to both instances: its challenge is taken once.
    same = grant(1)
    assert at_once([(f"{base}/auth/token", same) for base in bases]) == [200, 400]
    # Two assertions over two challenges with one counter value (a clone racing the key):
    # the counter moves from 1 to 2 once.
    clones = [(f"{base}/auth/token", grant(2)) for base in bases]
    assert at_once(clones) == [200, 400]


def test_no_key_credential_id_or_challenge_reaches_the_logs(app, key, caplog, db):
    caplog.set_level(logging.DEBUG, logger="tokenauth")
    register(app, "alice")
    add_passkey(app, login(app, "alice").json["access_token"], key)
    options = request_options(app)
    app.post_json(
        "/auth/token",
        {
            "grant_type": PASSKEY_GRANT,
            "passkey": key.get(options["options"]),
            "challenge_id": options["challenge_id"],
        },
        status=200,
    )
    passwordless(app, key, status=400, sign_count=0)  # a counter regression is logged too
    (stored,) = db["users"].find_one({"username": "alice"})["passkeys"]
    # The service's own log lines (the driver's debug log, off by default, is not ours).
    ours = [r for r in caplog.records if r.name.startswith("tokenauth")]
    logged = "\n".join(record.getMessage() for record in ours)
    assert "passkey_used" in logged and "passkey_sign_count_regressed" in logged
    for secret in (
        b64url(stored["public_key"]),
        b64url(stored["credential_id"]),
        options["challenge_id"],
    ):
        assert secret not in logged
