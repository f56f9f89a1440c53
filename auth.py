"""Trust: access tokens, refresh sessions, revocation, accounts, the Bearer middleware."""

from __future__ import annotations

import datetime as dt
import hashlib
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
    InvalidGrant,
    InvalidInput,
    InvalidToken,
    LastAdmin,
    RefreshContended,
    RevocationsStale,
    Throttled,
    Unavailable,
)
from events import MAX_USER_AGENT, EventLog
from keys import CLOCK_SKEW, KeyRing
from passwords import PasswordHasher, PolicyError, check_policy, normalize
from throttle import LoginThrottle, RegistrationThrottle

log = logging.getLogger("tokenauth")

REALM = "tokenauth"
ACCESS_TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat", "jti", "sid", "username", "roles")
USERNAME_PUNCTUATION = frozenset("._-@")


# -- usernames --------------------------------------------------------------------------
def normalize_username(username: str) -> tuple[str, str]:
    """The NFKC display form and the case-insensitive key; InvalidInput if not allowed."""
    display = unicodedata.normalize("NFKC", username)
    if not 3 <= len(display) <= 64:
        raise InvalidInput([("username", "must be 3 to 64 characters")])
    if not all(ch.isalnum() or ch in USERNAME_PUNCTUATION for ch in display):
        raise InvalidInput([("username", "may contain only letters, digits and . _ - @")])
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
        # (key ring generation, verified tokens): one attribute, so a reader always gets a
        # dictionary together with the generation it belongs to.
        self._verified: tuple[int, dict[str, dict[str, Any]]] = (keyring.generation, {})

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


# -- refresh sessions -------------------------------------------------------------------
def _token_hash(token: str) -> str:
    # A fast hash suffices: refresh tokens carry 256 random bits, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


def _seen(address: str | None, user_agent: str | None) -> dict[str, Any]:
    """Where a session was last used from, as stored on it (what is known)."""
    seen: dict[str, Any] = {}
    if address:
        seen["address"] = address
    if user_agent:
        seen["user_agent"] = user_agent[:MAX_USER_AGENT]
    return seen


class Sessions:
    """Refresh sessions: opaque rotating refresh tokens with reuse detection."""

    # Retired tokens remembered per session for reuse detection; older ones are unknown.
    RETIRED_KEPT = 10
    # Refreshes per session per window: a client refreshes a few times an hour.
    REFRESH_LIMIT = 60
    REFRESH_WINDOW = 600

    def __init__(
        self,
        store: store_module.Store,
        revocations: RevocationCache,
        *,
        ttl: int,
        reuse_interval: int = 0,
        clock: Clock = utcnow,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
        events: EventLog | None = None,
    ) -> None:
        self.store = store
        self.revocations = revocations
        self.ttl = ttl
        self.reuse_interval = reuse_interval
        self.clock = clock
        self.new_secret = new_secret
        self.events = events or EventLog()

    def open(
        self,
        user: dict[str, Any],
        *,
        address: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[str, str, dt.datetime]:
        """Start a session for the user: its sid, first refresh token and end."""
        now = self.clock()
        sid = secrets.token_urlsafe(16)
        refresh_token = self.new_secret()
        expires_at = now + dt.timedelta(seconds=self.ttl)
        version = user.get("credential_version", 0)
        self.store.create_session(
            sid=sid,
            user_id=user["id"],
            token_hash=_token_hash(refresh_token),
            credential_version=version,
            now=now,
            expires_at=expires_at,
            seen=_seen(address, user_agent),
        )
        # A password change may have landed between the password check and the insert above,
        # after it ended the user's sessions: then this one must not live either. (A change
        # that lands after this read finds the session and ends it.)
        if self.store.credential_version(user["id"]) != version:
            self.revoke(sid)
            raise InvalidGrant("The password changed during this login; sign in again")
        return sid, refresh_token, expires_at

    def refresh(
        self, refresh_token: str, *, address: str | None = None, user_agent: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Retire a refresh token for a new one: the user, the session and the new token."""
        new_token = self.new_secret()
        now = self.clock()
        outcome, session = self.store.rotate_refresh_token(
            _token_hash(refresh_token),
            _token_hash(new_token),
            now=now,
            keep=self.RETIRED_KEPT,
            limit=self.REFRESH_LIMIT,
            window=self.REFRESH_WINDOW,
            grace=self.reuse_interval,
            touch={"last_used_at": now, **_seen(address, user_agent)},
        )
        if outcome == "unknown":
            raise InvalidGrant("The refresh token is invalid")
        if outcome == "contended":
            # The token is still in its reuse window; many tabs raced for it: try again.
            raise RefreshContended("The refresh token was used concurrently; try again")
        if outcome == "reused":
            # A retired token came back: whoever holds the chain, the session is not safe.
            self.revoke(session["id"])
            self.events.record(
                "refresh_reuse_detected",
                sid=session["id"],
                user_id=session["user_id"],
                address=address,
                user_agent=user_agent,
            )
            raise InvalidGrant("The refresh token was already used; the session is revoked")
        if outcome == "ended":
            raise InvalidGrant("The refresh token is expired or revoked")
        if outcome == "limited":
            ends = session["refresh_window_start"] + dt.timedelta(seconds=self.REFRESH_WINDOW)
            raise Throttled(max(1, int((ends - self.clock()).total_seconds() + 0.999)))
        if outcome == "graced":
            self.events.record(
                "refresh_reuse_allowed", sid=session["id"], user_id=session["user_id"]
            )
        user = self.store.find_user(session["user_id"])
        if user is None:
            self.revoke(session["id"])
            raise InvalidGrant("The user of this session no longer exists")
        if user.get("credential_version", 0) > session.get("credential_version", 0):
            # Opened under a password that has since changed (a login in flight during it).
            self.revoke(session["id"])
            raise InvalidGrant("The password changed since this session began; sign in again")
        if user.get("disabled"):
            # Disabling ends every session; this covers a login that was in flight then.
            self.revoke(session["id"])
            raise InvalidGrant("The refresh token is expired or revoked")
        return user, session, new_token

    def introspect(self, refresh_token: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The session a refresh token belongs to (None when it is not one of ours), and its
        user when the token is live and current (None otherwise)."""
        token_hash = _token_hash(refresh_token)
        session = self.store.find_session_by_token(token_hash)
        if session is None or not self._live(session) or session["current"] != token_hash:
            return session, None
        user = self.store.find_user(session["user_id"])
        if user is None or user.get("credential_version", 0) > session.get("credential_version", 0):
            return session, None
        return session, None if user.get("disabled") else user

    def session_of(self, refresh_token: str) -> dict[str, Any] | None:
        """The session a current or recently retired refresh token belongs to, or None."""
        return self.store.find_session_by_token(_token_hash(refresh_token))

    def _live(self, session: dict[str, Any]) -> bool:
        return "revoked_at" not in session and session["expires_at"] > self.clock()

    def revoke(self, sid: str) -> None:
        """Revoke the session: its refresh tokens and its access tokens."""
        self.store.revoke_session(sid, now=self.clock())
        self.revocations.revoke_session(sid)

    def live(self, user_id: str) -> list[dict[str, Any]]:
        """The user's live sessions, most recently used first."""
        return self.store.list_live_sessions(user_id, now=self.clock())

    def end(self, user_id: str, sid: str) -> bool:
        """Revoke the user's live session `sid`; False when it is not theirs or already over."""
        session = self.store.find_session(sid)
        if session is None or session["user_id"] != user_id or not self._live(session):
            return False
        self.revoke(sid)
        return True

    def revoke_others(self, user_id: str, keep_sid: str | None) -> list[str]:
        """Revoke every live session of the user except `keep_sid`; the revoked sids."""
        sids = [s for s in self.store.live_sessions_of(user_id, now=self.clock()) if s != keep_sid]
        for sid in sids:
            self.revoke(sid)
        return sids

    def restamp(self, sid: str, credential_version: int) -> None:
        """The caller's own session lives on under the new credentials."""
        self.store.restamp_session(sid, credential_version)


# -- accounts ---------------------------------------------------------------------------
# The roles an admin may give; the order they are stored and shown in.
ROLES = ("user", "admin")


def _active_admin(user: dict[str, Any]) -> bool:
    return "admin" in user["roles"] and not user.get("disabled")


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
        events: EventLog | None = None,
    ) -> None:
        self.store = store
        self.hasher = hasher
        self.throttle = throttle
        self.registrations = registrations
        self.password_min_length = password_min_length
        self.clock = clock
        self.events = events or EventLog()

    def password_problems(
        self, password: object, *, username: str, field: str = "password"
    ) -> list[tuple[str, str]]:
        """What the policy says of a new password (nothing when it is not a string yet)."""
        if not isinstance(password, str):
            return []
        try:
            check_policy(
                normalize(password), username=username, min_length=self.password_min_length
            )
        except PolicyError as exc:
            return [(field, str(exc))]
        return []

    def registration_problems(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        """Every rule of registration a schema cannot say, field by field."""
        problems: list[tuple[str, str]] = []
        username = body.get("username")
        display = username if isinstance(username, str) else ""
        if isinstance(username, str):
            try:
                display, _ = normalize_username(username)
            except InvalidInput as exc:
                problems.extend(exc.errors)
        problems.extend(self.password_problems(body.get("password"), username=display))
        return problems

    def register(
        self,
        username: str,
        password: str,
        *,
        roles: Iterable[str] = ("user",),
        address: str | None = None,
        email: dict[str, Any] | None = None,
    ) -> dict:
        """Create a user (counted against `address` when given); store.Conflict if taken.

        `email` holds the stored fields of the user's address, when one was given.
        """
        problems = self.registration_problems({"username": username, "password": password})
        if problems:
            raise InvalidInput(problems)
        display, key = normalize_username(username)
        # Counted only once the fields are valid: bad input writes nothing.
        if address is not None and self.registrations is not None:
            self.registrations.check_and_count(address)
        return self.store.create_user(
            username=display,
            username_key=key,
            password_hash=self.hasher.hash(normalize(password)),
            roles=roles,
            now=self.clock(),
            email=email,
        )

    def authenticate(
        self, username: str, password: str, *, address: str, user_agent: str | None = None
    ) -> dict[str, Any]:
        """The user whose password this is; Throttled or InvalidGrant otherwise."""
        try:
            _, key = normalize_username(username)
        except InvalidInput:
            # No account can have this name: spend a hash for the same timing, count nothing.
            self.hasher.verify(None, password)
            raise InvalidGrant("The username or password is incorrect") from None
        self.throttle.attempt(key, address)
        try:
            user = self.store.find_user_by_name(key)
            # Unknown users are verified against a dummy hash: same answer, same time.
            matches = self.hasher.verify(user and user["password_hash"], password)
        except Exception:
            self.throttle.abandoned(key, address)
            raise
        if not matches or user is None:
            self.throttle.failed(key, address)
            self.events.record(
                "login_failed",
                address=address,
                user_id=user and user["id"],
                user_agent=user_agent,
            )
            raise InvalidGrant("The username or password is incorrect")
        if user.get("disabled"):
            # The answer of a wrong password, counted as one: nothing tells a disabled
            # account from a wrong guess, not even when throttling starts.
            self.throttle.failed(key, address)
            self.events.record(
                "login_disabled", address=address, user_id=user["id"], user_agent=user_agent
            )
            raise InvalidGrant("The username or password is incorrect")
        self.throttle.succeeded(key, address)
        if self.hasher.needs_rehash(user["password_hash"]):
            # Conditional on the hash just checked: a change that landed meanwhile stays.
            self.store.upgrade_password_hash(
                user["id"], user["password_hash"], self.hasher.hash(password)
            )
        return user

    def change_password(
        self,
        user_id: str,
        current: object,
        new: object,
        *,
        address: str,
        problems: list[tuple[str, str]] = (),
    ) -> int:
        """Replace the password after checking the current one; the new credential version.

        InvalidInput names every invalid field, `problems` (found before) included.
        """
        problems = list(problems)
        user = self.store.find_user(user_id)
        if user is None:
            raise InvalidInput([("current_password", "is incorrect")])
        problems.extend(
            self.password_problems(new, username=user["username"], field="new_password")
        )
        problems += self._current_password_problems(user, current, address=address)
        if problems:
            raise InvalidInput(sorted(set(problems)))
        version = self.store.change_password_hash(user_id, self.hasher.hash(normalize(new)))
        if version is None:
            raise InvalidInput([("current_password", "is incorrect")])
        return version

    def find_by_name(self, username: str) -> dict[str, Any] | None:
        """The user with this name (any case, any compatible form), or None."""
        try:
            _, key = normalize_username(username)
        except InvalidInput:
            return None
        return self.store.find_user_by_name(key)

    def reset_password(
        self,
        user: dict[str, Any],
        new: str,
        *,
        field: str = "password",
        expected_version: int | None = None,
    ) -> int | None:
        """A reset: the policy checked, the credential version bumped; the new one.

        With `expected_version`, None when the password changed since (the reset is stale).
        """
        problems = self.password_problems(new, username=user["username"], field=field)
        if problems:
            raise InvalidInput(problems)
        version = self.store.change_password_hash(
            user["id"], self.hasher.hash(normalize(new)), expected_version=expected_version
        )
        if version is None and expected_version is None:
            raise InvalidInput([("username", "no longer exists")])
        return version

    def check_current_password(self, user: dict[str, Any], current: str, *, address: str) -> None:
        """InvalidInput unless `current` is the user's password (a failure counts as a login's)."""
        problems = self._current_password_problems(user, current, address=address)
        if problems:
            raise InvalidInput(problems)

    def check_deletion(self, user: dict[str, Any], current: str, *, address: str) -> None:
        """InvalidInput for a wrong current password; LastAdmin when no admin would be left."""
        problems = self._current_password_problems(user, current, address=address)
        if problems:
            raise InvalidInput(problems)
        if _active_admin(user) and self.store.count_admins() <= 1:
            raise LastAdmin()

    def administer(
        self, user_id: str, *, disabled: bool | None = None, roles: list[str] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Disable, enable or set the roles of a user: (before, after), or None when none.

        LastAdmin when no active admin would be left.
        """
        changes: dict[str, Any] = {}
        if disabled is not None:
            changes["disabled"] = disabled
        if roles is not None:
            changes["roles"] = sorted(set(roles), key=ROLES.index)
        before = self.store.find_user(user_id)
        if before is None:
            return None
        after = {**before, **changes}
        if not changes:
            return before, after
        if _active_admin(before) and not _active_admin(after) and self.store.count_admins() <= 1:
            raise LastAdmin()
        before = self.store.update_account(user_id, changes)
        if before is None:
            return None
        after = {**before, **changes}
        # Two admins demoting each other at once both passed the count above: the second
        # write to find none left puts its change back.
        demoted = _active_admin(before) and not _active_admin(after)
        if demoted and self.store.count_admins() == 0:
            self.store.update_account(
                user_id, {k: before.get(k, False if k == "disabled" else None) for k in changes}
            )
            raise LastAdmin()
        return before, after

    def delete(self, user: dict[str, Any]) -> None:
        """Remove the user and the events kept for them."""
        self.store.delete_user(user["id"])

    def _current_password_problems(
        self, user: dict[str, Any], current: object, *, address: str
    ) -> list[tuple[str, str]]:
        if not isinstance(current, str):
            return []  # the schema has named it already
        # Guessing the current password with a stolen access token counts as failed logins.
        key = user["username_key"]
        self.throttle.attempt(key, address)
        try:
            matches = self.hasher.verify(user["password_hash"], current)
        except Exception:
            self.throttle.abandoned(key, address)
            raise
        if matches:
            self.throttle.succeeded(key, address)
            return []
        self.throttle.failed(key, address)
        return [("current_password", "is incorrect")]


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
            headers={"WWW-Authenticate": _challenge("insufficient_scope", description)},
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
