"""The Falcon app: the factory, the wiring, the routes; verify, logout, health, static files."""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path

import falcon

import embedded
import openapi
import store as store_module
from account_routes import (
    AdminUser,
    AdminUserSessions,
    Me,
    MyEmail,
    MyEvents,
    MySessions,
    Password,
    PasswordReset,
    Policy,
    Users,
)
from accounts import Accounts
from auth import (
    AAL1,
    AAL2,
    EVERY_METHOD,
    AccessTokens,
    BackgroundRefresher,
    BearerAuth,
    RevocationCache,
)
from clients import ClientOrigins, Clients
from clock import Clock, utcnow
from config import Config
from discovery import Jwks, Metadata, OpenIDConfiguration
from errors import ConfigError, InvalidInput, StepUpRequired, Unavailable
from events import EventLog
from exchange import CodeExchange, Provider
from grants import Codes, Consents, PendingRequests
from idtokens import IdTokens
from keys import KeyRing, SecretBox, rings_of
from mail import Outbox, Sender, transport_for
from mfa import RecoveryCodes, SecondFactors, SecondStep, StepUp, Totp
from mfa_routes import MyMfa, MyRecoveryCodes, MyTotp
from middleware import CORS, BodyLimit, RequestFacts, SameOriginOnly, SecurityHeaders
from oauth import (
    CookieRefresh,
    CookieSession,
    Introspection,
    Logins,
    Revocation,
    Tokens,
)
from passkey_routes import MyPasskeys, PasskeyOptions
from passkeys import Challenges, Passkeys, PasskeySignIn
from passwords import PasswordHasher
from person_routes import Persons
from provider import AdminClients, Authorization, EndSession, MyConsents, UserInfo
from recovery import EmailAddresses, PasswordResets
from sessions import Sessions
from signins import SignIns
from throttle import LoginThrottle, RegistrationThrottle
from web import (
    ERROR_HANDLERS,
    JSON,
    RETRY_AFTER_UNAVAILABLE,
    authorization_error_handlers,
    serialize_error,
)

PUBLIC_DIR = Path(__file__).with_name("public")
# The first-party client's cookie routes: every method of them is same-origin only.
COOKIE_ROUTES = ("/auth/session", "/auth/session/refresh")


# -- resources --------------------------------------------------------------------------
class Verify:
    """GET /auth/verify: forward-auth for reverse proxies, no database round trip."""

    LEVELS = (AAL1, AAL2)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """204 with the caller's identity in headers; `?acr=aal2` refuses one-factor tokens."""
        claims = req.context.claims
        wanted = req.get_param("acr")
        if wanted is not None:
            if wanted not in self.LEVELS:
                raise InvalidInput([("acr", "must be one of " + ", ".join(self.LEVELS))])
            # Tokens issued before acr existed were one-factor logins.
            if self.LEVELS.index(claims.get("acr", AAL1)) < self.LEVELS.index(wanted):
                raise StepUpRequired(
                    "This resource needs a sign-in with a second factor", acr_values=wanted
                )
        resp.status = falcon.HTTP_204
        resp.set_header("X-Auth-Subject", claims["sub"])
        # Header values are Latin-1 at most (gunicorn refuses others): UTF-8, percent-encoded.
        resp.set_header("X-Auth-Username", urllib.parse.quote(claims["username"], safe=""))
        resp.set_header("X-Auth-Roles", ",".join(claims["roles"]))
        if "amr" in claims:
            resp.set_header("X-Auth-Amr", ",".join(claims["amr"]))
        resp.set_header("Cache-Control", "no-store")


class Logout:
    """POST /auth/logout: revoke the session of the presented access token."""

    def __init__(self, sessions: Sessions, events: EventLog) -> None:
        self.sessions = sessions
        self.events = events

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """End the caller's session."""
        claims = req.context.claims
        self.sessions.revoke(claims["sid"])
        self.events.record(
            "logout",
            user_id=claims["sub"],
            sid=claims["sid"],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        resp.status = falcon.HTTP_204


class Health:
    """GET /health: does MongoDB answer within a second."""

    public_methods = EVERY_METHOD

    def __init__(self, store: store_module.Store, revocations: RevocationCache) -> None:
        self.store = store
        self.revocations = revocations

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """200 ok, or 503 unavailable; with the age of this worker's revocation set."""
        resp.set_header("Cache-Control", "no-store")
        age = self.revocations.age()
        revocations = {"revocations_age": None if age is None else round(age, 3)}
        try:
            self.store.ping(timeout=1.0)
        except Unavailable:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", RETRY_AFTER_UNAVAILABLE)
            resp.media = {"status": "unavailable", **revocations}
            return
        resp.media = {"status": "ok", **revocations}


class OpenAPIDocument:
    """GET /openapi.json."""

    public_methods = EVERY_METHOD

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The OpenAPI 3.1 document."""
        resp.media = openapi.document()


class ClientFile:
    """One file of the browser client in public/."""

    public_methods = EVERY_METHOD
    TYPES = {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".png": "image/png",
        ".svg": "image/svg+xml",
        ".ico": "image/x-icon",
    }

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The file, revalidated on every load so that a deploy shows at once."""
        resp.content_type = self.TYPES.get(self.path.suffix, "application/octet-stream")
        resp.set_header("Cache-Control", "no-cache")
        resp.data = self.path.read_bytes()


# -- the wiring -------------------------------------------------------------------------
@dataclasses.dataclass
class Components:
    """The collaborators of one app (one per worker): the wiring record tests reach for."""

    config: Config
    store: store_module.Store
    keyring: KeyRing
    tokens: AccessTokens
    revocations: RevocationCache
    sessions: Sessions
    accounts: Accounts
    refresher: BackgroundRefresher
    clock: Clock
    events: EventLog
    outbox: Outbox
    addresses: EmailAddresses
    sender: Sender
    resets: PasswordResets
    factors: SecondFactors
    totp: Totp
    recovery_codes: RecoveryCodes
    passkeys: Passkeys
    passkey_sign_in: PasskeySignIn
    second_step: SecondStep
    step_up: StepUp
    # The authorization server and OpenID provider.
    rings: list[KeyRing]
    clients: Clients
    client_origins: ClientOrigins
    signins: SignIns
    pending: PendingRequests
    consents: Consents
    codes: Codes
    idtokens: IdTokens


def database_uri(config: Config) -> str:
    """The configured MongoDB, or the embedded server `make run` started; ConfigError else."""
    uri = embedded.database_uri(config)
    if uri is None:
        raise ConfigError(
            "TOKENAUTH_MONGODB_URI",
            "is unset and no embedded server is running (start the service with `make run`)",
        )
    return uri


def build_components(
    config: Config, *, store: store_module.Store | None = None, clock: Clock | None = None
) -> Components:
    """Wire the collaborators once: store, keys, tokens, sessions, throttles."""
    clock = clock or utcnow
    if store is None:
        client = store_module.connect(database_uri(config), timeout_ms=config.db_timeout_ms)
        store = store_module.Store(client[config.db_name])
    keyring = KeyRing(
        config.keys_dir, config.signing_alg, access_ttl=config.access_ttl, clock=clock
    )
    # The service's ring, and the RS256 ring of ID tokens (the same one under RS256).
    rings = rings_of(keyring)
    # Past this, a worker's revocation set is not trusted: two polls missed, plus the time
    # one poll may wait for the database.
    stale_after = 2 * config.refresh_interval + config.db_timeout_ms / 1000 + 1
    revocations = RevocationCache(
        store, access_ttl=config.access_ttl, stale_after=stale_after, clock=clock
    )
    refresher = BackgroundRefresher(
        [
            ("indexes", _Once(store.ensure_indexes)),
            ("revocations", revocations.poll),
            *(("keys", ring.refresh) for ring in rings),
            ("client origins", lambda: client_origins.reload()),
        ],
        interval=config.refresh_interval,
        revocations=revocations,
    )
    logins = LoginThrottle(
        store, max_failures=config.login_max_failures, window=config.login_window, clock=clock
    )
    registrations = RegistrationThrottle(store, limit=config.registration_limit, clock=clock)
    events = EventLog(store, retention_days=config.event_retention, clock=clock)
    accounts = Accounts(
        store,
        PasswordHasher(),
        logins,
        password_min_length=config.password_min_length,
        registrations=registrations,
        clock=clock,
        events=events,
    )
    outbox = Outbox(
        store,
        sender=config.mail_from,
        service_name=config.service_name,
        issuer=config.issuer,
        clock=clock,
    )
    addresses = EmailAddresses(
        store, accounts, logins, outbox, required=config.require_email, clock=clock
    )
    sessions = Sessions(
        store,
        revocations,
        ttl=config.refresh_ttl,
        reuse_interval=config.refresh_reuse_interval,
        clock=clock,
        events=events,
    )
    # The second factors: each kind joins the one list that says what an account has.
    factors = SecondFactors()
    totp = Totp(
        store,
        SecretBox(config.keys_dir, clock=clock).load(),
        issuer_name=config.service_name,
        clock=clock,
    )
    totp.register(factors)
    recovery_codes = RecoveryCodes(store)
    recovery_codes.register(factors)
    passkeys = Passkeys(
        store,
        Challenges(store, clock=clock),
        rp_id=config.webauthn_rp_id,
        rp_name=config.service_name,
        origins=config.webauthn_origins,
        events=events,
        clock=clock,
    )
    passkeys.register(factors)
    clients = Clients(store, clock=clock)
    client_origins = ClientOrigins(clients)
    return Components(
        config=config,
        store=store,
        keyring=keyring,
        tokens=AccessTokens(
            keyring,
            issuer=config.issuer,
            audience=config.audience,
            ttl=config.access_ttl,
            clock=clock,
        ),
        revocations=revocations,
        sessions=sessions,
        accounts=accounts,
        refresher=refresher,
        clock=clock,
        events=events,
        outbox=outbox,
        addresses=addresses,
        sender=Sender(
            store,
            transport_for(config.smtp_url, config.data_dir),
            interval=config.refresh_interval,
            clock=clock,
        ),
        resets=PasswordResets(
            store, accounts, sessions, outbox, ttl=config.reset_ttl, clock=clock, events=events
        ),
        factors=factors,
        totp=totp,
        recovery_codes=recovery_codes,
        passkeys=passkeys,
        passkey_sign_in=PasskeySignIn(passkeys, logins, events=events, clock=clock),
        second_step=SecondStep(store, factors, logins, events=events, clock=clock),
        step_up=StepUp(
            store,
            factors,
            max_age=config.step_up_max_age,
            admin_requires_mfa=config.admin_requires_mfa,
            clock=clock,
        ),
        rings=rings,
        clients=clients,
        client_origins=client_origins,
        signins=SignIns(store, sessions, clock=clock),
        pending=PendingRequests(store, clients, clock=clock),
        consents=Consents(store, sessions, clients, clock=clock),
        codes=Codes(store, sessions, clock=clock),
        idtokens=IdTokens(rings[-1], issuer=config.issuer, ttl=config.access_ttl, clock=clock),
    )


class _Once:
    """Run a task until it has succeeded once (indexes, when the database may be away)."""

    def __init__(self, task) -> None:
        self.task = task
        self.done = False

    def __call__(self) -> None:
        if not self.done:
            self.task()
            self.done = True


# -- the app ----------------------------------------------------------------------------
class Service(falcon.App):
    """The tokenauth Falcon app; `components` is what tests and hooks reach for."""

    components: Components

    def close(self) -> None:
        """Stop the background refresher and the database client."""
        self.components.refresher.stop()
        self.components.sender.stop()
        self.components.store.close()


def create_app(
    config: Config | None = None,
    *,
    store: store_module.Store | None = None,
    clock: Clock | None = None,
    start_background: bool = True,
) -> Service:
    """The WSGI app; call it after gunicorn forks (pymongo clients must not cross a fork)."""
    config = config or Config.from_env()
    c = build_components(config, store=store, clock=clock)
    c.refresher.run_once()
    if start_background:
        c.refresher.start()
        c.sender.start()

    middleware = [
        RequestFacts(config.trusted_proxies),
        BodyLimit(),
        SecurityHeaders(),
        # Listed origins, and those of registered clients (single-page apps).
        CORS(
            config.cors_origins,
            expose_headers=["Location", "Retry-After", "WWW-Authenticate"],
            also_allowed=c.client_origins.allows,
        ),
        SameOriginOnly(COOKIE_ROUTES, config.issuer),
    ]
    middleware.append(BearerAuth(c.tokens, c.revocations))
    app = Service(middleware=middleware)
    app.components = c
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.default_media_type = JSON
    app.set_error_serializer(serialize_error)
    for exception, handler in (
        *ERROR_HANDLERS,
        *authorization_error_handlers(config.issuer, config.service_name),
    ):
        app.add_error_handler(exception, handler)

    persons = Persons(c.store, c.clock, c.step_up)
    app.add_route("/users", Users(c.accounts, c.addresses, c.store, c.events))
    app.add_route("/users/me", Me(c.store, c.accounts, c.sessions, c.events, c.step_up))
    app.add_route(
        "/users/{user_id}", AdminUser(c.store, c.accounts, c.sessions, c.events, c.step_up)
    )
    app.add_route(
        "/users/{user_id}/sessions", AdminUserSessions(c.store, c.sessions, c.events, c.step_up)
    )
    app.add_route("/users/me/events", MyEvents(c.events))
    my_sessions = MySessions(c.sessions, c.events, c.step_up)
    app.add_route("/users/me/sessions", my_sessions)
    app.add_route("/users/me/sessions/{sid}", my_sessions, suffix="item")
    app.add_route("/users/me/password", Password(c.accounts, c.sessions, c.events, c.step_up))
    app.add_route("/users/me/mfa", MyMfa(c.store, c.factors))
    my_totp = MyTotp(c.store, c.totp, c.recovery_codes, c.factors, c.step_up, c.events)
    app.add_route("/users/me/mfa/totp", my_totp)
    app.add_route("/users/me/mfa/totp/confirm", my_totp, suffix="confirm")
    app.add_route(
        "/users/me/mfa/recovery-codes",
        MyRecoveryCodes(c.store, c.recovery_codes, c.factors, c.step_up, c.events),
    )
    my_passkeys = MyPasskeys(c.store, c.passkeys, c.recovery_codes, c.factors, c.step_up, c.events)
    app.add_route("/users/me/passkeys", my_passkeys)
    app.add_route("/users/me/passkeys/options", my_passkeys, suffix="options")
    app.add_route("/users/me/passkeys/{passkey_id}", my_passkeys, suffix="item")
    app.add_route("/auth/passkey/options", PasskeyOptions(c.passkeys, c.second_step))
    my_email = MyEmail(c.store, c.addresses, c.events, c.step_up)
    app.add_route("/users/me/email", my_email)
    app.add_route("/users/me/email/verify", my_email, suffix="verify")
    app.add_route("/auth/policy", Policy(config.password_min_length, config.require_email))
    reset = PasswordReset(c.resets)
    app.add_route("/auth/password-reset", reset)
    app.add_route("/auth/password-reset/confirm", reset, suffix="confirm")
    logins = Logins(c.accounts, c.sessions, c.factors, c.second_step, c.passkey_sign_in, c.events)
    provider = Provider(c.clients, c.codes, c.signins, c.idtokens, config.password_grant)
    exchange = CodeExchange(c.sessions, c.tokens, c.events, provider)
    app.add_route("/auth/token", Tokens(logins, c.sessions, c.tokens, c.events, provider, exchange))
    cookie_flow = (logins, c.sessions, c.tokens, c.events, c.signins)
    app.add_route("/auth/session", CookieSession(*cookie_flow))
    app.add_route("/auth/session/refresh", CookieRefresh(*cookie_flow))
    app.add_route("/auth/revoke", Revocation(c.sessions, c.tokens, c.revocations, c.events))
    app.add_route("/auth/verify", Verify())
    app.add_route("/auth/logout", Logout(c.sessions, c.events))
    app.add_route(
        "/auth/introspect", Introspection(c.sessions, c.tokens, c.revocations, config.issuer)
    )
    app.add_route("/.well-known/jwks.json", Jwks(c.rings))
    app.add_route("/.well-known/oauth-authorization-server", Metadata(config))
    app.add_route("/.well-known/openid-configuration", OpenIDConfiguration(config))
    authorization = Authorization(
        config,
        c.clients,
        c.pending,
        c.consents,
        c.codes,
        c.signins,
        c.accounts,
        c.factors,
        c.second_step,
        c.events,
    )
    app.add_route("/authorize", authorization)
    app.add_route("/authorize/login", authorization, suffix="login")
    app.add_route("/authorize/consent", authorization, suffix="consent")
    app.add_route("/userinfo", UserInfo(c.store))
    app.add_route("/logout", EndSession(config, c.clients, c.signins, c.idtokens, c.events))
    admin_clients = AdminClients(c.clients, c.sessions, c.events, c.step_up)
    app.add_route("/clients", admin_clients)
    app.add_route("/clients/{client_id}", admin_clients, suffix="item")
    my_consents = MyConsents(c.consents, c.events)
    app.add_route("/users/me/consents", my_consents)
    app.add_route("/users/me/consents/{client_id}", my_consents, suffix="item")
    app.add_route("/persons", persons)
    app.add_route("/persons/{person_id}", persons, suffix="item")
    app.add_route("/health", Health(c.store, c.revocations))
    app.add_route("/openapi.json", OpenAPIDocument())
    if (PUBLIC_DIR / "index.html").exists():
        app.add_route("/", ClientFile(PUBLIC_DIR / "index.html"))
    for path in sorted(PUBLIC_DIR.glob("*")):
        if path.is_file() and not path.name.startswith("."):
            app.add_route(f"/{path.name}", ClientFile(path))
    return app
