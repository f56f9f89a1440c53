"""The account routes: registration, the caller's account, sessions, password, email, and the
admin's user routes."""

from __future__ import annotations

from typing import Any

import falcon

import store as store_module
from accounts import Accounts
from auth import EVERY_METHOD, require_admin
from events import EventLog
from mfa import StepUp, require_admin_write, require_step_up
from passwords import MAX_LENGTH
from recovery import EmailAddresses, PasswordResets
from sessions import Sessions
from web import (
    page_params,
    public_session,
    public_user,
    read_body,
    read_body_problems,
    rfc3339,
)


class Users:
    """POST /users registers (public); GET /users pages users (admin)."""

    public_methods = frozenset({"POST"})

    def __init__(
        self,
        accounts: Accounts,
        addresses: EmailAddresses,
        store: store_module.Store,
        events: EventLog,
    ) -> None:
        self.accounts = accounts
        self.addresses = addresses
        self.store = store
        self.events = events

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Register a user; an address given is mailed its verification code."""
        body = read_body(req, "Registration", form=True, rules=self._problems)
        address = req.context.address
        email, code = None, None
        if body.get("email"):
            email, code = self.addresses.unverified(body["email"])
        user = self.accounts.register(
            body["username"], body["password"], address=address, email=email
        )
        if code is not None:
            self.addresses.send_code(user, code)
        self.events.record(
            "user_registered", user_id=user["id"], address=address, user_agent=req.user_agent
        )
        resp.status = falcon.HTTP_201
        resp.location = "/users/me"
        resp.media = public_user(user)

    def _problems(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        return self.accounts.registration_problems(body) + self.addresses.registration_problems(
            body
        )

    @falcon.before(require_admin)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of users, sorted by id."""
        limit, cursor = page_params(req)
        users, next_cursor = self.store.page_users(limit=limit, after=cursor)
        resp.media = {
            "items": [public_user(u, admin_view=True) for u in users],
            "next_cursor": next_cursor,
        }


class AdminUser:
    """GET /users/{id} and PATCH /users/{id} (disable, enable, roles): admins only."""

    def __init__(
        self,
        store: store_module.Store,
        accounts: Accounts,
        sessions: Sessions,
        events: EventLog,
        step_up: StepUp,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.sessions = sessions
        self.events = events
        self.step_up = step_up

    @falcon.before(require_admin)
    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        """One user, with `disabled`."""
        user = self.store.find_user(user_id)
        if user is None:
            raise falcon.HTTPNotFound(description="No user has this id")
        resp.media = public_user(user, admin_view=True)

    @falcon.before(require_admin_write)
    def on_patch(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        """Disable or enable a user, or set their roles; disabling or demoting ends sessions."""
        body = read_body(req, "UserPatch")
        changed = self.accounts.administer(
            user_id, disabled=body.get("disabled"), roles=body.get("roles")
        )
        if changed is None:
            raise falcon.HTTPNotFound(description="No user has this id")
        before, after = changed
        admin = {"by": req.context.claims["sub"], "address": req.context.address}
        ended: list[str] = []
        if after.get("disabled") and not before.get("disabled"):
            ended = self.sessions.revoke_others(user_id, keep_sid=None)
            self.events.record(
                "user_disabled", user_id=user_id, sessions_revoked=len(ended), **admin
            )
        elif before.get("disabled") and not after.get("disabled"):
            self.events.record("user_enabled", user_id=user_id, **admin)
        if set(before["roles"]) != set(after["roles"]):
            if set(before["roles"]) - set(after["roles"]):
                # Tokens carry roles: a role taken away must not live on in them.
                ended += self.sessions.revoke_others(user_id, keep_sid=None)
            self.events.record(
                "roles_changed",
                user_id=user_id,
                roles=after["roles"],
                sessions_revoked=len(ended),
                **admin,
            )
        resp.media = public_user(after, admin_view=True)


class AdminUserSessions:
    """GET /users/{id}/sessions lists a user's live sessions; DELETE ends them: admins only."""

    def __init__(
        self, store: store_module.Store, sessions: Sessions, events: EventLog, step_up: StepUp
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.events = events
        self.step_up = step_up

    @falcon.before(require_admin)
    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        """The user's live sessions, most recently used first."""
        self._user(user_id)
        resp.set_header("Cache-Control", "no-store")
        resp.media = {"items": [public_session(s) for s in self.sessions.live(user_id)]}

    @falcon.before(require_admin_write)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        """End every session of the user."""
        self._user(user_id)
        for sid in self.sessions.revoke_others(user_id, keep_sid=None):
            self.events.record(
                "session_ended",
                user_id=user_id,
                sid=sid,
                by=req.context.claims["sub"],
                address=req.context.address,
            )
        resp.status = falcon.HTTP_204

    def _user(self, user_id: str) -> dict[str, Any]:
        user = self.store.find_user(user_id)
        if user is None:
            raise falcon.HTTPNotFound(description="No user has this id")
        return user


class Me:
    """GET /users/me: the caller; DELETE /users/me: the caller's account goes (step-up)."""

    def __init__(
        self,
        store: store_module.Store,
        accounts: Accounts,
        sessions: Sessions,
        events: EventLog,
        step_up: StepUp,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.sessions = sessions
        self.events = events
        self.step_up = step_up

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The caller's user."""
        user = self.store.find_user(req.context.claims["sub"])
        if user is None:
            raise falcon.HTTPNotFound(description="The user of this token no longer exists")
        resp.media = public_user(user)

    @falcon.before(require_step_up)
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Delete the caller's account, after the current password: sessions, events, all."""
        body = read_body(req, "AccountDeletion")
        claims = req.context.claims
        address = req.context.address
        user = self.store.find_user(claims["sub"])
        if user is None:
            raise falcon.HTTPNotFound(description="The user of this token no longer exists")
        self.accounts.check_deletion(user, body["current_password"], address=address)
        # Sessions end first: if the deletion then fails, the account is merely signed out.
        ended = self.sessions.revoke_others(user["id"], keep_sid=None)
        self.accounts.delete(user)
        # Kept in the operators' log, without the username.
        self.events.record(
            "account_deleted", user_id=user["id"], address=address, sessions_revoked=len(ended)
        )
        resp.status = falcon.HTTP_204


class MyEvents:
    """GET /users/me/events: the caller's recent security events, newest first."""

    def __init__(self, events: EventLog) -> None:
        self.events = events

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of the caller's events."""
        limit, cursor = page_params(req)
        items, next_cursor = self.events.page(req.context.claims["sub"], limit=limit, after=cursor)
        resp.media = {
            "items": [{**item, "time": rfc3339(item["time"])} for item in items],
            "next_cursor": next_cursor,
        }


class MySessions:
    """GET /users/me/sessions lists the caller's sessions; DELETE ends them (one, or the others)."""

    def __init__(self, sessions: Sessions, events: EventLog, step_up: StepUp) -> None:
        self.sessions = sessions
        self.events = events
        self.step_up = step_up

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The caller's live sessions, most recently used first, theirs marked `current`."""
        claims = req.context.claims
        sessions = self.sessions.live(claims["sub"])
        resp.set_header("Cache-Control", "no-store")
        resp.media = {"items": [public_session(s, current_sid=claims["sid"]) for s in sessions]}

    @falcon.before(require_step_up)
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """End every session of the caller but the one making this call."""
        claims = req.context.claims
        for sid in self.sessions.revoke_others(claims["sub"], keep_sid=claims["sid"]):
            self._ended(req, sid)
        resp.status = falcon.HTTP_204

    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, sid: str) -> None:
        """End one session of the caller (their own current one included)."""
        if not self.sessions.end(req.context.claims["sub"], sid):
            raise falcon.HTTPNotFound(description="You have no live session with this id")
        self._ended(req, sid)
        resp.status = falcon.HTTP_204

    def _ended(self, req: falcon.Request, sid: str) -> None:
        claims = req.context.claims
        self.events.record(
            "session_ended",
            user_id=claims["sub"],
            sid=sid,
            by_sid=claims["sid"],
            address=req.context.address,
            user_agent=req.user_agent,
        )


class Policy:
    """GET /auth/policy: the rules a client checks before it sends."""

    public_methods = EVERY_METHOD

    def __init__(self, password_min_length: int, email_required: bool = False) -> None:
        self.policy = {
            "password_min_length": password_min_length,
            "password_max_length": MAX_LENGTH,
            "username_min_length": 3,
            "username_max_length": 64,
            # For JavaScript's RegExp with the "u" flag; the service counts after NFKC.
            "username_pattern": "^[\\p{L}\\p{N}._@-]+$",
            "username_rule": "letters, digits and . _ - @",
            "email_required": email_required,
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The password and username rules in force."""
        resp.set_header("Cache-Control", "no-cache")
        resp.media = self.policy


class Password:
    """PUT /users/me/password: change it, and end every other session."""

    def __init__(
        self, accounts: Accounts, sessions: Sessions, events: EventLog, step_up: StepUp
    ) -> None:
        self.accounts = accounts
        self.sessions = sessions
        self.events = events
        self.step_up = step_up

    @falcon.before(require_step_up)
    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Change the caller's password."""
        body, problems = read_body_problems(req, "PasswordChange")
        claims = req.context.claims
        address = req.context.address
        version = self.accounts.change_password(
            claims["sub"],
            body.get("current_password") if isinstance(body, dict) else None,
            body.get("new_password") if isinstance(body, dict) else None,
            address=address,
            problems=problems,
        )
        # The caller's session goes on under the new password; logins that were in flight
        # under the old one are stamped older and can neither open nor refresh.
        self.sessions.restamp(claims["sid"], version)
        revoked = self.sessions.revoke_others(claims["sub"], keep_sid=claims["sid"])
        self.events.record(
            "password_changed",
            user_id=claims["sub"],
            sid=claims["sid"],
            address=address,
            sessions_revoked=len(revoked),
            user_agent=req.user_agent,
        )
        resp.status = falcon.HTTP_204


class MyEmail:
    """PUT /users/me/email: a new address (after the current password), verified by a code."""

    def __init__(
        self,
        store: store_module.Store,
        addresses: EmailAddresses,
        events: EventLog,
        step_up: StepUp,
    ) -> None:
        self.store = store
        self.addresses = addresses
        self.events = events
        self.step_up = step_up

    @falcon.before(require_step_up)
    def on_put(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Set the caller's address: 202, the code mailed to it, the old address told."""
        body = read_body(req, "EmailChange")
        claims = req.context.claims
        user = _caller(self.store, claims)
        after = self.addresses.change(
            user, body["email"], body["current_password"], address=req.context.address
        )
        self.events.record(
            "email_changed",
            user_id=user["id"],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        resp.status = falcon.HTTP_202
        resp.media = public_user(after)

    def on_post_verify(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Verify the caller's address with the code mailed to it."""
        body = read_body(req, "EmailVerification")
        user = _caller(self.store, req.context.claims)
        self.addresses.verify(user, body["code"], address=req.context.address)
        self.events.record(
            "email_verified",
            user_id=user["id"],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        resp.status = falcon.HTTP_204


class PasswordReset:
    """POST /auth/password-reset asks for a reset mail; .../confirm sets the new password."""

    public_methods = EVERY_METHOD

    def __init__(self, resets: PasswordResets) -> None:
        self.resets = resets

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """202 `{}` whether or not the account exists; a mail to a verified address only."""
        body = read_body(req, "PasswordResetRequest")
        self.resets.request(
            username=body.get("username"), email=body.get("email"), address=req.context.address
        )
        resp.status = falcon.HTTP_202
        resp.set_header("Cache-Control", "no-store")
        resp.media = {}

    def on_post_confirm(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Set the new password with the mailed secret: every session ends; not logged in."""
        body = read_body(req, "PasswordResetConfirm")
        self.resets.confirm(body["token"], body["new_password"], address=req.context.address)
        resp.status = falcon.HTTP_204


def _caller(store: store_module.Store, claims: dict[str, Any]) -> dict[str, Any]:
    """The user of the access token; 404 when the account is gone."""
    user = store.find_user(claims["sub"])
    if user is None:
        raise falcon.HTTPNotFound(description="The user of this token no longer exists")
    return user
