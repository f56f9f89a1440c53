"""What a person grants a client: authorization requests, consents, and authorization codes."""

# OAuth 2.1 (draft-ietf-oauth-v2-1) §4.1 with OpenID Connect Core §3.1: the code flow only,
# PKCE S256 for every client, exact redirect URIs, single-use codes of 60 s bound to the
# client, the redirect URI and the PKCE challenge, whose replay revokes what they gave.

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import store as store_module
from auth import Authentication
from clients import SCOPES, Clients
from clock import Clock, utcnow
from errors import AuthorizationRefused, InvalidGrant, UntrustedRedirect
from sessions import Sessions

PROMPTS = frozenset({"none", "login", "consent", "select_account"})
# RFC 7636 §4.2: S256 of a verifier is 32 bytes, 43 characters of base64url.
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
MAX_NONCE = 512
MAX_LOGIN_HINT = 256


def _hash(secret: str) -> str:
    # A fast hash suffices: handles and codes carry 256 random bits and live minutes.
    return hashlib.sha256(secret.encode()).hexdigest()


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


# -- the authorization request ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AuthorizationRequest:
    """A checked authorization request: everything the code will be bound to."""

    client: dict[str, Any]
    redirect_uri: str
    state: str | None
    scopes: tuple[str, ...]
    code_challenge: str
    nonce: str | None = None
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    login_hint: str | None = None

    def refuse(self, error: str, description: str) -> AuthorizationRefused:
        """An error to send back to the client's redirect URI."""
        return AuthorizationRefused(
            error, description, redirect_uri=self.redirect_uri, state=self.state
        )

    def record(self) -> dict[str, Any]:
        """The request as kept while a person signs in or consents."""
        fields = dataclasses.asdict(self)
        fields["client_id"] = fields.pop("client")["id"]
        fields["scopes"] = list(self.scopes)
        fields["prompt"] = sorted(self.prompt)
        return fields

    @classmethod
    def from_record(cls, record: Mapping[str, Any], client: dict[str, Any]) -> AuthorizationRequest:
        """The request kept by `record()`, for its (still registered) client."""
        names = {f.name for f in dataclasses.fields(cls)} - {"client"}
        fields = {name: record.get(name) for name in names}
        fields["scopes"] = tuple(fields["scopes"])
        fields["prompt"] = frozenset(fields["prompt"] or ())
        return cls(client=client, **fields)


def read_request(params: Mapping[str, list[str]], clients: Clients) -> AuthorizationRequest:
    """Check an authorization request (query or form parameters, each a list of values).

    UntrustedRedirect when the client or redirect URI cannot be trusted (shown on a page);
    AuthorizationRefused for anything else wrong (sent to the redirect URI).
    """
    client_id = _single_or_page(params, "client_id")
    client = clients.find(client_id)
    if client is None:
        raise UntrustedRedirect("No client is registered with this client_id.")
    redirect_uri = _single_or_page(params, "redirect_uri")
    # Compared as strings, exactly (OAuth 2.1 §2.3.1; RFC 9700 §4.1.3): no prefix, no
    # normalization, no case folding, nothing a crafted URI could slip through.
    if redirect_uri not in client["redirect_uris"]:
        raise UntrustedRedirect("The redirect_uri is not one registered for this client.")
    states = params.get("state", [])
    state = states[0] if len(states) == 1 else None

    def refuse(error: str, description: str) -> AuthorizationRefused:
        return AuthorizationRefused(error, description, redirect_uri=redirect_uri, state=state)

    repeated = sorted(name for name, values in params.items() if len(values) > 1)
    if repeated:
        raise refuse("invalid_request", f"{', '.join(repeated)} must not be repeated")
    value = {name: values[0] for name, values in params.items() if values}
    if "request" in value:
        raise refuse("request_not_supported", "request objects are not supported")
    if "request_uri" in value:
        raise refuse("request_uri_not_supported", "request_uri is not supported")
    response_type = value.get("response_type")
    if not response_type:
        raise refuse("invalid_request", "response_type is required")
    if response_type != "code":
        # Implicit and hybrid flows are gone from OAuth 2.1: tokens never travel in URLs.
        raise refuse("unsupported_response_type", "only response_type=code is supported")
    if value.get("response_mode", "query") != "query":
        raise refuse("invalid_request", "response_mode must be query")
    scopes = tuple(dict.fromkeys(value.get("scope", "").split()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise refuse("invalid_scope", f"unknown scope {' '.join(unknown)}")
    refused = [s for s in scopes if s not in client["scopes"]]
    if refused:
        raise refuse("invalid_scope", f"this client may not ask for {' '.join(refused)}")
    challenge = value.get("code_challenge")
    if not challenge:
        raise refuse("invalid_request", "code_challenge is required (PKCE with S256)")
    if value.get("code_challenge_method") != "S256":
        # RFC 7636 makes plain the default; OAuth 2.1 lets a server refuse it, and we do.
        raise refuse("invalid_request", "code_challenge_method must be S256")
    if not _CHALLENGE.fullmatch(challenge):
        raise refuse("invalid_request", "code_challenge must be 43 characters of base64url")
    prompt = frozenset(value.get("prompt", "").split())
    if prompt - PROMPTS:
        raise refuse("invalid_request", f"unknown prompt {' '.join(sorted(prompt - PROMPTS))}")
    if "none" in prompt and len(prompt) > 1:
        raise refuse("invalid_request", "prompt=none cannot be combined with other values")
    max_age = None
    if "max_age" in value:
        text = value["max_age"]
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            raise refuse("invalid_request", "max_age must be a non-negative integer")
        max_age = int(text)
    nonce = value.get("nonce")
    if nonce is not None and len(nonce) > MAX_NONCE:
        raise refuse("invalid_request", f"nonce must be at most {MAX_NONCE} characters")
    hint = value.get("login_hint")
    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        state=state,
        scopes=scopes,
        code_challenge=challenge,
        nonce=nonce,
        prompt=prompt,
        max_age=max_age,
        login_hint=hint if hint and len(hint) <= MAX_LOGIN_HINT else None,
    )


def _single_or_page(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name, [])
    if len(values) != 1 or not values[0]:
        problem = "is missing" if not values or not values[0] else "must not be repeated"
        raise UntrustedRedirect(f"The {name} {problem}.")
    return values[0]


# -- requests waiting for a person --------------------------------------------------------------
class PendingRequests:
    """Authorization requests kept while a person signs in or consents.

    The handle is the form's CSRF token; a request also belongs to the browser that started
    it (a cookie's hash), so a form posted from anywhere else, even with a handle an attacker
    got for their own request (login CSRF), is refused.
    """

    TTL = 600

    def __init__(
        self,
        store: store_module.Store,
        clients: Clients,
        *,
        clock: Clock = utcnow,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.store = store
        self.clients = clients
        self.clock = clock
        self.new_secret = new_secret

    def keep(self, request: AuthorizationRequest, *, browser: str) -> str:
        """Keep the request for this browser; its handle."""
        handle = self.new_secret()
        now = self.clock()
        self.store.add_authorization(
            {
                "_id": _hash(handle),
                **request.record(),
                "browser": _hash(browser),
                "created_at": now,
                "expires_at": now + dt.timedelta(seconds=self.TTL),
            }
        )
        return handle

    def find(self, handle: object, browser: str | None) -> tuple[AuthorizationRequest, dict]:
        """The request of this handle, started by this browser; UntrustedRedirect otherwise."""
        record = None
        if isinstance(handle, str) and handle and browser:
            record = self.store.find_authorization(_hash(handle), now=self.clock())
        if record is None or not hmac.compare_digest(record["browser"], _hash(browser or "")):
            raise UntrustedRedirect(
                "This sign-in page has expired or was opened elsewhere. Go back to the "
                "application and sign in again."
            )
        client = self.clients.find(record["client_id"])
        if client is None or record["redirect_uri"] not in client["redirect_uris"]:
            raise UntrustedRedirect("The client of this request is no longer registered.")
        return AuthorizationRequest.from_record(record, client), record

    def note_sign_in(self, handle: str, sid: str) -> None:
        """The person signed in for this request (the consent must come from that sign-in)."""
        self.store.update_authorization(_hash(handle), {"sign_in_sid": sid})

    def finish(self, handle: str) -> None:
        """End the request, once; UntrustedRedirect when it was finished already."""
        if not self.store.end_authorization(_hash(handle), now=self.clock()):
            raise UntrustedRedirect("This request was answered already.")


# -- consents -------------------------------------------------------------------------------------
class Consents:
    """Which scopes a person granted which client, remembered until withdrawn."""

    def __init__(
        self,
        store: store_module.Store,
        sessions: Sessions,
        clients: Clients,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.clients = clients
        self.clock = clock

    def missing(self, user_id: str, client: dict[str, Any], scopes: tuple[str, ...]) -> bool:
        """True when the person must be asked: a third-party client, a scope not yet granted."""
        if client.get("first_party"):
            return False
        consent = self.store.find_consent(user_id, client["id"])
        if consent is None:
            return True
        return bool(set(scopes) - set(consent["scopes"]))

    def grant(self, user_id: str, client_id: str, scopes: tuple[str, ...]) -> None:
        """Remember the scopes the person granted (added to the earlier ones)."""
        self.store.grant_consent(user_id, client_id, list(scopes), now=self.clock())

    def of(self, user_id: str) -> list[dict[str, Any]]:
        """The person's consents: client_id, the client's name, scopes, when first granted."""
        shown = []
        for consent in self.store.list_consents(user_id):
            client = self.clients.find(consent["client_id"])
            if client is None:
                continue
            shown.append(
                {
                    "client_id": client["id"],
                    "client_name": client["name"],
                    "scopes": [s for s in SCOPES if s in consent["scopes"]],
                    "granted_at": consent["granted_at"],
                }
            )
        return shown

    def withdraw(self, user_id: str, client_id: str) -> list[str] | None:
        """Withdraw the consent and end the client's sessions of the person: their ids, or None
        when there was no consent."""
        if not self.store.delete_consent(user_id, client_id):
            return None
        return self.sessions.end_client(client_id, user_id=user_id)


# -- authorization codes -----------------------------------------------------------------------
class Codes:
    """Single-use authorization codes, kept as hashes; a replay revokes what the code gave."""

    TTL = 60  # OAuth 2.1 §4.1.2: a maximum lifetime of 10 minutes is recommended; we give 60 s

    def __init__(
        self,
        store: store_module.Store,
        sessions: Sessions,
        *,
        clock: Clock = utcnow,
        new_secret: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.clock = clock
        self.new_secret = new_secret

    def issue(
        self,
        request: AuthorizationRequest,
        *,
        user_id: str,
        sign_in_sid: str,
        auth: Authentication,
    ) -> str:
        """A code for the request, bound to everything the token request must match."""
        code = self.new_secret()
        now = self.clock()
        expires_at = now + dt.timedelta(seconds=self.TTL)
        self.store.add_code(
            {
                "_id": _hash(code),
                "client_id": request.client["id"],
                "redirect_uri": request.redirect_uri,
                "code_challenge": request.code_challenge,
                "nonce": request.nonce,
                "scopes": list(request.scopes),
                "user_id": user_id,
                "sso_sid": sign_in_sid,
                **auth.fields(),
                "created_at": now,
                "expires_at": expires_at,
                "purge_at": expires_at,
            }
        )
        return code

    def redeem(
        self, code: str, *, client_id: str, redirect_uri: str | None, verifier: str | None
    ) -> dict[str, Any]:
        """The code's record, now used; InvalidGrant (revoking on a replay) otherwise."""
        code_hash = _hash(code)
        record = self.store.find_code(code_hash)
        if record is None or record["client_id"] != client_id:
            # Another client's code is not ours to burn: it is refused and left alone.
            raise InvalidGrant("The authorization code is invalid")
        if "used_at" not in record:
            if redirect_uri != record["redirect_uri"]:
                raise InvalidGrant("redirect_uri does not match the authorization request")
            if not _VERIFIER.fullmatch(verifier or "") or not hmac.compare_digest(
                s256(verifier), record["code_challenge"]
            ):
                raise InvalidGrant("code_verifier does not match the code_challenge")
        now = self.clock()
        # Kept past its use for as long as tokens it gave may live, to know a replay.
        purge_at = now + dt.timedelta(seconds=self.sessions.ttl)
        outcome, record = self.store.use_code(code_hash, now=now, purge_at=purge_at)
        if outcome == "replayed":
            self.revoke_issued(record)
            raise InvalidGrant(
                "The authorization code was already used; the tokens issued for it are revoked"
            )
        if outcome != "used":
            raise InvalidGrant("The authorization code expired")
        return record

    def bind(self, record: dict[str, Any], sid: str) -> None:
        """Note the session the code opened; if the code was replayed meanwhile, end it."""
        if not self.store.bind_code(record["_id"], sid):
            self.sessions.revoke(sid)
            raise InvalidGrant(
                "The authorization code was already used; the tokens issued for it are revoked"
            )

    def revoke_issued(self, record: dict[str, Any]) -> None:
        """End the session a code opened: its refresh token and, through the revocation
        cache, its access tokens."""
        if record.get("sid"):
            self.sessions.revoke(record["sid"])
