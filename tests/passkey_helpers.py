"""What the passkey tests share: the service's WebAuthn origin, registration, and sign-ins."""

from __future__ import annotations

from authenticator import SoftAuthenticator
from helpers import PASSWORD, bearer, login

# The defaults derived from the default TOKENAUTH_ISSUER, http://127.0.0.1:8000.
ORIGIN = "http://127.0.0.1:8000"
RP_ID = "127.0.0.1"
MFA_GRANT = "urn:tokenauth:params:oauth:grant-type:mfa"
PASSKEY_GRANT = "urn:tokenauth:params:oauth:grant-type:passkey"
SAME_ORIGIN = {"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-origin"}
WRONG_PASSKEY = {"error": "invalid_grant", "error_description": "The passkey is incorrect"}


def creation_options(app, token: str, **kwargs) -> dict:
    """POST /users/me/passkeys/options."""
    return app.post("/users/me/passkeys/options", headers=bearer(token), **kwargs).json


def finish_registration(app, token: str, credential: dict, challenge_id: str, **kwargs):
    """POST /users/me/passkeys with a credential (expected statuses as keywords)."""
    name = kwargs.pop("name", "Laptop")
    body = {"credential": credential, "name": name, "challenge_id": challenge_id}
    return app.post_json("/users/me/passkeys", body, headers=bearer(token), **kwargs)


def add_passkey(app, token: str, key: SoftAuthenticator, name: str = "Laptop") -> dict:
    """A whole registration with the authenticator: the new passkey."""
    options = creation_options(app, token)
    credential = key.create(options)
    return finish_registration(
        app, token, credential, options["challenge_id"], name=name, status=201
    ).json


def request_options(app, mfa_token: str | None = None) -> dict:
    """POST /auth/passkey/options, for a second step (with the mfa_token) or passwordless."""
    if mfa_token is None:
        return app.post("/auth/passkey/options", status=200).json
    return app.post_json("/auth/passkey/options", {"mfa_token": mfa_token}, status=200).json


def passwordless(app, key: SoftAuthenticator, status: int = 200, **forged):
    """The passkey grant with the authenticator's newest credential."""
    options = request_options(app)
    body = {
        "grant_type": PASSKEY_GRANT,
        "passkey": key.get(options["options"], **forged),
        "challenge_id": options["challenge_id"],
    }
    return app.post_json("/auth/token", body, status=status)


def password_then_passkey(
    app, key: SoftAuthenticator, username: str = "alice", status: int = 200, **forged
):
    """The password step (403 mfa_required), then the MFA grant with a passkey."""
    mfa_token = login(app, username, PASSWORD, status=403).json["mfa_token"]
    options = request_options(app, mfa_token)
    body = {
        "grant_type": MFA_GRANT,
        "mfa_token": mfa_token,
        "passkey": key.get(options["options"], **forged),
    }
    return app.post_json("/auth/token", body, status=status)
