"""The middleware every request walks through: facts, same-origin, body limit, CORS, security
headers."""

from __future__ import annotations

import functools
import io
import ipaddress
import urllib.parse
from collections.abc import Callable

import falcon

from web import HTML_CSP

MAX_BODY = 64 * 1024
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class RequestFacts:
    """What every later step reads off a request, worked out once: the client's address,
    and (once routed) whether the resource answers errors the RFC 6749 way."""

    def __init__(self, trusted_proxies: tuple[str, ...]) -> None:
        self.trusted_proxies = trusted_proxies

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The address throttles and logs name the caller by."""
        req.context.address = client_address(req, self.trusted_proxies)

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params):
        """The error format is the resource's to say (the OAuth endpoints)."""
        req.context.oauth_errors = getattr(resource, "oauth_errors", False)


class SameOriginOnly:
    """403 for any request to the cookie routes that a browser could have sent cross-site."""

    def __init__(self, paths: tuple[str, ...], issuer: str) -> None:
        self.paths = frozenset(paths)
        parts = urllib.parse.urlsplit(issuer)
        self.origin = f"{parts.scheme}://{parts.netloc}".lower()

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse before routing, so that a refused request changes nothing."""
        if req.path not in self.paths:
            return
        problem = self.problem(req)
        if problem:
            raise falcon.HTTPForbidden(description=f"Cross-site request refused: {problem}")

    def problem(self, req: falcon.Request) -> str | None:
        """Why the request may not be the service's own page's; None when it is."""
        # A custom header cannot be sent cross-origin without a CORS preflight we never allow;
        # a plain HTML form cannot send one at all.
        if req.get_header("X-Requested-With") is None:
            return "the X-Requested-With header is required"
        site = req.get_header("Sec-Fetch-Site")
        if site is not None:
            return None if site.lower() == "same-origin" else f"Sec-Fetch-Site is {site}"
        origin = req.get_header("Origin")
        if origin is None or origin.lower().rstrip("/") != self.origin:
            return "without Fetch Metadata, Origin must be the service's own"
        return None


class BodyLimit:
    """413 for bodies over 64 KiB, declared or streamed; media types in any case."""

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params):
        """Refuse large bodies before anything reads them; read media types in any case."""
        if req.content_type:
            # RFC 9110 §8.3.1: type, subtype and parameter names are case-insensitive, and so
            # is the charset; Falcon's media handlers match lower case only. No media type we
            # accept has a case-sensitive parameter (multipart's boundary would be one).
            req.content_type = req.content_type.lower()
        length = req.content_length
        if length is not None:
            if length > MAX_BODY:
                raise falcon.HTTPContentTooLarge(description=f"The body is over {MAX_BODY} bytes")
        elif req.get_header("Transfer-Encoding"):
            # The raw stream: bounded_stream, with no Content-Length, would read nothing.
            data = req.stream.read(MAX_BODY + 1)
            if len(data) > MAX_BODY:
                raise falcon.HTTPContentTooLarge(description=f"The body is over {MAX_BODY} bytes")
            # bounded_stream (which get_media reads) wraps env["wsgi.input"], not req.stream.
            req.stream = req.env["wsgi.input"] = io.BytesIO(data)
            req.env["CONTENT_LENGTH"] = str(len(data))


class CORS:
    """CORS for the Bearer API: listed origins and, through `also_allowed`, the origins of
    registered OAuth clients (a single-page app calling the token endpoint and the API).

    Never with credentials: the API takes tokens in headers, and the cookie routes refuse
    every cross-origin request before this answers anything.
    """

    def __init__(
        self,
        allow_origins: tuple[str, ...] | list[str] = (),
        *,
        expose_headers: tuple[str, ...] | list[str] = (),
        also_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.allow_origins = frozenset(allow_origins)
        self.expose_headers = ", ".join(expose_headers)
        self.also_allowed = also_allowed

    def allows(self, origin: str) -> bool:
        """Whether a page of this origin may read our answers."""
        if origin in self.allow_origins:
            return True
        return self.also_allowed is not None and self.also_allowed(origin)

    def process_response(self, req, resp: falcon.Response, resource, req_succeeded) -> None:
        """Allow listed origins, and tell caches that the Origin header matters."""
        # Without it a shared cache (JWKS is public for 60 s) hands one origin's answer to another.
        resp.append_header("Vary", "Origin")
        origin = req.get_header("Origin")
        if origin is None or not self.allows(origin):
            return
        if resp.get_header("Access-Control-Allow-Origin") is None:
            resp.set_header("Access-Control-Allow-Origin", origin)
        if self.expose_headers:
            resp.set_header("Access-Control-Expose-Headers", self.expose_headers)
        if not (req_succeeded and req.method == "OPTIONS"):
            return
        if not req.get_header("Access-Control-Request-Method"):
            return
        allow = resp.get_header("Allow")
        resp.delete_header("Allow")
        if allow is None:
            for name in ("Allow-Methods", "Allow-Headers", "Max-Age", "Expose-Headers"):
                resp.delete_header(f"Access-Control-{name}")
            resp.delete_header("Access-Control-Allow-Origin")
            return
        resp.set_header("Access-Control-Allow-Methods", allow)
        resp.set_header(
            "Access-Control-Allow-Headers", req.get_header("Access-Control-Request-Headers") or "*"
        )
        resp.set_header("Access-Control-Max-Age", "86400")


class SecurityHeaders:
    """nosniff everywhere; a strict CSP and no referrer on HTML."""

    def process_response(self, req, resp: falcon.Response, resource, req_succeeded) -> None:
        """Add the headers to every answer."""
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        is_html = (resp.content_type or "").startswith("text/html")
        csp = getattr(resp.context, "csp", None) if is_html else None
        resp.set_header("Content-Security-Policy", csp or (HTML_CSP if is_html else API_CSP))
        if is_html:
            resp.set_header("X-Frame-Options", "DENY")


# -- the client's address ---------------------------------------------------------------
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def _networks(trusted_proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in trusted_proxies)


def _address(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # One client, one key: ::ffff:192.0.2.1 is 192.0.2.1.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def client_address(req: falcon.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The client's address: the peer, or behind trusted proxies the right-most untrusted hop."""
    return _client_address(req.remote_addr, req.get_header("X-Forwarded-For"), trusted_proxies)


# Parsing addresses was a third of a cheap request's time in the app (BENCHMARKS.md,
# "Levers"); a connection sends the same peer and header again and again. Bounded: a
# forged X-Forwarded-For can only churn the cache, never grow it.
@functools.lru_cache(maxsize=4096)
def _client_address(
    remote_addr: str, forwarded_for: str | None, trusted_proxies: tuple[str, ...]
) -> str:
    peer = _address(remote_addr)
    networks = _networks(trusted_proxies)
    if peer is None:
        return remote_addr  # not an IP peer (a Unix socket): nothing better to say
    client = peer
    # Each trusted proxy appends the address it saw; anything left of that is hearsay.
    hops = (forwarded_for or "").split(",")
    for hop in reversed(hops):
        if not any(client in network for network in networks):
            break
        forwarded = _address(hop)
        if forwarded is None:
            break
        client = forwarded
    return str(client)
