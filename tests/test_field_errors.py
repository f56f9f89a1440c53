"""A 422 names every invalid field of the body at once, each with the rule that applies."""

from __future__ import annotations

from helpers import PASSWORD, bearer, login, make_admin, register

from throttle import counter_key


def errors_of(answer) -> list[tuple[str, str]]:
    """The (field, message) pairs of a 422 problem, in order."""
    assert answer.status_int == 422
    assert answer.content_type == "application/problem+json"
    return [(error["field"], error["message"]) for error in answer.json["errors"]]


def test_registration_names_the_username_and_the_password_with_the_configured_rule(app, db):
    answer = app.post_json("/users", {"username": "x", "password": "short"}, status=422)
    assert errors_of(answer) == [
        ("password", "must be at least 15 characters"),
        ("username", "must be 3 to 64 characters"),
    ]
    assert answer.json["detail"] == (
        "password must be at least 15 characters; username must be 3 to 64 characters"
    )
    assert db.users.count_documents({}) == 0


def test_the_password_rule_follows_the_configuration(make_app, make_config):
    app = make_app(make_config(password_min_length=20))
    answer = app.post_json(
        "/users", {"username": "alice", "password": "nineteen-characters"}, status=422
    )
    assert errors_of(answer) == [("password", "must be at least 20 characters")]


def test_schema_and_policy_problems_come_together(app, db):
    body = {"username": "bob:bob", "password": "password", "admin": True}
    answer = app.post_json("/users", body, status=422)
    assert errors_of(answer) == [
        ("admin", "is not an accepted field"),
        ("password", "must be at least 15 characters"),
        ("username", "may contain only letters, digits and . _ - @"),
    ]
    answer = app.post_json("/users", {"username": 42, "password": "correct horse"}, status=422)
    assert errors_of(answer) == [
        ("password", "must be at least 15 characters"),
        ("username", "must be of type string"),
    ]
    assert db.users.count_documents({}) == 0
    assert db.throttle.count_documents({}) == 0  # invalid registrations are not counted


def test_a_common_password_equal_to_nothing_else_is_named_with_its_rule(app):
    answer = app.post_json(
        "/users", {"username": "carol", "password": "1qaz2wsx3edc4rfv"}, status=422
    )
    assert errors_of(answer) == [
        ("password", "is too common: it appears in lists of leaked passwords")
    ]


def test_password_change_names_a_wrong_current_and_a_weak_new_password_at_once(app, db):
    register(app, "alice")
    access = login(app, "alice").json["access_token"]
    before = db.users.find_one()
    answer = app.put_json(
        "/users/me/password",
        {"current_password": "not-the-password-at-all", "new_password": "short"},
        headers=bearer(access),
        status=422,
    )
    assert errors_of(answer) == [
        ("current_password", "is incorrect"),
        ("new_password", "must be at least 15 characters"),
    ]
    assert db.users.find_one() == before
    # The guess at the current password still counts as a failed login.
    assert db.throttle.find_one({"_id": counter_key("login:account", "alice")})["count"] == 1
    login(app, "alice", PASSWORD, status=200)


def test_password_change_with_a_missing_field_names_it_and_judges_the_other(app):
    register(app, "alice")
    access = login(app, "alice").json["access_token"]
    answer = app.put_json(
        "/users/me/password", {"new_password": "alice"}, headers=bearer(access), status=422
    )
    assert errors_of(answer) == [
        ("current_password", "is required"),
        ("new_password", "must be at least 15 characters"),
    ]


def test_a_person_with_every_field_wrong_names_every_field(app, db):
    admin = make_admin(app)
    answer = app.post_json(
        "/persons", {"name": "", "email": "nope", "age": 200}, headers=bearer(admin), status=422
    )
    assert errors_of(answer) == [
        ("age", "must be at most 150"),
        ("email", "must be a valid email address"),
        ("name", "must not be empty"),
    ]
    person = app.post_json(
        "/persons", {"name": "Ada", "email": "ada@example.org"}, headers=bearer(admin)
    ).json
    answer = app.patch_json(
        f"/persons/{person['id']}",
        {"name": "x" * 201, "age": -1, "nickname": "A"},
        headers=bearer(admin),
        status=422,
    )
    assert errors_of(answer) == [
        ("age", "must be at least 0"),
        ("name", "must be at most 200 characters"),
        ("nickname", "is not an accepted field"),
    ]
    assert db.persons.count_documents({}) == 1
