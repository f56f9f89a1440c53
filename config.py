"""Configuration: one dataclass, read once from the environment, validated up front."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from errors import ConfigError

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")
PREFIX = "TOKENAUTH_"


@dataclasses.dataclass(frozen=True)
class Config:
    """Every setting of the service; nothing else reads the environment."""

    mongodb_uri: str | None = None
    db_name: str = "tokenauth"
    data_dir: Path = Path("var")
    bind: str = "127.0.0.1:8000"
    issuer: str = "http://127.0.0.1:8000"
    audience: str = "tokenauth"
    signing_alg: str = "EdDSA"
    keys_dir: Path | None = None
    access_ttl: int = 900
    refresh_ttl: int = 1_209_600
    cors_origins: tuple[str, ...] = ()
    login_max_failures: int = 5
    login_window: int = 900
    password_min_length: int = 15
    registration_limit: int = 20
    # Proxies (addresses or networks) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[str, ...] = ()
    # Days each user's security events are kept (their "Recent activity").
    event_retention: int = 90
    # Seconds in which the refresh token just rotated may be presented again (0: never).
    refresh_reuse_interval: int = 10
    # Registration needs an email address.
    require_email: bool = False
    # Where mail goes: smtp:// or smtps://; unset, a Maildir under data_dir/mail.
    smtp_url: str | None = None
    mail_from: str = "tokenauth@localhost"
    service_name: str = "tokenauth"
    # Seconds a password-reset secret lives.
    reset_ttl: int = 1800
    # How recent an authentication the sensitive routes need (RFC 9470 max_age), seconds.
    step_up_max_age: int = 600
    # Admin writes need a token with a second factor once the admin has one.
    admin_requires_mfa: bool = True
    # The RFC 6749 password grant on /auth/token (RFC 9700 §2.4: third parties must not use it).
    password_grant: bool = True
    # One access-log line per request from gunicorn (on, a third more server CPU for a cheap
    # request, see BENCHMARKS.md; a reverse proxy usually logs requests already).
    access_log: bool = False
    # Passkeys (WebAuthn): the relying party id and the origins ceremonies may come from;
    # unset, the issuer's host and the issuer's origin.
    webauthn_rp_id: str | None = None
    webauthn_origins: tuple[str, ...] = ()
    # Not in the environment: how long a request waits for MongoDB before answering 503.
    db_timeout_ms: int = 2000
    # Not in the environment: how often each worker polls revocations and keys.
    refresh_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.signing_alg not in ALGORITHMS:
            raise ConfigError(
                "TOKENAUTH_SIGNING_ALG",
                f"unknown algorithm {self.signing_alg!r}, expected one of {', '.join(ALGORITHMS)}",
            )
        if self.keys_dir is None:
            object.__setattr__(self, "keys_dir", Path(self.data_dir) / "keys")
        _require_range("TOKENAUTH_ACCESS_TTL", self.access_ttl, 1, 86_400)
        _require_range("TOKENAUTH_REFRESH_TTL", self.refresh_ttl, 1, 31_536_000)
        _require_range("TOKENAUTH_LOGIN_MAX_FAILURES", self.login_max_failures, 1, 1000)
        _require_range("TOKENAUTH_LOGIN_WINDOW", self.login_window, 1, 86_400)
        _require_range("TOKENAUTH_PASSWORD_MIN_LENGTH", self.password_min_length, 8, 64)
        _require_range("TOKENAUTH_REGISTRATION_LIMIT", self.registration_limit, 1, 1_000_000)
        _require_range("TOKENAUTH_EVENT_RETENTION", self.event_retention, 1, 3650)
        _require_range("TOKENAUTH_REFRESH_REUSE_INTERVAL", self.refresh_reuse_interval, 0, 300)
        _require_range("TOKENAUTH_RESET_TTL", self.reset_ttl, 60, 604_800)
        _require_range("TOKENAUTH_STEP_UP_MAX_AGE", self.step_up_max_age, 1, 86_400)
        if self.smtp_url is not None and not self.smtp_url.startswith(("smtp://", "smtps://")):
            raise ConfigError("TOKENAUTH_SMTP_URL", "must start with smtp:// or smtps://")
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(
                    "TOKENAUTH_TRUSTED_PROXIES", f"not an IP address or network: {proxy!r}"
                ) from None
        if not self.db_name or any(c in self.db_name for c in '/\\. "$'):
            raise ConfigError("TOKENAUTH_DB_NAME", f"not a valid database name: {self.db_name!r}")
        for origin in self.cors_origins:
            if not origin.startswith(("http://", "https://")):
                raise ConfigError(
                    "TOKENAUTH_CORS_ORIGINS", f"not an origin (scheme://host[:port]): {origin!r}"
                )
        self._check_webauthn()

    def _check_webauthn(self) -> None:
        """Derive the passkey settings from the issuer where unset; refuse ones no browser
        would accept together (an origin outside the RP ID's domain can never sign)."""
        issuer = urllib.parse.urlsplit(self.issuer)
        if self.webauthn_rp_id is None:
            object.__setattr__(self, "webauthn_rp_id", (issuer.hostname or "").lower())
        if not self.webauthn_origins:
            origin = f"{issuer.scheme}://{issuer.netloc}".lower()
            object.__setattr__(self, "webauthn_origins", (origin,))
        rp_id = self.webauthn_rp_id
        if not rp_id or any(c in rp_id for c in "/:@ ") or rp_id != rp_id.lower():
            raise ConfigError("TOKENAUTH_WEBAUTHN_RP_ID", f"not a lower-case host name: {rp_id!r}")
        for origin in self.webauthn_origins:
            parts = urllib.parse.urlsplit(origin)
            host = parts.hostname or ""
            if (
                parts.scheme not in ("http", "https")
                or origin != f"{parts.scheme}://{parts.netloc}"
                or not (host == rp_id or host.endswith("." + rp_id))
            ):
                raise ConfigError(
                    "TOKENAUTH_WEBAUTHN_ORIGINS",
                    f"not an origin (scheme://host[:port]) on {rp_id} or under it: {origin!r}",
                )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build the configuration from TOKENAUTH_* variables."""
        env = os.environ if environ is None else environ

        def text(name: str) -> str | None:
            value = env.get(PREFIX + name, "").strip()
            return value or None

        def integer(name: str) -> int | None:
            value = text(name)
            if value is None:
                return None
            try:
                return int(value)
            except ValueError:
                raise ConfigError(PREFIX + name, f"not an integer: {value!r}") from None

        def boolean(name: str) -> bool | None:
            value = text(name)
            if value is None:
                return None
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(PREFIX + name, f"not true or false: {value!r}")

        values: dict[str, object] = {
            "mongodb_uri": text("MONGODB_URI"),
            "db_name": text("DB_NAME"),
            "data_dir": _path(text("DATA_DIR")),
            "bind": text("BIND"),
            "issuer": text("ISSUER"),
            "audience": text("AUDIENCE"),
            "signing_alg": text("SIGNING_ALG"),
            "keys_dir": _path(text("KEYS_DIR")),
            "access_ttl": integer("ACCESS_TTL"),
            "refresh_ttl": integer("REFRESH_TTL"),
            "login_max_failures": integer("LOGIN_MAX_FAILURES"),
            "login_window": integer("LOGIN_WINDOW"),
            "password_min_length": integer("PASSWORD_MIN_LENGTH"),
            "registration_limit": integer("REGISTRATION_LIMIT"),
            "event_retention": integer("EVENT_RETENTION"),
            "refresh_reuse_interval": integer("REFRESH_REUSE_INTERVAL"),
            "require_email": boolean("REQUIRE_EMAIL"),
            "smtp_url": text("SMTP_URL"),
            "mail_from": text("MAIL_FROM"),
            "service_name": text("SERVICE_NAME"),
            "reset_ttl": integer("RESET_TTL"),
            "step_up_max_age": integer("STEP_UP_MAX_AGE"),
            "admin_requires_mfa": boolean("ADMIN_REQUIRES_MFA"),
            "password_grant": boolean("PASSWORD_GRANT"),
            "access_log": boolean("ACCESS_LOG"),
            "webauthn_rp_id": text("WEBAUTHN_RP_ID"),
        }
        proxies = text("TRUSTED_PROXIES")
        if proxies:
            values["trusted_proxies"] = tuple(p.strip() for p in proxies.split(",") if p.strip())
        origins = text("CORS_ORIGINS")
        if origins:
            values["cors_origins"] = tuple(
                o.strip().rstrip("/") for o in origins.split(",") if o.strip()
            )
        webauthn_origins = text("WEBAUTHN_ORIGINS")
        if webauthn_origins:
            values["webauthn_origins"] = tuple(
                o.strip().rstrip("/") for o in webauthn_origins.split(",") if o.strip()
            )
        return cls(**{k: v for k, v in values.items() if v is not None})


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _require_range(variable: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(variable, f"must be between {low} and {high}, got {value}")
