"""Mail: messages written to an outbox with the request, delivered later by a sender."""

from __future__ import annotations

import datetime as dt
import email.message
import email.utils
import html
import secrets
from typing import Any

import store as store_module
from clock import Clock, utcnow


def compose(
    *, sender: str, to: str, subject: str, lines: list[str], service_name: str
) -> email.message.EmailMessage:
    """A plain-text message with a minimal HTML alternative, naming the service."""
    message = email.message.EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = f"{service_name}: {subject}"
    message["Date"] = email.utils.formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "localhost"
    message["Message-ID"] = email.utils.make_msgid(idstring=secrets.token_hex(8), domain=domain)
    text = "\n\n".join([*lines, f"-- {service_name}"]) + "\n"
    message.set_content(text)
    paragraphs = "".join(f"<p>{_linked(line)}</p>" for line in lines)
    message.add_alternative(
        f'<!doctype html><html><body style="font-family:sans-serif">{paragraphs}'
        f"<p>&mdash; {html.escape(service_name)}</p></body></html>",
        subtype="html",
    )
    return message


def _linked(line: str) -> str:
    """A paragraph of HTML; a line that is a URL becomes a link."""
    escaped = html.escape(line)
    if line.startswith(("http://", "https://")) and " " not in line:
        return f'<a href="{escaped}">{escaped}</a>'
    return escaped


class Outbox:
    """Writes messages to the outbox collection; the sender delivers them."""

    def __init__(
        self,
        store: store_module.Store,
        *,
        sender: str,
        service_name: str,
        issuer: str,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.sender = sender
        self.service_name = service_name
        self.issuer = issuer.rstrip("/")
        self.clock = clock

    def send(self, *, to: str, subject: str, lines: list[str], user_id: str | None) -> None:
        """Keep the message for delivery (durable once this returns); never sends here."""
        message = compose(
            sender=self.sender,
            to=to,
            subject=subject,
            lines=lines,
            service_name=self.service_name,
        )
        now = self.clock()
        doc: dict[str, Any] = {
            "to": to,
            "message": message.as_string(),
            "state": "pending",
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
        }
        if user_id:
            doc["user_id"] = user_id
        self.store.enqueue_mail(doc)

    def client_link(self, page: str, **params: str) -> str:
        """A link to a page of the browser client (the page POSTs; a GET consumes nothing)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.issuer}/#/{page}?{query}"

    def verification(self, *, to: str, code: str, user_id: str) -> None:
        """The code that verifies a new address."""
        self.send(
            to=to,
            subject="confirm your email address",
            lines=[
                "Enter this code to confirm that this address is yours:",
                code,
                "Or open this page, which asks you to confirm:",
                self.client_link("verify-email", code=code),
                "If you did not ask for this, ignore this mail.",
            ],
            user_id=user_id,
        )

    def address_changed(self, *, to: str, username: str, user_id: str) -> None:
        """Tell the old address that the account has a new one."""
        self.send(
            to=to,
            subject="your email address was changed",
            lines=[
                f"The email address of the account {username} was changed, and this address"
                " no longer receives its mail.",
                "If you did not do this, reset your password and contact the administrator.",
            ],
            user_id=user_id,
        )


def expires(clock: Clock, seconds: int) -> dt.datetime:
    """The moment `seconds` from now by `clock`."""
    return clock() + dt.timedelta(seconds=seconds)
