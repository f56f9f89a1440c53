"""The OAuth 2 endpoints: token, revocation, introspection, metadata and the key set."""

# RFC 6749 (token), 7009 (revocation), 7662 (introspection), 8414 (metadata), 7517 (JWKS).
# Translation only: the verbs behind them are Accounts, Sessions, SecondStep and AccessTokens.

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import falcon

import openapi
from accounts import Accounts
from auth import EVERY_METHOD, AccessTokens, Authentication, RevocationCache, require_admin
from config import Config
from errors import InvalidGrant, InvalidInput, InvalidToken, MfaRequired, Throttled
from events import EventLog
from keys import KeyRing
from mfa import FACTOR_METHODS, SecondFactors, SecondStep
from sessions import Sessions
from web import (
    CLEARED_SESSION_COOKIE,
    JSON,
    SESSION_COOKIE,
    OAuthError,
    no_store,
    read_body,
    session_cookie,
)

MFA_GRANT = "urn:tokenauth:params:oauth:grant-type:mfa"
GRANT_TYPES = ["password", "refresh_token", MFA_GRANT]


@dataclasses.dataclass
class Login:
    """A finished sign-in: the session it opened (or re-authenticated), and how the user
    proved who they are; `extra` joins the token answer (e.g. `recovery_codes_left`)."""

    user: dict[str, Any]
    sid: str
    refresh_token: str
    session_end: dt.datetime
    auth: Authentication
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class Logins:
    """Signing in: the password step, the second step, and the session they lead to."""

    def __init__(
        self,
        accounts: Accounts,
        sessions: Sessions,
        factors: SecondFactors,
        second_step: SecondStep,
        events: EventLog,
    ) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self.factors = factors
        self.second_step = second_step
        self.events = events

    def with_password(
        self, req: falcon.Request, username: str, password: str, *, cookie: str | None = None
    ) -> Login:
        """The password grant's check, throttling and events; MfaRequired (with the
        attempt's mfa_token) when the account has a second factor."""
        address, user_agent = req.context.address, req.user_agent
        methods: list[str] = []

        def second_step(user: dict[str, Any]) -> bool:
            methods.extend(self.factors.methods(user))
            return not FACTOR_METHODS.isdisjoint(methods)

        try:
            user = self.accounts.authenticate(
                username,
                password,
                address=address,
                user_agent=user_agent,
                second_step=second_step,
            )
        except Throttled as exc:
            self.events.record("login_throttled", address=address, retry_after=exc.retry_after)
            raise
        auth = Authentication(time=self.sessions.clock())
        if not FACTOR_METHODS.isdisjoint(methods):
            mfa_token = self.second_step.begin(user, auth)
            self.events.record("mfa_required", user_id=user["id"], address=address)
            raise MfaRequired(mfa_token, methods)
        return self.open(req, user, auth, cookie=cookie)

    def with_second_factor(
        self, req: falcon.Request, params: dict[str, Any], *, cookie: str | None = None
    ) -> Login:
        """Complete a login with its `mfa_token` and one proof (`otp`, `recovery_code`, ...)."""
        proofs = [name for name in self.factors.proofs() if params.get(name)]
        if len(proofs) != 1:
            names = ", ".join(self.factors.proofs())
            raise OAuthError(400, "invalid_request", f"Give exactly one of {names}")
        (proof,) = proofs
        user, auth, extra = self.second_step.complete(
            params["mfa_token"],
            proof,
            params[proof],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        login = self.open(req, user, auth, cookie=cookie)
        login.extra = extra
        return login

    def open(
        self,
        req: falcon.Request,
        user: dict[str, Any],
        auth: Authentication,
        *,
        cookie: str | None = None,
    ) -> Login:
        """The session of a finished sign-in. A cookie of the same user's live session makes
        it a re-authentication (step-up): that session takes the new sign-in and a new
        refresh token, and no second session opens. Otherwise a new session."""
        address, user_agent = req.context.address, req.user_agent
        again = None
        if cookie:
            again = self.sessions.reauthenticate(
                cookie, user, auth, address=address, user_agent=user_agent
            )
        if again is not None:
            sid, refresh_token, session_end = again
        else:
            sid, refresh_token, session_end = self.sessions.open(
                user, address=address, user_agent=user_agent, auth=auth
            )
        self.events.record(
            "login_succeeded",
            user_id=user["id"],
            sid=sid,
            address=address,
            user_agent=user_agent,
            amr=list(auth.amr),
            reauthenticated=again is not None,
        )
        return Login(user, sid, refresh_token, session_end, auth)


class Tokens:
    """POST /auth/token: the RFC 6749 token endpoint (password, refresh_token, MFA grants)."""

    public_methods = EVERY_METHOD
    oauth_errors = True

    def __init__(
        self, logins: Logins, sessions: Sessions, tokens: AccessTokens, events: EventLog
    ) -> None:
        self.logins = logins
        self.sessions = sessions
        self.tokens = tokens
        self.events = events

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Exchange credentials, a second factor or a refresh token for tokens."""
        params = self._params(req)
        grant = params.get("grant_type")
        try:
            if grant == "password":
                username, password = self._require(params, "username", "password")
                login = self.logins.with_password(req, username, password)
            elif grant == "refresh_token":
                login = self._refresh_grant(req, params)
            elif grant == MFA_GRANT:
                self._require(params, "mfa_token")
                login = self.logins.with_second_factor(req, params)
            else:
                raise OAuthError(
                    400,
                    "unsupported_grant_type",
                    "grant_type must be one of " + ", ".join(GRANT_TYPES),
                )
        except InvalidGrant as exc:
            raise OAuthError(400, "invalid_grant", exc.description) from None
        access_token, claims = self.tokens.issue(
            user=login.user, sid=login.sid, not_after=login.session_end, auth=login.auth
        )
        no_store(resp)
        resp.media = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "refresh_token": login.refresh_token,
            **login.extra,
        }

    def _params(self, req: falcon.Request) -> dict[str, Any]:
        media_type = (req.content_type or "").split(";")[0].strip().lower()
        try:
            body = read_body(req, "TokenRequest", form=True)
        except InvalidInput as first:
            exc = first
            if media_type == JSON and isinstance(req.get_media(), dict):
                body = dict(req.get_media())
                if "grant_type" not in body:  # the contract: JSON without grant_type is password
                    body["grant_type"] = "password"
                    try:
                        return openapi.validate(body, "TokenRequest")
                    except InvalidInput as again:
                        exc = again
            field, message = exc.errors[0]
            if field == "grant_type" and "must be one of" in message:
                raise OAuthError(400, "unsupported_grant_type", f"{field} {message}") from None
            raise OAuthError(400, "invalid_request", f"{field} {message}") from None
        return body

    def _require(self, params: dict[str, Any], *names: str) -> list[str]:
        missing = [n for n in names if not params.get(n)]
        if missing:
            listed = " and ".join(missing)
            verb = "are" if len(missing) > 1 else "is"
            raise OAuthError(400, "invalid_request", f"{listed} {verb} required")
        return [params[n] for n in names]

    def _refresh_grant(self, req: falcon.Request, params: dict[str, Any]) -> Login:
        (presented,) = self._require(params, "refresh_token")
        address = req.context.address
        user, session, refresh_token = self.sessions.refresh(
            presented, address=address, user_agent=req.user_agent
        )
        self.events.record(
            "token_refreshed", user_id=user["id"], sid=session["id"], address=address
        )
        return Login(
            user,
            session["id"],
            refresh_token,
            session["expires_at"],
            Authentication.of_session(session),
        )


# -- the first-party browser client's cookie flow (RFC 10017 §6.2) -------------------------
class _CookieFlow:
    """What the cookie routes share: answering with an access token and the cookie."""

    public_methods = EVERY_METHOD
    oauth_errors = True

    def __init__(
        self, logins: Logins, sessions: Sessions, tokens: AccessTokens, events: EventLog
    ) -> None:
        self.logins = logins
        self.sessions = sessions
        self.tokens = tokens
        self.events = events

    def _answer(self, resp: falcon.Response, login: Login) -> None:
        access_token, claims = self.tokens.issue(
            user=login.user, sid=login.sid, not_after=login.session_end, auth=login.auth
        )
        seconds_left = int((login.session_end - self.sessions.clock()).total_seconds())
        no_store(resp)
        resp.append_header("Set-Cookie", session_cookie(login.refresh_token, seconds_left))
        resp.media = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            **login.extra,
        }


class CookieSession(_CookieFlow):
    """POST /auth/session logs in with the refresh token in a cookie; DELETE logs out."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The password grant (or, with `mfa_token`, the MFA grant), answered with an access
        token and the refresh cookie; with a live session cookie of the same user, that
        session is re-authenticated instead of a second one opened."""
        try:
            body = read_body(req, "CookieLogin", form=True)
        except InvalidInput as exc:
            field, message = exc.errors[0]
            raise OAuthError(400, "invalid_request", f"{field} {message}") from None
        cookie = req.cookies.get(SESSION_COOKIE)
        try:
            if "mfa_token" in body:
                login = self.logins.with_second_factor(req, body, cookie=cookie)
            else:
                login = self.logins.with_password(
                    req, body["username"], body["password"], cookie=cookie
                )
        except InvalidGrant as exc:
            raise OAuthError(400, "invalid_grant", exc.description) from None
        self._answer(resp, login)

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """End the cookie's session (if any) and clear the cookie."""
        token = req.cookies.get(SESSION_COOKIE)
        session = self.sessions.session_of(token) if token else None
        if session is not None:
            self.sessions.revoke(session["id"])
            self.events.record(
                "logout",
                user_id=session["user_id"],
                sid=session["id"],
                address=req.context.address,
                user_agent=req.user_agent,
            )
        no_store(resp)
        resp.append_header("Set-Cookie", CLEARED_SESSION_COOKIE)
        resp.status = falcon.HTTP_204


class CookieRefresh(_CookieFlow):
    """POST /auth/session/refresh rotates the cookie and answers a new access token."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The refresh grant with the cookie's token; 401 and a cleared cookie without one."""
        token = req.cookies.get(SESSION_COOKIE)
        if not token:
            raise self._ended(resp, "There is no session cookie")
        address = req.context.address
        try:
            user, session, new_token = self.sessions.refresh(
                token, address=address, user_agent=req.user_agent
            )
        except InvalidGrant as exc:
            raise self._ended(resp, exc.description) from None
        self.events.record(
            "token_refreshed", user_id=user["id"], sid=session["id"], address=address
        )
        auth = Authentication.of_session(session)
        self._answer(resp, Login(user, session["id"], new_token, session["expires_at"], auth))

    @staticmethod
    def _ended(resp: falcon.Response, description: str) -> falcon.HTTPUnauthorized:
        # Headers set on the response stay on the error answer (an error cannot set cookies).
        resp.append_header("Set-Cookie", CLEARED_SESSION_COOKIE)
        no_store(resp)
        return falcon.HTTPUnauthorized(title="Unauthorized", description=description)


class Revocation:
    """POST /auth/revoke: RFC 7009, always 200 for a well-formed request."""

    public_methods = EVERY_METHOD
    oauth_errors = True

    def __init__(
        self,
        sessions: Sessions,
        tokens: AccessTokens,
        revocations: RevocationCache,
        events: EventLog,
    ) -> None:
        self.sessions = sessions
        self.tokens = tokens
        self.revocations = revocations
        self.events = events

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Revoke a refresh token's session, or one access token."""
        token = _token_param(req)
        address = req.context.address
        session = self.sessions.session_of(token)
        if session is not None:
            self.sessions.revoke(session["id"])
            self.events.record(
                "session_revoked",
                sid=session["id"],
                user_id=session["user_id"],
                address=address,
                user_agent=req.user_agent,
            )
        else:
            try:
                claims = self.tokens.verify(token)
            except InvalidToken:
                claims = None  # RFC 7009 §2.2: invalid tokens do not cause an error
            if claims is not None:
                self.revocations.revoke_access_token(claims)
                self.events.record(
                    "access_token_revoked",
                    sid=claims["sid"],
                    user_id=claims["sub"],
                    address=address,
                )
        no_store(resp)
        resp.status = falcon.HTTP_200


def _token_param(req: falcon.Request) -> str:
    try:
        body = read_body(req, "TokenRef", form=True)
    except InvalidInput as exc:
        field, message = exc.errors[0]
        raise OAuthError(400, "invalid_request", f"{field} {message}") from None
    return body["token"]


class Introspection:
    """POST /auth/introspect: RFC 7662, for admins."""

    oauth_errors = True

    def __init__(
        self,
        sessions: Sessions,
        tokens: AccessTokens,
        revocations: RevocationCache,
        issuer: str,
    ) -> None:
        self.sessions = sessions
        self.tokens = tokens
        self.revocations = revocations
        self.issuer = issuer

    @falcon.before(require_admin)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Whether a token is active, and whose it is."""
        token = _token_param(req)
        no_store(resp)
        resp.media = self._refresh_state(token) or self._access_state(token) or {"active": False}

    def _refresh_state(self, token: str) -> dict[str, Any] | None:
        session, user = self.sessions.introspect(token)
        if session is None:
            return None  # not a refresh token of ours: maybe an access token
        if user is None:
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "sub": user["id"],
            "username": user["username"],
            "roles": user["roles"],
            "sid": session["id"],
            "iat": int(session["created_at"].timestamp()),
            "exp": int(session["expires_at"].timestamp()),
            "iss": self.issuer,
            **Authentication.of_session(session).claims(),
        }

    def _access_state(self, token: str) -> dict[str, Any] | None:
        try:
            claims = self.tokens.verify(token)
        except InvalidToken:
            return None
        if self.revocations.is_revoked(claims):
            return {"active": False}
        return {
            "active": True,
            "token_type": "Bearer",  # RFC 7662 §2.2 uses RFC 6749 §7.1's token types
            **{
                k: claims[k]
                for k in ("sub", "username", "roles", "exp", "iat", "sid", "jti", "iss", "aud")
            },
            # Tokens issued before these claims existed lack them.
            **{k: claims[k] for k in ("auth_time", "amr", "acr") if k in claims},
        }


class Jwks:
    """GET /.well-known/jwks.json."""

    public_methods = EVERY_METHOD

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The public keys that still verify."""
        resp.set_header("Cache-Control", "public, max-age=60")
        resp.media = self.keyring.jwks()


class Metadata:
    """GET /.well-known/oauth-authorization-server (RFC 8414)."""

    public_methods = EVERY_METHOD

    def __init__(self, config: Config) -> None:
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Where the endpoints are and what they support."""
        issuer = self.config.issuer.rstrip("/")
        resp.media = {
            "issuer": self.config.issuer,
            "token_endpoint": f"{issuer}/auth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "revocation_endpoint": f"{issuer}/auth/revoke",
            "introspection_endpoint": f"{issuer}/auth/introspect",
            "grant_types_supported": GRANT_TYPES,
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["bearer"],
            "revocation_endpoint_auth_signing_alg_values_supported": [],
            "token_endpoint_auth_signing_alg_values_supported": [],
            "id_token_signing_alg_values_supported": [],
            "access_token_signing_alg_values_supported": [self.config.signing_alg],
        }
