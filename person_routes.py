"""The persons routes: the application data anyone with a token reads and admins write."""

from __future__ import annotations

from typing import Any

import falcon

import store as store_module
from clock import Clock
from errors import InvalidInput
from mfa import StepUp, require_admin_write
from web import page_params, public_person, read_body


class Persons:
    """The persons collection: anyone with a token reads, admins write (step-up)."""

    def __init__(self, store: store_module.Store, clock: Clock, step_up: StepUp) -> None:
        self.store = store
        self.clock = clock
        self.step_up = step_up

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of persons, newest first or by name, and how many there are."""
        limit, cursor = page_params(req)
        order = req.get_param("order", default="newest")
        if order not in store_module.PERSON_ORDERS:
            raise InvalidInput([("order", "must be one of newest, name")])
        persons, next_cursor = self.store.page_persons(limit=limit, after=cursor, order=order)
        resp.media = {
            "items": [public_person(p) for p in persons],
            "next_cursor": next_cursor,
            "total": self.store.count_persons(),
        }

    @falcon.before(require_admin_write)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Create a person."""
        fields = self._fields(read_body(req, "PersonCreate"))
        fields.setdefault("age", None)
        person = self.store.create_person(fields, now=self.clock())
        resp.status = falcon.HTTP_201
        resp.location = f"/persons/{person['id']}"
        resp.media = public_person(person)

    def on_get_item(self, req: falcon.Request, resp: falcon.Response, person_id: str) -> None:
        """One person."""
        resp.media = public_person(self._found(self.store.find_person(person_id)))

    @falcon.before(require_admin_write)
    def on_patch_item(self, req: falcon.Request, resp: falcon.Response, person_id: str) -> None:
        """Change some fields of a person."""
        fields = self._fields(read_body(req, "PersonPatch"))
        person = self.store.update_person(person_id, fields, now=self.clock())
        resp.media = public_person(self._found(person))

    @falcon.before(require_admin_write)
    def on_delete_item(self, req: falcon.Request, resp: falcon.Response, person_id: str) -> None:
        """Delete a person."""
        if not self.store.delete_person(person_id):
            raise falcon.HTTPNotFound(description="No person has this id")
        resp.status = falcon.HTTP_204

    @staticmethod
    def _fields(body: dict[str, Any]) -> dict[str, Any]:
        fields = {k: body[k] for k in ("name", "email", "age") if k in body}
        if isinstance(fields.get("age"), float):
            fields["age"] = int(fields["age"])  # JSON 42.0 is the integer 42
        return fields

    @staticmethod
    def _found(person: dict[str, Any] | None) -> dict[str, Any]:
        if person is None:
            raise falcon.HTTPNotFound(description="No person has this id")
        return person
