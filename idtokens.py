"""OpenID Connect ID tokens: issued RS256 with the ID-token key ring, and read back as hints."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import jwt

from auth import Authentication
from clock import Clock, utcnow
from keys import CLOCK_SKEW, ID_TOKEN_ALGORITHM, KeyRing


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6: base64url of the left half of the SHA-256 of the access token."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).decode().rstrip("=")


class IdTokens:
    """Sign ID tokens for a client; verify our own as `id_token_hint`."""

    def __init__(self, ring: KeyRing, *, issuer: str, ttl: int, clock: Clock = utcnow) -> None:
        self.ring = ring
        self.issuer = issuer
        self.ttl = ttl
        self.clock = clock

    def issue(
        self,
        *,
        user: dict[str, Any],
        client_id: str,
        scopes: list[str],
        auth: Authentication,
        access_token: str,
        nonce: str | None,
        sid: str | None,
    ) -> str:
        """An ID token for the user, to the client, with the claims its scopes name."""
        now = int(self.clock().timestamp())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user["id"],
            "aud": client_id,
            "azp": client_id,
            "iat": now,
            "exp": now + self.ttl,
            **auth.claims(),
            "at_hash": at_hash(access_token),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if sid is not None:
            claims["sid"] = sid  # the sign-in it came through (OIDC Front-Channel Logout §3)
        claims.update(user_claims(user, scopes))
        key = self.ring.current
        return jwt.encode(
            claims,
            key.signing_key,
            algorithm=ID_TOKEN_ALGORITHM,
            headers={"kid": key.kid, "typ": "JWT"},
        )

    def read_hint(self, token: str) -> dict[str, Any] | None:
        """The claims of an ID token we issued (expired ones too, as OIDC logout allows), or
        None when it is not one: a bad signature, another issuer, an unknown key."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        kid = header.get("kid")
        key = self.ring.verifying_key(kid) if isinstance(kid, str) else None
        if key is None or header.get("alg") != ID_TOKEN_ALGORITHM:
            return None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ID_TOKEN_ALGORITHM],
                issuer=self.issuer,
                leeway=CLOCK_SKEW,
                options={
                    "require": ["iss", "sub", "aud", "iat"],
                    "verify_aud": False,  # any of our clients: the caller checks which
                    "verify_exp": False,  # RP-Initiated Logout §2: an expired hint still names
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            return None
        if not isinstance(claims.get("aud"), str) or not isinstance(claims.get("sub"), str):
            return None
        return claims


def user_claims(user: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
    """The claims about the person that the granted scopes release (OIDC Core §5.4)."""
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims["preferred_username"] = user["username"]
    if "email" in scopes and user.get("email"):
        claims["email"] = user["email"]
        claims["email_verified"] = bool(user.get("email_verified"))
    return claims
