"""The OpenID provider in process: the code flow, its pages, single sign-on, consent, logout."""

from __future__ import annotations

import re

import jwt
import pytest
from helpers import ADMIN_PASSWORD, PASSWORD, assert_documented, bearer, login, register
from mfa_helpers import code_at, enable_totp, step_clock
from oidc import (
    LOGOUT_REDIRECT,
    REDIRECT,
    SAME_ORIGIN_FORM,
    authorize,
    authorize_params,
    browser_cookies,
    code_for,
    consent,
    exchange,
    handle_of,
    id_token_claims,
    pkce,
    redirected,
    register_client,
    sign_in,
)

from idtokens import at_hash
from web import HTML_CSP

SSO = re.compile(
    r"^__Host-tokenauth-sso=([A-Za-z0-9_-]{43}); HttpOnly; Secure; SameSite=Lax; Path=/; "
    r"Max-Age=(\d+)$"
)


@pytest.fixture
def app(make_app, make_config, clock):
    """The service on the test's clock, alice registered, cookies kept as a browser does."""
    app = browser_cookies(make_app(make_config(refresh_ttl=3600), clock=clock))
    register(app, "alice")
    return app


def assert_page(answer, status: int, client_origin: str | None = "https://app.example.org"):
    """An HTML page under the client's CSP (form-action also lets a form's answer go to the
    client), never cached, never framed."""
    assert answer.status_int == status
    assert answer.content_type == "text/html"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    expected = HTML_CSP
    if client_origin:
        expected = HTML_CSP.replace("form-action 'self'", f"form-action 'self' {client_origin}")
    assert answer.headers["Content-Security-Policy"] == expected
    assert "<script" not in answer.text and "style=" not in answer.text


# -- the whole flow ---------------------------------------------------------------------------
def test_code_flow_signs_in_asks_consent_and_gives_tokens_an_id_token_and_userinfo(app, clock):
    client, secret = register_client(app)
    verifier, challenge = pkce()
    page = authorize(app, client, challenge, login_hint="alice")
    assert_page(page, 200)
    assert 'action="/authorize/login"' in page.text
    assert 'value="alice"' in page.text  # login_hint prefills the username
    assert "demo" in page.text
    browser = [c for c in page.headers.getall("Set-Cookie") if "tokenauth-browser" in c]
    assert browser and "HttpOnly; Secure; SameSite=Lax; Path=/" in browser[0]

    signed_in_at = clock()
    asked = sign_in(app, page)
    assert_page(asked, 200)
    (sso,) = [c for c in asked.headers.getall("Set-Cookie") if c.startswith("__Host-tokenauth-sso")]
    match = SSO.match(sso)
    assert match, sso
    assert int(match[2]) == 3600
    scopes = re.findall(r'data-scope="([a-z_]+)"', asked.text)
    assert scopes == ["openid", "profile", "email", "offline_access"]

    query = redirected(consent(app, asked))
    assert set(query) == {"code", "state", "iss"}
    assert query["state"] == "state-1"
    assert query["iss"] == app.app.components.config.issuer

    clock.advance(5)
    answer = exchange(app, client, secret, query["code"], verifier)
    assert answer.headers["Cache-Control"] == "no-store"
    assert_documented(answer, "/auth/token", "POST")
    tokens = answer.json
    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "refresh_token",
        "id_token",
    }
    assert tokens["scope"] == "openid profile email offline_access"
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["client_id"] == client["id"]
    assert access["scope"] == tokens["scope"]
    assert access["aud"] == "tokenauth"  # the resource audience, not the client
    assert access["roles"] == ["user"]

    claims = id_token_claims(app, tokens["id_token"], client["id"])
    assert claims["sub"] == access["sub"]
    assert claims["nonce"] == "nonce-1"
    assert claims["at_hash"] == at_hash(tokens["access_token"])
    assert claims["auth_time"] == int(signed_in_at.timestamp())
    assert claims["amr"] == ["pwd"]
    assert claims["acr"] == "aal1"
    assert claims["preferred_username"] == "alice"
    assert claims["exp"] > claims["iat"]

    info = app.get("/userinfo", headers=bearer(tokens["access_token"]), status=200)
    assert_documented(info, "/userinfo", "GET")
    assert info.json == {"sub": access["sub"], "preferred_username": "alice"}
    posted = app.post("/userinfo", headers=bearer(tokens["access_token"]), status=200)
    assert posted.json == info.json
    me = app.get("/users/me", headers=bearer(tokens["access_token"]), status=200)
    assert me.json["username"] == "alice"

    refreshed = app.post(
        "/auth/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client["id"],
            "client_secret": secret,
        },
    ).json
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    again = jwt.decode(refreshed["access_token"], options={"verify_signature": False})
    assert (again["client_id"], again["scope"], again["sid"]) == (
        client["id"],
        tokens["scope"],
        access["sid"],
    )


def test_the_authorization_request_may_be_a_posted_form(app):
    client, _ = register_client(app, first_party=True)
    _, challenge = pkce()
    page = app.post("/authorize", authorize_params(client, challenge), status=200)
    assert 'action="/authorize/login"' in page.text
    redirected(sign_in(app, page))


def test_client_secret_basic_and_a_public_client_without_secret(app):
    confidential, secret = register_client(app, "basic-client")
    code, verifier = code_for(app, confidential)
    app.authorization = ("Basic", (confidential["id"], secret))
    answer = exchange(app, confidential, None, code, verifier, client_id=None)
    app.authorization = None
    assert answer.json["token_type"] == "Bearer"

    public, none = register_client(app, "spa", public=True)
    assert none is None
    code, verifier = code_for(app, public)
    answer = exchange(app, public, None, code, verifier)
    assert set(answer.json) >= {"access_token", "id_token", "refresh_token"}
    # Its refresh tokens need its client_id, and nothing else.
    refreshed = app.post(
        "/auth/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": answer.json["refresh_token"],
            "client_id": public["id"],
        },
        status=200,
    )
    assert refreshed.json["scope"] == "openid profile email offline_access"


def test_scopes_decide_refresh_tokens_id_tokens_and_userinfo(app, db):
    client, secret = register_client(app)
    user = db.users.find_one({"username": "alice"})
    db.users.update_one(
        {"_id": user["_id"]},
        {"$set": {"email": "alice@example.org", "email_key": "alice@example.org"}},
    )
    code, verifier = code_for(app, client, scope="openid email")
    tokens = exchange(app, client, secret, code, verifier).json
    assert "refresh_token" not in tokens  # no offline_access: no refresh token
    info = app.get("/userinfo", headers=bearer(tokens["access_token"])).json
    assert info == {"sub": str(user["_id"]), "email": "alice@example.org", "email_verified": False}

    code, verifier = code_for(app, client, scope="profile")
    tokens = exchange(app, client, secret, code, verifier).json
    assert "id_token" not in tokens
    refused = app.get("/userinfo", headers=bearer(tokens["access_token"]), status=403)
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    assert_documented(refused, "/userinfo", "GET")
    # A first-party token from the password grant has no openid scope either.
    password_token = login(app, "alice").json["access_token"]
    app.get("/userinfo", headers=bearer(password_token), status=403)


def test_a_third_party_client_never_gets_the_admin_role(app):
    app.app.components.accounts.register("root", ADMIN_PASSWORD, roles=("user", "admin"))
    third, secret = register_client(app, "third")
    verifier, challenge = pkce()
    page = authorize(app, third, challenge)
    query = redirected(consent(app, sign_in(app, page, "root", ADMIN_PASSWORD)))
    token = exchange(app, third, secret, query["code"], verifier).json["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["user"]
    app.get("/users", headers=bearer(token), status=403)

    ours, ours_secret = register_client(app, "ours", first_party=True)
    verifier, challenge = pkce()
    query = redirected(authorize(app, ours, challenge))  # signed in, first party: no page
    token = exchange(app, ours, ours_secret, query["code"], verifier).json["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["roles"] == ["user", "admin"]
    app.get("/users", headers=bearer(token), status=200)


# -- single sign-on -----------------------------------------------------------------------------
def test_a_second_client_needs_no_password_while_the_sign_in_lives(app):
    first, _ = register_client(app, "first")
    code_for(app, first)
    second, _ = register_client(app, "second", first_party=True)
    _, challenge = pkce()
    assert "code" in redirected(authorize(app, second, challenge))
    third, _ = register_client(app, "third")
    _, challenge = pkce()
    asked = authorize(app, third, challenge)
    assert 'action="/authorize/consent"' in asked.text  # consent, but no password


def test_the_cookie_login_of_the_first_party_client_signs_in_for_the_provider(app):
    client, _ = register_client(app, first_party=True)
    answer = app.post_json(
        "/auth/session",
        {"username": "alice", "password": PASSWORD},
        headers={"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-origin"},
    )
    assert any(SSO.match(c) for c in answer.headers.getall("Set-Cookie"))
    _, challenge = pkce()
    assert "code" in redirected(authorize(app, client, challenge))
    # The session list shows one session for this browser: the login and the sign-in.
    token = answer.json["access_token"]
    (session,) = app.get("/users/me/sessions", headers=bearer(token)).json["items"]
    assert session["current"] is True
    # Logging out of the client signs the browser out of the provider too.
    app.delete(
        "/auth/session", headers={"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-origin"}
    )
    page = authorize(app, client, challenge)
    assert 'action="/authorize/login"' in page.text


@pytest.mark.parametrize("ending", ["session list", "password change", "disable"])
def test_every_revocation_path_ends_the_sign_in(app, ending):
    client, _ = register_client(app, first_party=True)
    code_for(app, client)
    token = login(app, "alice").json["access_token"]
    if ending == "session list":
        items = app.get("/users/me/sessions", headers=bearer(token)).json["items"]
        (sign_in_session,) = [s for s in items if not s["current"]]
        app.delete(f"/users/me/sessions/{sign_in_session['id']}", headers=bearer(token), status=204)
    elif ending == "password change":
        body = {"current_password": PASSWORD, "new_password": "an entirely new passphrase 7"}
        app.put_json("/users/me/password", body, headers=bearer(token), status=204)
    else:
        admin = app.app.components
        user = admin.accounts.find_by_name("alice")
        admin.accounts.administer(user["id"], disabled=True)
        admin.sessions.revoke_others(user["id"], keep_sid=None)
    _, challenge = pkce()
    page = authorize(app, client, challenge)
    assert 'action="/authorize/login"' in page.text


def test_max_age_and_prompt_login_ask_for_the_password_again(app, clock):
    client, secret = register_client(app, first_party=True)
    code_for(app, client)
    _, challenge = pkce()
    assert "code" in redirected(authorize(app, client, challenge, max_age="60"))
    for params in ({"max_age": "0"}, {"prompt": "login"}):
        page = authorize(app, client, challenge, **params)
        assert 'action="/authorize/login"' in page.text, params
        assert 'value="alice"' in page.text  # the signed-in person, prefilled
    clock.advance(61)
    page = authorize(app, client, challenge, max_age="60")
    assert 'action="/authorize/login"' in page.text
    redirected(sign_in(app, page))
    # The renewed sign-in's auth_time is the new password's: max_age is satisfied again,
    # and the ID token says when.
    verifier, challenge = pkce()
    query = redirected(authorize(app, client, challenge, max_age="60"))
    tokens = exchange(app, client, secret, query["code"], verifier).json
    claims = id_token_claims(app, tokens["id_token"], client["id"])
    assert claims["auth_time"] == int(clock().timestamp())


def test_prompt_none_answers_without_a_page(app):
    client, _ = register_client(app)
    _, challenge = pkce()
    refused = redirected(authorize(app, client, challenge, prompt="none"))
    assert refused["error"] == "login_required"
    assert refused["state"] == "state-1"
    assert refused["iss"] == app.app.components.config.issuer
    sign_in_page = authorize(app, client, challenge)
    asked = sign_in(app, sign_in_page)
    assert 'action="/authorize/consent"' in asked.text
    refused = redirected(authorize(app, client, challenge, prompt="none"))
    assert refused["error"] == "consent_required"
    redirected(consent(app, authorize(app, client, challenge)))
    granted = redirected(authorize(app, client, challenge, prompt="none"))
    assert set(granted) == {"code", "state", "iss"}


# -- consent ---------------------------------------------------------------------------------------
def test_consent_is_remembered_per_client_and_scope_and_can_be_withdrawn(app):
    client, secret = register_client(app)
    code, verifier = code_for(app, client, scope="openid profile offline_access")
    tokens = exchange(app, client, secret, code, verifier).json
    _, challenge = pkce()
    assert "code" in redirected(authorize(app, client, challenge, scope="openid profile"))
    asked = authorize(app, client, challenge, scope="openid email")  # a new scope asks again
    assert re.findall(r'data-scope="([a-z_]+)"', asked.text) == ["openid", "email"]
    redirected(consent(app, asked))

    token = login(app, "alice").json["access_token"]
    listed = app.get("/users/me/consents", headers=bearer(token), status=200)
    assert_documented(listed, "/users/me/consents", "GET")
    (item,) = listed.json["items"]
    assert (item["client_id"], item["client_name"]) == (client["id"], "demo")
    assert item["scopes"] == ["openid", "profile", "email", "offline_access"]

    gone = app.delete(f"/users/me/consents/{client['id']}", headers=bearer(token), status=204)
    assert_documented(gone, "/users/me/consents/{client_id}", "DELETE")
    app.delete(f"/users/me/consents/{client['id']}", headers=bearer(token), status=404)
    assert app.get("/users/me/consents", headers=bearer(token)).json == {"items": []}
    # The client's sessions of alice ended with it: refresh token and access token.
    app.get("/users/me", headers=bearer(tokens["access_token"]), status=401)
    refused = app.post(
        "/auth/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client["id"],
            "client_secret": secret,
        },
        status=400,
    )
    assert refused.json["error"] == "invalid_grant"
    asked = authorize(app, client, challenge, scope="openid")
    assert 'action="/authorize/consent"' in asked.text


def test_denying_sends_access_denied_to_the_client(app):
    client, _ = register_client(app)
    _, challenge = pkce()
    asked = sign_in(app, authorize(app, client, challenge))
    refused = redirected(consent(app, asked, "deny"))
    assert (refused["error"], refused["state"]) == ("access_denied", "state-1")
    token = login(app, "alice").json["access_token"]
    assert app.get("/users/me/consents", headers=bearer(token)).json == {"items": []}


# -- logout ----------------------------------------------------------------------------------------
def test_logout_with_an_id_token_hint_ends_the_sign_in_and_the_clients_sessions(app):
    client, secret = register_client(app)
    code, verifier = code_for(app, client)
    tokens = exchange(app, client, secret, code, verifier).json
    answer = app.get(
        "/logout",
        {
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": LOGOUT_REDIRECT,
            "state": "bye",
        },
    )
    assert redirected(answer, LOGOUT_REDIRECT) == {"state": "bye"}
    assert "__Host-tokenauth-sso=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0" in (
        answer.headers.getall("Set-Cookie")
    )
    app.get("/userinfo", headers=bearer(tokens["access_token"]), status=401)
    _, challenge = pkce()
    assert 'action="/authorize/login"' in authorize(app, client, challenge).text


def test_logout_to_an_unregistered_uri_is_a_page_and_changes_nothing(app):
    client, secret = register_client(app)
    code, verifier = code_for(app, client)
    tokens = exchange(app, client, secret, code, verifier).json
    for uri in ("https://evil.example/", f"{LOGOUT_REDIRECT}/x", REDIRECT):
        answer = app.get(
            "/logout",
            {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": uri},
            status=400,
        )
        assert "Location" not in answer.headers
        assert answer.content_type == "text/html"
    app.get("/userinfo", headers=bearer(tokens["access_token"]), status=200)


def test_logout_without_a_hint_asks_first(app):
    client, _ = register_client(app, first_party=True)
    code_for(app, client)
    page = app.get(
        "/logout",
        {"client_id": client["id"], "post_logout_redirect_uri": LOGOUT_REDIRECT, "state": "s"},
    )
    assert_page(page, 200)
    assert 'action="/logout"' in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
    # Posted from another site, or without the page's token: nothing happens.
    app.post("/logout", {"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"}, status=400)
    app.post("/logout", {"csrf": "forged"}, headers=SAME_ORIGIN_FORM, status=400)
    _, challenge = pkce()
    assert "code" in redirected(authorize(app, client, challenge))
    fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', page.text))
    done = app.post("/logout", fields, headers=SAME_ORIGIN_FORM)
    assert redirected(done, LOGOUT_REDIRECT) == {"state": "s"}
    assert 'action="/authorize/login"' in authorize(app, client, challenge).text
    # Without anywhere to go back to, a page says so.
    signed_out = app.get("/logout")
    assert 'action="/logout"' in signed_out.text
    fields = dict(re.findall(r'name="([a-z_]+)" value="([^"]*)"', signed_out.text))
    assert "signed out" in app.post("/logout", fields, headers=SAME_ORIGIN_FORM, status=200).text


# -- documents and CORS --------------------------------------------------------------------------
def test_discovery_names_the_endpoints_and_rs256(make_app, make_config):
    issuer = "https://auth.example.test/tenant"
    app = make_app(make_config(issuer=issuer))
    answer = app.get("/.well-known/openid-configuration", status=200)
    assert_documented(answer, "/.well-known/openid-configuration", "GET")
    document = answer.json
    assert document["issuer"] == issuer
    assert document["authorization_endpoint"] == f"{issuer}/authorize"
    assert document["token_endpoint"] == f"{issuer}/auth/token"
    assert document["userinfo_endpoint"] == f"{issuer}/userinfo"
    assert document["end_session_endpoint"] == f"{issuer}/logout"
    assert document["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]
    assert document["scopes_supported"] == ["openid", "profile", "email", "offline_access"]
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["request_parameter_supported"] is False
    assert document["request_uri_parameter_supported"] is False
    assert {"sub", "nonce", "at_hash", "auth_time", "amr", "acr"} <= set(
        document["claims_supported"]
    )


def test_registered_client_origins_may_call_the_token_endpoint_and_userinfo(app):
    register_client(app, "spa", public=True, redirect_uris=["http://127.0.0.1:5173/cb"])
    origin = "http://127.0.0.1:5173"
    for path, method in (("/auth/token", "POST"), ("/userinfo", "GET")):
        preflight = app.options(
            path,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert method in preflight.headers["Access-Control-Allow-Methods"]
        assert "Access-Control-Allow-Credentials" not in preflight.headers
    discovery = app.get("/.well-known/openid-configuration", headers={"Origin": origin})
    assert discovery.headers["Access-Control-Allow-Origin"] == origin
    other = app.get("/.well-known/openid-configuration", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_the_password_grant_can_be_turned_off(make_app, make_config):
    app = make_app(make_config(password_grant=False))
    register(app, "alice")
    refused = login(app, "alice", status=400)
    assert refused.json["error"] == "unsupported_grant_type"
    metadata = app.get("/.well-known/oauth-authorization-server").json
    assert metadata["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "urn:tokenauth:params:oauth:grant-type:mfa",
        "urn:tokenauth:params:oauth:grant-type:passkey",
    ]
    # The first-party browser client's cookie login is not the password grant: it works.
    answer = app.post_json(
        "/auth/session",
        {"username": "alice", "password": PASSWORD},
        headers={"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-origin"},
        status=200,
    )
    assert answer.json["token_type"] == "Bearer"


def test_a_third_party_client_may_not_use_the_password_grant(app):
    client, secret = register_client(app)
    body = {
        "grant_type": "password",
        "username": "alice",
        "password": PASSWORD,
        "client_id": client["id"],
        "client_secret": secret,
    }
    assert app.post("/auth/token", body, status=400).json["error"] == "unauthorized_client"


def test_introspection_names_the_client_and_scope(app):
    client, secret = register_client(app)
    code, verifier = code_for(app, client, scope="openid offline_access")
    tokens = exchange(app, client, secret, code, verifier).json
    app.app.components.accounts.register("root", ADMIN_PASSWORD, roles=("user", "admin"))
    admin = login(app, "root", ADMIN_PASSWORD).json["access_token"]
    for token in (tokens["access_token"], tokens["refresh_token"]):
        answer = app.post("/auth/introspect", {"token": token}, headers=bearer(admin)).json
        assert answer["active"] is True
        assert (answer["client_id"], answer["scope"]) == (client["id"], "openid offline_access")
        assert_documented(
            app.post("/auth/introspect", {"token": token}, headers=bearer(admin)),
            "/auth/introspect",
            "POST",
        )


# -- the second factor on the sign-in page ------------------------------------------------------
def test_an_account_with_totp_signs_in_with_its_code_and_the_id_token_says_so(
    make_app, make_config
):
    clock = step_clock()
    app = browser_cookies(make_app(make_config(), clock=clock))
    register(app, "alice")
    secret, recovery_codes = enable_totp(app, login(app, "alice").json["access_token"], clock)
    client, client_secret = register_client(app, first_party=True)
    verifier, challenge = pkce()
    page = authorize(app, client, challenge)
    second = sign_in(app, page)
    assert_page(second, 200)
    assert 'name="otp"' in second.text and 'name="recovery_code"' in second.text
    assert not [c for c in second.headers.getall("Set-Cookie") if "tokenauth-sso" in c]
    mfa_token = re.search(r'name="mfa_token" value="([^"]+)"', second.text)[1]
    form = {"request": handle_of(page), "mfa_token": mfa_token}

    wrong = app.post(
        "/authorize/login", {**form, "otp": "000000"}, headers=SAME_ORIGIN_FORM, status=400
    )
    assert "That code is not right." in wrong.text
    answer = app.post(
        "/authorize/login", {**form, "otp": code_at(secret, clock)}, headers=SAME_ORIGIN_FORM
    )
    query = redirected(answer)
    tokens = exchange(app, client, client_secret, query["code"], verifier).json
    claims = id_token_claims(app, tokens["id_token"], client["id"])
    assert (claims["acr"], set(claims["amr"])) == ("aal2", {"pwd", "otp", "mfa"})
    access = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert access["acr"] == "aal2"
    # The request is answered, and the login's mfa_token spent: a new request with it
    # starts again from the password.
    again = {**form, "recovery_code": recovery_codes[0]}
    app.post("/authorize/login", again, headers=SAME_ORIGIN_FORM, status=400)
    page = authorize(app, client, challenge, prompt="login")
    again["request"] = handle_of(page)
    answer = app.post("/authorize/login", again, headers=SAME_ORIGIN_FORM, status=400)
    assert 'name="password"' in answer.text
    assert "enter your password again" in answer.text


def test_a_recovery_code_completes_the_sign_in_too(make_app, make_config):
    clock = step_clock()
    app = browser_cookies(make_app(make_config(), clock=clock))
    register(app, "alice")
    _, recovery_codes = enable_totp(app, login(app, "alice").json["access_token"], clock)
    client, _ = register_client(app, first_party=True)
    _, challenge = pkce()
    page = authorize(app, client, challenge)
    second = sign_in(app, page)
    mfa_token = re.search(r'name="mfa_token" value="([^"]+)"', second.text)[1]
    form = {"request": handle_of(page), "mfa_token": mfa_token, "recovery_code": recovery_codes[0]}
    assert "code" in redirected(app.post("/authorize/login", form, headers=SAME_ORIGIN_FORM))


def test_logging_in_again_here_keeps_the_apps_sessions_under_the_browsers_sign_in(app):
    client, secret = register_client(app)
    code, verifier = code_for(app, client)
    tokens = exchange(app, client, secret, code, verifier).json
    # The same person logs in to the first-party client in this browser: a new sign-in.
    own = app.post_json(
        "/auth/session",
        {"username": "alice", "password": PASSWORD},
        headers={"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-origin"},
    )
    app.get("/userinfo", headers=bearer(tokens["access_token"]), status=200)
    # Signing out at the app ends what was opened through the browser's sign-in: the app too.
    answer = app.get(
        "/logout",
        {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": LOGOUT_REDIRECT},
    )
    assert redirected(answer, LOGOUT_REDIRECT) == {}
    app.get("/userinfo", headers=bearer(tokens["access_token"]), status=401)
    refused = app.post(
        "/auth/token",
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client["id"],
            "client_secret": secret,
        },
        status=400,
    )
    assert refused.json["error"] == "invalid_grant"
    app.get("/users/me", headers=bearer(own.json["access_token"]), status=401)
