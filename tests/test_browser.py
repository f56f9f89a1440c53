"""The browser client (public/) in headless Chromium against a real gunicorn server.

Each test drives the page as a person would and asserts what the page shows. Every tab
records console errors, uncaught exceptions and CSP violations, and each test fails on any.
Screenshots of the main states go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from helpers import (
    ADMIN_PASSWORD,
    BIN,
    PASSWORD,
    ROOT,
    bearer,
    free_port,
    service_env,
    wait_http,
)
from mailserver import code_in
from processes import start_gunicorn, stop
from test_sessions import CHROME, FIREFOX

from embedded import EmbeddedServer
from keys import CLOCK_SKEW

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # the test extra is not installed: the fixture below skips or fails
    sync_playwright = None

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}
ADMIN = "ada-admin"

# Chromium logs every 4xx fetch as "Failed to load resource" at level error. These are the
# answers the client asks for on purpose and turns into messages; anything else fails.
HANDLED_API_STATUSES = {400, 401, 409, 422, 429, 503}
API_PREFIXES = ("/users", "/auth/", "/persons")
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")

# The routes whose 200 answers carry an access token; the refresh token is in this cookie.
TOKEN_ROUTES = ("/auth/session", "/auth/session/refresh")
SESSION_COOKIE = "__Host-tokenauth-session"
# The service's default window: a loaded machine (2 cores, Chromium, 4 tabs) can take over
# 3 s to answer 4 held refreshes, and the last to arrive would then be reuse.
REUSE_INTERVAL = 10  # seconds
# A browser without the Web Locks API, whose tabs cannot take turns refreshing.
WITHOUT_WEB_LOCKS = "Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined });"
# Everything a script in the page can read that could hold a token.
READABLE_STATE = """() => ({
  cookie: document.cookie,
  local: JSON.stringify(Object.entries(localStorage)),
  session: JSON.stringify(Object.entries(sessionStorage)),
})"""

# Records CSP violations in the page; init scripts are injected by the browser, not by the page.
CSP_LISTENER = """
document.addEventListener('securitypolicyviolation', (e) => {
  window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} ` +
                     `at ${e.sourceFile}:${e.lineNumber} ${e.sample || ''}`);
});
"""

PEOPLE = [
    ("Ada Lovelace", "ada@example.org", 36),
    ("Alan Turing", "alan@example.org", 41),
    ("Grace Hopper", "grace@example.org", 85),
    ("Edsger Dijkstra", "edsger@example.org", 72),
    ("Barbara Liskov", "barbara@example.org", None),
    ("Donald Knuth", "don@example.org", 88),
    ("Margaret Hamilton", "margaret.hamilton@apollo-guidance.computer-history.example.org", 89),
    ("Ken Thompson", "ken@example.org", 83),
    ("Frances Allen", "fran@example.org", 88),
    ("John McCarthy", "john@example.org", 84),
    ("Radia Perlman", "radia@example.org", 74),
    ("Tony Hoare", "tony@example.org", 92),
]
NAMES = [name for name, _, _ in PEOPLE]


# -- fixtures -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium; a missing one skips locally and fails in CI."""
    reason = None
    if sync_playwright is None:
        reason = "Playwright for Python is not installed (pip install -e '.[test]')"
    elif not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true, so the browser test must run, not skip")
        pytest.skip(reason)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        expect.set_options(timeout=10_000)
        yield chromium
        chromium.close()


class Tab:
    """One browser tab on the client, recording what must never happen and the API traffic."""

    def __init__(
        self,
        browser: Browser,
        base_url: str,
        name: str,
        context: BrowserContext | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.name = name
        self.context = context or browser.new_context(
            base_url=base_url, viewport=DESKTOP, user_agent=user_agent
        )
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.calls: list[tuple[str, str, int, str | None]] = []
        self.access_tokens: list[str] = []  # every access token the service gave this tab
        self.page.expose_function("__reportCsp", lambda text: self.problems.append(f"CSP: {text}"))
        self.page.add_init_script(CSP_LISTENER)
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        self.page.on("response", self._on_response)

    def _on_console(self, message) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        failed = FAILED_LOAD.match(message.text)
        if (
            failed
            and int(failed.group(1)) in HANDLED_API_STATUSES
            and urlsplit(url).path.startswith(API_PREFIXES)
        ):
            return
        self.problems.append(f"console error: {message.text} ({url})")

    def _on_response(self, response) -> None:
        request = response.request
        grant = None
        if request.method == "POST" and urlsplit(request.url).path == "/auth/token":
            grant = (request.post_data_json or {}).get("grant_type")
        path = urlsplit(request.url).path
        self.calls.append((request.method, path, response.status, grant))
        if path in TOKEN_ROUTES and request.method == "POST" and response.status == 200:
            self.access_tokens.append(response.json()["access_token"])

    def shot(self, label: str) -> Path:
        """A full-page screenshot in tests/artifacts/."""
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def session_cookie(self) -> str | None:
        """The refresh token in the browser's HttpOnly session cookie, if there is one."""
        values = [c["value"] for c in self.context.cookies() if c["name"] == SESSION_COOKIE]
        return values[0] if values else None

    def assert_no_token_readable(self) -> None:
        """The page's script sees no cookie, and no token in localStorage or sessionStorage."""
        seen = self.page.evaluate(READABLE_STATE)
        assert seen["cookie"] == "", "the session cookie is HttpOnly"
        secrets = [*self.access_tokens, self.session_cookie()]
        assert self.access_tokens, "the test saw the access tokens it looks for"
        for secret in filter(None, secrets):
            assert secret not in seen["local"]
            assert secret not in seen["session"]

    def focused_id(self) -> str:
        """The id of the element that has the keyboard focus."""
        return self.page.evaluate("document.activeElement && document.activeElement.id")

    def assert_clean(self) -> None:
        """No console error, uncaught exception or CSP violation happened in this tab."""
        assert self.problems == []


@pytest.fixture
def open_tab(browser) -> Iterator[Callable[..., Tab]]:
    """Open tabs (each its own browser context unless given one) and close them at teardown."""
    tabs: list[Tab] = []

    def open_(base_url: str, name: str, **options) -> Tab:
        tab = Tab(browser, base_url, name, **options)
        tabs.append(tab)
        return tab

    yield open_
    for context in {id(tab.context): tab.context for tab in tabs}.values():
        context.close()


@pytest.fixture
def create_admin(mongo_uri, db_name, tmp_path) -> Callable[..., None]:
    """Create an admin with the CLI, as an operator would."""

    def create(username: str = ADMIN, uri: str = mongo_uri) -> None:
        env = service_env(
            TOKENAUTH_MONGODB_URI=uri,
            TOKENAUTH_DB_NAME=db_name,
            TOKENAUTH_DATA_DIR=str(tmp_path / "var"),
        )
        result = subprocess.run(
            [str(BIN / "tokenauth"), "create-user", username, "--admin", "--password-stdin"],
            input=ADMIN_PASSWORD + "\n",
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr

    return create


# -- helpers ------------------------------------------------------------------------------
def admin_token(base_url: str) -> str:
    """An access token of the admin, from the API."""
    return requests.post(
        f"{base_url}/auth/token",
        json={"grant_type": "password", "username": ADMIN, "password": ADMIN_PASSWORD},
        timeout=30,
    ).json()["access_token"]


def listed_names(base_url: str, order: str = "newest") -> list[str]:
    """Every person's name in the service's own order."""
    listed = requests.get(
        f"{base_url}/persons?limit=200&order={order}",
        headers=bearer(admin_token(base_url)),
        timeout=30,
    )
    assert listed.status_code == 200, listed.text
    return [person["name"] for person in listed.json()["items"]]


def seed_persons(base_url: str, people=PEOPLE) -> list[str]:
    """Create persons through the API as the admin; their names newest first."""
    token = admin_token(base_url)
    for name, email, age in people:
        answer = requests.post(
            f"{base_url}/persons",
            json={"name": name, "email": email, "age": age},
            headers=bearer(token),
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
    names = listed_names(base_url)
    assert names[: len(people)] == [name for name, _, _ in reversed(people)], "newest first"
    return names


def log_in(tab: Tab, username: str, password: str) -> None:
    """Fill the login form and press Enter in the password field, as a keyboard user does."""
    page = tab.page
    page.locator("#login-username").fill(username)
    page.locator("#login-password").fill(password)
    page.locator("#login-password").press("Enter")


def row_names(page: Page):
    return page.locator("#persons-body td.name")


def expect_names(page: Page, expected: list[str]) -> None:
    """The table shows exactly these names, in any order (ids from two workers need not sort
    by creation)."""
    deadline = time.monotonic() + 10
    while sorted(row_names(page).all_text_contents()) != sorted(expected):
        assert time.monotonic() < deadline, row_names(page).all_text_contents()
        time.sleep(0.1)


def expect_logged_in(tab: Tab, username: str) -> None:
    page = tab.page
    expect(page.locator("#app-view")).to_be_visible()
    expect(page.locator("#session-user")).to_have_text(username)
    expect(page.locator("#auth-view")).to_be_hidden()


def expect_login_form(tab: Tab) -> None:
    page = tab.page
    expect(page.get_by_role("heading", name="Log in", exact=True)).to_be_visible()
    expect(page.locator("#app-view")).to_be_hidden()
    expect(page.locator("#session-bar")).to_be_hidden()


def assert_fits(page: Page, width: int) -> None:
    """Nothing sticks out sideways: no horizontal scrolling at this width."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def hash_of(page: Page) -> str:
    """The route in the address bar."""
    return urlsplit(page.url).fragment


def email_breaks(page: Page, cell) -> list[str]:
    """The character before each line break inside the cell, as laid out."""
    return cell.evaluate(
        """(el) => {
          const tops = [];
          const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            for (let i = 0; i < node.length; i += 1) {
              const range = document.createRange();
              range.setStart(node, i);
              range.setEnd(node, i + 1);
              tops.push([node.data[i], range.getBoundingClientRect().top]);
            }
          }
          const before = [];
          for (let i = 1; i < tops.length; i += 1) {
            if (tops[i][1] > tops[i - 1][1] + 2) before.push(tops[i - 1][0]);
          }
          return before;
        }"""
    )


# -- tests --------------------------------------------------------------------------------
def test_person_registers_pages_persons_and_logs_out(gunicorn_server, create_admin, open_tab):
    base = gunicorn_server()
    create_admin()
    names = seed_persons(base)
    tab = open_tab(base, "user")
    page = tab.page

    page.goto("/")
    expect_login_form(tab)
    expect(page.get_by_role("heading", name="Create an account", exact=True)).to_be_visible()
    # The first page says what the app is and what "persons" are.
    expect(page.locator("#auth-view .intro")).to_contain_text("shared list of persons")
    # The rules come from GET /auth/policy, before anyone types.
    expect(page.locator("#register-password-hint")).to_contain_text("15 to 256 characters")
    expect(page.locator("#register-password-hint")).to_contain_text("commonly used password")
    expect(page.locator("#register-username-hint")).to_have_text(
        "3 to 64 letters, digits and . _ - @."
    )
    expect(page.locator("#register-password-count")).to_have_text("0 of 15 minimum")
    tab.shot("01-logged-out")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    tab.shot("01-logged-out-360")
    page.set_viewport_size(DESKTOP)

    # A wrong confirmation is caught in the page, shown by the field, and focused.
    register = page.locator("#register-form")
    register.get_by_label("Username").fill("grace")
    register.get_by_label("Password", exact=True).fill(PASSWORD)
    register.get_by_label("Confirm password").fill(PASSWORD + "x")
    register.get_by_role("button", name="Create account").click()
    expect(page.locator("#register-confirm-error")).to_have_text(
        "The passwords do not match. Type the same password in both fields."
    )
    expect(register.get_by_label("Confirm password")).to_have_attribute("aria-invalid", "true")
    assert tab.focused_id() == "register-confirm"

    # One rule, one number: a 5-character password gets the policy's minimum, in the page.
    register.get_by_label("Password", exact=True).fill("abcde")
    expect(page.locator("#register-password-count")).to_have_text("5 of 15 minimum")
    register.get_by_label("Confirm password").fill("abcde")
    register.get_by_role("button", name="Create account").click()
    expect(page.locator("#register-password-error")).to_have_text(
        "Password must be at least 15 characters."
    )
    expect(page.locator("#register-confirm-error")).to_be_empty()
    assert tab.focused_id() == "register-password"
    assert not [c for c in tab.calls if c[1] == "/users"], "the page checks the policy first"
    tab.shot("02-error-register")

    # The service's own field errors appear next to the field they name.
    register.get_by_label("Username").fill(ADMIN)
    register.get_by_label("Password", exact=True).fill(PASSWORD)
    register.get_by_label("Confirm password").fill(PASSWORD)
    register.get_by_role("button", name="Create account").click()
    expect(page.locator("#register-username-error")).to_have_text(
        "That username is taken. Choose another one."
    )
    assert tab.focused_id() == "register-username"

    # Registering logs the person in; focus goes to the page heading, with no ring on it.
    register.get_by_label("Username").fill("grace")
    register.get_by_role("button", name="Create account").click()
    expect_logged_in(tab, "grace")
    expect(page.locator("#session-roles")).to_have_text("user")
    assert tab.focused_id() == "persons-heading"
    assert hash_of(page) == "/persons?order=newest&size=10&page=1"
    expect(row_names(page)).to_have_text(names[:10])
    expect(page.locator("#page-info")).to_have_text("1\u201310 of 12")
    # Not an admin: no editing controls.
    expect(page.locator("#add-person")).to_be_hidden()
    expect(page.get_by_role("button", name=re.compile("^(Edit|Delete) "))).to_have_count(0)

    # Paging: forward to the end and back to the start over the cursors.
    page.get_by_label("Rows per page").select_option("5")
    expect(row_names(page)).to_have_text(names[:5])
    expect(page.locator("#page-info")).to_have_text("1\u20135 of 12")
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    page.get_by_role("button", name="Next").click()
    expect(row_names(page)).to_have_text(names[5:10])
    expect(page.locator("#page-info")).to_have_text("6\u201310 of 12")
    assert hash_of(page) == "/persons?order=newest&size=5&page=2"
    page.get_by_role("button", name="Next").click()
    expect(row_names(page)).to_have_text(names[10:])
    expect(page.locator("#page-info")).to_have_text("11\u201312 of 12")
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    assert tab.focused_id() == "prev-page", "focus leaves the disabled button for its twin"

    # Back and Forward move through the pages; a reload keeps the page.
    page.go_back()
    expect(row_names(page)).to_have_text(names[5:10])
    expect(page.locator("#page-info")).to_have_text("6\u201310 of 12")
    page.go_back()
    expect(row_names(page)).to_have_text(names[:5])
    page.go_forward()
    expect(row_names(page)).to_have_text(names[5:10])
    page.reload()
    expect_logged_in(tab, "grace")
    expect(row_names(page)).to_have_text(names[5:10])
    expect(page.locator("#page-info")).to_have_text("6\u201310 of 12")
    assert tab.focused_id() == "persons-heading"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "none", "no focus ring flashes over the heading after a reload"

    # A stated order: by name, case-insensitively.
    page.get_by_label("Order").select_option("name")
    by_name = sorted(NAMES, key=str.casefold)
    expect(row_names(page)).to_have_text(by_name[:5])
    assert hash_of(page) == "/persons?order=name&size=5&page=1"
    tab.shot("03-logged-in-persons")

    # On a phone, Next brings the list's heading into view and the focus to it.
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    tab.shot("03-logged-in-persons-360")
    page.get_by_role("button", name="Next").click()
    expect(row_names(page)).to_have_text(by_name[5:10])
    assert tab.focused_id() == "persons-heading"
    expect(page.locator("#persons-heading")).to_be_in_viewport()
    # A long address breaks only after "@" or ".", never inside a word.
    long_cell = page.locator("#persons-body td.email", has_text="apollo-guidance")
    breaks = email_breaks(page, long_cell)
    assert breaks and set(breaks) <= {"@", "."}, breaks
    short_cell = page.locator("#persons-body td.email", has_text="fran@example.org")
    assert email_breaks(page, short_cell) == [], "an address that fits stays on one line"
    page.set_viewport_size(DESKTOP)

    # A slow answer shows a loading state, and the table comes back when the answer does.
    held = []
    page.route("**/persons?*", lambda route: held.append(route))
    page.get_by_label("Rows per page").select_option("10")
    expect(page.locator("#persons-loading")).to_be_visible()
    expect(page.locator("#persons")).to_have_attribute("aria-busy", "true")
    held[0].continue_()
    page.unroute("**/persons?*")
    expect(page.locator("#persons-loading")).to_be_hidden()
    expect(row_names(page)).to_have_text(by_name[:10])
    expect(page.locator("#page-info")).to_have_text("1\u201310 of 12")

    # A reload forgets the access token; one refresh with the session cookie restores it.
    tab.assert_no_token_readable()
    before = tab.session_cookie()
    assert before
    page.reload()
    expect_logged_in(tab, "grace")
    expect(row_names(page)).to_have_text(by_name[:10])
    assert tab.session_cookie() not in (None, before), "the refresh token rotates"
    tab.assert_no_token_readable()

    # Logging out ends the session on the service and in the tab; a reload stays logged out.
    page.get_by_role("button", name="Log out").click()
    expect_login_form(tab)
    expect(page.locator("#status")).to_have_text("You are logged out.")
    assert hash_of(page) == "/login"
    assert tab.session_cookie() is None
    assert [c[:3] for c in tab.calls if c[0] == "DELETE" and c[1] == "/auth/session"] == [
        ("DELETE", "/auth/session", 204),
    ]
    page.reload()
    expect_login_form(tab)
    expect(page.locator("#persons-body tr")).to_have_count(0)

    # A wrong password is a sentence in the form, and the password field is ready again.
    log_in(tab, "grace", "not the right password at all")
    expect(page.locator("#login-form [data-form-alert]")).to_have_text(
        "Wrong username or password."
    )
    expect(page.locator("#login-password")).to_have_value("")
    assert tab.focused_id() == "login-password"

    # A bookmarked page in a fresh tab: log in, and that page shows (walked from page 1).
    fresh = open_tab(base, "bookmark")
    fresh.page.goto("/#/persons?order=name&size=5&page=3")
    expect_login_form(fresh)
    log_in(fresh, "grace", PASSWORD)
    expect(row_names(fresh.page)).to_have_text(by_name[10:])
    expect(fresh.page.locator("#page-info")).to_have_text("11\u201312 of 12")
    page_loads = [c for c in fresh.calls if c[1] == "/persons"]
    assert [c[2] for c in page_loads] == [200, 200, 200]
    fresh.assert_clean()

    # Too many failures: the 429 says until when, and the button counts down.
    for _ in range(5):
        with page.expect_response("**/auth/session") as answer:
            log_in(tab, "mallory", "guessing-yet-another-password")
        assert answer.value.status == 400
    with page.expect_response("**/auth/session") as answer:
        log_in(tab, "mallory", "guessing-yet-another-password")
    assert answer.value.status == 429
    alert = page.locator("#login-form [data-form-alert]")
    expect(alert).to_contain_text(
        re.compile(
            r"^Too many attempts\. You can try again at \d\d?:\d\d( [AP]M)? \(in \d+ minutes\)\."
        )
    )
    log_in_button = page.locator("#login-form button[type=submit]")
    expect(log_in_button).to_be_disabled()
    expect(log_in_button).to_have_text(re.compile(r"^Log in \(1?\d:\d\d\)$"))
    first = log_in_button.text_content()
    expect(log_in_button).not_to_have_text(first, timeout=3000)
    tab.shot("04-error-throttled")
    # The throttle counts per username: another name may try at once.
    page.locator("#login-username").fill("grace")
    expect(log_in_button).to_be_enabled()
    expect(log_in_button).to_have_text("Log in")
    tab.assert_clean()


def add_person(page: Page, name: str, email: str, age: str = "") -> None:
    """Open the dialog from the list's header, fill it, and submit."""
    page.locator("#add-person").click()
    dialog = page.get_by_role("dialog", name="Add a person")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Email").fill(email)
    dialog.get_by_label("Age").fill(age)
    dialog.get_by_role("button", name="Add person").click()


def expect_toast(page: Page, text: str) -> None:
    """The outcome is shown in the viewport, wherever the page is scrolled."""
    toast = page.locator("#toast")
    expect(toast).to_have_text(text)
    expect(toast).to_be_in_viewport()


def expect_marked(row) -> None:
    """The row that just changed is marked for a moment."""
    expect(row).to_have_class(re.compile(r"\bis-changed\b"))


def test_admin_adds_edits_and_deletes_a_person(gunicorn_server, create_admin, open_tab):
    base = gunicorn_server()
    create_admin()
    tab = open_tab(base, "admin")
    page = tab.page

    page.goto("/")
    log_in(tab, ADMIN, ADMIN_PASSWORD)
    expect_logged_in(tab, ADMIN)
    expect(page.locator("#session-roles .role")).to_have_text(["user", "admin"])
    expect(page.locator("#persons-empty")).to_have_text(
        "No persons yet. Add the first one with “Add person”."
    )
    expect(page.locator("#persons-table")).to_be_hidden()
    tab.shot("05-admin-empty")

    # "Add person" is in the list's header: the second Tab stop after the page size.
    page.locator("#page-size").focus()
    page.keyboard.press("Tab")
    assert tab.focused_id() == "add-person"
    page.keyboard.press("Enter")
    dialog = page.locator("#person-dialog")
    expect(dialog).to_be_visible()
    assert tab.focused_id() == "person-name"
    # Checked in the page: a missing name.
    dialog.get_by_label("Email").fill("ada@example.org")
    dialog.get_by_role("button", name="Add person").click()
    expect(page.locator("#person-name-error")).to_have_text("Enter a name.")
    assert tab.focused_id() == "person-name"
    # Checked by the service: the browser accepts a dotless domain, the service does not.
    dialog.get_by_label("Name").fill("Ada Lovelace")
    dialog.get_by_label("Email").fill("ada@localhost")
    dialog.get_by_role("button", name="Add person").click()
    expect(page.locator("#person-email-error")).to_have_text("Email must be a valid email address.")
    assert tab.focused_id() == "person-email"
    # Escape closes the dialog unsaved and gives the focus back.
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert tab.focused_id() == "add-person"
    expect(page.locator("#persons-empty")).to_be_visible()

    add_person(page, "Ada Lovelace", "ada@example.org", "36")
    expect_toast(page, "Added Ada Lovelace.")
    expect_names(page, ["Ada Lovelace"])
    expect_marked(page.locator("#persons-body tr").first)
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "Edit Ada Lovelace"
    )
    seed_persons(base, PEOPLE[1:10])
    page.get_by_label("Rows per page").select_option("5")
    newest = [name for name, _, _ in reversed(PEOPLE[:10])]
    expect(row_names(page)).to_have_text(newest[:5])

    # At both sizes, with the page scrolled down: add, edit and delete, and each outcome is
    # in view, by the row that changed.
    for size, (new_name, new_email), edited, deleted in [
        (DESKTOP, ("Radia Perlman", "radia@example.org"), "Alan Turing", "Barbara Liskov"),
        (PHONE, ("Tony Hoare", "tony@example.org"), "Grace Hopper", "Edsger Dijkstra"),
    ]:
        label = f"{size['width']}"
        page.set_viewport_size(size)
        assert_fits(page, size["width"])
        page.get_by_role("button", name="Next").click()
        expect(page.locator("#page-info")).to_contain_text("6\u201310 of ")

        # Edit in a dialog over the list: the page does not scroll away from the row.
        page.get_by_role("button", name=f"Edit {edited}").click()
        scrolled = page.evaluate("window.scrollY")
        expect(page.get_by_role("dialog", name=f"Edit {edited}")).to_be_visible()
        assert page.evaluate("window.scrollY") == scrolled
        tab.shot(f"06-admin-edit-{label}")
        dialog.get_by_label("Name").fill(f"{edited} II")
        dialog.get_by_label("Age").fill("")
        dialog.get_by_role("button", name="Save changes").click()
        expect_toast(page, f"Saved changes to {edited} II.")
        row = page.locator("#persons-body tr", has_text=f"{edited} II")
        expect(row.locator("td.num")).to_have_text("—")
        expect_marked(row)
        expect(row).to_be_in_viewport()
        assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
            f"Edit {edited} II"
        )
        tab.shot(f"06-admin-saved-{label}")

        # Delete asks inside the row; Escape backs out, the keyboard alone confirms.
        page.get_by_role("button", name=f"Delete {deleted}").click()
        confirm = page.get_by_role("group", name=f"Confirm deleting {deleted}")
        expect(confirm).to_be_visible()
        expect(confirm).to_contain_text(f"Delete {deleted}? This cannot be undone.")
        assert page.evaluate("document.activeElement.textContent") == "Cancel"
        tab.shot(f"07-admin-confirm-delete-{label}")
        page.keyboard.press("Escape")
        expect(confirm).to_be_hidden()
        assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
            f"Delete {deleted}"
        )
        page.keyboard.press("Enter")
        page.keyboard.press("Shift+Tab")
        assert page.evaluate("document.activeElement.textContent") == "Yes, delete"
        page.keyboard.press("Enter")
        expect_toast(page, f"Deleted {deleted}.")
        expect(page.locator("#persons-body tr", has_text=deleted)).to_have_count(0)
        focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
        assert focused and focused.startswith("Edit "), "the focus stays in the list"

        # Add from page 2: the list goes to page 1, newest first, with the new row marked.
        add_person(page, new_name, new_email)
        expect_toast(page, f"Added {new_name}.")
        expect(row_names(page).first).to_have_text(new_name)
        expect_marked(page.locator("#persons-body tr").first)
        expect(page.locator("#persons-body tr").first).to_be_in_viewport()
        assert hash_of(page).endswith("&page=1")
        tab.shot(f"08-admin-added-{label}")
    page.set_viewport_size(DESKTOP)
    deletes = [c[:3] for c in tab.calls if c[0] == "DELETE"]
    assert [d[2] for d in deletes] == [204, 204]
    tab.assert_clean()


def test_expired_access_token_is_refreshed_unnoticed(gunicorn_server, create_admin, open_tab):
    ttl = 2
    base = gunicorn_server({"TOKENAUTH_ACCESS_TTL": str(ttl)})
    create_admin()
    names = seed_persons(base)
    tab = open_tab(base, "refresh")
    page = tab.page

    page.goto("/")
    with page.expect_response("**/auth/session") as login_answer:
        log_in(tab, ADMIN, ADMIN_PASSWORD)
    issued = time.monotonic()
    assert login_answer.value.json()["expires_in"] == ttl
    expect_logged_in(tab, ADMIN)
    expect(row_names(page)).to_have_text(names[:10])

    # Past the lifetime and the verifier's clock-skew allowance, the access token is refused.
    time.sleep(max(0.0, issued + ttl + CLOCK_SKEW + 1.5 - time.monotonic()))
    calls_before = len(tab.calls)
    page.get_by_role("button", name="Next").click()
    expect(row_names(page)).to_have_text(names[10:])
    expect_logged_in(tab, ADMIN)
    expect(page.locator("#alert")).to_be_empty()
    expect(page.locator("#status")).to_be_empty()
    assert [c for c in tab.calls[calls_before:]] == [
        ("GET", "/persons", 401, None),
        ("POST", "/auth/session/refresh", 200, None),
        ("GET", "/persons", 200, None),
    ]

    # When the refresh fails too (the session was revoked elsewhere), back to the login form.
    revoked = requests.post(f"{base}/auth/revoke", json={"token": tab.session_cookie()}, timeout=30)
    assert revoked.status_code == 200
    time.sleep(2.5)  # the contract: revocation reaches every worker within 2 s
    page.get_by_role("button", name="Previous").click()
    expect_login_form(tab)
    expect(page.locator("#alert")).to_have_text("Your session has ended. Please log in again.")
    assert tab.focused_id() == "login-username"
    assert tab.session_cookie() is None
    tab.shot("08-error-session-ended")
    tab.assert_clean()


@pytest.fixture
def own_database(tmp_path) -> Iterator[EmbeddedServer]:
    """A wire server of this test alone, so that stopping it harms no other test."""
    server = EmbeddedServer(tmp_path / "own")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_service(own_database, db_name, tmp_path) -> Iterator[tuple[str, subprocess.Popen]]:
    """gunicorn on that server, owned by the test so that it can stop it too."""
    port = free_port()
    environ = {
        "TOKENAUTH_MONGODB_URI": own_database.uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
        "TOKENAUTH_BIND": f"127.0.0.1:{port}",
        "TOKENAUTH_ISSUER": "http://127.0.0.1:8000",
    }
    process = start_gunicorn(environ, tmp_path / "gunicorn.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        yield base, process
    finally:
        stop(process)


def test_pager_moves_only_to_a_page_that_loaded(own_database, own_service, create_admin, open_tab):
    base, service = own_service
    create_admin(uri=own_database.uri)
    names = seed_persons(base)
    tab = open_tab(base, "outage")
    page = tab.page
    page.goto("/")
    log_in(tab, ADMIN, ADMIN_PASSWORD)
    expect(row_names(page)).to_have_text(names[:10])
    expect(page.locator("#page-info")).to_have_text("1\u201310 of 12")

    # The database stops: Next fails, and nothing pretends it moved.
    own_database.stop()
    page.get_by_role("button", name="Next").click()
    problem = page.locator("#pager-problem")
    expect(problem).to_be_visible(timeout=20_000)
    expect(page.locator("#pager-problem-text")).to_have_text(
        "Could not load persons: the service is temporarily unavailable. Trying again in 5 seconds…"
    )
    expect(problem.get_by_role("button", name="Retry")).to_be_focused()
    expect(row_names(page)).to_have_text(names[:10])
    expect(page.locator("#page-info")).to_have_text("1\u201310 of 12")
    assert hash_of(page) == "/persons?order=newest&size=10&page=1"
    tab.shot("09-pager-outage")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    tab.shot("09-pager-outage-360")
    page.set_viewport_size(DESKTOP)

    # It comes back: Retry (or the automatic retry) shows page 2, labelled page 2.
    own_database.start()
    wait_http(f"{base}/health")
    problem.get_by_role("button", name="Retry").click()
    expect(row_names(page)).to_have_text(names[10:], timeout=20_000)
    expect(page.locator("#page-info")).to_have_text("11\u201312 of 12")
    expect(problem).to_be_hidden()
    assert hash_of(page) == "/persons?order=newest&size=10&page=2"
    page.get_by_role("button", name="Previous").click()
    expect(row_names(page)).to_have_text(names[:10])

    # The service itself is gone: the page does not blame the person's connection.
    stop(service)
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#pager-problem-text")).to_have_text(
        "Could not load persons. Could not reach the service: it may be down, "
        "or this device may be offline."
    )
    expect(row_names(page)).to_have_text(names[:10])
    expect(page.locator("#page-info")).to_have_text("1\u201310 of 12")
    refused = [p for p in tab.problems if "net::ERR_CONNECTION_REFUSED" in p]
    assert refused, "Chromium logs the refused connection"
    tab.problems = [p for p in tab.problems if p not in refused]
    tab.assert_clean()


NEW_PASSWORD = "marigold-tuesday-vessel-quartz-88"


def test_account_page_changes_the_password_shows_activity_and_deletes(
    gunicorn_server, create_admin, open_tab
):
    # The policy is the service's: with a minimum of 20, the page says 20; an email is required.
    base = gunicorn_server(
        {"TOKENAUTH_PASSWORD_MIN_LENGTH": "20", "TOKENAUTH_REQUIRE_EMAIL": "true"}
    )
    create_admin()
    tab = open_tab(base, "account")
    page = tab.page
    page.goto("/")
    expect(page.locator("#register-password-hint")).to_contain_text("20 to 256 characters")
    register = page.locator("#register-form")
    register.get_by_label("Password", exact=True).fill("abcde")
    expect(page.locator("#register-password-count")).to_have_text("5 of 20 minimum")
    register.get_by_label("Username").fill("carol")
    register.get_by_label("Password", exact=True).fill(PASSWORD)
    register.get_by_label("Confirm password").fill(PASSWORD)
    register.get_by_role("button", name="Create account").click()
    expect(page.locator("#register-email-error")).to_have_text(
        "Enter your email address: this service needs one to let you reset a forgotten password."
    )
    expect(page.locator("#register-email")).to_be_focused()
    register.get_by_label("Email (required)").fill("carol@example.org")
    register.get_by_role("button", name="Create account").click()
    expect_logged_in(tab, "carol")

    # Someone guesses carol's password from this machine.
    guess = requests.post(
        f"{base}/auth/token",
        json={"grant_type": "password", "username": "carol", "password": "a wrong guess, really"},
        timeout=30,
    )
    assert guess.status_code == 400

    page.get_by_role("link", name="Account").click()
    expect(page.locator("#account-heading")).to_be_focused()
    assert hash_of(page) == "/account"
    expect(page.get_by_role("link", name="Account")).to_have_attribute("aria-current", "page")
    activity = page.locator("#activity-list .activity-item")
    expect(activity.first.locator(".activity-what")).to_have_text("Failed sign-in")
    expect(activity.first.locator(".activity-details")).to_contain_text("from 127.0.0.1")
    expect(page.locator("#activity-list")).to_contain_text("Signed in")
    expect(page.locator("#activity-list")).to_contain_text("Account created")
    tab.shot("10-account")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    tab.shot("10-account-360")
    page.set_viewport_size(DESKTOP)

    # Changing the password: the page checks the policy, the service the current password.
    form = page.locator("#password-form")
    form.get_by_label("Current password").fill("not my password at all")
    form.get_by_label("New password", exact=True).fill("short")
    expect(page.locator("#new-password-count")).to_have_text("5 of 20 minimum")
    form.get_by_label("Confirm new password").fill("short")
    form.get_by_role("button", name="Change password").click()
    expect(page.locator("#new-password-error")).to_have_text(
        "New password must be at least 20 characters."
    )
    assert tab.focused_id() == "new-password"
    form.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    form.get_by_label("Confirm new password").fill(NEW_PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect(page.locator("#current-password-error")).to_have_text("Current password is incorrect.")
    assert tab.focused_id() == "current-password"
    form.get_by_label("Current password").fill(PASSWORD)
    form.get_by_role("button", name="Change password").click()
    expect_toast(page, "Password changed. Your other sessions have ended.")
    expect(activity.first.locator(".activity-what")).to_have_text("Password changed")
    expect(form.get_by_label("Current password")).to_have_value("")

    # Back and Forward between the two pages.
    page.go_back()
    expect(page.locator("#persons-page")).to_be_visible()
    assert hash_of(page) == "/persons?order=newest&size=10&page=1"
    # Forward at once, while the list may still be loading: its answer must not take the URL.
    page.go_forward()
    expect(page.locator("#account-page")).to_be_visible()
    expect(page.locator("#persons")).not_to_have_attribute("aria-busy", "true")
    assert hash_of(page) == "/account"

    # Deleting the account needs the current password, then ends everything.
    delete = page.locator("#delete-account-form")
    delete.get_by_label("Current password").fill(PASSWORD)
    delete.get_by_role("button", name="Delete my account").click()
    expect(page.locator("#delete-password-error")).to_have_text("Current password is incorrect.")
    delete.get_by_label("Current password").fill(NEW_PASSWORD)
    delete.get_by_role("button", name="Delete my account").click()
    expect_login_form(tab)
    expect(page.locator("#status")).to_have_text(
        "The account carol was deleted, with its sessions and its activity."
    )
    assert hash_of(page) == "/login"
    assert tab.session_cookie() is None
    log_in(tab, "carol", NEW_PASSWORD)
    expect(page.locator("#login-form [data-form-alert]")).to_have_text(
        "Wrong username or password."
    )

    # The last active admin cannot delete itself: the service's reason, in the form.
    log_in(tab, ADMIN, ADMIN_PASSWORD)
    expect_logged_in(tab, ADMIN)
    page.get_by_role("link", name="Account").click()
    delete.get_by_label("Current password").fill(ADMIN_PASSWORD)
    delete.get_by_role("button", name="Delete my account").click()
    expect(delete.locator("[data-form-alert]")).to_contain_text("admin")
    expect_logged_in(tab, ADMIN)
    assert [c[2] for c in tab.calls if c[:2] == ("DELETE", "/users/me")] == [422, 204, 409]
    tab.assert_clean()


# -- the cookie session, sessions and users (issue 11) -------------------------------------
# A page on another loopback port: same site as the service (cookies go along), not same origin.
ATTACKER_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>elsewhere</title><script src="/attack.js"></script></head>
<body>
<form id="refresh-form" method="post" action="{base}/auth/session/refresh"></form>
<form id="login-form" method="post" action="{base}/auth/session">
  <input name="username" value="mallory"><input name="password" value="guessing-a-password">
</form>
</body></html>
"""
ATTACKER_SCRIPT = """
window.attack = async (base) => {
  const outcomes = [];
  for (const [method, path, headers] of [
    ['POST', '/auth/session/refresh', {}],
    ['POST', '/auth/session/refresh', { 'X-Requested-With': 'fetch' }],
    ['DELETE', '/auth/session', {}],
    ['DELETE', '/auth/session', { 'X-Requested-With': 'fetch' }],
  ]) {
    try {
      const answer = await fetch(base + path, { method, headers, credentials: 'include' });
      outcomes.push(`${method} ${path} ${JSON.stringify(headers)}: ${answer.status}`);
    } catch {
      outcomes.push(`${method} ${path} ${JSON.stringify(headers)}: blocked`);
    }
  }
  // no-cors: the browser sends a simple POST with the cookie and hides the answer from us.
  for (const path of ['/auth/session/refresh', '/auth/session']) {
    const options = { method: 'POST', mode: 'no-cors', credentials: 'include' };
    const answer = await fetch(base + path, options);
    outcomes.push(`POST ${path} no-cors: ${answer.type}`);
  }
  return outcomes;
};
"""


@pytest.fixture
def other_origin() -> Iterator[Callable[[str], str]]:
    """Serve the attacker's page from another loopback port; returns its URL for a base URL."""
    servers: list[ThreadingHTTPServer] = []

    def serve(base: str) -> str:
        files = {
            "/": ("text/html", ATTACKER_PAGE.format(base=base)),
            "/attack.js": ("text/javascript", ATTACKER_SCRIPT),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                kind, text = files.get(self.path, ("text/plain", "not found"))
                body = text.encode()
                self.send_response(200 if self.path in files else 404)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def refreshes(tab: Tab) -> list[int]:
    """The statuses of this tab's cookie refreshes so far."""
    return [c[2] for c in tab.calls if c[:2] == ("POST", "/auth/session/refresh")]


def refresh_lock_state(tab: Tab) -> tuple[int, int]:
    """How many of this origin's tabs hold the client's refresh Web Lock, and how many wait."""
    state = tab.page.evaluate(
        """async () => {
            const { held, pending } = await navigator.locks.query();
            const mine = (locks) => locks.filter((l) => l.name === 'tokenauth-refresh').length;
            return [mine(held), mine(pending)];
        }"""
    )
    return state[0], state[1]


def reload_at_once(tabs: list[Tab], username: str, *, racing: bool = False) -> list[list[int]]:
    """Reload tabs of one browser at once; each must stay logged in. Returns each tab's
    refresh statuses of the reload.

    The client's tabs take turns refreshing (a Web Lock): while the first tab's refresh is
    held, the others wait for the lock and send nothing. `racing` is a browser without Web
    Locks: the tabs' refreshes are held until all are sent, then reach the service together."""
    before = [len(refreshes(tab)) for tab in tabs]
    held = []

    def hold(route) -> None:
        held.append(route)
        if racing and len(held) == len(tabs):
            for waiting in held:
                waiting.continue_()
        elif len(held) > (len(tabs) if racing else 1):
            route.continue_()  # not expected (the assertion below says so); never hang on it

    context = tabs[0].context
    context.route("**/auth/session/refresh", hold)
    try:
        for tab in tabs:
            tab.page.reload(wait_until="commit")
        if not racing:
            # Every other tab waits for the lock the first holds, its refresh unsent.
            expected = (1, len(tabs) - 1)
            deadline = time.monotonic() + 10
            while refresh_lock_state(tabs[0]) != expected and time.monotonic() < deadline:
                tabs[0].page.wait_for_timeout(50)
            assert refresh_lock_state(tabs[0]) == expected
            assert len(held) == 1, f"{len(held)} refreshes sent while one tab held the lock"
            held[0].continue_()  # the tabs after it are let through as they come (hold)
        for tab in tabs:
            try:
                expect_logged_in(tab, username)
                expect(tab.page.locator("#alert")).to_be_empty()
            except AssertionError as failure:
                statuses = [
                    refreshes(each)[start:] for each, start in zip(tabs, before, strict=True)
                ]
                raise AssertionError(f"{tab.name}: {failure}; refreshes: {statuses}") from None
    finally:
        context.unroute("**/auth/session/refresh", hold)
    statuses = [refreshes(tab)[start:] for tab, start in zip(tabs, before, strict=True)]
    for each in statuses:
        assert each == [200], statuses
    return statuses


def test_cookie_session_two_tabs_and_other_origins(gunicorn_server, open_tab, other_origin):
    base = gunicorn_server({"TOKENAUTH_REFRESH_REUSE_INTERVAL": str(REUSE_INTERVAL)})
    created = requests.post(
        f"{base}/users", json={"username": "tess", "password": PASSWORD}, timeout=30
    )
    assert created.status_code == 201, created.text
    first = open_tab(base, "tab-one")
    second = open_tab(base, "tab-two", context=first.context)  # a second tab of one browser

    # Logged out, the one cookie refresh at start finds no session: the login form, no message.
    first.page.goto("/")
    expect_login_form(first)
    expect(first.page.locator("#alert")).to_be_empty()
    assert refreshes(first) == [401]
    with first.page.expect_response("**/auth/session") as login_answer:
        log_in(first, "tess", PASSWORD)
    assert login_answer.value.status == 200
    expect_logged_in(first, "tess")
    first.assert_no_token_readable()
    assert first.session_cookie()

    # The second tab finds the session through the cookie.
    second.page.goto("/")
    expect_logged_in(second, "tess")
    assert refreshes(second) == [200]
    second.assert_no_token_readable()

    # Both tabs reloaded at once: they take turns refreshing (a Web Lock), both stay logged in.
    together = reload_at_once([first, second], "tess")
    print(f"2 tabs refreshing at once: {together}")
    # Four tabs at once: the same.
    more = [open_tab(base, f"tab-{n}", context=first.context) for n in (3, 4)]
    for tab in more:
        tab.page.goto("/")
        expect_logged_in(tab, "tess")
    together = reload_at_once([first, second, *more], "tess")
    print(f"4 tabs refreshing at once: {together}")

    # A browser without Web Locks: two tabs' refreshes of one cookie reach the service
    # together. Within the reuse window both get the same new cookie: both stay logged in.
    lockless = open_tab(base, "lockless-one")
    lockless.context.add_init_script(WITHOUT_WEB_LOCKS)
    lockless_too = open_tab(base, "lockless-two", context=lockless.context)
    lockless.page.goto("/")
    log_in(lockless, "tess", PASSWORD)
    expect_logged_in(lockless, "tess")
    lockless_too.page.goto("/")
    expect_logged_in(lockless_too, "tess")
    assert lockless.page.evaluate("navigator.locks") is None
    racing = reload_at_once([lockless, lockless_too], "tess", racing=True)
    print(f"2 tabs without Web Locks refreshing at once: {racing}")
    # Whichever answer each browser stored last, its cookie is the session's live token: it
    # still refreshes after the window (a cookie handed to one racer only would be reuse now).
    time.sleep(REUSE_INTERVAL + 0.5)
    with lockless.page.expect_response("**/auth/session/refresh") as after_window:
        lockless.page.reload()
    assert after_window.value.status == 200
    expect_logged_in(lockless, "tess")
    for tab in (lockless, lockless_too):
        tab.assert_no_token_readable()
        tab.assert_clean()
    lockless.page.get_by_role("button", name="Log out").click()
    expect_login_form(lockless)
    with first.page.expect_response("**/auth/session/refresh") as after_window:
        first.page.reload()
    assert after_window.value.status == 200
    expect_logged_in(first, "tess")
    for tab in more:
        tab.assert_no_token_readable()
        tab.assert_clean()
        tab.page.close()
    # Both keep working, each through the account page's API calls.
    for tab in (first, second):
        tab.page.get_by_role("link", name="Account").click()
        expect(tab.page.locator("#sessions-list li")).to_have_count(1)
        expect_logged_in(tab, "tess")
        tab.assert_no_token_readable()

    # Another origin posts to the cookie routes with the browser's cookie: refused, nothing changed.
    cookie = first.session_cookie()
    attacker = first.context.new_page()
    seen: list[tuple[str, str, int]] = []
    attacker.on(
        "response",
        lambda r: seen.append((r.request.method, urlsplit(r.url).path, r.status)),
    )
    attacker.goto(other_origin(base))
    outcomes = attacker.evaluate("(base) => window.attack(base)", base)
    assert outcomes == [
        "POST /auth/session/refresh {}: blocked",
        'POST /auth/session/refresh {"X-Requested-With":"fetch"}: blocked',
        "DELETE /auth/session {}: blocked",
        'DELETE /auth/session {"X-Requested-With":"fetch"}: blocked',
        "POST /auth/session/refresh no-cors: opaque",
        "POST /auth/session no-cors: opaque",
    ]
    # What the service answered the requests whose answers the browser showed (not to the
    # attacker, who got opaque ones): 403 each.
    assert [s for s in seen if s[1].startswith("/auth/")] == [
        ("POST", "/auth/session/refresh", 403),
        ("POST", "/auth/session", 403),
    ]
    for form in ("#refresh-form", "#login-form"):
        attacker.goto(other_origin(base))
        with attacker.expect_navigation() as navigation:
            attacker.locator(form).evaluate("(f) => f.submit()")
        assert navigation.value.status == 403
    attacker.close()
    assert first.session_cookie() == cookie, "refused requests change nothing"
    first.page.reload()
    expect_logged_in(first, "tess")
    first.assert_no_token_readable()
    second.assert_no_token_readable()

    # Logging out in one tab ends the session: the other tab's next refresh finds none.
    first.page.get_by_role("button", name="Log out").click()
    expect_login_form(first)
    assert first.session_cookie() is None
    second.page.reload()
    expect_login_form(second)

    # After the reuse interval, a replayed old cookie value is reuse: the whole session ends,
    # the newest cookie with it.
    log_in(first, "tess", PASSWORD)
    expect_logged_in(first, "tess")
    old = first.session_cookie()
    (stored,) = [c for c in first.context.cookies() if c["name"] == SESSION_COOKIE]
    first.page.reload()
    expect_logged_in(first, "tess")
    newest = first.session_cookie()
    assert newest not in (None, old)
    time.sleep(REUSE_INTERVAL + 0.5)
    for replayed in (old, newest):
        first.context.add_cookies([{**stored, "value": replayed}])
        with first.page.expect_response("**/auth/session/refresh") as answer:
            first.page.reload()
        assert answer.value.status == 401
        expect_login_form(first)
        assert first.session_cookie() is None
    for tab in (first, second):
        tab.assert_clean()


def test_sessions_view_and_admin_users_view(gunicorn_server, create_admin, open_tab):
    base = gunicorn_server()
    create_admin()
    created = requests.post(
        f"{base}/users", json={"username": "alice", "password": PASSWORD}, timeout=30
    )
    assert created.status_code == 201, created.text
    laptop = open_tab(base, "laptop", user_agent=CHROME)
    phone = open_tab(base, "phone", user_agent=FIREFOX)
    for tab in (laptop, phone):
        tab.page.goto("/")
        log_in(tab, "alice", PASSWORD)
        expect_logged_in(tab, "alice")
    expect(laptop.page.locator("#nav-users")).to_be_hidden()  # not an admin

    # The laptop's Sessions section lists both, marks its own, and ends the phone's.
    page = laptop.page
    page.get_by_role("link", name="Account").click()
    items = page.locator("#sessions-list li")
    expect(items).to_have_count(2)
    expect(items.filter(has_text="This session")).to_contain_text("Chrome 131 on Linux")
    expect(items.filter(has_text="Firefox 133 on Windows")).to_contain_text("from 127.0.0.1")
    laptop.shot("20-sessions")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    laptop.shot("20-sessions-phone")
    page.set_viewport_size(DESKTOP)
    page.get_by_role("button", name="End the session on Firefox 133 on Windows").click()
    expect(page.locator("#toast")).to_have_text(
        "Ended the session on Firefox 133 on Windows. It is signed out at its next request."
    )
    expect(items).to_have_count(1)
    assert_back_at_login_on_next_call(phone)

    # "End all other sessions", after the phone signed in again.
    log_in(phone, "alice", PASSWORD)
    expect_logged_in(phone, "alice")
    page.reload()
    expect(items).to_have_count(2)
    page.get_by_role("button", name="End all other sessions").click()
    expect(page.locator("#toast")).to_have_text("Ended every other session. This one goes on.")
    expect(items).to_have_count(1)
    expect(page.get_by_role("button", name="End all other sessions")).to_be_hidden()
    assert_back_at_login_on_next_call(phone)

    # The admin's Users view: disabling alice sends her open page back to the login form.
    admin = open_tab(base, "admin")
    admin.page.goto("/")
    log_in(admin, ADMIN, ADMIN_PASSWORD)
    expect_logged_in(admin, ADMIN)
    admin.page.get_by_role("link", name="Users").click()
    expect(admin.page).to_have_url(re.compile(r"#/users$"))
    rows = admin.page.locator("#users-body tr")
    expect(rows).to_have_count(2)  # in id order, which need not be creation order
    assert sorted(rows.locator("td.name").all_text_contents()) == sorted([ADMIN, "alice"])
    alice_row = rows.filter(has_text="alice")
    expect(alice_row.locator("td.status")).to_have_text("Active")
    admin.page.get_by_role("button", name="Disable alice").click()
    expect(alice_row.locator("td.status")).to_have_text("Disabled")
    expect(admin.page.locator("#toast")).to_have_text(
        "Disabled alice: every session ended, and signing in is refused."
    )
    admin.shot("21-users")
    admin.page.set_viewport_size(PHONE)  # the rows turn into labelled cards
    assert_fits(admin.page, PHONE["width"])
    admin.shot("22-users-phone")
    admin.page.set_viewport_size(DESKTOP)
    assert_back_at_login_on_next_call(laptop)
    log_in(laptop, "alice", PASSWORD)
    expect(page.locator("#login-form [data-form-alert]")).to_have_text(
        "Wrong username or password."
    )

    # The last active admin cannot disable itself: the service's reason, as a sentence.
    admin.page.get_by_role("button", name=f"Disable {ADMIN}").click()
    expect(admin.page.locator("#toast-alert")).to_have_text(
        f"{ADMIN} was not changed. The last active admin cannot do this; make another admin first."
    )
    expect(rows.filter(has_text=ADMIN).locator("td.status")).to_have_text("Active")

    # Enabled again, alice signs in; the admin's "End sessions" signs her out again.
    admin.page.get_by_role("button", name="Enable alice").click()
    expect(alice_row.locator("td.status")).to_have_text("Active")
    log_in(laptop, "alice", PASSWORD)
    expect_logged_in(laptop, "alice")
    admin.page.get_by_role("button", name="End the sessions of alice").click()
    expect(admin.page.locator("#toast")).to_have_text(
        "Ended every session of alice. They are signed out at their next request."
    )
    assert_back_at_login_on_next_call(laptop)

    # A non-admin typing #/users gets the persons page.
    log_in(laptop, "alice", PASSWORD)
    expect_logged_in(laptop, "alice")
    page.goto("/#/users")
    expect(page.locator("#persons-heading")).to_be_visible()
    expect(page.locator("#users-page")).to_be_hidden()
    for tab in (laptop, phone, admin):
        tab.assert_no_token_readable()
        tab.assert_clean()


def assert_back_at_login_on_next_call(tab: Tab) -> None:
    """After the contract's 2 s for an ended session to stop everywhere, the tab's next call
    (a move to its other page) brings the login form within 2 s."""
    time.sleep(2.5)
    other = "Persons" if hash_of(tab.page) == "/account" else "Account"
    tab.page.get_by_role("link", name=other).click()
    started = time.monotonic()
    expect(tab.page.locator("#login-form")).to_be_visible(timeout=2_000)
    expect_login_form(tab)
    expect(tab.page.locator("#alert")).to_have_text("Your session has ended. Please log in again.")
    print(f"{tab.name}: login form {time.monotonic() - started:.2f} s after its next call")


# -- the forgotten password -----------------------------------------------------------------
MAILED_ISSUER = "http://127.0.0.1:8000"  # the services' TOKENAUTH_ISSUER, which the mails link to
RESET_SENTENCE = "If an account has a verified address, a mail is on its way to it"
BAD_LINK = (
    "This link has expired, was already used or is not a reset link. Ask for a new one below."
)


def mailed_link(message, page: str, base: str) -> str:
    """The link to a client page in a mail's plain text, pointed at this test's service."""
    text = message.get_body(("plain",)).get_content()
    link = re.search(rf"^({re.escape(MAILED_ISSUER)}/#/{page}\?\S+?)\r?$", text, re.MULTILINE)
    assert link, text
    return base + link.group(1).removeprefix(MAILED_ISSUER)


def posts_to(tab: Tab, path: str) -> list[int]:
    """The statuses of the tab's POSTs to this path so far."""
    return [status for method, p, status, _ in tab.calls if method == "POST" and p == path]


def test_forgotten_password_is_reset_from_the_mailed_link(gunicorn_server, smtp_server, open_tab):
    base = gunicorn_server({"TOKENAUTH_SMTP_URL": smtp_server.url})
    tab = open_tab(base, "reset")
    page = tab.page
    page.goto("/")

    # Registering with an address: the code is mailed to it.
    register = page.locator("#register-form")
    register.get_by_label("Username").fill("dora")
    register.get_by_label("Email (optional)").fill("dora@example.org")
    register.get_by_label("Password", exact=True).fill(PASSWORD)
    register.get_by_label("Confirm password").fill(PASSWORD)
    register.get_by_role("button", name="Create account").click()
    expect_logged_in(tab, "dora")
    expect(page.locator("#status")).to_have_text(
        "Account created. Welcome, dora. A code is on its way to dora@example.org: "
        "enter it on your account page."
    )
    [verification] = smtp_server.wait_for("dora@example.org")
    code = code_in(verification)
    link = mailed_link(verification, "verify-email", base)
    assert link == f"{base}/#/verify-email?code={code}"

    # The account page says the address waits for its code.
    page.get_by_role("link", name="Account").click()
    expect(page.locator("#email-state")).to_have_text(
        "dora@example.org: not confirmed yet. Enter the code mailed to it."
    )
    expect(page.locator("#verify-form")).to_be_visible()

    # The mailed link opens a page that submits the code only when its button is pressed.
    page.goto(link)
    expect(page.locator("#verify-email-heading")).to_be_visible()
    expect(page.locator("#verify-link-code")).to_have_value(code)
    assert posts_to(tab, "/users/me/email/verify") == [], "opening the link consumes nothing"
    tab.shot("20-verify-link")
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.locator("#account-heading")).to_be_focused()
    assert hash_of(page) == "/account"
    expect(page.locator("#email-state")).to_have_text(
        "dora@example.org: confirmed. A forgotten password can be reset through it."
    )
    expect(page.locator("#verify-form")).to_be_hidden()
    expect(page.locator("#toast")).to_have_text("Your address dora@example.org is confirmed.")
    assert posts_to(tab, "/users/me/email/verify") == [204]
    expect(page.locator("#activity-list")).to_contain_text("Email address confirmed")

    page.locator("#logout-button").click()
    expect_login_form(tab)

    # Forgot password: an unknown name and the real one get the same sentence.
    page.get_by_role("link", name="Forgot password?").click()
    expect(page.locator("#forgot-heading")).to_be_focused()
    assert hash_of(page) == "/forgot"
    forgot = page.locator("#forgot-form")
    forgot.get_by_label("Username or email").fill("nobody-at-all")
    forgot.get_by_role("button", name="Send the link").click()
    expect(page.locator("#forgot-done")).to_contain_text(RESET_SENTENCE)
    unknown_answer = page.locator("#forgot-done").text_content()
    forgot.get_by_label("Username or email").fill("dora@example.org")
    forgot.get_by_role("button", name="Send the link").click()
    expect(page.locator("#forgot-done")).to_have_text(unknown_answer)
    assert posts_to(tab, "/auth/password-reset") == [202, 202]
    tab.shot("21-forgot")

    # The mail's link: opening it consumes nothing, the form's POST does.
    reset_mail = smtp_server.wait_for("dora@example.org", 2)[1]
    reset_link = mailed_link(reset_mail, "reset", base)
    assert PASSWORD not in reset_mail.as_string()
    page.goto(reset_link)
    expect(page.locator("#reset-heading")).to_be_focused()
    assert posts_to(tab, "/auth/password-reset/confirm") == []
    new_password = "a brand new passphrase for dora"
    reset = page.locator("#reset-form")
    reset.get_by_label("New password", exact=True).fill("short")
    expect(page.locator("#reset-password-count")).to_have_text("5 of 15 minimum")
    reset.get_by_label("New password", exact=True).fill(new_password)
    reset.get_by_label("Confirm new password").fill(new_password)
    tab.shot("22-reset")
    reset.get_by_role("button", name="Set the new password").click()
    expect_login_form(tab)
    assert hash_of(page) == "/login"
    expect(page.locator("#status")).to_have_text(
        "Your password was changed and every session of the account has ended. "
        "Log in with the new password."
    )
    assert posts_to(tab, "/auth/password-reset/confirm") == [204]

    # The link works once: a second use is a sentence, with the way to a new one.
    page.goto(reset_link)
    expect(page.locator("#reset-heading")).to_be_visible()
    reset.get_by_label("New password", exact=True).fill("yet another passphrase, unused")
    reset.get_by_label("Confirm new password").fill("yet another passphrase, unused")
    reset.get_by_role("button", name="Set the new password").click()
    expect(reset.locator("[data-form-alert]")).to_have_text(BAD_LINK)
    assert posts_to(tab, "/auth/password-reset/confirm") == [204, 400]
    page.get_by_role("link", name="Back to the login form").last.click()
    expect_login_form(tab)

    # The old password fails; the new one logs in.
    log_in(tab, "dora", PASSWORD)
    expect(page.locator("#login-form [data-form-alert]")).to_have_text(
        "Wrong username or password."
    )
    log_in(tab, "dora", new_password)
    expect_logged_in(tab, "dora")

    # Changing the address: the current password, a code to the new one, a notice to the old.
    page.get_by_role("link", name="Account").click()
    change = page.locator("#email-form")
    change.get_by_label("New email address").fill("dora@new.example.org")
    change.get_by_label("Current password").fill(PASSWORD)
    change.get_by_role("button", name="Change email").click()
    expect(change.locator("#email-password-error")).to_have_text("Current password is incorrect.")
    change.get_by_label("Current password").fill(new_password)
    change.get_by_role("button", name="Change email").click()
    expect(page.locator("#email-state")).to_have_text(
        "dora@new.example.org: not confirmed yet. Enter the code mailed to it."
    )
    expect(page.locator("#verify-code")).to_be_focused()
    [new_code_mail] = smtp_server.wait_for("dora@new.example.org")
    notices = smtp_server.wait_for("dora@example.org", 4)
    assert notices[-1]["Subject"] == "tokenauth: your email address was changed"
    verify = page.locator("#verify-form")
    wrong = "00000000" if code_in(new_code_mail) != "00000000" else "11111111"
    verify.get_by_label("Code").fill(wrong)
    verify.get_by_role("button", name="Confirm the address").click()
    expect(verify.locator("#verify-code-error")).to_have_text(
        "That is not the code in the latest mail. "
        "Check it, or change the address to get a new code."
    )

    # The new address's link opened logged out: log in first, then the page it names.
    page.locator("#logout-button").click()
    expect_login_form(tab)
    page.goto(mailed_link(new_code_mail, "verify-email", base))
    expect(page.locator("#status")).to_have_text(
        "Log in to confirm your email address; the confirmation page shows once you are logged in."
    )
    log_in(tab, "dora", new_password)
    expect(page.locator("#verify-email-heading")).to_be_focused()
    expect(page.locator("#verify-link-code")).to_have_value(code_in(new_code_mail))
    page.get_by_role("button", name="Confirm my address").click()
    expect(page.locator("#email-state")).to_have_text(
        "dora@new.example.org: confirmed. A forgotten password can be reset through it."
    )
    tab.shot("23-email-changed")
    tab.assert_clean()
