"""An access token never outlives the refresh session it belongs to."""

import datetime as dt

import jwt
from helpers import login, register


def test_access_token_issued_near_session_end_expires_with_the_session(
    make_app, make_config, clock
):
    app = make_app(make_config(refresh_ttl=1000, access_ttl=900), clock=clock)
    register(app, "alice")
    first = login(app, "alice").json
    login_time = clock()
    clock.advance(700)
    body = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    refreshed = app.post_json("/auth/token", body).json
    claims = jwt.decode(refreshed["access_token"], options={"verify_signature": False})
    session_end = int((login_time + dt.timedelta(seconds=1000)).timestamp())
    assert claims["exp"] == session_end
    assert refreshed["expires_in"] == 300
