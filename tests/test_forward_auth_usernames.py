"""X-Auth-Username under real gunicorn: any registrable name, percent-encoded UTF-8 (RFC 8187)."""

from __future__ import annotations

import urllib.parse

import requests
from helpers import PASSWORD, UNICODE_USERNAMES, bearer


def test_verify_percent_encodes_unicode_usernames_under_gunicorn(gunicorn_server):
    # webtest does not apply gunicorn's header checks: only a real gunicorn shows the 500.
    base = gunicorn_server(args=("--workers", "1", "--threads", "4"))
    for username, encoded in UNICODE_USERNAMES.items():
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
