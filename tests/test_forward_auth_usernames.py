"""X-Auth-Username under real gunicorn: any registrable name, percent-encoded UTF-8 (RFC 8187)."""

from __future__ import annotations

import urllib.parse

import requests
from helpers import PASSWORD, bearer

# Registrable names, each with the header value a proxy must receive (ASCII unchanged).
USERNAMES = {
    "bob": "bob",
    "дмитрий": "%D0%B4%D0%BC%D0%B8%D1%82%D1%80%D0%B8%D0%B9",
    "山田太郎": "%E5%B1%B1%E7%94%B0%E5%A4%AA%E9%83%8E",
    "josé": "jos%C3%A9",
}


def test_verify_percent_encodes_unicode_usernames_under_gunicorn(gunicorn_server):
    # webtest does not apply gunicorn's header checks: only a real gunicorn shows the 500.
    base = gunicorn_server(args=("--workers", "1", "--threads", "4"))
    for username, encoded in USERNAMES.items():
        body = {"username": username, "password": PASSWORD}
        created = requests.post(f"{base}/users", json=body, timeout=10)
        assert created.status_code == 201, created.text
        answer = requests.post(f"{base}/auth/token", json=body, timeout=10)
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]

        verified = requests.get(f"{base}/auth/verify", headers=bearer(token), timeout=10)
        assert verified.status_code == 204, (username, verified.status_code)
        assert verified.headers["X-Auth-Username"] == encoded
        assert urllib.parse.unquote(encoded, errors="strict") == username
        assert verified.headers["X-Auth-Subject"] == created.json()["id"]
        assert verified.headers["X-Auth-Roles"] == "user"
        assert verified.content == b""
