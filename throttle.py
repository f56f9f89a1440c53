"""Throttling: counters of attempts in MongoDB, shared by every worker and instance."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import store as store_module

Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Throttled(Exception):
    """Too many attempts; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


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
        clock: Clock = _utcnow,
    ) -> None:
        self.store = store
        self.clock = clock
        # (key prefix, limit, window): the pair, the account, and the address across accounts.
        self.max_failures = max_failures
        self.window = window
        self.address_limit = max(50, 10 * max_failures)

    def _limits(self, username_key: str, address: str) -> list[tuple[str, int, int]]:
        return [
            (f"login:pair:{address}:{username_key}", self.max_failures, self.window),
            (f"login:account:{username_key}", self.ACCOUNT_LIMIT, self.ACCOUNT_WINDOW),
            (f"login:address:{address}", self.address_limit, self.window),
        ]

    def attempt(self, username_key: str, address: str) -> None:
        """Check every limit and reserve this attempt against the pair's; Throttled if reached."""
        now = self.clock()
        limits = self._limits(username_key, address)
        counts = self.store.counters([key for key, _, _ in limits], now=now)
        if any(counts.get(key, (0,))[0] >= limit for key, limit, _ in limits):
            raise Throttled(self._retry_after(limits, counts, now))
        # The pair's limit is the tight one: it is counted in advance, in one atomic
        # conditional write, so concurrent guesses cannot slip past it. The account and
        # address limits are counted on failure only (a successful login then costs one
        # read, one write and one delete), so in-flight attempts may pass them by a few.
        pair, limit, window = limits[0]
        if not self.store.take(pair, now=now, window=window, limit=limit):
            raise Throttled(self._retry_after(limits, self.store.counters([pair], now=now), now))

    def failed(self, username_key: str, address: str) -> None:
        """A wrong password: count it against the account and the address too."""
        now = self.clock()
        for key, limit, window in self._limits(username_key, address)[1:]:
            self.store.take(key, now=now, window=window, limit=limit)

    def succeeded(self, username_key: str, address: str) -> None:
        """A right password: the pair's count starts over."""
        self.store.reset_counter(self._limits(username_key, address)[0][0])

    @staticmethod
    def _retry_after(
        limits: list[tuple[str, int, int]],
        counts: dict[str, tuple[int, dt.datetime]],
        now: dt.datetime,
    ) -> int:
        waits = [
            counts[key][1] - now
            for key, limit, _ in limits
            if key in counts and counts[key][0] >= limit
        ]
        longest = max(waits, default=dt.timedelta(seconds=1))
        return max(1, int(longest.total_seconds() + 0.999))


class RegistrationThrottle:
    """At most `limit` registrations per client address per window."""

    def __init__(
        self,
        store: store_module.Store,
        *,
        limit: int = 20,
        window: int = 3600,
        clock: Clock = _utcnow,
    ):
        self.store = store
        self.limit = limit
        self.window = window
        self.clock = clock

    def check_and_count(self, address: str) -> None:
        """Count this registration attempt; Throttled once the limit is passed."""
        now = self.clock()
        key = f"register:address:{address}"
        if not self.store.take(key, now=now, window=self.window, limit=self.limit):
            _, expires_at = self.store.counter(key, now=now)
            wait = (expires_at - now).total_seconds() if expires_at else 1
            raise Throttled(max(1, int(wait + 0.999)))
