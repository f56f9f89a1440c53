"""Mail: messages written to an outbox with the request, delivered later by a sender."""

from __future__ import annotations

import datetime as dt
import email.message
import email.policy
import email.utils
import html
import logging
import mailbox
import secrets
import smtplib
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

import store as store_module
from clock import Clock, utcnow
from errors import Unavailable

log = logging.getLogger("tokenauth.mail")


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

    def send(
        self, *, to: str, subject: str, lines: list[str], user_id: str | None, keep: bool = True
    ) -> None:
        """Keep the message for delivery (durable once this returns); never sends here.

        With `keep` false the same work is spent and nothing is kept to send (a decoy).
        """
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
            "from": self.sender,
            "message": message.as_bytes(policy=email.policy.SMTP),
            "state": "pending",
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
        }
        if user_id:
            doc["user_id"] = user_id
        if not keep:
            doc.update(to="", message=b"", state="dropped", expires_at=now)
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

    def reset(
        self, *, to: str, username: str, secret: str, ttl: int, user_id: str, keep: bool = True
    ) -> None:
        """The link and code that reset a password (`keep` false: a decoy, see send)."""
        self.send(
            to=to,
            subject="reset your password",
            lines=[
                f"Someone asked to reset the password of the account {username}.",
                "Open this page to choose a new password:",
                self.client_link("reset", token=secret),
                "Or enter this code on the page that resets passwords:",
                secret,
                f"The link and code work once, for {ttl // 60} minutes. If you did not ask"
                " for this, ignore this mail: your password stays as it is.",
            ],
            user_id=user_id,
            keep=keep,
        )

    def password_changed(self, *, to: str, username: str, user_id: str) -> None:
        """Tell the owner that the password was reset."""
        self.send(
            to=to,
            subject="your password was changed",
            lines=[
                f"The password of the account {username} was reset, and every session of it"
                " was ended.",
                "If you did not do this, reset it again at once and contact the administrator.",
            ],
            user_id=user_id,
        )


# -- delivery -------------------------------------------------------------------------------
class Transport(Protocol):
    """Where the sender hands a message over."""

    def deliver(self, sender: str, to: str, message: bytes) -> None:
        """Hand the message over, or raise."""


class MaildirTransport:
    """Writes each message to a local Maildir (`make run` without SMTP)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def deliver(self, sender: str, to: str, message: bytes) -> None:
        """Add the message to the Maildir."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mailbox.Maildir(self.path, create=True).add(message)


class SmtpTransport:
    """Sends through `smtp://[user:pass@]host[:port]` (STARTTLS) or `smtps://` (implicit TLS)."""

    TIMEOUT = 30

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.implicit_tls = parts.scheme == "smtps"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (465 if self.implicit_tls else 587)
        self.username = urllib.parse.unquote(parts.username) if parts.username else None
        self.password = urllib.parse.unquote(parts.password or "")

    def deliver(self, sender: str, to: str, message: bytes) -> None:
        """Send one message; smtplib.SMTPException or OSError when it cannot."""
        # Certificates are checked against the system store (SSL_CERT_FILE honoured).
        context = ssl.create_default_context()
        if self.implicit_tls:
            connection = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.TIMEOUT, context=context
            )
        else:
            connection = smtplib.SMTP(self.host, self.port, timeout=self.TIMEOUT)
        with connection as smtp:
            if not self.implicit_tls:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                elif self.username:
                    # Never a password over a connection that is not encrypted.
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            if self.username:
                smtp.login(self.username, self.password)
            smtp.sendmail(sender, [to], message)


def transport_for(smtp_url: str | None, data_dir: Path) -> Transport:
    """SMTP when a URL is configured, else the Maildir under data_dir/mail."""
    if smtp_url:
        return SmtpTransport(smtp_url)
    return MaildirTransport(Path(data_dir) / "mail")


class Sender:
    """Delivers the outbox: claims each message atomically, sends it, retries with backoff."""

    LEASE = dt.timedelta(minutes=5)  # a claim older than this belonged to a sender that died
    KEEP_SENT = dt.timedelta(days=7)
    MAX_BACKOFF = 60.0
    BATCH = 50

    def __init__(
        self,
        store: store_module.Store,
        transport: Transport,
        *,
        interval: float = 1.0,
        max_backoff: float | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.transport = transport
        self.interval = interval
        self.max_backoff = self.MAX_BACKOFF if max_backoff is None else max_backoff
        self.clock = clock
        self._failing: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """Send what is due, up to BATCH messages; how many were sent."""
        sent = 0
        for _ in range(self.BATCH):
            claim = secrets.token_hex(12)
            now = self.clock()
            doc = self.store.claim_mail(claim, now=now, lease_until=now + self.LEASE)
            if doc is None:
                break
            if self._deliver(doc, claim):
                sent += 1
            else:
                break  # the server is away: the rest waits for the next round
        return sent

    def _deliver(self, doc: dict[str, Any], claim: str) -> bool:
        try:
            self.transport.deliver(doc["from"], doc["to"], bytes(doc["message"]))
        except (smtplib.SMTPException, OSError) as exc:
            backoff = min(self.max_backoff, 2.0 ** doc.get("attempts", 0))
            retry_at = self.clock() + dt.timedelta(seconds=backoff)
            self.store.mail_failed(doc["_id"], claim, retry_at=retry_at, error=type(exc).__name__)
            self._report_failure(type(exc).__name__)
            return False
        self.store.mail_sent(doc["_id"], claim, now=self.clock(), keep=self.KEEP_SENT)
        if self._failing is not None:
            self._failing = None
            log.warning("mail delivery recovered")
        return True

    def _report_failure(self, kind: str) -> None:
        # Once per kind of failure, with what waits: an outage is visible, not noisy.
        if self._failing == kind:
            return
        self._failing = kind
        depth, oldest = self.store.outbox_status()
        age = 0 if oldest is None else (self.clock() - oldest).total_seconds()
        log.warning(
            "mail delivery failed: %s; outbox depth %d, oldest %.0f s (retrying with backoff)",
            kind,
            depth,
            age,
        )

    def start(self) -> None:
        """Start the sender's own thread (a slow SMTP server must not hold up revocations)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="tokenauth-mail", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=SmtpTransport.TIMEOUT + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Unavailable:
                pass  # the database is away: the outbox waits, /health says so
            except Exception as exc:  # the loop must outlive any bug it meets
                log.warning("mail sender failed: %s", type(exc).__name__)


def latest_messages(path: Path, count: int = 5) -> list[email.message.EmailMessage]:
    """The newest `count` messages of a Maildir, oldest first."""
    if not Path(path).exists():
        return []
    box = mailbox.Maildir(path, factory=None, create=False)
    keyed = []
    for key in box.iterkeys():
        message = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
        keyed.append((email.utils.parsedate_to_datetime(message["Date"]), key, message))
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in keyed[-count:]]
