"""HTTP plumbing shared by the resources: problem+json errors, cookies, bodies, paging, views."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import falcon

import openapi
import pages
from auth import challenge
from errors import (
    AuthorizationRefused,
    Conflict,
    InvalidClient,
    InvalidInput,
    LastAdmin,
    MfaRequired,
    ResetRefused,
    RevocationsStale,
    StepUpRequired,
    Throttled,
    Unavailable,
    UntrustedRedirect,
)
from events import describe_device

log = logging.getLogger("tokenauth")

# Deeper bodies are refused as malformed (RFC 8259 §9 lets a parser limit nesting).
MAX_NESTING = 32
RETRY_AFTER_UNAVAILABLE = "5"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
# RFC 9110 renamed these; Python 3.11 still has the older phrases.
STATUS_TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


# -- errors -----------------------------------------------------------------------------
class UnprocessableFields(falcon.HTTPUnprocessableEntity):
    """422 with the RFC 9457 `errors` member naming each invalid field."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__(
            title="Unprocessable Content",
            description="; ".join(f"{field} {message}" for field, message in errors),
        )
        self.errors = [{"field": field, "message": message} for field, message in errors]


class OAuthError(falcon.HTTPError):
    """An RFC 6749 §5.2 error of the token, revocation or introspection endpoint; `extra`
    members join `error` and `error_description` in the body."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str,
        headers=None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, title=error, description=description, headers=headers)
        self.error = error
        self.extra = extra or {}


def _status_code(error: falcon.HTTPError) -> int:
    return int(str(error.status).split()[0])


def serialize_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError) -> None:
    """RFC 9457 problem+json, or the RFC 6749 form where the resource says `oauth_errors`."""
    status = _status_code(error)
    oauth = getattr(req.context, "oauth_errors", False)
    # An OAuth endpoint's own 401 and 403 (mfa_required) are OAuth errors too; those of the
    # layers before it (a cross-site refusal, a missing token) stay problem+json.
    if oauth and (status not in (401, 403) or isinstance(error, OAuthError)):
        code = getattr(error, "error", None) or {
            429: "temporarily_unavailable",
            503: "temporarily_unavailable",
        }.get(status, "invalid_request" if status < 500 else "server_error")
        body: dict[str, Any] = {"error": code}
        if error.description:
            body["error_description"] = error.description
        body.update(getattr(error, "extra", {}))
        resp.content_type = JSON
        resp.set_header("Cache-Control", "no-store")  # RFC 6749 §5.2 answers as §5.1 does
    else:
        body = {
            "type": "about:blank",
            "title": STATUS_TITLES.get(status) or HTTPStatus(status).phrase,
            "status": status,
            "detail": error.description or HTTPStatus(status).description,
        }
        if getattr(error, "errors", None):
            body["errors"] = error.errors
        resp.content_type = "application/problem+json"
    # Serialized here: no media handler is registered for application/problem+json.
    resp.data = json.dumps(body).encode()


def handle_unavailable(req, resp, error: Unavailable, params) -> None:
    """MongoDB is away: 503, and the client may retry."""
    raise falcon.HTTPServiceUnavailable(
        description="The database is unreachable; try again shortly",
        retry_after=int(RETRY_AFTER_UNAVAILABLE),
    )


def handle_conflict(req, resp, error: Conflict, params) -> None:
    """A unique field is taken (or its state forbids the change): 409, naming the field."""
    message = error.message or "is already taken"
    description = f"{error.field} {message}" if error.message else f"That {error.field} {message}"
    conflict = falcon.HTTPConflict(description=description)
    conflict.errors = [{"field": error.field, "message": message}]
    raise conflict


def handle_step_up(req, resp, error: StepUpRequired, params) -> None:
    """The token's sign-in is too old or lacks a second factor: 401 (RFC 9470)."""
    raise falcon.HTTPUnauthorized(
        title="Unauthorized",
        description=error.description,
        challenges=[
            challenge(
                "insufficient_user_authentication",
                error.description,
                max_age=error.max_age,
                acr_values=error.acr_values,
            )
        ],
    )


def handle_mfa_required(req, resp, error: MfaRequired, params) -> None:
    """A right password, and the account has a second factor: 403 mfa_required."""
    raise OAuthError(
        403,
        "mfa_required",
        "This account has a second factor: complete the login with the mfa_token and one of "
        + ", ".join(error.mfa_methods),
        extra={"mfa_token": error.mfa_token, "mfa_methods": error.mfa_methods},
    )


def handle_reset_refused(req, resp, error: ResetRefused, params) -> None:
    """A reset secret that cannot be used: 400, the same whatever the reason."""
    raise falcon.HTTPBadRequest(
        description="This reset link or code is invalid, expired or already used; ask for a new one"
    )


def handle_last_admin(req, resp, error: LastAdmin, params) -> None:
    """No active admin would be left: 409."""
    raise falcon.HTTPConflict(
        description="The last active admin cannot do this; make another admin first"
    )


def handle_invalid_input(req, resp, error: InvalidInput, params) -> None:
    """Fields that break their schema or a rule: 422 naming every one."""
    raise UnprocessableFields(error.errors)


def handle_revocations_stale(req, resp, error: RevocationsStale, params) -> None:
    """This worker cannot vouch that a token was not revoked: 503, try again shortly."""
    raise falcon.HTTPServiceUnavailable(
        description="Revocations could not be checked lately; try again shortly",
        retry_after=int(RETRY_AFTER_UNAVAILABLE),
    )


def handle_throttled(req, resp, error: Throttled, params) -> None:
    """Too many attempts: 429 with Retry-After."""
    raise falcon.HTTPTooManyRequests(
        description=f"Too many attempts; try again in {error.retry_after} seconds",
        retry_after=error.retry_after,
    )


def handle_unexpected(req, resp, error: Exception, params) -> None:
    """A bug: 500, and a log line that names the place but carries no data."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"
    # The message and locals may hold secrets; the type and place are enough to find it.
    log.error(
        "unhandled %s in %s %s at %s",
        type(error).__name__,
        loggable(req.method),
        loggable(req.path),
        where,
    )
    raise falcon.HTTPInternalServerError(description="An unexpected error occurred")


def handle_invalid_client(req, resp, error: InvalidClient, params) -> None:
    """Client authentication failed: 401 invalid_client (RFC 6749 §5.2)."""
    headers = {"WWW-Authenticate": 'Basic realm="tokenauth"'} if error.basic else None
    raise OAuthError(401, "invalid_client", error.description, headers=headers)


def redirect_to(resp: falcon.Response, uri: str, fields: dict[str, str | None]) -> None:
    """303 to `uri` with `fields` added to its query (those that are None left out)."""
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if v is not None})
    resp.status = falcon.HTTP_303
    resp.location = f"{uri}{'&' if urllib.parse.urlsplit(uri).query else '?'}{query}"
    resp.set_header("Cache-Control", "no-store")


def html_page(resp: falcon.Response, page: str, *, form_targets: tuple[str, ...] = ()) -> None:
    """Answer an HTML page, never cached; its forms may lead to `form_targets` origins."""
    resp.content_type = "text/html; charset=utf-8"
    resp.set_header("Cache-Control", "no-store")
    resp.text = page
    if form_targets:
        # A form's answer may redirect to a client: form-action covers redirects too.
        allowed = " ".join(["'self'", *sorted(set(form_targets))])
        resp.context.csp = HTML_CSP.replace("form-action 'self'", f"form-action {allowed}")


def authorization_error_handlers(issuer: str, service_name: str) -> list[tuple[type, Any]]:
    """How the authorization server's refusals are answered: at the client, or on a page."""

    def refused(req, resp, error: AuthorizationRefused, params) -> None:
        # RFC 6749 §4.1.2.1, with the issuer (RFC 9207) against mix-up attacks.
        redirect_to(
            resp,
            error.redirect_uri,
            {
                "error": error.error,
                "error_description": error.description,
                "state": error.state,
                "iss": issuer,
            },
        )

    def untrusted(req, resp, error: UntrustedRedirect, params) -> None:
        # Never a redirect: nothing says the redirect URI is the client's.
        resp.status = falcon.HTTP_400
        html_page(
            resp,
            pages.error_page(
                service_name=service_name, title="Cannot continue", message=error.description
            ),
        )

    return [(AuthorizationRefused, refused), (UntrustedRedirect, untrusted)]


# Every exception the service maps, in one list (Falcon picks the most specific class).
ERROR_HANDLERS = (
    (Exception, handle_unexpected),
    (Unavailable, handle_unavailable),
    (Conflict, handle_conflict),
    (ResetRefused, handle_reset_refused),
    (LastAdmin, handle_last_admin),
    (InvalidInput, handle_invalid_input),
    (RevocationsStale, handle_revocations_stale),
    (Throttled, handle_throttled),
    (StepUpRequired, handle_step_up),
    (MfaRequired, handle_mfa_required),
    (InvalidClient, handle_invalid_client),
)


# C0, DEL, C1 and the Unicode line and paragraph separators: all end a line somewhere.
_CONTROL = {
    code: f"\\u{code:04x}" for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
} | {ord("\\"): "\\\\"}


def loggable(text: str) -> str:
    """Request data made safe for a log line: control characters (newlines) escaped."""
    # A decoded path may hold %0a: unescaped, it would start a forged line of its own.
    return text.translate(_CONTROL)


# -- cookies ----------------------------------------------------------------------------
# The refresh cookie of the first-party browser client (RFC 6265bis `__Host-` prefix: Secure,
# Path=/, no Domain, so no other host or path can set or shadow it).
SESSION_COOKIE = "__Host-tokenauth-session"
_COOKIE_ATTRIBUTES = "HttpOnly; Secure; SameSite=Strict; Path=/"


def session_cookie(token: str, max_age: int) -> str:
    """The Set-Cookie value carrying a refresh token for `max_age` seconds."""
    return f"{SESSION_COOKIE}={token}; {_COOKIE_ATTRIBUTES}; Max-Age={max(0, max_age)}"


CLEARED_SESSION_COOKIE = f"{SESSION_COOKIE}=; {_COOKIE_ATTRIBUTES}; Max-Age=0"

# The provider's sign-in (SSO) cookie: Lax, so that it comes along on the top-level
# navigation from a client's site to /authorize; and the cookie binding a browser to the
# authorization requests it started (the login CSRF defence), Lax for the same reason.
SIGN_IN_COOKIE = "__Host-tokenauth-sso"
BROWSER_COOKIE = "__Host-tokenauth-browser"
_LAX_ATTRIBUTES = "HttpOnly; Secure; SameSite=Lax; Path=/"


def sign_in_cookie(secret: str, max_age: int) -> str:
    """The Set-Cookie value of the sign-in cookie for `max_age` seconds."""
    return f"{SIGN_IN_COOKIE}={secret}; {_LAX_ATTRIBUTES}; Max-Age={max(0, max_age)}"


CLEARED_SIGN_IN_COOKIE = f"{SIGN_IN_COOKIE}=; {_LAX_ATTRIBUTES}; Max-Age=0"


def browser_cookie(value: str) -> str:
    """The Set-Cookie value binding this browser's authorization requests (a session cookie)."""
    return f"{BROWSER_COOKIE}={value}; {_LAX_ATTRIBUTES}"


# -- request helpers --------------------------------------------------------------------
Rules = Callable[[dict[str, Any]], list[tuple[str, str]]]


def read_body(
    req: falcon.Request, schema_name: str, *, form: bool = False, rules: Rules | None = None
) -> dict[str, Any]:
    """The JSON (or form) body, valid against its OpenAPI schema and `rules`; 422 otherwise."""
    body, problems = read_body_problems(req, schema_name, form=form, rules=rules)
    if problems:
        raise InvalidInput(problems)
    return body


def read_body_problems(
    req: falcon.Request, schema_name: str, *, form: bool = False, rules: Rules | None = None
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The body and every invalid field in it: its schema's and `rules`' verdicts together."""
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    allowed = (JSON, FORM) if form else (JSON,)
    if media_type not in allowed:
        raise falcon.HTTPUnsupportedMediaType(
            description=f"Send the body as {' or '.join(allowed)}"
        )
    if media_type == FORM:
        body = _form_fields(req)
    else:
        try:
            body = req.get_media()
        except falcon.MediaNotFoundError:
            raise falcon.HTTPBadRequest(description="The request has no body") from None
        except (falcon.MediaMalformedError, RecursionError):
            raise falcon.HTTPBadRequest(
                description="The body is not valid, UTF-8 encoded JSON"
            ) from None
    if _nesting_depth(body) > MAX_NESTING:
        raise falcon.HTTPBadRequest(description=f"The body nests deeper than {MAX_NESTING} levels")
    problems = openapi.problems(body, schema_name)
    if rules is not None and isinstance(body, dict):
        # A field the schema already refused is not judged again by the rules.
        flagged = {field for field, _ in problems}
        problems += [(field, message) for field, message in rules(body) if field not in flagged]
    return body, sorted(set(problems))


def read_form(req: falcon.Request) -> dict[str, list[str]]:
    """A form body's fields, each with every value it was given; 415 for other media types."""
    media_type = (req.content_type or "").split(";")[0].strip().lower()
    if media_type != FORM:
        raise falcon.HTTPUnsupportedMediaType(description=f"Send the body as {FORM}")
    try:
        pairs = urllib.parse.parse_qsl(
            req.bounded_stream.read().decode("ascii"), keep_blank_values=True, errors="strict"
        )
    except UnicodeDecodeError:
        raise falcon.HTTPBadRequest(description="The form is not valid, UTF-8 encoded") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


def query_fields(req: falcon.Request) -> dict[str, list[str]]:
    """The query string's fields, each with every value it was given, blank ones kept."""
    fields: dict[str, list[str]] = {}
    for name, value in urllib.parse.parse_qsl(req.query_string, keep_blank_values=True):
        fields.setdefault(name, []).append(value)
    return fields


def _form_fields(req: falcon.Request) -> dict[str, Any]:
    # Strict, unlike Falcon's form handler: a %FF taken as U+FFFD would change a password.
    try:
        pairs = urllib.parse.parse_qsl(
            req.bounded_stream.read().decode("ascii"), keep_blank_values=True, errors="strict"
        )
    except UnicodeDecodeError:
        raise falcon.HTTPBadRequest(description="The form is not valid, UTF-8 encoded") from None
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    # A repeated field stays a list, which its schema then refuses by type.
    return {name: values[0] if len(values) == 1 else values for name, values in fields.items()}


def _nesting_depth(value: Any) -> int:
    # Counted without recursion: a body nested a thousand deep must not raise RecursionError.
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,512}")


def page_params(req: falcon.Request) -> tuple[int, str | None]:
    """`limit` (1..200, default 50) and an opaque `cursor` from the query string."""
    errors = []
    raw_limit = req.get_param("limit")
    limit = 50
    if raw_limit is not None:
        # isascii: "²" is a digit to str.isdigit() but not to int().
        if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= 200:
            errors.append(("limit", "must be an integer from 1 to 200"))
        else:
            limit = int(raw_limit)
    cursor = req.get_param("cursor")
    # Opaque: the store tells whether it is one of its own (base64url, as next_cursor is).
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        errors.append(("cursor", "must be the next_cursor of a previous page"))
    if errors:
        raise UnprocessableFields(errors)
    return limit, cursor


def rfc3339(value: dt.datetime) -> str:
    """RFC 3339 UTC with milliseconds, as every time in the API."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_user(user: dict[str, Any], *, admin_view: bool = False) -> dict[str, Any]:
    """A user as the API shows it (to an admin, with `disabled`): never the hash."""
    shown = {
        "id": user["id"],
        "username": user["username"],
        "roles": user["roles"],
        "created_at": rfc3339(user["created_at"]),
    }
    if user.get("email"):
        shown["email"] = user["email"]
        shown["email_verified"] = bool(user.get("email_verified"))
    if admin_view:
        shown["disabled"] = bool(user.get("disabled"))
    return shown


def public_session(session: dict[str, Any], *, current_sid: str | None = None) -> dict[str, Any]:
    """A session as its owner (with `current`) or an admin (without) sees it."""
    shown = {
        "id": session["id"],
        "created_at": rfc3339(session["created_at"]),
        "last_used_at": rfc3339(session.get("last_used_at") or session["created_at"]),
        "address": session.get("address"),
        "device": describe_device(session.get("user_agent")),
    }
    if current_sid is not None:
        shown["current"] = session["id"] == current_sid
    return shown


def public_person(person: dict[str, Any]) -> dict[str, Any]:
    """A person as the API shows it."""
    return {
        "id": person["id"],
        "name": person["name"],
        "email": person["email"],
        "age": person.get("age"),
        "created_at": rfc3339(person["created_at"]),
        "updated_at": rfc3339(person["updated_at"]),
    }


def no_store(resp: falcon.Response) -> None:
    """Tokens must never be cached (RFC 6749 §5.1)."""
    resp.set_header("Cache-Control", "no-store")
    resp.set_header("Pragma", "no-cache")
