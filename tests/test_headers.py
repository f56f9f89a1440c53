"""Security headers on every answer, a strict CSP on HTML, and CORS only where configured."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from helpers import bearer, login, register

import errors
from config import Config
from errors import ConfigError
from service import PUBLIC_DIR

ALLOWED = "https://app.example"
STRANGER = "https://evil.example"
CORS_HEADERS = (
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Credentials",
    "Access-Control-Expose-Headers",
)


def sample_answers(app, user_token: str, admin_token: str) -> dict[str, object]:
    """One answer of every route and of every kind of error, named by what it is."""
    user, admin = bearer(user_token), bearer(admin_token)
    person = app.post_json(
        "/persons", {"name": "Ada", "email": "ada@example.org"}, headers=admin
    ).json
    refresh = login(app, "alice").json["refresh_token"]
    return {
        "GET / (html)": app.get("/"),
        **{f"GET /{p.name}": app.get(f"/{p.name}") for p in sorted(PUBLIC_DIR.glob("*.js"))},
        "GET /app.css": app.get("/app.css"),
        "GET /health": app.get("/health"),
        "GET /openapi.json": app.get("/openapi.json"),
        "GET jwks": app.get("/.well-known/jwks.json"),
        "GET metadata": app.get("/.well-known/oauth-authorization-server"),
        "POST /users 201": register(app, "bob"),
        "POST /users 409": register(app, "bob", status=409),
        "POST /users 422": app.post_json("/users", {"username": "x"}, status=422),
        "POST /users 400": app.post("/users", b"{", content_type="application/json", status=400),
        "POST /users 415": app.post("/users", b"x", content_type="text/plain", status=415),
        "POST /users 413": app.post(
            "/users", b"x" * 70_000, content_type="application/json", status=413
        ),
        "GET /users (admin)": app.get("/users", headers=admin),
        "GET /users 403": app.get("/users", headers=user, status=403),
        "GET /users/me": app.get("/users/me", headers=user),
        "GET /users/me 401": app.get("/users/me", status=401),
        "GET /users/me 401 bad token": app.get(
            "/users/me", headers=bearer("not.a.token"), status=401
        ),
        "POST /auth/token 200": login(app, "alice"),
        "POST /auth/token 400": login(app, "alice", "wrong-password-here", status=400),
        "POST /auth/token refresh": app.post_json(
            "/auth/token", {"grant_type": "refresh_token", "refresh_token": refresh}
        ),
        "POST /auth/revoke": app.post_json("/auth/revoke", {"token": "whatever"}),
        "POST /auth/introspect": app.post_json(
            "/auth/introspect", {"token": "whatever"}, headers=admin
        ),
        "GET /auth/verify": app.get("/auth/verify", headers=user),
        "GET /persons": app.get("/persons", headers=user),
        "GET /persons 422": app.get("/persons?limit=0", headers=user, status=422),
        "POST /persons 201": app.post_json(
            "/persons", {"name": "Bo", "email": "bo@example.org"}, headers=admin
        ),
        "GET /persons/{id}": app.get(f"/persons/{person['id']}", headers=user),
        "GET /persons/{id} 404": app.get("/persons/nope", headers=user, status=404),
        "PATCH /persons/{id}": app.patch_json(
            f"/persons/{person['id']}", {"age": 40}, headers=admin
        ),
        "DELETE /persons/{id}": app.delete(f"/persons/{person['id']}", headers=admin),
        "GET unknown 404": app.get("/no/such/route", status=404),
        "DELETE /health 405": app.delete("/health", status=405),
        "OPTIONS /users": app.options("/users"),
        "POST /auth/logout": app.post("/auth/logout", headers=user),
    }


def test_every_answer_says_nosniff(app, user_token, admin_token):
    answers = sample_answers(app, user_token, admin_token)
    missing = [
        name
        for name, response in answers.items()
        if response.headers.get("X-Content-Type-Options") != "nosniff"
    ]
    assert missing == []


def test_throttled_answers_say_nosniff(make_app, make_config):
    app = make_app(make_config(login_max_failures=1, registration_limit=1))
    register(app, "alice")
    login(app, "alice", "wrong-password-here", status=400)
    assert login(app, "alice", status=429).headers["X-Content-Type-Options"] == "nosniff"
    assert register(app, "bob", status=429).headers["X-Content-Type-Options"] == "nosniff"


def test_server_errors_say_nosniff(app, user_token, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(app.app.components.store, "find_user", broken)
    answer = app.get("/users/me", headers=bearer(user_token), status=500)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_unavailable_answers_say_nosniff(app, user_token, monkeypatch):
    def away(*args, **kwargs):
        raise errors.Unavailable("test")

    monkeypatch.setattr(app.app.components.store, "find_user", away)
    answer = app.get("/users/me", headers=bearer(user_token), status=503)
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Retry-After"] == "5"


# -- HTML --------------------------------------------------------------------------------
def csp_directives(header: str) -> dict[str, list[str]]:
    directives = {}
    for part in header.split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


def test_html_carries_a_strict_csp_and_no_referrer(app):
    page = app.get("/")
    assert page.headers["Content-Type"].startswith("text/html")
    csp = csp_directives(page.headers["Content-Security-Policy"])
    scripts = csp.get("script-src", csp.get("default-src"))
    assert scripts == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert not any("unsafe" in value for values in csp.values() for value in values)
    assert page.headers["Referrer-Policy"] == "no-referrer"


class _InlineCode(HTMLParser):
    """Collects what a strict CSP would block: inline scripts and event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.found += [f"{tag} {name}=" for name in attributes if name.startswith("on")]
        self.found += [f"{tag} href=javascript:" for v in attributes.values() if _js_url(v)]
        self._in_script = tag == "script" and "src" not in attributes

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.found.append("inline <script>")


def _js_url(value: str | None) -> bool:
    return bool(value) and re.match(r"\s*javascript:", value, re.IGNORECASE) is not None


@pytest.mark.parametrize("page", sorted(p.name for p in PUBLIC_DIR.glob("*.html")))
def test_the_client_pages_hold_no_inline_script(page):
    parser = _InlineCode()
    parser.feed((PUBLIC_DIR / page).read_text(encoding="utf-8"))
    assert parser.found == []


def test_api_answers_forbid_framing_and_content(app):
    answer = app.get("/health")
    csp = csp_directives(answer.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]


# -- CORS --------------------------------------------------------------------------------
def cors_headers(response) -> dict[str, str]:
    return {name: response.headers[name] for name in CORS_HEADERS if name in response.headers}


def preflight(app, path: str, origin: str, method: str = "POST"):
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    return app.options(path, headers=headers, status="*")


def test_cors_is_off_by_default(app, user_token):
    simple = app.get("/users/me", headers={**bearer(user_token), "Origin": ALLOWED})
    assert cors_headers(simple) == {}
    assert cors_headers(preflight(app, "/users", ALLOWED)) == {}
    assert cors_headers(preflight(app, "/persons", ALLOWED, "GET")) == {}


@pytest.fixture
def cors_app(make_app, make_config):
    return make_app(make_config(cors_origins=(ALLOWED, "http://localhost:5173")))


def test_a_listed_origin_may_read_answers(cors_app):
    register(cors_app, "alice")
    answer = login(cors_app, "alice", headers={"Origin": ALLOWED})
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Origin" in answer.headers["Vary"]
    exposed = {
        h.strip().lower() for h in answer.headers["Access-Control-Expose-Headers"].split(",")
    }
    assert {"location", "retry-after", "www-authenticate"} <= exposed
    assert "Access-Control-Allow-Credentials" not in answer.headers  # bearer tokens, no cookies


def test_a_listed_origin_may_read_errors(cors_app):
    answer = cors_app.get("/users/me", headers={"Origin": ALLOWED}, status=401)
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED


@pytest.mark.parametrize(
    ("path", "method"), [("/users", "POST"), ("/auth/token", "POST"), ("/persons", "GET")]
)
def test_a_listed_origin_passes_the_preflight(cors_app, path, method):
    answer = preflight(cors_app, path, ALLOWED, method)
    assert answer.status_int == 200
    assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert method in answer.headers["Access-Control-Allow-Methods"]
    allowed_headers = answer.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed_headers
    assert "content-type" in allowed_headers
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


def test_the_second_listed_origin_is_allowed_too(cors_app):
    answer = preflight(cors_app, "/users", "http://localhost:5173")
    assert answer.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"


def test_an_origin_not_listed_gets_no_cors_headers(cors_app):
    register(cors_app, "alice")
    assert cors_headers(login(cors_app, "alice", headers={"Origin": STRANGER})) == {}
    assert cors_headers(preflight(cors_app, "/users", STRANGER)) == {}
    assert cors_headers(preflight(cors_app, "/users", ALLOWED + ".evil.example")) == {}
    # Shared caches must not hand an allowed origin's answer to this one (JWKS is cacheable).
    jwks = cors_app.get("/.well-known/jwks.json", headers={"Origin": STRANGER})
    assert cors_headers(jwks) == {}
    assert "Origin" in jwks.headers["Vary"]


def test_cors_origins_are_read_from_the_environment():
    config = Config.from_env({"TOKENAUTH_CORS_ORIGINS": f"{ALLOWED}/, http://localhost:5173"})
    assert config.cors_origins == (ALLOWED, "http://localhost:5173")
    assert Config.from_env({}).cors_origins == ()
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"TOKENAUTH_CORS_ORIGINS": "app.example"})
    assert refused.value.variable == "TOKENAUTH_CORS_ORIGINS"
