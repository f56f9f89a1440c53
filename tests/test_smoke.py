"""The walk every user takes: register, log in, read persons."""

from helpers import bearer, login, register


def test_register_login_and_read_persons(app, admin_token):
    created = register(app, "alice")
    assert created.status_int == 201
    assert created.headers["Location"].endswith("/users/me")
    assert set(created.json) == {"id", "username", "roles", "created_at"}
    token = login(app, "alice").json["access_token"]
    me = app.get("/users/me", headers=bearer(token))
    assert me.json["username"] == "alice"
    app.post_json(
        "/persons",
        {"name": "Ada", "email": "ada@example.org", "age": 36},
        headers=bearer(admin_token),
    )
    page = app.get("/persons", headers=bearer(token))
    assert [p["name"] for p in page.json["items"]] == ["Ada"]
    assert page.json["next_cursor"] is None
