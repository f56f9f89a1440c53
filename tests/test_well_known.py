"""The public documents: RFC 7517 key set and RFC 8414 server metadata."""

from __future__ import annotations

import jwt
import pytest
from helpers import assert_documented, login, register

ISSUER = "https://auth.example.test/tenant"


@pytest.mark.parametrize(
    ("algorithm", "key_type"), [("EdDSA", "OKP"), ("ES256", "EC"), ("RS256", "RSA")]
)
def test_jwks_publishes_the_key_that_verifies_access_tokens(
    make_app, make_config, algorithm, key_type
):
    app = make_app(make_config(signing_alg=algorithm))
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    answer = app.get("/.well-known/jwks.json", status=200)
    assert_documented(answer, "/.well-known/jwks.json", "GET")
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [k for k in answer.json["keys"] if k["kid"] == kid]
    assert (jwk["kid"], jwk["alg"], jwk["use"], jwk["kty"]) == (kid, algorithm, "sig", key_type)
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk), "private key material published"
    # What a resource server does: pick the key by kid, verify with the published algorithm.
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(token, key, algorithms=[jwk["alg"]], audience="tokenauth")
    assert claims["username"] == "alice"


def test_jwks_under_hs256_publishes_only_the_id_token_key(make_app, make_config):
    app = make_app(make_config(signing_alg="HS256"))
    answer = app.get("/.well-known/jwks.json", status=200)
    assert [(k["alg"], k["kty"], k["use"]) for k in answer.json["keys"]] == [
        ("RS256", "RSA", "sig")
    ]
    assert_documented(answer, "/.well-known/jwks.json", "GET")


def test_metadata_names_the_endpoints_under_the_issuer(make_app, make_config):
    app = make_app(make_config(issuer=ISSUER))
    answer = app.get("/.well-known/oauth-authorization-server", status=200)
    assert_documented(answer, "/.well-known/oauth-authorization-server", "GET")
    metadata = answer.json
    assert metadata["issuer"] == ISSUER
    assert {
        name: metadata[name]
        for name in (
            "token_endpoint",
            "jwks_uri",
            "revocation_endpoint",
            "introspection_endpoint",
        )
    } == {
        "token_endpoint": f"{ISSUER}/auth/token",
        "jwks_uri": f"{ISSUER}/.well-known/jwks.json",
        "revocation_endpoint": f"{ISSUER}/auth/revoke",
        "introspection_endpoint": f"{ISSUER}/auth/introspect",
    }
    assert metadata["authorization_endpoint"] == f"{ISSUER}/authorize"
    assert metadata["grant_types_supported"] == [
        "authorization_code",
        "refresh_token",
        "urn:tokenauth:params:oauth:grant-type:mfa",
        "urn:tokenauth:params:oauth:grant-type:passkey",
        "password",
    ]
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_metadata_endpoints_are_the_ones_served(app):
    metadata = app.get("/.well-known/oauth-authorization-server").json
    path = len(metadata["issuer"])
    assert app.get(metadata["jwks_uri"][path:], status=200).json["keys"]
    token_endpoint = metadata["token_endpoint"][path:]
    assert app.post(token_endpoint, {"grant_type": "password"}, status=400).json["error"]
    assert app.post(metadata["revocation_endpoint"][path:], {"token": "x"}, status=200)
    assert app.post(metadata["introspection_endpoint"][path:], {"token": "x"}, status=401)


def test_access_tokens_carry_the_issuer_of_the_metadata(make_app, make_config):
    app = make_app(make_config(issuer=ISSUER))
    register(app, "alice")
    token = login(app, "alice").json["access_token"]
    metadata = app.get("/.well-known/oauth-authorization-server").json
    assert jwt.decode(token, options={"verify_signature": False})["iss"] == metadata["issuer"]


def test_well_known_documents_need_no_token(app):
    for path in ("/.well-known/jwks.json", "/.well-known/oauth-authorization-server"):
        answer = app.get(path, status=200)
        assert answer.content_type == "application/json"
        assert "WWW-Authenticate" not in answer.headers
