"""The `tokenauth` command line: create-user and rotate-key, on the service's own wiring."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from collections.abc import Iterator

import embedded
from config import Config
from errors import ConfigError, Conflict, InvalidInput, Unavailable
from events import log_event
from keys import KeyRing
from service import Components, build_components


def main(argv: list[str] | None = None) -> int:
    """`tokenauth create-user NAME [--admin] --password-stdin` and `tokenauth rotate-key`."""
    parser = argparse.ArgumentParser(prog="tokenauth", description="tokenauth administration")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-user", help="create a user, reading the password from stdin"
    )
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="give the user the admin role")
    create.add_argument(
        "--password-stdin", action="store_true", required=True, help="read the password from stdin"
    )
    commands.add_parser("rotate-key", help="make a new signing key current")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"tokenauth: {message}", file=sys.stderr)
        return 1

    try:
        config = Config.from_env()
        # Keys are checked for every command, so a broken key shows before the service starts.
        ring = KeyRing(config.keys_dir, config.signing_alg, access_ttl=config.access_ttl).load()
        if args.command == "rotate-key":
            kid = ring.rotate()
            print(f"new signing key {kid}; older keys verify until their tokens expire")
            return 0
        password = sys.stdin.readline().rstrip("\r\n")
        with service_components(config) as components:
            components.store.ensure_indexes()
            roles = ("user", "admin") if args.admin else ("user",)
            user = components.accounts.register(args.username, password, roles=roles)
    except ConfigError as exc:
        return fail(str(exc))
    except InvalidInput as exc:
        return fail("; ".join(f"{field} {message}" for field, message in exc.errors))
    except Conflict:
        return fail(f"the username {args.username!r} is already taken")
    except Unavailable:
        return fail("the database is unreachable (check TOKENAUTH_MONGODB_URI)")
    except RuntimeError as exc:  # the embedded server could not start
        return fail(str(exc))
    log_event("user_created", user_id=user["id"], roles=user["roles"], via="cli")
    print(f"created user {user['username']} ({user['id']}) with roles {', '.join(user['roles'])}")
    return 0


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
