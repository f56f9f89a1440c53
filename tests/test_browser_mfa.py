"""The browser client's second factor in headless Chromium against a real gunicorn server:
the Security view's TOTP set-up and recovery codes, the two-step login, and step-up.

TOTP codes come from pyotp in the test, from the secret the page shows. The service accepts
each step's code once and the steps either side of its own: a test that needs another code
takes the next step, waiting for it when it is not yet within reach (see `totp_code`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import pyotp
import pytest
import requests
from helpers import ADMIN_PASSWORD, PASSWORD, bearer
from test_browser import (  # noqa: F401 - `browser` and `create_admin` are fixtures
    ADMIN,
    DESKTOP,
    FAILED_LOAD,
    PHONE,
    Tab,
    assert_fits,
    browser,
    create_admin,
    expect_logged_in,
    expect_login_form,
    log_in,
)

try:
    from playwright.sync_api import expect
except ImportError:  # test_browser's `browser` fixture skips or fails then
    expect = None

STEP = 30
RECOVERY_CODE = re.compile(r"^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$")
STEP_UP_MAX_AGE = 5  # seconds; the service's default is 600


class MfaTab(Tab):
    """A Tab that also lets through Chromium's line for the 403 mfa_required of a login's
    password step, which the client answers with its code step (the page state is asserted)."""

    def _on_console(self, message) -> None:
        failed = FAILED_LOAD.match(message.text)
        path = urlsplit(message.location.get("url", "")).path
        if failed and failed.group(1) == "403" and path == "/auth/session":
            return
        super()._on_console(message)


@pytest.fixture
def open_mfa_tab(browser) -> Iterator[Callable[..., MfaTab]]:  # noqa: F811 - the fixture
    """Open MfaTabs, each its own browser context, and close them at teardown."""
    tabs: list[MfaTab] = []

    def open_(base_url: str, name: str, **options) -> MfaTab:
        tab = MfaTab(browser, base_url, name, **options)
        tabs.append(tab)
        return tab

    yield open_
    for tab in tabs:
        tab.context.close()


# -- helpers ------------------------------------------------------------------------------
def totp_code(secret: str, after_step: int) -> tuple[str, int]:
    """A code of a step later than `after_step` that the service accepts now (its own step or
    the next), waiting for the clock when the next unused step is further; the code, its step."""
    step = max(after_step + 1, int(time.time()) // STEP)
    while step > int(time.time()) // STEP + 1:
        time.sleep(0.5)
    return pyotp.TOTP(secret).at(step * STEP), step


def wrong_code(secret: str) -> str:
    """Six digits that are no code of the steps around now."""
    now = int(time.time()) // STEP
    near = {pyotp.TOTP(secret).at(s * STEP) for s in range(now - 3, now + 4)}
    return next(c for c in (f"{n:06d}" for n in range(0, 10**6, 7919)) if c not in near)


def register(base: str, username: str) -> None:
    created = requests.post(
        f"{base}/users", json={"username": username, "password": PASSWORD}, timeout=30
    )
    assert created.status_code == 201, created.text


def enable_totp_by_api(base: str, username: str, password: str = PASSWORD) -> dict:
    """TOTP on through the API, as another device would: the secret, the recovery codes, the
    confirming code's step (spent) and the refresh token of that API session."""
    for _ in range(5):
        login = requests.post(
            f"{base}/auth/token",
            json={"grant_type": "password", "username": username, "password": password},
            timeout=30,
        ).json()
        started = requests.post(
            f"{base}/users/me/mfa/totp", headers=bearer(login["access_token"]), timeout=30
        )
        if started.status_code != 401:  # 401: the sign-in grew too old meanwhile; again
            break
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    code, step = totp_code(secret, -1)
    confirmed = requests.post(
        f"{base}/users/me/mfa/totp/confirm",
        json={"code": code},
        headers=bearer(login["access_token"]),
        timeout=30,
    )
    assert confirmed.status_code == 200, confirmed.text
    return {
        "secret": secret,
        "codes": confirmed.json()["recovery_codes"],
        "step": step,
        "refresh_token": login["refresh_token"],
    }


def expect_code_step(tab: Tab) -> None:
    """The login's second step shows in place of the login form, focus on the code."""
    page = tab.page
    expect(page.locator("#login-code-form")).to_be_visible()
    expect(page.locator("#login-form")).to_be_hidden()
    form = page.locator("#login-code-form")
    expect(form.get_by_label("Code from your authenticator app")).to_be_focused()


def enter_login_code(tab: Tab, code: str) -> None:
    """Type the app's code and press Enter, as a keyboard user does."""
    field = tab.page.locator("#login-otp")
    field.fill(code)
    field.press("Enter")


def open_security(tab: Tab) -> None:
    page = tab.page
    page.get_by_role("link", name="Security").click()
    expect(page.locator("#security-heading")).to_be_focused()
    expect(page.locator("#totp-state")).not_to_be_empty()


# -- tests --------------------------------------------------------------------------------
def test_enrol_totp_in_the_security_view_then_log_in_with_a_code(gunicorn_server, open_mfa_tab):
    base = gunicorn_server()
    register(base, "mina")
    tab = open_mfa_tab(base, "mfa-enrol")
    page = tab.page
    page.goto("/")
    log_in(tab, "mina", PASSWORD)
    expect_logged_in(tab, "mina")

    open_security(tab)
    assert urlsplit(page.url).fragment == "/security"
    expect(page.get_by_role("link", name="Security")).to_have_attribute("aria-current", "page")
    expect(page.locator("#totp-state")).to_have_text("Off: logging in needs your password only.")
    expect(page.get_by_role("button", name="Regenerate recovery codes")).to_be_hidden()
    expect(page.locator("#passkeys-section")).to_have_count(1)  # the place kept for passkeys

    # Set-up: the QR code (an image from a data: URI that the CSP allows) and the secret key.
    page.get_by_role("button", name="Set up an authenticator app").click()
    expect(page.locator("#totp-enrol-heading")).to_be_focused()
    qr = page.get_by_role("img", name=re.compile("QR code"))
    expect(qr).to_have_attribute("src", re.compile(r"^data:image/svg\+xml,%3Csvg"))
    page.wait_for_function("() => document.getElementById('totp-qr').naturalWidth > 0")
    secret = page.get_by_label("Secret key").text_content().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    tab.shot("30-totp-enrol")

    # A wrong code is refused beside its field; the right one turns the app on.
    code_field = page.get_by_label("Code from the app")
    code_field.fill(wrong_code(secret))
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#totp-code-error")).to_contain_text("That is not the code the app shows")
    expect(code_field).to_be_focused()
    code, step = totp_code(secret, -1)
    code_field.fill(code)
    page.get_by_role("button", name="Turn on").click()

    # The ten recovery codes, this once: downloadable, then put away.
    codes = page.locator("#recovery-codes-list li")
    expect(codes).to_have_count(10)
    shown = [text.strip() for text in codes.all_text_contents()]
    assert all(RECOVERY_CODE.match(c) for c in shown), shown
    expect(page.locator("#recovery-codes-heading")).to_be_focused()
    expect(page.locator("#totp-state")).to_have_text(
        "On: logging in asks for a code from your authenticator app after the password."
    )
    tab.shot("31-recovery-codes")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    tab.shot("31-recovery-codes-360")
    page.set_viewport_size(DESKTOP)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == "tokenauth-recovery-codes.txt"
    saved = download.value.path().read_text(encoding="utf-8")
    assert all(c in saved.splitlines() for c in shown)
    page.get_by_role("button", name="I have saved them").click()
    expect(codes).to_have_count(0)
    expect(page.locator("#recovery-codes-panel")).to_be_hidden()
    expect(page.locator("#recovery-codes-state")).to_have_text("10 codes are left.")
    expect(page.get_by_role("button", name="Regenerate recovery codes")).to_be_visible()
    expect(page.get_by_role("button", name="Turn off the authenticator app")).to_be_visible()

    # Logged out, the password alone is not enough: the code step asks for the app's code.
    page.get_by_role("button", name="Log out").click()
    expect_login_form(tab)
    log_in(tab, "mina", PASSWORD)
    expect_code_step(tab)
    otp = page.locator("#login-otp")
    expect(otp).to_have_attribute("autocomplete", "one-time-code")
    expect(otp).to_have_attribute("inputmode", "numeric")
    tab.shot("32-login-code")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    page.set_viewport_size(DESKTOP)

    # A wrong code: the service's sentence, and the step stays for another try.
    enter_login_code(tab, wrong_code(secret))
    alert = page.locator("#login-code-form [data-form-alert]")
    expect(alert).to_contain_text("The otp is incorrect.")
    expect(page.locator("#login-code-form")).to_be_visible()
    expect(otp).to_have_value("")
    expect(otp).to_be_focused()
    expect(otp).to_have_attribute("aria-invalid", "true")

    code, step = totp_code(secret, step)
    enter_login_code(tab, code)
    expect_logged_in(tab, "mina")
    expect(page.locator("#persons-heading")).to_be_focused()
    tab.assert_no_token_readable()
    logins = [c[2] for c in tab.calls if c[:2] == ("POST", "/auth/session")]
    assert logins[-3:] == [403, 400, 200]

    # Signed in with both factors just now: new codes and turning the app off need no dialog.
    open_security(tab)
    page.get_by_role("button", name="Regenerate recovery codes").click()
    expect(codes).to_have_count(10)
    renewed = [text.strip() for text in codes.all_text_contents()]
    assert not set(renewed) & set(shown), "a new set"
    expect(page.get_by_role("button", name="Regenerate recovery codes")).to_be_hidden()
    page.get_by_role("button", name="I have saved them").click()
    expect(page.locator("#recovery-codes-state")).to_have_text("10 codes are left.")
    page.get_by_role("button", name="Turn off the authenticator app").click()
    expect(page.get_by_role("button", name="Keep it")).to_be_focused()
    page.get_by_role("button", name="Turn it off").click()
    expect(page.locator("#totp-state")).to_have_text("Off: logging in needs your password only.")
    expect(page.locator("#toast")).to_have_text(
        "The authenticator app is off: logging in needs your password only."
    )
    expect(page.get_by_role("dialog", name="Confirm it is you")).to_be_hidden()
    assert not [c for c in tab.calls if c[1].startswith("/users/me/mfa") and c[2] == 401]
    tab.assert_clean()


def test_log_in_with_a_recovery_code_which_then_is_spent(gunicorn_server, open_mfa_tab):
    base = gunicorn_server()
    register(base, "rafa")
    factor = enable_totp_by_api(base, "rafa")
    first, second = factor["codes"][:2]
    tab = open_mfa_tab(base, "mfa-recovery")
    page = tab.page
    page.goto("/")

    log_in(tab, "rafa", PASSWORD)
    expect_code_step(tab)
    page.get_by_role("button", name="Use a recovery code instead").click()
    recovery = page.locator("#login-code-form").get_by_label("Recovery code")
    expect(recovery).to_be_focused()
    expect(page.locator("#login-otp")).to_be_hidden()
    recovery.fill(first)
    recovery.press("Enter")
    expect_logged_in(tab, "rafa")
    expect(page.locator("#status")).to_have_text(
        "You used a recovery code, which now no longer works. 9 recovery codes are left."
    )
    tab.shot("33-recovery-code-used")
    open_security(tab)
    expect(page.locator("#recovery-codes-state")).to_have_text("9 codes are left.")

    # The same code a second time is refused, and the step stays.
    page.get_by_role("button", name="Log out").click()
    expect_login_form(tab)
    log_in(tab, "rafa", PASSWORD)
    expect_code_step(tab)
    page.get_by_role("button", name="Use a recovery code instead").click()
    recovery.fill(first)
    recovery.press("Enter")
    alert = page.locator("#login-code-form [data-form-alert]")
    expect(alert).to_contain_text("The recovery_code is incorrect.")
    expect(recovery).to_be_focused()
    expect(page.locator("#login-code-form")).to_be_visible()

    # An attempt the service no longer knows (expired, used) goes back to the password.
    def forged(route) -> None:
        body = route.request.post_data_json or {}
        if "mfa_token" in body:
            body["mfa_token"] = "an-attempt-that-expired"
        route.continue_(post_data=json.dumps(body))

    page.route("**/auth/session", forged)
    recovery.fill(second)
    recovery.press("Enter")
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#login-code-form")).to_be_hidden()
    expect(page.locator("#login-form [data-form-alert]")).to_have_text(
        "That login was not finished in time (it lasts 5 minutes) or can no longer be finished. "
        "Enter your password again."
    )
    expect(page.locator("#login-username")).to_have_value("rafa")
    expect(page.locator("#login-password")).to_be_focused()
    page.unroute("**/auth/session")

    # The second code, typed in capitals with spaces, still works (the service normalizes).
    log_in(tab, "rafa", PASSWORD)
    expect_code_step(tab)
    page.get_by_role("button", name="Use a recovery code instead").click()
    recovery.fill(second.upper().replace("-", " "))
    recovery.press("Enter")
    expect_logged_in(tab, "rafa")
    expect(page.locator("#status")).to_contain_text("8 recovery codes are left.")
    tab.assert_no_token_readable()
    tab.assert_clean()


def test_step_up_asks_to_confirm_it_is_you_and_retries(gunicorn_server, open_mfa_tab):
    base = gunicorn_server({"TOKENAUTH_STEP_UP_MAX_AGE": str(STEP_UP_MAX_AGE)})
    register(base, "stella")
    factor = enable_totp_by_api(base, "stella")  # its API session is the "other" one
    secret = factor["secret"]
    tab = open_mfa_tab(base, "mfa-step-up")
    page = tab.page
    page.goto("/")
    log_in(tab, "stella", PASSWORD)
    expect_code_step(tab)
    code, step = totp_code(secret, factor["step"])
    enter_login_code(tab, code)
    expect_logged_in(tab, "stella")
    signed_in = time.monotonic()
    page.get_by_role("link", name="Account").click()
    sessions = page.locator("#sessions-list li")
    expect(sessions).to_have_count(2)
    sid = page.locator("#sessions-list li", has_text="This session").get_attribute(
        "data-session-id"
    )

    # Past the step-up age, the sensitive action asks first; Cancel changes nothing.
    time.sleep(max(0.0, signed_in + STEP_UP_MAX_AGE + 1 - time.monotonic()))
    dialog = page.get_by_role("dialog", name="Confirm it is you")
    page.get_by_role("button", name="End all other sessions").click()
    expect(dialog).to_be_visible()
    expect(page.locator("#step-up-lead")).to_have_text(
        f"This action needs a sign-in within the last {STEP_UP_MAX_AGE} seconds with your "
        "second factor. Enter your password and the code from your authenticator app."
    )
    expect(dialog.get_by_label("Password")).to_be_focused()
    expect(dialog.get_by_label("Code from your authenticator app")).to_be_visible()
    tab.shot("34-step-up")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toast-alert")).to_contain_text(
        "Could not end the other sessions. This needs you to confirm it is you"
    )
    expect(sessions).to_have_count(2)

    # Again: a wrong password is refused in the dialog, which stays.
    page.get_by_role("button", name="End all other sessions").click()
    expect(dialog).to_be_visible()
    dialog.get_by_label("Password").fill("not my password, certainly")
    dialog.get_by_label("Code from your authenticator app").fill(wrong_code(secret))
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#step-up-password-error")).to_have_text("That is not your password.")
    expect(dialog.get_by_label("Password")).to_be_focused()

    # The password and a new code: the session is signed in again and the action done.
    calls_before = len(tab.calls)
    dialog.get_by_label("Password").fill(PASSWORD)
    code, step = totp_code(secret, step)
    dialog.get_by_label("Code from your authenticator app").fill(code)
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#toast")).to_have_text("Ended every other session. This one goes on.")
    expect(sessions).to_have_count(1)
    assert sessions.first.get_attribute("data-session-id") == sid, "the same session, again"
    assert [c[:3] for c in tab.calls[calls_before:]] == [
        ("POST", "/auth/session", 403),  # the password: this account has a second factor
        ("POST", "/auth/session", 200),  # the code: the cookie's session signed in again
        ("DELETE", "/users/me/sessions", 204),  # the refused call, once more
        ("GET", "/users/me/sessions", 200),
    ]
    other = requests.post(
        f"{base}/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": factor["refresh_token"]},
        timeout=30,
    )
    assert other.status_code == 400, "the API's session was ended"
    tab.assert_no_token_readable()
    tab.assert_clean()


def test_an_admin_write_asks_for_the_second_factor_over_the_persons_dialog(
    gunicorn_server,
    create_admin,  # noqa: F811 - the fixture
    open_mfa_tab,
):
    base = gunicorn_server()
    create_admin()
    tab = open_mfa_tab(base, "mfa-admin")
    page = tab.page
    page.goto("/")
    log_in(tab, ADMIN, ADMIN_PASSWORD)
    expect_logged_in(tab, ADMIN)
    # Meanwhile the admin turns TOTP on elsewhere: this page's sign-in has one factor only,
    # and admin writes need two once the admin has them (TOKENAUTH_ADMIN_REQUIRES_MFA).
    factor = enable_totp_by_api(base, ADMIN, ADMIN_PASSWORD)

    page.locator("#add-person").click()
    person = page.get_by_role("dialog", name="Add a person")
    person.get_by_label("Name").fill("Katherine Johnson")
    person.get_by_label("Email").fill("katherine@example.org")
    person.get_by_role("button", name="Add person").click()
    confirm = page.get_by_role("dialog", name="Confirm it is you")
    expect(confirm).to_be_visible()
    expect(page.locator("#step-up-lead")).to_contain_text("with your second factor")
    expect(confirm.get_by_label("Password")).to_be_focused()
    tab.shot("35-step-up-admin-write")
    calls_before = len(tab.calls)
    confirm.get_by_label("Password").fill(ADMIN_PASSWORD)
    code, _ = totp_code(factor["secret"], factor["step"])
    confirm.get_by_label("Code from your authenticator app").fill(code)
    confirm.get_by_label("Code from your authenticator app").press("Enter")
    expect(confirm).to_be_hidden()
    expect(person).to_be_hidden()
    expect(page.locator("#toast")).to_have_text("Added Katherine Johnson.")
    expect(page.locator("#persons-body td.name").first).to_have_text("Katherine Johnson")
    assert [c[:3] for c in tab.calls[calls_before:]][:3] == [
        ("POST", "/auth/session", 403),
        ("POST", "/auth/session", 200),
        ("POST", "/persons", 201),
    ]
    tab.assert_no_token_readable()
    tab.assert_clean()
