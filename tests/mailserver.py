"""A real SMTP server in the test process: aiosmtpd with STARTTLS (a generated certificate)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import re
import ssl
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from helpers import free_port

USER = "mailer"
SECRET = "smtp-secret-9d1f"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenauth test SMTP")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class _Collect:
    """The aiosmtpd handler: keeps every message it accepts."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.server.lock:
            self.server.received.append(
                {"to": list(envelope.rcpt_tos), "from": envelope.mail_from, "message": message}
            )
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (
        mechanism in ("LOGIN", "PLAIN")
        and auth_data.login == USER.encode()
        and auth_data.password == SECRET.encode()
    )
    return AuthResult(success=ok)


class SmtpServer:
    """aiosmtpd on a loopback port: STARTTLS required, login required; stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.cert_file, key_file = make_certificate(directory)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(self.cert_file, key_file)
        self.port = free_port()
        self.received: list[dict] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    @property
    def url(self) -> str:
        """TOKENAUTH_SMTP_URL for this server, with its login."""
        return f"smtp://{USER}:{SECRET}@127.0.0.1:{self.port}"

    def start(self, *, implicit_tls: bool = False) -> None:
        """Listen (again) on the same port: STARTTLS, or TLS from the first byte (smtps)."""
        tls = {"ssl_context": self.tls} if implicit_tls else {"tls_context": self.tls}
        self.controller = Controller(
            _Collect(self),
            hostname="127.0.0.1",
            port=self.port,
            require_starttls=not implicit_tls,
            authenticator=_authenticate,
            # aiosmtpd counts only STARTTLS as TLS: under smtps the whole session already is.
            auth_require_tls=not implicit_tls,
            ready_timeout=10,
            **tls,
        )
        self.controller.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until start()."""
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def messages_to(self, address: str) -> list[email.message.EmailMessage]:
        """The messages accepted for this address, in order."""
        with self.lock:
            return [m["message"] for m in self.received if address in m["to"]]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list:
        """Wait until `count` messages for the address have arrived; them."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages_to(address)
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(messages)} of {count} messages to {address} arrived")
            time.sleep(0.1)


class PlainSmtpServer:
    """An SMTP server that offers no STARTTLS (so a client must not log in to it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list = []
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append(envelope)
        return "250 OK"

    def stop(self) -> None:
        """Stop listening."""
        self.controller.stop()


def code_in(message: email.message.EmailMessage) -> str:
    """The 8-digit code in a message's plain text."""
    text = message.get_body(("plain",)).get_content()
    return re.search(r"^(\d{8})\r?$", text, re.MULTILINE).group(1)
