"""authlib's OAuth 2 / OpenID Connect client, unchanged, against the provider under gunicorn."""

from __future__ import annotations

import re
import secrets
import time
import urllib.parse
import warnings

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oidc.core import CodeIDToken
from helpers import PASSWORD, free_port
from processes import run_cli

with warnings.catch_warnings():
    # authlib.jose still holds the JWT validation CodeIDToken plugs into; it warns on import.
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt

REDIRECT = "https://app.example.org/callback"
SIGNED_OUT = "https://app.example.org/signed-out"
SCOPE = "openid profile email offline_access"


@pytest.fixture
def provider(gunicorn_server, mongo_uri, db_name, tmp_path):
    """A real service whose issuer is its own address, alice registered; (base, cli env)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
    }
    gunicorn_server({**environ, "TOKENAUTH_BIND": f"127.0.0.1:{port}", "TOKENAUTH_ISSUER": base})
    body = {"username": "alice", "password": PASSWORD}
    assert requests.post(f"{base}/users", json=body, timeout=10).status_code == 201
    return base, environ


def create_client(environ, name: str, *options: str) -> tuple[str, str | None]:
    """`tokenauth create-client`: (client_id, client_secret or None)."""
    args = ["create-client", name, "--redirect-uri", REDIRECT]
    args += ["--post-logout-redirect-uri", SIGNED_OUT, *options]
    result = run_cli(args, environ)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.decode().splitlines())
    return lines["client_id"], lines.get("client_secret")


class Browser(requests.Session):
    """A person's browser: it sends the Secure cookies back over loopback http, as browsers
    do (requests would not: it copies the cookies into a jar of the default policy)."""

    def prepare_request(self, request):
        """Every cookie goes along, `Secure` or not (the service is on 127.0.0.1)."""
        for cookie in self.cookies:
            cookie.secure = False
        return super().prepare_request(request)


def browser() -> requests.Session:
    """A new browser, no cookies yet."""
    return Browser()


def follow_pages(person: requests.Session, base: str, url: str) -> str:
    """The person opens the authorization URL and answers the pages it shows: sign in with
    the password, allow the client. The URL the provider sends the browser back to."""
    answer = person.get(url, allow_redirects=False, timeout=10)
    for _ in range(3):
        if answer.status_code == 303:
            return answer.headers["Location"]
        assert answer.status_code == 200, answer.text
        form = dict(
            re.findall(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"', answer.text)
        )
        action = re.search(r'<form method="post" action="([^"]+)"', answer.text)[1]
        if action == "/authorize/login":
            form.update(username="alice", password=PASSWORD)
        else:
            form["decision"] = "allow"
        answer = person.post(
            f"{base}{action}",
            data=form,
            headers={"Sec-Fetch-Site": "same-origin", "Origin": base},
            allow_redirects=False,
            timeout=10,
        )
    raise AssertionError("the provider never sent the browser back")


def validated_id_token(metadata: dict, token: dict, client_id: str, nonce: str) -> CodeIDToken:
    """authlib's OIDC validation: signature against the JWKS, iss, aud, nonce, at_hash."""
    keys = JsonWebKey.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_cls=CodeIDToken,
        claims_options={
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": client_id},
            "auth_time": {"essential": True},
        },
        claims_params={
            "nonce": nonce,
            "client_id": client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate()
    return claims


@pytest.mark.parametrize("kind", ["confidential", "public"])
def test_authlib_signs_in_refreshes_reads_userinfo_and_signs_out(provider, kind):
    base, environ = provider
    options = ("--public",) if kind == "public" else ()
    client_id, secret = create_client(environ, f"{kind}-app", *options)
    assert (secret is None) == (kind == "public")

    metadata = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["issuer"] == base
    oauth = OAuth2Session(
        client_id,
        secret,
        scope=SCOPE,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
    )
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = oauth.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce
    )
    person = browser()
    back = follow_pages(person, base, url)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(back).query))
    assert query["state"] == state
    assert query["iss"] == base  # RFC 9207

    token = oauth.fetch_token(
        metadata["token_endpoint"], authorization_response=back, code_verifier=verifier
    )
    assert token["token_type"] == "Bearer"
    assert token["scope"] == SCOPE
    claims = validated_id_token(metadata, token, client_id, nonce)
    assert claims["preferred_username"] == "alice"
    assert claims["amr"] == ["pwd"]
    assert claims["acr"] == "aal1"

    info = oauth.get(metadata["userinfo_endpoint"], timeout=10)
    assert info.status_code == 200
    assert info.json() == {"sub": claims["sub"], "preferred_username": "alice"}
    me = oauth.get(f"{base}/users/me", timeout=10)  # the API takes the same access token
    assert me.json()["username"] == "alice"

    refreshed = oauth.refresh_token(metadata["token_endpoint"])
    assert refreshed["refresh_token"] != token["refresh_token"]
    assert oauth.get(metadata["userinfo_endpoint"], timeout=10).status_code == 200

    signed_out = person.get(
        metadata["end_session_endpoint"],
        params={
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": SIGNED_OUT,
            "state": "bye",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert signed_out.status_code == 303
    assert signed_out.headers["Location"] == f"{SIGNED_OUT}?state=bye"
    # The sign-in and the client's session ended: every worker refuses the token within 2 s.
    for _ in range(30):
        if oauth.get(metadata["userinfo_endpoint"], timeout=10).status_code == 401:
            break
        time.sleep(0.1)
    assert oauth.get(metadata["userinfo_endpoint"], timeout=10).status_code == 401
    again = person.get(url, allow_redirects=False, timeout=10)
    assert 'action="/authorize/login"' in again.text


def test_a_second_client_signs_in_without_the_password(provider):
    base, environ = provider
    first_id, first_secret = create_client(environ, "first")
    second_id, _ = create_client(environ, "second", "--public", "--first-party")
    metadata = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
    person = browser()
    first = OAuth2Session(
        first_id, first_secret, scope="openid", redirect_uri=REDIRECT, code_challenge_method="S256"
    )
    verifier = secrets.token_urlsafe(48)
    url, _ = first.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier
    )
    follow_pages(person, base, url)

    second = OAuth2Session(
        second_id,
        None,
        scope="openid",
        redirect_uri=REDIRECT,
        token_endpoint_auth_method="none",
        code_challenge_method="S256",
    )
    verifier = secrets.token_urlsafe(48)
    url, _ = second.create_authorization_url(
        metadata["authorization_endpoint"], code_verifier=verifier
    )
    answer = person.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 303  # no sign-in page, and first party: no consent page
    assert "code=" in answer.headers["Location"]
    token = second.fetch_token(
        metadata["token_endpoint"],
        authorization_response=answer.headers["Location"],
        code_verifier=verifier,
    )
    assert "refresh_token" not in token  # no offline_access asked
