"""Property tests: any input gets a 2xx or a 4xx, never a 5xx, and nothing forbidden is stored."""

from __future__ import annotations

import json
import unicodedata
from urllib.parse import quote

import pytest
from helpers import bearer, register
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from openapi import _EMAIL

# One app and database serve every example of a test: hypothesis reuses the fixtures.
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
USERNAME_PUNCTUATION = "._-@"

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=8,
)
# Operator-looking objects deserve their own chance: they must stay input, never a query.
operators = st.dictionaries(
    st.sampled_from(["$ne", "$gt", "$regex", "$where", "$exists", "$in"]), json_scalars, min_size=1
)
username_like = st.text(
    alphabet=st.characters(categories=("L", "N", "M")) | st.sampled_from(USERNAME_PUNCTUATION),
    min_size=1,
    max_size=70,
)
any_text = st.text(max_size=300)


def field(likely: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly plausible values, often anything at all."""
    return likely | any_text | json_values | operators


def body_of(fields: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """Objects with some of these fields (each maybe absent) and maybe an unknown one."""
    return st.fixed_dictionaries(
        {}, optional={**fields, "unexpected": json_values}
    ) | json_values.filter(lambda value: not isinstance(value, dict))


def post_any_json(app, path: str, body, **kwargs):
    """POST a JSON value as raw bytes (webtest would refuse some values)."""
    return app.post(
        path,
        json.dumps(body).encode(),
        content_type="application/json",
        status="*",
        **kwargs,
    )


def assert_not_a_server_error(response) -> None:
    assert response.status_int < 500, response.text
    assert response.status_int in (200, 201, 204) or 400 <= response.status_int < 500


# -- users -----------------------------------------------------------------------------
def assert_stored_usernames_allowed(db) -> None:
    """Every stored username is NFKC, 3 to 64 allowed characters, keyed case-insensitively."""
    for user in db["users"].find():
        name = user["username"]
        assert unicodedata.normalize("NFKC", name) == name
        assert 3 <= len(name) <= 64
        assert all(ch.isalnum() or ch in USERNAME_PUNCTUATION for ch in name)
        assert user["username_key"] == unicodedata.normalize("NFKC", name.casefold())
        assert user["password_hash"].startswith("$argon2id$")


@pytest.fixture
def roomy_app(make_app, make_config):
    """No throttle in the way: these tests send many requests from one address."""
    return make_app(make_config(registration_limit=100_000, login_max_failures=1000))


@SETTINGS
@given(body=body_of({"username": field(username_like), "password": field(st.text(min_size=15))}))
@example(body={"username": {"$ne": None}, "password": {"$ne": None}})
@example(body={"username": "ab\u0301c", "password": "x" * 20})
@example(body={"username": "\ufb03", "password": "tangerine-ocelot-harbour"})
@example(body={"username": "alice\x00", "password": "tangerine-ocelot-harbour"})
def test_any_registration_is_answered_and_stores_only_allowed_usernames(roomy_app, db, body):
    answer = post_any_json(roomy_app, "/users", body)
    assert_not_a_server_error(answer)
    if answer.status_int == 201:
        assert set(answer.json) == {"id", "username", "roles", "created_at"}
        stored = db["users"].find_one({"username": answer.json["username"]})
        assert stored is not None and str(stored["_id"]) == answer.json["id"]
    assert_stored_usernames_allowed(db)


@SETTINGS
@given(username=field(username_like), password=field(any_text))
def test_any_form_registration_is_answered(roomy_app, db, username, password):
    form = {"username": _form_text(username), "password": _form_text(password)}
    assert_not_a_server_error(roomy_app.post("/users", form, status="*"))
    assert_stored_usernames_allowed(db)


def _form_text(value) -> str:
    # A form carries only text: anything else is sent as its JSON text.
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "replace").decode("utf-8")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("\ufb00i", "ffi"),  # two code points as sent, three after NFKC
        ("e\u0301" * 33, "\u00e9" * 33),  # sixty-six as sent, thirty-three after NFKC
        ("\uff21\uff4c\uff49\uff43\uff45", "Alice"),  # full-width letters
    ],
)
def test_username_length_is_counted_after_nfkc(app, sent, stored):
    created = register(app, sent)
    assert created.status_int == 201
    assert created.json["username"] == stored


@pytest.mark.parametrize("sent", ["ab", "\u00e9" * 65, "a" * 65, "al ice", "al/ice"])
def test_usernames_outside_the_rules_are_refused(app, sent):
    refused = register(app, sent, status=422)
    assert [e["field"] for e in refused.json["errors"]] == ["username"]


# -- persons ---------------------------------------------------------------------------
def assert_stored_persons_allowed(db) -> None:
    """Every stored person has a 1..200-character name, a valid email and an age 0..150 or null."""
    for person in db["persons"].find():
        fields = {"_id", "name", "name_key", "email", "age", "created_at", "updated_at"}
        assert set(person) == fields
        assert isinstance(person["name"], str) and 1 <= len(person["name"]) <= 200
        # What "by name" sorts on follows the name through every write.
        assert person["name_key"] == unicodedata.normalize("NFKC", person["name"]).casefold()
        assert isinstance(person["email"], str) and _EMAIL.match(person["email"])
        age = person["age"]
        assert age is None or (type(age) is int and 0 <= age <= 150)


person_fields = {
    "name": field(st.text(min_size=1, max_size=210)),
    "email": field(st.emails() | st.from_regex(r"\A[a-z]{1,8}@[a-z]{1,8}\.[a-z]{2,4}\Z")),
    "age": field(st.none() | st.integers(-5, 160) | st.floats(-5, 160)),
}


@SETTINGS
@given(body=body_of(person_fields))
@example(body={"name": "Ada", "email": "ada@example.org", "age": 36.0})
@example(body={"name": "Ada", "email": "ada@example.org", "age": 1e300})
@example(body={"name": "", "email": "ada@example.org"})
@example(body={"name": "Ada", "email": {"$gt": ""}})
def test_any_person_created_is_answered_and_stored_only_when_valid(app, db, admin_token, body):
    answer = post_any_json(app, "/persons", body, headers=bearer(admin_token))
    assert_not_a_server_error(answer)
    if answer.status_int == 201:
        assert answer.headers["Location"] == f"/persons/{answer.json['id']}"
    assert_stored_persons_allowed(db)


@pytest.fixture
def a_person(app, admin_token) -> str:
    body = {"name": "Ada", "email": "ada@example.org", "age": 36}
    return app.post_json("/persons", body, headers=bearer(admin_token)).json["id"]


@SETTINGS
@given(body=body_of(person_fields), other_id=st.booleans())
@example(body={"age": None}, other_id=False)
@example(body={}, other_id=False)
@example(body={"name": "x" * 201}, other_id=False)
def test_any_person_patch_is_answered_and_leaves_only_valid_persons(
    app, db, admin_token, a_person, body, other_id
):
    person_id = "0" * 24 if other_id else a_person
    answer = app.patch(
        f"/persons/{person_id}",
        json.dumps(body).encode(),
        content_type="application/json",
        headers=bearer(admin_token),
        status="*",
    )
    assert_not_a_server_error(answer)
    if other_id:
        assert answer.status_int in (404, 422)
    assert_stored_persons_allowed(db)
    assert db["persons"].count_documents({}) == 1


@SETTINGS
@given(person_id=st.text(max_size=40).filter(lambda s: "/" not in s and "?" not in s))
def test_any_person_id_is_answered(app, admin_token, person_id):
    answer = app.get(f"/persons/{quote(person_id)}", headers=bearer(admin_token), status="*")
    assert answer.status_int in (200, 404)


# -- token endpoint --------------------------------------------------------------------
token_fields = {
    "grant_type": field(st.sampled_from(["password", "refresh_token", "client_credentials"])),
    "username": field(username_like),
    "password": field(any_text),
    "refresh_token": field(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_")),
    "scope": field(any_text),
}


@pytest.fixture
def app_with_alice(roomy_app):
    register(roomy_app, "alice")
    return roomy_app


@SETTINGS
@given(body=body_of(token_fields))
@example(body={"username": {"$ne": None}, "password": {"$ne": None}})
@example(body={"grant_type": "refresh_token", "refresh_token": {"$gt": ""}})
@example(body={"grant_type": ["password"], "username": "alice", "password": "x"})
def test_any_token_request_is_answered_the_oauth_way(app_with_alice, body):
    answer = post_any_json(app_with_alice, "/auth/token", body)
    assert_not_a_server_error(answer)
    if answer.status_int == 200:
        assert answer.json["token_type"] == "Bearer"
    elif answer.status_int in (400, 429):
        assert set(answer.json) <= {"error", "error_description"}
        assert answer.json["error"] in {
            "invalid_request",
            "invalid_grant",
            "unsupported_grant_type",
            "temporarily_unavailable",
        }


@SETTINGS
@given(form=st.dictionaries(st.sampled_from(list(token_fields)), any_text, max_size=5))
def test_any_form_token_request_is_answered(roomy_app, form):
    form = {k: _form_text(v) for k, v in form.items()}
    assert_not_a_server_error(roomy_app.post("/auth/token", form, status="*"))


@SETTINGS
@given(raw=st.binary(max_size=200))
@pytest.mark.parametrize("path", ["/users", "/auth/token", "/auth/revoke"])
def test_any_bytes_are_answered(roomy_app, path, raw):
    answer = roomy_app.post(path, raw, content_type="application/json", status="*")
    assert_not_a_server_error(answer)
