"""The OAuth 2 endpoints: token, revocation, introspection, metadata and the key set."""

# RFC 6749 (token), 7009 (revocation), 7662 (introspection), 8414 (metadata), 7517 (JWKS),
# and the authorization_code grant of the provider. Translation only: the verbs behind them
# are Accounts, Sessions, SecondStep, AccessTokens, and the provider's Clients, Codes,
# SignIns and IdTokens.

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import falcon

import openapi
from accounts import Accounts
from auth import EVERY_METHOD, AccessTokens, Authentication, RevocationCache, require_admin
from errors import InvalidGrant, InvalidInput, InvalidToken, MfaRequired, Throttled
from events import EventLog
from exchange import CODE_GRANT, CodeExchange, Provider, client_claims
from mfa import FACTOR_METHODS, SecondFactors, SecondStep
from passkeys import PasskeySignIn
from sessions import Sessions
from signins import SignIns
from web import (
    CLEARED_SESSION_COOKIE,
    CLEARED_SIGN_IN_COOKIE,
    JSON,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    OAuthError,
    no_store,
    read_body,
    session_cookie,
    sign_in_cookie,
)

MFA_GRANT = "urn:tokenauth:params:oauth:grant-type:mfa"
PASSKEY_GRANT = "urn:tokenauth:params:oauth:grant-type:passkey"


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
    """Signing in: the password step, the second step, a passkey alone, and the session
    they lead to."""

    def __init__(
        self,
        accounts: Accounts,
        sessions: Sessions,
        factors: SecondFactors,
        second_step: SecondStep,
        passkey_sign_in: PasskeySignIn,
        events: EventLog,
    ) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self.factors = factors
        self.second_step = second_step
        self.passkey_sign_in = passkey_sign_in
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

    def with_passkey(
        self, req: falcon.Request, params: dict[str, Any], *, cookie: str | None = None
    ) -> Login:
        """A passwordless sign-in: a discoverable passkey's assertion over the challenge of
        `challenge_id` (from POST /auth/passkey/options without an mfa_token)."""
        user, auth = self.passkey_sign_in.sign_in(
            params["passkey"],
            params["challenge_id"],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        return self.open(req, user, auth, cookie=cookie)

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
    """POST /auth/token: the RFC 6749 token endpoint (authorization_code, refresh_token, MFA,
    passkey and, unless turned off, password grants)."""

    public_methods = EVERY_METHOD
    oauth_errors = True

    def __init__(
        self,
        logins: Logins,
        sessions: Sessions,
        tokens: AccessTokens,
        events: EventLog,
        provider: Provider,
        exchange: CodeExchange,
    ) -> None:
        self.logins = logins
        self.sessions = sessions
        self.tokens = tokens
        self.events = events
        self.provider = provider
        self.exchange = exchange

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Exchange a code, credentials, a second factor or a refresh token for tokens."""
        params = self._params(req)
        grant = params.get("grant_type")
        client = None
        try:
            if grant == CODE_GRANT:
                no_store(resp)
                resp.media = self.exchange.answer(req, params)
                return
            if grant == "password" and self.provider.password_grant:
                self._password_client(req, params)
                username, password = self._require(params, "username", "password")
                login = self.logins.with_password(req, username, password)
            elif grant == "refresh_token":
                login, client = self._refresh_grant(req, params)
            elif grant == MFA_GRANT:
                self._require(params, "mfa_token")
                login = self.logins.with_second_factor(req, params)
            elif grant == PASSKEY_GRANT:
                self._require(params, "passkey", "challenge_id")
                login = self.logins.with_passkey(req, params)
            else:
                raise OAuthError(
                    400, "unsupported_grant_type", f"grant_type {grant} is not supported"
                )
        except InvalidGrant as exc:
            raise OAuthError(400, "invalid_grant", exc.description) from None
        access_token, claims = self.tokens.issue(
            user=login.user,
            sid=login.sid,
            not_after=login.session_end,
            auth=login.auth,
            client=client,
        )
        no_store(resp)
        resp.media = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "refresh_token": login.refresh_token,
            **login.extra,
        }
        if client is not None:
            resp.media["scope"] = client["scope"]

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

    def _password_client(self, req: falcon.Request, params: dict[str, Any]) -> None:
        client = self.provider.clients.authenticated(
            req.get_header("Authorization"), params, required=False
        )
        if client is not None and not client.get("first_party"):
            # RFC 9700 §2.4: a third party never sees the person's password.
            raise OAuthError(400, "unauthorized_client", "Use the authorization code flow")

    def _refresh_grant(
        self, req: falcon.Request, params: dict[str, Any]
    ) -> tuple[Login, dict[str, Any] | None]:
        client = self.provider.clients.authenticated(
            req.get_header("Authorization"), params, required=False
        )
        (presented,) = self._require(params, "refresh_token")
        address = req.context.address
        user, session, refresh_token = self.sessions.refresh(
            presented,
            address=address,
            user_agent=req.user_agent,
            client_id=client["id"] if client else None,
        )
        self.events.record(
            "token_refreshed", user_id=user["id"], sid=session["id"], address=address
        )
        login = Login(
            user,
            session["id"],
            refresh_token,
            session["expires_at"],
            Authentication.of_session(session),
        )
        return login, self._client_of_session(session)

    def _client_of_session(self, session: dict[str, Any]) -> dict[str, Any] | None:
        if not session.get("client_id"):
            return None
        client = self.provider.clients.find(session["client_id"])
        if client is None:
            self.sessions.revoke(session["id"])
            raise InvalidGrant("The client of this refresh token is no longer registered")
        return client_claims(client, session.get("scope", ""))


# -- the first-party browser client's cookie flow (RFC 10017 §6.2) -------------------------
class _CookieFlow:
    """What the cookie routes share: answering with an access token and the cookie."""

    public_methods = EVERY_METHOD
    oauth_errors = True

    def __init__(
        self,
        logins: Logins,
        sessions: Sessions,
        tokens: AccessTokens,
        events: EventLog,
        signins: SignIns,
    ) -> None:
        self.logins = logins
        self.sessions = sessions
        self.tokens = tokens
        self.events = events
        self.signins = signins

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
        """The password grant (or, with `mfa_token`, the MFA grant; with `passkey` alone, the
        passkey grant), answered with an access token and the refresh cookie; with a live
        session cookie of the same user, that session is re-authenticated instead of a
        second one opened."""
        try:
            body = read_body(req, "CookieLogin", form=True)
        except InvalidInput as exc:
            field, message = exc.errors[0]
            raise OAuthError(400, "invalid_request", f"{field} {message}") from None
        cookie = req.cookies.get(SESSION_COOKIE)
        try:
            if "mfa_token" in body:
                login = self.logins.with_second_factor(req, body, cookie=cookie)
            elif "username" in body and "password" in body:
                login = self.logins.with_password(
                    req, body["username"], body["password"], cookie=cookie
                )
            else:  # the schema left one form: `passkey` and `challenge_id`
                login = self.logins.with_passkey(req, body, cookie=cookie)
        except InvalidGrant as exc:
            raise OAuthError(400, "invalid_grant", exc.description) from None
        self._answer(resp, login)
        self._sign_in(req, resp, login)

    def _sign_in(self, req: falcon.Request, resp: falcon.Response, login: Login) -> None:
        """The cookie login signs the browser in for the provider too (single sign-on): the
        client's people need no password again to sign in elsewhere with tokenauth."""
        current = self.signins.current(req.cookies.get(SIGN_IN_COOKIE))
        if current is not None and current[0]["id"] != login.sid:
            if current[1]["id"] == login.user["id"]:
                self.signins.hand_over(current[0], login.sid)
            else:
                self.signins.leave(current[0])
        secret = self.signins.attach(login.sid, login.auth)
        if secret is not None:
            seconds = int((login.session_end - self.sessions.clock()).total_seconds())
            resp.append_header("Set-Cookie", sign_in_cookie(secret, seconds))

    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """End the cookie's session (if any) and the browser's sign-in; clear the cookies."""
        token = req.cookies.get(SESSION_COOKIE)
        session = self.sessions.session_of(token) if token else None
        signed = self.signins.current(req.cookies.get(SIGN_IN_COOKIE))
        ended = [session] if session is not None else []
        if signed is not None and (session is None or signed[0]["id"] != session["id"]):
            ended.append(signed[0])
        for gone in ended:
            self.sessions.revoke(gone["id"])
            self.events.record(
                "logout",
                user_id=gone["user_id"],
                sid=gone["id"],
                address=req.context.address,
                user_agent=req.user_agent,
            )
        no_store(resp)
        resp.append_header("Set-Cookie", CLEARED_SESSION_COOKIE)
        if req.cookies.get(SIGN_IN_COOKIE) is not None:
            resp.append_header("Set-Cookie", CLEARED_SIGN_IN_COOKIE)
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
            **({"client_id": session["client_id"]} if session.get("client_id") else {}),
            **({"scope": session["scope"]} if session.get("client_id") else {}),
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
            # Tokens issued before these claims existed lack them; a client's token says
            # whose it is and what it may do (RFC 7662 §2.2).
            **{
                k: claims[k]
                for k in ("auth_time", "amr", "acr", "client_id", "scope")
                if k in claims
            },
        }
