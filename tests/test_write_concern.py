"""Every acknowledged write is journaled by default; a connection string's own choice wins."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers import register
from pymongo import monitoring
from pymongo.write_concern import WriteConcern

import store as store_module
from embedded import EmbeddedServer


def with_options(uri: str, options: str) -> str:
    """The URI with `options` added to its query string."""
    parts = urlsplit(uri)
    query = f"{parts.query}&{options}" if parts.query else options
    return urlunsplit(parts._replace(path=parts.path or "/", query=query))


def test_the_service_journals_every_write_on_a_majority_by_default(app, db):
    client = app.app.components.store.db.client
    assert client.write_concern == WriteConcern(w="majority", j=True)
    # The server under test accepts that write concern: the write is acknowledged and stored.
    assert register(app, "alice").status_int == 201
    assert db.users.count_documents({"username": "alice"}) == 1


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("w=1", WriteConcern(w=1)),
        ("journal=false", WriteConcern(j=False)),
        ("w=majority&journal=false&wtimeoutMS=2500", WriteConcern("majority", 2500, j=False)),
        ("W=1", WriteConcern(w=1)),
    ],
)
def test_a_write_concern_named_in_the_uri_replaces_the_default(mongo_uri, options, expected):
    client = store_module.connect(with_options(mongo_uri, options))
    try:
        assert client.write_concern == expected
        client.test_write_concern.probe.insert_one({})
    finally:
        client.drop_database("test_write_concern")
        client.close()


def test_a_uri_with_only_a_write_timeout_keeps_the_durable_default(mongo_uri):
    client = store_module.connect(with_options(mongo_uri, "wtimeoutMS=2500"))
    try:
        assert client.write_concern == WriteConcern("majority", 2500, j=True)
    finally:
        client.close()


class CommandLog(monitoring.CommandListener):
    """The commands a client sends, by name."""

    def __init__(self) -> None:
        self.commands: dict[str, dict] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands[event.command_name] = dict(event.command)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


def test_writes_to_the_embedded_server_are_not_retryable(tmp_path):
    # Its retryable-write records cost it CPU on every write (BENCHMARKS.md, "mfa").
    server = EmbeddedServer(tmp_path / "embedded")
    log = CommandLog()
    client = store_module.connect(server.start(), event_listeners=[log])
    try:
        client.test_write_concern.probe.insert_one({})
        client.test_write_concern.probe.find_one_and_delete({})
        assert "txnNumber" not in log.commands["insert"]
        assert "txnNumber" not in log.commands["findAndModify"]
        assert client.write_concern == WriteConcern(w="majority", j=True)
    finally:
        client.close()
        server.stop()
