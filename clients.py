"""OAuth clients of the authorization server: registration, redirect URIs, authentication."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import store as store_module
from clock import Clock, utcnow
from errors import InvalidClient, InvalidInput, Unavailable

# What a client may ask for (OIDC Core §5.4; offline_access §11). Nothing else exists here.
SCOPES = ("openid", "profile", "email", "offline_access")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def secret_hash(secret: str) -> str:
    """A fast hash: client secrets are 256 random bits, nothing to brute-force."""
    return hashlib.sha256(secret.encode()).hexdigest()


def redirect_uri_problem(uri: str) -> str | None:
    """Why a URI cannot be registered for redirects; None when it can (OAuth 2.1 §2.3.1)."""
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port  # a bad port raises here
    except ValueError:
        return "is not a valid absolute URI"
    del port
    if not parts.scheme or not parts.hostname:
        return "is not an absolute URI with a host"
    if "#" in uri:
        return "must not have a fragment"
    if parts.username is not None or parts.password is not None:
        return "must not carry user information"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _loopback(parts.hostname):
        return None
    return "must use https (or http on a loopback address)"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of(uri: str) -> str:
    """scheme://host[:port] of a registered URI, as browsers write an Origin."""
    parts = urllib.parse.urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Clients:
    """The registry: clients with exact redirect URIs, secrets kept as hashes only."""

    def __init__(
        self,
        store: store_module.Store,
        *,
        clock: Clock = utcnow,
        new_id=lambda: secrets.token_urlsafe(16),
        new_secret=lambda: secrets.token_urlsafe(32),
    ) -> None:
        self.store = store
        self.clock = clock
        self.new_id = new_id
        self.new_secret = new_secret
        # Bumped by each registration or deletion here, so this process's caches follow.
        self.generation = 0

    def create(
        self,
        name: str,
        redirect_uris: list[str],
        *,
        public: bool = False,
        first_party: bool = False,
        scopes: list[str] | None = None,
        post_logout_redirect_uris: list[str] | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """Register a client: (the client, its secret: None for a public one, shown once).

        InvalidInput names every bad field; store.Conflict when the name is taken.
        """
        scopes = list(dict.fromkeys(scopes or SCOPES))
        post_logout = list(dict.fromkeys(post_logout_redirect_uris or []))
        redirect_uris = list(dict.fromkeys(redirect_uris))
        problems: list[tuple[str, str]] = []
        if not _NAME.fullmatch(name or ""):
            problems.append(("name", "must be 1 to 64 letters, digits, '.', '_' or '-'"))
        if not redirect_uris:
            problems.append(("redirect_uris", "must name at least one URI"))
        for field, uris in (
            ("redirect_uris", redirect_uris),
            ("post_logout_redirect_uris", post_logout),
        ):
            for uri in uris:
                why = redirect_uri_problem(uri)
                if why:
                    problems.append((field, f"{uri!r} {why}"))
        unknown = [s for s in scopes if s not in SCOPES]
        if unknown:
            problems.append(("scopes", f"unknown {', '.join(unknown)}; known: {' '.join(SCOPES)}"))
        if problems:
            raise InvalidInput(problems)
        secret = None if public else self.new_secret()
        doc = {
            "_id": self.new_id(),
            "name": name,
            "redirect_uris": redirect_uris,
            "post_logout_redirect_uris": post_logout,
            "public": public,
            "first_party": first_party,
            "scopes": scopes,
            "created_at": self.clock(),
        }
        if secret is not None:
            doc["secret_hash"] = secret_hash(secret)
        client = self.store.create_client(doc)
        self.generation += 1
        return client, secret

    def find(self, client_id: str) -> dict[str, Any] | None:
        """The client with this client_id, or None."""
        return self.store.find_client(client_id) if isinstance(client_id, str) else None

    def find_by_name(self, name: str) -> dict[str, Any] | None:
        """The client with this name, or None."""
        return self.store.find_client_by_name(name)

    def all(self) -> list[dict[str, Any]]:
        """Every client, by name."""
        return self.store.list_clients()

    def delete(self, client_id: str) -> bool:
        """Remove a client and the consents given to it (its sessions are ended apart)."""
        self.generation += 1
        return self.store.delete_client(client_id)

    @staticmethod
    def secret_matches(client: dict[str, Any], secret: str) -> bool:
        """True when `secret` is the confidential client's, compared in constant time."""
        stored = client.get("secret_hash")
        if not stored or not isinstance(secret, str):
            return False
        return hmac.compare_digest(stored, secret_hash(secret))

    def authenticated(
        self, authorization: str | None, params: dict[str, Any], *, required: bool
    ) -> dict[str, Any] | None:
        """The client that authenticated at the token endpoint (RFC 6749 §2.3:
        client_secret_basic, client_secret_post, or a public client's client_id);
        InvalidClient when that fails.

        Without `required`, a request naming no registered client is no client's (None): the
        first-party password and refresh grants of scripts that send any client_id they like.
        """
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() == "basic":
            return self._basic(credentials, params, required=required)
        client_id, secret = params.get("client_id"), params.get("client_secret")
        client = self.find(client_id) if client_id else None
        if client is None:
            if required or secret is not None:
                raise InvalidClient("Client authentication failed: unknown client")
            return None
        if client.get("public"):
            if secret is not None:
                raise InvalidClient("A public client has no secret")
            return client
        if secret is None or not self.secret_matches(client, secret):
            raise InvalidClient("Client authentication failed")
        return client

    def _basic(
        self, credentials: str, params: dict[str, Any], *, required: bool
    ) -> dict[str, Any] | None:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient("The Basic credentials are malformed", basic=True) from None
        raw_id, colon, raw_secret = decoded.partition(":")
        if not colon:
            raise InvalidClient("The Basic credentials are malformed", basic=True)
        # §2.3.1: both are form-urlencoded before they are joined.
        client_id = urllib.parse.unquote_plus(raw_id)
        secret = urllib.parse.unquote_plus(raw_secret)
        if params.get("client_secret") is not None or params.get("client_id") not in (
            None,
            client_id,
        ):
            raise InvalidClient("Use one client authentication method", basic=True)
        client = self.find(client_id)
        if client is None and not required:
            return None  # e.g. requests-oauthlib sends its client_id as Basic with no secret
        if client is None or not self.secret_matches(client, secret):
            raise InvalidClient("Client authentication failed", basic=True)
        return client

    def origins(self) -> frozenset[str]:
        """Origins of every registered redirect URI (browsers calling the token endpoint)."""
        return frozenset(origin_of(uri) for c in self.all() for uri in c["redirect_uris"])


class ClientOrigins:
    """The origins of registered redirect URIs as this worker last read them: the browsers
    (single-page apps) that may call the token endpoint and the API across origins."""

    # An origin not seen yet is looked up again at most this often (seconds).
    RELOAD_INTERVAL = 1.0

    def __init__(self, clients: Clients, *, monotonic: Callable[[], float] = time.monotonic):
        self.clients = clients
        self.monotonic = monotonic
        self._origins: frozenset[str] = frozenset()
        self._loaded_at: float | None = None
        self._generation = -1

    def reload(self) -> None:
        """Read the origins again (the background refresher does, every second)."""
        started, generation = self.monotonic(), self.clients.generation
        self._origins = self.clients.origins()
        self._loaded_at, self._generation = started, generation

    def allows(self, origin: str) -> bool:
        """True when a registered client redirects to this origin."""
        origin = origin.lower()
        if origin in self._origins:
            return True
        loaded_at = self._loaded_at
        recent = loaded_at is not None and self.monotonic() - loaded_at < self.RELOAD_INTERVAL
        if recent and self._generation == self.clients.generation:
            return False
        try:
            self.reload()  # a client registered a moment ago, in another process
        except Unavailable:
            return False
        return origin in self._origins


def public_client(client: dict[str, Any]) -> dict[str, Any]:
    """A client as the admin routes and the CLI show it: never the secret's hash."""
    return {
        "client_id": client["id"],
        "name": client["name"],
        "redirect_uris": client["redirect_uris"],
        "post_logout_redirect_uris": client.get("post_logout_redirect_uris", []),
        "public": bool(client.get("public")),
        "first_party": bool(client.get("first_party")),
        "scopes": client["scopes"],
    }
