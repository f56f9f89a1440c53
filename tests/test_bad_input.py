"""Bad input: every malformed, oversized, mistyped or invalid body is refused and writes nothing."""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit

import pymongo
import pytest
import webtest
from helpers import ADMIN_PASSWORD, PASSWORD, bearer, login

from config import Config
from service import create_app
from throttle import counter_key

MAX_BODY = 64 * 1024
PERSON = {"name": "Ada Lovelace", "email": "ada@example.org", "age": 36}
REGISTRATION = {"username": "newcomer", "password": PASSWORD}
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
MISSING_ID = "0123456789abcdef01234567"


def snapshot(db) -> dict[str, list[dict]]:
    """Every document of every collection of the test database, in a stable order."""
    return {
        name: list(db[name].find().sort("_id", 1)) for name in sorted(db.list_collection_names())
    }


def assert_problem(response, status: int) -> dict:
    """An RFC 9457 problem with this status: type, title, status and detail; its body."""
    assert response.status_int == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = response.json
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str) and body["title"]
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def assert_oauth_error(response, status: int, error: str) -> dict:
    """An RFC 6749 §5.2 error: {"error", "error_description"} as application/json."""
    assert response.status_int == status, response.text
    assert response.headers["Content-Type"] == JSON_TYPE
    body = response.json
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error and body["error_description"]
    return body


def nested(depth: int) -> str:
    """A JSON array nested `depth` levels deep."""
    return "[" * depth + "]" * depth


class World:
    """A service with an admin, a user and one person, and the database as it stood."""

    def __init__(self, app: webtest.TestApp, db: pymongo.database.Database) -> None:
        self.app = app
        self.db = db
        self.admin = bearer(self.token_of("root-admin", ADMIN_PASSWORD, roles=("user", "admin")))
        self.user = bearer(self.token_of("alice", PASSWORD, roles=("user",)))
        created = app.post_json("/persons", PERSON, headers=self.admin)
        self.person_path = created.headers["Location"]
        self.before = snapshot(db)

    def token_of(self, username: str, password: str, *, roles: tuple[str, ...]) -> str:
        """Create a user as the CLI does and log in."""
        self.app.app.components.accounts.register(username, password, roles=roles)
        return login(self.app, username, password).json["access_token"]

    def send(self, method: str, path: str, body: bytes, content_type: str | None, who: str | None):
        """One request, whatever its status."""
        headers = dict(getattr(self, who)) if who else {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        path = path.replace("{person}", self.person_path)
        return self.app.request(path, method=method, body=body, headers=headers, expect_errors=True)

    def assert_unchanged(self) -> None:
        """Nothing was written anywhere (a write is undone after failing, for the next test)."""
        after = snapshot(self.db)
        if after != self.before:
            self.restore()
        assert after == self.before

    def restore(self) -> None:
        """Put every collection back as it was."""
        for name in self.db.list_collection_names():
            self.db[name].delete_many({})
            if self.before.get(name):
                self.db[name].insert_many(self.before[name])


@pytest.fixture(scope="module")
def world(mongo_uri, tmp_path_factory) -> Iterator[World]:
    """One service and database for the module: no request here may change it."""
    data = tmp_path_factory.mktemp("bad-input")
    name = f"test_{secrets.token_hex(6)}"
    config = Config(
        mongodb_uri=mongo_uri,
        db_name=name,
        data_dir=data / "var",
        keys_dir=data / "keys",
        db_timeout_ms=1500,
    )
    service = create_app(config, start_background=False)
    client = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        app = webtest.TestApp(service, extra_environ={"REMOTE_ADDR": "192.0.2.10"})
        yield World(app, client[name])
    finally:
        service.close()
        client.drop_database(name)
        client.close()


# Each case: (method, path, who, content type, raw body).
ROUTES_WITH_JSON_BODIES = [
    ("POST", "/users", None),
    ("POST", "/persons", "admin"),
    ("PATCH", "{person}", "admin"),
    ("PUT", "/users/me/password", "user"),
]


@pytest.mark.parametrize(("method", "path", "who"), ROUTES_WITH_JSON_BODIES)
@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": ',
        b"{'name': 'single quotes'}",
        b'{"name": "x",}',
        b'{"name": "\xff\xfe"}',  # not UTF-8
        '{"name": "x"}'.encode("utf-16"),
        b"",
        nested(5000).encode(),  # deeper than any parser should recurse
        b'{"name": ' + nested(900).encode() + b', "email": "a@b.org"}',
    ],
    ids=[
        "truncated",
        "single-quotes",
        "trailing-comma",
        "invalid-utf8",
        "utf16",
        "empty",
        "nested-5000",
        "nested-900",
    ],
)
def test_malformed_json_is_400_and_writes_nothing(world, method, path, who, raw):
    assert_problem(world.send(method, path, raw, JSON_TYPE, who), 400)
    world.assert_unchanged()


def test_form_with_percent_escapes_that_are_not_utf8_is_400(world):
    # %FF is no UTF-8; taking it as U+FFFD would quietly change the password registered.
    body = f"username=newcomer&password={PASSWORD}%FF%FE".encode()
    assert_problem(world.send("POST", "/users", body, FORM_TYPE, None), 400)
    raw = b"username=newcomer\xff&password=" + PASSWORD.encode()
    assert_problem(world.send("POST", "/users", raw, FORM_TYPE, None), 400)
    world.assert_unchanged()


@pytest.mark.parametrize(("method", "path", "who"), ROUTES_WITH_JSON_BODIES)
def test_a_body_over_64_kib_is_413_and_writes_nothing(world, method, path, who):
    raw = json.dumps({"name": "x" * MAX_BODY}).encode()
    assert_problem(world.send(method, path, raw, JSON_TYPE, who), 413)
    world.assert_unchanged()


def test_a_body_of_exactly_64_kib_is_read_and_judged(world):
    filler = "x" * (MAX_BODY - len(json.dumps({**PERSON, "name": ""})))
    raw = json.dumps({**PERSON, "name": filler}).encode()
    assert len(raw) == MAX_BODY
    body = assert_problem(world.send("POST", "/persons", raw, JSON_TYPE, "admin"), 422)
    assert [e["field"] for e in body["errors"]] == ["name"]
    world.assert_unchanged()


@pytest.mark.parametrize(
    ("method", "path", "who", "content_type", "raw"),
    [
        ("POST", "/users", None, "text/plain", json.dumps(REGISTRATION).encode()),
        ("POST", "/users", None, "multipart/form-data; boundary=b", b"--b--\r\n"),
        ("POST", "/users", None, None, json.dumps(REGISTRATION).encode()),
        ("POST", "/users", None, "application/xml", b"<user/>"),
        ("POST", "/persons", "admin", "text/plain", json.dumps(PERSON).encode()),
        ("POST", "/persons", "admin", FORM_TYPE, b"name=Ada&email=ada%40example.org"),
        ("PATCH", "{person}", "admin", "text/plain", b'{"name": "X"}'),
        ("PATCH", "{person}", "admin", "application/merge-patch+json", b'{"name": "X"}'),
        ("PUT", "/users/me/password", "user", FORM_TYPE, b"current_password=x&new_password=y"),
    ],
)
def test_other_media_types_are_415_and_write_nothing(world, method, path, who, content_type, raw):
    assert_problem(world.send(method, path, raw, content_type, who), 415)
    world.assert_unchanged()


def test_multipart_registration_is_415(world):
    answer = world.app.post(
        "/users", params=REGISTRATION, upload_files=[("avatar", "a.png", b"\x89PNG")], status=415
    )
    assert_problem(answer, 415)
    world.assert_unchanged()


INVALID_REGISTRATIONS = [
    ({"username": 123, "password": PASSWORD}, {"username"}),
    ({"username": ["newcomer"], "password": PASSWORD}, {"username"}),
    ({"username": "newcomer", "password": None}, {"password"}),
    ({"password": PASSWORD}, {"username"}),
    ({"username": "newcomer"}, {"password"}),
    ({**REGISTRATION, "roles": ["admin"]}, {"roles"}),
    ({**REGISTRATION, "password_hash": "$argon2id$..."}, {"password_hash"}),
    ({"username": {"$ne": None}, "password": {"$ne": None}}, {"username", "password"}),
    ({"username": {"$regex": ".*"}, "password": PASSWORD}, {"username"}),
    ({"username": "ab", "password": PASSWORD}, {"username"}),
    ({"username": "a" * 65, "password": PASSWORD}, {"username"}),
    ({"username": "new comer", "password": PASSWORD}, {"username"}),
    ({"username": "$where", "password": PASSWORD}, {"username"}),
    ({"username": "new\u0000comer", "password": PASSWORD}, {"username"}),
    ({"username": "new\ud800comer", "password": PASSWORD}, {"username"}),
    ({"username": "newcomer", "password": "short-one"}, {"password"}),
    ({"username": "newcomer", "password": "x" * 257}, {"password"}),
    ({"username": "newcomer", "password": "mailcreated5240"}, {"password"}),
    ({"username": "newcomer-longname", "password": "NEWCOMER-LONGNAME"}, {"password"}),
    ({"username": "newcomer", "password": "pass\udfffword-long-enough"}, {"password"}),
]


@pytest.mark.parametrize(("body", "fields"), INVALID_REGISTRATIONS)
def test_invalid_registration_is_422_naming_the_field(world, body, fields):
    answer = world.send("POST", "/users", json.dumps(body).encode(), JSON_TYPE, None)
    problem = assert_problem(answer, 422)
    assert {error["field"] for error in problem["errors"]} == fields
    assert all(error["message"] for error in problem["errors"])
    world.assert_unchanged()


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        (
            b"username[$ne]=x&password[$ne]=x",
            {"username", "password", "username[$ne]", "password[$ne]"},
        ),
        (f"username=newcomer&password={PASSWORD}&roles=admin".encode(), {"roles"}),
        (f"username=newcomer&username=other&password={PASSWORD}".encode(), {"username"}),
        (b"username=newcomer", {"password"}),
        (b"", {"username", "password"}),
    ],
)
def test_invalid_form_registration_is_422_naming_the_field(world, raw, fields):
    problem = assert_problem(world.send("POST", "/users", raw, FORM_TYPE, None), 422)
    assert {error["field"] for error in problem["errors"]} == fields
    world.assert_unchanged()


INVALID_PERSONS = [
    ({**PERSON, "name": {"$gt": ""}}, {"name"}),
    ({**PERSON, "email": {"$exists": True}}, {"email"}),
    ({**PERSON, "age": {"$gte": 0}}, {"age"}),
    ({**PERSON, "age": -1}, {"age"}),
    ({**PERSON, "age": 151}, {"age"}),
    ({**PERSON, "age": 1.5}, {"age"}),
    ({**PERSON, "age": True}, {"age"}),
    ({**PERSON, "age": "36"}, {"age"}),
    ({**PERSON, "age": 1e300}, {"age"}),
    ({**PERSON, "name": ""}, {"name"}),
    ({**PERSON, "name": "x" * 201}, {"name"}),
    ({**PERSON, "name": None}, {"name"}),
    ({**PERSON, "name": "Ada\ud800"}, {"name"}),
    ({**PERSON, "email": "not-an-address"}, {"email"}),
    ({**PERSON, "email": "ada@example"}, {"email"}),
    ({**PERSON, "email": "ada@@example.org"}, {"email"}),
    ({**PERSON, "email": "ada lovelace@example.org"}, {"email"}),
    ({**PERSON, "email": "@example.org"}, {"email"}),
    ({"email": "ada@example.org"}, {"name"}),
    ({"name": "Ada"}, {"email"}),
    ({**PERSON, "_id": MISSING_ID}, {"_id"}),
    ({**PERSON, "created_at": "2000-01-01T00:00:00Z"}, {"created_at"}),
    ({"$set": PERSON}, {"$set", "name", "email"}),
]


@pytest.mark.parametrize(("body", "fields"), INVALID_PERSONS)
def test_invalid_new_person_is_422_naming_the_field(world, body, fields):
    answer = world.send("POST", "/persons", json.dumps(body).encode(), JSON_TYPE, "admin")
    problem = assert_problem(answer, 422)
    assert {error["field"] for error in problem["errors"]} == fields
    world.assert_unchanged()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": {"$gt": ""}}, {"name"}),
        ({"age": -1}, {"age"}),
        ({"age": 151}, {"age"}),
        ({"age": 1.5}, {"age"}),
        ({"age": False}, {"age"}),
        ({"name": ""}, {"name"}),
        ({"name": "x" * 201}, {"name"}),
        ({"email": "not-an-address"}, {"email"}),
        ({"$set": {"name": "X"}}, {"$set"}),
        ({"id": MISSING_ID}, {"id"}),
        ({"updated_at": "2000-01-01T00:00:00Z"}, {"updated_at"}),
        ([{"op": "replace", "path": "/name", "value": "X"}], {"body"}),
        ("X", {"body"}),
        (None, {"body"}),
    ],
)
def test_invalid_person_update_is_422_naming_the_field(world, body, fields):
    answer = world.send("PATCH", "{person}", json.dumps(body).encode(), JSON_TYPE, "admin")
    problem = assert_problem(answer, 422)
    assert {error["field"] for error in problem["errors"]} == fields
    world.assert_unchanged()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"current_password": {"$ne": None}, "new_password": "x" * 20}, {"current_password"}),
        ({"current_password": PASSWORD, "new_password": {"$ne": None}}, {"new_password"}),
        ({"current_password": PASSWORD}, {"new_password"}),
        ({"current_password": PASSWORD, "new_password": "short-one"}, {"new_password"}),
        ({"current_password": PASSWORD, "new_password": "mailcreated5240"}, {"new_password"}),
        ({"current_password": PASSWORD, "new_password": "x" * 20, "user_id": "x"}, {"user_id"}),
    ],
)
def test_invalid_password_change_is_422_naming_the_field(world, body, fields):
    answer = world.send("PUT", "/users/me/password", json.dumps(body).encode(), JSON_TYPE, "user")
    problem = assert_problem(answer, 422)
    assert {error["field"] for error in problem["errors"]} == fields
    world.assert_unchanged()


def test_wrong_current_password_is_422_and_counts_as_a_failed_login(world):
    body = {"current_password": "not-the-password-at-all", "new_password": "x" * 20}
    try:
        answer = world.send(
            "PUT", "/users/me/password", json.dumps(body).encode(), JSON_TYPE, "user"
        )
        problem = assert_problem(answer, 422)
        assert {error["field"] for error in problem["errors"]} == {"current_password"}
        assert list(world.db.users.find()) == world.before["users"]
        # A guess at the current password is a failed authentication: the throttle counts it.
        counter = world.db.throttle.find_one({"_id": counter_key("login:account", "alice")})
        assert counter["count"] == 1
    finally:
        world.restore()


@pytest.mark.parametrize(
    ("path", "who", "content_type", "raw", "status", "error"),
    [
        ("/auth/token", None, JSON_TYPE, b'{"username": ', 400, "invalid_request"),
        ("/auth/token", None, JSON_TYPE, b'{"username": "\xff"}', 400, "invalid_request"),
        ("/auth/token", None, JSON_TYPE, nested(5000).encode(), 400, "invalid_request"),
        (
            "/auth/token",
            None,
            JSON_TYPE,
            json.dumps({"username": {"$ne": None}, "password": {"$ne": None}}).encode(),
            400,
            "invalid_request",
        ),
        (
            "/auth/token",
            None,
            JSON_TYPE,
            json.dumps(
                {"username": "alice", "password": "x", "extra": json.loads(nested(900))}
            ).encode(),
            400,
            "invalid_request",
        ),
        (
            "/auth/token",
            None,
            FORM_TYPE,
            b"grant_type=client_credentials",
            400,
            "unsupported_grant_type",
        ),
        ("/auth/token", None, "text/plain", b"grant_type=password", 415, "invalid_request"),
        ("/auth/token", None, JSON_TYPE, b"x" * (MAX_BODY + 1), 413, "invalid_request"),
        (
            "/auth/revoke",
            None,
            JSON_TYPE,
            json.dumps({"token": {"$ne": None}}).encode(),
            400,
            "invalid_request",
        ),
        ("/auth/revoke", None, JSON_TYPE, b"[", 400, "invalid_request"),
        (
            "/auth/introspect",
            "admin",
            JSON_TYPE,
            json.dumps({"token": 5}).encode(),
            400,
            "invalid_request",
        ),
    ],
)
def test_oauth_endpoints_refuse_bad_input_the_rfc_6749_way(
    world, path, who, content_type, raw, status, error
):
    answer = world.send("POST", path, raw, content_type, who)
    assert_oauth_error(answer, status, error)
    world.assert_unchanged()


def test_good_bodies_pass_the_same_routes(app, admin_token):
    """The refusals above are about the input: the same routes accept good bodies."""
    assert app.post_json("/users", REGISTRATION).status_int == 201
    assert app.post("/users", {"username": "formcomer", "password": PASSWORD}).status_int == 201
    created = app.post_json("/persons", PERSON, headers=bearer(admin_token))
    location = created.headers["Location"]
    patched = app.patch_json(location, {"age": 37.0}, headers=bearer(admin_token))
    assert patched.status_int == 200 and patched.json["age"] == 37


def test_unknown_route_is_404_problem(world):
    for path in ("/nope", "/users/someone", "/persons/x/y", "/auth", "/users/me/"):
        assert_problem(world.send("GET", path, b"", None, "admin"), 404)
    assert_problem(world.send("POST", "/nope", b"{}", JSON_TYPE, None), 404)
    world.assert_unchanged()


@pytest.mark.parametrize(
    ("method", "path", "who", "allow"),
    [
        ("POST", "/health", None, {"GET", "OPTIONS"}),
        ("DELETE", "/openapi.json", None, {"GET", "OPTIONS"}),
        ("PUT", "{person}", "admin", {"GET", "PATCH", "DELETE", "OPTIONS"}),
        ("DELETE", "/users", "admin", {"GET", "POST", "OPTIONS"}),
        ("POST", "/users/me", "user", {"DELETE", "GET", "OPTIONS"}),
        ("GET", "/users/me/password", "user", {"PUT", "OPTIONS"}),
    ],
)
def test_wrong_method_is_405_with_allow(world, method, path, who, allow):
    answer = world.send(method, path, b"", None, who)
    assert_problem(answer, 405)
    assert {m.strip() for m in answer.headers["Allow"].split(",")} == allow
    world.assert_unchanged()


def test_a_chunked_body_over_64_kib_is_413_on_a_real_server(gunicorn_server, db):
    base = gunicorn_server(args=("--workers", "1"))
    before = snapshot(db)
    status, headers, body = post_chunked(
        base, "/users", json.dumps({"username": "x" * 70_000}).encode()
    )
    assert status == 413
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 413
    assert snapshot(db) == before
    # A chunked body under the limit is read whole.
    status, _, body = post_chunked(base, "/users", json.dumps(REGISTRATION).encode())
    assert status == 201, body
    assert json.loads(body)["username"] == "newcomer"


def post_chunked(base: str, path: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """POST with Transfer-Encoding: chunked and no Content-Length."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        chunks = (raw[i : i + 8192] for i in range(0, len(raw), 8192))
        connection.request(
            "POST", path, body=chunks, headers={"Content-Type": JSON_TYPE}, encode_chunked=True
        )
        answer = connection.getresponse()
        headers = {k.lower(): v for k, v in answer.getheaders()}
        return answer.status, headers, answer.read()
    finally:
        connection.close()
