"""Passkeys (WebAuthn, with py_webauthn): registration, the second factor, passwordless sign-in."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

import webauthn
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_client_data_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

import store as store_module
from auth import Authentication
from clock import Clock, utcnow
from errors import Conflict, InvalidGrant, InvalidInput, Throttled
from events import EventLog
from mfa import Proof, SecondFactors
from throttle import LoginThrottle
from web import rfc3339

CHALLENGE_TTL = dt.timedelta(minutes=5)
# What the browser is told to wait for the person: the challenge's whole life.
CEREMONY_TIMEOUT_MS = int(CHALLENGE_TTL.total_seconds() * 1000)
MAX_PASSKEYS = 20
# The two ceremonies, as clientDataJSON's `type` names them.
CREATE, GET = "webauthn.create", "webauthn.get"
# The throttle's "username" for assertions of credentials no account holds: `#` is in no
# username, so the pair and address limits still count them.
UNKNOWN_CREDENTIAL = "#unknown-passkey"
# What py_webauthn raises for a malformed or wrong credential (base64 errors are ValueErrors).
_REFUSED = (WebAuthnException, ValueError, TypeError, KeyError)
_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


def public_passkey(passkey: dict[str, Any]) -> dict[str, Any]:
    """A passkey as its owner sees it: never its key or credential id."""
    last_used = passkey.get("last_used_at")
    return {
        "id": passkey["id"],
        "name": passkey["name"],
        "created_at": rfc3339(passkey["created_at"]),
        "last_used_at": None if last_used is None else rfc3339(last_used),
    }


def key_kind(passkey: dict[str, Any]) -> str:
    """RFC 8176's `swk` for a backup-eligible (synced) credential, `hwk` for one bound to its
    device: a synced key's private half leaves the authenticator, so it is a software key."""
    return "swk" if passkey.get("backup_eligible") else "hwk"


# -- challenges -------------------------------------------------------------------------------
class Challenges:
    """Single-use WebAuthn challenges (5 minutes) in MongoDB, so any worker or instance can
    finish a ceremony another began. Stored as hashes, bound to the ceremony and the account.

    The `challenge_id` a client gets is the challenge (base64url), which the options carry
    anyway: an assertion names its challenge in clientDataJSON, so the MFA grant, whose proof
    is the assertion alone, finds it there.
    """

    def __init__(
        self,
        store: store_module.Store,
        *,
        clock: Clock = utcnow,
        new_challenge: Callable[[], bytes] = lambda: secrets.token_bytes(32),
    ) -> None:
        self.store = store
        self.clock = clock
        self.new_challenge = new_challenge

    def issue(self, purpose: str, user_id: str | None) -> bytes:
        """A new challenge for one ceremony of `purpose` by `user_id` (None: anyone's)."""
        challenge = self.new_challenge()
        now = self.clock()
        self.store.add_webauthn_challenge(
            {
                "_id": _hash(challenge),
                "purpose": purpose,
                "user_id": user_id,
                "created_at": now,
                "expires_at": now + CHALLENGE_TTL,
            }
        )
        return challenge

    def take(self, challenge: bytes, purpose: str, user_id: str | None) -> bool:
        """Consume the challenge, once; False when unknown, expired, used, or another's."""
        return self.store.take_webauthn_challenge(
            _hash(challenge), purpose=purpose, user_id=user_id, now=self.clock()
        )


def _hash(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def challenge_of(challenge_id: Any) -> bytes | None:
    """The challenge a challenge_id stands for; None when it cannot be one."""
    if not isinstance(challenge_id, str) or not 16 <= len(challenge_id) <= 128:
        return None
    try:
        return base64url_to_bytes(challenge_id)
    except ValueError:
        return None


# -- assertions -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Assertion:
    """A parsed navigator.credentials.get() answer and the challenge it says it signed."""

    credential: AuthenticationCredential
    challenge: bytes

    @classmethod
    def parse(cls, value: Any) -> Assertion | None:
        """The assertion in a JSON object (or its text, from a form); None when malformed."""
        try:
            credential = parse_authentication_credential_json(value)
            client_data = parse_client_data_json(credential.response.client_data_json)
        except _REFUSED:
            return None
        return cls(credential, client_data.challenge)


@dataclasses.dataclass(frozen=True)
class Checked:
    """A verified assertion: the passkey used, and whether the authenticator verified the
    person (a PIN or biometric), beyond their presence."""

    passkey: dict[str, Any]
    user_verified: bool


# -- the account's passkeys ---------------------------------------------------------------------
class Passkeys:
    """An account's passkeys: creation ceremonies, names, removal, and checking assertions."""

    def __init__(
        self,
        store: store_module.Store,
        challenges: Challenges,
        *,
        rp_id: str,
        rp_name: str,
        origins: tuple[str, ...],
        events: EventLog | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.challenges = challenges
        self.rp_id = rp_id
        self.rp_name = rp_name
        self.origins = list(origins)
        self.events = events or EventLog()
        self.clock = clock

    def register(self, factors: SecondFactors) -> None:
        """Join the list of factors as the `passkey` method."""
        factors.add(
            methods=self.methods,
            verifiers={"passkey": self.verify},
            describe=self.describe,
            remove=self.store.remove_passkeys,
        )

    def methods(self, user: dict[str, Any]) -> list[str]:
        """`passkey` while the account has one."""
        return ["passkey"] if user.get("passkeys") else []

    def describe(self, user: dict[str, Any]) -> dict[str, Any]:
        """The account's passkeys, oldest first."""
        return {"passkeys": [public_passkey(p) for p in user.get("passkeys") or []]}

    # -- registration ------------------------------------------------------------------------
    def creation_options(self, user: dict[str, Any]) -> dict[str, Any]:
        """Options for navigator.credentials.create() (a discoverable credential, user
        verification preferred, the account's passkeys excluded), and their challenge_id."""
        self._below_limit(user)
        handle = self.store.passkey_user_handle(user["id"], secrets.token_bytes(32))
        challenge = self.challenges.issue(CREATE, user["id"])
        options = webauthn.generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_id=handle,
            user_name=user["username"],
            challenge=challenge,
            timeout=CEREMONY_TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=_descriptors(user),
        )
        return {**options_to_json_dict(options), "challenge_id": bytes_to_base64url(challenge)}

    def add(
        self, user: dict[str, Any], credential: Any, name: str, challenge_id: str
    ) -> dict[str, Any]:
        """Finish a registration begun with creation_options: the new passkey. InvalidInput
        for a wrong credential or challenge, Conflict at the limit or for a known credential."""
        self._below_limit(user)
        challenge = challenge_of(challenge_id)
        if challenge is None or not self.challenges.take(challenge, CREATE, user["id"]):
            raise InvalidInput(
                [("challenge_id", "is unknown, expired or already used: ask for new options")]
            )
        try:
            verified = webauthn.verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
            )
        except _REFUSED as exc:
            raise InvalidInput(
                [("credential", f"is not a valid passkey for this site: {exc}")]
            ) from None
        now = self.clock()
        passkey = {
            "id": secrets.token_hex(12),  # an id shaped like the service's other ids
            "name": name.strip(),
            "credential_id": verified.credential_id,
            "public_key": verified.credential_public_key,
            "sign_count": verified.sign_count,
            "backup_eligible": verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            "transports": _transports(credential),
            "created_at": now,
            "last_used_at": None,
        }
        if not self.store.add_passkey(user["id"], passkey, limit=MAX_PASSKEYS):
            raise _limit_reached()
        return passkey

    def rename(self, user_id: str, passkey_id: str, name: str) -> dict[str, Any] | None:
        """Rename one of the account's passkeys; the passkey, or None without one of that id."""
        return self.store.rename_passkey(user_id, passkey_id, name.strip())

    def remove(self, user_id: str, passkey_id: str) -> bool:
        """Remove one of the account's passkeys; False when it has none of that id."""
        return self.store.remove_passkey(user_id, passkey_id)

    def _below_limit(self, user: dict[str, Any]) -> None:
        if len(user.get("passkeys") or []) >= MAX_PASSKEYS:
            raise _limit_reached()

    # -- assertions --------------------------------------------------------------------------
    def request_options(self, user: dict[str, Any] | None) -> dict[str, Any]:
        """Options for navigator.credentials.get() and their challenge_id: for `user`'s
        passkeys (a second step), or, with None, for any discoverable credential."""
        challenge = self.challenges.issue(GET, None if user is None else user["id"])
        options = webauthn.generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge,
            timeout=CEREMONY_TIMEOUT_MS,
            allow_credentials=[] if user is None else _descriptors(user),
            user_verification=UserVerificationRequirement.PREFERRED,
        )
        return {
            "options": options_to_json_dict(options),
            "challenge_id": bytes_to_base64url(challenge),
        }

    def verify(self, user: dict[str, Any], value: Any) -> Proof | None:
        """The MFA grant's `passkey` proof: an assertion of one of the user's passkeys over a
        challenge issued for this user's second step; None when it is not."""
        assertion = Assertion.parse(value)
        checked = None if assertion is None else self.check(assertion, user, bound=True)
        if checked is None:
            return None
        return Proof(amr=(key_kind(checked.passkey), "user"), event="passkey_used")

    def holder(self, assertion: Assertion) -> dict[str, Any] | None:
        """The account holding the credential that made the assertion, or None."""
        return self.store.find_user_by_passkey(assertion.credential.raw_id)

    def check(self, assertion: Assertion, user: dict[str, Any], *, bound: bool) -> Checked | None:
        """Verify an assertion of one of `user`'s passkeys, spending its challenge (issued for
        this user when `bound`, for anyone otherwise) and recording the use; None when wrong."""
        credential = assertion.credential
        passkey = next(
            (
                p
                for p in user.get("passkeys") or []
                if hmac.compare_digest(p["credential_id"], credential.raw_id)
            ),
            None,
        )
        handle = credential.response.user_handle
        if passkey is None or (
            handle is not None and handle != user.get("passkey_user_handle", b"")
        ):
            return None
        purpose_user = user["id"] if bound else None
        if not self.challenges.take(assertion.challenge, GET, purpose_user):
            return None
        stored = passkey["sign_count"]
        try:
            # The counter is checked below, after the signature: a regression is then known
            # to come from the key itself (a clone), not from a forged request.
            verified = webauthn.verify_authentication_response(
                credential=credential,
                expected_challenge=assertion.challenge,
                expected_rp_id=self.rp_id,
                expected_origin=self.origins,
                credential_public_key=passkey["public_key"],
                credential_current_sign_count=0,
            )
        except _REFUSED:
            return None
        count = verified.new_sign_count
        if (count or stored) and count <= stored:
            self.events.record(
                "passkey_sign_count_regressed",
                user_id=user["id"],
                passkey_id=passkey["id"],
                stored=stored,
                presented=count,
            )
            return None
        used = self.store.use_passkey(
            user["id"], passkey["id"], sign_count_was=stored, sign_count=count, now=self.clock()
        )
        return Checked(passkey, verified.user_verified) if used else None


def _descriptors(user: dict[str, Any]) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=p["credential_id"],
            transports=[AuthenticatorTransport(t) for t in p.get("transports") or []] or None,
        )
        for p in user.get("passkeys") or []
    ]


def _transports(credential: Any) -> list[str]:
    """The transports the browser reported (a hint for later allowCredentials), known ones."""
    response = credential.get("response") if isinstance(credential, dict) else None
    listed = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(listed, list):
        return []
    return sorted({t for t in listed if isinstance(t, str) and t in _TRANSPORTS})


def _limit_reached() -> Conflict:
    return Conflict("passkeys", f"are at most {MAX_PASSKEYS} per account: remove one first")


# -- passwordless sign-in -----------------------------------------------------------------------
class PasskeySignIn:
    """A passwordless sign-in with a discoverable passkey, throttled and recorded like a
    password login: a failed assertion is a failed login for that account and address."""

    def __init__(
        self,
        passkeys: Passkeys,
        throttle: LoginThrottle,
        *,
        events: EventLog | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.passkeys = passkeys
        self.throttle = throttle
        self.events = events or EventLog()
        self.clock = clock

    def sign_in(
        self, value: Any, challenge_id: Any, *, address: str, user_agent: str | None = None
    ) -> tuple[dict[str, Any], Authentication]:
        """The account and its authentication: the key kind and `user` (presence), and `mfa`
        when the authenticator verified the person (the key and the PIN or biometric that
        unlocks it: two factors, aal2). InvalidGrant or Throttled otherwise."""
        assertion = Assertion.parse(value)
        user = None if assertion is None else self.passkeys.holder(assertion)
        key = UNKNOWN_CREDENTIAL if user is None else user["username_key"]
        user_id = None if user is None else user["id"]
        try:
            self.throttle.attempt(key, address)
        except Throttled as exc:
            self.events.record(
                "login_throttled", user_id=user_id, address=address, retry_after=exc.retry_after
            )
            raise
        named = challenge_of(challenge_id)
        try:
            checked = None
            if (
                user is not None
                and not user.get("disabled")
                and named is not None
                and hmac.compare_digest(named, assertion.challenge)
            ):
                checked = self.passkeys.check(assertion, user, bound=False)
        except Exception:
            self.throttle.abandoned(key, address)
            raise
        if checked is None:
            self.throttle.failed(key, address)
            self.events.record(
                "login_failed",
                user_id=user_id,
                method="passkey",
                address=address,
                user_agent=user_agent,
            )
            raise InvalidGrant("The passkey is incorrect")
        self.throttle.succeeded(key, address)
        self.events.record(
            "passkey_used",
            user_id=user_id,
            passkey_id=checked.passkey["id"],
            address=address,
            user_agent=user_agent,
        )
        amr = (key_kind(checked.passkey), "user", *(("mfa",) if checked.user_verified else ()))
        return user, Authentication(time=self.clock(), amr=amr)
