"""The two-step login: mfa_required, the MFA grant, its token, throttling, the cookie flow."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from helpers import PASSWORD, assert_documented, bearer, login, register
from mfa_helpers import (
    MFA_GRANT,
    STEP,
    code_at,
    enable_totp,
    mfa_grant,
    mfa_login,
    mfa_token,
    step_clock,
)
from test_cookie_session import SAME_ORIGIN, assert_cookie_answer
from test_ttl_indexes import run_ttl_pass

import mfa

WRONG_OTP = {"error": "invalid_grant", "error_description": "The otp is incorrect"}
SPENT_TOKEN = {
    "error": "invalid_grant",
    "error_description": "The mfa_token is invalid, expired or already used",
}


@pytest.fixture
def clock():
    """The app's clock, 5 s into a TOTP step."""
    return step_clock()


@pytest.fixture
def app(make_app, clock):
    """The service on that clock."""
    return make_app(clock=clock)


@pytest.fixture
def secret(app, clock) -> str:
    """alice, with TOTP confirmed; her secret."""
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    return enable_totp(app, token, clock)[0]


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


# -- the first step -------------------------------------------------------------------------
def test_a_right_password_answers_403_mfa_required(app, secret):
    answer = login(app, "alice", status=403)
    assert answer.content_type == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    assert set(answer.json) == {"error", "error_description", "mfa_token", "mfa_methods"}
    assert answer.json["error"] == "mfa_required"
    assert answer.json["error_description"] == (
        "This account has a second factor: complete the login with the mfa_token and one of "
        "otp, recovery_code"
    )
    assert answer.json["mfa_methods"] == ["otp", "recovery_code"]
    assert len(answer.json["mfa_token"]) >= 43  # 256 bits
    assert_documented(answer, "/auth/token", "POST")


def test_a_wrong_password_stays_400_invalid_grant(app, secret):
    answer = login(app, "alice", "not-the-password-at-all", status=400)
    assert answer.json == {
        "error": "invalid_grant",
        "error_description": "The username or password is incorrect",
    }


def test_the_mfa_token_is_stored_only_as_a_hash_with_a_ttl(app, secret, db):
    token = mfa_token(app)
    (stored,) = db["mfa_attempts"].find()
    assert token not in str(stored)
    assert stored["expires_at"] - stored["created_at"] == dt.timedelta(minutes=5)
    indexes = db["mfa_attempts"].index_information().values()
    assert any(
        index["key"] == [("expires_at", 1)] and index.get("expireAfterSeconds") == 0
        for index in indexes
    )


def test_expired_mfa_tokens_are_removed_by_the_database(make_app, db):
    month_ago = step_clock()
    month_ago.advance(-30 * 86400)
    old = make_app(clock=month_ago)
    register(old, "alice")
    enable_totp(old, login(old, "alice").json["access_token"], month_ago)
    mfa_token(old)
    assert db["mfa_attempts"].count_documents({}) == 1
    run_ttl_pass(db, dt.datetime.now(dt.UTC))
    assert db["mfa_attempts"].count_documents({}) == 0


# -- the MFA grant ---------------------------------------------------------------------------
def test_the_mfa_grant_completes_the_login_with_the_usual_answer(app, secret, clock):
    signed_in = int(clock.now.timestamp())
    token = mfa_token(app)
    clock.advance(20)
    answer = mfa_grant(app, token, otp=code_at(secret, clock))
    assert answer.headers["Cache-Control"] == "no-store"
    assert set(answer.json) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert_documented(answer, "/auth/token", "POST")
    claims = claims_of(answer.json["access_token"])
    # auth_time is the first step's: the sign-in began with the password.
    assert (claims["auth_time"], claims["amr"], claims["acr"]) == (
        signed_in,
        ["pwd", "otp", "mfa"],
        "aal2",
    )
    me = app.get("/users/me", headers=bearer(answer.json["access_token"]), status=200)
    assert me.json["username"] == "alice"


def test_the_mfa_grant_takes_a_form_body(app, secret, clock):
    body = {"grant_type": MFA_GRANT, "mfa_token": mfa_token(app), "otp": code_at(secret, clock)}
    answer = app.post("/auth/token", body, status=200)
    assert claims_of(answer.json["access_token"])["acr"] == "aal2"


def test_refreshes_keep_the_sign_in(app, secret, clock):
    first = mfa_login(app, secret, clock)
    clock.advance(700)
    refreshed = app.post(
        "/auth/token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    ).json
    before, after = claims_of(first["access_token"]), claims_of(refreshed["access_token"])
    assert after["iat"] > before["iat"]
    assert {k: after[k] for k in ("auth_time", "amr", "acr", "sid")} == {
        k: before[k] for k in ("auth_time", "amr", "acr", "sid")
    }


def test_the_mfa_token_is_single_use(app, secret, clock):
    token = mfa_token(app)
    mfa_grant(app, token, otp=code_at(secret, clock))
    again = mfa_grant(app, token, otp=code_at(secret, clock, steps=1), status=400)
    assert again.json == SPENT_TOKEN


def test_a_wrong_code_leaves_the_mfa_token_usable(app, secret, clock):
    token = mfa_token(app)
    assert mfa_grant(app, token, otp=code_at(secret, clock, steps=5), status=400).json == WRONG_OTP
    mfa_grant(app, token, otp=code_at(secret, clock))


def test_the_mfa_token_lives_five_minutes(app, secret, clock):
    token, late = mfa_token(app), mfa_token(app)
    clock.advance(299)
    mfa_grant(app, token, otp=code_at(secret, clock))
    clock.advance(1 + STEP)
    assert mfa_grant(app, late, otp=code_at(secret, clock), status=400).json == SPENT_TOKEN


@pytest.mark.parametrize(
    ("proof", "description"),
    [
        ({}, "Give exactly one of otp, recovery_code, passkey"),
        (
            {"otp": "123456", "recovery_code": "aaaa-bbbb-cccc-dddd"},
            "Give exactly one of otp, recovery_code, passkey",
        ),
    ],
    ids=["none", "two"],
)
def test_the_mfa_grant_needs_exactly_one_proof(app, secret, proof, description):
    answer = mfa_grant(app, mfa_token(app), status=400, **proof)
    assert answer.json == {"error": "invalid_request", "error_description": description}


def test_the_mfa_grant_needs_its_token(app, secret):
    body = {"grant_type": MFA_GRANT, "otp": "123456"}
    answer = app.post_json("/auth/token", body, status=400)
    assert answer.json == {"error": "invalid_request", "error_description": "mfa_token is required"}
    unknown = mfa_grant(app, "not-a-token", otp="123456", status=400)
    assert unknown.json == SPENT_TOKEN


def test_a_password_change_ends_logins_in_flight(app, secret, clock):
    token = mfa_token(app)
    strong = mfa_login(app, secret, clock)["access_token"]
    app.put_json(
        "/users/me/password",
        {"current_password": PASSWORD, "new_password": "a-completely-new-passphrase"},
        headers=bearer(strong),
        status=204,
    )
    answer = mfa_grant(app, token, otp=code_at(secret, clock), status=400)
    assert answer.json == {
        "error": "invalid_grant",
        "error_description": "This login can no longer be completed; sign in again",
    }


def test_accounts_without_a_factor_log_in_in_one_step(app, secret):
    register(app, "bob")
    answer = login(app, "bob", status=200)
    assert claims_of(answer.json["access_token"])["amr"] == ["pwd"]
    # The grant cannot be used to skip a password either: it needs an mfa_token.
    assert mfa_grant(app, "x" * 43, otp="123456", status=400).json == SPENT_TOKEN


# -- throttling -------------------------------------------------------------------------------
def test_wrong_codes_count_as_failed_logins_for_the_pair(app, secret, clock):
    token = mfa_token(app)
    for _ in range(5):  # TOKENAUTH_LOGIN_MAX_FAILURES
        assert (
            mfa_grant(app, token, otp=code_at(secret, clock, steps=4), status=400).json == WRONG_OTP
        )
    # Even the right code, even the right password, is refused now.
    refused = mfa_grant(app, token, otp=code_at(secret, clock), status=429)
    assert refused.headers["Retry-After"] == "900"
    assert refused.json["error"] == "temporarily_unavailable"
    assert login(app, "alice", status=429).headers["Retry-After"] == "900"
    # From another address the pair is another: the account is not locked out.
    other = {"REMOTE_ADDR": "198.51.100.7"}
    token = login(app, "alice", status=403, extra_environ=other).json["mfa_token"]
    body = {"grant_type": MFA_GRANT, "mfa_token": token, "otp": code_at(secret, clock)}
    app.post_json("/auth/token", body, extra_environ=other, status=200)
    clock.advance(900)
    mfa_login(app, secret, clock)


def test_wrong_passwords_and_wrong_codes_share_the_count(app, secret, clock):
    for _ in range(3):
        login(app, "alice", "not-the-password-at-all", status=400)
    token = mfa_token(app)  # a right password does not wipe the failures before it
    for _ in range(2):
        mfa_grant(app, token, otp=code_at(secret, clock, steps=4), status=400)
    mfa_grant(app, token, otp=code_at(secret, clock), status=429)


def test_a_completed_second_step_starts_the_count_over(app, secret, clock):
    token = mfa_token(app)
    for _ in range(4):
        mfa_grant(app, token, otp=code_at(secret, clock, steps=4), status=400)
    mfa_grant(app, token, otp=code_at(secret, clock))
    clock.advance(STEP)
    token = mfa_token(app)
    for _ in range(4):
        mfa_grant(app, token, otp=code_at(secret, clock, steps=4), status=400)
    mfa_grant(app, token, otp=code_at(secret, clock))


def test_the_account_takes_at_most_100_wrong_codes_an_hour(make_app, make_config, clock):
    app = make_app(make_config(login_max_failures=1000), clock=clock)
    register(app, "alice")
    secret = enable_totp(app, login(app, "alice").json["access_token"], clock)[0]
    token = mfa_token(app)
    wrong = code_at(secret, clock, steps=4)
    for n in range(100):
        other = {"REMOTE_ADDR": f"198.51.100.{n % 50 + 1}"}
        body = {"grant_type": MFA_GRANT, "mfa_token": token, "otp": wrong}
        app.post_json("/auth/token", body, extra_environ=other, status=400)
    refused = mfa_grant(app, token, otp=code_at(secret, clock), status=429)
    assert refused.headers["Retry-After"] == "3600"


def test_wrong_codes_show_in_the_users_events(app, secret, clock):
    token = mfa_token(app)
    mfa_grant(app, token, otp=code_at(secret, clock, steps=4), status=400)
    strong = mfa_grant(app, token, otp=code_at(secret, clock)).json["access_token"]
    events = [e["event"] for e in app.get("/users/me/events", headers=bearer(strong)).json["items"]]
    assert events[:2] == ["login_succeeded", "mfa_failed"]


# -- the cookie login ---------------------------------------------------------------------------
def test_the_cookie_login_takes_the_same_two_steps(app, secret, clock):
    app.cookiejar.clear()
    body = {"username": "alice", "password": PASSWORD}
    first = app.post_json("/auth/session", body, headers=SAME_ORIGIN, status=403)
    assert first.json["error"] == "mfa_required"
    assert first.json["mfa_methods"] == ["otp", "recovery_code"]
    assert "Set-Cookie" not in first.headers
    assert_documented(first, "/auth/session", "POST")
    wrong = app.post_json(
        "/auth/session",
        {"mfa_token": first.json["mfa_token"], "otp": code_at(secret, clock, steps=4)},
        headers=SAME_ORIGIN,
        status=400,
    )
    assert wrong.json == WRONG_OTP
    second = app.post_json(
        "/auth/session",
        {"mfa_token": first.json["mfa_token"], "otp": code_at(secret, clock)},
        headers=SAME_ORIGIN,
    )
    assert_cookie_answer(second, "/auth/session")
    assert claims_of(second.json["access_token"])["acr"] == "aal2"


def test_the_cookie_login_tells_the_recovery_codes_left(make_app, clock):
    app = make_app(clock=clock)
    register(app, "alice")
    _, codes = enable_totp(app, login(app, "alice").json["access_token"], clock)
    app.cookiejar.clear()
    body = {"username": "alice", "password": PASSWORD}
    token = app.post_json("/auth/session", body, headers=SAME_ORIGIN, status=403).json["mfa_token"]
    answer = app.post_json(
        "/auth/session", {"mfa_token": token, "recovery_code": codes[3]}, headers=SAME_ORIGIN
    )
    assert answer.json["recovery_codes_left"] == 9
    assert_documented(answer, "/auth/session", "POST")


def test_the_cookie_login_refuses_a_password_and_an_mfa_token_at_once(app, secret):
    body = {"username": "alice", "password": PASSWORD, "mfa_token": "x"}
    answer = app.post_json("/auth/session", body, headers=SAME_ORIGIN, status=400)
    assert answer.json["error"] == "invalid_request"


# -- another kind of factor joins by registering ------------------------------------------------
def test_a_kind_of_factor_plugs_in_by_registering(app, clock):
    """What the passkeys module does: its method, its proof, its part of GET /users/me/mfa."""
    register(app, "carol")
    listed = [{"id": "k1", "name": "laptop", "created_at": "2026-01-01T00:00:00.000Z"}]
    app.app.components.factors.add(
        methods=lambda user: ["passkey"] if user["username"] == "carol" else [],
        verifiers={
            "passkey": lambda user, value: (
                mfa.Proof(amr=("hwk", "user")) if value == {"assertion": "right"} else None
            )
        },
        describe=lambda user: {"passkeys": listed if user["username"] == "carol" else []},
    )
    first = login(app, "carol", status=403).json
    assert first["mfa_methods"] == ["passkey"]
    wrong = mfa_grant(app, first["mfa_token"], passkey={"assertion": "wrong"}, status=400)
    assert wrong.json == {"error": "invalid_grant", "error_description": "The passkey is incorrect"}
    done = mfa_grant(app, first["mfa_token"], passkey={"assertion": "right"}).json
    claims = claims_of(done["access_token"])
    assert (claims["amr"], claims["acr"]) == (["pwd", "hwk", "user", "mfa"], "aal2")
    status = app.get("/users/me/mfa", headers=bearer(done["access_token"])).json
    assert status == {"totp": False, "recovery_codes_left": 0, "passkeys": listed}
