"""Mail that is real and not lost: the outbox, the sender, SMTP with STARTTLS, the Maildir."""

from __future__ import annotations

import re
import smtplib
import threading
import time

import pytest
import requests
from helpers import PASSWORD
from mailserver import PlainSmtpServer, code_in
from processes import run_cli, wait_until

from mail import MaildirTransport, Sender, SmtpTransport

TIMEOUT = 10


def register(app, username: str, email: str):
    """POST /users with an address."""
    return app.post_json("/users", {"username": username, "password": PASSWORD, "email": email})


def test_the_sender_delivers_over_starttls_with_login_once(make_app, make_config, smtp_server, db):
    app = make_app(make_config(smtp_url=smtp_server.url))
    register(app, "alice", "alice@example.org")
    sender = app.app.components.sender
    assert sender.run_once() == 1
    assert sender.run_once() == 0
    [message] = smtp_server.wait_for("alice@example.org")
    assert message["Subject"] == "tokenauth: confirm your email address"
    assert len(code_in(message)) == 8
    [doc] = db.outbox.find({})
    assert doc["state"] == "sent" and "message" not in doc
    assert len(smtp_server.messages_to("alice@example.org")) == 1


def test_smtps_delivers_over_implicit_tls_with_login(smtp_server):
    smtp_server.stop()
    smtp_server.start(implicit_tls=True)
    url = smtp_server.url.replace("smtp://", "smtps://")
    SmtpTransport(url).deliver(
        "auth@example.org", "alice@example.org", b"Subject: over smtps\r\n\r\nhello\r\n"
    )
    [message] = smtp_server.wait_for("alice@example.org")
    assert message["Subject"] == "over smtps"


def test_an_untrusted_certificate_is_refused_and_the_mail_waits(
    make_app, make_config, smtp_server, db, monkeypatch
):
    app = make_app(make_config(smtp_url=smtp_server.url))
    register(app, "alice", "alice@example.org")
    monkeypatch.delenv("SSL_CERT_FILE")
    sender = app.app.components.sender
    assert sender.run_once() == 0
    [doc] = db.outbox.find({})
    assert (doc["state"], doc["attempts"], doc["last_error"]) == (
        "pending",
        1,
        "SSLCertVerificationError",
    )
    assert smtp_server.messages_to("alice@example.org") == []


def test_credentials_are_never_sent_without_starttls(smtp_server):
    plain = PlainSmtpServer()
    try:
        transport = SmtpTransport(f"smtp://mailer:smtp-secret-9d1f@127.0.0.1:{plain.port}")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            transport.deliver("a@example.org", "b@example.org", b"Subject: x\r\n\r\nx\r\n")
        assert plain.received == []
    finally:
        plain.stop()


def test_two_senders_on_one_database_send_each_message_once(make_app, make_config, smtp_server, db):
    app = make_app(make_config(smtp_url=smtp_server.url))
    addresses = [f"user{i}@example.org" for i in range(12)]
    for i, address in enumerate(addresses):
        register(app, f"user{i}", address)
    store = app.app.components.store
    senders = [Sender(store, SmtpTransport(smtp_server.url)) for _ in range(3)]
    threads = [threading.Thread(target=s.run_once) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for address in addresses:
        assert len(smtp_server.messages_to(address)) == 1, address
    assert db.outbox.count_documents({"state": "sent"}) == 12


def test_without_smtp_mail_goes_to_the_maildir_and_the_cli_shows_it(
    make_app, make_config, mongo_uri, db_name, tmp_path
):
    config = make_config()
    app = make_app(config)
    register(app, "alice", "alice@example.org")
    environ = {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(config.data_dir),
        "TOKENAUTH_KEYS_DIR": str(config.keys_dir),
    }
    status = run_cli(["mail", "--status"], environ)
    assert (status.returncode, status.stderr) == (0, b"")
    assert status.stdout.decode().startswith("outbox depth 1, oldest ")
    assert app.app.components.sender.run_once() == 1
    assert isinstance(app.app.components.sender.transport, MaildirTransport)
    shown = run_cli(["mail"], environ)
    assert shown.returncode == 0
    text = shown.stdout.decode()
    assert "To: alice@example.org" in text
    assert "Subject: tokenauth: confirm your email address" in text
    code = next(line for line in text.splitlines() if line.isdigit() and len(line) == 8)
    assert f"#/verify-email?code={code}" in text
    assert PASSWORD not in text
    status = run_cli(["mail", "--status"], environ)
    assert status.stdout.decode() == "outbox depth 0, oldest 0 s\n"


def test_registration_through_gunicorn_mails_a_code_that_verifies(gunicorn_server, smtp_server):
    base = gunicorn_server({"TOKENAUTH_SMTP_URL": smtp_server.url})
    created = requests.post(
        f"{base}/users",
        json={"username": "alice", "password": PASSWORD, "email": "alice@example.org"},
        timeout=TIMEOUT,
    )
    assert created.status_code == 201
    [message] = smtp_server.wait_for("alice@example.org")
    token = requests.post(
        f"{base}/auth/token",
        json={"username": "alice", "password": PASSWORD},
        timeout=TIMEOUT,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    verified = requests.post(
        f"{base}/users/me/email/verify",
        json={"code": code_in(message)},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert verified.status_code == 204
    me = requests.get(f"{base}/users/me", headers=headers, timeout=TIMEOUT).json()
    assert me["email_verified"] is True


def http_register(base: str, username: str, address: str | None) -> requests.Response:
    """POST /users over HTTP, with an address when given."""
    body = {"username": username, "password": PASSWORD}
    if address:
        body["email"] = address
    return requests.post(f"{base}/users", json=body, timeout=TIMEOUT)


def http_login(base: str, username: str, password: str = PASSWORD) -> requests.Response:
    """The password grant over HTTP."""
    body = {"username": username, "password": password}
    return requests.post(f"{base}/auth/token", json=body, timeout=TIMEOUT)


def verified_over_http(base: str, smtp_server, username: str, address: str) -> dict:
    """Register and verify through the service and the SMTP server; the bearer headers."""
    assert http_register(base, username, address).status_code == 201
    [message] = smtp_server.wait_for(address)
    headers = {"Authorization": f"Bearer {http_login(base, username).json()['access_token']}"}
    verified = requests.post(
        f"{base}/users/me/email/verify",
        json={"code": code_in(message)},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert verified.status_code == 204
    return headers


def reset_mails(smtp_server, address: str) -> list:
    """The reset mails the SMTP server accepted for the address."""
    subject = "tokenauth: reset your password"
    return [m for m in smtp_server.messages_to(address) if m["Subject"] == subject]


def test_an_smtp_outage_while_resets_are_asked_delays_mail_and_loses_none(
    gunicorn_server, smtp_server, mongo_uri, db_name, tmp_path, db
):
    base = gunicorn_server({"TOKENAUTH_SMTP_URL": smtp_server.url})
    users = [(f"user{i}", f"user{i}@example.org") for i in range(4)]
    for username, address in users:
        verified_over_http(base, smtp_server, username, address)
    smtp_server.stop()
    for username, _ in users:
        asked = requests.post(
            f"{base}/auth/password-reset", json={"username": username}, timeout=TIMEOUT
        )
        assert (asked.status_code, asked.json()) == (202, {})
    assert requests.get(f"{base}/health", timeout=TIMEOUT).json()["status"] == "ok"
    wait_until(
        lambda: db.outbox.count_documents({"attempts": {"$gte": 1}}) >= 1,
        what="a failed delivery attempt",
    )
    environ = {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
    }
    status = run_cli(["mail", "--status"], environ)
    assert status.stdout.decode().startswith("outbox depth 4, oldest ")
    smtp_server.start()
    wait_until(
        lambda: all(reset_mails(smtp_server, address) for _, address in users),
        timeout=90,
        what="every reset mail after the outage",
    )
    time.sleep(3)  # a second delivery, if there were one, would have come by now
    for _, address in users:
        assert len(reset_mails(smtp_server, address)) == 1, address
    log = next(tmp_path.glob("gunicorn-*.log")).read_text()
    assert "mail delivery failed: ConnectionRefusedError; outbox depth" in log


def test_a_reset_through_gunicorn_arrives_works_once_and_ends_every_session(
    gunicorn_server, smtp_server
):
    base = gunicorn_server({"TOKENAUTH_SMTP_URL": smtp_server.url})
    headers = verified_over_http(base, smtp_server, "alice", "alice@example.org")
    http_register(base, "bob", "bob@example.org")  # never verified
    http_register(base, "carol", None)
    answers = [
        requests.post(f"{base}/auth/password-reset", json=body, timeout=TIMEOUT)
        for body in (
            {"username": "alice"},
            {"username": "nobody"},
            {"username": "bob"},
            {"email": "bob@example.org"},
            {"username": "carol"},
            {"email": "nobody@example.org"},
        )
    ]
    assert {(a.status_code, a.content) for a in answers} == {(202, b"{}")}
    smtp_server.wait_for("alice@example.org", count=2)
    [message] = reset_mails(smtp_server, "alice@example.org")
    html = message.get_body(("html",)).get_content()
    token = re.search(r"http://127\.0\.0\.1:8000/#/reset\?token=([A-Za-z0-9_-]+)", html)[1]
    assert re.search(rf"^{token}\r?$", message.get_body(("plain",)).get_content(), re.M)
    new_password = "a-completely-new-passphrase-77"
    done = requests.post(
        f"{base}/auth/password-reset/confirm",
        json={"token": token, "new_password": new_password},
        timeout=TIMEOUT,
    )
    ended_at = time.monotonic()
    assert (done.status_code, done.content) == (204, b"")
    # Every worker stops the old access token within 2 s (the contract's bound).
    time.sleep(max(0.0, ended_at + 2.0 - time.monotonic()))
    for _ in range(8):  # every worker and thread, not just the one that answered
        assert requests.get(f"{base}/users/me", headers=headers, timeout=TIMEOUT).status_code == 401
    again = requests.post(
        f"{base}/auth/password-reset/confirm",
        json={"token": token, "new_password": "yet-another-new-passphrase-88"},
        timeout=TIMEOUT,
    )
    assert again.status_code == 400
    assert again.headers["Content-Type"] == "application/problem+json"
    assert http_login(base, "alice").status_code == 400
    assert http_login(base, "alice", new_password).status_code == 200
    subject = "tokenauth: your password was changed"
    notice = smtp_server.wait_for("alice@example.org", count=3)[-1]
    assert notice["Subject"] == subject
    time.sleep(2)  # what the others could have been sent would have come by now
    assert smtp_server.messages_to("nobody@example.org") == []
    assert [m["Subject"] for m in smtp_server.messages_to("bob@example.org")] == [
        "tokenauth: confirm your email address"
    ]
    assert len(smtp_server.received) == 4  # alice: code, reset, notice; bob: his code


def test_two_gunicorn_instances_deliver_each_mail_once(gunicorn_server, smtp_server, db):
    environ = {"TOKENAUTH_SMTP_URL": smtp_server.url}
    bases = [gunicorn_server(environ), gunicorn_server(environ)]
    addresses = [f"user{i}@example.org" for i in range(16)]
    for i, address in enumerate(addresses):
        answer = requests.post(
            f"{bases[i % 2]}/users",
            json={"username": f"user{i}", "password": PASSWORD, "email": address},
            timeout=TIMEOUT,
        )
        assert answer.status_code == 201
    for address in addresses:
        smtp_server.wait_for(address, timeout=60)
    time.sleep(3)
    for address in addresses:
        assert len(smtp_server.messages_to(address)) == 1, address
    assert db.outbox.count_documents({"state": "sent"}) == 16
