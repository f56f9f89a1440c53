"""The Falcon app: resources, middleware, error mapping, the static client and the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
from http import HTTPStatus
from pathlib import Path
from typing import Any

import falcon

import auth
import openapi
import store as store_module
from config import Config, ConfigError
from keys import KeyRing
from passwords import PasswordHasher

log = logging.getLogger("tokenauth")

PUBLIC_DIR = Path(__file__).with_name("public")
MAX_BODY = 64 * 1024
RETRY_AFTER_UNAVAILABLE = "5"
OAUTH_PATHS = frozenset({"/auth/token", "/auth/revoke", "/auth/introspect"})
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


# -- errors -----------------------------------------------------------------------------
class InvalidFields(falcon.HTTPUnprocessableEntity):
    """422 with the RFC 9457 `errors` member naming each invalid field."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(
            title="Unprocessable Content",
            description="; ".join(f"{field} {message}" for field, message in errors),
        )
        self.errors = [{"field": field, "message": message} for field, message in errors]


class OAuthError(falcon.HTTPError):
    """An RFC 6749 §5.2 error of the token, revocation or introspection endpoint."""

    def __init__(self, status: int, error: str, description: str, headers=None) -> None:
        super().__init__(status, title=error, description=description, headers=headers)
        self.error = error


def _status_code(error: falcon.HTTPError) -> int:
    return int(str(error.status).split()[0])


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """RFC 9457 problem+json, or the RFC 6749 form on the OAuth endpoints."""
    status = _status_code(error)
    if req.path in OAUTH_PATHS and status not in (401, 403):
        code = getattr(error, "error", None) or {
            429: "temporarily_unavailable",
            503: "temporarily_unavailable",
        }.get(status, "invalid_request" if status < 500 else "server_error")
        body: dict[str, Any] = {"error": code}
        if error.description:
            body["error_description"] = error.description
        resp.content_type = JSON
    else:
        body = {
            "type": "about:blank",
            "title": HTTPStatus(status).phrase,
            "status": status,
            "detail": error.description or HTTPStatus(status).description,
        }
        if getattr(error, "errors", None):
            body["errors"] = error.errors
        resp.content_type = "application/problem+json"
    resp.media = body


def handle_unavailable(req, resp, error: store_module.Unavailable, params) -> None:
    """MongoDB is away: 503, and the client may retry."""
    raise falcon.HTTPServiceUnavailable(
        description="The database is unreachable; try again shortly",
        retry_after=int(RETRY_AFTER_UNAVAILABLE),
    )


def handle_conflict(req, resp, error: store_module.Conflict, params) -> None:
    """A unique field is taken: 409."""
    raise falcon.HTTPConflict(description=f"That {error.field} is already taken")


def handle_invalid_body(req, resp, error: openapi.InvalidBody, params) -> None:
    """A body against its schema: 422 naming the fields."""
    raise InvalidFields(error.errors)


def handle_invalid_field(req, resp, error: auth.InvalidField, params) -> None:
    """A rule a schema cannot express: 422 naming the field."""
    raise InvalidFields([(error.field, error.message)])


def handle_throttled(req, resp, error: auth.Throttled, params) -> None:
    """Too many attempts: 429 with Retry-After."""
    raise falcon.HTTPTooManyRequests(
        description=f"Too many attempts; try again in {error.retry_after} seconds",
        retry_after=error.retry_after,
    )


def handle_unexpected(req, resp, error: Exception, params) -> None:
    """A bug: 500, and a log line that names the place but carries no data."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
    # The message and locals may hold secrets; the type and place are enough to find it.
    log.error("unhandled %s in %s %s at %s", type(error).__name__, req.method, req.path, where)
    raise falcon.HTTPInternalServerError(description="An unexpected error occurred")


# -- middleware -------------------------------------------------------------------------
class BodyLimit:
    """413 for bodies over 64 KiB, declared or streamed."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse large bodies before anything reads them."""
        length = req.content_length
        if length is not None:
            if length > MAX_BODY:
                raise falcon.HTTPContentTooLarge(description=f"The body is over {MAX_BODY} bytes")
        elif req.get_header("Transfer-Encoding"):
            data = req.bounded_stream.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                raise falcon.HTTPContentTooLarge(description=f"The body is over {MAX_BODY} bytes")
            req.stream = io.BytesIO(data)
            req.env["CONTENT_LENGTH"] = str(len(data))


class SecurityHeaders:
    """nosniff everywhere; a strict CSP and no referrer on HTML."""

    def process_response(self, req, resp: falcon.Response, resource, req_succeeded) -> None:
        """Add the headers to every answer."""
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        is_html = (resp.content_type or "").startswith("text/html")
        resp.set_header("Content-Security-Policy", HTML_CSP if is_html else API_CSP)
        if is_html:
            resp.set_header("X-Frame-Options", "DENY")


# -- request helpers --------------------------------------------------------------------
def read_body(req: falcon.Request, schema_name: str, *, form: bool = False) -> dict[str, Any]:
    """The JSON (or, where allowed, form) body, validated against its OpenAPI schema."""
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    allowed = (JSON, FORM) if form else (JSON,)
    if media_type not in allowed:
        raise falcon.HTTPUnsupportedMediaType(
            description=f"Send the body as {' or '.join(allowed)}"
        )
    try:
        body = req.get_media()
    except falcon.MediaNotFoundError:
        raise falcon.HTTPBadRequest(description="The request has no body") from None
    except falcon.MediaMalformedError:
        raise falcon.HTTPBadRequest(
            description="The body is not valid, UTF-8 encoded JSON"
        ) from None
    return openapi.validate(body, schema_name)


def page_params(req: falcon.Request) -> tuple[int, str | None]:
    """`limit` (1..200, default 50) and `cursor` (an id) from the query string."""
    errors = []
    raw_limit = req.get_param("limit")
    limit = 50
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
            errors.append(("limit", "must be an integer from 1 to 200"))
        else:
            limit = int(raw_limit)
    cursor = req.get_param("cursor")
    if cursor is not None and store_module.object_id(cursor) is None:
        errors.append(("cursor", "must be the next_cursor of a previous page"))
    if errors:
        raise InvalidFields(errors)
    return limit, cursor


def rfc3339(value: dt.datetime) -> str:
    """RFC 3339 UTC with milliseconds, as every time in the API."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    """A user as the API shows it: never the hash."""
    return {
        "id": user["id"],
        "username": user["username"],
        "roles": user["roles"],
        "created_at": rfc3339(user["created_at"]),
    }


def public_person(person: dict[str, Any]) -> dict[str, Any]:
    """A person as the API shows it."""
    return {
        "id": person["id"],
        "name": person["name"],
        "email": person["email"],
        "age": person.get("age"),
        "created_at": rfc3339(person["created_at"]),
        "updated_at": rfc3339(person["updated_at"]),
    }


def no_store(resp: falcon.Response) -> None:
    """Tokens must never be cached (RFC 6749 §5.1)."""
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Pragma", "no-cache")


def require_admin(req, resp, resource, params) -> None:
    """Falcon hook: the caller must hold the admin role."""
    auth.require_role(req, "admin")


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
    registrations: auth.RegistrationThrottle
    refresher: auth.BackgroundRefresher
    clock: auth.Clock


class Users:
    """POST /users registers (public); GET /users pages users (admin)."""

    public_methods = frozenset({"POST"})

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Register a user."""
        body = read_body(req, "Registration", form=True)
        self.c.registrations.check_and_count(req.remote_addr)
        user = self.c.accounts.register(body["username"], body["password"])
        auth.log_event("user_registered", user_id=user["id"], address=req.remote_addr)
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
        body = read_body(req, "PasswordChange")
        claims = req.context.claims
        self.c.accounts.change_password(
            claims["sub"], body["current_password"], body["new_password"]
        )
        revoked = self.c.sessions.revoke_others(claims["sub"], keep_sid=claims["sid"])
        auth.log_event(
            "password_changed",
            user_id=claims["sub"],
            sid=claims["sid"],
            address=req.remote_addr,
            sessions_revoked=len(revoked),
        )
        resp.status = falcon.HTTP_204


class Tokens:
    """POST /auth/token: the RFC 6749 token endpoint (password and refresh_token grants)."""

    auth = None

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Exchange credentials or a refresh token for tokens."""
        params = self._params(req)
        grant = params.get("grant_type")
        try:
            if grant == "password":
                user, sid, refresh_token = self._password_grant(req, params)
            elif grant == "refresh_token":
                user, sid, refresh_token = self._refresh_grant(req, params)
            else:
                raise OAuthError(
                    400, "unsupported_grant_type", "grant_type must be password or refresh_token"
                )
        except auth.InvalidGrant as exc:
            raise OAuthError(400, "invalid_grant", exc.description) from None
        access_token, _ = self.c.tokens.issue(user=user, sid=sid)
        no_store(resp)
        resp.media = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.c.config.access_ttl,
            "refresh_token": refresh_token,
        }

    def _params(self, req: falcon.Request) -> dict[str, Any]:
        media_type = (req.content_type or "").split(";")[0].strip().lower()
        try:
            body = read_body(req, "TokenRequest", form=True)
        except openapi.InvalidBody as first:
            exc = first
            if media_type == JSON and isinstance(req.get_media(), dict):
                body = dict(req.get_media())
                if "grant_type" not in body:  # the contract: JSON without grant_type is password
                    body["grant_type"] = "password"
                    try:
                        return openapi.validate(body, "TokenRequest")
                    except openapi.InvalidBody as again:
                        exc = again
            field, message = exc.errors[0]
            if field == "grant_type" and "must be one of" in message:
                raise OAuthError(400, "unsupported_grant_type", f"{field} {message}") from None
            raise OAuthError(400, "invalid_request", f"{field} {message}") from None
        return body

    def _require(self, params: dict[str, Any], *names: str) -> list[str]:
        missing = [n for n in names if not params.get(n)]
        if missing:
            raise OAuthError(400, "invalid_request", f"{', '.join(missing)} is required")
        return [params[n] for n in names]

    def _password_grant(self, req: falcon.Request, params: dict[str, Any]):
        username, password = self._require(params, "username", "password")
        address = req.remote_addr
        try:
            user = self.c.accounts.authenticate(username, password, address=address)
        except auth.Throttled as exc:
            auth.log_event("login_throttled", address=address, retry_after=exc.retry_after)
            raise
        sid, refresh_token = self.c.sessions.open(user["id"])
        auth.log_event("login_succeeded", user_id=user["id"], sid=sid, address=address)
        return user, sid, refresh_token

    def _refresh_grant(self, req: falcon.Request, params: dict[str, Any]):
        (presented,) = self._require(params, "refresh_token")
        session, refresh_token = self.c.sessions.rotate(presented)
        user = self.c.store.find_user(session["user_id"])
        if user is None:
            self.c.sessions.revoke(session["_id"])
            raise auth.InvalidGrant("The user of this session no longer exists")
        auth.log_event(
            "token_refreshed", user_id=user["id"], sid=session["_id"], address=req.remote_addr
        )
        return user, session["_id"], refresh_token


class Revocation:
    """POST /auth/revoke: RFC 7009, always 200 for a well-formed request."""

    auth = None

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Revoke a refresh token's session, or one access token."""
        token = _token_param(req)
        session = self.c.sessions.session_of(token)
        if session is not None:
            self.c.sessions.revoke(session["_id"])
            auth.log_event(
                "session_revoked",
                sid=session["_id"],
                user_id=session["user_id"],
                address=req.remote_addr,
            )
        else:
            try:
                claims = self.c.tokens.verify(token)
            except auth.InvalidToken:
                claims = None  # RFC 7009 §2.2: invalid tokens do not cause an error
            if claims is not None:
                self.c.revocations.revoke_access_token(claims)
                auth.log_event(
                    "access_token_revoked",
                    sid=claims["sid"],
                    user_id=claims["sub"],
                    address=req.remote_addr,
                )
        no_store(resp)
        resp.status = falcon.HTTP_200


def _token_param(req: falcon.Request) -> str:
    try:
        body = read_body(req, "TokenRef", form=True)
    except openapi.InvalidBody as exc:
        field, message = exc.errors[0]
        raise OAuthError(400, "invalid_request", f"{field} {message}") from None
    return body["token"]


class Verify:
    """GET /auth/verify: forward-auth for reverse proxies, no database round trip."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """204 with the caller's identity in headers."""
        claims = req.context.claims
        resp.status = falcon.HTTP_204
        resp.set_header("X-Auth-Subject", claims["sub"])
        resp.set_header("X-Auth-Username", claims["username"])
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
        auth.log_event("logout", user_id=claims["sub"], sid=claims["sid"], address=req.remote_addr)
        resp.status = falcon.HTTP_204


class Introspection:
    """POST /auth/introspect: RFC 7662, for admins."""

    def __init__(self, c: Components) -> None:
        self.c = c

    @falcon.before(require_admin)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Whether a token is active, and whose it is."""
        token = _token_param(req)
        no_store(resp)
        resp.media = self._refresh_state(token) or self._access_state(token) or {"active": False}

    def _refresh_state(self, token: str) -> dict[str, Any] | None:
        session = self.c.sessions.session_of(token)
        if session is None:
            return None
        stored = self.c.store.find_refresh_token(auth._token_hash(token))
        now = self.c.clock()
        if stored["used"] or "revoked_at" in session or session["expires_at"] <= now:
            return {"active": False}
        user = self.c.store.find_user(session["user_id"])
        if user is None:
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "sub": user["id"],
            "username": user["username"],
            "roles": user["roles"],
            "sid": session["_id"],
            "iat": int(session["created_at"].timestamp()),
            "exp": int(session["expires_at"].timestamp()),
            "iss": self.c.config.issuer,
        }

    def _access_state(self, token: str) -> dict[str, Any] | None:
        try:
            claims = self.c.tokens.verify(token)
        except auth.InvalidToken:
            return None
        if self.c.revocations.is_revoked(claims):
            return {"active": False}
        return {
            "active": True,
            "token_type": "access_token",
            **{
                k: claims[k]
                for k in ("sub", "username", "roles", "exp", "iat", "sid", "jti", "iss", "aud")
            },
        }


class Jwks:
    """GET /.well-known/jwks.json."""

    auth = None

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The public keys that still verify."""
        resp.set_header("Cache-Control", "public, max-age=60")
        resp.media = self.c.keyring.jwks()


class Metadata:
    """GET /.well-known/oauth-authorization-server (RFC 8414)."""

    auth = None

    def __init__(self, c: Components) -> None:
        self.c = c

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Where the endpoints are and what they support."""
        issuer = self.c.config.issuer.rstrip("/")
        resp.media = {
            "issuer": self.c.config.issuer,
            "token_endpoint": f"{issuer}/auth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "revocation_endpoint": f"{issuer}/auth/revoke",
            "introspection_endpoint": f"{issuer}/auth/introspect",
            "grant_types_supported": ["password", "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
            "introspection_endpoint_auth_methods_supported": ["bearer"],
            "revocation_endpoint_auth_signing_alg_values_supported": [],
            "token_endpoint_auth_signing_alg_values_supported": [],
            "id_token_signing_alg_values_supported": [],
            "access_token_signing_alg_values_supported": [self.c.config.signing_alg],
        }


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
        """200 ok, or 503 unavailable."""
        resp.set_header("Cache-Control", "no-store")
        try:
            self.c.store.ping(timeout=1.0)
        except store_module.Unavailable:
            resp.status = falcon.HTTP_503
            resp.set_header("Retry-After", RETRY_AFTER_UNAVAILABLE)
            resp.media = {"status": "unavailable"}
            return
        resp.media = {"status": "ok"}


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
        self.components.store.db.client.close()


class _SkipPublicMethods(auth.BearerAuth):
    """Bearer middleware that also honours a resource's `public_methods`."""

    def process_resource(self, req, resp, resource, params) -> None:
        """Skip public methods of mixed resources."""
        if req.method in getattr(resource, "public_methods", ()):
            return
        super().process_resource(req, resp, resource, params)


def _database_uri(config: Config) -> str:
    uri = config.mongodb_uri or store_module.running_embedded_uri(config.data_dir)
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
    revocations = auth.RevocationCache(store, access_ttl=config.access_ttl, clock=clock)
    throttle = auth.LoginThrottle(
        store, max_failures=config.login_max_failures, window=config.login_window, clock=clock
    )
    indexes = _Once(store.ensure_indexes)
    refresher = auth.BackgroundRefresher(
        [indexes, revocations.poll, keyring.refresh], interval=config.refresh_interval
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
            throttle,
            password_min_length=config.password_min_length,
            clock=clock,
        ),
        registrations=auth.RegistrationThrottle(store, clock=clock),
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
            falcon.CORSMiddleware(
                allow_origins=list(config.cors_origins),
                allow_credentials=None,
                expose_headers=["Location", "Retry-After", "WWW-Authenticate"],
            )
        )
    middleware.append(_SkipPublicMethods(c.tokens, c.revocations))
    app = Service(middleware=middleware)
    app.components = c
    app.req_options.strip_url_path_trailing_slash = False
    app.resp_options.default_media_type = JSON
    app.set_error_serializer(serialize_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(store_module.Unavailable, handle_unavailable)
    app.add_error_handler(store_module.Conflict, handle_conflict)
    app.add_error_handler(openapi.InvalidBody, handle_invalid_body)
    app.add_error_handler(auth.InvalidField, handle_invalid_field)
    app.add_error_handler(auth.Throttled, handle_throttled)

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


# -- the command line -------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """`tokenauth create-user NAME [--admin] --password-stdin` and `tokenauth rotate-key`."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="tokenauth", description="tokenauth administration")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-user", help="create a user, reading the password from stdin"
    )
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="give the user the admin role")
    create.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from stdin"
    )
    commands.add_parser("rotate-key", help="make a new signing key current")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"tokenauth: {message}", file=sys.stderr)
        return 1

    try:
        config = Config.from_env()
        if args.command == "rotate-key":
            ring = KeyRing(config.keys_dir, config.signing_alg, access_ttl=config.access_ttl).load()
            kid = ring.rotate()
            print(f"new signing key {kid}; older keys verify until their tokens expire")
            return 0
        password = sys.stdin.readline().rstrip("\r\n")
        with _cli_store(config) as store:
            store.ensure_indexes()
            accounts = auth.Accounts(
                store,
                PasswordHasher(),
                auth.LoginThrottle(store, max_failures=1, window=1),
                password_min_length=config.password_min_length,
            )
            roles = ("user", "admin") if args.admin else ("user",)
            user = accounts.register(args.username, password, roles=roles)
    except ConfigError as exc:
        return fail(str(exc))
    except auth.InvalidField as exc:
        return fail(f"{exc.field} {exc.message}")
    except store_module.Conflict:
        return fail(f"the username {args.username!r} is already taken")
    except store_module.Unavailable:
        return fail("the database is unreachable (check TOKENAUTH_MONGODB_URI)")
    except RuntimeError as exc:  # the embedded server could not start
        return fail(str(exc))
    auth.log_event("user_created", user_id=user["id"], roles=user["roles"], via="cli")
    print(f"created user {user['username']} ({user['id']}) with roles {', '.join(user['roles'])}")
    return 0


class _cli_store:
    """The configured database, or the embedded one (running already, or started for the call)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: store_module.EmbeddedServer | None = None
        self.client = None

    def __enter__(self) -> store_module.Store:
        uri = self.config.mongodb_uri or store_module.running_embedded_uri(self.config.data_dir)
        if uri is None:
            self.server = store_module.EmbeddedServer(self.config.data_dir)
            uri = self.server.start()
        self.client = store_module.connect(uri, timeout_ms=self.config.db_timeout_ms)
        return store_module.Store(self.client[self.config.db_name])

    def __exit__(self, *exc_info) -> None:
        self.client.close()
        if self.server is not None:
            self.server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
