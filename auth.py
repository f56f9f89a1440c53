"""Trust: access tokens, refresh sessions, revocation, login throttling, Bearer middleware."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import falcon
import jwt

import store as store_module
from keys import CLOCK_SKEW, KeyRing
from passwords import PasswordHasher, PolicyError, check_policy, normalize
from throttle import LoginThrottle, RegistrationThrottle

log = logging.getLogger("tokenauth")
events_log = logging.getLogger("tokenauth.events")

REALM = "tokenauth"
ACCESS_TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "sid", "username", "roles")
USERNAME_PUNCTUATION = frozenset("._-@")

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def log_event(event: str, **fields: Any) -> None:
    """One JSON line per auth event; callers pass ids and addresses, never secrets."""
    time = utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    line = {"event": event, "time": time, **fields}
    events_log.info(json.dumps(line, default=str, sort_keys=True))


# -- errors -----------------------------------------------------------------------------
class InvalidGrant(Exception):
    """A grant that cannot be honoured (RFC 6749 §5.2 `invalid_grant`)."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidToken(Exception):
    """An access token that must not be accepted; the description is safe to show."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidField(Exception):
    """One input field that fails a rule a schema cannot express."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field} {message}")
        self.field = field
        self.message = message


# -- usernames --------------------------------------------------------------------------
def normalize_username(username: str) -> tuple[str, str]:
    """The NFKC display form and the case-insensitive key; InvalidField if not allowed."""
    display = unicodedata.normalize("NFKC", username)
    if not 3 <= len(display) <= 64:
        raise InvalidField("username", "must be 3 to 64 characters")
    if not all(ch.isalnum() or ch in USERNAME_PUNCTUATION for ch in display):
        raise InvalidField("username", "may contain only letters, digits and . _ - @")
    return display, unicodedata.normalize("NFKC", display.casefold())


# -- access tokens ----------------------------------------------------------------------
class AccessTokens:
    """Issue and verify RFC 9068 access tokens, with a per-worker cache of verified ones."""

    CACHE_SIZE = 10_000

    def __init__(
        self,
        keyring: KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl: int,
        clock: Clock = utcnow,
    ) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl
        self.clock = clock
        self._verified: dict[str, dict[str, Any]] = {}
        self._verified_generation = keyring.generation

    def issue(
        self, *, user: dict[str, Any], sid: str, not_after: dt.datetime | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A signed access token for the user in session `sid` (dying by `not_after`)."""
        now = int(self.clock().timestamp())
        expires = now + self.ttl
        if not_after is not None:
            # An access token never outlives the session it belongs to.
            expires = max(now + 1, min(expires, int(not_after.timestamp())))
        claims = {
            "iss": self.issuer,
            "sub": user["id"],
            "aud": self.audience,
            "iat": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(16),
            "sid": sid,
            "username": user["username"],
            "roles": list(user["roles"]),
        }
        key = self.keyring.current
        token = jwt.encode(
            claims,
            key.signing_key,
            algorithm=self.keyring.algorithm,
            headers={"typ": ACCESS_TOKEN_TYPE, "kid": key.kid},
        )
        return token, claims

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; InvalidToken otherwise (revocation is checked apart)."""
        now = self.clock().timestamp()
        if self._verified_generation != self.keyring.generation:
            # A key came or went (a removed compromised key among them): verify afresh.
            self._verified = {}
            self._verified_generation = self.keyring.generation
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] + CLOCK_SKEW <= now:
                self._verified.pop(token, None)
                raise InvalidToken("The access token expired")
            return claims
        claims = self._decode(token, now)
        if len(self._verified) >= self.CACHE_SIZE:
            self._verified.clear()  # rare; cheaper and simpler than an LRU on the hot path
        self._verified[token] = claims
        return claims

    def _decode(self, token: str, now: float) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("The access token is malformed") from None
        if header.get("alg") != self.keyring.algorithm:
            raise InvalidToken("The access token is signed with an unexpected algorithm")
        if str(header.get("typ", "")).lower() not in (ACCESS_TOKEN_TYPE, "application/at+jwt"):
            raise InvalidToken("The token is not an access token (typ at+jwt)")
        kid = header.get("kid")
        key = self.keyring.verifying_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("The access token is signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.keyring.algorithm],  # pinned: never taken from the header
                audience=self.audience,
                issuer=self.issuer,
                leeway=CLOCK_SKEW,
                # exp and iat are checked below against our clock, not PyJWT's wall clock.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise InvalidToken("The access token is meant for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("The access token comes from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The access token lacks the {exc.claim} claim") from None
        except jwt.PyJWTError:
            raise InvalidToken("The access token signature or claims are invalid") from None
        # Expiry against our injected clock, not the wall clock PyJWT would read.
        if not isinstance(claims["exp"], int | float) or claims["exp"] + CLOCK_SKEW <= now:
            raise InvalidToken("The access token expired")
        if not isinstance(claims["iat"], int | float) or claims["iat"] - CLOCK_SKEW > now:
            raise InvalidToken("The access token is issued in the future")
        if not isinstance(claims["roles"], list) or not isinstance(claims["sid"], str):
            raise InvalidToken("The access token claims are malformed")
        return claims


# -- revocation -------------------------------------------------------------------------
class RevocationCache:
    """The set of revoked sessions and token ids, kept per worker and fed from MongoDB."""

    # Records are polled with this overlap, so a write that lands late is still seen.
    OVERLAP = dt.timedelta(seconds=5)

    def __init__(self, store: store_module.Store, *, access_ttl: int, clock: Clock = utcnow):
        self.store = store
        self.access_ttl = access_ttl
        self.clock = clock
        self._revoked: dict[str, dt.datetime] = {}
        self._since: dt.datetime | None = None
        self._lock = threading.Lock()

    def is_revoked(self, claims: dict[str, Any]) -> bool:
        """True when the token's session or the token itself was revoked."""
        revoked = self._revoked
        return ("sid:" + claims["sid"]) in revoked or ("jti:" + claims["jti"]) in revoked

    def revoke_session(self, sid: str) -> None:
        """Stop every access token of the session, here now and everywhere within a poll."""
        now = self.clock()
        self._record("sid:" + sid, now + dt.timedelta(seconds=self.access_ttl + CLOCK_SKEW), now)

    def revoke_access_token(self, claims: dict[str, Any]) -> None:
        """Stop one access token until it expires."""
        now = self.clock()
        expires = dt.datetime.fromtimestamp(claims["exp"] + CLOCK_SKEW, dt.UTC)
        self._record("jti:" + claims["jti"], expires, now)

    def _record(self, key: str, expires_at: dt.datetime, now: dt.datetime) -> None:
        self.store.add_revocation(key, now=now, expires_at=expires_at)
        self._revoked[key] = expires_at

    def poll(self) -> None:
        """Fetch revocations recorded since the last poll (by any worker or instance)."""
        with self._lock:
            now = self.clock()
            since = None if self._since is None else self._since - self.OVERLAP
            records = self.store.revocations_since(since)
            revoked = {k: v for k, v in self._revoked.items() if v > now}
            for record in records:
                if record["expires_at"] > now:
                    revoked[record["_id"]] = record["expires_at"]
            self._revoked = revoked  # swapped whole: readers never see a half-built set
            self._since = now


class BackgroundRefresher:
    """A daemon thread that runs each task every `interval` seconds, per worker."""

    def __init__(self, tasks: Iterable[Callable[[], object]], *, interval: float) -> None:
        self.tasks = list(tasks)
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        """Run every task once; a database outage waits for the next round."""
        for task in self.tasks:
            try:
                task()
            except store_module.Unavailable:
                log.warning("background refresh skipped: database unavailable")

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="tokenauth-refresh", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()


# -- refresh sessions -------------------------------------------------------------------
def _token_hash(token: str) -> str:
    # A fast hash suffices: refresh tokens carry 256 random bits, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Refresh sessions: opaque rotating refresh tokens with reuse detection."""

    def __init__(
        self,
        store: store_module.Store,
        revocations: RevocationCache,
        *,
        ttl: int,
        clock: Clock = utcnow,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.store = store
        self.revocations = revocations
        self.ttl = ttl
        self.clock = clock
        self.new_secret = new_secret

    def open(self, user_id: str) -> tuple[str, str, dt.datetime]:
        """Start a session for the user: its sid, first refresh token and end."""
        now = self.clock()
        sid = secrets.token_urlsafe(16)
        refresh_token = self.new_secret()
        expires_at = now + dt.timedelta(seconds=self.ttl)
        self.store.create_session(
            sid=sid,
            user_id=user_id,
            token_hash=_token_hash(refresh_token),
            now=now,
            expires_at=expires_at,
        )
        return sid, refresh_token, expires_at

    def rotate(
        self, refresh_token: str, *, address: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """Retire a refresh token for a new one: the session and the new token."""
        used = self.store.use_refresh_token(_token_hash(refresh_token))
        if used is None:
            raise InvalidGrant("The refresh token is invalid")
        sid = used["sid"]
        if used["used"]:
            # A retired token came back: whoever holds the chain, the session is not safe.
            self.revoke(sid)
            session = self.store.find_session(sid)
            user_id = session and session["user_id"]
            log_event("refresh_reuse_detected", sid=sid, user_id=user_id, address=address)
            raise InvalidGrant("The refresh token was already used; the session is revoked")
        session = self.store.find_session(sid)
        if session is None or "revoked_at" in session or session["expires_at"] <= self.clock():
            raise InvalidGrant("The refresh token is expired or revoked")
        new_token = self.new_secret()
        self.store.add_refresh_token(
            token_hash=_token_hash(new_token), sid=sid, expires_at=session["expires_at"]
        )
        return session, new_token

    def session_of(self, refresh_token: str) -> dict[str, Any] | None:
        """The live session a refresh token belongs to, or None."""
        token = self.store.find_refresh_token(_token_hash(refresh_token))
        return None if token is None else self.store.find_session(token["sid"])

    def revoke(self, sid: str) -> None:
        """Revoke the session: its refresh tokens and its access tokens."""
        self.store.revoke_session(sid, now=self.clock())
        self.revocations.revoke_session(sid)

    def revoke_others(self, user_id: str, keep_sid: str) -> list[str]:
        """Revoke every live session of the user except `keep_sid`; the revoked sids."""
        sids = [s for s in self.store.live_sessions_of(user_id, now=self.clock()) if s != keep_sid]
        for sid in sids:
            self.revoke(sid)
        return sids


# -- accounts ---------------------------------------------------------------------------
class Accounts:
    """Registration, authentication and password change."""

    def __init__(
        self,
        store: store_module.Store,
        hasher: PasswordHasher,
        throttle: LoginThrottle,
        *,
        password_min_length: int,
        registrations: RegistrationThrottle | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.throttle = throttle
        self.registrations = registrations
        self.password_min_length = password_min_length
        self.clock = clock

    def check_password(self, password: str, username: str, field: str = "password") -> str:
        """The NFC form of an acceptable new password; InvalidField otherwise."""
        password = normalize(password)
        try:
            check_policy(password, username=username, min_length=self.password_min_length)
        except PolicyError as exc:
            raise InvalidField(field, str(exc)) from None
        return password

    def register(
        self,
        username: str,
        password: str,
        *,
        roles: Iterable[str] = ("user",),
        address: str | None = None,
    ) -> dict:
        """Create a user (counted against `address` when given); store.Conflict if taken."""
        display, key = normalize_username(username)
        password = self.check_password(password, display)
        # Counted only once the fields are valid: bad input writes nothing.
        if address is not None and self.registrations is not None:
            self.registrations.check_and_count(address)
        return self.store.create_user(
            username=display,
            username_key=key,
            password_hash=self.hasher.hash(password),
            roles=roles,
            now=self.clock(),
        )

    def authenticate(self, username: str, password: str, *, address: str) -> dict[str, Any]:
        """The user whose password this is; Throttled or InvalidGrant otherwise."""
        try:
            _, key = normalize_username(username)
        except InvalidField:
            key = unicodedata.normalize("NFKC", username.casefold())
        self.throttle.attempt(key, address)
        user = self.store.find_user_by_name(key)
        # Unknown users are verified against a dummy hash: same answer, same time.
        if not self.hasher.verify(user and user["password_hash"], password) or user is None:
            self.throttle.failed(key, address)
            log_event("login_failed", address=address, user_id=user and user["id"])
            raise InvalidGrant("The username or password is incorrect")
        self.throttle.succeeded(key, address)
        if self.hasher.needs_rehash(user["password_hash"]):
            self.store.set_password_hash(user["id"], self.hasher.hash(password))
        return user

    def change_password(
        self, user_id: str, current: str, new: str, *, address: str
    ) -> dict[str, Any]:
        """Replace the password after checking the current one; InvalidField otherwise."""
        user = self.store.find_user(user_id)
        if user is None:
            raise InvalidField("current_password", "is incorrect")
        # Guessing the current password with a stolen access token counts as failed logins.
        self.throttle.attempt(user["username_key"], address)
        if not self.hasher.verify(user["password_hash"], current):
            self.throttle.failed(user["username_key"], address)
            raise InvalidField("current_password", "is incorrect")
        self.throttle.succeeded(user["username_key"], address)
        new = self.check_password(new, user["username"], field="new_password")
        self.store.set_password_hash(user_id, self.hasher.hash(new))
        return user


# -- the Bearer middleware --------------------------------------------------------------
def _challenge(error: str | None = None, description: str | None = None) -> str:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
    if description:
        safe = description.replace("\\", "").replace('"', "'")
        challenge += f', error_description="{safe}"'
    return challenge


def unauthorized(description: str | None = None) -> falcon.HTTPUnauthorized:
    """401 with the RFC 6750 challenge (no error code when no token was sent)."""
    error = "invalid_token" if description else None
    return falcon.HTTPUnauthorized(
        title="Unauthorized",
        description=description
        or "This route needs an access token: Authorization: Bearer <token>",
        challenges=[_challenge(error, description)],
    )


def require_role(req: falcon.Request, role: str) -> None:
    """403 insufficient_scope unless the caller's token carries `role`."""
    if role not in req.context.claims["roles"]:
        description = f"This route needs the {role} role"
        raise falcon.HTTPForbidden(
            title="Forbidden",
            description=description,
            headers={"WWW-Authenticate": _challenge("insufficient_scope", description)},
        )


class BearerAuth:
    """Falcon middleware: verify the Bearer token unless the resource or method is public."""

    def __init__(self, tokens: AccessTokens, revocations: RevocationCache) -> None:
        self.tokens = tokens
        self.revocations = revocations

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource, params
    ) -> None:
        """Authenticate the request, or answer 401."""
        if resource is None or getattr(resource, "auth", "bearer") is None:
            return
        if req.method in getattr(resource, "public_methods", ()):
            return  # a mixed resource (POST /users registers, GET /users is for admins)
        if req.method == "OPTIONS":
            return  # CORS preflight carries no credentials
        req.context.claims = self.authenticate(req.get_header("Authorization"))

    def authenticate(self, header: str | None) -> dict[str, Any]:
        """The claims of the token in an Authorization header, or raise 401."""
        if not header:
            raise unauthorized()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise unauthorized("The Authorization header is not of the form Bearer <token>")
        try:
            claims = self.tokens.verify(token)
        except InvalidToken as exc:
            raise unauthorized(exc.description) from None
        if self.revocations.is_revoked(claims):
            raise unauthorized("The access token was revoked")
        return claims
