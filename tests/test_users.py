"""POST /users, GET /users/me and GET /users: registration, uniqueness, the caller, paging."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from helpers import PASSWORD, ManualClock, bearer, login, register

# "Alice" in fullwidth letters (U+FF21...); NFKC makes it "Alice".
FULLWIDTH_ALICE = "\uff21\uff4c\uff49\uff43\uff45"
USER_FIELDS = {"id", "username", "roles", "created_at"}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
PHC_ARGON2ID = re.compile(
    r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$"
)
INSUFFICIENT_SCOPE = re.compile(
    r'^Bearer realm="tokenauth", error="insufficient_scope", error_description="[^"]+"$'
)


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem with this status; its body."""
    assert response.status_int == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def test_register_answers_201_with_the_user_and_its_location(make_app):
    clock = ManualClock(dt.datetime(2031, 5, 6, 7, 8, 9, 250_000, tzinfo=dt.UTC))
    app = make_app(clock=clock)
    created = register(app, "alice")
    assert created.status_int == 201
    assert created.headers["Location"] == "/users/me"
    assert created.headers["Content-Type"] == "application/json"
    assert set(created.json) == USER_FIELDS
    assert created.json["username"] == "alice"
    assert created.json["roles"] == ["user"]
    assert re.fullmatch(r"[0-9a-f]{24}", created.json["id"])
    assert created.json["created_at"] == "2031-05-06T07:08:09.250Z"


def test_register_created_at_is_rfc3339_utc_with_the_real_clock(app):
    created = register(app, "alice").json
    assert RFC3339_UTC.match(created["created_at"])
    stamp = dt.datetime.fromisoformat(created["created_at"].replace("Z", "+00:00"))
    assert abs(dt.datetime.now(dt.UTC) - stamp) < dt.timedelta(minutes=5)


def test_register_accepts_a_form_urlencoded_body(app, db):
    created = app.post("/users", {"username": "bob.form", "password": PASSWORD})
    assert created.status_int == 201
    assert created.headers["Location"] == "/users/me"
    assert created.json["username"] == "bob.form"
    assert db.users.count_documents({"username": "bob.form"}) == 1
    assert login(app, "bob.form").status_int == 200


def test_stored_user_has_an_argon2id_hash_and_never_the_password(app, db):
    user_id = register(app, "alice").json["id"]
    stored = db.users.find_one({"username": "alice"})
    assert str(stored["_id"]) == user_id
    match = PHC_ARGON2ID.match(stored["password_hash"])
    assert match, stored["password_hash"]
    memory, time_cost, parallelism = map(int, match.groups())
    assert memory >= 19456 and time_cost >= 2 and parallelism >= 1
    assert PASSWORD not in repr(stored)


@pytest.mark.parametrize("second", ["alice", "ALICE", FULLWIDTH_ALICE, FULLWIDTH_ALICE.lower()])
def test_a_username_differing_only_in_case_or_width_is_taken(app, db, second):
    first = register(app, "Alice")
    assert first.json["username"] == "Alice"
    duplicate = register(app, second, status=409)
    body = assert_problem(duplicate, 409)
    assert "username" in body["detail"]
    assert db.users.count_documents({}) == 1
    # Every spelling logs in to the one user, shown in the form given first.
    token = login(app, second).json["access_token"]
    me = app.get("/users/me", headers=bearer(token)).json
    assert me["username"] == "Alice"
    assert me["id"] == first.json["id"]


def test_a_fullwidth_username_is_stored_in_its_nfkc_form(app):
    created = register(app, FULLWIDTH_ALICE).json
    assert created["username"] == "Alice"
    assert_problem(register(app, "alice", status=409), 409)


def test_users_me_shows_the_caller_and_no_hash(app):
    created = register(app, "alice").json
    register(app, "bob.other")
    token = login(app, "alice").json["access_token"]
    me = app.get("/users/me", headers=bearer(token))
    assert me.status_int == 200
    assert me.headers["Content-Type"] == "application/json"
    assert me.json == created
    assert "argon2" not in me.text and "hash" not in me.text


def test_users_me_without_a_token_is_401_with_the_bare_challenge(app):
    answer = app.get("/users/me", status=401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'
    assert_problem(answer, 401)


def test_admin_pages_users_sorted_by_id_with_a_cursor(app, admin_token):
    for name in ("user.one", "user.two", "user.three", "user.four"):
        register(app, name)
    seen, sizes, cursor = [], [], None
    for _ in range(5):
        query = "/users?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = app.get(query, headers=bearer(admin_token))
        assert page.status_int == 200
        assert set(page.json) == {"items", "next_cursor"}
        sizes.append(len(page.json["items"]))
        seen.extend(page.json["items"])
        cursor = page.json["next_cursor"]
        if cursor is None:
            break
    assert sizes == [2, 2, 1]
    ids = [user["id"] for user in seen]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert {user["username"] for user in seen} == {
        "root-admin",
        "user.one",
        "user.two",
        "user.three",
        "user.four",
    }
    assert all(set(user) == USER_FIELDS | {"disabled"} for user in seen)  # an admin's view


def test_users_list_defaults_to_one_page_of_everyone(app, admin_token):
    register(app, "alice")
    page = app.get("/users", headers=bearer(admin_token)).json
    assert [u["username"] for u in page["items"]] == ["root-admin", "alice"]
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=201", "limit=abc", "limit=%C2%B2", "cursor=nope"]
)
def test_users_list_refuses_bad_paging_naming_the_field(app, admin_token, query):
    answer = app.get(f"/users?{query}", headers=bearer(admin_token), status=422)
    body = assert_problem(answer, 422)
    assert [error["field"] for error in body["errors"]] == [query.split("=")[0]]


def test_users_list_is_403_insufficient_scope_for_a_plain_user(app, user_token):
    answer = app.get("/users", headers=bearer(user_token), status=403)
    assert INSUFFICIENT_SCOPE.match(answer.headers["WWW-Authenticate"]), answer.headers[
        "WWW-Authenticate"
    ]
    assert assert_problem(answer, 403)["detail"]


def test_users_list_without_a_token_is_401(app):
    answer = app.get("/users", status=401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'
    assert_problem(answer, 401)
