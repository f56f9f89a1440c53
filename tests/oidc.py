"""Helpers for the provider's tests: a client registered, a browser walking the pages."""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import re
import secrets
import urllib.parse

import jwt
import webtest
from helpers import PASSWORD

REDIRECT = "https://app.example.org/callback"
LOGOUT_REDIRECT = "https://app.example.org/signed-out"
SAME_ORIGIN_FORM = {"Sec-Fetch-Site": "same-origin"}


def browser_cookies(app: webtest.TestApp) -> webtest.TestApp:
    """Let webtest keep Secure cookies over http, as browsers do on loopback."""
    app.cookiejar.set_policy(
        http.cookiejar.DefaultCookiePolicy(secure_protocols=("https", "wss", "http"))
    )
    return app


def register_client(app: webtest.TestApp, name: str = "demo", **options):
    """A client with REDIRECT (and LOGOUT_REDIRECT); (client, secret)."""
    options.setdefault("post_logout_redirect_uris", [LOGOUT_REDIRECT])
    return app.app.components.clients.create(
        name, options.pop("redirect_uris", [REDIRECT]), **options
    )


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def authorize_params(client, challenge: str, **overrides) -> dict[str, str]:
    """A good authorization request; keyword arguments replace (None: leave out) fields."""
    params = {
        "client_id": client["id"],
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid profile email offline_access",
        "state": "state-1",
        "nonce": "nonce-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def authorize(app, client, challenge: str, status=None, **overrides):
    """GET /authorize."""
    query = urllib.parse.urlencode(authorize_params(client, challenge, **overrides))
    return app.get(f"/authorize?{query}", status=status)


def handle_of(page) -> str:
    """The pending request's handle on a sign-in or consent page."""
    return re.search(r'name="request" value="([^"]+)"', page.text).group(1)


def sign_in(app, page, username: str = "alice", password: str = PASSWORD, status=None):
    """Post the sign-in form of `page` as the browser does."""
    form = {"request": handle_of(page), "username": username, "password": password}
    return app.post("/authorize/login", form, headers=SAME_ORIGIN_FORM, status=status)


def consent(app, page, decision: str = "allow", status=None):
    """Post the consent form of `page`."""
    form = {"request": handle_of(page), "decision": decision}
    return app.post("/authorize/consent", form, headers=SAME_ORIGIN_FORM, status=status)


def redirected(answer, to: str = REDIRECT) -> dict[str, str]:
    """The query of a 303 to `to` (which it must be)."""
    assert answer.status_int == 303, answer.status
    location = answer.headers["Location"]
    base, _, query = location.partition("?")
    assert base == to, location
    return dict(urllib.parse.parse_qsl(query))


def exchange(app, client, secret, code: str, verifier: str, /, status=200, **overrides):
    """POST /auth/token with the code (client_secret_post, or client_id for a public one)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client["id"],
    }
    if secret is not None:
        form["client_secret"] = secret
    form.update(overrides)
    return app.post("/auth/token", {k: v for k, v in form.items() if v is not None}, status=status)


def code_for(app, client, verifier_challenge=None, **overrides) -> tuple[str, str]:
    """Walk authorize (signing in, consenting as asked) to a code; (code, verifier)."""
    verifier, challenge = verifier_challenge or pkce()
    answer = authorize(app, client, challenge, **overrides)
    if answer.status_int == 200 and 'action="/authorize/login"' in answer.text:
        answer = sign_in(app, answer)
    if answer.status_int == 200 and 'action="/authorize/consent"' in answer.text:
        answer = consent(app, answer)
    return redirected(answer)["code"], verifier


def id_token_claims(app, id_token: str, client_id: str) -> dict:
    """The ID token verified as a relying party does: RS256 against the published JWKS."""
    header = jwt.get_unverified_header(id_token)
    keys = app.get("/.well-known/jwks.json").json["keys"]
    (jwk,) = [k for k in keys if k["kid"] == header["kid"]]
    assert header["alg"] == jwk["alg"] == "RS256"
    return jwt.decode(
        id_token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=client_id,
        issuer=app.app.components.config.issuer,
        options={"verify_iat": False, "verify_exp": False},
    )
