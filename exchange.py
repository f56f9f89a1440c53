"""The authorization_code grant: a code for tokens, once (RFC 6749 §4.1.3, RFC 7636 §4.6)."""

from __future__ import annotations

import dataclasses
from typing import Any

import falcon

from auth import AccessTokens, Authentication
from clients import Clients
from errors import InvalidGrant
from events import EventLog
from grants import Codes
from idtokens import IdTokens
from sessions import Sessions
from signins import SignIns
from web import OAuthError

CODE_GRANT = "authorization_code"


@dataclasses.dataclass(frozen=True)
class Provider:
    """What the token endpoint needs of the authorization server."""

    clients: Clients
    codes: Codes
    signins: SignIns
    idtokens: IdTokens
    password_grant: bool = True


def client_claims(client: dict[str, Any], scope: str) -> dict[str, Any]:
    """What an access token says of the client it was issued to."""
    return {
        "client_id": client["id"],
        "scope": scope,
        "first_party": bool(client.get("first_party")),
    }


def require(params: dict[str, Any], *names: str) -> list[str]:
    """The named parameters; invalid_request naming those missing."""
    missing = [n for n in names if not params.get(n)]
    if missing:
        listed = " and ".join(missing)
        verb = "are" if len(missing) > 1 else "is"
        raise OAuthError(400, "invalid_request", f"{listed} {verb} required")
    return [params[n] for n in names]


class CodeExchange:
    """Redeem an authorization code: a client session, an access token, an ID token."""

    def __init__(
        self, sessions: Sessions, tokens: AccessTokens, events: EventLog, provider: Provider
    ) -> None:
        self.sessions = sessions
        self.tokens = tokens
        self.events = events
        self.provider = provider

    def answer(self, req: falcon.Request, params: dict[str, Any]) -> dict[str, Any]:
        """RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6): the code for tokens, once."""
        provider = self.provider
        client = provider.clients.authenticated(
            req.get_header("Authorization"), params, required=True
        )
        code, verifier = require(params, "code", "code_verifier")
        record = provider.codes.redeem(
            code,
            client_id=client["id"],
            redirect_uri=params.get("redirect_uri"),
            verifier=verifier,
        )
        signed = provider.signins.live(record["sso_sid"])
        if signed is None:
            raise InvalidGrant("The sign-in this code was given in has ended")
        _, user = signed
        scopes = list(record["scopes"])
        scope = " ".join(scopes)
        auth = Authentication(time=record["auth_time"], amr=tuple(record["amr"]))
        offline = "offline_access" in scopes
        address, user_agent = req.context.address, req.user_agent
        sid, refresh_token, session_end = self.sessions.open(
            user,
            address=address,
            user_agent=user_agent,
            auth=auth,
            extra={"client_id": client["id"], "scope": scope, "sso_sid": record["sso_sid"]},
            # Without offline_access no refresh token is given: the session ends with its
            # access token.
            ttl=None if offline else self.tokens.ttl,
        )
        provider.codes.bind(record, sid)
        access_token, claims = self.tokens.issue(
            user=user,
            sid=sid,
            not_after=session_end,
            auth=auth,
            client=client_claims(client, scope),
        )
        self.events.record(
            "client_authorized",
            user_id=user["id"],
            client_id=client["id"],
            sid=sid,
            address=address,
        )
        answer = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": claims["exp"] - claims["iat"],
            "scope": scope,
        }
        if offline:
            answer["refresh_token"] = refresh_token
        if "openid" in scopes:
            answer["id_token"] = provider.idtokens.issue(
                user=user,
                client_id=client["id"],
                scopes=scopes,
                auth=auth,
                access_token=access_token,
                nonce=record.get("nonce"),
                sid=record["sso_sid"],
            )
        return answer
