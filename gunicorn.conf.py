"""gunicorn settings for tokenauth: `gunicorn -c gunicorn.conf.py`."""

import os
import sys

from gunicorn.glogging import Logger

from config import Config
from errors import ConfigError
from keys import KeyRing, SecretBox, rings_of
from web import loggable

try:
    _config = Config.from_env()
    # Checked (the first keys made) here, before gunicorn logs a line: a bad key is one line.
    # Both rings: the service's own and the RS256 one of ID tokens, made once, before forking.
    rings_of(KeyRing(_config.keys_dir, _config.signing_alg, access_ttl=_config.access_ttl))
    SecretBox(_config.keys_dir).load()  # the data key that seals TOTP secrets
except ConfigError as _error:
    print(f"tokenauth: {_error}", file=sys.stderr)
    sys.exit(2)

wsgi_app = "service:create_app()"
bind = [_config.bind]
# gthread: argon2 releases the GIL, so a login hashing does not stall cheap requests.
worker_class = "gthread"
workers = 2
threads = 8
keepalive = 5
timeout = 30
graceful_timeout = 10
# TOKENAUTH_ACCESS_LOG: off by default, since a line a request costs cheap requests most
# (BENCHMARKS.md, "Levers"); on, one line a request on stdout in the format below.
accesslog = "-" if _config.access_log else None
# The access log carries no query string (tokens never travel there, but be safe) and no headers.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"


class EscapingLogger(Logger):
    """gunicorn's logger, with control characters in request data escaped in the access log."""

    @property
    def access_log_enabled(self):
        """Only with an access log: gunicorn also counts logconfig_dict (set below for the auth
        events), and then built every request's log atoms for nothing: a quarter of
        GET /auth/verify's GIL time with the access log off (py-spy, BENCHMARKS.md)."""
        return bool(self.cfg.accesslog)

    def atoms(self, resp, req, environ, request_time):
        """The access-log atoms; a decoded %0a in a path must not start a forged line."""
        atoms = super().atoms(resp, req, environ, request_time)
        return {k: loggable(v) if isinstance(v, str) else v for k, v in atoms.items()}


logger_class = EscapingLogger
# The control socket is one fixed path per user: two instances on a host would fight over it.
control_socket_disable = True
loglevel = "info"
# Auth events (auth.log_event) go to stderr as bare JSON lines, one per event; other
# "tokenauth" messages (warnings, errors) as gunicorn's own lines. gunicorn merges this over
# its defaults one key deep, so every handler and formatter used is named here.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING", "handlers": ["error_console"]},
    "loggers": {
        "tokenauth": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "tokenauth.events": {"level": "INFO", "handlers": ["events"], "propagate": False},
    },
    "handlers": {
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stderr",
        },
        "events": {
            "class": "logging.StreamHandler",
            "formatter": "json_line",
            "stream": "ext://sys.stderr",
        },
    },
    "formatters": {
        "generic": {
            "format": "%(asctime)s [%(process)d] [%(levelname)s] %(message)s",
            "datefmt": "[%Y-%m-%d %H:%M:%S %z]",
        },
        "json_line": {"format": "%(message)s"},
    },
}
# One list of trusted proxies for gunicorn (X-Forwarded-Proto) and for the service's client
# address (X-Forwarded-For): TOKENAUTH_TRUSTED_PROXIES, see docs/SECURITY.md.
forwarded_allow_ips = ",".join(_config.trusted_proxies) or os.environ.get(
    "FORWARDED_ALLOW_IPS", "127.0.0.1,::1"
)

_supervisor = None


def on_starting(server):
    """Before workers fork: start and supervise the embedded DB when no MongoDB is configured."""
    global _supervisor
    if _config.mongodb_uri is None:
        from embedded import EmbeddedServer, Supervisor

        embedded = EmbeddedServer(_config.data_dir)
        # A child that dies comes back on the same port: workers reconnect by themselves.
        _supervisor = Supervisor(embedded, log=server.log)
        try:
            uri = _supervisor.start()
        except RuntimeError as error:  # not installed, or it would not start: say why, once
            print(f"tokenauth: embedded server: {error}", file=sys.stderr)
            sys.exit(2)
        # Workers are forked from here, so they inherit the address of the embedded server.
        os.environ["TOKENAUTH_MONGODB_URI"] = uri
        server.log.info("embedded MongoDB-wire server on %s, data in %s", uri, embedded.storage)


def on_exit(server):
    """Stop the embedded database with the service."""
    if _supervisor is not None:
        _supervisor.stop()
