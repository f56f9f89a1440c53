"""Second factors: TOTP, recovery codes, the second step of a login, and step-up (RFC 9470)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import logging
import secrets
from collections.abc import Callable, Iterable
from typing import Any

import pyotp
import segno

import store as store_module
from auth import AAL2, Authentication, require_role
from clock import Clock, utcnow
from errors import Conflict, InvalidGrant, StepUpRequired, Throttled
from events import EventLog
from keys import SecretBox
from throttle import LoginThrottle

log = logging.getLogger("tokenauth")

# RFC 6238 as authenticator apps implement it: 6 digits, 30 s steps, SHA-1.
TOTP_DIGITS = 6
TOTP_PERIOD = 30
# One step either side of now: a phone a little fast or slow, a code typed as it turned.
TOTP_SKEW = 1
RECOVERY_CODE_COUNT = 10
# Four groups of four base32 characters: 80 random bits, so a fast hash suffices to store it.
RECOVERY_CODE_GROUPS = 4
MFA_TOKEN_TTL = dt.timedelta(minutes=5)
# The order `mfa_methods` lists methods in; `otp` and `passkey` are factors on their own,
# `recovery_code` only stands in for one (the codes go when no factor is left).
METHOD_ORDER = ("otp", "recovery_code", "passkey")
FACTOR_METHODS = frozenset({"otp", "passkey"})


def _method_rank(method: str) -> tuple[int, str]:
    # Known methods in METHOD_ORDER; any other a factor module adds, after them by name.
    return (
        (METHOD_ORDER.index(method), "") if method in METHOD_ORDER else (len(METHOD_ORDER), method)
    )


def _hash(secret: str) -> str:
    # A fast hash: mfa_tokens and recovery codes carry 80 to 256 random bits.
    return hashlib.sha256(secret.encode()).hexdigest()


# -- the pluggable list of factors ----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Proof:
    """A verified second factor: what it adds to `amr`, what the token answer tells (e.g.
    `recovery_codes_left`), and the security event its use records, if any."""

    amr: tuple[str, ...]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    event: str | None = None


# A source says which methods a user (the stored document) has; a verifier checks one proof
# (the value the client sent) for a user: a Proof, or None when it is wrong. A describer adds
# its part to GET /users/me/mfa.
Source = Callable[[dict[str, Any]], Iterable[str]]
Verifier = Callable[[dict[str, Any], Any], Proof | None]
Describer = Callable[[dict[str, Any]], dict[str, Any]]


class SecondFactors:
    """The one place that knows which second factors an account has, and checks a proof.

    Each kind of factor registers itself with `add`: TOTP and recovery codes here, passkeys
    from their own module. The MFA grant dispatches a proof by its parameter name (`otp`,
    `recovery_code`, `passkey`), which is also the method's name in `mfa_methods`.
    """

    def __init__(self) -> None:
        self._sources: list[Source] = []
        self._verifiers: dict[str, Verifier] = {}
        self._describers: list[Describer] = []
        self._removers: list[Callable[[str], object]] = []

    def add(
        self,
        *,
        methods: Source,
        verifiers: dict[str, Verifier] | None = None,
        describe: Describer | None = None,
        remove: Callable[[str], object] | None = None,
    ) -> None:
        """Register a kind of factor: its methods, its proofs' verifiers, its status part,
        and how to remove all of it from an account (by user id)."""
        self._sources.append(methods)
        self._verifiers.update(verifiers or {})
        if describe is not None:
            self._describers.append(describe)
        if remove is not None:
            self._removers.append(remove)

    def remove_all(self, user_id: str) -> None:
        """Remove every factor of every kind from the account (an operator's reset)."""
        for remove in self._removers:
            remove(user_id)

    def methods(self, user: dict[str, Any]) -> list[str]:
        """The methods the user can complete a login with, in METHOD_ORDER."""
        found = {method for source in self._sources for method in source(user)}
        return sorted(found, key=_method_rank)

    def has_factor(self, user: dict[str, Any]) -> bool:
        """Whether the account has an active second factor (recovery codes alone are none)."""
        return any(method in FACTOR_METHODS for method in self.methods(user))

    def proofs(self) -> list[str]:
        """The proof parameters a second step accepts."""
        return sorted(self._verifiers, key=_method_rank)

    def verify(self, proof: str, user: dict[str, Any], value: Any) -> Proof | None:
        """The checked proof, or None when it is wrong (or the user lacks that method)."""
        verifier = self._verifiers.get(proof)
        return None if verifier is None else verifier(user, value)

    def status(self, user: dict[str, Any]) -> dict[str, Any]:
        """GET /users/me/mfa: every kind's part; passkeys empty until their module adds them."""
        shown: dict[str, Any] = {"totp": False, "recovery_codes_left": 0, "passkeys": []}
        for describe in self._describers:
            shown.update(describe(user))
        return shown


# -- TOTP (RFC 6238) ------------------------------------------------------------------------
class Totp:
    """One TOTP factor per account: enrolment, confirmation, and codes accepted once."""

    def __init__(
        self,
        store: store_module.Store,
        box: SecretBox,
        *,
        issuer_name: str,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.box = box
        self.issuer_name = issuer_name
        self.clock = clock

    def register(self, factors: SecondFactors) -> None:
        """Join the list of factors as the `otp` method."""
        factors.add(
            methods=self.methods,
            verifiers={"otp": self.verify},
            describe=self.describe,
            remove=self.remove,
        )

    def methods(self, user: dict[str, Any]) -> list[str]:
        """`otp` once a TOTP factor is confirmed."""
        return ["otp"] if user.get("totp") else []

    def describe(self, user: dict[str, Any]) -> dict[str, Any]:
        """Whether TOTP is active."""
        return {"totp": bool(user.get("totp"))}

    def enrol(self, user: dict[str, Any]) -> dict[str, str]:
        """A new pending secret (replacing a pending one): the secret, its otpauth:// URI and
        that URI as a QR code in SVG. Conflict while a TOTP factor is active."""
        secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
        sealed = self.box.seal(secret.encode(), context=self._context(user))
        if not self.store.set_pending_totp(user["id"], sealed, now=self.clock()):
            raise Conflict("totp", "is already active; remove it before enrolling another")
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
            name=user["username"], issuer_name=self.issuer_name
        )
        return {"secret": secret, "otpauth_uri": uri, "qr_svg": _qr_svg(uri)}

    def confirm(self, user: dict[str, Any], code: str) -> bool:
        """Activate the pending secret with a right code of it; False otherwise (no pending
        enrolment, a wrong code, or a concurrent confirmation or enrolment won)."""
        pending = user.get("totp_pending")
        if not pending:
            return False
        secret = self._open(user, pending["secret"])
        step = None if secret is None else self._matching_step(secret, code, after=-1)
        if step is None:
            return False
        # The confirming code is spent: it cannot log in afterwards.
        return self.store.activate_totp(
            user["id"], pending["secret"], last_step=step, now=self.clock()
        )

    def verify(self, user: dict[str, Any], code: Any) -> Proof | None:
        """A right code not accepted before, accepted now; None otherwise."""
        active = user.get("totp")
        if not active or not isinstance(code, str):
            return None
        secret = self._open(user, active["secret"])
        if secret is None:
            return None
        step = self._matching_step(secret, code, after=active.get("last_step", -1))
        # The conditional write decides: of two workers given the same code, one moves the
        # last step forward, the other finds it already there.
        if step is None or not self.store.use_totp_step(user["id"], step):
            return None
        return Proof(amr=("otp",))

    def remove(self, user_id: str) -> bool:
        """Remove the TOTP factor (and a pending enrolment); False when none was active."""
        return self.store.remove_totp(user_id)

    def _matching_step(self, secret: str, code: str, *, after: int) -> int | None:
        code = code.strip()
        if len(code) != TOTP_DIGITS or not (code.isascii() and code.isdigit()):
            return None
        totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD)
        now = int(self.clock().timestamp()) // TOTP_PERIOD
        for step in range(now - TOTP_SKEW, now + TOTP_SKEW + 1):
            if step > after and hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None

    def _open(self, user: dict[str, Any], sealed: str) -> str | None:
        secret = self.box.open(sealed, context=self._context(user))
        if secret is None:
            # The data key that sealed it is gone (or the record was moved between users).
            log.warning("TOTP secret of user %s cannot be opened with the data keys", user["id"])
            return None
        return secret.decode()

    @staticmethod
    def _context(user: dict[str, Any]) -> bytes:
        # Bound to its user: a sealed secret copied onto another account does not open.
        return b"totp:" + user["id"].encode()


def _qr_svg(uri: str) -> str:
    """The URI as a standalone SVG QR code (usable inline or as a data: URI)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", scale=4, xmldecl=False, svgns=True, svgclass=None, lineclass=None
    )
    return out.getvalue().decode().strip()


# -- recovery codes -------------------------------------------------------------------------
class RecoveryCodes:
    """Ten single-use codes for when the factor is lost, stored only as hashes."""

    def __init__(self, store: store_module.Store) -> None:
        self.store = store

    def clear_without_factor(self, user_id: str, factors: SecondFactors) -> None:
        """After a factor's removal: the codes go too when the account has no factor left."""
        user = self.store.find_user(user_id)
        if user is not None and not factors.has_factor(user):
            self.clear(user_id)

    def register(self, factors: SecondFactors) -> None:
        """Join the list of factors as the `recovery_code` method."""
        factors.add(
            methods=self.methods,
            verifiers={"recovery_code": self.verify},
            describe=self.describe,
            remove=self.clear,
        )

    def methods(self, user: dict[str, Any]) -> list[str]:
        """`recovery_code` while any is left."""
        return ["recovery_code"] if user.get("recovery_codes") else []

    def describe(self, user: dict[str, Any]) -> dict[str, Any]:
        """How many are left."""
        return {"recovery_codes_left": len(user.get("recovery_codes") or [])}

    def generate(self, user_id: str) -> list[str]:
        """A new set of codes (shown once); the old ones stop working."""
        codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        self.store.set_recovery_codes(user_id, [_hash(normalize_recovery_code(c)) for c in codes])
        return codes

    def clear(self, user_id: str) -> None:
        """Remove every code (no factor is left for them to stand in for)."""
        self.store.set_recovery_codes(user_id, None)

    def verify(self, user: dict[str, Any], code: Any) -> Proof | None:
        """Spend the code, once; None when it is not one of the user's unused codes."""
        if not isinstance(code, str) or not user.get("recovery_codes"):
            return None
        left = self.store.use_recovery_code(user["id"], _hash(normalize_recovery_code(code)))
        if left is None:
            return None
        # A recovery code is a one-time password in RFC 8176's sense (NIST: a look-up
        # secret, an AAL2 authenticator); the event tells it from a TOTP code.
        return Proof(amr=("otp",), extra={"recovery_codes_left": left}, event="recovery_code_used")


_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def new_recovery_code() -> str:
    """Four groups of four base32 characters from `secrets`: 80 bits."""
    chars = "".join(secrets.choice(_BASE32) for _ in range(4 * RECOVERY_CODE_GROUPS))
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def normalize_recovery_code(code: str) -> str:
    """The form codes are compared in: without case, spaces or hyphens."""
    return "".join(ch for ch in code.lower() if ch not in "- \t")


# -- the second step of a login --------------------------------------------------------------
class SecondStep:
    """A login whose password was right, waiting for its second factor: an `mfa_token`
    (shown once, stored as a hash, 5 minutes, bound to the user, the credential version and
    the first step's authentication), completed by a proof. Wrong proofs count as failed
    logins (LoginThrottle) and leave the token usable; a right one ends it."""

    def __init__(
        self,
        store: store_module.Store,
        factors: SecondFactors,
        throttle: LoginThrottle,
        *,
        events: EventLog | None = None,
        clock: Clock = utcnow,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.store = store
        self.factors = factors
        self.throttle = throttle
        self.events = events or EventLog()
        self.clock = clock
        self.new_secret = new_secret

    def begin(self, user: dict[str, Any], auth: Authentication) -> str:
        """Keep the first step (`auth`) of the user's login; the mfa_token that names it."""
        token = self.new_secret()
        now = self.clock()
        self.store.add_mfa_attempt(
            {
                "_id": _hash(token),
                "user_id": user["id"],
                "credential_version": user.get("credential_version", 0),
                "auth_time": auth.time,
                "amr": list(auth.amr),
                "created_at": now,
                "expires_at": now + MFA_TOKEN_TTL,
            }
        )
        return token

    def user_of(self, mfa_token: str) -> dict[str, Any] | None:
        """The user of a login waiting for its second step; None when the token is not live
        (or the login can no longer be completed)."""
        attempt = self.store.find_mfa_attempt(_hash(mfa_token), now=self.clock())
        user = None if attempt is None else self.store.find_user(attempt["user_id"])
        if (
            user is None
            or user.get("disabled")
            or user.get("credential_version", 0) != attempt["credential_version"]
        ):
            return None
        return user

    def complete(
        self,
        mfa_token: str,
        proof: str,
        value: Any,
        *,
        address: str,
        user_agent: str | None = None,
    ) -> tuple[dict[str, Any], Authentication, dict[str, Any]]:
        """Check the proof for the login `mfa_token` names: its user, the two steps'
        authentication, and the extras of the answer. InvalidGrant or Throttled otherwise."""
        token_hash = _hash(mfa_token)
        attempt = self.store.find_mfa_attempt(token_hash, now=self.clock())
        if attempt is None:
            raise InvalidGrant("The mfa_token is invalid, expired or already used")
        user = self.store.find_user(attempt["user_id"])
        if (
            user is None
            or user.get("disabled")
            or user.get("credential_version", 0) != attempt["credential_version"]
        ):
            raise InvalidGrant("This login can no longer be completed; sign in again")
        key = user["username_key"]
        try:
            self.throttle.attempt(key, address)
        except Throttled as exc:
            self.events.record(
                "login_throttled", user_id=user["id"], address=address, retry_after=exc.retry_after
            )
            raise
        try:
            checked = self.factors.verify(proof, user, value)
        except Exception:
            self.throttle.abandoned(key, address)
            raise
        if checked is None:
            self.throttle.failed(key, address)
            self.events.record(
                "mfa_failed",
                user_id=user["id"],
                method=proof,
                address=address,
                user_agent=user_agent,
            )
            raise InvalidGrant(f"The {proof} is incorrect")
        if not self.store.use_mfa_attempt(token_hash, now=self.clock()):
            # Completed by a concurrent request (or expired) while this one was checked.
            self.throttle.abandoned(key, address)
            raise InvalidGrant("The mfa_token is invalid, expired or already used")
        self.throttle.succeeded(key, address)
        if checked.event:
            self.events.record(
                checked.event,
                user_id=user["id"],
                address=address,
                user_agent=user_agent,
                **checked.extra,
            )
        amr = dict.fromkeys([*attempt["amr"], *checked.amr, "mfa"])
        return user, Authentication(time=attempt["auth_time"], amr=tuple(amr)), checked.extra


# -- step-up (RFC 9470) ----------------------------------------------------------------------
class StepUp:
    """Sensitive routes need a recent sign-in, and a second factor where the account has one."""

    def __init__(
        self,
        store: store_module.Store,
        factors: SecondFactors,
        *,
        max_age: int,
        admin_requires_mfa: bool = True,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.factors = factors
        self.max_age = max_age
        self.admin_requires_mfa = admin_requires_mfa
        self.clock = clock

    def check(self, claims: dict[str, Any], *, admin: bool = False) -> None:
        """StepUpRequired unless the token's `auth_time` is within `max_age` seconds and, where
        the account has a second factor, its `acr` is aal2 (for an admin write, only with
        TOKENAUTH_ADMIN_REQUIRES_MFA)."""
        auth_time = claims.get("auth_time")
        fresh = isinstance(auth_time, int) and self.clock().timestamp() - auth_time <= self.max_age
        strong = claims.get("acr") == AAL2
        if fresh and strong:
            return  # no database read for the common case of a fresh two-factor token
        needs_factor = self._needs_factor(claims["sub"], admin=admin)
        if fresh and (strong or not needs_factor):
            return
        what = "a sign-in with a second factor" if needs_factor else "a sign-in"
        if not fresh:
            what += f" within the last {self.max_age} seconds"
        description = f"This operation needs {what}; sign in again"
        raise StepUpRequired(
            description, max_age=self.max_age, acr_values=AAL2 if needs_factor else None
        )

    def _needs_factor(self, user_id: str, *, admin: bool) -> bool:
        if admin and not self.admin_requires_mfa:
            return False
        user = self.store.find_user(user_id)
        return user is not None and self.factors.has_factor(user)


def require_step_up(req, resp, resource, params) -> None:
    """Falcon hook for routes marked step-up: `resource.step_up` (a StepUp) checks the token.

    Routes marked "second factor" in the contract (removing a factor, new recovery codes)
    use it too: they act on a factor, so the account has one whenever they can succeed,
    and a token without one is refused; an account with none gets the route's own 404/409.
    """
    resource.step_up.check(req.context.claims)


def require_admin_write(req, resp, resource, params) -> None:
    """Falcon hook for admin writes: the admin role (403), then step-up (401)."""
    require_role(req, "admin")
    resource.step_up.check(req.context.claims, admin=True)
