"""What the authorization server refuses, with the exact errors the specifications name."""

from __future__ import annotations

import urllib.parse

import pytest
from helpers import PASSWORD, bearer, register
from oidc import (
    SAME_ORIGIN_FORM,
    authorize,
    authorize_params,
    browser_cookies,
    code_for,
    exchange,
    handle_of,
    pkce,
    redirected,
    register_client,
    sign_in,
)


@pytest.fixture
def app(make_app, make_config, clock):
    """The service on the test's clock, alice registered, cookies kept as a browser does."""
    app = browser_cookies(make_app(make_config(), clock=clock))
    register(app, "alice")
    return app


@pytest.fixture
def client(app):
    """A confidential third-party client: (client, secret)."""
    return register_client(app)


def assert_error_page(answer) -> None:
    """400, an HTML page, and no redirect at all: nothing goes to an unverified URI."""
    assert answer.status_int == 400
    assert answer.content_type == "text/html"
    assert "Location" not in answer.headers
    assert 'id="error"' in answer.text


def refused(answer, error: str, state: str | None = "state-1") -> str:
    """A 303 to the registered redirect URI with `error` (and the state, and iss)."""
    query = redirected(answer)
    assert query["error"] == error, query
    assert query.get("state") == state
    assert query["iss"] == "http://127.0.0.1:8000"
    assert "code" not in query
    return query["error_description"]


# -- the client and its redirect URI: a page, never a redirect ----------------------------------
@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://app.example.org/callback/evil",  # path
        "https://app.example.org/callbac",
        "https://app.example.org/callback/",
        "https://app.example.org/callback?next=https://evil.example",  # query
        "http://app.example.org/callback",  # scheme
        "https://evil@app.example.org/callback",  # userinfo
        "https://app.example.org@evil.example/callback",
        "https://APP.example.org/callback",  # case
        "https://app.example.org/Callback",
        "https://app.example.org:443/callback",  # port
        "https://app.example.org/callback#frag",  # fragment
        "https://app.example.org.evil.example/callback",
        "https://evil.example/callback",
        "//evil.example/callback",
        "",
    ],
)
def test_a_redirect_uri_not_registered_exactly_is_a_page(app, client, redirect_uri):
    _, challenge = pkce()
    answer = authorize(app, client[0], challenge, status=400, redirect_uri=redirect_uri)
    assert_error_page(answer)


def test_unknown_missing_or_repeated_client_id_is_a_page(app, client):
    _, challenge = pkce()
    assert_error_page(authorize(app, client[0], challenge, status=400, client_id="nobody"))
    assert_error_page(authorize(app, client[0], challenge, status=400, client_id=None))
    assert_error_page(authorize(app, client[0], challenge, status=400, redirect_uri=None))
    query = urllib.parse.urlencode(authorize_params(client[0], challenge))
    assert_error_page(app.get(f"/authorize?{query}&redirect_uri=https://evil.example/", status=400))
    assert_error_page(app.get(f"/authorize?{query}&client_id=other", status=400))


def test_a_redirect_uri_of_another_client_is_a_page(app, client):
    other, _ = register_client(app, "other", redirect_uris=["https://other.example/cb"])
    _, challenge = pkce()
    answer = authorize(
        app, client[0], challenge, status=400, redirect_uri="https://other.example/cb"
    )
    assert_error_page(answer)
    assert other["redirect_uris"] == ["https://other.example/cb"]


# -- errors that go back to the client ---------------------------------------------------------
@pytest.mark.parametrize(
    "response_type",
    [
        "token",
        "id_token",
        "id_token token",
        "code id_token",
        "code token",
        "code id_token token",
        "none",
    ],
)
def test_implicit_and_hybrid_response_types_are_refused(app, client, response_type):
    _, challenge = pkce()
    answer = authorize(app, client[0], challenge, response_type=response_type)
    refused(answer, "unsupported_response_type")


def test_a_missing_response_type_is_an_invalid_request(app, client):
    _, challenge = pkce()
    refused(authorize(app, client[0], challenge, response_type=None), "invalid_request")


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"code_challenge": None}, "code_challenge is required"),
        ({"code_challenge_method": "plain"}, "code_challenge_method must be S256"),
        ({"code_challenge_method": None}, "code_challenge_method must be S256"),
        ({"code_challenge": "short"}, "43 characters"),
        ({"code_challenge": "!" * 43}, "43 characters"),
    ],
)
def test_pkce_s256_is_required(app, client, overrides, says):
    _, challenge = pkce()
    description = refused(authorize(app, client[0], challenge, **overrides), "invalid_request")
    assert says in description


def test_request_objects_are_refused_with_their_own_errors(app, client):
    _, challenge = pkce()
    refused(
        authorize(app, client[0], challenge, request="eyJhbGciOiJub25lIn0.e30."),
        "request_not_supported",
    )
    refused(
        authorize(app, client[0], challenge, request_uri="https://evil.example/request.jwt"),
        "request_uri_not_supported",
    )


def test_scopes_unknown_or_not_the_clients_are_invalid(app):
    narrow, _ = register_client(app, "narrow", scopes=["openid"])
    _, challenge = pkce()
    refused(authorize(app, narrow, challenge, scope="openid admin"), "invalid_scope")
    refused(authorize(app, narrow, challenge, scope="openid email"), "invalid_scope")


@pytest.mark.parametrize(
    "overrides",
    [{"prompt": "none login"}, {"prompt": "always"}, {"max_age": "-1"}, {"max_age": "soon"}],
)
def test_bad_prompt_and_max_age_are_invalid_requests(app, client, overrides):
    _, challenge = pkce()
    refused(authorize(app, client[0], challenge, **overrides), "invalid_request")


def test_a_repeated_parameter_is_an_invalid_request(app, client):
    _, challenge = pkce()
    query = urllib.parse.urlencode(authorize_params(client[0], challenge))
    answer = app.get(f"/authorize?{query}&scope=openid")
    refused(answer, "invalid_request")
    answer = app.get(f"/authorize?{query}&state=other")
    refused(answer, "invalid_request", state=None)  # which state? neither is echoed


def test_prompt_none_without_a_sign_in_is_login_required(app, client):
    _, challenge = pkce()
    refused(authorize(app, client[0], challenge, prompt="none"), "login_required")


def test_max_age_zero_always_shows_the_sign_in_page(app, client):
    _, challenge = pkce()
    first = register_client(app, "first-party", first_party=True)[0]
    code_for(app, first)
    for _ in range(2):
        page = authorize(app, first, challenge, max_age="0")
        assert 'action="/authorize/login"' in page.text


# -- the token endpoint ----------------------------------------------------------------------------
def test_a_code_replayed_is_refused_and_revokes_what_it_gave(app, client):
    code, verifier = code_for(app, client[0])
    first = exchange(app, *client, code, verifier).json
    app.get("/userinfo", headers=bearer(first["access_token"]), status=200)
    again = exchange(app, *client, code, verifier, status=400).json
    assert again["error"] == "invalid_grant"
    assert "already used" in again["error_description"]
    # RFC 6749 §4.1.2: the tokens issued from it are revoked, access and refresh.
    app.get("/userinfo", headers=bearer(first["access_token"]), status=401)
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": client[0]["id"],
        "client_secret": client[1],
    }
    assert app.post("/auth/token", refresh, status=400).json["error"] == "invalid_grant"


def test_a_code_used_by_another_client_is_refused_and_left_to_its_own(app, client):
    code, verifier = code_for(app, client[0])
    thief, thief_secret = register_client(app, "thief")
    answer = exchange(app, thief, thief_secret, code, verifier, status=400).json
    assert answer["error"] == "invalid_grant"
    assert exchange(app, *client, code, verifier).json["token_type"] == "Bearer"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_verifier": "x" * 43}, "invalid_grant"),
        ({"code_verifier": None}, "invalid_request"),
        ({"redirect_uri": "https://app.example.org/other"}, "invalid_grant"),
        ({"redirect_uri": None}, "invalid_grant"),
        ({"code": "made-up"}, "invalid_grant"),
        ({"code": None}, "invalid_request"),
    ],
)
def test_the_code_exchange_checks_verifier_redirect_uri_and_code(app, client, overrides, error):
    code, verifier = code_for(app, client[0])
    answer = exchange(app, *client, code, verifier, status=400, **overrides)
    assert answer.json["error"] == error
    assert answer.headers["Cache-Control"] == "no-store"
    # Nothing was spent: the right request still works.
    assert exchange(app, *client, code, verifier).json["token_type"] == "Bearer"


def test_an_expired_code_is_refused(app, client, clock):
    code, verifier = code_for(app, client[0])
    clock.advance(61)
    answer = exchange(app, *client, code, verifier, status=400).json
    assert answer == {
        "error": "invalid_grant",
        "error_description": "The authorization code expired",
    }


@pytest.mark.parametrize(
    ("credentials", "basic"),
    [
        ({"client_secret": "wrong"}, False),
        ({"client_secret": None}, False),
        ({"client_id": "nobody"}, False),
    ],
)
def test_a_confidential_client_must_authenticate(app, client, credentials, basic):
    code, verifier = code_for(app, client[0])
    answer = exchange(app, *client, code, verifier, status=401, **credentials)
    assert answer.json["error"] == "invalid_client"
    assert ("WWW-Authenticate" in answer.headers) is basic


def test_a_wrong_basic_secret_gets_the_basic_challenge(app, client):
    code, verifier = code_for(app, client[0])
    app.authorization = ("Basic", (client[0]["id"], "wrong"))
    answer = exchange(app, client[0], None, code, verifier, client_id=None, status=401)
    app.authorization = None
    assert answer.json["error"] == "invalid_client"
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="tokenauth"'


def test_a_public_client_has_no_secret(app):
    public, _ = register_client(app, "spa", public=True)
    code, verifier = code_for(app, public)
    answer = exchange(app, public, "invented", code, verifier, status=401)
    assert answer.json["error"] == "invalid_client"


def test_a_refresh_token_works_only_for_its_client(app, client):
    code, verifier = code_for(app, client[0])
    tokens = exchange(app, *client, code, verifier).json
    other, other_secret = register_client(app, "other")
    for credentials in ({}, {"client_id": other["id"], "client_secret": other_secret}):
        body = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        answer = app.post("/auth/token", {**body, **credentials}, status=400).json
        assert answer["error"] == "invalid_grant"
    # Neither attempt spent it.
    body = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": client[0]["id"],
        "client_secret": client[1],
    }
    assert app.post("/auth/token", body, status=200).json["refresh_token"]


def test_a_code_from_a_sign_in_that_ended_is_refused(app, client):
    code, verifier = code_for(app, client[0])
    components = app.app.components
    user = components.accounts.find_by_name("alice")
    components.sessions.revoke_others(user["id"], keep_sid=None)
    answer = exchange(app, *client, code, verifier, status=400).json
    assert answer["error"] == "invalid_grant"


# -- the sign-in and consent forms ---------------------------------------------------------------
def test_a_wrong_password_shows_the_form_again_with_a_generic_message(app, client):
    _, challenge = pkce()
    page = authorize(app, client[0], challenge)
    for username in ("alice", "nobody"):
        again = sign_in(app, page, username, "wrong password entirely", status=400)
        assert "The username or password is incorrect." in again.text
        assert f'value="{username}"' in again.text
        assert not [c for c in again.headers.getall("Set-Cookie") if "tokenauth-sso" in c]
        assert handle_of(again) == handle_of(page)


def test_the_login_throttle_answers_429_with_the_form(make_app, make_config):
    app = browser_cookies(make_app(make_config(login_max_failures=2)))
    register(app, "alice")
    client, _ = register_client(app, "throttled")
    _, challenge = pkce()
    page = authorize(app, client, challenge)
    for _ in range(2):
        sign_in(app, page, "alice", "wrong password entirely", status=400)
    throttled = sign_in(app, page, "alice", PASSWORD, status=429)
    assert int(throttled.headers["Retry-After"]) > 0
    assert "Too many attempts" in throttled.text
    assert 'action="/authorize/login"' in throttled.text


def test_the_forms_refuse_another_browser_another_site_and_a_used_request(app, client):
    _, challenge = pkce()
    page = authorize(app, client[0], challenge)
    form = {"request": handle_of(page), "username": "alice", "password": PASSWORD}
    # Another site posting the form: refused before anything is checked.
    for site in ("cross-site", "same-site", "none"):
        answer = app.post("/authorize/login", form, headers={"Sec-Fetch-Site": site}, status=400)
        assert_error_page(answer)
    answer = app.post(
        "/authorize/login", form, headers={"Origin": "https://evil.example"}, status=400
    )
    assert_error_page(answer)
    # The handle in another browser (login CSRF with the attacker's own request): refused.
    stranger = browser_cookies(type(app)(app.app, extra_environ=app.extra_environ))
    assert_error_page(stranger.post("/authorize/login", form, headers=SAME_ORIGIN_FORM, status=400))
    assert_error_page(app.post("/authorize/login", {**form, "request": "x"}, status=400))
    # The real form works once; the consent it leads to answers once.
    asked = sign_in(app, page)
    answer = app.post(
        "/authorize/consent",
        {"request": handle_of(asked), "decision": "allow"},
        headers=SAME_ORIGIN_FORM,
    )
    redirected(answer)
    again = app.post(
        "/authorize/consent",
        {"request": handle_of(asked), "decision": "allow"},
        headers=SAME_ORIGIN_FORM,
        status=400,
    )
    assert_error_page(again)


def test_a_sign_in_page_expires(app, client, clock):
    _, challenge = pkce()
    page = authorize(app, client[0], challenge)
    clock.advance(601)
    assert_error_page(sign_in(app, page, status=400))


def test_nothing_secret_reaches_a_page_or_a_redirect(app, client, db):
    code, verifier = code_for(app, client[0])
    answer = exchange(app, *client, code, verifier)
    (record,) = db.codes.find()
    assert code not in str(record) and record["_id"] != code  # codes are kept as hashes
    (stored,) = db.clients.find()
    assert client[1] not in str(stored)  # and client secrets
    assert "secret_hash" in stored
    sessions = list(db.sessions.find())
    assert all(answer.json["refresh_token"] not in str(s) for s in sessions)
