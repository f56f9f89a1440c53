"""Passkeys in the browser client, in headless Chromium against a real gunicorn server, with
Chromium's virtual WebAuthn authenticator (the DevTools `WebAuthn` domain over Playwright's
CDP session): register one on the Security page, sign in with it alone, use it as the second
factor after the password, rename and remove it.

Browsers refuse WebAuthn on an IP address, so the service runs with
TOKENAUTH_ISSUER=http://localhost:PORT (the RP ID and origin derive from it) and the tab opens
localhost, a secure context like 127.0.0.1.
"""

from __future__ import annotations

import time

import jwt
import requests
from helpers import PASSWORD, free_port
from test_browser import expect_logged_in, expect_login_form, log_in
from test_browser_mfa import (  # noqa: F401 - `browser` and `open_mfa_tab` are fixtures
    browser,
    expect,
    open_mfa_tab,
    open_security,
)

# Seconds a sign-in counts as recent (the service's default is 600): the test waits past it.
STEP_UP_MAX_AGE = 15


def amr_of(token: str) -> tuple[list[str], str]:
    claims = jwt.decode(token, options={"verify_signature": False})
    return claims["amr"], claims["acr"]


def virtual_authenticator(tab) -> tuple[object, str]:
    """A platform authenticator that keeps discoverable credentials and verifies its user."""
    cdp = tab.context.new_cdp_session(tab.page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def test_register_a_passkey_sign_in_with_it_and_remove_it(gunicorn_server, open_mfa_tab):  # noqa: F811
    port = free_port()
    gunicorn_server(
        {
            "TOKENAUTH_BIND": f"127.0.0.1:{port}",
            "TOKENAUTH_ISSUER": f"http://localhost:{port}",
            "TOKENAUTH_STEP_UP_MAX_AGE": str(STEP_UP_MAX_AGE),
        }
    )
    base = f"http://localhost:{port}"
    created = requests.post(
        f"{base}/users", json={"username": "pia", "password": PASSWORD}, timeout=30
    )
    assert created.status_code == 201, created.text
    tab = open_mfa_tab(base, "passkeys")
    page = tab.page
    cdp, authenticator = virtual_authenticator(tab)

    # Registration on the Security page, from a fresh password sign-in.
    page.goto("/")
    log_in(tab, "pia", PASSWORD)
    expect_logged_in(tab, "pia")
    open_security(tab)
    expect(page.locator("#passkeys-heading")).to_have_text("Passkeys")
    expect(page.locator("#passkeys-state")).to_contain_text("None yet")
    page.get_by_label("Name of the new passkey").fill("Laptop")
    page.get_by_role("button", name="Add a passkey").click()
    rows = page.locator("#passkeys-list li")
    expect(rows).to_have_count(1)
    expect(rows.first.locator(".passkey-name")).to_have_text("Laptop")
    expect(rows.first.locator(".passkey-facts")).to_contain_text("last used never")
    expect(page.locator("#passkeys-state")).to_contain_text("1 passkey")
    (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})[
        "credentials"
    ]
    assert credential["isResidentCredential"] is True
    assert credential["rpId"] == "localhost"
    tab.shot("40-passkey-added")

    # Logged out, the passkey alone signs in (a discoverable credential, user verified: aal2).
    page.get_by_role("button", name="Log out").click()
    expect_login_form(tab)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect_logged_in(tab, "pia")
    assert amr_of(tab.access_tokens[-1]) == (["hwk", "user", "mfa"], "aal2")

    # The password now asks for the second factor: the code step offers the passkey only.
    page.get_by_role("button", name="Log out").click()
    expect_login_form(tab)
    log_in(tab, "pia", PASSWORD)
    use_passkey = page.get_by_role("button", name="Use a passkey")
    expect(use_passkey).to_be_visible()
    expect(page.locator("#login-code-lead")).to_contain_text("use it to finish logging in")
    expect(page.locator("#login-otp")).to_be_hidden()
    expect(page.locator("#login-code-submit")).to_be_hidden()
    tab.shot("41-passkey-second-step")
    use_passkey.click()
    expect_logged_in(tab, "pia")
    assert amr_of(tab.access_tokens[-1]) == (["pwd", "hwk", "user", "mfa"], "aal2")

    # Rename it (no step-up), then remove it once the sign-in is older than the step-up
    # max age: "Confirm it is you" asks for the password, then for the passkey.
    open_security(tab)
    row = page.locator("#passkeys-list li").first
    expect(row.locator(".passkey-facts")).not_to_contain_text("last used never")
    row.get_by_role("button", name="Rename Laptop").click()
    page.get_by_label("New name").fill("Work laptop")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#passkeys-list .passkey-name")).to_have_text("Work laptop")
    time.sleep(STEP_UP_MAX_AGE + 1)
    page.get_by_role("button", name="Remove Work laptop").click()
    dialog = page.locator("#step-up-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Password").fill(PASSWORD)
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator("#step-up-lead")).to_have_text(
        "Your password was right. Now use your passkey."
    )
    expect(dialog.get_by_role("button", name="Confirm")).to_be_hidden()
    tab.shot("42-passkey-step-up")
    dialog.get_by_role("button", name="Use a passkey").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#passkeys-list li")).to_have_count(0)
    expect(page.locator("#passkeys-state")).to_contain_text("None yet")
    tab.shot("43-passkey-removed")

    # Without it, the password alone signs in again.
    page.get_by_role("button", name="Log out").click()
    log_in(tab, "pia", PASSWORD)
    expect_logged_in(tab, "pia")
    calls = [(method, path, status) for method, path, status, _ in tab.calls]
    assert ("POST", "/users/me/passkeys", 201) in calls
    removed = [c for c in calls if c[0] == "DELETE" and c[1].startswith("/users/me/passkeys/")]
    assert [status for _, _, status in removed] == [401, 204]  # step-up, then the retry
    tab.assert_no_token_readable()
    tab.assert_clean()
