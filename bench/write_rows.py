"""The rows that spend a single-use secret a request: their pools, as wrk and a pacer take them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench import pools, report
from bench.load import Pacer
from bench.pools import Pool
from bench.processes import Gunicorn
from bench.seed import PASSWORD, Seeded
from config import Config

JSON_BODY = ("Content-Type: application/json",)
# What the browser client's fetch sends: the CSRF check needs a custom header and, from a
# browser with Fetch Metadata, Sec-Fetch-Site: same-origin.
SAME_ORIGIN = ("X-Requested-With: fetch", "Sec-Fetch-Site: same-origin")


@dataclasses.dataclass
class PoolFeed:
    """A row's pool as wrk takes it: a file of request lines, `place`d in the body or cookie."""

    pool: Pool
    directory: Path
    place: str = "body"
    first_rate: float = 500.0  # a guess of requests per second, until a slice has measured it
    rate: float = 0.0

    def env(self, seconds: float, stride: int) -> dict[str, str]:
        """Lines enough for `seconds` at the last rate seen (and half again), in a file."""
        rate = self.rate or self.first_rate
        self.pool.ensure(int(rate * seconds * 1.5) + 50)
        path = self.pool.write(self.directory)
        return {
            "BENCH_POOL": str(path),
            "BENCH_POOL_AS": self.place,
            "BENCH_POOL_STRIDE": str(stride),
        }

    def settle(self, env: dict[str, str], result: report.WrkResult) -> None:
        """Drop the lines wrk got through; remember the rate."""
        self.pool.spent(result.pool_used, result.pool_dry)
        self.rate = max(self.rate, result.requests_per_second)
        Path(env["BENCH_POOL"]).unlink(missing_ok=True)


class BenchSecrets:
    """The pools of the write rows, made with the service's own classes on its database."""

    def __init__(self, service: Gunicorn, seeded: Seeded, scratch: Path, totp_secret: str):
        from passwords import PasswordHasher
        from service import build_components

        self.components = build_components(Config.from_env(service.env))
        store = self.components.store
        user = store.find_user(seeded.user_id)
        c = self.components
        self.scratch = scratch
        password_hash = PasswordHasher().hash(PASSWORD)
        self.refreshes = Pool(
            "refresh", lambda n: pools.refresh_sessions(c, user, n), render=pools.refresh_grant_body
        )
        self.cookies = Pool(
            "cookie",
            lambda n: pools.refresh_sessions(c, user, n),
            render=pools.session_cookie_header,
        )
        accounts = pools.MfaAccounts(c, password_hash, totp_secret)
        self.mfa = Pool(
            "mfa",
            accounts.attempts,
            max_age=pools.MFA_TOKEN_MAX_AGE,
            render=lambda token: accounts.body(token, accounts.code()),
        )
        codes = pools.AuthorizationCodes(c, user)
        self.codes = Pool("code", codes.codes, max_age=pools.CODE_MAX_AGE, render=codes.body)

    def write_rows(self) -> list[tuple[str, str, tuple[str, ...], PoolFeed]]:
        """(row, path, headers, feed) of each row spending a secret a request."""
        return [
            (
                "refresh",
                "/auth/token",
                JSON_BODY,
                PoolFeed(self.refreshes, self.scratch, first_rate=150),
            ),
            (
                "refresh cookie",
                "/auth/session/refresh",
                SAME_ORIGIN,
                PoolFeed(self.cookies, self.scratch, place="cookie", first_rate=150),
            ),
            ("mfa", "/auth/token", JSON_BODY, PoolFeed(self.mfa, self.scratch, first_rate=200)),
            (
                "code exchange",
                "/auth/token",
                JSON_BODY,
                PoolFeed(self.codes, self.scratch, first_rate=200),
            ),
        ]

    def refresh_pacer(self, base: str, *, rate: float) -> Pacer:
        """Refresh grants at a steady rate, each with a fresh token from the refresh pool."""

        def next_refresh(slot: int) -> tuple[str, dict] | None:
            token = self.refreshes.take()
            if token is None:
                return None
            return "/auth/token", {"grant_type": "refresh_token", "refresh_token": token}

        return Pacer(base, next_refresh, rate=rate, threads=8)

    def close(self) -> None:
        """Close the database client."""
        self.components.store.close()
