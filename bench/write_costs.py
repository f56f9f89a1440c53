"""`python -m bench.write_costs`: what one write costs the embedded server as sessions grow.

The rotation of a refresh token is a `find_one_and_update` on the sessions; on the embedded
server that command costs in proportion to the collection, whatever the filter, while
`update_one` and `find_one` with the same filter do not. This prints milliseconds per call of
each, at a few collection sizes, on a fresh embedded server (BENCHMARKS.md, "refresh").
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pymongo

import store as store_module


def milliseconds_per_call(call: Callable[[int], object], count: int) -> float:
    """Mean wall milliseconds of `count` calls, call(i) for i in range(count)."""
    began = time.perf_counter()
    for number in range(count):
        call(number)
    return (time.perf_counter() - began) / count * 1000


def time_commands(
    sessions, live: dict, base: int, size: int, count: int
) -> list[tuple[str, float]]:
    """Milliseconds per call of each command; each call touches a session of its own."""

    def touch(n: int, tag: str) -> dict:
        return {"$set": {"current": f"{tag}-{size}-{n}"}}

    def current(n: int, slot: int) -> str:
        return f"h{base + slot * count + n}"

    calls = {
        "find_one_and_update, live predicates first": lambda n: sessions.find_one_and_update(
            {**live, "current": current(n, 0)}, touch(n, "a")
        ),
        "find_one_and_update, current first": lambda n: sessions.find_one_and_update(
            {"current": current(n, 1), **live}, touch(n, "b")
        ),
        "find_one_and_update by _id": lambda n: sessions.find_one_and_update(
            {"_id": "s" + current(n, 2)[1:]}, touch(n, "c")
        ),
        "update_one, current first": lambda n: sessions.update_one(
            {"current": current(n, 3), **live}, touch(n, "d")
        ),
        "find_one by current": lambda n: sessions.find_one({"current": current(n, 4)}),
    }
    return [(name, milliseconds_per_call(call, count)) for name, call in calls.items()]


def main(argv: list[str] | None = None) -> int:
    """Grow the sessions collection and time each command at each size."""
    from embedded import EmbeddedServer

    parser = argparse.ArgumentParser(prog="python -m bench.write_costs", description=__doc__)
    parser.add_argument("--sizes", default="1000,3000,12000", help="sessions, comma-separated")
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tokenauth-writes-") as scratch:
        database = EmbeddedServer(Path(scratch) / "database")
        client = pymongo.MongoClient(database.start(), tz_aware=True)
        try:
            store = store_module.Store(client["write_costs"])
            store.ensure_indexes()
            sessions = store.sessions
            now = dt.datetime.now(dt.UTC)
            live = {"revoked_at": {"$exists": False}, "expires_at": {"$gt": now}, "client_id": None}
            made = 0
            for size in (int(n) for n in args.sizes.split(",")):
                sessions.insert_many(
                    [
                        {"_id": f"s{n}", "user_id": "u", "current": f"h{n}", "retired": []}
                        | {"expires_at": now + dt.timedelta(days=1), "created_at": now}
                        for n in range(made, size)
                    ]
                )
                for name, took in time_commands(sessions, live, made, size, args.calls):
                    print(f"{size:>7} sessions  {name:<45} {took:8.2f} ms", flush=True)
                made = size
        finally:
            client.close()
            database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
