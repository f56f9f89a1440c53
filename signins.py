"""Sign-ins: the provider's single sign-on, a session a browser's cookie names by its hash."""

# A sign-in is a session document like any other (sessions.py): so the person's session
# list shows it and ends it, and every path that ends a user's sessions (logout elsewhere,
# a password change or reset, disabling, deletion) ends it too. The cookie's secret is kept
# as a hash in `sign_in`; a sign-in made on the provider's login page has no refresh token
# anyone holds, one made by the first-party client's cookie login is that very session.

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable
from typing import Any

import store as store_module
from auth import Authentication
from clock import Clock, utcnow
from sessions import Sessions


def _hash(secret: str) -> str:
    # A fast hash suffices: the cookie carries 256 random bits.
    return hashlib.sha256(secret.encode()).hexdigest()


class SignIns:
    """Open, find, renew and end the sign-ins browsers carry in the SSO cookie."""

    def __init__(
        self,
        store: store_module.Store,
        sessions: Sessions,
        *,
        clock: Clock = utcnow,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.clock = clock
        self.new_secret = new_secret

    def current(self, secret: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The live sign-in of this cookie and its user, or None."""
        if not secret:
            return None
        return self._good(self.store.find_session_by_sign_in(_hash(secret)))

    def sign_in(
        self,
        user: dict[str, Any],
        auth: Authentication,
        *,
        replacing: dict[str, Any] | None = None,
        address: str | None = None,
        user_agent: str | None = None,
    ) -> tuple[str, str, dt.datetime]:
        """Sign the browser in: (sid, the cookie's secret, the sign-in's end).

        The same person again (a new login asked for by `prompt=login` or `max_age`) renews
        the browser's sign-in, with a new secret; another person's sign-in leaves it.
        """
        secret = self.new_secret()
        renewed = (
            replacing is not None
            and replacing["user_id"] == user["id"]
            and self.store.set_sign_in(replacing["id"], {"sign_in": _hash(secret), **auth.fields()})
        )
        if renewed:
            return replacing["id"], secret, replacing["expires_at"]
        if replacing is not None:
            self.leave(replacing)
        sid, _, expires_at = self.sessions.open(
            user,
            address=address,
            user_agent=user_agent,
            auth=auth,
            extra={"sign_in": _hash(secret), "sign_in_only": True},
        )
        return sid, secret, expires_at

    def attach(self, sid: str, auth: Authentication) -> str | None:
        """Make a session just opened (the first-party cookie login) the browser's sign-in
        too; the cookie's secret, or None when the session is gone already."""
        secret = self.new_secret()
        if self.store.set_sign_in(sid, {"sign_in": _hash(secret), **auth.fields()}):
            return secret
        return None

    def hand_over(self, session: dict[str, Any], sid: str) -> None:
        """The same person signed in again in this browser: the client sessions opened through
        the old sign-in move to the new one (signing out must still end them); the old is left."""
        self.store.move_sessions_through(session["id"], sid)
        self.leave(session)

    def leave(self, session: dict[str, Any]) -> None:
        """This sign-in no longer signs its browser in (another person signed in there)."""
        if session.get("sign_in_only"):
            self.sessions.revoke(session["id"])
        else:
            self.store.drop_sign_in(session["id"])

    def end(self, session: dict[str, Any]) -> list[str]:
        """Sign out: the sign-in and every client session opened through it; their ids."""
        ended = [session["id"], *self.store.sessions_through(session["id"], now=self.clock())]
        for sid in ended:
            self.sessions.revoke(sid)
        return ended

    def live(self, sid: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The sign-in with this id and its user, while both are good; None otherwise."""
        return self._good(self.store.find_session(sid))

    def _good(self, session: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
        if session is None or "revoked_at" in session or session["expires_at"] <= self.clock():
            return None
        user = self.store.find_user(session["user_id"])
        if user is None or user.get("disabled"):
            return None
        if user.get("credential_version", 0) > session.get("credential_version", 0):
            return None  # opened under a password that has changed since
        return session, user
