"""The example single-page app (tests/assets/spa) served from a second loopback origin."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
OIDC_CLIENT_TS = ASSETS / "oidc-client-ts" / "oidc-client-ts.min.js"
# The app's own pages: its start, the redirect URI and the post-logout redirect URI.
PAGES = ("/", "/callback", "/signed-out")


class SpaServer:
    """A static server for the app, on 127.0.0.1 and a port of its own (another origin than
    the provider's), under a strict CSP; `/config.json` says where the provider is."""

    def __init__(self) -> None:
        if not OIDC_CLIENT_TS.exists():
            raise FileNotFoundError(f"{OIDC_CLIENT_TS} is missing: run `make vendor`")
        self.config: dict[str, str] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self, *, authority: str, client_id: str) -> None:
        """Serve the app for this provider and client."""
        self.config.update(authority=authority, client_id=client_id)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()

    def _files(self) -> dict[str, tuple[str, bytes]]:
        index = ("text/html", (ASSETS / "spa" / "index.html").read_bytes())
        return {
            **dict.fromkeys(PAGES, index),
            "/app.js": ("text/javascript", (ASSETS / "spa" / "app.js").read_bytes()),
            "/oidc-client-ts.min.js": ("text/javascript", OIDC_CLIENT_TS.read_bytes()),
            "/config.json": ("application/json", json.dumps(self.config).encode()),
        }

    def _csp(self) -> str:
        # As strict as tokenauth's own client: scripts of this origin only, no inline code,
        # and fetches to itself and to the provider.
        return (
            "default-src 'none'; script-src 'self'; "
            f"connect-src 'self' {self.config['authority']}; img-src data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        spa = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                files = spa._files()
                kind, body = files.get(path, ("text/plain", b"not found"))
                self.send_response(200 if path in files else 404)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Security-Policy", spa._csp())
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler
