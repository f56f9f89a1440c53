"""The caller's second factors over HTTP: /users/me/mfa, TOTP and recovery codes."""

from __future__ import annotations

from typing import Any

import falcon

import store as store_module
from errors import Conflict, InvalidInput
from events import EventLog
from mfa import RecoveryCodes, SecondFactors, StepUp, Totp, require_step_up
from web import no_store, read_body


def caller(store: store_module.Store, req: falcon.Request) -> dict[str, Any]:
    """The user of the access token; 404 when the account is gone."""
    user = store.find_user(req.context.claims["sub"])
    if user is None:
        raise falcon.HTTPNotFound(description="The user of this token no longer exists")
    return user


class MyMfa:
    """GET /users/me/mfa: which second factors the caller has."""

    def __init__(self, store: store_module.Store, factors: SecondFactors) -> None:
        self.store = store
        self.factors = factors

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """TOTP on or off, recovery codes left, passkeys."""
        resp.set_header("Cache-Control", "no-store")
        resp.media = self.factors.status(caller(self.store, req))


class MyTotp:
    """POST /users/me/mfa/totp starts an enrolment, .../confirm activates it, DELETE removes
    the factor (and the recovery codes, when no factor is left)."""

    def __init__(
        self,
        store: store_module.Store,
        totp: Totp,
        recovery_codes: RecoveryCodes,
        factors: SecondFactors,
        step_up: StepUp,
        events: EventLog,
    ) -> None:
        self.store = store
        self.totp = totp
        self.recovery_codes = recovery_codes
        self.factors = factors
        self.step_up = step_up
        self.events = events

    @falcon.before(require_step_up)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A new secret, pending until a code of it confirms it: 201, shown this once."""
        enrolment = self.totp.enrol(caller(self.store, req))
        no_store(resp)
        resp.status = falcon.HTTP_201
        resp.media = enrolment

    def on_post_confirm(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Activate the pending secret with a code of it; the recovery codes, shown once."""
        body = read_body(req, "TotpConfirmation")
        user = caller(self.store, req)
        if user.get("totp"):
            raise Conflict("totp", "is already active")
        if not user.get("totp_pending"):
            raise Conflict("totp", "has no pending enrolment: start one first")
        if not self.totp.confirm(user, body["code"]):
            raise InvalidInput([("code", "is not the current code of the pending secret")])
        codes = self.recovery_codes.generate(user["id"])
        self.events.record(
            "totp_enabled",
            user_id=user["id"],
            sid=req.context.claims["sid"],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        no_store(resp)
        resp.media = {"recovery_codes": codes}

    @falcon.before(require_step_up)
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Remove the TOTP factor; 404 when there is none."""
        user = caller(self.store, req)
        if not self.totp.remove(user["id"]):
            raise falcon.HTTPNotFound(description="You have no TOTP factor")
        self.recovery_codes.clear_without_factor(user["id"], self.factors)
        self.events.record(
            "totp_removed",
            user_id=user["id"],
            sid=req.context.claims["sid"],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        resp.status = falcon.HTTP_204


class MyRecoveryCodes:
    """POST /users/me/mfa/recovery-codes: a new set; the old codes stop working."""

    def __init__(
        self,
        store: store_module.Store,
        recovery_codes: RecoveryCodes,
        factors: SecondFactors,
        step_up: StepUp,
        events: EventLog,
    ) -> None:
        self.store = store
        self.recovery_codes = recovery_codes
        self.factors = factors
        self.step_up = step_up
        self.events = events

    @falcon.before(require_step_up)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Ten new codes, shown this once; 409 without a second factor to stand in for."""
        user = caller(self.store, req)
        if not self.factors.has_factor(user):
            raise Conflict("recovery_codes", "need a second factor first (TOTP or a passkey)")
        codes = self.recovery_codes.generate(user["id"])
        self.events.record(
            "recovery_codes_regenerated",
            user_id=user["id"],
            sid=req.context.claims["sid"],
            address=req.context.address,
            user_agent=req.user_agent,
        )
        no_store(resp)
        resp.media = {"recovery_codes": codes}
