"""The OpenID provider's endpoints: authorize (with its sign-in and consent pages), userinfo,
logout, discovery, and the person's consents."""

# Translation only: the verbs are in grants.py (requests, consents, codes), signins.py
# (the SSO sign-in), accounts.py (the password check and its throttle) and idtokens.py.

from __future__ import annotations

import hmac
import secrets
import urllib.parse
from typing import Any

import falcon

import pages
import store as store_module
from accounts import Accounts
from auth import EVERY_METHOD, Authentication, require_admin, unauthorized
from clients import Clients, origin_of, public_client
from config import Config
from errors import InvalidGrant, Throttled, UntrustedRedirect
from events import EventLog
from grants import AuthorizationRequest, Codes, Consents, PendingRequests, read_request
from idtokens import IdTokens, user_claims
from mfa import FACTOR_METHODS, SecondFactors, SecondStep, StepUp, require_admin_write
from sessions import Sessions
from signins import SignIns
from web import (
    BROWSER_COOKIE,
    CLEARED_SIGN_IN_COOKIE,
    SIGN_IN_COOKIE,
    browser_cookie,
    html_page,
    no_store,
    query_fields,
    read_body,
    read_form,
    redirect_to,
    rfc3339,
    sign_in_cookie,
)

WRONG_PASSWORD = "The username or password is incorrect."
# The second factors a page without JavaScript can take: typed codes. (A passkey needs the
# WebAuthn API; the browser client offers it.)
PAGE_PROOFS = ("otp", "recovery_code")


def _issuer_origin(issuer: str) -> str:
    parts = urllib.parse.urlsplit(issuer)
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_same_origin(req: falcon.Request, issuer: str) -> None:
    """A form of ours is posted from our own pages only (Fetch Metadata, else Origin)."""
    site = req.get_header("Sec-Fetch-Site")
    origin = req.get_header("Origin")
    if site is not None:
        refused = site.lower() != "same-origin"
    else:
        refused = origin is not None and origin.lower().rstrip("/") != _issuer_origin(issuer)
    if refused:
        raise UntrustedRedirect("This form was sent from another site; nothing was done.")


def browser_binding(req: falcon.Request, resp: falcon.Response) -> str:
    """This browser's binding value (the login CSRF defence): the cookie's, or a new one."""
    value = req.cookies.get(BROWSER_COOKIE)
    if not value or len(value) < 32 or len(value) > 64:
        value = secrets.token_urlsafe(32)
        resp.append_header("Set-Cookie", browser_cookie(value))
    return value


def _one(fields: dict[str, list[str]], name: str) -> str | None:
    values = fields.get(name) or []
    return values[0] if len(values) == 1 else None


class Authorization:
    """GET and POST /authorize, POST /authorize/login and /authorize/consent: the code flow
    with its sign-in and consent pages."""

    public_methods = EVERY_METHOD

    def __init__(
        self,
        config: Config,
        clients: Clients,
        pending: PendingRequests,
        consents: Consents,
        codes: Codes,
        signins: SignIns,
        accounts: Accounts,
        factors: SecondFactors,
        second_step: SecondStep,
        events: EventLog,
    ) -> None:
        self.issuer = config.issuer
        self.service_name = config.service_name
        self.clients = clients
        self.pending = pending
        self.consents = consents
        self.codes = codes
        self.signins = signins
        self.accounts = accounts
        self.factors = factors
        self.second_step = second_step
        self.events = events
        self.clock = signins.clock

    # -- the authorization request ----------------------------------------------------
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """An authorization request in the query string."""
        self._authorize(req, resp, read_request(query_fields(req), self.clients))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The same request as a form (OIDC Core §3.1.2.1 asks for both methods)."""
        self._authorize(req, resp, read_request(read_form(req), self.clients))

    def _authorize(
        self, req: falcon.Request, resp: falcon.Response, request: AuthorizationRequest
    ) -> None:
        signed = self.signins.current(req.cookies.get(SIGN_IN_COOKIE))
        if signed is None or self._must_sign_in(request, signed[0]):
            if "none" in request.prompt:
                raise request.refuse("login_required", "the person is not signed in")
            handle = self.pending.keep(request, browser=browser_binding(req, resp))
            username = request.login_hint or (signed[1]["username"] if signed else "")
            self._login_page(resp, request, handle, username=username)
            return
        session, user = signed
        self._continue(
            req, resp, request, None, user, session["id"], Authentication.of_session(session)
        )

    def _must_sign_in(self, request: AuthorizationRequest, session: dict[str, Any]) -> bool:
        if request.prompt & {"login", "select_account"}:
            return True
        if request.max_age is None:
            return False
        elapsed = (self.clock() - Authentication.of_session(session).time).total_seconds()
        # max_age=0 is prompt=login (OIDC Core §3.1.2.1); else older than max_age seconds.
        return request.max_age == 0 or elapsed > request.max_age

    def _continue(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        request: AuthorizationRequest,
        handle: str | None,
        user: dict[str, Any],
        sign_in_sid: str,
        auth: Authentication,
    ) -> None:
        """Signed in: ask for consent where needed, else answer the client with a code."""
        client = request.client
        ask = self.consents.missing(user["id"], client, request.scopes) or (
            "consent" in request.prompt and not client.get("first_party")
        )
        if ask:
            if "none" in request.prompt:
                raise request.refuse("consent_required", "the person has not consented")
            if handle is None:
                handle = self.pending.keep(request, browser=browser_binding(req, resp))
            self.pending.note_sign_in(handle, sign_in_sid)
            page = pages.consent_page(
                service_name=self.service_name,
                client_name=client["name"],
                username=user["username"],
                scopes=request.scopes,
                handle=handle,
            )
            html_page(resp, page, form_targets=(origin_of(request.redirect_uri),))
            return
        if handle is not None:
            self.pending.finish(handle)
        self._answer_code(resp, request, user, sign_in_sid, auth)

    def _answer_code(self, resp, request, user, sign_in_sid, auth: Authentication) -> None:
        code = self.codes.issue(request, user_id=user["id"], sign_in_sid=sign_in_sid, auth=auth)
        self.events.record(
            "authorization_code_issued",
            user_id=user["id"],
            client_id=request.client["id"],
            sid=sign_in_sid,
        )
        redirect_to(
            resp, request.redirect_uri, {"code": code, "state": request.state, "iss": self.issuer}
        )

    # -- the sign-in page -------------------------------------------------------------
    def on_post_login(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The sign-in form: the password grant's check, throttle and answers; for an account
        with a second factor, then its form (with the login's mfa_token)."""
        check_same_origin(req, self.issuer)
        form = read_form(req)
        handle = _one(form, "request") or ""
        request, _ = self.pending.find(handle, req.cookies.get(BROWSER_COOKIE))
        if _one(form, "mfa_token"):
            self._second_step(req, resp, request, handle, form)
            return
        username, password = _one(form, "username") or "", _one(form, "password") or ""
        address, user_agent = req.context.address, req.user_agent
        methods: list[str] = []

        def second_step(user: dict[str, Any]) -> bool:
            methods.extend(self.factors.methods(user))
            return not FACTOR_METHODS.isdisjoint(methods)

        try:
            if not username or not password:
                raise InvalidGrant(WRONG_PASSWORD)
            user = self.accounts.authenticate(
                username,
                password,
                address=address,
                user_agent=user_agent,
                second_step=second_step,
            )
        except Throttled as exc:
            self._throttled(resp, exc, address)
            self._login_page(resp, request, handle, username=username, message=resp.context.why)
            return
        except InvalidGrant:
            resp.status = falcon.HTTP_400
            self._login_page(resp, request, handle, username=username, message=WRONG_PASSWORD)
            return
        auth = Authentication(time=self.clock())
        if not FACTOR_METHODS.isdisjoint(methods):
            mfa_token = self.second_step.begin(user, auth)
            self.events.record("mfa_required", user_id=user["id"], address=address)
            self._factor_page(resp, request, handle, mfa_token, methods)
            return
        self._signed_in(req, resp, request, handle, user, auth)

    def _second_step(self, req, resp, request, handle: str, form: dict[str, list[str]]) -> None:
        """The second factor's form: one proof (a TOTP code, a recovery code) for the login."""
        mfa_token = _one(form, "mfa_token") or ""
        proofs = [name for name in self.factors.proofs() if _one(form, name)]
        methods = [p for p in self.factors.proofs() if p in PAGE_PROOFS]
        if len(proofs) != 1:
            resp.status = falcon.HTTP_400
            message = "Enter one code."
            self._factor_page(resp, request, handle, mfa_token, methods, message=message)
            return
        (proof,) = proofs
        address = req.context.address
        try:
            user, auth, _ = self.second_step.complete(
                mfa_token, proof, _one(form, proof), address=address, user_agent=req.user_agent
            )
        except Throttled as exc:
            self._throttled(resp, exc, address)
            message = resp.context.why
            self._factor_page(resp, request, handle, mfa_token, methods, message=message)
            return
        except InvalidGrant as exc:
            resp.status = falcon.HTTP_400
            if "mfa_token" in exc.description or "sign in again" in exc.description:
                # The login's five minutes are over (or it was completed): start again.
                message = "This sign-in took too long; enter your password again."
                self._login_page(resp, request, handle, message=message)
                return
            message = "That code is not right."
            self._factor_page(resp, request, handle, mfa_token, methods, message=message)
            return
        self._signed_in(req, resp, request, handle, user, auth)

    def _signed_in(self, req, resp, request, handle, user, auth: Authentication) -> None:
        """Sign the browser in (the SSO cookie), then consent or the code."""
        address, user_agent = req.context.address, req.user_agent
        current = self.signins.current(req.cookies.get(SIGN_IN_COOKIE))
        sid, secret, ends = self.signins.sign_in(
            user,
            auth,
            replacing=current[0] if current else None,
            address=address,
            user_agent=user_agent,
        )
        seconds = int((ends - self.clock()).total_seconds())
        resp.append_header("Set-Cookie", sign_in_cookie(secret, seconds))
        self.events.record(
            "login_succeeded",
            user_id=user["id"],
            sid=sid,
            address=address,
            user_agent=user_agent,
            amr=list(auth.amr),
        )
        self._continue(req, resp, request, handle, user, sid, auth)

    def _throttled(self, resp: falcon.Response, exc: Throttled, address: str) -> None:
        self.events.record("login_throttled", address=address, retry_after=exc.retry_after)
        resp.status = falcon.HTTP_429
        resp.set_header("Retry-After", str(exc.retry_after))
        resp.context.why = f"Too many attempts. Try again in {exc.retry_after} seconds."

    def _factor_page(self, resp, request, handle, mfa_token, methods, *, message=None) -> None:
        page = pages.second_factor_page(
            service_name=self.service_name,
            client_name=request.client["name"],
            handle=handle,
            mfa_token=mfa_token,
            methods=[m for m in methods if m in PAGE_PROOFS],
            message=message,
        )
        html_page(resp, page, form_targets=(origin_of(request.redirect_uri),))

    def _login_page(self, resp, request, handle, *, username="", message=None) -> None:
        page = pages.login_page(
            service_name=self.service_name,
            client_name=request.client["name"],
            handle=handle,
            username=username,
            message=message,
        )
        html_page(resp, page, form_targets=(origin_of(request.redirect_uri),))

    # -- the consent page -------------------------------------------------------------
    def on_post_consent(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Allow or deny: remembered when allowed, access_denied to the client when not."""
        check_same_origin(req, self.issuer)
        form = read_form(req)
        handle = _one(form, "request") or ""
        request, record = self.pending.find(handle, req.cookies.get(BROWSER_COOKIE))
        decision = _one(form, "decision")
        if decision not in ("allow", "deny"):
            raise UntrustedRedirect("Choose Allow or Deny.")
        signed = self.signins.current(req.cookies.get(SIGN_IN_COOKIE))
        if signed is None or signed[0]["id"] != record.get("sign_in_sid"):
            # Signed out, or someone else signed in, since the page was shown.
            raise UntrustedRedirect("You signed out or in since; go back and try again.")
        self.pending.finish(handle)
        session, user = signed
        if decision == "deny":
            raise request.refuse("access_denied", "the person denied the request")
        self.consents.grant(user["id"], request.client["id"], request.scopes)
        self.events.record(
            "consent_granted",
            user_id=user["id"],
            client_id=request.client["id"],
            scopes=list(request.scopes),
        )
        self._answer_code(resp, request, user, session["id"], Authentication.of_session(session))


class UserInfo:
    """GET and POST /userinfo: OIDC Core §5.3, for a token with the openid scope."""

    def __init__(self, store: store_module.Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The claims the token's scopes release."""
        claims = req.context.claims
        scopes = str(claims.get("scope", "")).split()
        if "openid" not in scopes:
            description = "This route needs a token with the openid scope"
            raise falcon.HTTPForbidden(
                title="Forbidden",
                description=description,
                headers={
                    "WWW-Authenticate": f'Bearer realm="tokenauth", error="insufficient_scope", '
                    f'error_description="{description}", scope="openid"'
                },
            )
        user = self.store.find_user(claims["sub"])
        if user is None:
            raise unauthorized("The user of this token no longer exists")
        resp.set_header("Cache-Control", "no-store")
        resp.media = {"sub": user["id"], **user_claims(user, scopes)}

    on_post = on_get


class EndSession:
    """GET and POST /logout: OpenID Connect RP-Initiated Logout 1.0."""

    public_methods = EVERY_METHOD

    def __init__(
        self,
        config: Config,
        clients: Clients,
        signins: SignIns,
        idtokens: IdTokens,
        events: EventLog,
    ) -> None:
        self.issuer = config.issuer
        self.service_name = config.service_name
        self.clients = clients
        self.signins = signins
        self.idtokens = idtokens
        self.events = events

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Sign out at once with a valid id_token_hint; else ask first."""
        fields = query_fields(req)
        hint_text = _one(fields, "id_token_hint")
        hint = self.idtokens.read_hint(hint_text) if hint_text else None
        client, target = self._target(fields, hint)
        state = _one(fields, "state")
        signed = self.signins.current(req.cookies.get(SIGN_IN_COOKIE))
        if hint is not None and (signed is None or signed[1]["id"] == hint["sub"]):
            self._sign_out(req, resp, signed, target, state)
            return
        # No proof that the request comes from a client of this person: ask (§2, §6).
        csrf = browser_binding(req, resp)
        kept = {"client_id": client["id"] if client else None, "state": state}
        if target:
            kept["post_logout_redirect_uri"] = target
        page = pages.logout_page(
            service_name=self.service_name,
            csrf=csrf,
            client_name=client["name"] if client else None,
            fields={k: v for k, v in kept.items() if v is not None},
        )
        html_page(resp, page, form_targets=(origin_of(target),) if target else ())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The confirmation: sign out, then back to the client when it named where."""
        check_same_origin(req, self.issuer)
        form = read_form(req)
        csrf, browser = _one(form, "csrf") or "", req.cookies.get(BROWSER_COOKIE) or ""
        if not browser or not hmac.compare_digest(csrf.encode(), browser.encode()):
            raise UntrustedRedirect("This sign-out page has expired; nothing was done.")
        _, target = self._target(form, None)
        signed = self.signins.current(req.cookies.get(SIGN_IN_COOKIE))
        self._sign_out(req, resp, signed, target, _one(form, "state"))

    def _target(
        self, fields: dict[str, list[str]], hint: dict[str, Any] | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The client asking, and the registered URI to send the person back to, if any."""
        client_id = _one(fields, "client_id")
        if hint is not None:
            if client_id is not None and client_id != hint["aud"]:
                raise UntrustedRedirect("client_id is not the audience of id_token_hint.")
            client_id = hint["aud"]
        client = self.clients.find(client_id) if client_id else None
        if client_id and client is None:
            raise UntrustedRedirect("No client is registered with this client_id.")
        target = _one(fields, "post_logout_redirect_uri")
        if target is None:
            return client, None
        if client is None:
            raise UntrustedRedirect("post_logout_redirect_uri needs id_token_hint or client_id.")
        if target not in client.get("post_logout_redirect_uris", []):
            raise UntrustedRedirect("post_logout_redirect_uri is not registered for this client.")
        return client, target

    def _sign_out(self, req, resp, signed, target: str | None, state: str | None) -> None:
        if signed is not None:
            session, user = signed
            ended = self.signins.end(session)
            self.events.record(
                "logout",
                user_id=user["id"],
                sid=session["id"],
                sessions_revoked=len(ended),
                address=req.context.address,
                user_agent=req.user_agent,
            )
        resp.append_header("Set-Cookie", CLEARED_SIGN_IN_COOKIE)
        if target is not None:
            redirect_to(resp, target, {"state": state})
            return
        html_page(resp, pages.signed_out_page(service_name=self.service_name))


class MyConsents:
    """GET /users/me/consents and DELETE /users/me/consents/{client_id}."""

    def __init__(self, consents: Consents, events: EventLog) -> None:
        self.consents = consents
        self.events = events

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The clients the caller consented to, and the scopes."""
        items = self.consents.of(req.context.claims["sub"])
        resp.set_header("Cache-Control", "no-store")
        resp.media = {"items": [{**c, "granted_at": rfc3339(c["granted_at"])} for c in items]}

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        """Withdraw a consent: the client's sessions of the caller end too."""
        user_id = req.context.claims["sub"]
        ended = self.consents.withdraw(user_id, client_id)
        if ended is None:
            raise falcon.HTTPNotFound(description="You have not consented to this client")
        self.events.record(
            "consent_withdrawn",
            user_id=user_id,
            client_id=client_id,
            sessions_revoked=len(ended),
            address=req.context.address,
        )
        resp.status = falcon.HTTP_204


class AdminClients:
    """GET and POST /clients, GET and DELETE /clients/{client_id}: the registry, for admins."""

    def __init__(
        self, clients: Clients, sessions: Sessions, events: EventLog, step_up: StepUp
    ) -> None:
        self.clients = clients
        self.sessions = sessions
        self.events = events
        self.step_up = step_up  # admin writes need a recent sign-in (and the admin's factor)

    @falcon.before(require_admin)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Every client, by name."""
        resp.media = {"items": [public_client(c) for c in self.clients.all()]}

    @falcon.before(require_admin_write)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Register a client; a confidential one's secret is in this answer only."""
        body = read_body(req, "ClientCreate")
        client, secret = self.clients.create(
            body["name"],
            body["redirect_uris"],
            public=body.get("public", False),
            first_party=body.get("first_party", False),
            scopes=body.get("scopes"),
            post_logout_redirect_uris=body.get("post_logout_redirect_uris"),
        )
        self.events.record("client_created", client_id=client["id"], by=req.context.claims["sub"])
        no_store(resp)
        resp.status = falcon.HTTP_201
        resp.location = f"/clients/{client['id']}"
        resp.media = {**public_client(client), **({"client_secret": secret} if secret else {})}

    @falcon.before(require_admin)
    def on_get_item(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        """One client."""
        resp.media = public_client(self._found(client_id))

    @falcon.before(require_admin_write)
    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, client_id: str) -> None:
        """Remove a client: its sessions end, its consents go."""
        client = self._found(client_id)
        ended = self.sessions.end_client(client["id"])
        self.clients.delete(client["id"])
        self.events.record(
            "client_deleted",
            client_id=client["id"],
            sessions_revoked=len(ended),
            by=req.context.claims["sub"],
        )
        resp.status = falcon.HTTP_204

    def _found(self, client_id: str) -> dict[str, Any]:
        client = self.clients.find(client_id)
        if client is None:
            raise falcon.HTTPNotFound(description="No client has this client_id")
        return client
