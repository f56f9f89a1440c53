"""The `tokenauth` command line: create-user and rotate-key."""

from __future__ import annotations

import argparse
import sys

import auth
import embedded
import store as store_module
import throttle
from config import Config, ConfigError
from keys import KeyRing
from passwords import PasswordHasher


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
        with _cli_store(config) as store:
            store.ensure_indexes()
            accounts = auth.Accounts(
                store,
                PasswordHasher(),
                throttle.LoginThrottle(store, max_failures=1, window=1),
                password_min_length=config.password_min_length,
            )
            roles = ("user", "admin") if args.admin else ("user",)
            user = accounts.register(args.username, password, roles=roles)
    except ConfigError as exc:
        return fail(str(exc))
    except auth.InvalidInput as exc:
        return fail("; ".join(f"{field} {message}" for field, message in exc.errors))
    except store_module.Conflict:
        return fail(f"the username {args.username!r} is already taken")
    except store_module.Unavailable:
        return fail("the database is unreachable (check TOKENAUTH_MONGODB_URI)")
    except RuntimeError as exc:  # the embedded server could not start
        return fail(str(exc))
    auth.log_event("user_created", user_id=user["id"], roles=user["roles"], via="cli")
    print(f"created user {user['username']} ({user['id']}) with roles {', '.join(user['roles'])}")
    return 0


class _cli_store:
    """The configured database, or the embedded one (running already, or started for the call)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: embedded.EmbeddedServer | None = None
        self.store: store_module.Store | None = None

    def __enter__(self) -> store_module.Store:
        uri = self.config.mongodb_uri or embedded.running_embedded_uri(self.config.data_dir)
        if uri is None:
            self.server = embedded.EmbeddedServer(self.config.data_dir)
            uri = self.server.start()
        client = store_module.connect(uri, timeout_ms=self.config.db_timeout_ms)
        self.store = store_module.Store(client[self.config.db_name])
        return self.store

    def __exit__(self, *exc_info) -> None:
        self.store.close()
        if self.server is not None:
            self.server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
