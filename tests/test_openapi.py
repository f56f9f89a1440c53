"""GET /openapi.json: a valid OpenAPI 3.1 document that describes exactly the service's routes."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from helpers import ADMIN_PASSWORD, PASSWORD, bearer, login
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

import auth
import openapi
import service

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"


def document() -> dict:
    """The document as the repository holds it."""
    return json.loads(openapi.DOCUMENT_FILE.read_text(encoding="utf-8"))


def router_routes(app) -> dict[tuple[str, str], object]:
    """(METHOD, URI template) -> resource, for every responder the Falcon router holds."""
    routes, nodes = {}, list(app._router._roots)
    while nodes:
        node = nodes.pop()
        nodes.extend(node.children)
        if node.resource is None:
            continue
        for method, responder in node.method_map.items():
            # Falcon fills unimplemented methods with its own 405 and OPTIONS responders.
            if getattr(responder, "__self__", None) is node.resource:
                routes[(method, node.uri_template)] = node.resource
    return routes


def client_asset(route: tuple[str, str], resource: object) -> bool:
    """A file of public/ served beside `/`: part of `GET /` (the browser client) in API.md."""
    method, template = route
    return (
        isinstance(resource, service.ClientFile)
        and method == "GET"
        and template != "/"
        and resource.path.parent == service.PUBLIC_DIR
        and template == f"/{resource.path.name}"
    )


def documented_operations() -> dict[tuple[str, str], dict]:
    """(METHOD, path) -> the operation object, for every operation of the document."""
    return {
        (method.upper(), path): operation
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method.upper() in HTTP_METHODS
    }


def schema_named(name: str) -> dict:
    """A component schema that can resolve the document's $refs."""
    whole = document()
    return {**whole["components"]["schemas"][name], "components": whole["components"]}


def response_schema(path: str, method: str, status: int, media_type: str) -> dict:
    """The documented schema of one answer, $refs to components resolvable."""
    whole = document()
    answer = whole["paths"][path][method.lower()]["responses"][str(status)]
    while "$ref" in answer:
        answer = whole["components"]["responses"][answer["$ref"].rsplit("/", 1)[1]]
    return {**answer["content"][media_type]["schema"], "components": whole["components"]}


def assert_matches(instance: object, schema: dict) -> None:
    """The instance satisfies the schema (formats checked, as the service checks them)."""
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


# -- the document itself -------------------------------------------------------------------
def test_the_service_serves_the_document_as_json(app):
    answer = app.get("/openapi.json")
    assert answer.status_int == 200
    assert answer.headers["Content-Type"] == JSON_TYPE
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.json == document()
    assert answer.json["openapi"].startswith("3.1.")


def test_the_document_is_valid_openapi_3_1():
    validate(document(), cls=OpenAPIV31SpecValidator)


def test_the_validator_does_reject_a_broken_document():
    broken = copy.deepcopy(document())
    broken["paths"]["/health"]["get"]["responses"] = "none"
    with pytest.raises(OpenAPIValidationError):
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_every_route_of_the_table_in_api_md_is_documented():
    table = {
        ("POST", "/users"),
        ("GET", "/users/me"),
        ("DELETE", "/users/me"),
        ("GET", "/users/me/events"),
        ("GET", "/users/me/sessions"),
        ("DELETE", "/users/me/sessions"),
        ("DELETE", "/users/me/sessions/{sid}"),
        ("GET", "/auth/policy"),
        ("PUT", "/users/me/password"),
        ("GET", "/users"),
        ("GET", "/users/{user_id}"),
        ("PATCH", "/users/{user_id}"),
        ("GET", "/users/{user_id}/sessions"),
        ("DELETE", "/users/{user_id}/sessions"),
        ("PUT", "/users/me/email"),
        ("POST", "/auth/password-reset"),
        ("POST", "/auth/password-reset/confirm"),
        ("POST", "/users/me/email/verify"),
        ("GET", "/users/me/mfa"),
        ("POST", "/users/me/mfa/totp"),
        ("POST", "/users/me/mfa/totp/confirm"),
        ("DELETE", "/users/me/mfa/totp"),
        ("POST", "/users/me/mfa/recovery-codes"),
        ("POST", "/users/me/passkeys/options"),
        ("POST", "/users/me/passkeys"),
        ("PATCH", "/users/me/passkeys/{passkey_id}"),
        ("DELETE", "/users/me/passkeys/{passkey_id}"),
        ("POST", "/auth/passkey/options"),
        ("POST", "/auth/token"),
        ("POST", "/auth/session"),
        ("DELETE", "/auth/session"),
        ("POST", "/auth/session/refresh"),
        ("POST", "/auth/revoke"),
        ("GET", "/auth/verify"),
        ("POST", "/auth/logout"),
        ("POST", "/auth/introspect"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/authorize"),
        # The provider's own forms (its sign-in, consent and sign-out pages post them), the
        # POST form of the authorization request (OIDC Core §3.1.2.1), and the consents.
        ("POST", "/authorize"),
        ("POST", "/authorize/login"),
        ("POST", "/authorize/consent"),
        ("GET", "/userinfo"),
        ("POST", "/userinfo"),
        ("GET", "/logout"),
        ("POST", "/logout"),
        ("GET", "/users/me/consents"),
        ("DELETE", "/users/me/consents/{client_id}"),
        ("GET", "/clients"),
        ("POST", "/clients"),
        ("GET", "/clients/{client_id}"),
        ("DELETE", "/clients/{client_id}"),
        ("GET", "/persons"),
        ("POST", "/persons"),
        ("GET", "/persons/{person_id}"),
        ("PATCH", "/persons/{person_id}"),
        ("DELETE", "/persons/{person_id}"),
        ("GET", "/health"),
        ("GET", "/openapi.json"),
        ("GET", "/"),
    }
    assert set(documented_operations()) == table


# -- the document against the router -------------------------------------------------------
def test_the_router_and_the_document_hold_the_same_operations(app):
    routes = router_routes(app.app)
    served = {route for route, resource in routes.items() if not client_asset(route, resource)}
    documented = set(documented_operations())
    assert served - documented == set(), "routes the document does not describe"
    assert documented - served == set(), "documented operations the service lacks"


def test_the_walk_sees_a_route_added_to_the_app(app):
    class Extra:
        public_methods = auth.EVERY_METHOD

        def on_get(self, req, resp):
            resp.media = {}

    app.app.add_route("/extra", Extra())
    routes = router_routes(app.app)
    assert ("GET", "/extra") in routes
    assert ("POST", "/extra") not in routes
    assert not client_asset(("GET", "/extra"), routes[("GET", "/extra")])


def test_only_files_of_public_are_left_out_of_the_document(app):
    left_out = {
        template
        for (method, template), resource in router_routes(app.app).items()
        if client_asset((method, template), resource)
    }
    files = {f"/{p.name}" for p in service.PUBLIC_DIR.iterdir() if p.is_file()}
    assert left_out <= files


def test_the_documented_security_is_what_the_service_demands(app):
    """An operation without `security` answers without a token; one with it answers 401."""
    routes = router_routes(app.app)
    for (method, path), operation in documented_operations().items():
        resource = routes[(method, path)]
        public = method in getattr(resource, "public_methods", ())
        assert (not operation.get("security")) == public, f"{method} {path}"
        if not public:
            assert "401" in operation["responses"], f"{method} {path} documents no 401"


def test_documented_request_media_types_are_the_accepted_ones(app, admin_token):
    """A body in a documented media type is read (never 415); any other media type is 415."""
    headers = {**bearer(admin_token), **SAME_ORIGIN}
    person = app.post_json(
        "/persons", {"name": "Ada", "email": "ada@example.org"}, headers=headers
    ).json
    for (method, path), operation in documented_operations().items():
        content = operation.get("requestBody", {}).get("content")
        if not content:
            continue
        url = fill(app, headers, path, person["id"])
        for media_type, body in ((JSON_TYPE, b"{}"), (FORM_TYPE, b"")):
            answer = app.request(
                url,
                method=method,
                body=body,
                headers={**headers, "Content-Type": media_type},
                expect_errors=True,
            )
            if media_type in content:
                # `{}` is a whole body only where the body is optional (passkey options).
                read = (400, 422) if operation["requestBody"].get("required") else (200, 400, 422)
                assert answer.status_int in read, f"{method} {path} {media_type}"
            else:
                assert answer.status_int == 415, f"{method} {path} {media_type}"


# What the browser client's own page sends; the cookie routes refuse requests without it.
SAME_ORIGIN = {"X-Requested-With": "fetch", "Sec-Fetch-Site": "same-origin"}


def fill(app, headers: dict, path: str, person_id: str) -> str:
    """A URL for a documented path: the person given, the caller as the user."""
    me = app.get("/users/me", headers=headers).json["id"]
    return (
        path.replace("{person_id}", person_id)
        .replace("{user_id}", me)
        .replace("{sid}", "no-such-session")
        .replace("{passkey_id}", "no-such-passkey")
    )


# -- the schemas against the service's validation ------------------------------------------
SCHEMA_EXAMPLES = [
    # (method, path, schema, valid body, its status, invalid body, its status, field named)
    (
        "POST",
        "/clients",
        "ClientCreate",
        {"name": "schema-client", "redirect_uris": ["https://app.example.org/cb"]},
        201,
        {"name": "schema-client", "redirect_uris": []},
        422,
        "redirect_uris",
    ),
    (
        "POST",
        "/users",
        "Registration",
        {"username": "schema.user", "password": PASSWORD},
        201,
        {"username": "schema.user", "password": PASSWORD, "admin": True},
        422,
        "admin",
    ),
    (
        "POST",
        "/persons",
        "PersonCreate",
        {"name": "Grace Hopper", "email": "grace@example.org", "age": 85},
        201,
        {"name": "Grace Hopper", "email": "grace@example.org", "age": 151},
        422,
        "age",
    ),
    (
        "PATCH",
        "/persons/{person_id}",
        "PersonPatch",
        {"age": None},
        200,
        {},
        422,
        "body",
    ),
    (
        "POST",
        "/auth/token",
        "TokenRequest",
        {"grant_type": "password", "username": "root-admin", "password": ADMIN_PASSWORD},
        200,
        {"grant_type": "password", "username": ["root-admin"], "password": ADMIN_PASSWORD},
        400,
        "username",
    ),
    (
        "POST",
        "/auth/session",
        "CookieLogin",
        {"username": "root-admin", "password": ADMIN_PASSWORD},
        200,
        {"username": ["root-admin"], "password": ADMIN_PASSWORD},
        400,
        "username",
    ),
    ("POST", "/auth/revoke", "TokenRef", {"token": "not-a-token"}, 200, {"token": 5}, 400, "token"),
    ("POST", "/auth/introspect", "TokenRef", {"token": "not-a-token"}, 200, {}, 400, "token"),
    (
        "PUT",
        "/users/me/password",
        "PasswordChange",
        {"current_password": ADMIN_PASSWORD, "new_password": "a-fresh-and-long-passphrase"},
        204,
        {"current_password": ADMIN_PASSWORD, "new_password": {"$ne": None}},
        422,
        "new_password",
    ),
    (
        "PATCH",
        "/users/{user_id}",
        "UserPatch",
        {"disabled": False, "roles": ["admin", "user"]},
        200,
        {"roles": ["root"]},
        422,
        "roles.0",
    ),
    (
        "PUT",
        "/users/me/email",
        "EmailChange",
        {"email": "root@example.org", "current_password": ADMIN_PASSWORD},
        202,
        {"email": "not an address", "current_password": ADMIN_PASSWORD},
        422,
        "email",
    ),
    # No code was mailed to an admin without an address: a well-formed code is wrong, 422.
    (
        "POST",
        "/users/me/email/verify",
        "EmailVerification",
        {"code": "12345678"},
        422,
        {"code": 12345678},
        422,
        "code",
    ),
    (
        "POST",
        "/auth/password-reset",
        "PasswordResetRequest",
        {"username": "root-admin"},
        202,
        {"username": "root-admin", "email": "root@example.org"},
        422,
        "body",
    ),
    # A token nobody was mailed is refused with 400.
    (
        "POST",
        "/auth/password-reset/confirm",
        "PasswordResetConfirm",
        {"token": "not-a-mailed-token", "new_password": "a-fresh-and-long-passphrase"},
        400,
        {"token": "not-a-mailed-token"},
        422,
        "new_password",
    ),
    # No enrolment is pending: a well-formed code gets the 409 naming `totp`.
    (
        "POST",
        "/users/me/mfa/totp/confirm",
        "TotpConfirmation",
        {"code": "123456"},
        409,
        {"code": 123456},
        422,
        "code",
    ),
    # No creation options were asked for: a well-formed registration names its challenge_id.
    (
        "POST",
        "/users/me/passkeys",
        "PasskeyRegistration",
        {"credential": {}, "name": "Laptop", "challenge_id": "A" * 43},
        422,
        {"credential": "not an object", "name": "Laptop", "challenge_id": "A" * 43},
        422,
        "credential",
    ),
    # The admin has no passkey of that id: a valid new name gets 404.
    (
        "PATCH",
        "/users/me/passkeys/{passkey_id}",
        "PasskeyRename",
        {"name": "Phone"},
        404,
        {"name": ""},
        422,
        "name",
    ),
    (
        "POST",
        "/auth/passkey/options",
        "PasskeyOptionsRequest",
        {},
        200,
        {"mfa_token": 5},
        422,
        "mfa_token",
    ),
    # The only admin may not delete itself: the valid body gets the last-admin 409.
    (
        "DELETE",
        "/users/me",
        "AccountDeletion",
        {"current_password": ADMIN_PASSWORD},
        409,
        {"current_password": ["x"]},
        422,
        "current_password",
    ),
]


# The provider's HTML forms: a person's browser posts them and reads a page back (a wrong
# field shows the form again), so they take forms only and answer no 422.
HTML_FORMS = {
    ("POST", "/authorize"),
    ("POST", "/authorize/login"),
    ("POST", "/authorize/consent"),
    ("POST", "/logout"),
}


def test_every_request_schema_has_examples_here():
    json_bodies = {
        route: operation
        for route, operation in documented_operations().items()
        if JSON_TYPE in operation.get("requestBody", {}).get("content", {})
    }
    documented = {
        operation["requestBody"]["content"][JSON_TYPE]["schema"]["$ref"].rsplit("/", 1)[1]
        for operation in json_bodies.values()
    }
    assert documented == {example[2] for example in SCHEMA_EXAMPLES}
    for method, path in json_bodies:
        assert (method, path) in {(m, p) for m, p, *_ in SCHEMA_EXAMPLES}
    forms = {r for r, o in documented_operations().items() if "requestBody" in o} - set(json_bodies)
    assert forms == HTML_FORMS


@pytest.mark.parametrize(
    ("method", "path", "schema", "valid", "valid_status", "invalid", "invalid_status", "field"),
    SCHEMA_EXAMPLES,
    ids=[f"{m} {p}" for m, p, *_ in SCHEMA_EXAMPLES],
)
def test_the_service_validates_bodies_by_the_documented_schema(
    app, admin_token, method, path, schema, valid, valid_status, invalid, invalid_status, field
):
    headers = {**bearer(admin_token), **SAME_ORIGIN}
    person = app.post_json(
        "/persons", {"name": "Ada", "email": "ada@example.org"}, headers=headers
    ).json
    url = fill(app, headers, path, person["id"])
    assert_matches(valid, schema_named(schema))
    with pytest.raises(jsonschema.ValidationError):
        assert_matches(invalid, schema_named(schema))

    refused = app.request(
        url,
        method=method,
        body=json.dumps(invalid).encode(),
        headers={**headers, "Content-Type": JSON_TYPE},
        expect_errors=True,
    )
    assert refused.status_int == invalid_status, refused.text
    if invalid_status == 422:
        assert field in {error["field"] for error in refused.json["errors"]}
        assert_matches(refused.json, response_schema(path, method, 422, "application/problem+json"))
    else:
        assert refused.json["error"] == "invalid_request"
        assert field in refused.json["error_description"]
        assert_matches(refused.json, response_schema(path, method, 400, JSON_TYPE))

    accepted = app.request(
        url,
        method=method,
        body=json.dumps(valid).encode(),
        headers={**headers, "Content-Type": JSON_TYPE},
        expect_errors=True,
    )
    assert accepted.status_int == valid_status, accepted.text
    if accepted.body:
        media_type = accepted.content_type.split(";")[0]
        assert_matches(accepted.json, response_schema(path, method, valid_status, media_type))


@pytest.mark.parametrize(
    ("query", "valid"),
    [
        ("limit=1", True),
        ("limit=200", True),
        ("limit=0", False),
        ("limit=201", False),
        ("limit=abc", False),
        ("limit=1.5", False),
        ("limit=%C2%B2", False),  # superscript two: str.isdigit() says yes, int() says no
        ("cursor=not%20a%20cursor", False),
        ("cursor=" + "a" * 513, False),
        ("cursor=%2B%2F%3D", False),
    ],
)
def test_paging_parameters_are_validated_as_documented(app, admin_token, query, valid):
    name, _, value = query.partition("=")
    parameter = document()["components"]["parameters"][name]
    instance = value
    if parameter["schema"]["type"] == "integer":
        instance = int(value) if value.isascii() and value.isdigit() else value
    documented_valid = jsonschema.Draft202012Validator(parameter["schema"]).is_valid(instance)
    assert documented_valid == valid
    for route in ("/persons", "/users"):
        answer = app.get(f"{route}?{query}", headers=bearer(admin_token), expect_errors=True)
        assert answer.status_int == (200 if valid else 422), answer.text
        if not valid:
            assert [error["field"] for error in answer.json["errors"]] == [name]


def test_answers_match_their_documented_schemas(app, admin_token):
    headers = bearer(admin_token)
    created = app.post_json("/users", {"username": "shape.user", "password": PASSWORD})
    assert_matches(created.json, response_schema("/users", "post", 201, JSON_TYPE))
    person = app.post_json("/persons", {"name": "Ada", "email": "ada@example.org"}, headers=headers)
    assert_matches(person.json, response_schema("/persons", "post", 201, JSON_TYPE))
    checks = [
        ("/users", "/users", 200),
        ("/users/me", "/users/me", 200),
        ("/persons", "/persons", 200),
        ("/persons/{person_id}", person.headers["Location"], 200),
        ("/health", "/health", 200),
        ("/.well-known/jwks.json", "/.well-known/jwks.json", 200),
        ("/.well-known/oauth-authorization-server", "/.well-known/oauth-authorization-server", 200),
        ("/persons/{person_id}", "/persons/0123456789abcdef01234567", 404),
    ]
    for path, url, status in checks:
        answer = app.get(url, headers=headers, status=status)
        media_type = answer.headers["Content-Type"].split(";")[0]
        assert_matches(answer.json, response_schema(path, "get", status, media_type))
    token = login(app, "shape.user").json
    assert_matches(token, response_schema("/auth/token", "post", 200, JSON_TYPE))
