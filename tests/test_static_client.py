"""GET / serves the browser client with strict headers; every JSON answer has nosniff."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import pytest
from helpers import PASSWORD, bearer, login, register

PUBLIC = Path(__file__).resolve().parent.parent / "public"


def csp_directives(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    directives = {}
    for part in header.split(";"):
        tokens = part.split()
        if tokens:
            directives.setdefault(tokens[0].lower(), tokens[1:])
    return directives


class InlineCode(HTMLParser):
    """Finds what a CSP without 'unsafe-inline' would block: inline scripts and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names:
            self._in_inline_script = True
        self.found += [f"{tag} {name}=" for name, _ in attrs if name.startswith("on")]
        self.found += [
            f"{tag} href=javascript:"
            for name, value in attrs
            if name == "href" and (value or "").strip().lower().startswith("javascript:")
        ]

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script and data.strip():
            self.found.append("inline <script>")


def test_root_serves_index_html(app):
    answer = app.get("/")
    assert answer.status_int == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.body == (PUBLIC / "index.html").read_bytes()


def test_root_has_the_security_headers_of_html(app):
    headers = app.get("/").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    policy = csp_directives(headers["Content-Security-Policy"])
    scripts = policy.get("script-src", policy.get("default-src"))
    assert scripts, "no script-src nor default-src: scripts from anywhere"
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert "*" not in scripts and "data:" not in scripts
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy.get("object-src", policy.get("default-src")) in (["'none'"], ["'self'"])


def test_the_page_needs_no_inline_code_the_policy_would_block():
    parser = InlineCode()
    parser.feed((PUBLIC / "index.html").read_text(encoding="utf-8"))
    assert parser.found == []


def test_every_file_the_page_loads_is_served_with_its_type(app):
    html = (PUBLIC / "index.html").read_text(encoding="utf-8")
    local = re.findall(r'(?:src|href)="(/[^"/][^"]*)"', html)
    assert local, "the page loads no script or style of its own"
    types = {".js": "text/javascript", ".css": "text/css"}
    for path in local:
        answer = app.get(path)
        assert answer.status_int == 200
        assert answer.body == (PUBLIC / path.lstrip("/")).read_bytes()
        expected = types.get(Path(path).suffix)
        if expected:
            assert answer.headers["Content-Type"].split(";")[0] == expected
        assert answer.headers["X-Content-Type-Options"] == "nosniff"


def imports_of(module: str) -> set[str]:
    """The paths of the modules a module of public/ imports statically."""
    source = (PUBLIC / module.lstrip("/")).read_text(encoding="utf-8")
    specifiers = re.findall(r"^import .+ from '([^']+)';$", source, re.MULTILINE)
    return {urljoin(module, specifier) for specifier in specifiers}


def module_graph(entry: str) -> set[str]:
    """The entry module and every module it imports, directly or not."""
    found, todo = set(), [entry]
    while todo:
        module = todo.pop()
        if module not in found:
            found.add(module)
            todo += imports_of(module)
    return found


def test_the_client_keeps_no_token_where_scripts_can_read_it():
    # The cookie flow only: no grant, revoke or bearer logout calls, no token storage.
    sources = {path.name: path.read_text(encoding="utf-8") for path in PUBLIC.glob("*.js")}
    for name, text in sources.items():
        for banned in (
            "/auth/token",
            "/auth/revoke",
            "/auth/logout",
            "localStorage",
            "document.cookie",
        ):
            assert banned not in text, f"{name} mentions {banned}"
    # sessionStorage keeps the persons list's page cursors, nothing else.
    assert [name for name, text in sources.items() if "sessionStorage" in text] == [
        "view-persons.js"
    ]
    assert "'/auth/session/refresh'" in sources["api.js"]
    assert "'X-Requested-With'" in sources["api.js"]


def test_the_page_preloads_every_module_of_its_one_entry_module():
    html = (PUBLIC / "index.html").read_text(encoding="utf-8")
    entries = re.findall(r'<script type="module" src="([^"]+)"></script>', html)
    assert entries == ["/main.js"]
    assert re.findall(r"<script\b", html) == ["<script"], "one script: the entry module"
    preloaded = re.findall(r'<link rel="modulepreload" href="([^"]+)">', html)
    graph = module_graph("/main.js")
    # Preloads fetch the modules at once rather than one level of imports after another.
    assert sorted(preloaded) == sorted(graph - {"/main.js"})
    assert graph == {f"/{p.name}" for p in PUBLIC.glob("*.js")}, "a module nothing imports"


@pytest.fixture
def tokens(app, admin_token) -> dict[str, str]:
    """An admin's access token and a user's refresh token."""
    register(app, "alice")
    return {"admin": admin_token, "refresh": login(app, "alice").json["refresh_token"]}


JSON_ANSWERS = [
    # (method, path, body, who, status)
    ("GET", "/health", None, None, 200),
    ("GET", "/openapi.json", None, None, 200),
    ("GET", "/.well-known/jwks.json", None, None, 200),
    ("GET", "/.well-known/oauth-authorization-server", None, None, 200),
    ("GET", "/users/me", None, "admin", 200),
    ("GET", "/users", None, "admin", 200),
    ("GET", "/persons", None, "admin", 200),
    ("GET", "/persons?order=name", None, "admin", 200),
    ("GET", "/auth/policy", None, None, 200),
    ("GET", "/users/me/events", None, "admin", 200),
    ("POST", "/persons", {"name": "Ada", "email": "ada@example.org"}, "admin", 201),
    ("POST", "/users", {"username": "newcomer", "password": PASSWORD}, None, 201),
    ("POST", "/auth/token", {"username": "alice", "password": PASSWORD}, None, 200),
    ("POST", "/auth/introspect", {"token": "x"}, "admin", 200),
    ("POST", "/auth/revoke", {"token": "x"}, None, 200),
    ("GET", "/users/me", None, None, 401),
    ("GET", "/persons/0123456789abcdef01234567", None, "admin", 404),
    ("GET", "/no/such/route", None, None, 404),
    ("POST", "/health", None, None, 405),
    ("POST", "/persons", {"name": ""}, "admin", 422),
    ("POST", "/auth/token", {"grant_type": "nope"}, None, 400),
]


def test_every_json_answer_has_nosniff(app, tokens):
    for method, path, body, who, status in JSON_ANSWERS:
        headers = bearer(tokens[who]) if who else {}
        if body is None:
            answer = app.request(path, method=method, headers=headers, expect_errors=True)
        else:
            answer = app.post_json(path, body, headers=headers, expect_errors=True)
        case = f"{method} {path}"
        assert answer.status_int == status, f"{case}: {answer.text}"
        media_type = answer.headers["Content-Type"].split(";")[0]
        assert media_type in ("application/json", "application/problem+json"), case
        assert answer.headers["X-Content-Type-Options"] == "nosniff", case


def test_answers_without_a_body_have_nosniff_too(app, tokens):
    answer = app.get("/auth/verify", headers=bearer(tokens["admin"]))
    assert answer.status_int == 204
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
