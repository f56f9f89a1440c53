"""`tokenauth create-user`: exit 0 and a usable user, or exit 1 with one line on stderr."""

from __future__ import annotations

import json
import signal

import pytest
import requests
from helpers import ADMIN_PASSWORD, PASSWORD, bearer, free_port, login, wait_http
from processes import pids_with_argument, run_cli, start_gunicorn, stop

COMMON_LONG_PASSWORD = "mailcreated5240"  # in data/common-passwords.txt, and 15 characters


@pytest.fixture
def cli_env(mongo_uri, db_name, tmp_path) -> dict[str, str]:
    """The CLI's environment for this test's database."""
    return {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
        "TOKENAUTH_KEYS_DIR": str(tmp_path / "keys"),
    }


def create_user(environ, username: str, password: str, *, admin: bool = False):
    """Run `tokenauth create-user` with the password on stdin."""
    args = ["create-user", username, *(["--admin"] if admin else []), "--password-stdin"]
    return run_cli(args, environ, stdin=password + "\n")


def assert_failed_in_one_line(result, starts_with: str) -> None:
    """Exit 1, one line on stderr beginning as given, nothing on stdout, no traceback."""
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith(f"tokenauth: {starts_with}"), stderr
    assert result.stdout == b""


def test_create_admin_logs_in_with_user_and_admin_roles(app, cli_env):
    result = create_user(cli_env, "ada", ADMIN_PASSWORD, admin=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode().startswith("created user ada (")
    token = login(app, "ada", ADMIN_PASSWORD).json["access_token"]
    me = app.get("/users/me", headers=bearer(token), status=200)
    assert me.json["roles"] == ["user", "admin"]
    app.get("/users", headers=bearer(token), status=200)


def test_create_user_without_admin_has_only_the_user_role(app, cli_env, db):
    result = create_user(cli_env, "bob", PASSWORD)
    assert result.returncode == 0, result.stderr
    token = login(app, "bob").json["access_token"]
    assert app.get("/users/me", headers=bearer(token)).json["roles"] == ["user"]
    app.get("/users", headers=bearer(token), status=403)
    # Stored as registration stores it: an argon2id PHC string, never the password.
    (stored,) = db.users.find({})
    assert stored["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in json.dumps(stored, default=str)


def test_duplicate_username_exits_1(cli_env, db):
    assert create_user(cli_env, "ada", PASSWORD).returncode == 0
    result = create_user(cli_env, "ADA", ADMIN_PASSWORD, admin=True)
    assert_failed_in_one_line(result, "the username 'ADA' is already taken")
    (stored,) = db.users.find({})
    assert stored["roles"] == ["user"]


@pytest.mark.parametrize(
    ("username", "password", "why"),
    [
        ("ada", "too-short", "password must be at least 15 characters"),
        ("ada", "", "password must be at least 15 characters"),
        ("ada", COMMON_LONG_PASSWORD, "password is too common"),
        ("lovelace-ada-1815", "Lovelace-Ada-1815", "password must not be the username"),
    ],
    ids=["short", "empty", "common", "username"],
)
def test_weak_password_exits_1(cli_env, db, username, password, why):
    assert_failed_in_one_line(create_user(cli_env, username, password), why)
    assert db.users.count_documents({}) == 0


def test_invalid_username_exits_1(cli_env, db):
    assert_failed_in_one_line(create_user(cli_env, "a b", PASSWORD), "username ")
    assert db.users.count_documents({}) == 0


def test_unreachable_database_exits_1(cli_env):
    closed = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    result = create_user({**cli_env, "TOKENAUTH_MONGODB_URI": closed}, "ada", PASSWORD)
    assert_failed_in_one_line(result, "the database is unreachable")


def test_missing_password_stdin_flag_is_a_usage_error(cli_env, db):
    result = run_cli(["create-user", "ada"], cli_env, stdin=PASSWORD + "\n")
    assert result.returncode == 2
    assert "--password-stdin" in result.stderr.decode()
    assert db.users.count_documents({}) == 0


def test_without_a_database_uri_the_cli_runs_the_embedded_server_for_the_call(tmp_path):
    data_dir = tmp_path / "var"
    environ = {"TOKENAUTH_DATA_DIR": str(data_dir)}
    result = create_user(environ, "ada", ADMIN_PASSWORD, admin=True)
    assert result.returncode == 0, result.stderr
    # The server it started is stopped again, and no longer advertised.
    assert (data_dir / "db").is_dir()
    assert pids_with_argument(str(data_dir / "db")) == []
    assert not (data_dir / "embedded.json").exists()
    # The service started the `make run` way on the same data dir finds the user.
    port = free_port()
    service = start_gunicorn(
        {**environ, "TOKENAUTH_BIND": f"127.0.0.1:{port}"}, tmp_path / "gunicorn.log"
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health")
        answer = requests.post(
            f"{base}/auth/token",
            json={"username": "ada", "password": ADMIN_PASSWORD},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        me = requests.get(f"{base}/users/me", headers=bearer(token), timeout=10)
        assert me.json()["roles"] == ["user", "admin"]
    finally:
        stop(service, signal.SIGINT)
    assert pids_with_argument(str(data_dir / "db")) == []
