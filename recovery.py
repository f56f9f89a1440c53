"""Getting back into an account: email addresses, their verification, password reset."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import store as store_module
from auth import Accounts
from clock import Clock, utcnow
from errors import InvalidInput
from mail import Outbox
from throttle import LoginThrottle

# Eight digits: typed by hand; with 100 wrong tries an hour per account at most (the login
# throttle) and a day of life, a guess succeeds with odds of about 1 in 40,000.
CODE_DIGITS = 8
CODE_TTL = dt.timedelta(hours=24)  # greylisting may hold a mail for hours


def email_key(email: str) -> str:
    """The form addresses are compared in: without regard to case."""
    return email.strip().casefold()


def secret_hash(secret: str) -> str:
    """A fast hash: codes live a day, are tried under a throttle, and die on first use."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_code() -> str:
    """A verification code of CODE_DIGITS digits from `secrets`."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


class EmailAddresses:
    """The address of an account: given at registration or changed, verified by a code."""

    def __init__(
        self,
        store: store_module.Store,
        accounts: Accounts,
        throttle: LoginThrottle,
        outbox: Outbox,
        *,
        required: bool = False,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.throttle = throttle
        self.outbox = outbox
        self.required = required
        self.clock = clock

    def registration_problems(self, body: dict[str, Any]) -> list[tuple[str, str]]:
        """What registration says of the address beyond its schema."""
        if self.required and not body.get("email"):
            return [("email", "is required (TOKENAUTH_REQUIRE_EMAIL)")]
        return []

    def unverified(self, email: str) -> tuple[dict[str, Any], str]:
        """The stored fields of a new, unverified address, and the code that verifies it."""
        code = new_code()
        fields = {
            "email": email.strip(),
            "email_key": email_key(email),
            "email_verified": False,
            "email_verification": {
                "code_hash": secret_hash(code),
                "expires_at": self.clock() + CODE_TTL,
            },
        }
        return fields, code

    def send_code(self, user: dict[str, Any], code: str) -> None:
        """Mail the code to the user's (new) address."""
        self.outbox.verification(to=user["email"], code=code, user_id=user["id"])

    def change(
        self, user: dict[str, Any], email: str, current_password: str, *, address: str
    ) -> dict[str, Any]:
        """Give the user a new unverified address after the current password; the user after.

        The code goes to the new address, a notice to the old one. Conflict when taken.
        """
        self.accounts.check_current_password(user, current_password, address=address)
        fields, code = self.unverified(email)
        before = self.store.set_email(user["id"], fields)
        if before is None:
            raise InvalidInput([("current_password", "is incorrect")])
        after = {**before, **fields}
        self.send_code(after, code)
        old = before.get("email")
        if old and email_key(old) != fields["email_key"]:
            self.outbox.address_changed(to=old, username=before["username"], user_id=user["id"])
        return after

    def verify(self, user: dict[str, Any], code: str, *, address: str) -> None:
        """Mark the address verified; InvalidInput for a wrong or expired code (a failed login)."""
        key = user["username_key"]
        self.throttle.attempt(key, address)
        try:
            verified = self.store.verify_email(user["id"], secret_hash(code), now=self.clock())
        except Exception:
            self.throttle.abandoned(key, address)
            raise
        if not verified:
            self.throttle.failed(key, address)
            raise InvalidInput([("code", "is incorrect or has expired")])
        self.throttle.succeeded(key, address)
