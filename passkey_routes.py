"""Passkeys over HTTP: the caller's passkeys (/users/me/passkeys) and /auth/passkey/options."""

from __future__ import annotations

from typing import Any

import falcon

import store as store_module
from auth import EVERY_METHOD
from errors import InvalidInput
from events import EventLog
from mfa import RecoveryCodes, SecondFactors, SecondStep, StepUp, require_step_up
from mfa_routes import caller
from passkeys import Passkeys, public_passkey
from web import no_store, read_body


def _name_problems(body: dict[str, Any]) -> list[tuple[str, str]]:
    """What the schema cannot say of a name: that it is more than spaces."""
    name = body.get("name")
    if isinstance(name, str) and not name.strip():
        return [("name", "must not be blank")]
    return []


class MyPasskeys:
    """POST /users/me/passkeys/options begins a registration and POST /users/me/passkeys
    finishes it (both step-up); PATCH /users/me/passkeys/{id} renames one, DELETE removes it
    (step-up, with the second factor)."""

    def __init__(
        self,
        store: store_module.Store,
        passkeys: Passkeys,
        recovery_codes: RecoveryCodes,
        factors: SecondFactors,
        step_up: StepUp,
        events: EventLog,
    ) -> None:
        self.store = store
        self.passkeys = passkeys
        self.recovery_codes = recovery_codes
        self.factors = factors
        self.step_up = step_up
        self.events = events

    @falcon.before(require_step_up)
    def on_post_options(self, req: falcon.Request, resp: falcon.Response) -> None:
        """WebAuthn creation options and their challenge_id (5 minutes, single use)."""
        options = self.passkeys.creation_options(caller(self.store, req))
        no_store(resp)
        resp.media = options

    @falcon.before(require_step_up)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Finish a registration: 201 the new passkey."""
        body = read_body(req, "PasskeyRegistration", rules=_name_problems)
        user = caller(self.store, req)
        passkey = self.passkeys.add(user, body["credential"], body["name"], body["challenge_id"])
        self._record(req, "passkey_added", user, passkey)
        resp.status = falcon.HTTP_201
        resp.location = "/users/me/mfa"
        resp.media = public_passkey(passkey)

    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, passkey_id: str) -> None:
        """Rename one of the caller's passkeys."""
        body = read_body(req, "PasskeyRename", rules=_name_problems)
        user = caller(self.store, req)
        passkey = self.passkeys.rename(user["id"], passkey_id, body["name"])
        if passkey is None:
            raise falcon.HTTPNotFound(description="You have no passkey of this id")
        resp.media = public_passkey(passkey)

    @falcon.before(require_step_up)
    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, passkey_id: str) -> None:
        """Remove one of the caller's passkeys (the recovery codes too when no factor is left)."""
        user = caller(self.store, req)
        if not self.passkeys.remove(user["id"], passkey_id):
            raise falcon.HTTPNotFound(description="You have no passkey of this id")
        self.recovery_codes.clear_without_factor(user["id"], self.factors)
        self._record(req, "passkey_removed", user, {"id": passkey_id})
        resp.status = falcon.HTTP_204

    def _record(
        self, req: falcon.Request, event: str, user: dict[str, Any], passkey: dict[str, Any]
    ) -> None:
        self.events.record(
            event,
            user_id=user["id"],
            passkey_id=passkey["id"],
            sid=req.context.claims["sid"],
            address=req.context.address,
            user_agent=req.user_agent,
        )


class PasskeyOptions:
    """POST /auth/passkey/options: request options for a passwordless sign-in or, with the
    `mfa_token` of a login waiting for its second factor, for that account's passkeys."""

    public_methods = EVERY_METHOD

    def __init__(self, passkeys: Passkeys, second_step: SecondStep) -> None:
        self.passkeys = passkeys
        self.second_step = second_step

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """`{"options", "challenge_id"}`; the body may be empty."""
        sent = req.content_length or req.content_type
        body = read_body(req, "PasskeyOptionsRequest") if sent else {}
        user = None
        if "mfa_token" in body:
            user = self.second_step.user_of(body["mfa_token"])
            if user is None:
                raise InvalidInput([("mfa_token", "is invalid, expired or already used")])
        no_store(resp)
        resp.media = self.passkeys.request_options(user)
