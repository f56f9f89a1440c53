"""Getting back into an account: email addresses, their verification, password reset."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

import store as store_module
from accounts import Accounts
from clock import Clock, utcnow
from errors import InvalidInput, ResetRefused, Throttled
from events import EventLog
from mail import Outbox
from sessions import Sessions
from throttle import LoginThrottle, counter_key

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


class PasswordResets:
    """Forgotten passwords: a single-use secret mailed to a verified address."""

    ADDRESS_LIMIT = 20  # reset requests per client address per hour (429 past it)
    ACCOUNT_LIMIT = 5  # reset mails per account per hour (still 202 past it, no mail)
    WINDOW = 3600

    def __init__(
        self,
        store: store_module.Store,
        accounts: Accounts,
        sessions: Sessions,
        outbox: Outbox,
        *,
        ttl: int,
        clock: Clock = utcnow,
        events: EventLog | None = None,
    ) -> None:
        self.store = store
        self.accounts = accounts
        self.sessions = sessions
        self.outbox = outbox
        self.ttl = ttl
        self.clock = clock
        self.events = events or EventLog()

    def request(self, *, username: str | None, email: str | None, address: str) -> None:
        """Mail a reset to the account's verified address, if there is one; Throttled per address.

        Whatever the account, the same work is done (a lookup, a counter, a secret written,
        a message written), so neither the answer nor its time tells whether it exists.
        """
        now = self.clock()
        self._count(counter_key("reset:address", address), self.ADDRESS_LIMIT, now, throttle=True)
        if username is not None:
            user = self.accounts.find_by_name(username)
            lookup = "name:" + username
        else:
            user = self.store.find_user_by_email(email_key(email or ""))
            lookup = "email:" + email_key(email or "")
        eligible = bool(
            user and user.get("email") and user.get("email_verified") and not user.get("disabled")
        )
        account = counter_key("reset:account", user["id"] if user else lookup)
        within = self._count(account, self.ACCOUNT_LIMIT, now, throttle=False)
        send = eligible and within
        secret = secrets.token_urlsafe(32)  # 256 bits
        self.store.add_reset(
            {
                "_id": secret_hash(secret),
                "user_id": user["id"] if send else None,
                "credential_version": user.get("credential_version", 0) if send else None,
                "created_at": now,
                # A decoy lives no longer than it takes to write it.
                "expires_at": now + dt.timedelta(seconds=self.ttl if send else 0),
            }
        )
        self.outbox.reset(
            to=user["email"] if send else "",
            username=user["username"] if send else "",
            secret=secret,
            ttl=self.ttl,
            user_id=user["id"] if send else None,
            keep=send,
        )
        self.events.record(
            "password_reset_requested" if send else "password_reset_not_sent",
            user_id=user["id"] if user else None,
            address=address,
        )

    def _count(self, key: str, limit: int, now: dt.datetime, *, throttle: bool) -> bool:
        if self.store.take(key, now=now, window=self.WINDOW, limit=limit):
            return True
        if throttle:
            _, expires_at = self.store.counter(key, now=now)
            wait = (expires_at - now).total_seconds() if expires_at else 1
            raise Throttled(max(1, int(wait + 0.999)))
        return False

    def confirm(self, secret: str, new_password: str, *, address: str) -> dict[str, Any]:
        """Set the new password, end every session, mail a notice; the user. ResetRefused else.

        The secret is consumed only once the new password passes the policy (a 422 keeps it).
        """
        hashed = secret_hash(secret)
        record = self.store.find_reset(hashed, now=self.clock())
        user = record and record.get("user_id") and self.store.find_user(record["user_id"])
        if not user or user.get("disabled"):
            raise ResetRefused()
        problems = self.accounts.password_problems(
            new_password, username=user["username"], field="new_password"
        )
        if problems:
            raise InvalidInput(problems)
        if not self.store.use_reset(hashed, now=self.clock()):
            raise ResetRefused()
        version = self.accounts.reset_password(
            user,
            new_password,
            field="new_password",
            expected_version=record["credential_version"],
        )
        if version is None:
            raise ResetRefused()  # the password changed after the reset was asked for
        ended = self.sessions.revoke_others(user["id"], keep_sid=None)
        self.events.record(
            "password_reset", user_id=user["id"], address=address, sessions_revoked=len(ended)
        )
        if user.get("email"):
            self.outbox.password_changed(
                to=user["email"], username=user["username"], user_id=user["id"]
            )
        return user
