"""An ordinary OAuth 2 client library (requests-oauthlib) works against the service unchanged."""

from __future__ import annotations

import time

import pytest
import requests
from helpers import PASSWORD
from oauthlib.oauth2 import InvalidGrantError, LegacyApplicationClient
from requests_oauthlib import OAuth2Session

CLIENT_ID = "tokenauth-test"


@pytest.fixture
def base(gunicorn_server, monkeypatch) -> str:
    """A real service with alice registered; oauthlib allowed plain http on loopback."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    # No reuse interval: a retired refresh token is reuse at once.
    url = gunicorn_server({"TOKENAUTH_REFRESH_REUSE_INTERVAL": "0"})
    registered = requests.post(
        f"{url}/users", json={"username": "alice", "password": PASSWORD}, timeout=10
    )
    assert registered.status_code == 201
    return url


def test_password_grant_refresh_and_a_protected_call(base):
    session = OAuth2Session(client=LegacyApplicationClient(client_id=CLIENT_ID))
    token = session.fetch_token(
        token_url=f"{base}/auth/token",
        username="alice",
        password=PASSWORD,
        include_client_id=True,
    )
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 900
    assert token["expires_at"] == pytest.approx(time.time() + 900, abs=60)

    refreshed = session.refresh_token(f"{base}/auth/token", client_id=CLIENT_ID)
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert session.token["access_token"] == refreshed["access_token"]

    me = session.get(f"{base}/users/me", timeout=10)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"


def test_automatic_refresh_of_an_expired_token(base):
    saved: list[dict] = []
    session = OAuth2Session(
        client=LegacyApplicationClient(client_id=CLIENT_ID),
        auto_refresh_url=f"{base}/auth/token",
        auto_refresh_kwargs={"client_id": CLIENT_ID},
        token_updater=saved.append,
    )
    first = session.fetch_token(token_url=f"{base}/auth/token", username="alice", password=PASSWORD)
    # The library refreshes before a call once it believes the token has expired.
    session.token = {**first, "expires_at": time.time() - 1, "expires_in": -1}
    me = session.get(f"{base}/users/me", timeout=10)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert len(saved) == 1
    assert saved[0]["refresh_token"] != first["refresh_token"]

    # The retired refresh token is refused in the RFC 6749 way the library understands.
    stale = OAuth2Session(client=LegacyApplicationClient(client_id=CLIENT_ID), token=first)
    with pytest.raises(InvalidGrantError):
        stale.refresh_token(f"{base}/auth/token")
    # Reuse detection ended the session: every worker refuses its access token within 2 s.
    deadline = time.monotonic() + 2
    while session.get(f"{base}/users/me", timeout=10).status_code != 401:
        assert time.monotonic() < deadline, "the session outlived reuse detection"
        time.sleep(0.1)
