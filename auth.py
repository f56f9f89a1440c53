"""Trust: access tokens, the revocation cache, usernames, the Bearer middleware."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import falcon
import jwt

import store as store_module
from clock import Clock, utcnow
from errors import (
    InvalidInput,
    InvalidToken,
    RevocationsStale,
    Unavailable,
)
from keys import CLOCK_SKEW, KeyRing

log = logging.getLogger("tokenauth")

REALM = "tokenauth"
ACCESS_TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "sid", "username", "roles")
USERNAME_PUNCTUATION = frozenset("._-@")
# Authentication assurance levels (NIST SP 800-63B) as `acr` values: one factor, two.
AAL1, AAL2 = "aal1", "aal2"


# -- usernames --------------------------------------------------------------------------
def normalize_username(username: str) -> tuple[str, str]:
    """The NFKC display form and the case-insensitive key; InvalidInput if not allowed."""
    display = unicodedata.normalize("NFKC", username)
    if not 3 <= len(display) <= 64:
        raise InvalidInput([("username", "must be 3 to 64 characters")])
    if not all(ch.isalnum() or ch in USERNAME_PUNCTUATION for ch in display):
        raise InvalidInput([("username", "may contain only letters, digits and . _ - @")])
    return display, unicodedata.normalize("NFKC", display.casefold())


# -- how the user signed in -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Authentication:
    """When and how the user proved who they are: a token's `auth_time`, `amr` and `acr`.

    `amr` holds RFC 8176 values (`pwd`, `otp`, `hwk`, `swk`, `user`, `mfa`); the level is
    `aal2` exactly when it holds `mfa` (two factors), else `aal1`. Kept on the session, so
    every token a session issues carries the sign-in that opened (or last re-authenticated) it.
    """

    time: dt.datetime
    amr: tuple[str, ...] = ("pwd",)

    @property
    def acr(self) -> str:
        """The assurance level: aal2 for two factors, aal1 for one."""
        return AAL2 if "mfa" in self.amr else AAL1

    def claims(self) -> dict[str, Any]:
        """The JWT claims (OpenID Connect Core 1.0 §2, RFC 9470)."""
        return {"auth_time": int(self.time.timestamp()), "amr": list(self.amr), "acr": self.acr}

    def fields(self) -> dict[str, Any]:
        """What a session stores of it."""
        return {"auth_time": self.time, "amr": list(self.amr), "acr": self.acr}

    @classmethod
    def of_session(cls, session: dict[str, Any]) -> Authentication:
        """The sign-in a session holds; one opened before these fields existed was a password
        login at its creation."""
        return cls(
            time=session.get("auth_time") or session["created_at"],
            amr=tuple(session.get("amr") or ("pwd",)),
        )


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
        # (key ring generation, verified tokens): one attribute, so a reader always gets a
        # dictionary together with the generation it belongs to.
        self._verified: tuple[int, dict[str, dict[str, Any]]] = (keyring.generation, {})

    def issue(
        self,
        *,
        user: dict[str, Any],
        sid: str,
        not_after: dt.datetime | None = None,
        auth: Authentication | None = None,
        client: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A signed access token for the user in session `sid` (dying by `not_after`),
        carrying how the user signed in (`auth`) when given.

        `client` ({"client_id", "scope", "first_party"}): the OAuth client it is issued to.
        """
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
        if auth is not None:
            claims.update(auth.claims())
        if client is not None:
            claims["client_id"] = client["client_id"]
            claims["scope"] = client["scope"]
            if not client.get("first_party"):
                # Consent to a third party covers the scopes it lists, never administration.
                claims["roles"] = [role for role in claims["roles"] if role == "user"]
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
        generation = self.keyring.generation
        cached_generation, verified = self._verified
        if cached_generation != generation:
            # A key came or went (a removed compromised key among them): verify afresh.
            verified = {}
            self._verified = (generation, verified)
        # `verified` belongs to the generation this check started with: if a key goes while
        # we decode, the next check starts a new dictionary and this result is never read.
        claims = verified.get(token)
        if claims is not None:
            if claims["exp"] + CLOCK_SKEW <= now:
                verified.pop(token, None)
                raise InvalidToken("The access token expired")
            return claims
        claims = self._decode(token, now)
        if len(verified) >= self.CACHE_SIZE:
            verified.clear()  # rare; cheaper and simpler than an LRU on the hot path
        verified[token] = claims
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
        # Optional (tokens issued before them lack them), but well-formed when present.
        if (
            not isinstance(claims.get("auth_time", 0), int)
            or not isinstance(claims.get("amr", []), list)
            or not isinstance(claims.get("acr", AAL1), str)
        ):
            raise InvalidToken("The access token claims are malformed")
        return claims


# -- revocation -------------------------------------------------------------------------
class RevocationCache:
    """The set of revoked sessions and token ids, kept per worker and fed from MongoDB."""

    # Records are polled with this overlap, so a write that lands late is still seen.
    OVERLAP = dt.timedelta(seconds=5)
    # A check of a stale set tries one poll itself, at most this often (seconds).
    INLINE_POLL_INTERVAL = 1.0

    def __init__(
        self,
        store: store_module.Store,
        *,
        access_ttl: int,
        stale_after: float,
        clock: Clock = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.access_ttl = access_ttl
        self.stale_after = stale_after
        self.clock = clock
        self.monotonic = monotonic
        self._revoked: dict[str, dt.datetime] = {}
        self._since: dt.datetime | None = None
        self._lock = threading.Lock()
        self._polled_at: float | None = None  # monotonic time of the last successful poll
        self._inline_tried_at = -self.INLINE_POLL_INTERVAL

    def is_revoked(self, claims: dict[str, Any]) -> bool:
        """True when the token's session or the token itself was revoked."""
        revoked = self._revoked
        return ("sid:" + claims["sid"]) in revoked or ("jti:" + claims["jti"]) in revoked

    def age(self) -> float | None:
        """Seconds since the last successful poll; None before the first."""
        polled_at = self._polled_at
        return None if polled_at is None else self.monotonic() - polled_at

    def ensure_fresh(self) -> None:
        """RevocationsStale unless the set was refreshed within `stale_after` seconds."""
        polled_at = self._polled_at
        if polled_at is not None and self.monotonic() - polled_at <= self.stale_after:
            return
        # Stale (the poller is behind, or the database is away): one request tries a poll
        # itself, the others do not queue behind it.
        now = self.monotonic()
        if now - self._inline_tried_at < self.INLINE_POLL_INTERVAL or not self._lock.acquire(
            blocking=False
        ):
            raise RevocationsStale()
        try:
            self._inline_tried_at = now
            self._poll_locked()
        except Unavailable:
            raise RevocationsStale() from None
        finally:
            self._lock.release()

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
            self._poll_locked()

    def _poll_locked(self) -> None:
        started = self.monotonic()
        now = self.clock()
        since = None if self._since is None else self._since - self.OVERLAP
        records = self.store.revocations_since(since)
        revoked = {k: v for k, v in self._revoked.items() if v > now}
        for record in records:
            if record["expires_at"] > now:
                revoked[record["_id"]] = record["expires_at"]
        self._revoked = revoked  # swapped whole: readers never see a half-built set
        self._since = now
        self._polled_at = started


class BackgroundRefresher:
    """A daemon thread that runs each named task every `interval` seconds, per worker."""

    def __init__(
        self,
        tasks: Iterable[tuple[str, Callable[[], object]]],
        *,
        interval: float,
        revocations: RevocationCache | None = None,
    ) -> None:
        self.tasks = list(tasks)
        self.interval = interval
        self.revocations = revocations
        self._failing: dict[str, str] = {}  # task name -> the kind of failure last logged
        self._stale_logged = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> None:
        """Run every task once; no failure of one task stops it or the others."""
        for name, task in self.tasks:
            try:
                task()
            except Unavailable:
                self._failed(name, "database unavailable")
            except Exception as exc:  # the loop must outlive any bug or odd file it meets
                self._failed(name, _describe_failure(exc))
            else:
                if self._failing.pop(name, None) is not None:
                    log.warning("background task %s recovered", name)
        self._watch_staleness()

    def _failed(self, name: str, kind: str) -> None:
        # Logged once per kind of failure, not once a second while it lasts.
        if self._failing.get(name) != kind:
            self._failing[name] = kind
            log.warning(
                "background task %s failed: %s (retrying every %s s)", name, kind, self.interval
            )

    def _watch_staleness(self) -> None:
        if self.revocations is None:
            return
        age = self.revocations.age()
        stale = age is None or age > self.revocations.stale_after
        if stale and not self._stale_logged:
            shown = "never polled" if age is None else f"last poll {age:.1f} s ago"
            log.warning(
                "revocation set is stale (%s, bound %.1f s): protected routes answer 503",
                shown,
                self.revocations.stale_after,
            )
        elif not stale and self._stale_logged:
            log.warning("revocation set is fresh again: protected routes answer")
        self._stale_logged = stale

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


def _describe_failure(exc: BaseException) -> str:
    """The type and place of an exception, without its message (which may hold data)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
    return f"{type(exc).__name__} at {where}"


# -- the Bearer middleware --------------------------------------------------------------
def challenge(
    error: str | None = None, description: str | None = None, **params: int | str | None
) -> str:
    """An RFC 6750 Bearer challenge; `params` adds e.g. RFC 9470's max_age and acr_values."""
    text = f'Bearer realm="{REALM}"'
    if error:
        text += f', error="{error}"'
    if description:
        safe = description.replace("\\", "").replace('"', "'")
        text += f', error_description="{safe}"'
    for name, value in params.items():
        if value is not None:
            text += f", {name}={value}" if isinstance(value, int) else f', {name}="{value}"'
    return text


def unauthorized(description: str | None = None) -> falcon.HTTPUnauthorized:
    """401 with the RFC 6750 challenge (no error code when no token was sent)."""
    error = "invalid_token" if description else None
    return falcon.HTTPUnauthorized(
        title="Unauthorized",
        description=description
        or "This route needs an access token: Authorization: Bearer <token>",
        challenges=[challenge(error, description)],
    )


def require_admin(req: falcon.Request, resp: falcon.Response, resource, params) -> None:
    """Falcon hook: the caller must hold the admin role."""
    require_role(req, "admin")


def require_role(req: falcon.Request, role: str) -> None:
    """403 insufficient_scope unless the caller's token carries `role`."""
    if role not in req.context.claims["roles"]:
        description = f"This route needs the {role} role"
        raise falcon.HTTPForbidden(
            title="Forbidden",
            description=description,
            headers={"WWW-Authenticate": challenge("insufficient_scope", description)},
        )


# For a resource that no method of needs a token: `public_methods = EVERY_METHOD`.
EVERY_METHOD = frozenset(falcon.constants.COMBINED_METHODS)


class BearerAuth:
    """Falcon middleware: verify the Bearer token unless the resource or method is public."""

    def __init__(self, tokens: AccessTokens, revocations: RevocationCache) -> None:
        self.tokens = tokens
        self.revocations = revocations

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource, params
    ) -> None:
        """Authenticate the request, or answer 401."""
        # A resource lists the methods anyone may call; every other method needs a token.
        if resource is None or req.method in getattr(resource, "public_methods", ()):
            return
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
        # A set this worker could not refresh may miss a logout: 503 rather than fail open.
        self.revocations.ensure_fresh()
        if self.revocations.is_revoked(claims):
            raise unauthorized("The access token was revoked")
        return claims
