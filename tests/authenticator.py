"""A software WebAuthn authenticator and browser for the tests: EC P-256 keys, `none`
attestation, CBOR by cbor2, answers shaped as PublicKeyCredential.toJSON() gives them."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

# Authenticator data flags (WebAuthn §6.1).
UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40
AAGUID = bytes(16)  # `none` attestation: all zeros


def b64url(data: bytes) -> str:
    """base64url without padding, as WebAuthn's JSON forms use it."""
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    """The bytes of a base64url string, padded or not."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclasses.dataclass
class Credential:
    """One discoverable credential the authenticator holds."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0


class SoftAuthenticator:
    """A platform authenticator with a browser around it: `create` and `get` take the
    service's options and answer what navigator.credentials would.

    `backup_eligible` makes synced (multi-device) credentials, `verifies_user` sets UV,
    `counter_step` is how much the signature counter moves per use (0: no counter, as
    synced passkeys often have).
    """

    def __init__(
        self,
        origin: str,
        *,
        backup_eligible: bool = False,
        verifies_user: bool = True,
        counter_step: int = 1,
    ) -> None:
        self.origin = origin
        self.backup_eligible = backup_eligible
        self.verifies_user = verifies_user
        self.counter_step = counter_step
        self.credentials: list[Credential] = []

    # -- navigator.credentials.create() ----------------------------------------------------
    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: bytes | None = None,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """A new credential for the options' RP and user (the keyword arguments forge the
        parts a real browser would not let a page choose)."""
        rp_id = rp_id or options["rp"]["id"]
        excluded = {unb64url(c["id"]) for c in options.get("excludeCredentials", [])}
        if any(c.credential_id in excluded for c in self.credentials):
            raise ValueError("InvalidStateError: this authenticator holds an excluded credential")
        credential = Credential(
            credential_id=credential_id or secrets.token_bytes(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp_id,
            user_handle=unb64url(options["user"]["id"]),
        )
        self.credentials.append(credential)
        client_data = self._client_data(
            "webauthn.create", challenge or unb64url(options["challenge"]), origin
        )
        attested = (
            AAGUID
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + cbor2.dumps(_cose_key(credential.private_key.public_key()))
        )
        auth_data = self._auth_data(rp_id, AT, credential.sign_count) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    # -- navigator.credentials.get() -------------------------------------------------------
    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: bytes | None = None,
        sign_count: int | None = None,
        credential: Credential | None = None,
        forge_signature: bool = False,
    ) -> dict[str, Any]:
        """An assertion over the options' challenge by the credential allowed (or, with an
        empty allowCredentials, the newest one for the RP: a discoverable sign-in)."""
        credential = credential or self._pick(options)
        if sign_count is None:
            credential.sign_count += self.counter_step
            sign_count = credential.sign_count
        client_data = self._client_data(
            "webauthn.get", challenge or unb64url(options["challenge"]), origin
        )
        auth_data = self._auth_data(rp_id or options["rpId"], 0, sign_count)
        signed = auth_data + hashlib.sha256(client_data).digest()
        signer = ec.generate_private_key(ec.SECP256R1()) if forge_signature else None
        signature = (signer or credential.private_key).sign(signed, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def _pick(self, options: dict[str, Any]) -> Credential:
        allowed = {unb64url(c["id"]) for c in options.get("allowCredentials", [])}
        mine = [
            c
            for c in self.credentials
            if c.rp_id == options["rpId"] and (not allowed or c.credential_id in allowed)
        ]
        if not mine:
            raise ValueError("NotAllowedError: no credential of this authenticator is allowed")
        return mine[-1]

    # -- the parts ---------------------------------------------------------------------------
    def _client_data(self, kind: str, challenge: bytes, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": b64url(challenge),
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def _auth_data(self, rp_id: str, extra_flags: int, sign_count: int) -> bytes:
        flags = UP | extra_flags
        if self.verifies_user:
            flags |= UV
        if self.backup_eligible:
            flags |= BE | BS
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", sign_count)


def _cose_key(public_key: ec.EllipticCurvePublicKey) -> dict[int, Any]:
    """RFC 9053 EC2 key: kty 2, alg ES256 (-7), crv P-256 (1), x, y."""
    numbers = public_key.public_numbers()
    return {
        1: 2,
        3: -7,
        -1: 1,
        -2: numbers.x.to_bytes(32, "big"),
        -3: numbers.y.to_bytes(32, "big"),
    }
