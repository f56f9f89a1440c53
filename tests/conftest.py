"""Shared fixtures: one real wire server per session, a fresh database per test."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Callable, Iterator

import pymongo
import pytest
import webtest
from helpers import (
    ManualClock,
    free_port,
    login,
    make_admin,
    register,
    wait_http,
)
from mailserver import SmtpServer
from processes import start_gunicorn, stop

from config import Config
from embedded import EmbeddedServer
from service import Service, create_app


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory) -> Iterator[str]:
    """A real MongoDB wire server: TOKENAUTH_TEST_MONGODB_URI, or an embedded one."""
    uri = os.environ.get("TOKENAUTH_TEST_MONGODB_URI")
    if uri:
        yield uri
        return
    server = EmbeddedServer(tmp_path_factory.mktemp("embedded"), test_commands=True)
    yield server.start()
    server.stop()


@pytest.fixture
def clock() -> ManualClock:
    """The app's time, moved by the test: pass it as make_app(config, clock=clock)."""
    return ManualClock()


@pytest.fixture
def db_name() -> str:
    """A database name no other test uses."""
    return f"test_{secrets.token_hex(6)}"


@pytest.fixture
def mongo(mongo_uri) -> Iterator[pymongo.MongoClient]:
    """A plain client, for looking at what the service stored."""
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def make_config(mongo_uri, db_name, tmp_path, mongo) -> Iterator[Callable[..., Config]]:
    """Config for this test's database, keys and data in tmp_path; overrides as keywords."""

    def make(**overrides) -> Config:
        values = {
            "mongodb_uri": mongo_uri,
            "db_name": db_name,
            "data_dir": tmp_path / "var",
            "keys_dir": tmp_path / "keys",
            "db_timeout_ms": 1500,
        }
        values.update(overrides)
        return Config(**values)

    yield make
    mongo.drop_database(db_name)


@pytest.fixture
def make_app(make_config) -> Iterator[Callable[..., webtest.TestApp]]:
    """Build TestApps over create_app(config); closed at teardown."""
    apps: list[Service] = []

    def make(config: Config | None = None, **kwargs) -> webtest.TestApp:
        kwargs.setdefault("start_background", False)
        service = create_app(config or make_config(), **kwargs)
        apps.append(service)
        return webtest.TestApp(service, extra_environ={"REMOTE_ADDR": "192.0.2.10"})

    yield make
    for service in apps:
        service.close()


@pytest.fixture
def app(make_app) -> webtest.TestApp:
    """The service over a fresh database."""
    return make_app()


@pytest.fixture
def db(mongo, db_name) -> pymongo.database.Database:
    """This test's database, read directly."""
    return mongo[db_name]


@pytest.fixture
def user_token(app) -> str:
    """An access token of an ordinary user, alice."""
    register(app, "alice")
    return login(app, "alice").json["access_token"]


@pytest.fixture
def admin_token(app) -> str:
    """An access token of an admin."""
    return make_admin(app)


@pytest.fixture
def gunicorn_server(mongo_uri, db_name, tmp_path, mongo) -> Iterator[Callable[..., str]]:
    """Start real gunicorn services on this test's database; returns their base URL."""
    processes: list[subprocess.Popen] = []

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> str:
        port = free_port()
        values = {
            "TOKENAUTH_MONGODB_URI": mongo_uri,
            "TOKENAUTH_DB_NAME": db_name,
            "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
            "TOKENAUTH_BIND": f"127.0.0.1:{port}",
            "TOKENAUTH_ISSUER": "http://127.0.0.1:8000",
        }
        values.update(env or {})
        # A test may choose the address itself (to make it the issuer, as a provider's is).
        port = int(values["TOKENAUTH_BIND"].rsplit(":", 1)[1])
        process = start_gunicorn(values, tmp_path / f"gunicorn-{port}.log", args)
        processes.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        return base

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        stop(process)
    mongo.drop_database(db_name)


@pytest.fixture
def smtp_server(tmp_path, monkeypatch) -> Iterator[SmtpServer]:
    """A real SMTP server (STARTTLS and login required) whose certificate SSL_CERT_FILE trusts."""
    server = SmtpServer(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_file))
    server.start()
    yield server
    server.stop()
