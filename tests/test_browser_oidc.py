"""A single-page app on another origin signs in with tokenauth through oidc-client-ts.

Real parts throughout: gunicorn as the provider (its issuer its own address), headless
Chromium, the app of tests/assets/spa served from a second loopback port, and the npm
package oidc-client-ts unchanged (vendored by `make vendor`). Each tab fails the test on any
console error, uncaught exception or CSP violation, on either origin.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
import test_browser
from helpers import PASSWORD, free_port
from playwright.sync_api import expect
from processes import run_cli
from spa import SpaServer
from test_browser import DESKTOP, PHONE, Tab, assert_fits, expect_logged_in, log_in

# The browser tests' fixtures: Debian's headless Chromium, and tabs that record problems.
browser = test_browser.browser
open_tab = test_browser.open_tab

APP = "spa"
# What the provider's consent page says of the two scopes the app asks for.
SCOPE_WORDS = ["Know who you are: your account's identifier", "See your username"]
SIGNED_IN = "Signed in as alice."
API_ANSWER = "The API says you are alice (user)."
REFUSED = "tokenauth refused the access token. Sign in again."
# The contract: an ended session's tokens are refused everywhere within 2 s.
REVOCATION_DEADLINE = 2.0


@pytest.fixture
def provider(gunicorn_server, mongo_uri, db_name, tmp_path) -> Iterator[tuple[str, SpaServer]]:
    """The app's server, its public client registered with the CLI, then the provider (so
    every worker knows the app's origin from its start), alice registered; (base, app)."""
    app = SpaServer()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    environ = {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
    }
    args = ["create-client", APP, "--public", "--scope", "openid", "--scope", "profile"]
    args += ["--redirect-uri", f"{app.origin}/callback"]
    args += ["--post-logout-redirect-uri", f"{app.origin}/signed-out"]
    created = run_cli(args, environ)
    assert created.returncode == 0, created.stderr
    (client_id,) = re.findall(r"^client_id: (\S+)$", created.stdout.decode(), re.MULTILINE)
    gunicorn_server({**environ, "TOKENAUTH_BIND": f"127.0.0.1:{port}", "TOKENAUTH_ISSUER": base})
    body = {"username": "alice", "password": PASSWORD}
    assert requests.post(f"{base}/users", json=body, timeout=10).status_code == 201
    app.start(authority=base, client_id=client_id)
    yield base, app
    app.stop()


# -- the app's states and the provider's pages ----------------------------------------------
def expect_app(tab: Tab, app: SpaServer, status: str) -> None:
    """The app is on its start page (no code or state left in the address) saying `status`."""
    expect(tab.page).to_have_url(f"{app.origin}/")
    expect(tab.page.locator("#status")).to_have_text(status)


def expect_signed_in(tab: Tab, app: SpaServer) -> None:
    """The app shows alice's name from the ID token and the API's answer to her token."""
    expect_app(tab, app, SIGNED_IN)
    expect(tab.page.locator("#api-answer")).to_have_text(API_ANSWER)
    expect(tab.page.get_by_role("button", name="Sign out")).to_be_visible()


def provider_answers(tab: Tab) -> list[tuple[str, int]]:
    """The provider's answers to this tab's sign-in and sign-out navigations, in order (the
    app's own paths are others)."""
    paths = ("/authorize", "/authorize/login", "/authorize/consent", "/logout")
    return [(path, status) for _, path, status, _ in tab.calls if path in paths]


def sign_in_with_password(tab: Tab, base: str) -> None:
    """On the provider's sign-in page: it names the app; alice types her password."""
    page = tab.page
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert urlsplit(page.url)[:2] == urlsplit(base)[:2], page.url
    expect(page.locator(".lead")).to_have_text(f"to continue to {APP}")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def allow(tab: Tab) -> None:
    """On the consent page: the app, alice, the two scopes in words; Allow."""
    page = tab.page
    expect(page.get_by_role("heading", name=f"Allow {APP}?")).to_be_visible()
    expect(page.locator(".lead")).to_have_text(f"{APP} wants to use your account alice.")
    expect(page.locator("#scopes li")).to_have_text(SCOPE_WORDS)
    page.get_by_role("button", name="Allow").click()


def ask_until_refused(tab: Tab, since: float) -> float:
    """Ask the API again until it refuses the app's token: the seconds from `since` to the
    request it refused. A request sent 2 s after `since` must not work (the contract)."""
    page = tab.page
    while True:
        asked_at = time.monotonic()
        page.get_by_role("button", name="Ask the API again").click()
        expect(page.locator("#api-answer")).not_to_have_text("Asking…")
        if page.locator("#status").text_content() == REFUSED:
            return asked_at - since
        expect(page.locator("#api-answer")).to_have_text(API_ANSWER)
        assert asked_at - since < REVOCATION_DEADLINE, "the token still worked after 2 s"


# -- tests ----------------------------------------------------------------------------------
def test_app_signs_in_calls_the_api_signs_in_again_by_single_sign_on_and_signs_out(
    provider, open_tab
):
    base, app = provider
    first = open_tab(app.origin, "spa-first")
    first.page.goto("/")
    expect_app(first, app, "Not signed in.")
    first.shot("01-signed-out")

    # The first sign-in: the provider's page asks for the password, then for consent (the
    # app is not first-party), and sends the browser back with a code the app redeems.
    first.page.get_by_role("button", name="Sign in with tokenauth").click()
    sign_in_with_password(first, base)
    allow(first)
    expect_signed_in(first, app)
    first.shot("02-signed-in")
    assert provider_answers(first) == [
        ("/authorize", 200),
        ("/authorize/login", 200),
        ("/authorize/consent", 303),
    ]
    exchanges = [c for c in first.calls if c[:2] == ("POST", "/auth/token")]
    assert exchanges == [("POST", "/auth/token", 200, "authorization_code")]
    assert not [c for c in first.calls if c[1] == "/userinfo"]  # the name is the ID token's
    stored = first.page.evaluate("JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert "access_token" not in stored and "id_token" not in stored  # memory only

    # A fresh tab of the same browser: the app holds no token there (memory only), and its
    # sign-in is a redirect to the provider and straight back: no password, no consent.
    second = open_tab(app.origin, "spa-second", context=first.context)
    second.page.goto("/")
    expect_app(second, app, "Not signed in.")
    second.page.get_by_role("button", name="Sign in with tokenauth").click()
    expect_signed_in(second, app)
    assert provider_answers(second) == [("/authorize", 303)]

    # Sign out (RP-initiated logout with the ID token as hint, back to the registered URI):
    # the provider's sign-in ends with every session opened through it, so the first tab's
    # token is refused too, and the next sign-in asks for the password again, not consent.
    second.page.get_by_role("button", name="Sign out").click()
    expect_app(second, app, "Signed out.")
    signed_out = time.monotonic()  # the provider answered the sign-out before this
    expect(second.page.get_by_role("button", name="Sign in with tokenauth")).to_be_visible()
    assert provider_answers(second)[-1] == ("/logout", 303)
    elapsed = ask_until_refused(first, signed_out)
    print(f"the first tab's token was refused {elapsed:.2f} s after the sign-out")
    expect(first.page.get_by_role("button", name="Sign in with tokenauth")).to_be_visible()
    second.shot("03-signed-out-again")

    first.page.get_by_role("button", name="Sign in with tokenauth").click()
    sign_in_with_password(first, base)
    expect_signed_in(first, app)  # consent was remembered
    assert provider_answers(first)[-2:] == [("/authorize", 200), ("/authorize/login", 303)]
    for tab in (first, second):
        tab.assert_clean()


def test_revoking_the_apps_access_on_the_account_page_signs_it_out_and_it_asks_again(
    provider, open_tab
):
    base, app = provider
    spa = open_tab(app.origin, "spa-revoked")
    spa.page.goto("/")
    spa.page.get_by_role("button", name="Sign in with tokenauth").click()
    sign_in_with_password(spa, base)
    allow(spa)
    expect_signed_in(spa, app)

    # tokenauth's own client, in another tab of the same browser: the account page lists the
    # app, what it may have in words, and since when; and the app's session among the others.
    own = open_tab(base, "own-client", context=spa.context)
    page = own.page
    page.goto(f"{base}/")
    log_in(own, "alice", PASSWORD)
    expect_logged_in(own, "alice")
    page.get_by_role("link", name="Account").click()
    apps = page.locator("#consents-list li")
    expect(apps).to_have_count(1)
    expect(apps.locator(".activity-what")).to_have_text(APP)
    details = apps.locator(".activity-details")
    scopes_in_words = "May know who you are and see your username"
    expect(details).to_have_text(
        re.compile(rf"^{scopes_in_words} · first allowed \w{{3}} \d{{1,2}}, \d{{4}}, ")
    )
    expect(details.locator("time")).to_have_attribute(
        "datetime", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
    )
    expect(page.locator("#consents-empty")).to_be_hidden()
    sessions = page.locator("#sessions-list li")
    expect(sessions).to_have_count(2)  # this one and the app's
    own.shot("30-apps")
    # Signing in to tokenauth's own client left the app's session alone.
    spa.page.get_by_role("button", name="Ask the API again").click()
    expect(spa.page.locator("#api-answer")).to_have_text(API_ANSWER)

    # Revoke access asks first, in the item; Cancel leaves everything as it was.
    revoke = page.get_by_role("button", name=f"Revoke access for {APP}")
    revoke.click()
    confirm = page.get_by_role("group", name=f"Confirm revoking access for {APP}")
    question = f"Revoke {APP}'s access? It is signed out and must ask you again."
    expect(confirm.locator(".confirm-text")).to_have_text(question)
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    own.shot("31-apps-confirm")
    page.set_viewport_size(PHONE)
    assert_fits(page, PHONE["width"])
    own.shot("31-apps-confirm-phone")
    page.set_viewport_size(DESKTOP)
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(revoke).to_be_focused()
    revoke.click()
    confirm.get_by_role("button", name="Yes, revoke").click()
    expect(page.locator("#toast")).to_have_text(
        f"Revoked access for {APP}. It is signed out at its next request."
    )
    revoked = time.monotonic()
    expect(apps).to_have_count(0)
    expect(page.locator("#consents-empty")).to_have_text("No app has access to your account.")
    expect(sessions).to_have_count(1)  # the app's session ended with its access
    expect(sessions).to_contain_text("This session")
    own.shot("32-apps-revoked")

    # The app's old access token is refused within the contract's 2 s.
    elapsed = ask_until_refused(spa, revoked)
    print(f"the app's token was refused {elapsed:.2f} s after its access was revoked")

    # Its next sign-in needs no password (the browser is signed in to tokenauth) but asks for
    # consent again; the account page then lists the app again.
    spa.page.get_by_role("button", name="Sign in with tokenauth").click()
    allow(spa)
    expect_signed_in(spa, app)
    assert provider_answers(spa)[-2:] == [("/authorize", 200), ("/authorize/consent", 303)]
    page.reload()
    expect(apps).to_have_count(1)
    for tab in (spa, own):
        tab.assert_clean()
