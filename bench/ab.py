"""`python -m bench.ab`: one lever measured A/B, two services side by side on one database.

Both services run the project's gunicorn settings on the same database and keys; they differ
by environment (`--a-env`, `--b-env`) or by code (`--b-root`, a checkout of another commit,
e.g. `git archive HEAD~1 | tar -x -C /tmp/b`). Rounds alternate A B, B A, ... with wrk
against one path each, so a change in the machine's load hits both sides alike; it prints
each round and the ratio B / A of the totals, and of the server's CPU time per request
(read from /proc: far steadier than requests per second on a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from pathlib import Path

from bench.load import Load, run_wrk
from bench.processes import ROOT, CpuMeter, Gunicorn, wait_until_idle
from bench.run import service_env
from bench.seed import seed


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--a-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--b-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--a-root", type=Path, default=ROOT, help="checkout serving A")
    parser.add_argument("--b-root", type=Path, default=ROOT, help="checkout serving B")
    parser.add_argument("--path", default="/auth/verify", help="the route loaded")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per side per round")
    parser.add_argument("--connections", type=int, default=16)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Start database and both services, alternate rounds, print the ratio."""
    from embedded import EmbeddedServer

    args = parse_args(argv)
    load = Load(duration=args.seconds, connections=args.connections)
    with (
        tempfile.TemporaryDirectory(prefix="tokenauth-ab-") as scratch,
        contextlib.ExitStack() as cleanup,
    ):
        scratch = Path(scratch)
        database = EmbeddedServer(scratch / "database")
        cleanup.callback(database.stop)
        # One data directory: both sides sign and verify with the same keys.
        env = service_env(database.start(), scratch / "service")
        sides = {}
        for name, extra, root in (("A", args.a_env, args.a_root), ("B", args.b_env, args.b_root)):
            values = {**env, **dict(e.split("=", 1) for e in extra)}
            server = Gunicorn(name, values, scratch / f"{name}.log", root=root)
            cleanup.callback(server.stop)
            server.start()
            sides[name] = server
        seeded = seed(sides["A"].base, env, persons=0)
        headers = (f"Authorization: Bearer {seeded.user_token}",)
        rates: dict[str, list[float]] = {"A": [], "B": []}
        requests = {"A": 0, "B": 0}
        meters = {name: CpuMeter({"server": server.pids}) for name, server in sides.items()}
        for number in range(args.rounds):
            order = ("A", "B") if number % 2 == 0 else ("B", "A")
            for name in order:
                server = sides[name]
                with meters[name].measuring():
                    result = run_wrk(server.base + args.path, load, args.seconds, headers=headers)
                requests[name] += result.requests
                wait_until_idle(lambda server=server: [*server.pids(), database.process.pid])
                rates[name].append(result.requests_per_second)
                print(
                    f"round {number + 1} {name}: {result.requests_per_second:8.1f} req/s"
                    f"  p50 {result.p50 * 1000:.2f} ms  p99 {result.p99 * 1000:.2f} ms"
                    f"  errors {result.errors}",
                    flush=True,
                )
        a, b = statistics.fmean(rates["A"]), statistics.fmean(rates["B"])
        per_round = " ".join(f"{y / x:.2f}" for x, y in zip(rates["A"], rates["B"], strict=True))
        print(f"A {a:,.0f} req/s, B {b:,.0f} req/s: B/A = {b / a:.3f} (rounds: {per_round})")
        cpu = {n: meters[n].spent["server"] / max(1, requests[n]) * 1e6 for n in sides}
        print(
            f"server CPU per request: A {cpu['A']:.0f} us, B {cpu['B']:.0f} us:"
            f" B/A = {cpu['B'] / cpu['A']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
