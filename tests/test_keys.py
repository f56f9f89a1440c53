"""Signing keys: generated once (0600), reused, each algorithm usable, published as a JWKS."""

from __future__ import annotations

import stat

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from helpers import bearer, login, register

from errors import ConfigError
from keys import MIN_HMAC_SECRET
from service import create_app

ASYMMETRIC = {
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "RS256": {"kty": "RSA"},
}
PUBLIC_MEMBERS = {
    "EdDSA": {"x"},
    "ES256": {"x", "y"},
    "RS256": {"n", "e"},
}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


def key_files(config) -> list:
    """The key files in the configured keys dir (not the lock file)."""
    return sorted(p for p in config.keys_dir.iterdir() if p.suffix in (".pem", ".secret"))


def is_rsa(path) -> bool:
    """Whether a key file holds an RSA key (the ID-token key, or RS256's own)."""
    if path.suffix != ".pem":
        return False
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    return isinstance(key, rsa.RSAPrivateKey)


def access_key_files(config) -> list:
    """The files of the keys that sign access tokens (under RS256, the ID-token key too)."""
    rs256 = config.signing_alg == "RS256"
    return [p for p in key_files(config) if rs256 or not is_rsa(p)]


def id_token_key_files(config) -> list:
    """The files of the RS256 keys that sign ID tokens (OIDC Core requires RS256)."""
    return [p for p in key_files(config) if is_rsa(p)]


def mode(path) -> int:
    """The permission bits of a file."""
    return stat.S_IMODE(path.stat().st_mode)


def logged_in_token(app, username: str = "alice") -> str:
    """Register and log in; the access token."""
    register(app, username)
    return login(app, username).json["access_token"]


def test_first_start_generates_an_eddsa_key_readable_only_by_its_owner(make_app, make_config):
    config = make_config()
    assert not config.keys_dir.exists()
    make_app(config)
    (key,) = access_key_files(config)
    (id_key,) = id_token_key_files(config)  # and the RS256 key of ID tokens beside it
    for path in (key, id_key):
        assert path.suffix == ".pem"
        assert mode(path) == 0o600
        assert b"BEGIN PRIVATE KEY" in path.read_bytes()
    assert mode(config.keys_dir) & 0o077 == 0


def test_second_start_reuses_the_key(make_app, make_config):
    config = make_config()
    first = make_app(config)
    token = logged_in_token(first)
    files = key_files(config)
    contents = [f.read_bytes() for f in files]
    second = make_app(config)
    assert key_files(config) == files
    assert [f.read_bytes() for f in files] == contents
    files = access_key_files(config)
    # The second instance verifies what the first signed: the same key, not a new one.
    second.get("/auth/verify", headers=bearer(token), status=204)
    assert jwt.get_unverified_header(token)["kid"] == files[0].stem


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256", "HS256"])
def test_each_algorithm_signs_tokens_that_work(make_app, make_config, algorithm):
    config = make_config(signing_alg=algorithm)
    app = make_app(config)
    token = logged_in_token(app)
    me = app.get("/users/me", headers=bearer(token), status=200)
    assert me.json["username"] == "alice"
    (key,) = access_key_files(config)
    assert key.suffix == (".secret" if algorithm == "HS256" else ".pem")
    assert mode(key) == 0o600
    assert jwt.get_unverified_header(token) == {
        "alg": algorithm,
        "kid": key.stem,
        "typ": "at+jwt",
    }


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
def test_jwks_publishes_the_public_key_that_verifies_tokens(make_app, make_config, algorithm):
    config = make_config(signing_alg=algorithm)
    app = make_app(config)
    token = logged_in_token(app)
    response = app.get("/.well-known/jwks.json", status=200)
    assert response.content_type == "application/json"
    kid = access_key_files(config)[0].stem
    (jwk,) = [k for k in response.json["keys"] if k["kid"] == kid]
    assert {k: jwk[k] for k in ("kid", "alg", "use")} == {
        "kid": kid,
        "alg": algorithm,
        "use": "sig",
    }
    assert ASYMMETRIC[algorithm].items() <= jwk.items()
    assert PUBLIC_MEMBERS[algorithm] <= set(jwk)
    assert not PRIVATE_MEMBERS & set(jwk)
    # A relying party with only the JWKS can check the token.
    public_key = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, public_key, algorithms=[algorithm], audience=config.audience)
    assert claims["username"] == "alice"


def test_jwks_under_hs256_holds_only_the_id_token_key(make_app, make_config):
    # HS256 secrets are never published; the RS256 key of ID tokens is.
    config = make_config(signing_alg="HS256")
    app = make_app(config)
    (jwk,) = app.get("/.well-known/jwks.json", status=200).json["keys"]
    (id_key,) = id_token_key_files(config)
    assert (jwk["kid"], jwk["alg"], jwk["kty"]) == (id_key.stem, "RS256", "RSA")
    assert not PRIVATE_MEMBERS & set(jwk)


def test_hs256_secret_under_32_bytes_is_a_config_error(make_config):
    config = make_config(signing_alg="HS256")
    config.keys_dir.mkdir(parents=True)
    (config.keys_dir / "short.secret").write_bytes(b"s" * (MIN_HMAC_SECRET - 1))
    with pytest.raises(ConfigError) as raised:
        create_app(config, start_background=False)
    assert raised.value.variable == "TOKENAUTH_KEYS_DIR"
    assert str(raised.value).startswith("TOKENAUTH_KEYS_DIR: ")
    assert "short.secret" in str(raised.value)


def test_hs256_secret_of_32_bytes_is_accepted(make_app, make_config):
    config = make_config(signing_alg="HS256")
    config.keys_dir.mkdir(parents=True)
    (config.keys_dir / "exact.secret").write_bytes(b"s" * MIN_HMAC_SECRET)
    app = make_app(config)
    token = logged_in_token(app)
    assert jwt.get_unverified_header(token)["kid"] == "exact"
    claims = jwt.decode(
        token, b"s" * MIN_HMAC_SECRET, algorithms=["HS256"], audience=config.audience
    )
    assert claims["username"] == "alice"


def test_key_of_another_algorithm_is_left_alone(make_app, make_config):
    # Switching algorithm keeps the old key on disk and makes one of the new kind.
    make_app(make_config(signing_alg="EdDSA"))
    config = make_config(signing_alg="ES256")
    app = make_app(config)
    token = logged_in_token(app)
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    # The EdDSA key, the ES256 key, and the one RS256 key of ID tokens both configurations use.
    assert len(key_files(config)) == 3
    assert len(id_token_key_files(config)) == 1
