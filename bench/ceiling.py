"""The ceiling: bare Falcon doing the service's database work with no auth and no middleware.

Served by `gunicorn -c gunicorn.conf.py "bench.ceiling:create_app()"`, so it runs under the
very settings (worker class, workers, threads) the service runs under. Its answers carry the
same bodies as the service's, so that the ratio between the two measures only what auth and
the service's middleware cost.
"""

from __future__ import annotations

import os

import falcon

import store as store_module
from bench.ceiling_grants import CookieRefresh, Grants, TokenEndpoint
from config import Config

# The very functions the service shapes its bodies with: equal work on both sides.
from web import public_person, public_user


class Constant:
    """GET /auth/verify (and /verify, /health): constant JSON, the floor of any answer."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """{"status": "ok"}."""
        resp.media = {"status": "ok"}


class UserById:
    """GET /users/{user_id}: the same find_one by _id as GET /users/me."""

    def __init__(self, store: store_module.Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        """The user, shaped as the service shows it."""
        user = self.store.find_user(user_id)
        if user is None:
            raise falcon.HTTPNotFound()
        resp.media = public_user(user)


class PersonsPage:
    """GET /persons: the same indexed page (newest first, limit + 1) and count as the service's."""

    def __init__(self, store: store_module.Store) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of persons, shaped as the service shows them."""
        limit = req.get_param_as_int("limit", default=50, min_value=1, max_value=200)
        persons, next_cursor = self.store.page_persons(limit=limit, after=None)
        resp.media = {
            "items": [public_person(p) for p in persons],
            "next_cursor": next_cursor,
            "total": self.store.count_persons(),
        }


def create_app() -> falcon.App:
    """The ceiling app over TOKENAUTH_MONGODB_URI / TOKENAUTH_DB_NAME (called after the fork)."""
    config = Config.from_env()
    client = store_module.connect(config.mongodb_uri, timeout_ms=config.db_timeout_ms)
    store = store_module.Store(client[config.db_name])
    app = falcon.App()
    app.add_route("/health", Constant())
    app.add_route("/verify", Constant())
    app.add_route("/auth/verify", Constant())
    # The bench's TOTP secret (its MFA accounts share one): the code is checked, not unsealed.
    grants = Grants(store, os.environ.get("BENCH_TOTP_SECRET"))
    app.add_route("/auth/token", TokenEndpoint(grants))
    app.add_route("/auth/session/refresh", CookieRefresh(grants))
    app.add_route("/users/{user_id}", UserById(store))
    app.add_route("/persons", PersonsPage(store))
    return app
