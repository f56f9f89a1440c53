"""`tokenauth create-client`, `clients` and `delete-client`: OAuth clients from the shell."""

from __future__ import annotations

import re

import pytest
from helpers import ADMIN_PASSWORD, assert_documented, bearer, login, register
from oidc import browser_cookies, code_for, exchange
from processes import run_cli
from test_cli import assert_failed_in_one_line

REDIRECT = "https://app.example.org/callback"


@pytest.fixture
def cli_env(mongo_uri, db_name, tmp_path) -> dict[str, str]:
    """The CLI's environment for this test's database."""
    return {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
    }


def create(environ, name: str, *options: str):
    """Run `tokenauth create-client NAME --redirect-uri REDIRECT OPTIONS`."""
    return run_cli(["create-client", name, "--redirect-uri", REDIRECT, *options], environ)


def test_a_confidential_client_gets_its_id_and_secret_once_and_only_a_hash_is_kept(cli_env, db):
    result = create(cli_env, "shop", "--scope", "openid", "--scope", "email")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 2
    client_id = re.fullmatch(r"client_id: ([A-Za-z0-9_-]{22})", lines[0])[1]
    secret = re.fullmatch(r"client_secret: ([A-Za-z0-9_-]{43})", lines[1])[1]
    (stored,) = db.clients.find()
    assert stored["_id"] == client_id
    assert secret not in str(stored)
    assert stored["scopes"] == ["openid", "email"]
    assert (stored["public"], stored["first_party"]) == (False, False)


def test_a_public_client_gets_no_secret(cli_env, db):
    result = create(cli_env, "spa", "--public", "--first-party")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.decode().splitlines()
    assert line.startswith("client_id: ")
    (stored,) = db.clients.find()
    assert (stored["public"], stored["first_party"]) == (True, True)
    assert "secret_hash" not in stored
    assert stored["scopes"] == ["openid", "profile", "email", "offline_access"]


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://app.example.org/cb", "must use https (or http on a loopback address)"),
        ("https://app.example.org/cb#x", "must not have a fragment"),
        ("https://user@app.example.org/cb", "must not carry user information"),
        ("/callback", "is not an absolute URI with a host"),
        ("custom:callback", "is not an absolute URI with a host"),
    ],
)
def test_redirect_uris_are_checked_at_registration(cli_env, db, uri, why):
    result = run_cli(["create-client", "bad", "--redirect-uri", uri], cli_env)
    assert_failed_in_one_line(result, f"redirect_uris {uri!r} {why}")
    assert db.clients.count_documents({}) == 0


def test_loopback_http_redirect_uris_are_accepted(cli_env):
    uris = ("http://127.0.0.1:5173/cb", "http://localhost:8080/cb", "http://[::1]/cb")
    for number, uri in enumerate(uris):
        result = run_cli(["create-client", f"native-{number}", "--redirect-uri", uri], cli_env)
        assert result.returncode == 0, result.stderr


def test_a_duplicate_name_exits_1(cli_env):
    assert create(cli_env, "shop").returncode == 0
    assert_failed_in_one_line(create(cli_env, "shop"), "the client name 'shop' is already taken")


def test_clients_lists_them_and_delete_client_ends_their_sessions(cli_env, make_app, make_config):
    config = make_config(keys_dir=None, data_dir=cli_env["TOKENAUTH_DATA_DIR"])
    app = browser_cookies(make_app(config))
    register(app, "alice")
    assert create(cli_env, "shop").returncode == 0
    assert create(cli_env, "spa", "--public").returncode == 0
    listed = run_cli(["clients"], cli_env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.decode().splitlines()
    assert [line.split()[0] for line in lines] == ["shop", "spa"]
    assert "confidential" in lines[0] and "public" in lines[1]
    assert REDIRECT in lines[0]

    client = app.app.components.clients.find_by_name("spa")
    code, verifier = code_for(app, client)
    tokens = exchange(app, client, None, code, verifier).json
    app.get("/userinfo", headers=bearer(tokens["access_token"]), status=200)

    deleted = run_cli(["delete-client", "spa"], cli_env)
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.decode() == "deleted client spa; 1 session(s) ended\n"
    app.app.components.revocations.poll()  # what each worker's poller does every second
    app.get("/userinfo", headers=bearer(tokens["access_token"]), status=401)
    remaining = run_cli(["clients"], cli_env).stdout.decode().splitlines()
    assert [line.split()[0] for line in remaining] == ["shop"]
    assert_failed_in_one_line(run_cli(["delete-client", "spa"], cli_env), "no client is named")


def test_admins_manage_clients_over_http_too(make_app):
    app = browser_cookies(make_app())
    register(app, "alice")
    app.app.components.accounts.register("root", ADMIN_PASSWORD, roles=("user", "admin"))
    admin = bearer(login(app, "root", ADMIN_PASSWORD).json["access_token"])
    body = {"name": "shop", "redirect_uris": [REDIRECT], "scopes": ["openid"]}
    created = app.post_json("/clients", body, headers=admin, status=201)
    assert_documented(created, "/clients", "POST")
    assert created.headers["Cache-Control"] == "no-store"
    client_id, secret = created.json["client_id"], created.json["client_secret"]
    assert created.headers["Location"].endswith(f"/clients/{client_id}")
    shown = app.get(f"/clients/{client_id}", headers=admin, status=200).json
    assert "client_secret" not in shown and shown["scopes"] == ["openid"]
    listed = app.get("/clients", headers=admin, status=200)
    assert_documented(listed, "/clients", "GET")
    assert [c["name"] for c in listed.json["items"]] == ["shop"]
    # What the admin routes check, field by field, and who may call them.
    bad = {"name": "x y", "redirect_uris": ["http://evil.example/cb"]}
    refused = app.post_json("/clients", bad, headers=admin, status=422)
    assert {e["field"] for e in refused.json["errors"]} == {"name", "redirect_uris"}
    app.post_json("/clients", body, headers=admin, status=409)
    user = bearer(login(app, "alice").json["access_token"])
    app.get("/clients", headers=user, status=403)

    client = app.app.components.clients.find(client_id)
    code, verifier = code_for(app, client, scope="openid")
    tokens = exchange(app, client, secret, code, verifier).json
    app.delete(f"/clients/{client_id}", headers=admin, status=204)
    app.get("/userinfo", headers=bearer(tokens["access_token"]), status=401)
    app.get(f"/clients/{client_id}", headers=admin, status=404)
    app.delete(f"/clients/{client_id}", headers=admin, status=404)
