"""Throttling: counters of attempts in MongoDB, shared by every worker and instance."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import store as store_module
from clock import Clock, utcnow
from errors import Throttled

# An answer blocked only by attempts still being checked says so: they end within seconds.
IN_FLIGHT_RETRY_AFTER = 1


def counter_key(kind: str, *parts: str) -> str:
    """An unambiguous counter id: usernames and IPv6 addresses may both contain ':'."""
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:40]
    return f"{kind}:{digest}"


class LoginThrottle:
    """Counters of failed logins in MongoDB, shared by every worker and instance."""

    ACCOUNT_LIMIT = 100  # failures per account per hour from all addresses (OWASP ASVS 2.2.1)
    ACCOUNT_WINDOW = 3600

    def __init__(
        self,
        store: store_module.Store,
        *,
        max_failures: int,
        window: int,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.clock = clock
        # (key prefix, limit, window): the pair, the account, and the address across accounts.
        self.max_failures = max_failures
        self.window = window
        self.address_limit = max(50, 10 * max_failures)

    def keys(self, username_key: str, address: str) -> list[str]:
        """The counter ids of the pair, the account and the address (for tests and tools)."""
        return [key for key, _, _ in self._limits(username_key, address)]

    def _limits(self, username_key: str, address: str) -> list[tuple[str, int, int]]:
        return [
            (counter_key("login:pair", address, username_key), self.max_failures, self.window),
            (counter_key("login:account", username_key), self.ACCOUNT_LIMIT, self.ACCOUNT_WINDOW),
            (counter_key("login:address", address), self.address_limit, self.window),
        ]

    def attempt(self, username_key: str, address: str) -> None:
        """Check every limit and reserve this attempt against the pair's; Throttled if reached."""
        now = self.clock()
        limits = self._limits(username_key, address)
        counts = self.store.counters([key for key, _, _ in limits], now=now)
        blocked = self._blocked_for(limits, counts, now)
        if blocked is not None:
            raise Throttled(blocked)
        # The pair's limit is the tight one: it is counted in advance, in one atomic
        # conditional write, so concurrent guesses cannot slip past it. The account and
        # address limits are counted on failure only (a successful login then costs one
        # read, one write and one delete), so in-flight attempts may pass them by a few.
        pair, limit, window = limits[0]
        if not self.store.take(pair, now=now, window=window, limit=limit):
            counts = self.store.counters([pair], now=now)
            raise Throttled(self._blocked_for(limits[:1], counts, now) or IN_FLIGHT_RETRY_AFTER)

    def failed(self, username_key: str, address: str) -> None:
        """A wrong password: the pair's reservation stands as a failure; count the rest."""
        now = self.clock()
        limits = self._limits(username_key, address)
        self.store.mark_failed(limits[0][0], now=now)
        for key, limit, window in limits[1:]:
            self.store.take(key, now=now, window=window, limit=limit)

    def succeeded(self, username_key: str, address: str) -> None:
        """A right password: the pair's count starts over."""
        self.store.reset_counter(self._limits(username_key, address)[0][0])

    def abandoned(self, username_key: str, address: str) -> None:
        """An attempt that never reached a verdict (the database went away): give it back."""
        self.store.give_back(self._limits(username_key, address)[0][0], now=self.clock())

    @staticmethod
    def _blocked_for(
        limits: list[tuple[str, int, int]],
        counts: dict[str, tuple[int, dt.datetime, int]],
        now: dt.datetime,
    ) -> int | None:
        """Seconds to wait when a limit is reached, else None.

        The pair's counter also holds attempts still being checked: when failures alone do
        not reach its limit, the wait is for those attempts to end, not for the window.
        """
        waits, in_flight = [], False
        for index, (key, limit, _) in enumerate(limits):
            if key not in counts or counts[key][0] < limit:
                continue
            _, ends, failures = counts[key]
            if index == 0 and failures < limit:
                in_flight = True
                continue
            waits.append(ends - now)
        if waits:
            return max(1, int(max(waits).total_seconds() + 0.999))
        return IN_FLIGHT_RETRY_AFTER if in_flight else None


class RegistrationThrottle:
    """At most `limit` registrations per client address per window."""

    def __init__(
        self,
        store: store_module.Store,
        *,
        limit: int = 20,
        window: int = 3600,
        clock: Clock = utcnow,
    ):
        self.store = store
        self.limit = limit
        self.window = window
        self.clock = clock

    def check_and_count(self, address: str) -> None:
        """Count this registration attempt; Throttled once the limit is passed."""
        now = self.clock()
        key = counter_key("register:address", address)
        if not self.store.take(key, now=now, window=self.window, limit=self.limit):
            _, expires_at = self.store.counter(key, now=now)
            wait = (expires_at - now).total_seconds() if expires_at else 1
            raise Throttled(max(1, int(wait + 0.999)))
