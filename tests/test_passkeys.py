"""Passkeys: registration ceremonies, the list, names, removal, limits, and configuration."""

from __future__ import annotations

import datetime as dt

import jwt
import pytest
from authenticator import SoftAuthenticator, b64url, unb64url
from helpers import PASSWORD, assert_documented, bearer, login, register
from mfa_helpers import enable_totp, step_clock
from passkey_helpers import (
    ORIGIN,
    RP_ID,
    WRONG_PASSKEY,
    add_passkey,
    creation_options,
    finish_registration,
    password_then_passkey,
    passwordless,
)
from test_step_up import STALE, WEAK, assert_step_up
from test_ttl_indexes import run_ttl_pass

from config import Config
from errors import ConfigError

NO_CHALLENGE = [
    {
        "field": "challenge_id",
        "message": "is unknown, expired or already used: ask for new options",
    }
]


@pytest.fixture
def clock():
    """The app's clock, 5 s into a TOTP step."""
    return step_clock()


@pytest.fixture
def app(make_app, clock):
    """The service on that clock."""
    return make_app(clock=clock)


@pytest.fixture
def token(app) -> str:
    """alice, just signed in with her password (no second factor yet)."""
    register(app, "alice")
    return login(app, "alice").json["access_token"]


@pytest.fixture
def key() -> SoftAuthenticator:
    """A device-bound authenticator that verifies its user, on the service's origin."""
    return SoftAuthenticator(ORIGIN)


def errors_of(answer) -> list[dict]:
    assert answer.status_int == 422
    assert answer.content_type == "application/problem+json"
    return answer.json["errors"]


def stored_passkeys(db, username: str = "alice") -> list[dict]:
    return db["users"].find_one({"username": username}).get("passkeys", [])


# -- creation options ------------------------------------------------------------------------
def test_creation_options_ask_for_a_discoverable_credential_of_this_site(app, token):
    answer = app.post("/users/me/passkeys/options", headers=bearer(token), status=200)
    assert answer.headers["Cache-Control"] == "no-store"
    assert_documented(answer, "/users/me/passkeys/options", "POST")
    options = answer.json
    assert options["rp"] == {"id": RP_ID, "name": "tokenauth"}
    assert options["user"]["name"] == options["user"]["displayName"] == "alice"
    assert len(unb64url(options["user"]["id"])) == 32  # random, not the account id
    assert options["authenticatorSelection"] == {
        "residentKey": "required",
        "requireResidentKey": True,
        "userVerification": "preferred",
    }
    assert options["excludeCredentials"] == []
    assert options["attestation"] == "none"
    assert options["timeout"] == 300_000
    assert {p["alg"] for p in options["pubKeyCredParams"]} == {-8, -7, -257}
    assert options["challenge_id"] == options["challenge"]
    assert len(unb64url(options["challenge"])) == 32


def test_creation_options_exclude_the_accounts_passkeys_and_keep_its_user_handle(app, token, key):
    first = creation_options(app, token)
    add_passkey(app, token, key)
    strong = password_then_passkey(app, key).json["access_token"]
    again = creation_options(app, strong)
    assert again["user"]["id"] == first["user"]["id"]
    assert again["excludeCredentials"] == [
        {
            "id": b64url(key.credentials[0].credential_id),
            "type": "public-key",
            "transports": ["internal"],
        }
    ]
    assert again["challenge"] != first["challenge"]


def test_the_challenge_is_kept_as_a_hash_for_five_minutes(app, token, db):
    options = creation_options(app, token)
    (stored,) = db["webauthn_challenges"].find()
    assert options["challenge"] not in str(stored)
    assert stored["purpose"] == "webauthn.create"
    assert stored["expires_at"] - stored["created_at"] == dt.timedelta(minutes=5)
    indexes = db["webauthn_challenges"].index_information().values()
    assert any(
        index["key"] == [("expires_at", 1)] and index.get("expireAfterSeconds") == 0
        for index in indexes
    )


def test_expired_challenges_are_removed_by_the_database(make_app, db):
    month_ago = step_clock()
    month_ago.advance(-30 * 86400)
    old = make_app(clock=month_ago)
    register(old, "alice")
    creation_options(old, login(old, "alice").json["access_token"])
    assert db["webauthn_challenges"].count_documents({}) == 1
    run_ttl_pass(db, dt.datetime.now(dt.UTC))
    assert db["webauthn_challenges"].count_documents({}) == 0


# -- finishing a registration ------------------------------------------------------------------
def test_a_registered_passkey_is_listed_and_becomes_a_factor(app, token, key, clock, db):
    options = creation_options(app, token)
    answer = finish_registration(app, token, key.create(options), options["challenge_id"])
    assert answer.status_int == 201
    assert answer.headers["Location"] == "/users/me/mfa"
    assert_documented(answer, "/users/me/passkeys", "POST")
    created = clock.now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    passkey = answer.json
    assert passkey == {
        "id": passkey["id"],
        "name": "Laptop",
        "created_at": created,
        "last_used_at": None,
    }
    status = app.get("/users/me/mfa", headers=bearer(token)).json
    assert status == {"totp": False, "recovery_codes_left": 0, "passkeys": [passkey]}
    mfa_required = login(app, "alice", status=403).json
    assert mfa_required["mfa_methods"] == ["passkey"]
    (stored,) = stored_passkeys(db)
    assert stored["credential_id"] == key.credentials[0].credential_id
    assert stored["sign_count"] == 0
    assert stored["backup_eligible"] is False
    events = [e["event"] for e in app.get("/users/me/events", headers=bearer(token)).json["items"]]
    assert events[0] == "passkey_added"


def test_the_public_key_and_credential_id_are_never_shown(app, token, key, db):
    add_passkey(app, token, key)
    (stored,) = stored_passkeys(db)
    shown = app.get("/users/me/mfa", headers=bearer(token)).text
    me = app.get("/users/me", headers=bearer(token)).text
    for secret in (b64url(stored["public_key"]), b64url(stored["credential_id"])):
        assert secret not in shown
        assert secret not in me


@pytest.mark.parametrize(
    ("forged", "reason"),
    [
        (
            {"origin": "https://evil.example"},
            'Unexpected client data origin "https://evil.example"',
        ),
        ({"rp_id": "evil.example"}, "Unexpected RP ID hash"),
        (
            {"challenge": b"another challenge of 32 bytes..."},
            "Client data challenge was not expected",
        ),
    ],
    ids=["origin", "rp-id", "challenge"],
)
def test_a_credential_of_another_origin_rp_or_challenge_is_refused(
    app, token, key, db, forged, reason
):
    options = creation_options(app, token)
    answer = finish_registration(
        app, token, key.create(options, **forged), options["challenge_id"], status=422
    )
    ((error),) = errors_of(answer)
    assert error["field"] == "credential"
    assert error["message"].startswith("is not a valid passkey for this site: " + reason)
    assert stored_passkeys(db) == []


def test_a_challenge_works_once(app, token, key, db):
    options = creation_options(app, token)
    finish_registration(app, token, key.create(options), options["challenge_id"], status=201)
    strong = password_then_passkey(app, key).json["access_token"]
    other = SoftAuthenticator(ORIGIN)
    again = finish_registration(
        app, strong, other.create(options), options["challenge_id"], status=422
    )
    assert errors_of(again) == NO_CHALLENGE
    assert len(stored_passkeys(db)) == 1


def test_a_failed_registration_spends_its_challenge(app, token, key):
    options = creation_options(app, token)
    wrong = key.create(options, origin="https://evil.example")
    finish_registration(app, token, wrong, options["challenge_id"], status=422)
    right = SoftAuthenticator(ORIGIN).create(options)
    again = finish_registration(app, token, right, options["challenge_id"], status=422)
    assert errors_of(again) == NO_CHALLENGE


def test_a_challenge_lives_five_minutes(app, token, key, clock):
    early, late = creation_options(app, token), creation_options(app, token)
    clock.advance(299)
    fresh = login(app, "alice").json["access_token"]  # step-up: a recent sign-in
    finish_registration(app, fresh, key.create(early), early["challenge_id"], status=201)
    clock.advance(1)
    fresh = login(app, "alice", status=403).json  # alice has a factor now
    assert fresh["mfa_methods"] == ["passkey"]
    strong = password_then_passkey(app, key).json["access_token"]
    other = SoftAuthenticator(ORIGIN)
    answer = finish_registration(app, strong, other.create(late), late["challenge_id"], status=422)
    assert errors_of(answer) == NO_CHALLENGE


def test_a_challenge_of_another_account_is_refused(app, token, key):
    register(app, "bob")
    bobs = login(app, "bob").json["access_token"]
    options = creation_options(app, bobs)
    answer = finish_registration(
        app, token, key.create(options), options["challenge_id"], status=422
    )
    assert errors_of(answer) == NO_CHALLENGE


def test_a_credential_belongs_to_one_account(app, token, key, db):
    add_passkey(app, token, key)
    register(app, "bob")
    bobs = login(app, "bob").json["access_token"]
    options = creation_options(app, bobs)
    taken = key.credentials[0].credential_id
    answer = finish_registration(
        app,
        bobs,
        SoftAuthenticator(ORIGIN).create(options, credential_id=taken),
        options["challenge_id"],
        status=409,
    )
    assert answer.json["errors"] == [{"field": "credential", "message": "is already registered"}]
    assert stored_passkeys(db, "bob") == []


def test_invalid_fields_are_all_named_and_nothing_changes(app, token, key, db):
    options = creation_options(app, token)
    body = {"credential": "not an object", "name": "   ", "challenge_id": 7, "extra": True}
    answer = app.post_json("/users/me/passkeys", body, headers=bearer(token), status=422)
    assert errors_of(answer) == [
        {"field": "challenge_id", "message": "must be of type string"},
        {"field": "credential", "message": "must be of type object"},
        {"field": "extra", "message": "is not an accepted field"},
        {"field": "name", "message": "must not be blank"},
    ]
    missing = app.post_json("/users/me/passkeys", {}, headers=bearer(token), status=422)
    assert {e["field"] for e in errors_of(missing)} == {"credential", "name", "challenge_id"}
    long_name = {"credential": {}, "name": "x" * 65, "challenge_id": options["challenge_id"]}
    too_long = app.post_json("/users/me/passkeys", long_name, headers=bearer(token), status=422)
    assert errors_of(too_long) == [{"field": "name", "message": "must be at most 64 characters"}]
    assert stored_passkeys(db) == []
    # The challenge was not spent by bodies refused before it was read.
    finish_registration(app, token, key.create(options), options["challenge_id"], status=201)


def test_registration_needs_a_recent_sign_in(app, token, key, clock):
    options = creation_options(app, token)
    clock.advance(601)
    assert_step_up(app.post("/users/me/passkeys/options", headers=bearer(token), status=401), STALE)
    late = finish_registration(app, token, key.create(options), options["challenge_id"], status=401)
    assert_step_up(late, STALE)


def test_an_account_with_a_factor_registers_with_it(app, token, clock):
    _secret, _ = enable_totp(app, token, clock)
    weak = login(app, "alice", status=403)  # the password alone no longer signs in
    assert weak.json["mfa_methods"] == ["otp", "recovery_code"]
    assert_step_up(app.post("/users/me/passkeys/options", headers=bearer(token), status=401), WEAK)


def test_an_account_has_at_most_20_passkeys(app, token, db):
    keys = [SoftAuthenticator(ORIGIN) for _ in range(21)]
    first = add_passkey(app, token, keys[0])
    strong = password_then_passkey(app, keys[0]).json["access_token"]
    for key in keys[1:20]:
        add_passkey(app, strong, key)
    assert len(app.get("/users/me/mfa", headers=bearer(strong)).json["passkeys"]) == 20
    full = app.post("/users/me/passkeys/options", headers=bearer(strong), status=409)
    limit = [{"field": "passkeys", "message": "are at most 20 per account: remove one first"}]
    assert full.json["errors"] == limit
    app.delete(f"/users/me/passkeys/{first['id']}", headers=bearer(strong), status=204)
    options = creation_options(app, strong)
    add_passkey(app, strong, keys[20])
    # Options asked for before the account filled up cannot pass the limit either.
    refused = finish_registration(
        app, strong, SoftAuthenticator(ORIGIN).create(options), options["challenge_id"], status=409
    )
    assert refused.json["errors"] == limit
    assert len(stored_passkeys(db)) == 20


# -- names and removal ---------------------------------------------------------------------------
def test_a_passkey_is_renamed(app, token, key):
    passkey = add_passkey(app, token, key)
    answer = app.patch_json(
        f"/users/me/passkeys/{passkey['id']}", {"name": " Work laptop "}, headers=bearer(token)
    )
    assert answer.status_int == 200
    assert_documented(answer, "/users/me/passkeys/{passkey_id}", "PATCH")
    assert answer.json == {**passkey, "name": "Work laptop"}
    assert app.get("/users/me/mfa", headers=bearer(token)).json["passkeys"] == [answer.json]
    blank = app.patch_json(
        f"/users/me/passkeys/{passkey['id']}", {"name": ""}, headers=bearer(token), status=422
    )
    assert errors_of(blank) == [{"field": "name", "message": "must not be empty"}]
    app.patch_json(
        "/users/me/passkeys/0123456789abcdef01234567",
        {"name": "x"},
        headers=bearer(token),
        status=404,
    )


def test_removing_a_passkey_needs_the_second_factor(app, token, key, db):
    passkey = add_passkey(app, token, key)
    # The token of the password alone, from before the passkey: too weak now.
    weak = app.delete(f"/users/me/passkeys/{passkey['id']}", headers=bearer(token), status=401)
    assert_step_up(weak, WEAK)
    strong = password_then_passkey(app, key).json["access_token"]
    answer = app.delete(f"/users/me/passkeys/{passkey['id']}", headers=bearer(strong))
    assert answer.status_int == 204
    assert_documented(answer, "/users/me/passkeys/{passkey_id}", "DELETE")
    assert stored_passkeys(db) == []
    login(app, "alice", status=200)  # no factor left: the password alone signs in
    events = [e["event"] for e in app.get("/users/me/events", headers=bearer(strong)).json["items"]]
    assert "passkey_removed" in events
    app.delete(f"/users/me/passkeys/{passkey['id']}", headers=bearer(strong), status=404)


def test_removing_the_last_factor_removes_the_recovery_codes(app, token, key, clock):
    add_passkey(app, token, key)
    strong = password_then_passkey(app, key).json["access_token"]
    codes = app.post("/users/me/mfa/recovery-codes", headers=bearer(strong), status=200).json
    assert len(codes["recovery_codes"]) == 10
    passkey = app.get("/users/me/mfa", headers=bearer(strong)).json["passkeys"][0]
    app.delete(f"/users/me/passkeys/{passkey['id']}", headers=bearer(strong), status=204)
    status = app.get("/users/me/mfa", headers=bearer(strong)).json
    assert status == {"totp": False, "recovery_codes_left": 0, "passkeys": []}


def test_an_operators_reset_removes_the_passkeys(app, token, key, db):
    add_passkey(app, token, key)
    user_id = jwt.decode(token, options={"verify_signature": False})["sub"]
    app.app.components.factors.remove_all(user_id)  # what `tokenauth remove-mfa` does
    assert stored_passkeys(db) == []
    login(app, "alice", status=200)
    assert passwordless(app, key, status=400).json == WRONG_PASSKEY


def test_deleting_the_account_removes_its_passkeys(app, token, key, db):
    add_passkey(app, token, key)
    strong = password_then_passkey(app, key).json["access_token"]
    creation_options(app, strong)  # a ceremony in flight goes too
    app.delete_json("/users/me", {"current_password": PASSWORD}, headers=bearer(strong), status=204)
    assert db["users"].count_documents({}) == 0
    assert db["webauthn_challenges"].count_documents({}) == 0
    assert passwordless(app, key, status=400).json == WRONG_PASSKEY
    # The credential is free again: the same authenticator can join a new account.
    register(app, "alice")
    fresh = login(app, "alice").json["access_token"]
    options = creation_options(app, fresh)
    again = SoftAuthenticator(ORIGIN).create(
        options, credential_id=key.credentials[0].credential_id
    )
    finish_registration(app, fresh, again, options["challenge_id"], status=201)


# -- configuration ------------------------------------------------------------------------------
def test_the_relying_party_comes_from_the_issuer_by_default():
    config = Config.from_env({"TOKENAUTH_ISSUER": "https://auth.example.org"})
    assert (config.webauthn_rp_id, config.webauthn_origins) == (
        "auth.example.org",
        ("https://auth.example.org",),
    )
    local = Config.from_env({})
    assert (local.webauthn_rp_id, local.webauthn_origins) == (RP_ID, (ORIGIN,))


def test_the_relying_party_and_origins_can_be_set():
    config = Config.from_env(
        {
            "TOKENAUTH_ISSUER": "https://auth.example.org",
            "TOKENAUTH_WEBAUTHN_RP_ID": "example.org",
            "TOKENAUTH_WEBAUTHN_ORIGINS": "https://example.org/, https://app.example.org:8443",
        }
    )
    assert config.webauthn_rp_id == "example.org"
    assert config.webauthn_origins == ("https://example.org", "https://app.example.org:8443")


@pytest.mark.parametrize(
    ("environ", "variable", "message"),
    [
        (
            {"TOKENAUTH_WEBAUTHN_RP_ID": "https://example.org"},
            "TOKENAUTH_WEBAUTHN_RP_ID",
            "not a lower-case host name: 'https://example.org'",
        ),
        (
            {"TOKENAUTH_WEBAUTHN_RP_ID": "example.org"},
            "TOKENAUTH_WEBAUTHN_ORIGINS",
            "not an origin (scheme://host[:port]) on example.org or under it: "
            "'http://127.0.0.1:8000'",
        ),
        (
            {"TOKENAUTH_WEBAUTHN_ORIGINS": "http://127.0.0.1:8000/path"},
            "TOKENAUTH_WEBAUTHN_ORIGINS",
            "not an origin (scheme://host[:port]) on 127.0.0.1 or under it: "
            "'http://127.0.0.1:8000/path'",
        ),
        (
            {"TOKENAUTH_WEBAUTHN_ORIGINS": "https://evil.example"},
            "TOKENAUTH_WEBAUTHN_ORIGINS",
            "not an origin (scheme://host[:port]) on 127.0.0.1 or under it: 'https://evil.example'",
        ),
    ],
    ids=["rp-id-url", "origin-outside-rp", "origin-path", "origin-elsewhere"],
)
def test_a_bad_relying_party_stops_start_up(environ, variable, message):
    with pytest.raises(ConfigError) as raised:
        Config.from_env(environ)
    assert str(raised.value) == f"{variable}: {message}"
