"""Email on the account: given at registration, changed with the password, verified by a code."""

from __future__ import annotations

import email
import email.policy
import re

import pytest
from helpers import PASSWORD, bearer, login

from config import Config
from errors import ConfigError

PROBLEM = "application/problem+json"


def register(app, username: str, email: str | None = None, **kwargs):
    """POST /users as JSON, with an address when given."""
    body = {"username": username, "password": PASSWORD}
    if email is not None:
        body["email"] = email
    return app.post_json("/users", body, **kwargs)


def outbox_messages(db, to: str) -> list[email.message.EmailMessage]:
    """The messages written to the outbox for this address, oldest first."""
    docs = db.outbox.find({"to": to}).sort("created_at", 1)
    return [email.message_from_bytes(d["message"], policy=email.policy.default) for d in docs]


def code_in(message) -> str:
    """The verification code in a message's plain text."""
    text = message.get_body(("plain",)).get_content()
    return re.search(r"^(\d{8})\r?$", text, re.MULTILINE).group(1)


def test_registration_with_an_email_shows_it_unverified_and_mails_a_code(app, db):
    created = register(app, "alice", email="Alice@Example.org")
    assert created.status_int == 201
    assert created.json["email"] == "Alice@Example.org"
    assert created.json["email_verified"] is False
    [message] = outbox_messages(db, "Alice@Example.org")
    assert message["Subject"] == "tokenauth: confirm your email address"
    assert message["From"] == "tokenauth@localhost"
    code = code_in(message)
    html = message.get_body(("html",)).get_content()
    assert f"http://127.0.0.1:8000/#/verify-email?code={code}" in html
    assert PASSWORD not in message.as_string()
    stored = db.users.find_one({"username": "alice"})
    assert stored["email_key"] == "alice@example.org"
    assert code not in str(stored)  # only its hash


def test_a_user_without_email_shows_no_email_fields(app):
    created = register(app, "bob")
    assert set(created.json) == {"id", "username", "roles", "created_at"}


def test_the_code_verifies_the_address_once(app, db):
    register(app, "alice", email="alice@example.org")
    code = code_in(outbox_messages(db, "alice@example.org")[0])
    headers = bearer(login(app, "alice").json["access_token"])
    verified = app.post_json("/users/me/email/verify", {"code": code}, headers=headers)
    assert verified.status_int == 204
    me = app.get("/users/me", headers=headers).json
    assert me["email"] == "alice@example.org" and me["email_verified"] is True
    again = app.post_json(
        "/users/me/email/verify", {"code": code}, headers=headers, expect_errors=True
    )
    assert again.status_int == 422
    assert again.content_type == PROBLEM
    assert again.json["errors"] == [{"field": "code", "message": "is incorrect or has expired"}]


def test_a_wrong_code_counts_as_a_failed_login_until_429(make_app, make_config, db):
    app = make_app(make_config(login_max_failures=3))
    register(app, "alice", email="alice@example.org")
    headers = bearer(login(app, "alice").json["access_token"])
    statuses = [
        app.post_json(
            "/users/me/email/verify", {"code": "00000000"}, headers=headers, expect_errors=True
        ).status_int
        for _ in range(4)
    ]
    assert statuses == [422, 422, 422, 429]
    code = code_in(outbox_messages(db, "alice@example.org")[0])
    blocked = app.post_json(
        "/users/me/email/verify", {"code": code}, headers=headers, expect_errors=True
    )
    assert blocked.status_int == 429
    assert int(blocked.headers["Retry-After"]) >= 1


def test_an_email_is_unique_without_regard_to_case(app):
    register(app, "alice", email="alice@example.org")
    taken = register(app, "bob", email="ALICE@example.org", expect_errors=True)
    assert taken.status_int == 409
    assert taken.content_type == PROBLEM
    assert taken.json["errors"] == [{"field": "email", "message": "is already taken"}]


def test_require_email_makes_it_a_required_field(make_app, make_config):
    app = make_app(make_config(require_email=True))
    assert app.get("/auth/policy", status=200).json["email_required"] is True
    refused = register(app, "alice", expect_errors=True)
    assert refused.status_int == 422
    assert refused.json["errors"] == [
        {"field": "email", "message": "is required (TOKENAUTH_REQUIRE_EMAIL)"}
    ]
    assert register(app, "alice", email="alice@example.org").status_int == 201


def test_a_malformed_email_is_422_naming_it(app):
    refused = register(app, "alice", email="not an address", expect_errors=True)
    assert refused.status_int == 422
    assert [e["field"] for e in refused.json["errors"]] == ["email"]


def test_changing_the_address_needs_the_password_and_tells_the_old_one(app, db):
    register(app, "alice", email="old@example.org")
    headers = bearer(login(app, "alice").json["access_token"])
    wrong = app.put_json(
        "/users/me/email",
        {"email": "new@example.org", "current_password": "not-the-password-at-all"},
        headers=headers,
        expect_errors=True,
    )
    assert wrong.status_int == 422
    assert wrong.json["errors"] == [{"field": "current_password", "message": "is incorrect"}]
    changed = app.put_json(
        "/users/me/email",
        {"email": "new@example.org", "current_password": PASSWORD},
        headers=headers,
    )
    assert changed.status_int == 202
    assert changed.json["email"] == "new@example.org"
    assert changed.json["email_verified"] is False
    [notice_old_code, notice] = outbox_messages(db, "old@example.org")
    assert notice["Subject"] == "tokenauth: your email address was changed"
    assert not re.search(r"^\d{8}\r?$", notice.get_body(("plain",)).get_content(), re.MULTILINE)
    [new_message] = outbox_messages(db, "new@example.org")
    old_code = code_in(notice_old_code)
    stale = app.post_json(
        "/users/me/email/verify", {"code": old_code}, headers=headers, expect_errors=True
    )
    assert stale.status_int == 422
    code = code_in(new_message)
    assert (
        app.post_json("/users/me/email/verify", {"code": code}, headers=headers).status_int == 204
    )
    assert app.get("/users/me", headers=headers).json["email_verified"] is True


def test_changing_to_a_taken_address_is_409(app):
    register(app, "alice", email="alice@example.org")
    register(app, "bob")
    headers = bearer(login(app, "bob").json["access_token"])
    taken = app.put_json(
        "/users/me/email",
        {"email": "Alice@example.org", "current_password": PASSWORD},
        headers=headers,
        expect_errors=True,
    )
    assert taken.status_int == 409
    assert taken.json["errors"] == [{"field": "email", "message": "is already taken"}]


def test_an_expired_code_does_not_verify(make_app, clock, db):
    app = make_app(clock=clock)
    register(app, "alice", email="alice@example.org")
    code = code_in(outbox_messages(db, "alice@example.org")[0])
    clock.advance(24 * 3600 + 1)
    headers = bearer(login(app, "alice").json["access_token"])
    late = app.post_json(
        "/users/me/email/verify", {"code": code}, headers=headers, expect_errors=True
    )
    assert late.status_int == 422


def test_the_mail_settings_are_read_and_checked():
    config = Config.from_env(
        {
            "TOKENAUTH_REQUIRE_EMAIL": "true",
            "TOKENAUTH_SMTP_URL": "smtps://mail.example.org",
            "TOKENAUTH_MAIL_FROM": "auth@example.org",
            "TOKENAUTH_SERVICE_NAME": "Example Auth",
            "TOKENAUTH_RESET_TTL": "600",
        }
    )
    assert config.require_email is True
    assert (config.smtp_url, config.mail_from) == ("smtps://mail.example.org", "auth@example.org")
    assert (config.service_name, config.reset_ttl) == ("Example Auth", 600)
    for name, value in (
        ("REQUIRE_EMAIL", "maybe"),
        ("SMTP_URL", "http://mail.example.org"),
        ("RESET_TTL", "0"),
    ):
        with pytest.raises(ConfigError) as raised:
            Config.from_env({f"TOKENAUTH_{name}": value})
        assert raised.value.variable == f"TOKENAUTH_{name}"
