"""The service's exceptions: one tree, data in attributes, mapped to HTTP once (web.py)."""

from __future__ import annotations


class TokenauthError(Exception):
    """Base of every exception the service raises on purpose."""


class ConfigError(TokenauthError):
    """A configuration value that cannot be used; names the variable."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


# -- the database ---------------------------------------------------------------------------
class StoreError(TokenauthError):
    """Base of the store's exceptions."""


class Conflict(StoreError):
    """A unique field already holds this value (or, with `message`, the field's state
    forbids the change: "is already active")."""

    def __init__(self, field: str, message: str | None = None) -> None:
        super().__init__(f"{field} {message or 'already exists'}")
        self.field = field
        self.message = message


class LastAdmin(TokenauthError):
    """The change would leave no active admin."""


class Unavailable(StoreError):
    """MongoDB could not be reached or did not answer in time."""


# -- requests -------------------------------------------------------------------------------
class InvalidInput(TokenauthError):
    """Fields that break their schema or a rule; `errors` lists every (field, message)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field} {message}" for field, message in errors))
        self.errors = errors


class Throttled(TokenauthError):
    """Too many attempts; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


# -- trust ----------------------------------------------------------------------------------
class InvalidGrant(TokenauthError):
    """A grant that cannot be honoured (RFC 6749 §5.2 `invalid_grant`)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidToken(TokenauthError):
    """An access token that must not be accepted; the description is safe to show."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class StepUpRequired(TokenauthError):
    """The token's authentication is too old or too weak for this route (RFC 9470).

    `max_age` is the most seconds since authentication the route accepts (None: any),
    `acr_values` the level it needs ("aal2"), or None when any level will do.
    """

    def __init__(
        self, description: str, *, max_age: int | None = None, acr_values: str | None = None
    ) -> None:
        super().__init__(description)
        self.description = description
        self.max_age = max_age
        self.acr_values = acr_values


class MfaRequired(TokenauthError):
    """A right password for an account with a second factor: the login needs its second step.

    `mfa_token` names the attempt (shown once), `mfa_methods` the proofs that complete it.
    """

    def __init__(self, mfa_token: str, mfa_methods: list[str]) -> None:
        super().__init__("a second factor is required")
        self.mfa_token = mfa_token
        self.mfa_methods = mfa_methods


class RevocationsStale(TokenauthError):
    """This worker could not refresh its revocation set lately: it must not trust it."""


class ResetRefused(TokenauthError):
    """A password-reset secret that is unknown, expired, used, or outdated by a change."""


# -- the authorization server -----------------------------------------------------------------
class AuthorizationRefused(TokenauthError):
    """An authorization request refused at the client's redirect URI (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str | None):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state


class UntrustedRedirect(TokenauthError):
    """An authorization or logout request whose client or redirect URI cannot be trusted:
    shown on a page, never redirected (no open redirector)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidClient(TokenauthError):
    """Client authentication failed at the token endpoint (RFC 6749 §5.2 `invalid_client`)."""

    def __init__(self, description: str, *, basic: bool = False) -> None:
        super().__init__(description)
        self.description = description
        self.basic = basic  # the client tried HTTP Basic: answer with its challenge
