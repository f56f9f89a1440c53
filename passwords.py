"""Passwords: the policy a new password must meet, and argon2id hashing."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path

import argon2

COMMON_PASSWORDS_FILE = Path(__file__).with_name("data") / "common-passwords.txt"
MAX_LENGTH = 256

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1 is the floor.
OWASP_TIME_COST = 2
OWASP_MEMORY_COST = 19 * 1024
OWASP_PARALLELISM = 1

# argon2 takes its 19 MiB from the malloc arena of the thread that hashes, and glibc keeps the
# freed block in that arena: hashing on any of gunicorn's 8 threads, a worker came to hold
# 205 MiB (make bench). On a pool of its own it holds one block, 72 MiB in all, and logins
# per second did not drop while workers x HASH_THREADS covers the cores (BENCHMARKS.md).
HASH_THREADS = 1
_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _on_hashing_thread(function: Callable[..., object], *args: object):
    """Run an argon2 call on the process's hashing pool and wait for its result."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(HASH_THREADS, "argon2")
    return _pool.submit(function, *args).result()


def _forget_pool() -> None:
    # A forked child has none of its parent's threads: it starts a pool of its own.
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


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
        self._dummy_hash = self.hash("tokenauth dummy password for unknown users")

    def hash(self, password: str) -> str:
        """The PHC string of a new hash."""
        return _on_hashing_thread(self._hasher.hash, normalize(password))

    def verify(self, password_hash: str | None, password: str) -> bool:
        """True when the password matches; a None hash costs the same and is False."""
        try:
            matches = _on_hashing_thread(
                self._hasher.verify, password_hash or self._dummy_hash, normalize(password)
            )
            return matches and password_hash is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the configured ones."""
        return self._hasher.check_needs_rehash(password_hash)
