"""The `tokenauth` command line: users, passwords, sessions and keys, on the service's wiring."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import embedded
from clients import SCOPES, public_client
from config import Config
from errors import ConfigError, Conflict, InvalidInput, LastAdmin, Unavailable
from events import describe_device, log_event
from keys import KeyRing, id_token_ring
from mail import latest_messages
from service import Components, build_components


class Refused(Exception):
    """A command that cannot be done; its message is the one line shown."""


def parser() -> argparse.ArgumentParser:
    """The commands and their arguments."""
    top = argparse.ArgumentParser(prog="tokenauth", description="tokenauth administration")
    commands = top.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-user", help="create a user, reading the password from stdin"
    )
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="give the user the admin role")
    create.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from stdin"
    )
    reset = commands.add_parser(
        "set-password", help="set a user's password from stdin and end every session"
    )
    reset.add_argument("username")
    reset.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from stdin"
    )
    for name, text in (
        ("disable-user", "refuse the user's logins and end every session"),
        ("enable-user", "let a disabled user log in again"),
        ("sessions", "list the user's live sessions, one a line"),
        ("remove-mfa", "remove the user's second factors and recovery codes; end every session"),
    ):
        commands.add_parser(name, help=text).add_argument("username")
    commands.add_parser("rotate-key", help="make new signing keys current (access and ID tokens)")
    client = commands.add_parser(
        "create-client", help="register an OAuth client of the authorization endpoint"
    )
    client.add_argument("name")
    client.add_argument(
        "--redirect-uri",
        action="append",
        required=True,
        metavar="URI",
        help="an exact redirect URI (https, or http on loopback); repeat for more",
    )
    client.add_argument(
        "--public", action="store_true", help="a public client (SPA, native app): no secret"
    )
    client.add_argument(
        "--first-party", action="store_true", help="one of ours: its people are not asked consent"
    )
    client.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        metavar="SCOPE",
        help=f"a scope it may ask for ({', '.join(SCOPES)}); repeat; default all",
    )
    client.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        metavar="URI",
        help="where /logout may send the person back to; repeat for more",
    )
    commands.add_parser("clients", help="list the OAuth clients, one a line")
    commands.add_parser(
        "delete-client", help="remove an OAuth client; its sessions end"
    ).add_argument("name")
    mail = commands.add_parser(
        "mail", help="the latest messages of the local Maildir (no SMTP configured)"
    )
    mail.add_argument(
        "--status", action="store_true", help="outbox depth and the age of its oldest message"
    )
    return top


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit 0, or 1 with a one-line message on stderr."""
    args = parser().parse_args(argv)

    def fail(message: str) -> int:
        print(f"tokenauth: {message}", file=sys.stderr)
        return 1

    try:
        config = Config.from_env()
        # Keys are checked for every command, so a broken key shows before the service starts.
        ring = KeyRing(config.keys_dir, config.signing_alg, access_ttl=config.access_ttl).load()
        if args.command == "mail" and not args.status:
            print("\n".join(maildir_lines(config)))
            return 0
        if args.command == "rotate-key":
            kid = ring.rotate()
            print(f"new signing key {kid}; older keys verify until their tokens expire")
            id_ring = id_token_ring(ring)
            if id_ring is not ring:
                id_kid = id_ring.rotate()
                print(
                    f"new ID-token key {id_kid} (RS256); older ones verify until their tokens "
                    "expire"
                )
            return 0
        password = None
        if getattr(args, "password_stdin", False):
            password = sys.stdin.readline().rstrip("\r\n")
        with service_components(config) as components:
            components.store.ensure_indexes()
            lines = COMMANDS[args.command](components, args, password)
    except ConfigError as exc:
        return fail(str(exc))
    except InvalidInput as exc:
        return fail("; ".join(f"{field} {message}" for field, message in exc.errors))
    except Conflict:
        if args.command == "create-client":
            return fail(f"the client name {args.name!r} is already taken")
        return fail(f"the username {args.username!r} is already taken")
    except LastAdmin:
        return fail(f"{args.username!r} is the last active admin; make another admin first")
    except Refused as exc:
        return fail(str(exc))
    except Unavailable:
        return fail("the database is unreachable (check TOKENAUTH_MONGODB_URI)")
    except RuntimeError as exc:  # the embedded server could not start
        return fail(str(exc))
    for line in lines:
        print(line)
    return 0


def create_user(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`create-user NAME [--admin] --password-stdin`."""
    roles = ("user", "admin") if args.admin else ("user",)
    user = c.accounts.register(args.username, password or "", roles=roles)
    log_event("user_created", user_id=user["id"], roles=user["roles"], via="cli")
    return [f"created user {user['username']} ({user['id']}) with roles {', '.join(user['roles'])}"]


def set_password(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`set-password NAME --password-stdin`: policy checked, every session ended."""
    user = _user(c, args.username)
    # The version moves first: a login in flight under the old password can then neither
    # open nor refresh a session; the sessions that exist are ended below.
    c.accounts.reset_password(user, password or "")
    ended = c.sessions.revoke_others(user["id"], keep_sid=None)
    log_event("password_set", user_id=user["id"], sessions_revoked=len(ended), via="cli")
    return [f"password of {user['username']} set; {len(ended)} session(s) ended"]


def disable_user(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`disable-user NAME`: logins refused, every session ended."""
    user = _user(c, args.username)
    c.accounts.administer(user["id"], disabled=True)
    ended = c.sessions.revoke_others(user["id"], keep_sid=None)
    log_event("user_disabled", user_id=user["id"], sessions_revoked=len(ended), via="cli")
    return [f"disabled {user['username']}; {len(ended)} session(s) ended"]


def enable_user(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`enable-user NAME`."""
    user = _user(c, args.username)
    c.accounts.administer(user["id"], disabled=False)
    log_event("user_enabled", user_id=user["id"], via="cli")
    return [f"enabled {user['username']}"]


def remove_mfa(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`remove-mfa NAME`: for a user who lost every factor and code; every session ended
    (one may be on the lost device)."""
    user = _user(c, args.username)
    c.factors.remove_all(user["id"])
    ended = c.sessions.revoke_others(user["id"], keep_sid=None)
    log_event("mfa_removed", user_id=user["id"], sessions_revoked=len(ended), via="cli")
    return [f"second factors of {user['username']} removed; {len(ended)} session(s) ended"]


def sessions(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`sessions NAME`: one line per live session, most recently used first."""
    user = _user(c, args.username)
    return [_session_line(s) for s in c.sessions.live(user["id"])]


def maildir_lines(config: Config) -> list[str]:
    """The latest messages of the Maildir the service writes to without SMTP."""
    path = Path(config.data_dir) / "mail"
    if config.smtp_url:
        return ["mail goes to TOKENAUTH_SMTP_URL; there is no local Maildir"]
    messages = latest_messages(path)
    if not messages:
        return [f"no mail in {path}"]
    lines: list[str] = []
    for message in messages:
        lines += [
            f"Date: {message['Date']}",
            f"To: {message['To']}",
            f"Subject: {message['Subject']}",
            "",
            message.get_body(("plain",)).get_content().rstrip(),
            "",
        ]
    return lines


def mail_status(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """The outbox: how many messages wait and how long the oldest has."""
    depth, oldest = c.store.outbox_status()
    age = 0 if oldest is None else int((c.clock() - oldest).total_seconds())
    return [f"outbox depth {depth}, oldest {age} s"]


def create_client(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`create-client NAME --redirect-uri URI... [--public] [--first-party] [--scope S...]`."""
    client, secret = c.clients.create(
        args.name,
        args.redirect_uri,
        public=args.public,
        first_party=args.first_party,
        scopes=args.scope,
        post_logout_redirect_uris=args.post_logout_redirect_uri,
    )
    log_event("client_created", client_id=client["id"], public=args.public, via="cli")
    lines = [f"client_id: {client['id']}"]
    if secret is not None:
        lines.append(f"client_secret: {secret}")  # shown this once: only its hash is kept
    return lines


def list_clients(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`clients`: one line per client."""
    lines = []
    for client in map(public_client, c.clients.all()):
        kind = "public" if client["public"] else "confidential"
        if client["first_party"]:
            kind += ", first-party"
        lines.append(
            f"{client['name']}  {client['client_id']}  {kind}  scopes {' '.join(client['scopes'])}"
            f"  redirect {' '.join(client['redirect_uris'])}"
        )
    return lines


def delete_client(c: Components, args: argparse.Namespace, password: str | None) -> list[str]:
    """`delete-client NAME`: the client, its consents and its sessions go."""
    client = c.clients.find_by_name(args.name)
    if client is None:
        raise Refused(f"no client is named {args.name!r}")
    # Sessions end first: if the deletion then fails, the client is merely signed out.
    ended = c.sessions.end_client(client["id"])
    c.clients.delete(client["id"])
    log_event("client_deleted", client_id=client["id"], sessions_revoked=len(ended), via="cli")
    return [f"deleted client {client['name']}; {len(ended)} session(s) ended"]


def _session_line(session: dict[str, Any]) -> str:
    created = session["created_at"].isoformat(timespec="seconds").replace("+00:00", "Z")
    used = (session.get("last_used_at") or session["created_at"]).isoformat(timespec="seconds")
    device = describe_device(session.get("user_agent")) or "unknown device"
    address = session.get("address") or "unknown address"
    return (
        f"{session['id']}  created {created}  last used {used.replace('+00:00', 'Z')}"
        f"  {address}  {device}"
    )


def _user(c: Components, username: str) -> dict[str, Any]:
    user = c.accounts.find_by_name(username)
    if user is None:
        raise Refused(f"no user is named {username!r}")
    return user


COMMANDS = {
    "create-user": create_user,
    "set-password": set_password,
    "disable-user": disable_user,
    "enable-user": enable_user,
    "sessions": sessions,
    "remove-mfa": remove_mfa,
    "mail": mail_status,
    "create-client": create_client,
    "clients": list_clients,
    "delete-client": delete_client,
}


@contextlib.contextmanager
def service_components(config: Config) -> Iterator[Components]:
    """The service's own wiring, on the database the service would use.

    With no MongoDB configured and no `make run` going, an embedded server is started for
    the duration of the command.
    """
    server = None
    uri = embedded.database_uri(config)
    if uri is None:
        server = embedded.EmbeddedServer(config.data_dir)
        uri = server.start()
    try:
        components = build_components(dataclasses.replace(config, mongodb_uri=uri))
        try:
            yield components
        finally:
            components.store.close()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
