"""What the second-factor tests share: a clock on a TOTP step, enrolment, codes, two-step logins."""

from __future__ import annotations

import datetime as dt
import time

import pyotp
from helpers import PASSWORD, ManualClock, bearer, login

MFA_GRANT = "urn:tokenauth:params:oauth:grant-type:mfa"
STEP = 30
RECOVERY_CODE = r"^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$"


def step_clock(offset: int = 5) -> ManualClock:
    """A manual clock `offset` seconds into a 30 s TOTP step (so edges are where we say)."""
    start = (int(time.time()) // STEP) * STEP + offset
    return ManualClock(dt.datetime.fromtimestamp(start, dt.UTC))


def code_at(secret: str, clock: ManualClock, steps: int = 0) -> str:
    """The TOTP code of the step `steps` away from the clock's."""
    return pyotp.TOTP(secret).at(clock.now + dt.timedelta(seconds=steps * STEP))


def enrol(app, token: str) -> str:
    """Start a TOTP enrolment; its secret."""
    return app.post("/users/me/mfa/totp", headers=bearer(token), status=201).json["secret"]


def enable_totp(app, token: str, clock: ManualClock) -> tuple[str, list[str]]:
    """Enrol and confirm TOTP now: the secret and the recovery codes. The confirming code is
    spent, so the clock moves on one step for the next code to be a new one."""
    secret = enrol(app, token)
    codes = app.post_json(
        "/users/me/mfa/totp/confirm",
        {"code": code_at(secret, clock)},
        headers=bearer(token),
        status=200,
    ).json["recovery_codes"]
    clock.advance(STEP)
    return secret, codes


def mfa_token(app, username: str = "alice", password: str = PASSWORD) -> str:
    """The password step of a login that needs a second factor: its mfa_token."""
    return login(app, username, password, status=403).json["mfa_token"]


def mfa_grant(app, token: str, **proof: str):
    """The MFA grant, as JSON; expected statuses as keywords like `status=400`."""
    status = proof.pop("status", 200)
    body = {"grant_type": MFA_GRANT, "mfa_token": token, **proof}
    return app.post_json("/auth/token", body, status=status)


def mfa_login(
    app, secret: str, clock: ManualClock, username: str = "alice", password: str = PASSWORD
) -> dict:
    """A whole two-step login with the current code (the clock then moves a step on)."""
    answer = mfa_grant(app, mfa_token(app, username, password), otp=code_at(secret, clock)).json
    clock.advance(STEP)
    return answer
