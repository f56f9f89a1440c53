"""Password reset: 202 for every account alike, a single-use secret mailed to a verified address."""

from __future__ import annotations

import email
import email.policy
import re
import statistics
import time

import pytest
from helpers import PASSWORD, bearer, login

NEW_PASSWORD = "a-completely-new-passphrase-77"
PROBLEM = "application/problem+json"
BAD_TOKEN = {
    "type": "about:blank",
    "title": "Bad Request",
    "status": 400,
    "detail": "This reset link or code is invalid, expired or already used; ask for a new one",
}


def messages(db, to: str, subject: str | None = None) -> list:
    """The messages kept in the outbox for this address (with this subject), oldest first."""
    found = []
    for doc in db.outbox.find({"to": to}).sort("created_at", 1):
        message = email.message_from_bytes(doc["message"], policy=email.policy.default)
        if subject is None or message["Subject"] == f"tokenauth: {subject}":
            found.append(message)
    return found


def verified_user(app, db, username: str = "alice", address: str = "alice@example.org") -> dict:
    """Register a user with an address and verify it; its access token's headers."""
    app.post_json("/users", {"username": username, "password": PASSWORD, "email": address})
    text = messages(db, address)[0].get_body(("plain",)).get_content()
    code = re.search(r"^(\d{8})\r?$", text, re.MULTILINE).group(1)
    headers = bearer(login(app, username).json["access_token"])
    app.post_json("/users/me/email/verify", {"code": code}, headers=headers, status=204)
    return headers


def token_in(message) -> str:
    """The reset secret of a reset mail (its link's token)."""
    html = message.get_body(("html",)).get_content()
    return re.search(r"#/reset\?token=([A-Za-z0-9_-]+)", html).group(1)


def ask(app, **body):
    """POST /auth/password-reset."""
    return app.post_json("/auth/password-reset", body, expect_errors=True)


def confirm(app, token: str, new_password: str = NEW_PASSWORD):
    """POST /auth/password-reset/confirm."""
    return app.post_json(
        "/auth/password-reset/confirm",
        {"token": token, "new_password": new_password},
        expect_errors=True,
    )


def answer(response) -> tuple:
    """Everything a client could compare, the Date aside."""
    headers = sorted((k.lower(), v) for k, v in response.headerlist if k.lower() != "date")
    return response.status_int, headers, response.body


def test_a_reset_mails_a_link_and_code_that_work_once_and_end_every_session(app, db):
    headers = verified_user(app, db)
    refresh = login(app, "alice").json["refresh_token"]
    asked = ask(app, username="alice")
    assert (asked.status_int, asked.json) == (202, {})
    [message] = messages(db, "alice@example.org", "reset your password")
    token = token_in(message)
    text = message.get_body(("plain",)).get_content()
    assert f"http://127.0.0.1:8000/#/reset?token={token}" in text
    assert re.search(rf"^{token}\r?$", text, re.MULTILINE)
    assert len(token) >= 43  # 256 bits, base64url
    assert PASSWORD not in message.as_string()
    assert db.resets.count_documents({"_id": token}) == 0  # only its hash is kept
    done = confirm(app, token)
    assert (done.status_int, done.body) == (204, b"")
    assert "refresh_token" not in done.text  # not logged in
    assert app.get("/users/me", headers=headers, expect_errors=True).status_int == 401
    stale = app.post_json(
        "/auth/token",
        {"grant_type": "refresh_token", "refresh_token": refresh},
        expect_errors=True,
    )
    assert stale.status_int == 400
    assert login(app, "alice", expect_errors=True).status_int == 400
    assert login(app, "alice", NEW_PASSWORD).status_int == 200
    again = confirm(app, token, "yet-another-new-passphrase-88")
    assert again.status_int == 400
    assert again.content_type == PROBLEM
    assert again.json == BAD_TOKEN
    [notice] = messages(db, "alice@example.org", "your password was changed")
    assert NEW_PASSWORD not in notice.as_string() and token not in notice.as_string()
    kept = db.events.find_one({"event": "password_reset"})
    assert kept is not None


def test_a_reset_by_email_ignores_case(app, db):
    verified_user(app, db)
    assert ask(app, email="ALICE@Example.org").status_int == 202
    assert len(messages(db, "alice@example.org", "reset your password")) == 1


@pytest.mark.parametrize("who", ["nobody", "unverified", "no-email"])
def test_no_mail_for_an_unknown_or_unverified_account_and_the_same_answer(app, db, who):
    verified_user(app, db)
    app.post_json(
        "/users",
        {"username": "unverified", "password": PASSWORD, "email": "unverified@example.org"},
    )
    app.post_json("/users", {"username": "no-email", "password": PASSWORD})
    known = ask(app, username="alice")
    other = ask(app, username=who)
    assert answer(other) == answer(known)
    assert messages(db, "unverified@example.org", "reset your password") == []
    resets = [m for m in db.outbox.find({"state": "pending"})]
    subjects = [
        email.message_from_bytes(d["message"], policy=email.policy.default)["Subject"]
        for d in resets
    ]
    assert subjects.count("tokenauth: reset your password") == 1


def test_an_expired_token_is_refused(make_app, clock, db):
    app = make_app(clock=clock)
    verified_user(app, db)
    ask(app, username="alice")
    token = token_in(messages(db, "alice@example.org", "reset your password")[0])
    clock.advance(1801)
    late = confirm(app, token)
    assert (late.status_int, late.json) == (400, BAD_TOKEN)


def test_a_password_change_after_the_request_voids_the_token(app, db):
    headers = verified_user(app, db)
    ask(app, username="alice")
    token = token_in(messages(db, "alice@example.org", "reset your password")[0])
    app.put_json(
        "/users/me/password",
        {"current_password": PASSWORD, "new_password": "changed-in-the-meantime-42"},
        headers=headers,
        status=204,
    )
    refused = confirm(app, token)
    assert (refused.status_int, refused.json) == (400, BAD_TOKEN)
    assert login(app, "alice", "changed-in-the-meantime-42").status_int == 200


def test_a_weak_new_password_is_422_and_keeps_the_token(app, db):
    verified_user(app, db)
    ask(app, username="alice")
    token = token_in(messages(db, "alice@example.org", "reset your password")[0])
    weak = confirm(app, token, "short")
    assert weak.status_int == 422
    assert [e["field"] for e in weak.json["errors"]] == ["new_password"]
    assert confirm(app, token).status_int == 204


def test_an_unknown_token_is_400(app):
    refused = confirm(app, "x" * 43)
    assert (refused.status_int, refused.json) == (400, BAD_TOKEN)


def test_requests_are_limited_per_address_with_429(app):
    statuses = [ask(app, username=f"user{i}").status_int for i in range(21)]
    assert statuses == [202] * 20 + [429]
    limited = ask(app, username="someone")
    assert limited.content_type == PROBLEM
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600


def test_past_the_account_limit_still_202_and_no_mail(make_app, db):
    app = make_app()
    verified_user(app, db)
    statuses = [
        app.post_json(
            "/auth/password-reset",
            {"username": "alice"},
            extra_environ={"REMOTE_ADDR": f"192.0.2.{i + 20}"},
        ).status_int
        for i in range(7)
    ]
    assert statuses == [202] * 7
    assert len(messages(db, "alice@example.org", "reset your password")) == 5


def test_known_and_unknown_accounts_take_comparable_time(app, db):
    verified_user(app, db)
    # Every request for alice mails her (the per-account limit out of the way): the real path.
    app.app.components.resets.ACCOUNT_LIMIT = 1000
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    # Each request from its own address: the per-address limit stays out of the way.
    for i in range(12):
        for kind, name in (("known", "alice"), ("unknown", "nobody")):
            environ = {"REMOTE_ADDR": f"198.51.100.{2 * i + (kind == 'known')}"}
            started = time.perf_counter()
            app.post_json("/auth/password-reset", {"username": name}, extra_environ=environ)
            timings[kind].append(time.perf_counter() - started)
    known, unknown = (statistics.median(timings[k][2:]) for k in ("known", "unknown"))
    print(f"reset medians: known verified {known * 1000:.2f} ms, unknown {unknown * 1000:.2f} ms")
    assert max(known, unknown) <= 2 * min(known, unknown), (known, unknown)
    assert len(messages(db, "alice@example.org", "reset your password")) == 12


def test_a_disabled_account_gets_no_reset_mail(app, db):
    verified_user(app, db)
    db.users.update_one({"username": "alice"}, {"$set": {"disabled": True}})
    assert (ask(app, username="alice").status_int, ask(app, username="nobody").status_int) == (
        202,
        202,
    )
    assert messages(db, "alice@example.org", "reset your password") == []
