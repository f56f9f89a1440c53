"""The provider's server-rendered pages: sign-in, consent, sign-out and errors, without JS."""

# Plain HTML forms that work without JavaScript, under the same strict CSP as the client
# (no inline script or style: the client's stylesheet). Every value is escaped.

from __future__ import annotations

from html import escape

SCOPE_TEXT = {
    "openid": "Know who you are: your account's identifier",
    "profile": "See your username",
    "email": "See your email address and whether it is verified",
    "offline_access": "Keep access while you are away, until you sign out or withdraw it",
}


def _page(title: str, body: str, service_name: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light">
  <meta name="referrer" content="no-referrer">
  <title>{escape(title)} · {escape(service_name)}</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/app.css">
</head>
<body>
  <header class="site-header">
    <div class="wrap header-inner">
      <p class="brand"><span class="brand-mark" aria-hidden="true">◆</span>
        {escape(service_name)}</p>
    </div>
  </header>
  <main id="main" class="wrap">
    <section class="card">
      <h1>{escape(title)}</h1>
{body}
    </section>
  </main>
</body>
</html>
"""


def _hidden(name: str, value: str | None) -> str:
    if value is None:
        return ""
    return f'        <input type="hidden" name="{escape(name)}" value="{escape(value)}">\n'


def _alert(message: str | None) -> str:
    if not message:
        return ""
    return (
        f'      <p class="notice notice-error" role="alert" id="form-alert">{escape(message)}</p>\n'
    )


def login_page(
    *,
    service_name: str,
    client_name: str,
    handle: str,
    username: str = "",
    message: str | None = None,
) -> str:
    """Sign in to continue to a client: username and password."""
    body = (
        f'      <p class="lead">to continue to <strong>{escape(client_name)}</strong></p>\n'
        + _alert(message)
        + '      <form method="post" action="/authorize/login" id="login-form">\n'
        + _hidden("request", handle)
        + '        <div class="field"><label for="username">Username</label>\n'
        + '          <input id="username" name="username" autocomplete="username" required'
        + f' value="{escape(username)}"></div>\n'
        + '        <div class="field"><label for="password">Password</label>\n'
        + '          <input id="password" name="password" type="password"'
        + ' autocomplete="current-password" required></div>\n'
        + '        <div class="form-actions"><button class="button button-primary"'
        + ' type="submit">Sign in</button></div>\n'
        + "      </form>\n"
    )
    return _page("Sign in", body, service_name)


def second_factor_page(
    *,
    service_name: str,
    client_name: str,
    handle: str,
    mfa_token: str,
    methods: list[str],
    message: str | None = None,
) -> str:
    """The login's second step: a code from the authenticator app, or a recovery code."""
    forms = []
    fields = {
        "otp": ("otp", "The 6-digit code from your authenticator app", "one-time-code"),
        "recovery_code": ("recovery_code", "Or one of your recovery codes", "off"),
    }
    for method in methods:
        name, label, complete = fields[method]
        forms.append(
            f'      <form method="post" action="/authorize/login" id="{name}-form">\n'
            + _hidden("request", handle)
            + _hidden("mfa_token", mfa_token)
            + f'        <div class="field"><label for="{name}">{escape(label)}</label>\n'
            + f'          <input id="{name}" name="{name}" autocomplete="{complete}" required'
            + (' inputmode="numeric"' if name == "otp" else "")
            + "></div>\n"
            + '        <div class="form-actions"><button class="button button-primary"'
            + ' type="submit">Continue</button></div>\n'
            + "      </form>\n"
        )
    body = (
        f'      <p class="lead">to continue to <strong>{escape(client_name)}</strong></p>\n'
        + _alert(message)
        + "".join(forms)
    )
    return _page("Second step", body, service_name)


def consent_page(
    *,
    service_name: str,
    client_name: str,
    username: str,
    scopes: tuple[str, ...],
    handle: str,
) -> str:
    """A third-party client asks for scopes: allow or deny."""
    items = "".join(
        f'        <li data-scope="{escape(s)}">{escape(SCOPE_TEXT[s])}</li>\n' for s in scopes
    )
    asks = (
        "      <p>It will be able to:</p>\n"
        + f'      <ul class="rules" id="scopes">\n{items}      </ul>\n'
        if scopes
        else "      <p>It asks for nothing beyond signing you in.</p>\n"
    )
    body = (
        f'      <p class="lead"><strong>{escape(client_name)}</strong> wants to use your '
        f"account <strong>{escape(username)}</strong>.</p>\n"
        + asks
        + '      <form method="post" action="/authorize/consent" id="consent-form">\n'
        + _hidden("request", handle)
        + '        <div class="form-actions">\n'
        + '          <button class="button button-primary" type="submit" name="decision"'
        + ' value="allow">Allow</button>\n'
        + '          <button class="button button-secondary" type="submit" name="decision"'
        + ' value="deny">Deny</button>\n'
        + "        </div>\n      </form>\n"
        + '      <p class="hint">You can withdraw this at any time from your account\'s page.</p>\n'
    )
    return _page(f"Allow {client_name}?", body, service_name)


def error_page(*, service_name: str, title: str, message: str) -> str:
    """A request that cannot go back to where it came from."""
    body = f'      <p class="notice notice-error" role="alert" id="error">{escape(message)}</p>\n'
    return _page(title, body, service_name)


def logout_page(
    *,
    service_name: str,
    csrf: str,
    client_name: str | None,
    fields: dict[str, str],
) -> str:
    """Ask before signing out when the request cannot prove where it came from."""
    lead = (
        f'      <p class="lead"><strong>{escape(client_name)}</strong> asks to sign you out.</p>\n'
        if client_name
        else ""
    )
    body = (
        lead
        + f"      <p>Sign out of {escape(service_name)} in this browser?</p>\n"
        + '      <form method="post" action="/logout" id="logout-form">\n'
        + _hidden("csrf", csrf)
        + "".join(_hidden(name, value) for name, value in fields.items())
        + '        <div class="form-actions"><button class="button button-primary"'
        + ' type="submit">Sign out</button></div>\n'
        + "      </form>\n"
    )
    return _page("Sign out", body, service_name)


def signed_out_page(*, service_name: str) -> str:
    """The sign-out is done and there is nowhere to send the person back to."""
    body = (
        f'      <p id="signed-out">You are signed out of {escape(service_name)} in this '
        "browser.</p>\n"
    )
    return _page("Signed out", body, service_name)
