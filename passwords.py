"""Passwords: the policy a new password must meet, and argon2id hashing."""

from __future__ import annotations

import functools
import unicodedata
from pathlib import Path

import argon2

COMMON_PASSWORDS_FILE = Path(__file__).with_name("data") / "common-passwords.txt"
MAX_LENGTH = 256

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 is the floor.
OWASP_TIME_COST = 2
OWASP_MEMORY_COST = 19 * 1024
OWASP_PARALLELISM = 1


class PolicyError(ValueError):
    """A password the policy refuses; the message is safe to show."""


def normalize(password: str) -> str:
    """NFC form, so that the same characters typed on different systems match."""
    return unicodedata.normalize("NFC", password)


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased."""
    with COMMON_PASSWORDS_FILE.open(encoding="utf-8") as lines:
        return frozenset(
            line.strip().lower() for line in lines if line.strip() and not line.startswith("#")
        )


def check_policy(password: str, *, username: str, min_length: int) -> None:
    """Raise PolicyError unless the (normalized) password may be used (NIST SP 800-63B-4)."""
    if len(password) < min_length:
        raise PolicyError(f"must be at least {min_length} characters")
    if len(password) > MAX_LENGTH:
        raise PolicyError(f"must be at most {MAX_LENGTH} characters")
    if password.casefold() == username.casefold():
        raise PolicyError("must not be the username")
    if password.lower() in common_passwords():
        raise PolicyError("is too common: it appears in lists of leaked passwords")


class PasswordHasher:
    """argon2id hashes as PHC strings, with rehash when parameters rise."""

    def __init__(
        self,
        *,
        time_cost: int = OWASP_TIME_COST,
        memory_cost: int = OWASP_MEMORY_COST,
        parallelism: int = OWASP_PARALLELISM,
    ) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        # Verified against for unknown users, so that they cost what a wrong password costs.
        self._dummy_hash = self._hasher.hash("tokenauth dummy password for unknown users")

    def hash(self, password: str) -> str:
        """The PHC string of a new hash."""
        return self._hasher.hash(normalize(password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; a None hash costs the same and is False."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, normalize(password)) and (
                password_hash is not None
            )
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        return self._hasher.check_needs_rehash(password_hash)
