"""The only module that speaks to MongoDB: domain verbs, indexes and error translation."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pymongo
import pymongo.uri_parser
from bson import Binary, ObjectId
from bson.errors import InvalidId
from pymongo import errors as mongo_errors
from pymongo.collection import ReturnDocument

from errors import Conflict, InvalidInput, Unavailable

T = TypeVar("T")

# Failures that mean "the database is not reachable right now", not "the request is wrong".
_UNAVAILABLE = (
    # ConnectionFailure covers AutoReconnect, NetworkTimeout and ServerSelectionTimeoutError.
    mongo_errors.ConnectionFailure,
    mongo_errors.ExecutionTimeout,
    # The write concern was not met (a timeout, too few members): the write may or may not
    # stand, so it is not acknowledged; the client retries.
    mongo_errors.WriteConcernError,
    mongo_errors.NotPrimaryError,
)


def _translated(method: Callable[..., T]) -> Callable[..., T]:
    """Turn driver exceptions into the store's own."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except mongo_errors.DuplicateKeyError as exc:
            key = (exc.details or {}).get("keyPattern") or {}
            raise Conflict(field=next(iter(key), "id")) from None
        except _UNAVAILABLE as exc:
            raise Unavailable(type(exc).__name__) from None
        except mongo_errors.OperationFailure as exc:
            # Elections and shutdowns surface as error codes, not as connection failures.
            if exc.code in (91, 189, 10107, 11600, 11602, 13435, 13436):
                raise Unavailable(f"code {exc.code}") from None
            raise

    return wrapper


def _taken_field(exc: mongo_errors.DuplicateKeyError) -> str:
    """The public field a duplicate key error is about."""
    key = (exc.details or {}).get("keyPattern") or {}
    text = str(exc.details or exc)
    if "email_key" in key or "email_key" in text:
        return "email"
    return "username"


def object_id(value: str) -> ObjectId | None:
    """Parse a public id; None when it cannot be one of ours."""
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


# Every acknowledged write is in the journal (and, on a replica set, on a majority) before
# the service answers 2xx: a crash or a failover then loses nothing a client was told about.
DURABLE_WRITES: dict[str, Any] = {"w": "majority", "journal": True}
# Write concern options a connection string may name; naming w or journal replaces ours.
_WRITE_CONCERN_OPTIONS = ("w", "journal")


def connect(uri: str, *, timeout_ms: int = 2000, **options: Any) -> pymongo.MongoClient:
    """A MongoClient that fails fast when the server is away and journals every write."""
    return pymongo.MongoClient(
        uri,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=max(timeout_ms * 5, 10_000),
        tz_aware=True,
        appname="tokenauth",
        **{**_default_write_concern(uri), **options},
    )


def _default_write_concern(uri: str) -> dict[str, Any]:
    # MongoClient's keyword arguments override the URI's options, so pass ours only when
    # the URI names neither w nor journal: an operator's explicit write concern wins whole.
    named = pymongo.uri_parser.parse_uri(uri)["options"]
    return {} if any(name in named for name in _WRITE_CONCERN_OPTIONS) else DURABLE_WRITES


def _public(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    doc = dict(doc)
    doc["id"] = str(doc.pop("_id"))
    return doc


# Keyset paging: each order is one field and the id after it, both in one index.
PERSON_ORDERS = {
    "newest": [("created_at", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)],
    "name": [("name_key", pymongo.ASCENDING), ("_id", pymongo.ASCENDING)],
}
EVENTS_ORDER = [("user_id", 1), ("time", pymongo.DESCENDING), ("_id", pymongo.DESCENDING)]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MILLISECOND = dt.timedelta(milliseconds=1)


def _sort_key(name: str) -> str:
    """What "by name" sorts on: case and compatibility forms set aside."""
    return unicodedata.normalize("NFKC", name).casefold()


def _keyset_page(
    collection, query, index, kind: str, *, limit: int, after: str | None
) -> tuple[list[dict], str | None]:
    """A page of `query` in the order of `index` (its last two keys: a field, then _id), after
    the cursor of this kind, and the cursor of the next page (None on the last)."""
    (field, direction), _ = index[-2:]
    start = _decode_cursor(after, kind)
    if start is not None:
        value, oid = start
        beyond = "$lt" if direction == pymongo.DESCENDING else "$gt"
        query = {**query, "$or": [{field: {beyond: value}}, {field: value, "_id": {beyond: oid}}]}
    # The hint is free on mongod; the embedded server otherwise sorts the whole collection.
    docs = list(collection.find(query).sort(index[-2:]).hint(index).limit(limit + 1))
    items = [_public(d) for d in docs[:limit]]
    if len(docs) <= limit:
        return items, None
    last = docs[limit - 1]
    return items, _encode_cursor(kind, last[field], last["_id"])


def _encode_cursor(kind: str, value: Any, oid: ObjectId) -> str:
    if isinstance(value, dt.datetime):
        value = (value - _EPOCH) // _MILLISECOND  # BSON dates hold milliseconds, exactly
    raw = json.dumps([kind, value, str(oid)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None, kind: str) -> tuple[Any, ObjectId] | None:
    """The (value, id) a cursor of this kind stands for; InvalidInput for any other string."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found, value, oid = json.loads(raw)
        if found != kind:
            raise ValueError(kind)
        if kind in ("newest", "events"):
            if not isinstance(value, int):
                raise ValueError(kind)
            value = _EPOCH + value * _MILLISECOND
        elif not isinstance(value, str):
            raise ValueError(kind)
        return value, ObjectId(oid)
    except (ValueError, TypeError, InvalidId, binascii.Error, UnicodeDecodeError):
        raise InvalidInput([("cursor", "must be the next_cursor of a previous page")]) from None


class Store:
    """Domain verbs over one MongoDB database."""

    def __init__(self, db: pymongo.database.Database) -> None:
        self.db = db
        self.users = db["users"]
        self.persons = db["persons"]
        self.sessions = db["sessions"]
        self.revocations = db["revocations"]
        self.throttle = db["throttle"]
        self.events = db["events"]
        self.outbox = db["outbox"]
        self.resets = db["resets"]
        # The authorization server's: clients, consents, requests waiting for a person, codes.
        self.clients = db["clients"]
        self.consents = db["consents"]
        self.authorizations = db["authorizations"]
        self.codes = db["codes"]
        self.mfa_attempts = db["mfa_attempts"]
        self.webauthn_challenges = db["webauthn_challenges"]

    def close(self) -> None:
        """Close the client this store's database belongs to."""
        self.db.client.close()

    # -- housekeeping ------------------------------------------------------------------
    @_translated
    def ensure_indexes(self) -> None:
        """Create the indexes the domain relies on (idempotent)."""
        self.users.create_index("username_key", unique=True, name="username_key_unique")
        # Sparse: many users have no address; those that do have distinct ones.
        self.users.create_index("email_key", unique=True, sparse=True, name="email_key_unique")
        self.outbox.create_index([("state", 1), ("next_attempt_at", 1)])
        self.outbox.create_index("user_id")
        self.outbox.create_index("expires_at", expireAfterSeconds=0)
        self.resets.create_index("expires_at", expireAfterSeconds=0)
        self.resets.create_index("user_id")
        self.mfa_attempts.create_index("expires_at", expireAfterSeconds=0)
        self.mfa_attempts.create_index("user_id")
        self.webauthn_challenges.create_index("expires_at", expireAfterSeconds=0)
        # A credential belongs to one account (WebAuthn §7.1 step 22), and a discoverable
        # sign-in finds the account by it. Sparse: most users have no passkey.
        self.users.create_index(
            "passkeys.credential_id", unique=True, sparse=True, name="passkey_credential_unique"
        )
        self.sessions.create_index("user_id")
        self.sessions.create_index("expires_at", expireAfterSeconds=0)
        self.sessions.create_index("current", unique=True, sparse=True)
        self.sessions.create_index("retired")
        # A sign-in (the provider's SSO cookie) is found by its secret's hash; a client's
        # sessions by the sign-in they came through and by the client.
        self.sessions.create_index("sign_in", unique=True, sparse=True)
        self.sessions.create_index("sso_sid", sparse=True)
        self.sessions.create_index("client_id", sparse=True)
        self.clients.create_index("name", unique=True)
        self.consents.create_index([("user_id", 1), ("client_id", 1)], unique=True)
        self.consents.create_index("client_id")
        self.authorizations.create_index("expires_at", expireAfterSeconds=0)
        self.codes.create_index("purge_at", expireAfterSeconds=0)
        self.revocations.create_index("expires_at", expireAfterSeconds=0)
        self.revocations.create_index("created_at")
        self.throttle.create_index("expires_at", expireAfterSeconds=0)
        for index in PERSON_ORDERS.values():
            self.persons.create_index(index)
        self.events.create_index(EVENTS_ORDER)
        self.events.create_index("expires_at", expireAfterSeconds=0)
        # Persons written before "by name" existed get their sort key once.
        for doc in self.persons.find({"name_key": {"$exists": False}}, {"name": 1}):
            self.persons.update_one(
                {"_id": doc["_id"]}, {"$set": {"name_key": _sort_key(doc.get("name", ""))}}
            )

    @_translated
    def ping(self, timeout: float = 1.0) -> None:
        """Raise Unavailable unless the server answers within `timeout` seconds."""
        with pymongo.timeout(timeout):
            self.db.client.admin.command("ping")

    # -- users -------------------------------------------------------------------------
    @_translated
    def create_user(
        self,
        *,
        username: str,
        username_key: str,
        password_hash: str,
        roles: Iterable[str],
        now: dt.datetime,
        email: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Insert a user (with `email` fields when given); Conflict naming the field taken."""
        doc = {
            "username": username,
            "username_key": username_key,
            "password_hash": password_hash,
            "roles": list(roles),
            "created_at": now,
            **(email or {}),
        }
        try:
            self.users.insert_one(doc)
        except mongo_errors.DuplicateKeyError as exc:
            raise Conflict(field=_taken_field(exc)) from None
        return _public(doc)

    @_translated
    def find_user_by_email(self, email_key: str) -> dict[str, Any] | None:
        """The user with this address (compared without regard to case), or None."""
        return _public(self.users.find_one({"email_key": email_key}))

    @_translated
    def set_email(self, user_id: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """Give the user a new, unverified address; the user before, None when none; Conflict."""
        try:
            doc = self.users.find_one_and_update(
                {"_id": ObjectId(user_id)},
                {"$set": fields},
                return_document=ReturnDocument.BEFORE,
            )
        except mongo_errors.DuplicateKeyError as exc:
            raise Conflict(field=_taken_field(exc)) from None
        return _public(doc)

    @_translated
    def verify_email(self, user_id: str, code_hash: str, *, now: dt.datetime) -> bool:
        """Mark the address verified if this is its live code, which then ends (single use)."""
        result = self.users.update_one(
            {
                "_id": ObjectId(user_id),
                "email_verification.code_hash": code_hash,
                "email_verification.expires_at": {"$gt": now},
            },
            {"$set": {"email_verified": True}, "$unset": {"email_verification": ""}},
        )
        return result.modified_count == 1

    # -- password resets ------------------------------------------------------------------
    @_translated
    def add_reset(self, record: dict[str, Any]) -> None:
        """Keep a reset secret's hash (`_id`) until it is used or `expires_at` passes."""
        self.resets.insert_one(dict(record))

    @_translated
    def find_reset(self, secret_hash: str, *, now: dt.datetime) -> dict[str, Any] | None:
        """The live reset record of this secret, or None."""
        return self.resets.find_one({"_id": secret_hash, "expires_at": {"$gt": now}})

    @_translated
    def use_reset(self, secret_hash: str, *, now: dt.datetime) -> bool:
        """Consume the reset record, once: only one caller gets True."""
        doc = self.resets.find_one_and_delete({"_id": secret_hash, "expires_at": {"$gt": now}})
        return doc is not None

    # -- the outbox ----------------------------------------------------------------------
    @_translated
    def enqueue_mail(self, message: dict[str, Any]) -> None:
        """Keep a message for the sender; it is durable once this returns."""
        self.outbox.insert_one(dict(message))

    @_translated
    def claim_mail(
        self, claim: str, *, now: dt.datetime, lease_until: dt.datetime
    ) -> dict[str, Any] | None:
        """Take one message due for sending, atomically: no other sender can take it too.

        One conditional update on `state`: of two senders, only one finds it `pending` (or
        `sending` past its lease, when the sender that took it died).
        """
        due = {
            "$or": [
                {"state": "pending", "next_attempt_at": {"$lte": now}},
                {"state": "sending", "lease_until": {"$lt": now}},
            ]
        }
        doc = self.outbox.find_one_and_update(
            due,
            {"$set": {"state": "sending", "claim": claim, "lease_until": lease_until}},
            sort=[("next_attempt_at", pymongo.ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        return doc

    @_translated
    def mail_sent(self, mail_id: Any, claim: str, *, now: dt.datetime, keep: dt.timedelta) -> bool:
        """Mark a claimed message sent (kept `keep` for the record, then gone by TTL)."""
        result = self.outbox.update_one(
            {"_id": mail_id, "state": "sending", "claim": claim},
            {
                "$set": {"state": "sent", "sent_at": now, "expires_at": now + keep},
                "$unset": {"message": "", "lease_until": ""},
            },
        )
        return result.modified_count == 1

    @_translated
    def mail_failed(self, mail_id: Any, claim: str, *, retry_at: dt.datetime, error: str) -> None:
        """Give a claimed message back for another try at `retry_at`."""
        self.outbox.update_one(
            {"_id": mail_id, "state": "sending", "claim": claim},
            {
                "$set": {"state": "pending", "next_attempt_at": retry_at, "last_error": error},
                "$unset": {"lease_until": ""},
                "$inc": {"attempts": 1},
            },
        )

    @_translated
    def outbox_status(self) -> tuple[int, dt.datetime | None]:
        """How many messages wait to be sent, and when the oldest of them was written."""
        waiting = {"state": {"$in": ["pending", "sending"]}}
        depth = self.outbox.count_documents(waiting)
        oldest = self.outbox.find_one(waiting, sort=[("created_at", pymongo.ASCENDING)])
        return depth, None if oldest is None else oldest["created_at"]

    @_translated
    def find_user(self, user_id: str) -> dict[str, Any] | None:
        """The user with this id, or None."""
        oid = object_id(user_id)
        return None if oid is None else _public(self.users.find_one({"_id": oid}))

    @_translated
    def find_user_by_name(self, username_key: str) -> dict[str, Any] | None:
        """The user with this normalized name, or None."""
        return _public(self.users.find_one({"username_key": username_key}))

    @_translated
    def upgrade_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> bool:
        """Replace the hash only if it is still `old_hash` (a rehash must not undo a change)."""
        result = self.users.update_one(
            {"_id": ObjectId(user_id), "password_hash": old_hash},
            {"$set": {"password_hash": new_hash}},
        )
        return result.modified_count == 1

    @_translated
    def change_password_hash(
        self, user_id: str, new_hash: str, *, expected_version: int | None = None
    ) -> int | None:
        """Set a new password hash and bump the credential version; the new version, or None.

        With `expected_version`, only while the credential version is still that one.
        """
        query: dict[str, Any] = {"_id": ObjectId(user_id)}
        if expected_version == 0:
            query["$or"] = [{"credential_version": 0}, {"credential_version": {"$exists": False}}]
        elif expected_version is not None:
            query["credential_version"] = expected_version
        user = self.users.find_one_and_update(
            query,
            {"$set": {"password_hash": new_hash}, "$inc": {"credential_version": 1}},
            projection={"credential_version": 1},
            return_document=ReturnDocument.AFTER,
        )
        return None if user is None else user["credential_version"]

    @_translated
    def credential_version(self, user_id: str) -> int | None:
        """The user's credential version (0 before any change), or None when there is no user."""
        user = self.users.find_one({"_id": ObjectId(user_id)}, {"credential_version": 1})
        return None if user is None else user.get("credential_version", 0)

    @_translated
    def count_admins(self) -> int:
        """How many users hold the admin role and are not disabled."""
        return self.users.count_documents({"roles": "admin", "disabled": {"$ne": True}})

    @_translated
    def update_account(self, user_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Set `disabled` and/or `roles`; the user before the change, or None when none."""
        oid = object_id(user_id)
        if oid is None:
            return None
        doc = self.users.find_one_and_update(
            {"_id": oid}, {"$set": changes}, return_document=ReturnDocument.BEFORE
        )
        return _public(doc)

    @_translated
    def delete_user(self, user_id: str) -> bool:
        """Remove a user and the security events kept for them; False when there was none."""
        oid = object_id(user_id)
        if oid is None or self.users.delete_one({"_id": oid}).deleted_count != 1:
            return False
        self.events.delete_many({"user_id": user_id})
        self.consents.delete_many({"user_id": user_id})
        self.outbox.delete_many({"user_id": user_id, "state": "pending"})
        self.resets.delete_many({"user_id": user_id})
        self.mfa_attempts.delete_many({"user_id": user_id})
        self.webauthn_challenges.delete_many({"user_id": user_id})
        return True

    @_translated
    def page_users(self, *, limit: int, after: str | None) -> tuple[list[dict], str | None]:
        """Users sorted by id, `limit` at a time, after the cursor id."""
        return self._page(self.users, limit=limit, after=after)

    # -- second factors (on the user: they go with it) ------------------------------------
    # `totp`: {secret (sealed), last_step, confirmed_at}, the active factor; `totp_pending`:
    # {secret, created_at}, an enrolment awaiting its first code; `recovery_codes`: hashes.
    @_translated
    def set_pending_totp(self, user_id: str, sealed: str, *, now: dt.datetime) -> bool:
        """Keep an enrolment's secret (replacing a pending one); False when one is active."""
        result = self.users.update_one(
            {"_id": ObjectId(user_id), "totp": {"$exists": False}},
            {"$set": {"totp_pending": {"secret": sealed, "created_at": now}}},
        )
        return result.matched_count == 1

    @_translated
    def activate_totp(self, user_id: str, sealed: str, *, last_step: int, now: dt.datetime) -> bool:
        """Make the pending secret `sealed` the active factor, its confirming step used;
        False when it is no longer the pending one (replaced, or confirmed concurrently)."""
        result = self.users.update_one(
            {"_id": ObjectId(user_id), "totp_pending.secret": sealed, "totp": {"$exists": False}},
            {
                "$set": {"totp": {"secret": sealed, "last_step": last_step, "confirmed_at": now}},
                "$unset": {"totp_pending": ""},
            },
        )
        return result.modified_count == 1

    @_translated
    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Accept a code of time step `step` once: True only for the one caller that moves the
        last accepted step forward to it (RFC 6238 §5.2), whichever worker or instance."""
        result = self.users.update_one(
            {"_id": ObjectId(user_id), "totp.last_step": {"$lt": step}},
            {"$set": {"totp.last_step": step}},
        )
        return result.modified_count == 1

    @_translated
    def remove_totp(self, user_id: str) -> bool:
        """Remove the TOTP factor, active or pending; True when one was active."""
        before = self.users.find_one_and_update(
            {"_id": ObjectId(user_id)},
            {"$unset": {"totp": "", "totp_pending": ""}},
            projection={"totp": 1},
            return_document=ReturnDocument.BEFORE,
        )
        return before is not None and "totp" in before

    @_translated
    def set_recovery_codes(self, user_id: str, hashes: list[str] | None) -> None:
        """Replace the user's recovery codes (by their hashes); None removes them."""
        update = (
            {"$unset": {"recovery_codes": ""}}
            if hashes is None
            else {"$set": {"recovery_codes": hashes}}
        )
        self.users.update_one({"_id": ObjectId(user_id)}, update)

    @_translated
    def use_recovery_code(self, user_id: str, code_hash: str) -> int | None:
        """Spend one recovery code, once (an atomic $pull): how many are left, or None when
        it is not one of the user's (or another request spent it first)."""
        doc = self.users.find_one_and_update(
            {"_id": ObjectId(user_id), "recovery_codes": code_hash},
            {"$pull": {"recovery_codes": code_hash}},
            projection={"recovery_codes": 1},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else len(doc.get("recovery_codes", []))

    # -- second steps of logins in flight ---------------------------------------------------
    @_translated
    def add_mfa_attempt(self, record: dict[str, Any]) -> None:
        """Keep a login awaiting its second factor under its token's hash (`_id`), until
        `expires_at` (TTL)."""
        self.mfa_attempts.insert_one(dict(record))

    @_translated
    def find_mfa_attempt(self, token_hash: str, *, now: dt.datetime) -> dict[str, Any] | None:
        """The live attempt of this token, or None."""
        return self.mfa_attempts.find_one({"_id": token_hash, "expires_at": {"$gt": now}})

    @_translated
    def use_mfa_attempt(self, token_hash: str, *, now: dt.datetime) -> bool:
        """End the attempt, once: only one caller gets True."""
        doc = self.mfa_attempts.find_one_and_delete({"_id": token_hash, "expires_at": {"$gt": now}})
        return doc is not None

    # -- passkeys (on the user: they go with it) --------------------------------------------
    # `passkeys`: [{id, credential_id, public_key, sign_count, backup_eligible, transports,
    # name, created_at, last_used_at}]; `passkey_user_handle`: the random WebAuthn user id.
    @_translated
    def passkey_user_handle(self, user_id: str, candidate: bytes) -> bytes | None:
        """The account's WebAuthn user handle, `candidate` becoming it if it has none yet;
        None when there is no such user."""
        oid = ObjectId(user_id)
        self.users.update_one(
            {"_id": oid, "passkey_user_handle": {"$exists": False}},
            {"$set": {"passkey_user_handle": Binary(candidate)}},
        )
        doc = self.users.find_one({"_id": oid}, {"passkey_user_handle": 1})
        return None if doc is None else bytes(doc["passkey_user_handle"])

    @_translated
    def add_passkey(self, user_id: str, passkey: dict[str, Any], *, limit: int) -> bool:
        """Give the account a passkey while it has fewer than `limit` (one conditional write,
        so concurrent additions cannot pass it); False at the limit. Conflict("credential")
        when another account (or this one) holds the credential already."""
        try:
            result = self.users.update_one(
                {"_id": ObjectId(user_id), f"passkeys.{limit - 1}": {"$exists": False}},
                {"$push": {"passkeys": passkey}},
            )
        except mongo_errors.DuplicateKeyError:
            raise Conflict("credential", "is already registered") from None
        return result.matched_count == 1

    @_translated
    def find_user_by_passkey(self, credential_id: bytes) -> dict[str, Any] | None:
        """The user holding this credential, or None."""
        return _public(self.users.find_one({"passkeys.credential_id": Binary(credential_id)}))

    @_translated
    def use_passkey(
        self,
        user_id: str,
        passkey_id: str,
        *,
        sign_count_was: int,
        sign_count: int,
        now: dt.datetime,
    ) -> bool:
        """Record a use: the new signature counter, when the stored one is still the one the
        assertion was checked against. Of two workers checking the same assertion (or two
        clones), only one moves it; the other gets False."""
        result = self.users.update_one(
            {
                "_id": ObjectId(user_id),
                "passkeys": {"$elemMatch": {"id": passkey_id, "sign_count": sign_count_was}},
            },
            {"$set": {"passkeys.$.sign_count": sign_count, "passkeys.$.last_used_at": now}},
        )
        return result.matched_count == 1

    @_translated
    def rename_passkey(self, user_id: str, passkey_id: str, name: str) -> dict[str, Any] | None:
        """Rename one of the account's passkeys; the passkey after, or None when none."""
        oid = object_id(user_id)
        if oid is None:
            return None
        # update_one, then a read: the positional operator is not supported by every
        # wire-compatible server in findAndModify (the embedded one refuses it).
        self.users.update_one(
            {"_id": oid, "passkeys.id": passkey_id}, {"$set": {"passkeys.$.name": name}}
        )
        doc = self.users.find_one({"_id": oid}, {"passkeys": 1}) or {}
        found = [p for p in doc.get("passkeys", []) if p["id"] == passkey_id]
        return found[0] if found else None

    @_translated
    def remove_passkey(self, user_id: str, passkey_id: str) -> bool:
        """Remove one of the account's passkeys; False when it has none of that id."""
        result = self.users.update_one(
            {"_id": ObjectId(user_id), "passkeys.id": passkey_id},
            {"$pull": {"passkeys": {"id": passkey_id}}},
        )
        return result.modified_count == 1

    @_translated
    def remove_passkeys(self, user_id: str) -> None:
        """Remove every passkey of the account (an operator's reset)."""
        self.users.update_one({"_id": ObjectId(user_id)}, {"$unset": {"passkeys": ""}})

    # -- WebAuthn ceremonies in flight ------------------------------------------------------
    @_translated
    def add_webauthn_challenge(self, record: dict[str, Any]) -> None:
        """Keep a challenge (its hash is `_id`) until it is taken or `expires_at` passes."""
        self.webauthn_challenges.insert_one(dict(record))

    @_translated
    def take_webauthn_challenge(
        self, challenge_hash: str, *, purpose: str, user_id: str | None, now: dt.datetime
    ) -> bool:
        """Consume a live challenge issued for this purpose and user, once (an atomic
        find_one_and_delete): of two requests presenting it, only one gets True."""
        doc = self.webauthn_challenges.find_one_and_delete(
            {
                "_id": challenge_hash,
                "purpose": purpose,
                "user_id": user_id,
                "expires_at": {"$gt": now},
            }
        )
        return doc is not None

    # -- persons -----------------------------------------------------------------------
    @_translated
    def create_person(self, fields: dict[str, Any], *, now: dt.datetime) -> dict[str, Any]:
        """Insert a person and return it."""
        doc = {
            **fields,
            "name_key": _sort_key(fields["name"]),
            "created_at": now,
            "updated_at": now,
        }
        self.persons.insert_one(doc)
        return _public(doc)

    @_translated
    def find_person(self, person_id: str) -> dict[str, Any] | None:
        """The person with this id, or None."""
        oid = object_id(person_id)
        return None if oid is None else _public(self.persons.find_one({"_id": oid}))

    @_translated
    def update_person(
        self, person_id: str, fields: dict[str, Any], *, now: dt.datetime
    ) -> dict[str, Any] | None:
        """Set the given fields; the updated person, or None when there is none."""
        oid = object_id(person_id)
        if oid is None:
            return None
        changes = {**fields, "updated_at": now}
        if "name" in fields:
            changes["name_key"] = _sort_key(fields["name"])
        doc = self.persons.find_one_and_update(
            {"_id": oid}, {"$set": changes}, return_document=ReturnDocument.AFTER
        )
        return _public(doc)

    @_translated
    def delete_person(self, person_id: str) -> bool:
        """Delete; False when there was no such person."""
        oid = object_id(person_id)
        return oid is not None and self.persons.delete_one({"_id": oid}).deleted_count == 1

    @_translated
    def page_persons(
        self, *, limit: int, after: str | None, order: str = "newest"
    ) -> tuple[list[dict], str | None]:
        """Persons in `order` ("newest" first, or by "name"), `limit` at a time, after a cursor."""
        return _keyset_page(self.persons, {}, PERSON_ORDERS[order], order, limit=limit, after=after)

    @_translated
    def count_persons(self) -> int:
        """How many persons there are, from the collection's metadata (cheap; may lag a write)."""
        return self.persons.estimated_document_count()

    @staticmethod
    def _page(collection, *, limit: int, after: str | None) -> tuple[list[dict], str | None]:
        oid = None if after is None else object_id(after)
        if after is not None and oid is None:
            raise InvalidInput([("cursor", "must be the next_cursor of a previous page")])
        query = {} if oid is None else {"_id": {"$gt": oid}}
        # The hint is free on mongod; the embedded server otherwise sorts the whole collection.
        cursor = collection.find(query).sort("_id", pymongo.ASCENDING).hint([("_id", 1)])
        docs = list(cursor.limit(limit + 1))
        items = [_public(d) for d in docs[:limit]]
        return items, (items[-1]["id"] if len(docs) > limit else None)

    # -- security events of each user ----------------------------------------------------
    @_translated
    def add_event(self, user_id: str, event: str, *, fields: dict[str, Any]) -> None:
        """Keep one security event of a user (it leaves by TTL at `fields["expires_at"]`)."""
        self.events.insert_one({"user_id": user_id, "event": event, **fields})

    @_translated
    def page_events(
        self, user_id: str, *, limit: int, after: str | None
    ) -> tuple[list[dict], str | None]:
        """A user's events, newest first, `limit` at a time, after a cursor."""
        query = {"user_id": user_id}
        return _keyset_page(self.events, query, EVENTS_ORDER, "events", limit=limit, after=after)

    # -- refresh sessions --------------------------------------------------------------
    # A session is one document: the hash of its current refresh token and of the last few
    # retired ones (for reuse detection), so a session's size is bounded however often it
    # refreshes, and a rotation is one conditional write.
    @_translated
    def create_session(
        self,
        *,
        sid: str,
        user_id: str,
        token_hash: str,
        credential_version: int,
        now: dt.datetime,
        expires_at: dt.datetime,
        seen: dict[str, Any] | None = None,
        auth: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Open a refresh session with its first refresh token (where it was seen from, and
        how the user signed in); `extra` holds a client session's fields (client, scope,
        sign-in) or a sign-in's."""
        self.sessions.insert_one(
            {
                **(extra or {}),
                "_id": sid,
                "user_id": user_id,
                "created_at": now,
                "last_used_at": now,
                **(seen or {}),
                **(auth or {}),
                "expires_at": expires_at,
                "credential_version": credential_version,
                "current": token_hash,
                "retired": [],
                "refresh_window_start": now,
                "refresh_count": 0,
            }
        )

    @_translated
    def rotate_refresh_token(
        self,
        token_hash: str,
        new_hash: str,
        *,
        now: dt.datetime,
        keep: int,
        limit: int,
        window: int,
        grace: int = 0,
        sealed: bytes | None = None,
        touch: dict[str, Any] | None = None,
        client_id: str | None = None,
    ) -> tuple[str, dict[str, Any] | None]:
        """Swap a live session's current token for a new one, at most `limit` per window.

        The token it retires becomes `previous`, with `sealed` (the new token, sealed with the
        retired one by the caller). Within `grace` seconds of that rotation, `previous` may be
        presented again: nothing rotates, the session is touched and returned with `sealed`,
        so every racing use ends with the same current token. Earlier tokens stay reuse.
        A token rotates only for the client it was issued to (`client_id`; None for sessions
        of no OAuth client): RFC 6749 §10.4 binds refresh tokens to their client.
        Answers ("rotated", session before), ("graced", session after), ("limited", session),
        ("reused", session), ("ended", session), ("wrong_client", session) or
        ("unknown", None).
        """
        touch = touch or {}
        # {"client_id": None} also matches sessions without the field (every older one).
        live = {
            "revoked_at": {"$exists": False},
            "expires_at": {"$gt": now},
            "client_id": client_id,
        }
        rotation = {"previous": token_hash, "rotated_at": now, **touch}
        if sealed is not None:
            rotation["sealed"] = Binary(sealed)
        session = self._swap_current(
            # The indexed equality first: the embedded server plans by the filter's first
            # field (6 predicates led by `live` scanned every session: 85 ms at 3,000).
            {"current": token_hash, **live},
            token_hash,
            new_hash,
            now=now,
            keep=keep,
            limit=limit,
            window=window,
            also=rotation,
        )
        if session is not None:
            return "rotated", _public(session)
        if grace > 0:
            session = self.sessions.find_one_and_update(
                {**live, **self._in_grace(token_hash, now=now, grace=grace)},
                {"$set": touch or {"last_used_at": now}},
                return_document=ReturnDocument.AFTER,
            )
            if session is not None:
                return "graced", _public(session)
        return self._classify(
            token_hash, now=now, grace=grace, limit=limit, window=window, client_id=client_id
        )

    @staticmethod
    def _in_grace(token_hash: str, *, now: dt.datetime, grace: int) -> dict[str, Any]:
        """The filter of a session whose token just rotated is this one, within `grace`."""
        return {
            "previous": token_hash,
            "sealed": {"$exists": True},
            "rotated_at": {"$gt": now - dt.timedelta(seconds=grace)},
        }

    def _swap_current(
        self,
        match: dict[str, Any],
        retiring: str,
        new_hash: str,
        *,
        now: dt.datetime,
        keep: int,
        limit: int,
        window: int,
        also: dict[str, Any],
    ) -> dict[str, Any] | None:
        """One conditional write: `current` becomes `new_hash`, `retiring` joins `retired`."""
        retire = {"retired": {"$each": [retiring], "$slice": -keep}}
        window_start = now - dt.timedelta(seconds=window)
        return self.sessions.find_one_and_update(
            {
                **match,
                "refresh_window_start": {"$gt": window_start},
                "refresh_count": {"$lt": limit},
            },
            {"$set": {"current": new_hash, **also}, "$push": retire, "$inc": {"refresh_count": 1}},
            return_document=ReturnDocument.BEFORE,
        ) or self.sessions.find_one_and_update(
            {**match, "refresh_window_start": {"$lte": window_start}},
            {
                "$set": {
                    "current": new_hash,
                    "refresh_window_start": now,
                    "refresh_count": 1,
                    **also,
                },
                "$push": retire,
            },
            return_document=ReturnDocument.BEFORE,
        )

    def _classify(
        self,
        token_hash: str,
        *,
        now: dt.datetime,
        grace: int,
        limit: int,
        window: int,
        client_id: str | None = None,
    ) -> tuple[str, dict[str, Any] | None]:
        """Why a token could not rotate."""
        session = self.find_session_by_token(token_hash)
        if session is None:
            return "unknown", None
        if session.get("client_id") != client_id:
            return "wrong_client", session
        ended = "revoked_at" in session or session["expires_at"] <= now
        if session["current"] != token_hash:
            recent = (
                grace > 0
                and session.get("previous") == token_hash
                and "sealed" in session
                and session["rotated_at"] > now - dt.timedelta(seconds=grace)
            )
            if not recent:
                return "reused", session
            # Within its window: ended, or the session changed under the grace read; either
            # way not reuse.
            return ("ended", session) if ended else ("graced", session)
        if ended:
            return "ended", session
        return "limited", session

    @_translated
    def reauthenticate_session(
        self,
        sid: str,
        token_hash: str,
        new_hash: str,
        *,
        now: dt.datetime,
        keep: int,
        auth: dict[str, Any],
        sealed: bytes | None = None,
        touch: dict[str, Any] | None = None,
    ) -> bool:
        """A fresh sign-in on a live session whose current token is `token_hash`: the new
        authentication, and a new current token; the old one retires as a rotation retires
        it (`previous`, with `sealed`). False when the session moved on or ended meanwhile."""
        rotation: dict[str, Any] = {"previous": token_hash, "rotated_at": now, "last_used_at": now}
        update: dict[str, Any] = {
            "$set": {"current": new_hash, **rotation, **(touch or {}), **auth},
            "$push": {"retired": {"$each": [token_hash], "$slice": -keep}},
        }
        if sealed is not None:
            update["$set"]["sealed"] = Binary(sealed)
        else:
            update["$unset"] = {"sealed": ""}  # a successor sealed earlier is no longer it
        result = self.sessions.update_one(
            {
                "_id": sid,
                "current": token_hash,
                "revoked_at": {"$exists": False},
                "expires_at": {"$gt": now},
            },
            update,
        )
        return result.modified_count == 1

    @_translated
    def find_session_by_token(self, token_hash: str) -> dict[str, Any] | None:
        """The session whose current or a recently retired refresh token this is, or None."""
        return _public(
            self.sessions.find_one({"$or": [{"current": token_hash}, {"retired": token_hash}]})
        )

    @_translated
    def find_session(self, sid: str) -> dict[str, Any] | None:
        """The refresh session, or None."""
        return _public(self.sessions.find_one({"_id": sid}))

    @_translated
    def restamp_session(self, sid: str, credential_version: int) -> None:
        """Mark a session as opened under this credential version (the caller's, after a change)."""
        self.sessions.update_one(
            {"_id": sid, "revoked_at": {"$exists": False}},
            {"$max": {"credential_version": credential_version}},
        )

    @_translated
    def revoke_session(self, sid: str, *, now: dt.datetime) -> bool:
        """Mark a session revoked; True when this call revoked it."""
        result = self.sessions.update_one(
            {"_id": sid, "revoked_at": {"$exists": False}}, {"$set": {"revoked_at": now}}
        )
        return result.modified_count == 1

    @_translated
    def list_live_sessions(self, user_id: str, *, now: dt.datetime) -> list[dict[str, Any]]:
        """A user's live sessions, most recently used first (no token hashes)."""
        cursor = self.sessions.find(
            {"user_id": user_id, "revoked_at": {"$exists": False}, "expires_at": {"$gt": now}},
            {"created_at": 1, "last_used_at": 1, "address": 1, "user_agent": 1, "user_id": 1},
        )
        docs = [_public(doc) for doc in cursor]
        docs.sort(key=lambda d: (d.get("last_used_at") or d["created_at"], d["id"]), reverse=True)
        return docs

    @_translated
    def live_sessions_of(self, user_id: str, *, now: dt.datetime) -> list[str]:
        """Ids of a user's sessions that are neither revoked nor expired."""
        cursor = self.sessions.find(
            {"user_id": user_id, "revoked_at": {"$exists": False}, "expires_at": {"$gt": now}},
            {"_id": 1},
        )
        return [doc["_id"] for doc in cursor]

    # -- sign-ins: the provider's SSO cookie names a session by its secret's hash ------
    @_translated
    def find_session_by_sign_in(self, sign_in_hash: str) -> dict[str, Any] | None:
        """The session whose sign-in cookie this is, or None."""
        return _public(self.sessions.find_one({"sign_in": sign_in_hash}))

    @_translated
    def set_sign_in(self, sid: str, fields: dict[str, Any]) -> bool:
        """Give a live session sign-in fields (the cookie's hash, a new authentication)."""
        result = self.sessions.update_one(
            {"_id": sid, "revoked_at": {"$exists": False}}, {"$set": fields}
        )
        return result.matched_count == 1

    @_translated
    def drop_sign_in(self, sid: str) -> None:
        """The session no longer signs its browser in (its cookie was replaced)."""
        self.sessions.update_one({"_id": sid}, {"$unset": {"sign_in": ""}})

    @_translated
    def sessions_through(self, sso_sid: str, *, now: dt.datetime) -> list[str]:
        """Ids of the live client sessions opened through a sign-in."""
        cursor = self.sessions.find(
            {"sso_sid": sso_sid, "revoked_at": {"$exists": False}, "expires_at": {"$gt": now}},
            {"_id": 1},
        )
        return [doc["_id"] for doc in cursor]

    @_translated
    def move_sessions_through(self, sso_sid: str, new_sso_sid: str) -> None:
        """The client sessions opened through one sign-in now hang on another."""
        self.sessions.update_many(
            {"sso_sid": sso_sid, "revoked_at": {"$exists": False}},
            {"$set": {"sso_sid": new_sso_sid}},
        )

    @_translated
    def client_sessions(
        self, client_id: str, *, now: dt.datetime, user_id: str | None = None
    ) -> list[str]:
        """Ids of the live sessions of a client (of one user's, when given)."""
        query: dict[str, Any] = {
            "client_id": client_id,
            "revoked_at": {"$exists": False},
            "expires_at": {"$gt": now},
        }
        if user_id is not None:
            query["user_id"] = user_id
        return [doc["_id"] for doc in self.sessions.find(query, {"_id": 1})]

    # -- OAuth clients -------------------------------------------------------------------
    @_translated
    def create_client(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Register a client (`_id` is its client_id); Conflict(field="name") when taken."""
        try:
            self.clients.insert_one(dict(doc))
        except mongo_errors.DuplicateKeyError:
            raise Conflict(field="name") from None
        return _public(doc)

    @_translated
    def find_client(self, client_id: str) -> dict[str, Any] | None:
        """The client with this client_id, or None."""
        return _public(self.clients.find_one({"_id": client_id}))

    @_translated
    def find_client_by_name(self, name: str) -> dict[str, Any] | None:
        """The client with this name, or None."""
        return _public(self.clients.find_one({"name": name}))

    @_translated
    def list_clients(self) -> list[dict[str, Any]]:
        """Every client, by name."""
        return [_public(doc) for doc in self.clients.find({}).sort("name", pymongo.ASCENDING)]

    @_translated
    def delete_client(self, client_id: str) -> bool:
        """Remove a client and the consents given to it; False when there was none."""
        if self.clients.delete_one({"_id": client_id}).deleted_count != 1:
            return False
        self.consents.delete_many({"client_id": client_id})
        return True

    # -- consents: the scopes a person granted a client, remembered ------------------------
    @_translated
    def find_consent(self, user_id: str, client_id: str) -> dict[str, Any] | None:
        """The consent the user gave the client, or None."""
        return _public(self.consents.find_one({"user_id": user_id, "client_id": client_id}))

    @_translated
    def grant_consent(
        self, user_id: str, client_id: str, scopes: list[str], *, now: dt.datetime
    ) -> None:
        """Add scopes to the user's consent to the client (made when there is none)."""
        self.consents.update_one(
            {"user_id": user_id, "client_id": client_id},
            {
                "$addToSet": {"scopes": {"$each": list(scopes)}},
                "$set": {"updated_at": now},
                "$setOnInsert": {"granted_at": now},
            },
            upsert=True,
        )

    @_translated
    def list_consents(self, user_id: str) -> list[dict[str, Any]]:
        """The user's consents, oldest first."""
        cursor = self.consents.find({"user_id": user_id}).sort("granted_at", pymongo.ASCENDING)
        return [_public(doc) for doc in cursor]

    @_translated
    def delete_consent(self, user_id: str, client_id: str) -> bool:
        """Withdraw the user's consent to the client; False when there was none."""
        result = self.consents.delete_one({"user_id": user_id, "client_id": client_id})
        return result.deleted_count == 1

    # -- authorization requests waiting for a person (login, consent) ----------------------
    @_translated
    def add_authorization(self, doc: dict[str, Any]) -> None:
        """Keep a pending authorization request (`_id`: its handle's hash) to `expires_at`."""
        self.authorizations.insert_one(dict(doc))

    @_translated
    def find_authorization(self, handle_hash: str, *, now: dt.datetime) -> dict[str, Any] | None:
        """The live pending request with this handle, or None."""
        return self.authorizations.find_one({"_id": handle_hash, "expires_at": {"$gt": now}})

    @_translated
    def update_authorization(self, handle_hash: str, fields: dict[str, Any]) -> None:
        """Note what the person did so far (who signed in)."""
        self.authorizations.update_one({"_id": handle_hash}, {"$set": fields})

    @_translated
    def end_authorization(self, handle_hash: str, *, now: dt.datetime) -> bool:
        """Finish a pending request, once: only one caller gets True."""
        doc = self.authorizations.find_one_and_delete(
            {"_id": handle_hash, "expires_at": {"$gt": now}}
        )
        return doc is not None

    # -- authorization codes ------------------------------------------------------------
    @_translated
    def add_code(self, doc: dict[str, Any]) -> None:
        """Keep an issued code (`_id`: its hash) until `purge_at`."""
        self.codes.insert_one(dict(doc))

    @_translated
    def find_code(self, code_hash: str) -> dict[str, Any] | None:
        """The code record, used or not, or None."""
        return self.codes.find_one({"_id": code_hash})

    @_translated
    def use_code(
        self, code_hash: str, *, now: dt.datetime, purge_at: dt.datetime
    ) -> tuple[str, dict[str, Any] | None]:
        """Redeem a code once: ("used", record) for the first caller; ("replayed", record)
        (now marked so) for any later one; ("expired", record) or ("unknown", None)."""
        doc = self.codes.find_one_and_update(
            {"_id": code_hash, "used_at": {"$exists": False}, "expires_at": {"$gt": now}},
            {"$set": {"used_at": now, "purge_at": purge_at}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return "used", doc
        doc = self.codes.find_one_and_update(
            {"_id": code_hash, "used_at": {"$exists": True}},
            {"$set": {"replayed_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is not None:
            return "replayed", doc
        doc = self.codes.find_one({"_id": code_hash})
        return ("unknown", None) if doc is None else ("expired", doc)

    @_translated
    def bind_code(self, code_hash: str, sid: str) -> bool:
        """Note the session a redeemed code opened; False when the code was replayed meanwhile."""
        result = self.codes.update_one(
            {"_id": code_hash, "replayed_at": {"$exists": False}}, {"$set": {"sid": sid}}
        )
        return result.modified_count == 1

    # -- revocations (what access tokens must no longer be accepted) -------------------
    @_translated
    def add_revocation(self, key: str, *, now: dt.datetime, expires_at: dt.datetime) -> None:
        """Record that tokens matching `key` ("sid:..." or "jti:...") are revoked."""
        self.revocations.update_one(
            {"_id": key},
            {"$setOnInsert": {"created_at": now}, "$max": {"expires_at": expires_at}},
            upsert=True,
        )

    @_translated
    def revocations_since(self, since: dt.datetime | None) -> list[dict[str, Any]]:
        """Revocation records created at or after `since` (all when None)."""
        query = {} if since is None else {"created_at": {"$gte": since}}
        return list(self.revocations.find(query, {"_id": 1, "created_at": 1, "expires_at": 1}))

    # -- throttling counters -----------------------------------------------------------
    @_translated
    def counter(self, key: str, *, now: dt.datetime) -> tuple[int, dt.datetime | None]:
        """The live count under `key` and when its window ends."""
        doc = self.throttle.find_one({"_id": key, "expires_at": {"$gt": now}})
        return (0, None) if doc is None else (doc["count"], doc["expires_at"])

    @_translated
    def counters(
        self, keys: list[str], *, now: dt.datetime
    ) -> dict[str, tuple[int, dt.datetime, int]]:
        """The live counts of several keys at once: (count, window end, failures)."""
        docs = self.throttle.find({"_id": {"$in": keys}, "expires_at": {"$gt": now}})
        return {
            doc["_id"]: (doc["count"], doc["expires_at"], doc.get("failures", 0)) for doc in docs
        }

    @_translated
    def mark_failed(self, key: str, *, now: dt.datetime) -> None:
        """Record that one event counted under `key` turned out a failure."""
        self.throttle.update_one(
            {"_id": key, "expires_at": {"$gt": now}}, {"$inc": {"failures": 1}}
        )

    @_translated
    def give_back(self, key: str, *, now: dt.datetime) -> None:
        """Return one event counted under `key` (an attempt that never reached a verdict)."""
        self.throttle.update_one(
            {"_id": key, "count": {"$gt": 0}, "expires_at": {"$gt": now}}, {"$inc": {"count": -1}}
        )

    @_translated
    def take(self, key: str, *, now: dt.datetime, window: int, limit: int) -> bool:
        """Atomically count one more event under `key` unless `limit` is reached; False then."""
        expires_at = now + dt.timedelta(seconds=window)
        for _ in range(3):
            try:
                # Count and limit in one write: concurrent attempts can never pass the limit.
                self.throttle.update_one(
                    {"_id": key, "count": {"$lt": limit}, "expires_at": {"$gt": now}},
                    {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": expires_at}},
                    upsert=True,
                )
                return True
            except mongo_errors.DuplicateKeyError:
                # At the limit, a lapsed window the TTL monitor has not removed yet, or two
                # first events racing on the upsert: start a lapsed window over and retry.
                if self.throttle.delete_one(
                    {"_id": key, "expires_at": {"$lte": now}}
                ).deleted_count:
                    continue
                if self.throttle.count_documents({"_id": key, "count": {"$gte": limit}}):
                    return False
        raise Unavailable("throttle counter contention")

    @_translated
    def reset_counter(self, key: str) -> None:
        """Forget the events counted under `key`."""
        self.throttle.delete_one({"_id": key})
