"""`python -m bench.wsgi`: the app's own time per request, no server, no network.

Calls the service's and the ceiling's WSGI apps directly with the same `GET /auth/verify`
environ (Authorization header included), many times, in this process: microseconds per
request with gunicorn, sockets and the machine's other load mostly out of the picture.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import webtest


def environ(path: str, token: str) -> dict:
    """A WSGI environ as gunicorn builds it for `GET path` with a Bearer token."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": f"Bearer {token}",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def microseconds_per_request(app, path: str, token: str, count: int) -> float:
    """The best of 5 batches of `count` requests, in CPU microseconds per request (CPU time:
    the machine's other load inflates wall time far more)."""

    def start_response(status, headers, exc_info=None):
        return None

    best = float("inf")
    for _ in range(5):
        began = time.process_time()
        for _ in range(count):
            for _chunk in app(environ(path, token), start_response):
                pass
        best = min(best, (time.process_time() - began) / count)
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    """Print the service's and the ceiling's microseconds per GET /auth/verify."""
    from bench import ceiling
    from bench.seed import PASSWORD
    from config import Config
    from embedded import EmbeddedServer
    from service import create_app

    parser = argparse.ArgumentParser(prog="python -m bench.wsgi", description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tokenauth-wsgi-") as scratch:
        database = EmbeddedServer(Path(scratch) / "database")
        uri = database.start()
        try:
            config = Config(mongodb_uri=uri, db_name="wsgi", data_dir=Path(scratch) / "var")
            app = create_app(config, start_background=False)
            client = webtest.TestApp(app, extra_environ={"REMOTE_ADDR": "127.0.0.1"})
            client.post_json("/users", {"username": "wsgi-user", "password": PASSWORD})
            login = {"grant_type": "password", "username": "wsgi-user", "password": PASSWORD}
            token = client.post_json("/auth/token", login).json["access_token"]
            os.environ.update(TOKENAUTH_MONGODB_URI=uri, TOKENAUTH_DB_NAME="wsgi")
            bare = ceiling.create_app()
            ours = microseconds_per_request(app, "/auth/verify", token, args.count)
            floor = microseconds_per_request(bare, "/auth/verify", token, args.count)
            print(f"service {ours:.1f} us, ceiling {floor:.1f} us per GET /auth/verify")
            app.close()
        finally:
            database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
