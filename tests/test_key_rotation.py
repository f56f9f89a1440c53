"""Signing key rotation: the new key signs at once, old keys verify until their tokens expire."""

from __future__ import annotations

import re
import subprocess
import time

import jwt
import pytest
import requests
from helpers import BIN, PASSWORD, bearer, login, register, service_env

ACCESS_TTL = 900
SKEW = 30
PICKUP_DEADLINE = 2.0


def kid_of(token: str) -> str:
    """The `kid` header of a JWT."""
    return jwt.get_unverified_header(token)["kid"]


def published_kids(app) -> set[str]:
    """The kids of the JWKS's access-token keys (the RS256 ID-token key is beside them)."""
    algorithm = app.app.components.keyring.algorithm
    keys = app.get("/.well-known/jwks.json").json["keys"]
    return {key["kid"] for key in keys if key["alg"] == algorithm}


@pytest.fixture
def timed_app(make_app, make_config, clock):
    """The service on the test's clock."""
    app = make_app(make_config(access_ttl=ACCESS_TTL), clock=clock)
    register(app, "alice")
    return app


def test_new_key_signs_and_old_tokens_keep_verifying(timed_app, clock):
    old_token = login(timed_app, "alice").json["access_token"]
    old_kid = kid_of(old_token)
    clock.advance(60)
    new_kid = timed_app.app.components.keyring.rotate()
    new_token = login(timed_app, "alice").json["access_token"]

    assert new_kid != old_kid
    assert kid_of(new_token) == new_kid
    for token in (old_token, new_token):
        timed_app.get("/auth/verify", headers=bearer(token), status=204)
    assert published_kids(timed_app) == {old_kid, new_kid}


def test_old_key_leaves_the_jwks_after_access_ttl_plus_skew(timed_app, clock):
    keyring = timed_app.app.components.keyring
    clock.advance(60)
    last_old_token = login(timed_app, "alice").json["access_token"]
    old_kid = kid_of(last_old_token)
    new_kid = keyring.rotate()  # the same instant: the old key signed a token just now

    clock.advance(ACCESS_TTL + SKEW - 1)
    timed_app.get("/auth/verify", headers=bearer(last_old_token), status=204)
    assert published_kids(timed_app) == {old_kid, new_kid}
    assert keyring.verifying_key(old_kid) is not None

    clock.advance(1)
    assert published_kids(timed_app) == {new_kid}
    assert keyring.verifying_key(old_kid) is None
    timed_app.get("/auth/verify", headers=bearer(last_old_token), status=401)
    fresh = login(timed_app, "alice").json["access_token"]
    timed_app.get("/auth/verify", headers=bearer(fresh), status=204)

    # The next rotation deletes the retired key's file; the current one stays for its tokens.
    newest_kid = keyring.rotate()
    id_kids = {key.kid for key in timed_app.app.components.rings[-1]._keys.values()}
    stems = {path.stem for path in keyring.keys_dir.glob("*.pem")} - id_kids
    assert stems == {new_kid, newest_kid}


def test_rotations_within_one_second_still_make_the_newest_key_sign(timed_app, clock):
    keyring = timed_app.app.components.keyring
    for _ in range(5):
        kid = keyring.rotate()  # the clock does not move: every kid carries the same second
        assert keyring.current.kid == kid
        assert kid_of(login(timed_app, "alice").json["access_token"]) == kid
        assert kid in published_kids(timed_app)


def test_a_running_ring_picks_up_a_key_written_by_another_process(
    make_app, make_config, clock, tmp_path
):
    config = make_config()
    app = make_app(config, clock=clock)
    register(app, "alice")
    other = make_app(config, clock=clock).app.components.keyring  # another worker's ring
    clock.advance(1)
    new_kid = other.rotate()
    assert kid_of(login(app, "alice").json["access_token"]) != new_kid
    assert app.app.components.keyring.refresh() is True  # what each worker's poller runs
    assert kid_of(login(app, "alice").json["access_token"]) == new_kid


def test_deleting_a_compromised_key_file_stops_its_tokens(timed_app, clock):
    keyring = timed_app.app.components.keyring
    old_token = login(timed_app, "alice").json["access_token"]
    timed_app.get("/auth/verify", headers=bearer(old_token), status=204)  # cached as verified
    clock.advance(1)
    keyring.rotate()
    (keyring.keys_dir / f"{kid_of(old_token)}.pem").unlink()
    assert keyring.refresh() is True  # what each worker's poller runs every second
    answer = timed_app.get("/auth/verify", headers=bearer(old_token), status=401)
    assert "unknown key" in answer.headers["WWW-Authenticate"]
    assert kid_of(old_token) not in published_kids(timed_app)


def test_cli_rotation_reaches_running_workers_without_restart(gunicorn_server, tmp_path):
    base = gunicorn_server()
    http = requests.Session()
    assert http.post(f"{base}/users", json={"username": "alice", "password": PASSWORD}).ok
    old_token = password_login(base)
    old_kid = kid_of(old_token)

    rotated = subprocess.run(
        [str(BIN / "tokenauth"), "rotate-key"],
        env=service_env(TOKENAUTH_DATA_DIR=str(tmp_path / "var")),
        capture_output=True,
        text=True,
        timeout=30,
    )
    rotated_at = time.monotonic()
    assert rotated.returncode == 0, rotated.stderr
    match = re.fullmatch(
        r"new signing key (\S+); older keys verify until their tokens expire\n"
        r"new ID-token key (\S+) \(RS256\); older ones verify until their tokens expire\n",
        rotated.stdout,
    )
    assert match, rotated.stdout
    new_kid = match[1]
    assert new_kid != old_kid
    assert (tmp_path / "var" / "keys" / f"{new_kid}.pem").exists()

    delay = seconds_until_new_kid(base, new_kid, since=rotated_at)
    print(f"new key signing on the running service after {delay:.2f} s")
    assert delay < PICKUP_DEADLINE

    # By the deadline every worker signs with the new key and still accepts the old one.
    time.sleep(max(0.0, rotated_at + PICKUP_DEADLINE - time.monotonic()))
    for _ in range(6):
        assert kid_of(password_login(base)) == new_kid
        verified = requests.get(f"{base}/auth/verify", headers=bearer(old_token), timeout=5)
        assert verified.status_code == 204
        jwks = requests.get(f"{base}/.well-known/jwks.json", timeout=5).json()
        assert {key["kid"] for key in jwks["keys"] if key["alg"] == "EdDSA"} == {old_kid, new_kid}
        # The ID-token ring rotated with it: its old and new keys are published too.
        assert {key["kid"] for key in jwks["keys"] if key["alg"] == "RS256"} >= {match[2]}


def password_login(base: str) -> str:
    """An access token for alice from a fresh connection (so that workers take turns)."""
    answer = requests.post(
        f"{base}/auth/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def seconds_until_new_kid(base: str, kid: str, *, since: float) -> float:
    """Seconds from `since` until a login carries `kid`, polling every 100 ms (bounded)."""
    deadline = since + PICKUP_DEADLINE + 3
    while time.monotonic() < deadline:
        if kid_of(password_login(base)) == kid:
            return time.monotonic() - since
        time.sleep(0.1)
    raise AssertionError(f"no login signed by {kid} within {deadline - since:.1f} s")
