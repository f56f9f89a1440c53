"""The key ring: signing keys by `kid`, the current signer, rotation and the JWKS."""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clock import Clock, utcnow
from errors import ConfigError

log = logging.getLogger("tokenauth")

KID_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
MIN_HMAC_SECRET = 32
# Tokens may be presented this long after `exp` (clock skew), so keys live that much longer.
CLOCK_SKEW = 30

_KEY_TYPES: dict[str, tuple[type, ...]] = {
    "EdDSA": (ed25519.Ed25519PrivateKey,),
    "ES256": (ec.EllipticCurvePrivateKey,),
    "RS256": (rsa.RSAPrivateKey,),
}


@dataclasses.dataclass(frozen=True)
class SigningKey:
    """One key of the ring: what signs, what verifies, and since when it exists."""

    kid: str
    created_at: dt.datetime
    signing_key: Any
    verifying_key: Any
    public_jwk: dict[str, Any] | None


class KeyRing:
    """Keys loaded from a directory, one file per `kid`; the newest one signs."""

    def __init__(
        self,
        keys_dir: Path,
        algorithm: str,
        *,
        access_ttl: int,
        clock: Clock = utcnow,
    ) -> None:
        self.keys_dir = Path(keys_dir)
        self.algorithm = algorithm
        self.access_ttl = access_ttl
        self.clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._listing: frozenset[str] | None = None
        self._unreadable: set[str] = set()  # files already logged as unreadable
        # Bumped whenever the set of keys changes, so caches of verified tokens can drop.
        self.generation = 0

    # -- loading -----------------------------------------------------------------------
    @property
    def _suffix(self) -> str:
        return ".secret" if self.algorithm == "HS256" else ".pem"

    def load(self, *, create: bool = True) -> KeyRing:
        """Read every key of our algorithm; make the first one when there is none."""
        try:
            self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._reload(self._list())
            # Keys of another algorithm (a .pem of EdDSA under ES256) do not count as ours.
            if create and not self._keys:
                with self._locked():
                    self._reload(self._list())
                    if not self._keys:
                        self._write_new_key()
                        self._reload(self._list())
        except OSError as exc:
            raise ConfigError(
                "TOKENAUTH_KEYS_DIR", f"cannot use {self.keys_dir}: {exc.strerror}"
            ) from None
        if not self._keys:
            raise ConfigError("TOKENAUTH_KEYS_DIR", f"no {self.algorithm} key in {self.keys_dir}")
        return self

    def refresh(self) -> bool:
        """Pick up keys added or removed by another process; True when anything changed.

        A file that cannot be read (a dangling link, a key deleted between listing and
        reading, a corrupt key) is skipped and logged once; the other keys, and deletions,
        are still followed.
        """
        listing = self._list()
        if listing == self._listing:
            return False
        keys = {}
        for name in listing:
            try:
                key = self._read(self.keys_dir / name)
            except (OSError, ConfigError) as exc:
                if name not in self._unreadable:
                    self._unreadable.add(name)
                    reason = exc.strerror if isinstance(exc, OSError) else exc.message
                    log.warning("key file %s skipped: %s", name, reason)
                continue
            self._unreadable.discard(name)
            if key is not None:
                keys[key.kid] = key
        if not keys:
            # Never stop signing: keep the keys we have until a readable one is there.
            return False
        changed = set(keys) != set(self._keys)
        self._install(keys, listing)
        return changed

    def _list(self) -> frozenset[str]:
        return frozenset(
            entry.name for entry in os.scandir(self.keys_dir) if entry.name.endswith(self._suffix)
        )

    def _reload(self, listing: frozenset[str]) -> None:
        keys = {}
        for name in listing:
            key = self._read(self.keys_dir / name)
            if key is not None:
                keys[key.kid] = key
        self._install(keys, listing)

    def _install(self, keys: dict[str, SigningKey], listing: frozenset[str]) -> None:
        self._keys = dict(sorted(keys.items(), key=lambda item: (item[1].created_at, item[0])))
        self._listing = listing
        self.generation += 1

    def _read(self, path: Path) -> SigningKey | None:
        kid = path.name.removesuffix(self._suffix)
        try:
            created_at = dt.datetime.strptime(kid.split("-", 1)[0], KID_TIME_FORMAT).replace(
                tzinfo=dt.UTC
            )
        except ValueError:
            created_at = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        data = path.read_bytes()
        if self.algorithm == "HS256":
            secret = data.strip()
            if len(secret) < MIN_HMAC_SECRET:
                raise ConfigError(
                    "TOKENAUTH_KEYS_DIR",
                    f"HS256 secret {path.name} is {len(secret)} bytes, "
                    f"at least {MIN_HMAC_SECRET} needed",
                )
            return SigningKey(kid, created_at, secret, secret, None)
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                "TOKENAUTH_KEYS_DIR", f"{path.name} is not a readable private key"
            ) from None
        if not isinstance(private, _KEY_TYPES[self.algorithm]):
            return None  # a key of another algorithm: left for a configuration that uses it
        if self.algorithm == "ES256" and private.curve.name != "secp256r1":
            return None
        public = private.public_key()
        jwk = json.loads(jwt.get_algorithm_by_name(self.algorithm).to_jwk(public))
        jwk.update({"kid": kid, "alg": self.algorithm, "use": "sig"})
        return SigningKey(kid, created_at, private, public, jwk)

    # -- writing -----------------------------------------------------------------------
    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return _locked(self.keys_dir)

    def _write_new_key(self) -> str:
        # The newest kid signs and kids carry whole seconds: a key made in the same second
        # as the current one (or after the clock stepped back) is dated just after it.
        created_at = self.clock().replace(microsecond=0)
        if self._keys:
            created_at = max(created_at, self.current.created_at + dt.timedelta(seconds=1))
        kid = f"{created_at.strftime(KID_TIME_FORMAT)}-{secrets.token_hex(4)}"
        if self.algorithm == "HS256":
            data = secrets.token_urlsafe(48).encode()
        else:
            private = {
                "EdDSA": ed25519.Ed25519PrivateKey.generate,
                "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
                "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
            }[self.algorithm]()
            data = private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        _write_private(self.keys_dir / f"{kid}{self._suffix}", data)
        return kid

    def rotate(self) -> str:
        """Make a new key the signer, forget keys that no token can need any more; its kid."""
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._locked():
            self._reload(self._list())
            kid = self._write_new_key()
            self._reload(self._list())
            for old in set(self._keys) - set(self._live()):
                (self.keys_dir / f"{old}{self._suffix}").unlink(missing_ok=True)
            self._reload(self._list())
        return kid

    # -- use ---------------------------------------------------------------------------
    def _live(self) -> dict[str, SigningKey]:
        """Keys that may still have signed an unexpired token."""
        now = self.clock()
        keys = list(self._keys.values())
        grace = dt.timedelta(seconds=self.access_ttl + CLOCK_SKEW)
        live = {}
        for key, successor in zip(keys, [*keys[1:], None], strict=True):
            if successor is None or successor.created_at + grace > now:
                live[key.kid] = key
        return live

    @property
    def current(self) -> SigningKey:
        """The key that signs new tokens."""
        return next(reversed(self._keys.values()))

    def verifying_key(self, kid: str) -> Any | None:
        """The key that verifies tokens of this kid, or None when unknown or retired."""
        key = self._keys.get(kid)
        if key is None or kid not in self._live():
            return None
        return key.verifying_key

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """RFC 7517 set of the public keys still verifying (empty for HS256)."""
        return {"keys": [k.public_jwk for k in self._live().values() if k.public_jwk is not None]}


@contextlib.contextmanager
def _locked(keys_dir: Path) -> Iterator[None]:
    # Workers and the CLI may start at once: one of them writes a key, the others read it.
    with open(keys_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(temporary, path)  # readers never see half a key


# -- secrets at rest ----------------------------------------------------------------------
DATA_KEY_SUFFIX = ".aesgcm"


class SecretBox:
    """AES-256-GCM for secrets the service must read back (TOTP seeds), keyed by files
    `<kid>.aesgcm` (32 random bytes, base64) in the keys directory; the newest one seals.

    A database dump alone then holds no usable seed. Every instance needs the same files,
    like the signing keys; losing them loses every TOTP factor (recovery codes still work).
    """

    def __init__(self, keys_dir: Path, *, clock: Clock = utcnow) -> None:
        self.keys_dir = Path(keys_dir)
        self.clock = clock
        self._keys: dict[str, AESGCM] = {}

    def load(self, *, create: bool = True) -> SecretBox:
        """Read every data key; make the first one when there is none."""
        try:
            self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._keys = self._read_all()
            if create and not self._keys:
                with _locked(self.keys_dir):
                    self._keys = self._read_all()
                    if not self._keys:
                        self._write_new_key()
                        self._keys = self._read_all()
        except OSError as exc:
            raise ConfigError(
                "TOKENAUTH_KEYS_DIR", f"cannot keep the data key in {self.keys_dir}: {exc.strerror}"
            ) from None
        if not self._keys:
            raise ConfigError("TOKENAUTH_KEYS_DIR", f"no data key (*.aesgcm) in {self.keys_dir}")
        return self

    def _write_new_key(self) -> None:
        kid = f"data-{self.clock().strftime(KID_TIME_FORMAT)}-{secrets.token_hex(4)}"
        key = base64.b64encode(AESGCM.generate_key(bit_length=256)) + b"\n"
        _write_private(self.keys_dir / f"{kid}{DATA_KEY_SUFFIX}", key)

    def _read_all(self) -> dict[str, AESGCM]:
        keys = {}
        for path in sorted(self.keys_dir.glob(f"*{DATA_KEY_SUFFIX}")):
            try:
                raw = base64.b64decode(path.read_bytes().strip(), validate=True)
            except (ValueError, binascii.Error):
                raw = b""
            if len(raw) != 32:
                raise ConfigError(
                    "TOKENAUTH_KEYS_DIR", f"{path.name} is not 32 bytes of base64 (a data key)"
                )
            keys[path.name.removesuffix(DATA_KEY_SUFFIX)] = AESGCM(raw)
        return keys

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        """The ciphertext of `plaintext`, bound to `context` (it opens only with the same)."""
        kid = max(self._keys)  # names start with their creation time: the newest seals
        nonce = secrets.token_bytes(12)
        sealed = self._keys[kid].encrypt(nonce, plaintext, context)
        return f"{kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, *, context: bytes) -> bytes | None:
        """The plaintext, or None when the key is gone or the ciphertext or context differ."""
        kid, _, data = sealed.rpartition(".")
        key = self._keys.get(kid)
        if key is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(data)
            return key.decrypt(raw[:12], raw[12:], context)
        except (ValueError, binascii.Error, InvalidTag):
            return None


# -- the ID-token key: OIDC Core §15.1 requires RS256 whatever the service signs with ----
ID_TOKEN_ALGORITHM = "RS256"


def id_token_ring(ring: KeyRing) -> KeyRing:
    """The ring that signs ID tokens: `ring` itself under RS256, else an RS256 ring over the
    same directory (its keys are .pem files the other algorithm's ring leaves alone)."""
    if ring.algorithm == ID_TOKEN_ALGORITHM:
        return ring
    companion = KeyRing(
        ring.keys_dir, ID_TOKEN_ALGORITHM, access_ttl=ring.access_ttl, clock=ring.clock
    )
    # Both read the same files: an unreadable one is logged once, not once per ring.
    companion._unreadable = ring._unreadable
    return companion


def rings_of(ring: KeyRing) -> list[KeyRing]:
    """The service's ring and its ID-token ring, each once, loaded (made when missing)."""
    rings = [ring, id_token_ring(ring)]
    return [r.load() for r in rings[: 1 if rings[1] is ring else 2]]


def jwks_of(rings: list[KeyRing]) -> dict[str, list[dict[str, Any]]]:
    """RFC 7517 set of every ring's public keys still verifying."""
    return {"keys": [jwk for ring in rings for jwk in ring.jwks()["keys"]]}
