"""Stored passwords: argon2id at or above OWASP, upgraded at login, NFC before hashing."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import argon2
import pytest
from helpers import PASSWORD, login, register

# OWASP Password Storage Cheat Sheet: argon2id with m=19 MiB, t=2, p=1 at the least.
OWASP_MEMORY_KIB = 19 * 1024
OWASP_TIME_COST = 2
OWASP_PARALLELISM = 1
PHC = re.compile(
    r"^\$(?P<variant>argon2id)\$v=(?P<version>\d+)\$m=(?P<m>\d+),t=(?P<t>\d+),p=(?P<p>\d+)"
    r"\$(?P<salt>[A-Za-z0-9+/]+)\$(?P<hash>[A-Za-z0-9+/]+)$"
)


def parameters(phc: str) -> dict[str, int]:
    """The version and cost parameters of an argon2id PHC string."""
    match = PHC.match(phc)
    assert match, f"not an argon2id PHC string: {phc[:40]}"
    return {key: int(match[key]) for key in ("version", "m", "t", "p")}


def assert_owasp_strength(phc: str) -> None:
    """At or above the OWASP floor, with a salt and a hash of at least 128 bits."""
    found = parameters(phc)
    assert found["version"] == 19
    assert found["m"] >= OWASP_MEMORY_KIB
    assert found["t"] >= OWASP_TIME_COST
    assert found["p"] >= OWASP_PARALLELISM
    match = PHC.match(phc)
    assert len(match["salt"]) >= 22 and len(match["hash"]) >= 22  # base64 of 16 bytes


def stored_hash(db, username: str) -> str:
    """The password hash the database holds for a user."""
    return db.users.find_one({"username": username})["password_hash"]


def test_registration_stores_argon2id_at_owasp_strength(app, db):
    register(app, "alice")
    phc = stored_hash(db, "alice")
    assert_owasp_strength(phc)
    assert argon2.PasswordHasher().verify(phc, PASSWORD)


def test_two_users_with_one_password_get_different_salts(app, db):
    register(app, "alice")
    register(app, "bob.same")
    assert stored_hash(db, "alice") != stored_hash(db, "bob.same")


@pytest.fixture
def legacy_user(app, db) -> str:
    """A user whose hash was made with parameters below today's: argon2id m=8 MiB, t=1."""
    weak = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    assert parameters(weak)["m"] == 8192 and parameters(weak)["t"] == 1
    db.users.insert_one(
        {
            "username": "legacy",
            "username_key": "legacy",
            "password_hash": weak,
            "roles": ["user"],
            "created_at": dt.datetime.now(dt.UTC),
        }
    )
    return weak


def test_a_weaker_hash_is_upgraded_at_the_next_successful_login(app, db, legacy_user):
    assert login(app, "legacy").status_int == 200
    upgraded = stored_hash(db, "legacy")
    assert upgraded != legacy_user
    assert_owasp_strength(upgraded)
    assert argon2.PasswordHasher().verify(upgraded, PASSWORD)
    # Upgraded once: the next login keeps the new hash.
    assert login(app, "legacy").status_int == 200
    assert stored_hash(db, "legacy") == upgraded


def test_a_failed_login_leaves_a_weaker_hash_alone(app, db, legacy_user):
    answer = login(app, "legacy", "not-the-password-of-legacy", status=400)
    assert answer.json["error"] == "invalid_grant"
    assert stored_hash(db, "legacy") == legacy_user


def test_a_hash_at_todays_parameters_is_not_rewritten(app, db):
    register(app, "alice")
    before = stored_hash(db, "alice")
    assert login(app, "alice").status_int == 200
    assert stored_hash(db, "alice") == before


# "Crème brûlée" in two spellings: precomposed (NFC) and with combining marks (NFD).
NFC_PASSWORD = "Cr\u00e8me br\u00fbl\u00e9e at midnight, 1987"
NFD_PASSWORD = unicodedata.normalize("NFD", NFC_PASSWORD)


def test_the_two_spellings_differ_as_strings():
    assert NFC_PASSWORD != NFD_PASSWORD
    assert unicodedata.normalize("NFC", NFD_PASSWORD) == NFC_PASSWORD


def test_a_password_registered_in_nfd_logs_in_with_nfc(app, db):
    register(app, "alice", NFD_PASSWORD)
    assert login(app, "alice", NFC_PASSWORD).status_int == 200
    assert login(app, "alice", NFD_PASSWORD).status_int == 200
    # What was hashed is the NFC form.
    hasher = argon2.PasswordHasher()
    assert hasher.verify(stored_hash(db, "alice"), NFC_PASSWORD)
    with pytest.raises(argon2.exceptions.VerifyMismatchError):
        hasher.verify(stored_hash(db, "alice"), NFD_PASSWORD)


def test_a_password_registered_in_nfc_logs_in_with_nfd(app):
    register(app, "alice", NFC_PASSWORD)
    assert login(app, "alice", NFD_PASSWORD).status_int == 200


def test_a_different_accent_is_a_different_password(app):
    register(app, "alice", NFC_PASSWORD)
    other = NFC_PASSWORD.replace("\u00e8", "\u00e9")
    assert login(app, "alice", other, status=400).json["error"] == "invalid_grant"
