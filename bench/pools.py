"""Pools of single-use secrets for the write rows: refresh tokens, mfa_tokens, codes.

Each request of those rows spends one secret, never twice (a refresh token used again is
reuse and ends its session). The bench makes them ahead, in bulk, with the service's own
classes (`Sessions.open`, `SecondStep.begin`, `Codes.issue`) writing through a store whose
inserts are collected and then sent as one `insert_many`: the documents have exactly the
shape the service makes, without a round trip each.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp
from bson import ObjectId

import store as store_module
from auth import Authentication
from clock import utcnow
from grants import Codes, s256
from mfa import SecondStep
from service import Components
from sessions import Sessions
from web import SESSION_COOKIE

MFA_GRANT = "urn:tokenauth:params:oauth:grant-type:mfa"
REDIRECT_URI = "https://app.example.org/callback"
# Codes live 60 s (grants.Codes.TTL) and mfa_tokens 5 minutes: a pool drops older ones.
CODE_MAX_AGE = 40.0
MFA_TOKEN_MAX_AGE = 240.0
CODE_SCOPES = ("openid", "profile", "email", "offline_access")
# A PKCE pair shared by every code: the verifier is checked per request all the same.
CODE_VERIFIER = "bench-verifier-" + "x" * 40
BENCH_ADDRESS, BENCH_AGENT = "127.0.0.1", "wrk"


class _Collected:
    """Stands in for a collection: keeps what `insert_one` is given, as pymongo would."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    def insert_one(self, doc: dict[str, Any]) -> None:
        doc.setdefault("_id", ObjectId())
        self.docs.append(doc)


class BulkStore:
    """The service's store, but its inserts into `names` collect for one insert_many."""

    def __init__(self, store: store_module.Store, *names: str) -> None:
        self.store = store
        self.shadow = copy.copy(store)
        self.collected = {name: _Collected() for name in names}
        for name, collected in self.collected.items():
            setattr(self.shadow, name, collected)

    def flush(self) -> None:
        """Insert what was collected, in batches."""
        for name, collected in self.collected.items():
            for start in range(0, len(collected.docs), 1000):
                getattr(self.store, name).insert_many(collected.docs[start : start + 1000])
            collected.docs.clear()


@dataclasses.dataclass
class Pool:
    """Single-use items (request lines for wrk), taken in order, each at most once."""

    name: str
    make: Callable[[int], list[str]]  # `count` fresh items
    render: Callable[[str], str] = str  # an item as the line wrk sends (body or cookie)
    max_age: float = 3600.0  # items older than this (seconds) are dropped unused
    items: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    made: int = 0
    dry: int = 0  # requests that found the pool spent

    def ensure(self, count: int) -> None:
        """At least `count` fresh items ready (old ones dropped, new ones made)."""
        oldest = time.monotonic() - self.max_age
        self.items = [(made, item) for made, item in self.items if made >= oldest]
        missing = count - len(self.items)
        if missing > 0:
            made = time.monotonic()
            self.items += [(made, item) for item in self.make(missing)]
            self.made += missing

    def take(self) -> str | None:
        """One item, or None (and counted as dry) when none is left."""
        if not self.items:
            self.dry += 1
            return None
        return self.items.pop(0)[1]

    def write(self, directory: Path) -> Path:
        """The items ready, one a line, in a file for wrk."""
        path = directory / f"{self.name.replace(' ', '-')}-{time.monotonic_ns()}.txt"
        path.write_text("".join(self.render(item) + "\n" for _, item in self.items))
        return path

    def spent(self, used: int, dry: int) -> None:
        """wrk used the first `used` lines of the file (some perhaps not sent: still gone)."""
        del self.items[:used]
        self.dry += dry


# -- what each pool holds -----------------------------------------------------------------
def refresh_sessions(components: Components, user: dict[str, Any], count: int) -> list[str]:
    """`count` new sessions of `user` (as a password login opens them); their refresh tokens."""
    bulk = BulkStore(components.store, "sessions")
    sessions = _sessions_over(bulk.shadow, components.sessions)
    tokens = [
        sessions.open(user, address=BENCH_ADDRESS, user_agent=BENCH_AGENT)[1] for _ in range(count)
    ]
    bulk.flush()
    return tokens


def _sessions_over(shadow: store_module.Store, sessions: Sessions) -> Sessions:
    # Sessions.open reads the credential version back after its insert (a password change
    # racing the login); a bench user's never changes, so the shadow answers it.
    shadow.credential_version = lambda user_id: 0
    return Sessions(
        shadow,
        sessions.revocations,
        ttl=sessions.ttl,
        reuse_interval=sessions.reuse_interval,
    )


def refresh_grant_body(token: str) -> str:
    """POST /auth/token's JSON body for the refresh grant."""
    return json.dumps({"grant_type": "refresh_token", "refresh_token": token})


def session_cookie_header(token: str) -> str:
    """The Cookie header of the browser client's refresh."""
    return f"{SESSION_COOKIE}={token}"


class MfaAccounts:
    """Accounts with TOTP on, each finishing one MFA grant: one mfa_token per account.

    A code is accepted once per account and time step (replay), so every request of the row
    belongs to an account of its own. They share one TOTP secret, so one code a slice serves
    all; each secret is sealed for its own account as enrolment seals it.
    """

    def __init__(self, components: Components, password_hash: str, secret: str) -> None:
        self.components = components
        self.password_hash = password_hash
        self.secret = secret
        self.made = 0

    def code(self) -> str:
        """The TOTP code of the current step."""
        return pyotp.TOTP(self.secret).now()

    def attempts(self, count: int) -> list[str]:
        """`count` new accounts, each with a login waiting for its second factor: mfa_tokens."""
        c = self.components
        now = utcnow()
        users = BulkStore(c.store, "users")
        accounts = []
        for _ in range(count):
            self.made += 1
            name = f"bench-mfa-{self.made:06d}-{ObjectId()}"
            user = users.shadow.create_user(
                username=name,
                username_key=name,
                password_hash=self.password_hash,
                roles=["user"],
                now=now,
            )
            sealed = c.totp.box.seal(self.secret.encode(), context=b"totp:" + user["id"].encode())
            # As Totp.confirm leaves it: active, with the confirming step spent long ago.
            totp = {"secret": sealed, "last_step": 0, "confirmed_at": now}
            users.collected["users"].docs[-1]["totp"] = totp
            accounts.append({**user, "totp": totp, "username_key": name})
        users.flush()
        attempts = BulkStore(c.store, "mfa_attempts")
        second_step = SecondStep(attempts.shadow, c.factors, c.second_step.throttle)
        tokens = [second_step.begin(user, Authentication(time=now)) for user in accounts]
        attempts.flush()
        return tokens

    def body(self, mfa_token: str, code: str) -> str:
        """POST /auth/token's JSON body completing the login with the code."""
        return json.dumps({"grant_type": MFA_GRANT, "mfa_token": mfa_token, "otp": code})


class AuthorizationCodes:
    """Codes a client was given for one signed-in user, as the consent page gives them."""

    def __init__(self, components: Components, user: dict[str, Any]) -> None:
        c = self.components = components
        self.client, self.client_secret = c.clients.create(
            "bench-app", [REDIRECT_URI], scopes=list(CODE_SCOPES)
        )
        self.user = user
        self.auth = Authentication(time=utcnow())
        # The browser's sign-in (the SSO session) the codes were given in.
        self.sign_in, _, _ = c.sessions.open(user, address=BENCH_ADDRESS, auth=self.auth)
        c.signins.attach(self.sign_in, self.auth)
        self.request = types.SimpleNamespace(
            client=self.client,
            redirect_uri=REDIRECT_URI,
            code_challenge=s256(CODE_VERIFIER),
            nonce="bench-nonce",
            scopes=CODE_SCOPES,
        )

    def codes(self, count: int) -> list[str]:
        """`count` new codes."""
        bulk = BulkStore(self.components.store, "codes")
        codes = Codes(bulk.shadow, self.components.sessions)
        issued = [
            codes.issue(
                self.request, user_id=self.user["id"], sign_in_sid=self.sign_in, auth=self.auth
            )
            for _ in range(count)
        ]
        bulk.flush()
        return issued

    def body(self, code: str) -> str:
        """POST /auth/token's JSON body redeeming the code (client_secret_post)."""
        return json.dumps(
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": CODE_VERIFIER,
                "redirect_uri": REDIRECT_URI,
                "client_id": self.client["id"],
                "client_secret": self.client_secret,
            }
        )
