"""The public documents: the key set, RFC 8414 metadata, OpenID Connect discovery."""

from __future__ import annotations

from typing import Any

import falcon

from auth import EVERY_METHOD
from clients import SCOPES
from config import Config
from exchange import CODE_GRANT
from grants import PROMPTS
from keys import ID_TOKEN_ALGORITHM, KeyRing, jwks_of
from oauth import MFA_GRANT, PASSKEY_GRANT


def grant_types(config: Config) -> list[str]:
    """The grants of the token endpoint; the password grant unless it is turned off."""
    grants = [CODE_GRANT, "refresh_token", MFA_GRANT, PASSKEY_GRANT]
    return [*grants, "password"] if config.password_grant else grants


class Jwks:
    """GET /.well-known/jwks.json: the access-token keys and the ID-token keys."""

    public_methods = EVERY_METHOD

    def __init__(self, rings: list[KeyRing]) -> None:
        self.rings = rings

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The public keys that still verify."""
        resp.set_header("Cache-Control", "public, max-age=60")
        resp.media = jwks_of(self.rings)


def server_metadata(config: Config) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    issuer = config.issuer.rstrip("/")
    return {
        "issuer": config.issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/auth/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/auth/revoke",
        "introspection_endpoint": f"{issuer}/auth/introspect",
        "scopes_supported": list(SCOPES),
        "grant_types_supported": grant_types(config),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "revocation_endpoint_auth_signing_alg_values_supported": [],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALGORITHM],
        "access_token_signing_alg_values_supported": [config.signing_alg],
    }


class Metadata:
    """GET /.well-known/oauth-authorization-server (RFC 8414)."""

    public_methods = EVERY_METHOD

    def __init__(self, config: Config) -> None:
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Where the endpoints are and what they support."""
        resp.set_header("Cache-Control", "public, max-age=60")
        resp.media = server_metadata(self.config)


class OpenIDConfiguration:
    """GET /.well-known/openid-configuration (OpenID Connect Discovery 1.0 §4)."""

    public_methods = EVERY_METHOD

    def __init__(self, config: Config) -> None:
        self.config = config

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The provider's endpoints, algorithms, scopes and claims."""
        issuer = self.config.issuer.rstrip("/")
        resp.set_header("Cache-Control", "public, max-age=60")
        resp.media = {
            **server_metadata(self.config),
            "userinfo_endpoint": f"{issuer}/userinfo",
            "end_session_endpoint": f"{issuer}/logout",
            "subject_types_supported": ["public"],
            "prompt_values_supported": sorted(PROMPTS),
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "amr",
                "acr",
                "at_hash",
                "azp",
                "sid",
                "preferred_username",
                "email",
                "email_verified",
            ],
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "require_request_uri_registration": False,
        }
