"""gunicorn settings for tokenauth: `gunicorn -c gunicorn.conf.py`."""

import os
import sys

from config import Config, ConfigError
from keys import KeyRing

try:
    _config = Config.from_env()
    # Checked (the first key made) here, before gunicorn logs a line: a bad key is one line.
    KeyRing(_config.keys_dir, _config.signing_alg, access_ttl=_config.access_ttl).load()
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
accesslog = "-"
# The access log carries no query string (tokens never travel there, but be safe) and no headers.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
errorlog = "-"
# The control socket is one fixed path per user: two instances on a host would fight over it.
control_socket_disable = True
loglevel = "info"
# Behind a proxy on another host, set FORWARDED_ALLOW_IPS to its address (see README).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

_embedded = None


def on_starting(server):
    """Before workers fork: start the embedded DB when no MongoDB is configured."""
    global _embedded
    if _config.mongodb_uri is None:
        from store import EmbeddedServer

        _embedded = EmbeddedServer(_config.data_dir)
        uri = _embedded.start()
        # Workers are forked from here, so they inherit the address of the embedded server.
        os.environ["TOKENAUTH_MONGODB_URI"] = uri
        server.log.info("embedded MongoDB-wire server on %s, data in %s", uri, _embedded.storage)


def on_exit(server):
    """Stop the embedded database with the service."""
    if _embedded is not None:
        _embedded.stop()
