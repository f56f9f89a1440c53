"""Schemathesis hooks for tests/test_schemathesis.py: an admin bearer token, fetched by login."""

from __future__ import annotations

import os
import urllib.parse

import requests
import schemathesis


@schemathesis.auth()
class AdminBearer:
    """Logs in as the admin the test created; logged in again whenever a 401 comes back."""

    def get(self, case, context) -> str:
        """A fresh access token (a logout or password change by the run revokes the last one)."""
        answer = requests.post(
            f"{os.environ['TOKENAUTH_ST_BASE_URL']}/auth/token",
            json={
                "grant_type": "password",
                "username": os.environ["TOKENAUTH_ST_USERNAME"],
                "password": os.environ["TOKENAUTH_ST_PASSWORD"],
            },
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["access_token"]

    def set(self, case, data: str, context) -> None:
        """Send it as a Bearer token."""
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


# gunicorn answers 414 to a request line over 4,094 bytes (`limit_request_line`) before the
# service sees it; such a query says nothing of the service, so the fuzzer keeps under it.
MAX_QUERY_BYTES = 3072


@schemathesis.hook
def filter_query(context, query) -> bool:
    """Keep generated queries that fit in a request line gunicorn accepts."""
    return len(urllib.parse.urlencode(query or {}, doseq=True)) <= MAX_QUERY_BYTES
