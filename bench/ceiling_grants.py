"""The ceiling's token endpoint: each grant's database work, in the service's order, no auth.

Every call below is the service's own `Store` method with the arguments the service passes
(found by tracing the store under each request: see BENCHMARKS.md, "The rows"); what is
left out is what auth adds: schema checks, constant-time compares, the TOTP secret's
decryption, the client secret's check, sealing the successor token, signing the tokens.
The password check is kept: the same argon2id verify (passwords.PasswordHasher).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import falcon
import pyotp

import store as store_module
from clock import utcnow
from passwords import PasswordHasher
from sessions import Sessions
from throttle import LoginThrottle
from web import SESSION_COOKIE, session_cookie

MFA_GRANT = "urn:tokenauth:params:oauth:grant-type:mfa"
# Fixed, as the defaults the service runs under in the bench.
THROTTLE = LoginThrottle(None, max_failures=5, window=900)  # type: ignore[arg-type]
REFRESH_TTL = dt.timedelta(seconds=1_209_600)
EVENT_RETENTION = dt.timedelta(days=90)
REUSE_INTERVAL = 10
# A sealed successor's size (nonce, 43-character token, tag): the same bytes are stored.
SEALED_BYTES = 12 + 43 + 16


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Grants:
    """The database work of the password, refresh, MFA and authorization-code grants."""

    def __init__(self, store: store_module.Store, totp_secret: str | None) -> None:
        self.store = store
        self.hasher = PasswordHasher()
        self.totp = pyotp.TOTP(totp_secret) if totp_secret else None

    def password(self, body: dict[str, Any], address: str, agent: str | None) -> dict:
        """Throttle check and reservation, user, argon2id, reset, session, event."""
        now = utcnow()
        key = body["username"].casefold()
        keys = THROTTLE.keys(key, address)
        self.store.counters(keys, now=now)
        self.store.take(keys[0], now=now, window=THROTTLE.window, limit=THROTTLE.max_failures)
        user = self.store.find_user_by_name(key)
        if user is None or not self.hasher.verify(user["password_hash"], body["password"]):
            raise falcon.HTTPBadRequest(title="invalid_grant")
        self.store.reset_counter(keys[0])
        return self._open(user, now, address, agent, event="login_succeeded")

    def refresh(self, token: str, address: str, agent: str | None) -> dict:
        """The conditional rotation of the session's token, then its user."""
        now = utcnow()
        new_token = secrets.token_urlsafe(32)
        outcome, session = self.store.rotate_refresh_token(
            _hash(token),
            _hash(new_token),
            now=now,
            keep=Sessions.RETIRED_KEPT,
            limit=Sessions.REFRESH_LIMIT,
            window=Sessions.REFRESH_WINDOW,
            grace=REUSE_INTERVAL,
            sealed=secrets.token_bytes(SEALED_BYTES),
            touch={"last_used_at": now, "address": address, "user_agent": agent or ""},
            client_id=None,
        )
        if outcome != "rotated":
            raise falcon.HTTPBadRequest(title="invalid_grant")
        self.store.find_user(session["user_id"])
        return {"refresh_token": new_token, "expires_at": session["expires_at"]}

    def mfa(self, body: dict[str, Any], address: str, agent: str | None) -> dict:
        """The mfa_token's login, its user, the throttle, the code's step, the session."""
        now = utcnow()
        token_hash = _hash(body["mfa_token"])
        attempt = self.store.find_mfa_attempt(token_hash, now=now)
        if attempt is None or self.totp is None:
            raise falcon.HTTPBadRequest(title="invalid_grant")
        user = self.store.find_user(attempt["user_id"])
        keys = THROTTLE.keys(user["username_key"], address)
        self.store.counters(keys, now=now)
        self.store.take(keys[0], now=now, window=THROTTLE.window, limit=THROTTLE.max_failures)
        step = int(now.timestamp()) // 30
        if not self.totp.verify(body["otp"], valid_window=1):
            raise falcon.HTTPBadRequest(title="invalid_grant")
        self.store.use_totp_step(user["id"], step)
        self.store.use_mfa_attempt(token_hash, now=now)
        self.store.reset_counter(keys[0])
        amr = [*attempt["amr"], "otp", "mfa"]
        return self._open(user, now, address, agent, event="login_succeeded", amr=amr)

    def code(self, body: dict[str, Any], address: str, agent: str | None) -> dict:
        """The client, the code used once, the sign-in and its user, the client's session."""
        now = utcnow()
        client = self.store.find_client(body["client_id"])
        code_hash = _hash(body["code"])
        self.store.find_code(code_hash)
        outcome, record = self.store.use_code(code_hash, now=now, purge_at=now + REFRESH_TTL)
        if outcome != "used" or client is None:
            raise falcon.HTTPBadRequest(title="invalid_grant")
        sign_in = self.store.find_session(record["sso_sid"])
        user = self.store.find_user(sign_in["user_id"])
        extra = {"client_id": client["id"], "scope": " ".join(record["scopes"])}
        extra["sso_sid"] = sign_in["id"]
        answer = self._open(user, now, address, agent, extra=extra, amr=record["amr"])
        self.store.bind_code(code_hash, answer["sid"])
        return answer

    def _open(
        self,
        user: dict[str, Any],
        now: dt.datetime,
        address: str,
        agent: str | None,
        *,
        event: str | None = None,
        extra: dict[str, Any] | None = None,
        amr: list[str] | tuple[str, ...] = ("pwd",),
    ) -> dict:
        """A session's insert, the credential version read back, and the user's event."""
        sid, token = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
        self.store.create_session(
            sid=sid,
            user_id=user["id"],
            token_hash=_hash(token),
            credential_version=user.get("credential_version", 0),
            now=now,
            expires_at=now + REFRESH_TTL,
            seen={"address": address, "user_agent": agent or ""},
            auth={"auth_time": now, "amr": list(amr), "acr": "aal2" if "mfa" in amr else "aal1"},
            extra=extra,
        )
        self.store.credential_version(user["id"])
        if event:
            kept = {"time": now, "expires_at": now + EVENT_RETENTION, "address": address}
            self.store.add_event(user["id"], event, fields=kept)
        return {"sid": sid, "refresh_token": token}


class TokenEndpoint:
    """POST /auth/token: the grant's database work, answered as plain JSON."""

    def __init__(self, grants: Grants) -> None:
        self.grants = grants

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Dispatch on grant_type, as the service does."""
        body = req.get_media()
        grant, address, agent = body.get("grant_type"), req.remote_addr, req.user_agent
        if grant == "password":
            answer = self.grants.password(body, address, agent)
        elif grant == "refresh_token":
            answer = self.grants.refresh(body["refresh_token"], address, agent)
        elif grant == MFA_GRANT:
            answer = self.grants.mfa(body, address, agent)
        elif grant == "authorization_code":
            answer = self.grants.code(body, address, agent)
        else:
            raise falcon.HTTPBadRequest(title="unsupported_grant_type")
        resp.media = {k: v for k, v in answer.items() if k == "refresh_token"}


class CookieRefresh:
    """POST /auth/session/refresh: the refresh grant's work with the cookie's token."""

    def __init__(self, grants: Grants) -> None:
        self.grants = grants

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Rotate the cookie's token; answer the new cookie."""
        token = req.cookies.get(SESSION_COOKIE)
        if not token:
            raise falcon.HTTPUnauthorized()
        answer = self.grants.refresh(token, req.remote_addr, req.user_agent)
        seconds = int((answer["expires_at"] - utcnow()).total_seconds())
        resp.append_header("Set-Cookie", session_cookie(answer["refresh_token"], seconds))
        resp.media = {"token_type": "Bearer"}
