"""The Falcon app: resources, the app factory and the static client."""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path
from typing import Any

import falcon

import auth
import embedded
import openapi
import store as store_module
import throttle
from config import Config, ConfigError
from keys import KeyRing
from oauth import Introspection, Jwks, Metadata, Revocation, Tokens, require_admin
from passwords import PasswordHasher
from web import (
    CORS,
    JSON,
    RETRY_AFTER_UNAVAILABLE,
    BodyLimit,
    SecurityHeaders,
    client_address,
    handle_conflict,
    handle_invalid_body,
    handle_invalid_input,
    handle_revocations_stale,
    handle_throttled,
    handle_unavailable,
    handle_unexpected,
    page_params,
    public_person,
    public_user,
    read_body,
    read_body_problems,
    serialize_error,
)

PUBLIC_DIR = Path(__file__).with_name("public")


# -- resources --------------------------------------------------------------------------
@dataclasses.dataclass
class Components:
    """Everything the resources share, built once per app (per worker)."""

    config: Config
    store: store_module.Store
    keyring: KeyRing
    tokens: auth.AccessTokens
    revocations: auth.RevocationCache
    sessions: auth.Sessions
    accounts: auth.Accounts
    refresher: auth.BackgroundRefresher
    clock: auth.Clock

    def client_address(self, req: falcon.Request) -> str:
        """The address throttles and logs name the caller by (see web.client_address)."""
        return client_address(req, self.config.trusted_proxies)


class Users:
    """POST /users registers (public); GET /users pages users (admin)."""

    public_methods = frozenset({"POST"})

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Register a user."""
        body = read_body(
            req, "Registration", form=True, rules=self.c.accounts.registration_problems
        )
        address = self.c.client_address(req)
        user = self.c.accounts.register(body["username"], body["password"], address=address)
        auth.log_event("user_registered", user_id=user["id"], address=address)
        resp.status = falcon.HTTP_201
        resp.location = "/users/me"
        resp.media = public_user(user)

    @falcon.before(require_admin)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of users, sorted by id."""
        limit, cursor = page_params(req)
        users, next_cursor = self.c.store.page_users(limit=limit, after=cursor)
        resp.media = {"items": [public_user(u) for u in users], "next_cursor": next_cursor}


class Me:
    """GET /users/me: the caller."""

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The caller's user."""
        user = self.c.store.find_user(req.context.claims["sub"])
        if user is None:
            raise falcon.HTTPNotFound(description="The user of this token no longer exists")
        resp.media = public_user(user)


class Password:
    """PUT /users/me/password: change it, and end every other session."""

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Change the caller's password."""
        body, problems = read_body_problems(req, "PasswordChange")
        claims = req.context.claims
        address = self.c.client_address(req)
        version = self.c.accounts.change_password(
            claims["sub"],
            body.get("current_password") if isinstance(body, dict) else None,
            body.get("new_password") if isinstance(body, dict) else None,
            address=address,
            problems=problems,
        )
        # The caller's session goes on under the new password; logins that were in flight
        # under the old one are stamped older and can neither open nor refresh.
        self.c.sessions.restamp(claims["sid"], version)
        revoked = self.c.sessions.revoke_others(claims["sub"], keep_sid=claims["sid"])
        auth.log_event(
            "password_changed",
            user_id=claims["sub"],
            sid=claims["sid"],
            address=address,
            sessions_revoked=len(revoked),
        )
        resp.status = falcon.HTTP_204


class Verify:
    """GET /auth/verify: forward-auth for reverse proxies, no database round trip."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """204 with the caller's identity in headers."""
        claims = req.context.claims
        resp.status = falcon.HTTP_204
        resp.set_header("X-Auth-Subject", claims["sub"])
        # Header values are Latin-1 at most (gunicorn refuses others): UTF-8, percent-encoded.
        resp.set_header("X-Auth-Username", urllib.parse.quote(claims["username"], safe=""))
        resp.set_header("X-Auth-Roles", ",".join(claims["roles"]))
        resp.set_header("Cache-Control", "no-store")


class Logout:
    """POST /auth/logout: revoke the session of the presented access token."""

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """End the caller's session."""
        claims = req.context.claims
        self.c.sessions.revoke(claims["sid"])
        auth.log_event(
            "logout", user_id=claims["sub"], sid=claims["sid"], address=self.c.client_address(req)
        )
        resp.status = falcon.HTTP_204


class Persons:
    """The persons collection: anyone with a token reads, admins write."""

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of persons, sorted by id."""
        limit, cursor = page_params(req)
        persons, next_cursor = self.c.store.page_persons(limit=limit, after=cursor)
        resp.media = {"items": [public_person(p) for p in persons], "next_cursor": next_cursor}

    @falcon.before(require_admin)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a person."""
        fields = self._fields(read_body(req, "PersonCreate"))
        fields.setdefault("age", None)
        person = self.c.store.create_person(fields, now=self.c.clock())
        resp.status = falcon.HTTP_201
        resp.location = f"/persons/{person['id']}"
        resp.media = public_person(person)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, person_id: str) -> None:
        """One person."""
        resp.media = public_person(self._found(self.c.store.find_person(person_id)))

    @falcon.before(require_admin)
    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, person_id: str) -> None:
        """Change some fields of a person."""
        fields = self._fields(read_body(req, "PersonPatch"))
        person = self.c.store.update_person(person_id, fields, now=self.c.clock())
        resp.media = public_person(self._found(person))

    @falcon.before(require_admin)
    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, person_id: str) -> None:
        """Delete a person."""
        if not self.c.store.delete_person(person_id):
            raise falcon.HTTPNotFound(description="No person has this id")
        resp.status = falcon.HTTP_204

    @staticmethod
    def _fields(body: dict[str, Any]) -> dict[str, Any]:
        fields = {k: body[k] for k in ("name", "email", "age") if k in body}
        if isinstance(fields.get("age"), float):
            fields["age"] = int(fields["age"])  # JSON 42.0 is the integer 42
        return fields

    @staticmethod
    def _found(person: dict[str, Any] | None) -> dict[str, Any]:
        if person is None:
            raise falcon.HTTPNotFound(description="No person has this id")
        return person


class Health:
    """GET /health: does MongoDB answer within a second."""

    auth = None

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """200 ok, or 503 unavailable; with the age of this worker's revocation set."""
        resp.set_header("Cache-Control", "no-store")
        age = self.c.revocations.age()
        revocations = {"revocations_age": None if age is None else round(age, 3)}
        try:
            self.c.store.ping(timeout=1.0)
        except store_module.Unavailable:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", RETRY_AFTER_UNAVAILABLE)
            resp.media = {"status": "unavailable", **revocations}
            return
        resp.media = {"status": "ok", **revocations}


class OpenAPIDocument:
    """GET /openapi.json."""

    auth = None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The OpenAPI 3.1 document."""
        resp.media = openapi.document()


class ClientFile:
    """One file of the browser client in public/."""

    auth = None
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


# -- the app ----------------------------------------------------------------------------
class Service(falcon.App):
    """The tokenauth Falcon app; `components` is what tests and hooks reach for."""

    components: Components

    def close(self) -> None:
        """Stop the background refresher and the database client."""
        self.components.refresher.stop()
        self.components.store.close()


def _database_uri(config: Config) -> str:
    uri = config.mongodb_uri or embedded.running_embedded_uri(config.data_dir)
    if uri is None:
        raise ConfigError(
            "TOKENAUTH_MONGODB_URI",
            "is unset and no embedded server is running (start the service with `make run`)",
        )
    return uri


def build_components(
    config: Config, *, store: store_module.Store | None = None, clock: auth.Clock | None = None
) -> Components:
    """Wire the collaborators once: store, keys, tokens, sessions, throttles."""
    clock = clock or auth.utcnow
    if store is None:
        client = store_module.connect(_database_uri(config), timeout_ms=config.db_timeout_ms)
        store = store_module.Store(client[config.db_name])
    keyring = KeyRing(
        config.keys_dir, config.signing_alg, access_ttl=config.access_ttl, clock=clock
    )
    keyring.load()
    # Past this, a worker's revocation set is not trusted: two polls missed, plus the time
    # one poll may wait for the database.
    stale_after = 2 * config.refresh_interval + config.db_timeout_ms / 1000 + 1
    revocations = auth.RevocationCache(
        store, access_ttl=config.access_ttl, stale_after=stale_after, clock=clock
    )
    logins = throttle.LoginThrottle(
        store, max_failures=config.login_max_failures, window=config.login_window, clock=clock
    )
    indexes = _Once(store.ensure_indexes)
    refresher = auth.BackgroundRefresher(
        [("indexes", indexes), ("revocations", revocations.poll), ("keys", keyring.refresh)],
        interval=config.refresh_interval,
        revocations=revocations,
    )
    return Components(
        config=config,
        store=store,
        keyring=keyring,
        tokens=auth.AccessTokens(
            keyring,
            issuer=config.issuer,
            audience=config.audience,
            ttl=config.access_ttl,
            clock=clock,
        ),
        revocations=revocations,
        sessions=auth.Sessions(store, revocations, ttl=config.refresh_ttl, clock=clock),
        accounts=auth.Accounts(
            store,
            PasswordHasher(),
            logins,
            password_min_length=config.password_min_length,
            registrations=throttle.RegistrationThrottle(
                store, limit=config.registration_limit, clock=clock
            ),
            clock=clock,
        ),
        refresher=refresher,
        clock=clock,
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


def create_app(
    config: Config | None = None,
    *,
    store: store_module.Store | None = None,
    clock: auth.Clock | None = None,
    start_background: bool = True,
) -> Service:
    """The WSGI app; call it after gunicorn forks (pymongo clients must not cross a fork)."""
    config = config or Config.from_env()
    c = build_components(config, store=store, clock=clock)
    c.refresher.run_once()
    if start_background:
        c.refresher.start()

    middleware = [BodyLimit(), SecurityHeaders()]
    if config.cors_origins:
        middleware.append(
            CORS(
                allow_origins=list(config.cors_origins),
                allow_credentials=None,
                expose_headers=["Location", "Retry-After", "WWW-Authenticate"],
            )
        )
    middleware.append(auth.BearerAuth(c.tokens, c.revocations))
    app = Service(middleware=middleware)
    app.components = c
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.default_media_type = JSON
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(store_module.Unavailable, handle_unavailable)
    app.add_error_handler(store_module.Conflict, handle_conflict)
    app.add_error_handler(openapi.InvalidBody, handle_invalid_body)
    app.add_error_handler(auth.InvalidInput, handle_invalid_input)
    app.add_error_handler(auth.RevocationsStale, handle_revocations_stale)
    app.add_error_handler(throttle.Throttled, handle_throttled)

    persons = Persons(c)
    app.add_route("/users", Users(c))
    app.add_route("/users/me", Me(c))
    app.add_route("/users/me/password", Password(c))
    app.add_route("/auth/token", Tokens(c))
    app.add_route("/auth/revoke", Revocation(c))
    app.add_route("/auth/verify", Verify())
    app.add_route("/auth/logout", Logout(c))
    app.add_route("/auth/introspect", Introspection(c))
    app.add_route("/.well-known/jwks.json", Jwks(c))
    app.add_route("/.well-known/oauth-authorization-server", Metadata(c))
    app.add_route("/persons", persons)
    app.add_route("/persons/{person_id}", persons, suffix="item")
    app.add_route("/health", Health(c))
    app.add_route("/openapi.json", OpenAPIDocument())
    if (PUBLIC_DIR / "index.html").exists():
        app.add_route("/", ClientFile(PUBLIC_DIR / "index.html"))
    for path in sorted(PUBLIC_DIR.glob("*")):
        if path.is_file() and not path.name.startswith("."):
            app.add_route(f"/{path.name}", ClientFile(path))
    return app
