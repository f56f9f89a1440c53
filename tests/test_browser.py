"""The browser client (public/) in headless Chromium against a real gunicorn server.

Each test drives the page as a person would and asserts what the page shows. Every tab
records console errors, uncaught exceptions and CSP violations, and each test fails on any.
Screenshots of the main states go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from helpers import ADMIN_PASSWORD, BIN, PASSWORD, ROOT, bearer, service_env

from keys import CLOCK_SKEW

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
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
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 360, "height": 780}
ADMIN = "ada-admin"

# Chromium logs every 4xx fetch as "Failed to load resource" at level error. These are the
# answers the client asks for on purpose and turns into messages; anything else fails.
HANDLED_API_STATUSES = {400, 401, 409, 422, 429}
API_PREFIXES = ("/users", "/auth/", "/persons")
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")

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
    ("Margaret Hamilton", "margaret@example.org", 89),
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

    def __init__(self, browser: Browser, base_url: str, name: str) -> None:
        self.name = name
        self.context = browser.new_context(base_url=base_url, viewport=DESKTOP)
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.calls: list[tuple[str, str, int, str | None]] = []
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
        self.calls.append((request.method, urlsplit(request.url).path, response.status, grant))

    def shot(self, label: str) -> Path:
        """A full-page screenshot in tests/artifacts/."""
        path = ARTIFACTS / f"{self.name}-{label}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def refresh_token(self) -> str | None:
        """What the client keeps in this tab's sessionStorage."""
        return self.page.evaluate("sessionStorage.getItem('tokenauth.refresh_token')")

    def focused_id(self) -> str:
        """The id of the element that has the keyboard focus."""
        return self.page.evaluate("document.activeElement && document.activeElement.id")

    def assert_clean(self) -> None:
        """No console error, uncaught exception or CSP violation happened in this tab."""
        assert self.problems == []


@pytest.fixture
def open_tab(browser) -> Iterator[Callable[[str, str], Tab]]:
    """Open tabs (each its own browser context) and close them at teardown."""
    tabs: list[Tab] = []

    def open_(base_url: str, name: str) -> Tab:
        tab = Tab(browser, base_url, name)
        tabs.append(tab)
        return tab

    yield open_
    for tab in tabs:
        tab.context.close()


@pytest.fixture
def create_admin(mongo_uri, db_name, tmp_path) -> Callable[[str], None]:
    """Create an admin with the CLI, as an operator would."""

    def create(username: str = ADMIN) -> None:
        env = service_env(
            TOKENAUTH_MONGODB_URI=mongo_uri,
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
def seed_persons(base_url: str, people=PEOPLE) -> list[str]:
    """Create persons through the API as the admin; their names in the service's page order."""
    token = requests.post(
        f"{base_url}/auth/token",
        json={"grant_type": "password", "username": ADMIN, "password": ADMIN_PASSWORD},
        timeout=30,
    ).json()["access_token"]
    for name, email, age in people:
        answer = requests.post(
            f"{base_url}/persons",
            json={"name": name, "email": email, "age": age},
            headers=bearer(token),
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
    # Pages are sorted by id, and ids from two workers in one second need not follow creation.
    listed = requests.get(f"{base_url}/persons?limit=200", headers=bearer(token), timeout=30)
    return [person["name"] for person in listed.json()["items"]]


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
    expect(page.locator("#app-heading")).to_have_text(f"Welcome, {username}")
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


# -- tests --------------------------------------------------------------------------------
def test_person_registers_pages_persons_and_logs_out(gunicorn_server, create_admin, open_tab):
    base = gunicorn_server()
    create_admin()
    names = seed_persons(base)
    assert sorted(names) == sorted(NAMES)
    tab = open_tab(base, "user")
    page = tab.page

    page.goto("/")
    expect_login_form(tab)
    expect(page.get_by_role("heading", name="Create an account", exact=True)).to_be_visible()
    # The password rules are on the page before anyone types.
    expect(page.locator("#register-password-hint")).to_contain_text("15 to 256 characters")
    expect(page.locator("#register-password-hint")).to_contain_text("commonly used password")
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
    assert not [c for c in tab.calls if c[1] == "/users"], "the mismatch must not reach the service"

    # The service's own field errors appear next to the field they name.
    register.get_by_label("Password", exact=True).fill("too short")
    register.get_by_label("Confirm password").fill("too short")
    register.get_by_role("button", name="Create account").click()
    expect(page.locator("#register-password-error")).to_have_text(
        "Password must be at least 15 characters."
    )
    expect(page.locator("#register-confirm-error")).to_be_empty()
    assert tab.focused_id() == "register-password"
    tab.shot("02-error-register")

    register.get_by_label("Username").fill(ADMIN)
    register.get_by_label("Password", exact=True).fill(PASSWORD)
    register.get_by_label("Confirm password").fill(PASSWORD)
    register.get_by_role("button", name="Create account").click()
    expect(page.locator("#register-username-error")).to_have_text(
        "That username is taken. Choose another one."
    )
    assert tab.focused_id() == "register-username"

    # Registering logs the person in; focus goes to the page heading.
    register.get_by_label("Username").fill("grace")
    register.get_by_role("button", name="Create account").click()
    expect_logged_in(tab, "grace")
    expect(page.locator("#session-roles")).to_have_text("user")
    expect(page.locator("#user-summary")).to_have_text(
        "You are logged in as grace with the role user."
    )
    assert tab.focused_id() == "app-heading"
    expect(row_names(page)).to_have_text(names[:10])
    # Not an admin: no editing controls.
    expect(page.locator("#person-editor")).to_be_hidden()
    expect(page.get_by_role("button", name=re.compile("^(Edit|Delete) "))).to_have_count(0)

    # Paging: forward to the end and back to the start over the cursor.
    page.get_by_label("Rows per page").select_option("5")
    expect(row_names(page)).to_have_text(names[:5])
    expect(page.locator("#page-info")).to_have_text("Page 1 · 5 persons")
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()
    tab.shot("03-logged-in-persons")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    tab.shot("03-logged-in-persons-360")
    page.set_viewport_size(DESKTOP)

    page.get_by_role("button", name="Next").click()
    expect(row_names(page)).to_have_text(names[5:10])
    expect(page.locator("#page-info")).to_have_text("Page 2 · 5 persons")
    page.get_by_role("button", name="Next").click()
    expect(row_names(page)).to_have_text(names[10:])
    expect(page.locator("#page-info")).to_have_text("Page 3 · 2 persons")
    expect(page.get_by_role("button", name="Next")).to_be_disabled()
    assert tab.focused_id() == "prev-page", "focus leaves the disabled button for its twin"
    page.get_by_role("button", name="Previous").click()
    expect(row_names(page)).to_have_text(names[5:10])
    page.get_by_role("button", name="Previous").click()
    expect(row_names(page)).to_have_text(names[:5])
    expect(page.get_by_role("button", name="Previous")).to_be_disabled()

    # A slow answer shows a loading state, and the table comes back when the answer does.
    held = []
    page.route("**/persons?*", lambda route: held.append(route))
    page.get_by_label("Rows per page").select_option("10")
    expect(page.locator("#persons-loading")).to_be_visible()
    expect(page.locator("#persons")).to_have_attribute("aria-busy", "true")
    held[0].continue_()
    page.unroute("**/persons?*")
    expect(page.locator("#persons-loading")).to_be_hidden()
    expect(row_names(page)).to_have_text(names[:10])
    expect(page.locator("#page-info")).to_have_text("Page 1 · 10 persons")

    # A reload forgets the access token; the refresh token in sessionStorage restores the session.
    before = tab.refresh_token()
    assert before
    page.reload()
    expect_logged_in(tab, "grace")
    expect(row_names(page)).to_have_text(names[:10])
    assert tab.refresh_token() not in (None, before), "the refresh token rotates"

    # Logging out ends the session on the service and in the tab; a reload stays logged out.
    page.get_by_role("button", name="Log out").click()
    expect_login_form(tab)
    expect(page.locator("#status")).to_have_text("You are logged out.")
    assert tab.refresh_token() is None
    assert [c[:3] for c in tab.calls if c[1] in ("/auth/logout", "/auth/revoke")] == [
        ("POST", "/auth/logout", 204),
        ("POST", "/auth/revoke", 200),
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
    log_in(tab, "grace", PASSWORD)
    expect_logged_in(tab, "grace")
    page.get_by_role("button", name="Log out").click()
    expect_login_form(tab)

    # Too many failures: the 429 becomes a wait in words, and the button waits too.
    for _ in range(5):
        with page.expect_response("**/auth/token") as answer:
            log_in(tab, "mallory", "guessing-yet-another-password")
        assert answer.value.status == 400
    with page.expect_response("**/auth/token") as answer:
        log_in(tab, "mallory", "guessing-yet-another-password")
    assert answer.value.status == 429
    alert = page.locator("#login-form [data-form-alert]")
    expect(alert).to_contain_text(re.compile(r"^Too many attempts\. Please wait \d+ minutes"))
    log_in_button = page.locator("#login-form").get_by_role("button", name="Log in")
    expect(log_in_button).to_be_disabled()
    tab.shot("04-error-throttled")
    # The throttle counts per username: another name may try at once.
    page.locator("#login-username").fill("grace")
    expect(log_in_button).to_be_enabled()
    tab.assert_clean()


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
        "No persons yet. Add the first one with the form below."
    )
    expect(page.locator("#persons-table")).to_be_hidden()
    tab.shot("05-admin-empty")

    form = page.locator("#person-form")
    # Checked in the page: a missing name.
    form.get_by_label("Email").fill("ada@example.org")
    form.get_by_role("button", name="Add person").click()
    expect(page.locator("#person-name-error")).to_have_text("Enter a name.")
    assert tab.focused_id() == "person-name"
    # Checked by the service: the browser accepts a dotless domain, the service does not.
    form.get_by_label("Name").fill("Ada Lovelace")
    form.get_by_label("Email").fill("ada@localhost")
    form.get_by_role("button", name="Add person").click()
    expect(page.locator("#person-email-error")).to_have_text("Email must be a valid email address.")
    expect(page.locator("#person-name-error")).to_be_empty()
    assert tab.focused_id() == "person-email"

    form.get_by_label("Email").fill("ada@example.org")
    form.get_by_label("Age").fill("36")
    form.get_by_role("button", name="Add person").click()
    expect(page.locator("#status")).to_have_text("Added Ada Lovelace.")
    expect_names(page, ["Ada Lovelace"])
    expect(form.get_by_label("Name")).to_have_value("")
    assert tab.focused_id() == "person-name", "ready for the next person"
    for name, email, age in PEOPLE[1:4]:
        form.get_by_label("Name").fill(name)
        form.get_by_label("Email").fill(email)
        form.get_by_label("Age").fill("" if age is None else str(age))
        form.get_by_role("button", name="Add person").click()
        expect(page.locator("#status")).to_have_text(f"Added {name}.")
    expect_names(page, NAMES[:4])

    # Edit: the form fills in, the table shows the change, focus returns to the row.
    page.get_by_role("button", name="Edit Alan Turing").click()
    expect(page.locator("#person-form-heading")).to_have_text("Edit Alan Turing")
    assert tab.focused_id() == "person-name"
    expect(form.get_by_label("Email")).to_have_value("alan@example.org")
    form.get_by_label("Name").fill("Alan M. Turing")
    form.get_by_label("Age").fill("")
    form.get_by_role("button", name="Save changes").click()
    expect(page.locator("#status")).to_have_text("Saved changes to Alan M. Turing.")
    row = page.locator("#persons-body tr", has_text="Alan M. Turing")
    expect(row.locator("td.num")).to_have_text("—")
    expect(page.locator("#person-form-heading")).to_have_text("Add a person")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "Edit Alan M. Turing"
    )
    tab.shot("06-admin-persons")

    # Delete asks inside the page; Escape backs out, the keyboard alone confirms.
    page.get_by_role("button", name="Delete Grace Hopper").click()
    confirm = page.get_by_role("group", name="Confirm deleting Grace Hopper")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Delete Grace Hopper? This cannot be undone.")
    assert page.evaluate("document.activeElement.textContent") == "Cancel"
    tab.shot("07-admin-confirm-delete")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    tab.shot("07-admin-confirm-delete-360")
    page.set_viewport_size(DESKTOP)
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect_names(page, ["Ada Lovelace", "Alan M. Turing", *NAMES[2:4]])
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "Delete Grace Hopper"
    )
    page.keyboard.press("Enter")
    expect(confirm).to_be_visible()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Yes, delete"
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_have_text("Deleted Grace Hopper.")
    expect_names(page, ["Ada Lovelace", "Alan M. Turing", "Edsger Dijkstra"])
    assert tab.focused_id() == "persons-heading"
    deletes = [c[:3] for c in tab.calls if c[0] == "DELETE"]
    assert len(deletes) == 1 and deletes[0][2] == 204
    tab.assert_clean()


def test_expired_access_token_is_refreshed_unnoticed(gunicorn_server, create_admin, open_tab):
    ttl = 2
    base = gunicorn_server({"TOKENAUTH_ACCESS_TTL": str(ttl)})
    create_admin()
    names = seed_persons(base)
    tab = open_tab(base, "refresh")
    page = tab.page

    page.goto("/")
    with page.expect_response("**/auth/token") as login_answer:
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
        ("POST", "/auth/token", 200, "refresh_token"),
        ("GET", "/persons", 200, None),
    ]

    # When the refresh fails too (the session was revoked elsewhere), back to the login form.
    revoked = requests.post(f"{base}/auth/revoke", json={"token": tab.refresh_token()}, timeout=30)
    assert revoked.status_code == 200
    time.sleep(2.5)  # the contract: revocation reaches every worker within 2 s
    page.get_by_role("button", name="Previous").click()
    expect_login_form(tab)
    expect(page.locator("#alert")).to_have_text("Your session has ended. Please log in again.")
    assert tab.focused_id() == "login-username"
    assert tab.refresh_token() is None
    tab.shot("08-error-session-ended")
    tab.assert_clean()
