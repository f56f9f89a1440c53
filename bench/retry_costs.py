"""`python -m bench.retry_costs`: what a write costs the embedded server as its records grow.

pymongo sends every single-document write with a retryable-write envelope (`lsid`,
`txnNumber`) unless told `retryWrites=false`; secantusd-py keeps a record of each (30 minutes,
at most 10,000) and scans them all on every such write, and sorts them once they are 10,000.
This prints the database's CPU milliseconds per `update_one`, with and without retryable
writes, as the records grow (BENCHMARKS.md, "mfa and code exchange").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pymongo

from bench.processes import cpu_seconds


def cpu_milliseconds(collection, pid: int, calls: int) -> float:
    """The database's CPU milliseconds per `update_one` of one counter."""
    began = cpu_seconds(pid)
    for _ in range(calls):
        collection.update_one({"_id": "counter"}, {"$inc": {"n": 1}}, upsert=True)
    return (cpu_seconds(pid) - began) / max(calls, 1) * 1000


def main(argv: list[str] | None = None) -> int:
    """Grow the records with retryable writes; time both kinds of write at each count."""
    from embedded import EmbeddedServer

    parser = argparse.ArgumentParser(prog="python -m bench.retry_costs", description=__doc__)
    parser.add_argument("--records", default="0,5000,9500,12000", help="comma-separated")
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tokenauth-retries-") as scratch:
        database = EmbeddedServer(Path(scratch) / "database")
        # The server's own URI turns retryable writes off; these two clients choose.
        base = database.start().split("&retryWrites")[0]
        pid = database.process.pid
        retrying = pymongo.MongoClient(base, retryWrites=True)
        plain = pymongo.MongoClient(base, retryWrites=False)
        try:
            made = 0
            for records in (int(n) for n in args.records.split(",")):
                # Each timed retryable write leaves a record too: count them.
                cpu_milliseconds(retrying.costs.grow, pid, max(0, records - made))
                with_records = cpu_milliseconds(retrying.costs.timed, pid, args.calls)
                without = cpu_milliseconds(plain.costs.timed, pid, args.calls)
                made = max(made, records) + args.calls
                print(
                    f"{records:>7} records  retryable {with_records:6.2f} ms"
                    f"  retryWrites=false {without:6.2f} ms",
                    flush=True,
                )
        finally:
            retrying.close()
            plain.close()
            database.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
