"""Expired sessions (with their refresh tokens), revocations and throttle counters leave by TTL."""

from __future__ import annotations

import datetime as dt
import time

import pymongo
import pytest
from helpers import PASSWORD, ManualClock, bearer, login, register

import store as store_module

EXPIRING = ("sessions", "revocations", "throttle")
# mongod's TTL monitor runs every 60 s; the embedded server can be asked for a pass at once.
TTL_MONITOR_PERIOD = 60


def ttl_indexes(collection) -> list[dict]:
    """The TTL indexes of a collection."""
    return [
        info for info in collection.index_information().values() if "expireAfterSeconds" in info
    ]


def run_ttl_pass(db, now: dt.datetime) -> None:
    """Have the server delete what expired before `now`, or wait (bounded) for its monitor."""
    try:
        db.client.admin.command("secantusAdmin.pruneTtl")
        return
    except pymongo.errors.OperationFailure:
        pass  # a real mongod: its TTL monitor removes them within a period or two
    deadline = time.monotonic() + 2 * TTL_MONITOR_PERIOD + 10
    while any(db[name].count_documents({"expires_at": {"$lt": now}}) for name in EXPIRING):
        assert time.monotonic() < deadline, "the TTL monitor left expired documents"
        time.sleep(1)


def test_expiring_collections_have_ttl_indexes_on_expires_at(app, db):
    for name in EXPIRING:
        found = [(i["key"], i["expireAfterSeconds"]) for i in ttl_indexes(db[name])]
        assert found == [([("expires_at", 1)], 0)], name


@pytest.fixture
def month_ago_app(make_app, make_config):
    """The service running on a clock a month behind, so what it writes has long expired."""
    clock = ManualClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    return make_app(make_config(refresh_ttl=3600), clock=clock)


def test_expired_records_are_removed_by_the_database(month_ago_app, app, db):
    for service in (month_ago_app, app):  # expired records, and live ones beside them
        register(service, f"user{id(service)}")
        login(service, f"user{id(service)}", "wrong-password-of-some-length", status=400)
        tokens = login(service, f"user{id(service)}", PASSWORD).json
        service.post("/auth/logout", headers=bearer(tokens["access_token"]), status=204)
    now = dt.datetime.now(dt.UTC)
    for name in EXPIRING:
        documents = list(db[name].find())
        assert any(d["expires_at"] < now for d in documents), f"nothing expired in {name}"
        assert any(d["expires_at"] > now for d in documents), f"nothing live in {name}"
        assert all(isinstance(d["expires_at"], dt.datetime) for d in documents), name

    run_ttl_pass(db, now)
    for name in EXPIRING:
        assert db[name].count_documents({"expires_at": {"$lt": now}}) == 0, name
        assert db[name].count_documents({"expires_at": {"$gt": now}}) > 0, name
    assert db.users.count_documents({}) == 2


def test_the_background_poller_only_reads(make_app, mongo_uri, db_name):
    # Clean-up belongs to the database: no thread of ours sweeps expired records.
    commands: list[str] = []
    client = pymongo.MongoClient(mongo_uri, tz_aware=True, event_listeners=[Recorder(commands)])
    try:
        app = make_app(store=store_module.Store(client[db_name]))
        register(app, "alice")
        tokens = login(app, "alice").json
        app.post("/auth/logout", headers=bearer(tokens["access_token"]), status=204)
        commands.clear()
        for _ in range(3):
            app.app.components.refresher.run_once()
        assert commands and set(commands) <= {"find", "getMore"}, commands
    finally:
        client.close()


class Recorder(pymongo.monitoring.CommandListener):
    """Appends the name of every command the driver sends."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def started(self, event) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass
