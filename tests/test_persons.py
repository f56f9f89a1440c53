"""The persons collection: create, page, read, update and delete, and who may do what."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from bson import ObjectId
from helpers import bearer

PERSON_FIELDS = {"id", "name", "email", "age", "created_at", "updated_at"}
ADA = {"name": "Ada Lovelace", "email": "ada@example.org", "age": 36}
MISSING_ID = "0123456789abcdef01234567"


@pytest.fixture
def app(make_app, clock):
    """The service on the stepping clock."""
    return make_app(clock=clock)


def stamp(moment: dt.datetime) -> str:
    """A time as the API writes it."""
    return (
        moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}Z"
    )


def assert_problem(response, status: int) -> dict:
    """The response is an RFC 9457 problem with this status; its body."""
    assert response.status_int == status
    assert response.headers["Content-Type"] == "application/problem+json"
    body = response.json
    assert body["status"] == status and body["type"] and body["title"] and body["detail"]
    return body


def create(app, token: str, **fields) -> dict:
    """POST /persons as an admin; the created person."""
    answer = app.post_json("/persons", {**ADA, **fields}, headers=bearer(token))
    assert answer.status_int == 201
    return answer.json


def test_admin_creates_a_person_with_its_location(app, admin_token, clock, db):
    answer = app.post_json("/persons", ADA, headers=bearer(admin_token))
    assert answer.status_int == 201
    assert answer.headers["Content-Type"] == "application/json"
    person = answer.json
    assert answer.headers["Location"] == f"/persons/{person['id']}"
    assert set(person) == PERSON_FIELDS
    assert re.fullmatch(r"[0-9a-f]{24}", person["id"])
    assert {k: person[k] for k in ADA} == ADA
    assert person["created_at"] == person["updated_at"] == stamp(clock.now)
    stored = db.persons.find_one({"_id": ObjectId(person["id"])})
    assert {k: stored[k] for k in ADA} == ADA


def test_age_may_be_left_out_or_null(app, admin_token):
    without_age = app.post_json(
        "/persons", {"name": "Grace", "email": "grace@example.org"}, headers=bearer(admin_token)
    )
    assert without_age.json["age"] is None
    assert create(app, admin_token, age=None)["age"] is None


def test_get_item_returns_the_person(app, admin_token, user_token):
    person = create(app, admin_token)
    answer = app.get(f"/persons/{person['id']}", headers=bearer(user_token))
    assert answer.status_int == 200
    assert answer.json == person


@pytest.mark.parametrize("person_id", [MISSING_ID, "not-an-id", "0123", "z" * 24])
def test_get_item_is_404_for_a_missing_or_malformed_id(app, user_token, person_id):
    assert_problem(app.get(f"/persons/{person_id}", headers=bearer(user_token), status=404), 404)


def walk(app, token: str, query: str) -> list[list[dict]]:
    """Every page of GET /persons?QUERY, following next_cursor (bounded)."""
    pages, cursor = [], None
    for _ in range(10):
        page = app.get(
            f"/persons?{query}" + (f"&cursor={cursor}" if cursor else ""), headers=bearer(token)
        )
        assert page.status_int == 200
        assert set(page.json) == {"items", "next_cursor", "total"}
        pages.append(page.json["items"])
        cursor = page.json["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("paging did not end")


def test_pages_of_three_walk_seven_persons_newest_first(app, admin_token, user_token, clock):
    created = []
    for n in range(7):
        created.append(create(app, admin_token, name=f"Person {n}"))
        clock.advance(0.5 if n % 2 else 0)  # some share a creation time: ties go by id
    pages = walk(app, user_token, "limit=3")
    assert [len(page) for page in pages] == [3, 3, 1]
    expected = sorted(created, key=lambda p: (p["created_at"], p["id"]), reverse=True)
    assert [p for page in pages for p in page] == expected
    assert app.get("/persons?limit=3", headers=bearer(user_token)).json["total"] == 7


def test_a_new_person_comes_first(app, admin_token, user_token, clock):
    create(app, admin_token, name="Older")
    clock.advance(1)
    newest = create(app, admin_token, name="Newer")
    assert app.get("/persons?limit=1", headers=bearer(user_token)).json["items"] == [newest]


def test_by_name_ignores_case_and_pages_with_its_own_cursor(app, admin_token, user_token):
    for name in ["bob", "Alice", "carol", "alice", "Émile", "Dave"]:
        create(app, admin_token, name=name)
    pages = walk(app, user_token, "limit=2&order=name")
    names = [p["name"] for page in pages for p in page]
    assert [n.casefold() for n in names] == ["alice", "alice", "bob", "carol", "dave", "émile"]
    # A cursor belongs to its order: used with the other one, it is refused.
    cursor = app.get("/persons?limit=2&order=name", headers=bearer(user_token)).json["next_cursor"]
    answer = app.get(f"/persons?cursor={cursor}", headers=bearer(user_token), status=422)
    assert [e["field"] for e in answer.json["errors"]] == ["cursor"]
    for order in ("age", "", "NAME"):
        answer = app.get(f"/persons?order={order}", headers=bearer(user_token), status=422)
        assert answer.json["errors"] == [
            {"field": "order", "message": "must be one of newest, name"}
        ]


def test_default_page_holds_fifty(app, admin_token, user_token, db):
    now = dt.datetime.now(dt.UTC)
    db.persons.insert_many(
        [
            {"name": f"P{n}", "email": f"p{n}@example.org", "age": None}
            | {"created_at": now, "updated_at": now}
            for n in range(51)
        ]
    )
    page = app.get("/persons", headers=bearer(user_token)).json
    assert len(page["items"]) == 50
    rest = app.get(f"/persons?cursor={page['next_cursor']}", headers=bearer(user_token)).json
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None


def test_an_empty_collection_is_one_empty_page(app, user_token):
    page = app.get("/persons?limit=200", headers=bearer(user_token))
    assert page.json == {"items": [], "next_cursor": None, "total": 0}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=", "limit"),
        ("limit=%C2%B2", "limit"),  # superscript two: a digit to str.isdigit() only
        ("cursor=nope", "cursor"),
        ("cursor=" + "g" * 24, "cursor"),
        ("cursor=not%20a%20cursor", "cursor"),
    ],
)
def test_bad_paging_is_422_naming_the_field(app, user_token, query, field):
    answer = app.get(f"/persons?{query}", headers=bearer(user_token), status=422)
    body = assert_problem(answer, 422)
    assert [error["field"] for error in body["errors"]] == [field]


def test_patch_changes_only_the_given_fields_and_updated_at(app, admin_token, clock, db):
    person = create(app, admin_token)
    clock.advance(61.5)
    answer = app.patch_json(
        f"/persons/{person['id']}", {"email": "countess@example.org"}, headers=bearer(admin_token)
    )
    assert answer.status_int == 200
    assert answer.json == {
        **person,
        "email": "countess@example.org",
        "updated_at": stamp(clock.now),
    }
    assert answer.json["created_at"] == person["created_at"] != answer.json["updated_at"]
    stored = db.persons.find_one({"_id": ObjectId(person["id"])})
    assert (stored["name"], stored["email"], stored["age"]) == (
        "Ada Lovelace",
        "countess@example.org",
        36,
    )


def test_patch_may_clear_the_age(app, admin_token):
    person = create(app, admin_token)
    answer = app.patch_json(f"/persons/{person['id']}", {"age": None}, headers=bearer(admin_token))
    assert answer.json["age"] is None
    assert answer.json["name"] == person["name"]


def test_patch_with_no_fields_is_422_and_changes_nothing(app, admin_token, db):
    person = create(app, admin_token)
    before = db.persons.find_one()
    answer = app.patch_json(f"/persons/{person['id']}", {}, headers=bearer(admin_token), status=422)
    assert assert_problem(answer, 422)["errors"]
    assert db.persons.find_one() == before


@pytest.mark.parametrize("person_id", [MISSING_ID, "not-an-id"])
def test_patch_of_a_missing_person_is_404(app, admin_token, person_id, db):
    answer = app.patch_json(
        f"/persons/{person_id}", {"name": "Nobody"}, headers=bearer(admin_token), status=404
    )
    assert_problem(answer, 404)
    assert db.persons.count_documents({}) == 0


def test_delete_answers_204_then_404(app, admin_token, db):
    person = create(app, admin_token)
    kept = create(app, admin_token, name="Kept")
    deleted = app.delete(f"/persons/{person['id']}", headers=bearer(admin_token))
    assert deleted.status_int == 204
    assert deleted.body == b""
    assert_problem(
        app.get(f"/persons/{person['id']}", headers=bearer(admin_token), status=404), 404
    )
    assert_problem(
        app.delete(f"/persons/{person['id']}", headers=bearer(admin_token), status=404), 404
    )
    assert_problem(app.delete("/persons/not-an-id", headers=bearer(admin_token), status=404), 404)
    assert [str(doc["_id"]) for doc in db.persons.find()] == [kept["id"]]


def test_a_plain_user_may_read_but_not_write(app, admin_token, user_token, db):
    person = create(app, admin_token)
    before = list(db.persons.find())
    headers = bearer(user_token)
    refusals = [
        app.post_json("/persons", ADA, headers=headers, status=403),
        app.patch_json(f"/persons/{person['id']}", {"name": "X"}, headers=headers, status=403),
        app.delete(f"/persons/{person['id']}", headers=headers, status=403),
    ]
    for answer in refusals:
        assert_problem(answer, 403)
        assert answer.headers["WWW-Authenticate"].startswith(
            'Bearer realm="tokenauth", error="insufficient_scope", error_description="'
        )
    assert list(db.persons.find()) == before
    assert app.get("/persons", headers=headers).json["items"] == [person]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/persons"),
        ("POST", "/persons"),
        ("GET", f"/persons/{MISSING_ID}"),
        ("PATCH", f"/persons/{MISSING_ID}"),
        ("DELETE", f"/persons/{MISSING_ID}"),
    ],
)
def test_every_persons_route_needs_a_token(app, method, path):
    answer = app.request(path, method=method, status=401)
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="tokenauth"'
    assert_problem(answer, 401)
