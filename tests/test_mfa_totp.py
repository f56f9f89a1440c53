"""TOTP (RFC 6238): enrolment, confirmation, window, replay, storage, removal, recovery codes."""

from __future__ import annotations

import re
import stat
import urllib.parse

import jwt
import pyotp
import pytest
from helpers import PASSWORD, assert_documented, bearer, login, register
from mfa_helpers import (
    RECOVERY_CODE,
    STEP,
    code_at,
    enable_totp,
    enrol,
    mfa_grant,
    mfa_login,
    mfa_token,
    step_clock,
)

import mfa


@pytest.fixture
def clock():
    """The app's clock, 5 s into a TOTP step."""
    return step_clock()


@pytest.fixture
def app(make_app, clock):
    """The service on that clock, alice registered."""
    service = make_app(clock=clock)
    register(service, "alice")
    return service


@pytest.fixture
def token(app) -> str:
    """A fresh password-only access token of alice."""
    return login(app, "alice").json["access_token"]


def status_of(app, token: str) -> dict:
    answer = app.get("/users/me/mfa", headers=bearer(token), status=200)
    assert answer.headers["Cache-Control"] == "no-store"
    assert_documented(answer, "/users/me/mfa", "GET")
    return answer.json


# -- enrolment and confirmation ---------------------------------------------------------------
def test_enrolment_answers_the_secret_its_uri_and_a_qr_code_once(app, token, db):
    answer = app.post("/users/me/mfa/totp", headers=bearer(token), status=201)
    assert_documented(answer, "/users/me/mfa/totp", "POST")
    assert answer.headers["Cache-Control"] == "no-store"
    assert set(answer.json) == {"secret", "otpauth_uri", "qr_svg"}
    secret = answer.json["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)  # 160 bits of base32
    assert answer.json["otpauth_uri"] == pyotp.TOTP(secret).provisioning_uri(
        name="alice", issuer_name="tokenauth"
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.json["otpauth_uri"]).query)
    assert query == {"secret": [secret], "issuer": ["tokenauth"]}  # 6 digits, 30 s, SHA-1
    assert answer.json["qr_svg"].startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert answer.json["qr_svg"].endswith("</svg>")
    # Pending: not a factor yet, and the login stays one step.
    assert status_of(app, token) == {"totp": False, "recovery_codes_left": 0, "passkeys": []}
    assert login(app, "alice").status_int == 200
    # Stored sealed: the database never holds the secret.
    stored = db["users"].find_one({"username": "alice"})
    assert secret not in str(stored)
    assert set(stored["totp_pending"]) == {"secret", "created_at"}


def test_confirm_activates_the_factor_and_answers_ten_recovery_codes(app, token, clock, db):
    secret = enrol(app, token)
    answer = app.post_json(
        "/users/me/mfa/totp/confirm", {"code": code_at(secret, clock)}, headers=bearer(token)
    )
    assert answer.status_int == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert_documented(answer, "/users/me/mfa/totp/confirm", "POST")
    codes = answer.json["recovery_codes"]
    assert len(codes) == 10 == len(set(codes))
    assert all(re.fullmatch(RECOVERY_CODE, code) for code in codes)
    assert status_of(app, token) == {"totp": True, "recovery_codes_left": 10, "passkeys": []}
    stored = db["users"].find_one({"username": "alice"})
    assert "totp_pending" not in stored
    assert not any(mfa.normalize_recovery_code(code) in str(stored) for code in codes)
    assert not any(code in str(stored) for code in codes)
    events = app.get("/users/me/events", headers=bearer(token)).json["items"]
    assert events[0]["event"] == "totp_enabled"


def test_a_wrong_confirmation_code_is_422_and_changes_nothing(app, token, clock):
    secret = enrol(app, token)
    wrong = code_at(secret, clock, steps=3)
    answer = app.post_json(
        "/users/me/mfa/totp/confirm", {"code": wrong}, headers=bearer(token), status=422
    )
    assert answer.json["errors"] == [
        {"field": "code", "message": "is not the current code of the pending secret"}
    ]
    assert status_of(app, token)["totp"] is False
    # Still pending: the right code confirms it.
    app.post_json(
        "/users/me/mfa/totp/confirm",
        {"code": code_at(secret, clock)},
        headers=bearer(token),
        status=200,
    )


def test_confirming_without_a_pending_enrolment_is_409_naming_totp(app, token):
    answer = app.post_json(
        "/users/me/mfa/totp/confirm", {"code": "123456"}, headers=bearer(token), status=409
    )
    assert answer.json["errors"] == [
        {"field": "totp", "message": "has no pending enrolment: start one first"}
    ]
    assert_documented(answer, "/users/me/mfa/totp/confirm", "POST")


def test_a_new_enrolment_replaces_a_pending_one(app, token, clock):
    first = enrol(app, token)
    second = enrol(app, token)
    assert first != second
    app.post_json(
        "/users/me/mfa/totp/confirm",
        {"code": code_at(first, clock)},
        headers=bearer(token),
        status=422,
    )
    app.post_json(
        "/users/me/mfa/totp/confirm",
        {"code": code_at(second, clock)},
        headers=bearer(token),
        status=200,
    )


def test_a_second_enrolment_while_active_is_409_naming_totp(app, token, clock):
    secret, _ = enable_totp(app, token, clock)
    strong = mfa_login(app, secret, clock)["access_token"]
    answer = app.post("/users/me/mfa/totp", headers=bearer(strong), status=409)
    assert answer.json["errors"] == [
        {"field": "totp", "message": "is already active; remove it before enrolling another"}
    ]
    assert_documented(answer, "/users/me/mfa/totp", "POST")
    # The active factor is untouched.
    mfa_login(app, secret, clock)


# -- the window: one step either side, and each code once -------------------------------------
def test_the_previous_and_the_next_step_are_accepted(app, token, clock):
    secret, _ = enable_totp(app, token, clock)
    clock.advance(STEP)  # two steps past the confirming one
    mfa_grant(app, mfa_token(app), otp=code_at(secret, clock, steps=-1))
    clock.advance(2 * STEP)
    mfa_grant(app, mfa_token(app), otp=code_at(secret, clock, steps=1))


def test_two_steps_away_either_side_is_refused(app, token, clock):
    secret, _ = enable_totp(app, token, clock)
    clock.advance(2 * STEP)  # three steps past the confirming one
    pending = mfa_token(app)
    for steps in (-2, 2):
        answer = mfa_grant(app, pending, otp=code_at(secret, clock, steps=steps), status=400)
        assert answer.json == {
            "error": "invalid_grant",
            "error_description": "The otp is incorrect",
        }
    # The first second of a step takes its code (the clock is 5 s into the step).
    clock.advance(-5)
    mfa_grant(app, pending, otp=code_at(secret, clock))


def test_a_code_is_accepted_once(app, token, clock):
    secret, _ = enable_totp(app, token, clock)
    code = code_at(secret, clock)
    mfa_grant(app, mfa_token(app), otp=code)
    answer = mfa_grant(app, mfa_token(app), otp=code, status=400)
    assert answer.json == {"error": "invalid_grant", "error_description": "The otp is incorrect"}
    # Nor is an older step's code once a later one was used (RFC 6238 §5.2).
    later = code_at(secret, clock, steps=1)
    mfa_grant(app, mfa_token(app), otp=later)
    mfa_grant(app, mfa_token(app), otp=code_at(secret, clock), status=400)


def test_the_confirming_code_cannot_log_in(app, token, clock):
    secret = enrol(app, token)
    code = code_at(secret, clock)
    app.post_json("/users/me/mfa/totp/confirm", {"code": code}, headers=bearer(token))
    mfa_grant(app, mfa_token(app), otp=code, status=400)


# Fullwidth digits are digits to str.isdigit(), not to an authenticator app.
@pytest.mark.parametrize(
    "code", ["12345", "1234567", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16", ""]
)
def test_malformed_codes_are_wrong_codes(app, token, clock, code):
    secret, _ = enable_totp(app, token, clock)
    answer = mfa_grant(app, mfa_token(app), otp=code, status=400)
    expected = "otp, recovery_code" if code == "" else "The otp is incorrect"
    assert expected in answer.json["error_description"]
    mfa_grant(app, mfa_token(app), otp=code_at(secret, clock))


# -- storage ---------------------------------------------------------------------------------
def test_the_secret_is_sealed_with_a_data_key_bound_to_its_user(app, token, clock, db, make_config):
    secret, _ = enable_totp(app, token, clock)
    stored = db["users"].find_one({"username": "alice"})
    assert secret not in str(stored)
    (key_file,) = make_config().keys_dir.glob("*.aesgcm")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # Copied onto another account, the sealed secret does not open: bob's login fails.
    register(app, "bob")
    bob_token = login(app, "bob").json["access_token"]
    enable_totp(app, bob_token, clock)
    db["users"].update_one({"username": "bob"}, {"$set": {"totp.secret": stored["totp"]["secret"]}})
    mfa_grant(app, mfa_token(app, "bob"), otp=code_at(secret, clock), status=400)


# -- removal --------------------------------------------------------------------------------
def test_removing_needs_a_second_factor_and_takes_the_recovery_codes(app, token, clock):
    secret, _ = enable_totp(app, token, clock)
    # The password-only token is fresh, but the account now has a factor.
    refused = app.delete("/users/me/mfa/totp", headers=bearer(token), status=401)
    assert refused.headers["WWW-Authenticate"] == (
        'Bearer realm="tokenauth", error="insufficient_user_authentication", '
        'error_description="This operation needs a sign-in with a second factor; sign in '
        'again", max_age=600, acr_values="aal2"'
    )
    assert_documented(refused, "/users/me/mfa/totp", "DELETE")
    strong = mfa_login(app, secret, clock)["access_token"]
    answer = app.delete("/users/me/mfa/totp", headers=bearer(strong), status=204)
    assert_documented(answer, "/users/me/mfa/totp", "DELETE")
    assert status_of(app, strong) == {"totp": False, "recovery_codes_left": 0, "passkeys": []}
    # One step again; the codes went with the factor.
    assert login(app, "alice").status_int == 200
    events = [e["event"] for e in app.get("/users/me/events", headers=bearer(strong)).json["items"]]
    assert "totp_removed" in events


def test_removing_without_a_factor_is_404(app, token):
    answer = app.delete("/users/me/mfa/totp", headers=bearer(token), status=404)
    assert_documented(answer, "/users/me/mfa/totp", "DELETE")


# -- recovery codes -------------------------------------------------------------------------
def test_new_recovery_codes_replace_the_old_ones(app, token, clock):
    secret, old = enable_totp(app, token, clock)
    refused = app.post("/users/me/mfa/recovery-codes", headers=bearer(token), status=401)
    assert 'acr_values="aal2"' in refused.headers["WWW-Authenticate"]
    strong = mfa_login(app, secret, clock)["access_token"]
    answer = app.post("/users/me/mfa/recovery-codes", headers=bearer(strong), status=200)
    assert answer.headers["Cache-Control"] == "no-store"
    assert_documented(answer, "/users/me/mfa/recovery-codes", "POST")
    new = answer.json["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    mfa_grant(app, mfa_token(app), recovery_code=old[0], status=400)
    assert mfa_grant(app, mfa_token(app), recovery_code=new[0]).json["recovery_codes_left"] == 9


def test_recovery_codes_need_a_factor(app, token):
    answer = app.post("/users/me/mfa/recovery-codes", headers=bearer(token), status=409)
    assert answer.json["errors"] == [
        {"field": "recovery_codes", "message": "need a second factor first (TOTP or a passkey)"}
    ]


def test_each_recovery_code_works_once_and_the_answer_counts_them(app, token, clock):
    _, codes = enable_totp(app, token, clock)
    first = mfa_grant(app, mfa_token(app), recovery_code=codes[0])
    assert first.json["recovery_codes_left"] == 9
    claims = jwt.decode(first.json["access_token"], options={"verify_signature": False})
    assert (claims["amr"], claims["acr"]) == (["pwd", "otp", "mfa"], "aal2")
    again = mfa_grant(app, mfa_token(app), recovery_code=codes[0], status=400)
    assert again.json == {
        "error": "invalid_grant",
        "error_description": "The recovery_code is incorrect",
    }
    # Case, spaces and hyphens do not matter.
    typed = codes[1].upper().replace("-", " ")
    assert mfa_grant(app, mfa_token(app), recovery_code=typed).json["recovery_codes_left"] == 8
    strong = first.json["access_token"]
    assert status_of(app, strong)["recovery_codes_left"] == 8
    events = [e["event"] for e in app.get("/users/me/events", headers=bearer(strong)).json["items"]]
    assert events.count("recovery_code_used") == 2


def test_the_last_recovery_code_leaves_none(app, token, clock, db):
    _, codes = enable_totp(app, token, clock)
    for left, code in zip(range(9, -1, -1), codes, strict=True):
        assert (
            mfa_grant(app, mfa_token(app), recovery_code=code).json["recovery_codes_left"] == left
        )
    # TOTP still stands; recovery codes are no longer offered.
    assert login(app, "alice", PASSWORD, status=403).json["mfa_methods"] == ["otp"]


def test_deleting_the_account_removes_its_factors_and_logins_in_flight(app, token, clock, db):
    secret, _ = enable_totp(app, token, clock)
    mfa_token(app)  # a login waiting for its second step
    strong = mfa_login(app, secret, clock)["access_token"]
    app.delete_json("/users/me", {"current_password": PASSWORD}, headers=bearer(strong), status=204)
    assert db["users"].count_documents({}) == 0
    assert db["mfa_attempts"].count_documents({}) == 0
