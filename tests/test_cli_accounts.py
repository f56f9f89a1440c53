"""The CLI's account commands: set-password, disable-user, enable-user, sessions, remove-mfa."""

from __future__ import annotations

import re

import pytest
from helpers import ADMIN_PASSWORD, PASSWORD, bearer, login, register
from mfa_helpers import enable_totp, mfa_login, step_clock
from processes import run_cli
from test_cli import assert_failed_in_one_line, create_user
from test_revocation import assert_session_dead
from test_sessions import CHROME, sid_of

NEW_PASSWORD = "cobalt-meadow-lighthouse-52"
WRONG_PASSWORD = {
    "error": "invalid_grant",
    "error_description": "The username or password is incorrect",
}


@pytest.fixture
def cli_env(mongo_uri, db_name, tmp_path) -> dict[str, str]:
    """The CLI's environment for this test's database."""
    return {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
        "TOKENAUTH_KEYS_DIR": str(tmp_path / "keys"),
    }


def seen_by_the_service(app) -> None:
    """One poll of the revocation records the CLI wrote, as each worker does every second."""
    app.app.components.revocations.poll()


def assert_succeeded(result, line: str) -> None:
    """Exit 0 with exactly this line on stdout and nothing on stderr."""
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    assert result.stdout.decode() == line + "\n"


def set_password(environ, username: str, password: str):
    """`tokenauth set-password NAME --password-stdin`."""
    return run_cli(["set-password", username, "--password-stdin"], environ, stdin=password + "\n")


def test_set_password_ends_every_session_and_bumps_the_credential_version(app, cli_env, db):
    register(app, "alice")
    sessions = [login(app, "alice").json for _ in range(2)]
    assert_succeeded(
        set_password(cli_env, "ALICE", NEW_PASSWORD), "password of alice set; 2 session(s) ended"
    )
    seen_by_the_service(app)
    for tokens in sessions:
        assert_session_dead(app, tokens)
    assert login(app, "alice", status=400).json == WRONG_PASSWORD
    login(app, "alice", NEW_PASSWORD, status=200)
    # Logins in flight under the old password can neither open nor refresh a session.
    assert db.users.find_one({"username": "alice"})["credential_version"] == 1


@pytest.mark.parametrize(
    ("password", "why"),
    [("too-short", "password must be at least 15 characters"), ("alice", "password must")],
)
def test_set_password_applies_the_policy(app, cli_env, password, why):
    register(app, "alice")
    tokens = login(app, "alice").json
    assert_failed_in_one_line(set_password(cli_env, "alice", password), why)
    login(app, "alice", status=200)
    app.get("/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})


@pytest.mark.parametrize(
    "args", [["disable-user", "nobody"], ["enable-user", "nobody"], ["sessions", "nobody"]]
)
def test_an_unknown_user_exits_1(cli_env, args):
    assert_failed_in_one_line(run_cli(args, cli_env), "no user is named 'nobody'")


def test_set_password_for_an_unknown_user_exits_1(cli_env):
    assert_failed_in_one_line(set_password(cli_env, "nobody", NEW_PASSWORD), "no user is named")


def test_disable_and_enable_user(app, cli_env, db):
    register(app, "alice")
    tokens = login(app, "alice").json
    assert_succeeded(
        run_cli(["disable-user", "alice"], cli_env), "disabled alice; 1 session(s) ended"
    )
    seen_by_the_service(app)
    assert_session_dead(app, tokens)
    assert login(app, "alice", status=400).json == WRONG_PASSWORD
    assert db.users.find_one({"username": "alice"})["disabled"] is True
    assert_succeeded(run_cli(["enable-user", "alice"], cli_env), "enabled alice")
    login(app, "alice", status=200)


def test_the_last_active_admin_cannot_be_disabled(app, cli_env, db):
    assert create_user(cli_env, "root", ADMIN_PASSWORD, admin=True).returncode == 0
    result = run_cli(["disable-user", "root"], cli_env)
    assert_failed_in_one_line(result, "'root' is the last active admin; make another admin first")
    assert "disabled" not in db.users.find_one({"username": "root"})
    login(app, "root", ADMIN_PASSWORD, status=200)


def test_sessions_lists_one_line_per_live_session(app, cli_env):
    register(app, "alice")
    laptop = login(app, "alice", headers={"User-Agent": CHROME}).json
    ended = login(app, "alice").json
    app.post("/auth/logout", headers={"Authorization": f"Bearer {ended['access_token']}"})
    result = run_cli(["sessions", "alice"], cli_env)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.decode().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
    assert re.fullmatch(
        rf"{re.escape(sid_of(laptop))}  created {stamp}  last used {stamp}"
        r"  192\.0\.2\.10  Chrome 131 on Linux",
        line,
    ), line
    assert PASSWORD not in result.stdout.decode()
    assert laptop["refresh_token"] not in result.stdout.decode()


def test_remove_mfa_takes_every_factor_and_ends_every_session(make_app, cli_env):
    clock = step_clock()
    app = make_app(clock=clock)
    register(app, "alice")
    secret, _ = enable_totp(app, login(app, "alice").json["access_token"], clock)
    tokens = mfa_login(app, secret, clock)
    assert_succeeded(
        run_cli(["remove-mfa", "alice"], cli_env),
        "second factors of alice removed; 2 session(s) ended",
    )
    seen_by_the_service(app)
    assert_session_dead(app, tokens)
    # One step again; the codes are gone with the factor.
    fresh = login(app, "alice", status=200).json["access_token"]
    assert app.get("/users/me/mfa", headers=bearer(fresh)).json == {
        "totp": False,
        "recovery_codes_left": 0,
        "passkeys": [],
    }
