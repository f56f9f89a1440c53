"""Refresh sessions: opaque rotating refresh tokens, reuse detection and the reuse window."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import store as store_module
from auth import Authentication, RevocationCache
from clock import Clock, utcnow
from errors import InvalidGrant, Throttled
from events import MAX_USER_AGENT, EventLog


def _token_hash(token: str) -> str:
    # A fast hash suffices: refresh tokens carry 256 random bits, nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


# The token a rotation hands out is kept sealed with the token it retires: whoever presents
# that retired token within the reuse window gets the same successor back (racing tabs end
# with one cookie value, whatever order the browser stores their answers in), while the
# database alone never holds a usable refresh token.
_SEAL_NONCE = 12


def _seal_key(token: str) -> bytes:
    # The token carries 256 random bits: one hash derives a full-strength key from it.
    return hashlib.sha256(b"tokenauth refresh seal\0" + token.encode()).digest()


def _seal(retiring: str, successor: str) -> bytes:
    nonce = secrets.token_bytes(_SEAL_NONCE)
    return nonce + AESGCM(_seal_key(retiring)).encrypt(nonce, successor.encode(), None)


def _unseal(retired: str, sealed: bytes) -> str | None:
    try:
        plain = AESGCM(_seal_key(retired)).decrypt(sealed[:_SEAL_NONCE], sealed[_SEAL_NONCE:], None)
    except InvalidTag:
        return None
    return plain.decode()


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
        auth: Authentication | None = None,
        extra: dict[str, Any] | None = None,
        ttl: int | None = None,
    ) -> tuple[str, str, dt.datetime]:
        """Start a session for the user signed in by `auth` (a password, now, by default):
        its sid, first refresh token and end.

        `extra`: fields of a client's session (client, scope, sign-in) or of a sign-in;
        `ttl` a shorter life.
        """
        now = self.clock()
        auth = auth or Authentication(time=now)
        sid = secrets.token_urlsafe(16)
        refresh_token = self.new_secret()
        expires_at = now + dt.timedelta(seconds=min(ttl or self.ttl, self.ttl))
        version = user.get("credential_version", 0)
        self.store.create_session(
            sid=sid,
            user_id=user["id"],
            token_hash=_token_hash(refresh_token),
            credential_version=version,
            now=now,
            expires_at=expires_at,
            seen=_seen(address, user_agent),
            auth=auth.fields(),
            extra=extra,
        )
        # A password change may have landed between the password check and the insert above,
        # after it ended the user's sessions: then this one must not live either. (A change
        # that lands after this read finds the session and ends it.)
        if self.store.credential_version(user["id"]) != version:
            self.revoke(sid)
            raise InvalidGrant("The password changed during this login; sign in again")
        return sid, refresh_token, expires_at

    def refresh(
        self,
        refresh_token: str,
        *,
        address: str | None = None,
        user_agent: str | None = None,
        client_id: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any], str]:
        """Retire a refresh token for a new one: the user, the session and the new token.

        Within the reuse interval the token just retired gives the same new token again.
        Only the client the token was issued to may use it (`client_id`, None for none)."""
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
            sealed=_seal(refresh_token, new_token) if self.reuse_interval else None,
            touch={"last_used_at": now, **_seen(address, user_agent)},
            client_id=client_id,
        )
        if outcome == "unknown":
            raise InvalidGrant("The refresh token is invalid")
        if outcome == "wrong_client":
            raise InvalidGrant("The refresh token was issued to another client")
        if outcome == "graced":
            new_token = _unseal(refresh_token, session["sealed"])
            if new_token is None or _token_hash(new_token) != session["current"]:
                # Only a changed session can get here (rotated again meanwhile): not reuse.
                raise InvalidGrant("The refresh token was used concurrently; sign in again")
            self.events.record(
                "refresh_reuse_allowed", sid=session["id"], user_id=session["user_id"]
            )
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

    def reauthenticate(
        self,
        refresh_token: str,
        user: dict[str, Any],
        auth: Authentication,
        *,
        address: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[str, str, dt.datetime] | None:
        """A new sign-in of the user on the live session `refresh_token` is the current token
        of: the session takes the new authentication and a new refresh token (its sid, that
        token, its end). The presented token retires as a rotation retires it: within the reuse
        interval it gives the same new token (another tab refreshing at that moment). None
        when the token is not the user's live current one, or the session was opened under
        an older password: then the caller opens a new session."""
        token_hash = _token_hash(refresh_token)
        session = self.store.find_session_by_token(token_hash)
        if (
            session is None
            or session["user_id"] != user["id"]
            or session["current"] != token_hash
            or not self._live(session)
            or session.get("credential_version", 0) != user.get("credential_version", 0)
        ):
            return None
        new_token = self.new_secret()
        now = self.clock()
        if not self.store.reauthenticate_session(
            session["id"],
            token_hash,
            _token_hash(new_token),
            now=now,
            keep=self.RETIRED_KEPT,
            auth=auth.fields(),
            sealed=_seal(refresh_token, new_token) if self.reuse_interval else None,
            touch=_seen(address, user_agent),
        ):
            return None  # refreshed or ended meanwhile: a new session instead
        return session["id"], new_token, session["expires_at"]

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

    def end_client(self, client_id: str, *, user_id: str | None = None) -> list[str]:
        """Revoke every live session of an OAuth client (of one user's); the revoked sids."""
        sids = self.store.client_sessions(client_id, now=self.clock(), user_id=user_id)
        for sid in sids:
            self.revoke(sid)
        return sids

    def restamp(self, sid: str, credential_version: int) -> None:
        """The caller's own session lives on under the new credentials."""
        self.store.restamp_session(sid, credential_version)
