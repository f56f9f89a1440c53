"""Accounts: registration, authentication, password change, administration."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import store as store_module
from auth import normalize_username
from clock import Clock, utcnow
from errors import (
    InvalidGrant,
    InvalidInput,
    LastAdmin,
)
from events import EventLog
from passwords import PasswordHasher, PolicyError, check_policy, normalize
from throttle import LoginThrottle, RegistrationThrottle

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
        self,
        username: str,
        password: str,
        *,
        address: str,
        user_agent: str | None = None,
        second_step: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """The user whose password this is; Throttled or InvalidGrant otherwise.

        `second_step(user)` says whether the login goes on to a second factor: then the
        failures counted so far stand until that step succeeds.
        """
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
        if second_step is not None and second_step(user):
            # Only the first of two steps: this attempt is given back, the failures stay,
            # so a known password cannot wipe the count of wrong codes guessed after it.
            self.throttle.abandoned(key, address)
        else:
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
