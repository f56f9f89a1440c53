"""One benchmark run end to end: database, service, ceiling, seed, rows, table."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import runpy
import signal
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pyotp

from bench import report
from bench.load import Load, Pacer, run_wrk
from bench.processes import BIN, ROOT, CpuMeter, Gunicorn, peak_rss_bytes, wait_until_idle
from bench.seed import PERSONS, Seeded, seed
from bench.write_rows import BenchSecrets, PoolFeed

LAST_TABLE = Path(__file__).resolve().parent / "last.md"
DB_NAME = "tokenauth_bench"
PACKAGES = ("falcon", "PyJWT", "pymongo", "gunicorn", "argon2-cffi", "cryptography", "secantusdb")
# (row, path on the service, path on the ceiling); {user_id} is filled in after seeding.
PAIRED_ROWS = (
    ("verify", "/auth/verify", "/auth/verify"),
    ("me", "/users/me", "/users/{user_id}"),
    ("page", "/persons?limit=50", "/persons?limit=50"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are what `make bench` runs."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds measured per row")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per row")
    parser.add_argument("--slices", type=int, default=8, help="wrk runs a row is split into")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--runs", type=int, default=1, help="runs; the table shows medians")
    parser.add_argument(
        "--gunicorn-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra gunicorn argument for service and ceiling alike (e.g. --gunicorn-arg=-w3)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for service and ceiling (e.g. --env TOKENAUTH_SIGNING_ALG=HS256)",
    )
    parser.add_argument("--output", type=Path, default=LAST_TABLE, help="where the table goes")
    parser.add_argument(
        "--persons", type=int, default=PERSONS, help="persons seeded (the page row reads 50)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and write it to bench/last.md."""
    args = parse_args(argv)
    # `kill` must clean up as Ctrl-C does: SystemExit unwinds every finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = Load(args.duration, args.warmup, args.connections, args.threads, args.slices)
    loads_seen = [read_loadavg()]
    runs = []
    for number in range(1, args.runs + 1):
        print(f"run {number} of {args.runs} (load {loads_seen[-1]})", flush=True)
        extra_env = dict(e.split("=", 1) for e in args.env)
        runs.append(run_once(load, args.gunicorn_arg, extra_env, persons=args.persons))
        loads_seen.append(read_loadavg())
        if args.runs > 1:
            print(report.format_table(report.build_rows(runs[-1])), flush=True)
    tables = [report.build_rows(run) for run in runs]
    table = report.format_table(tables[0] if len(tables) == 1 else report.median_rows(tables))
    text = describe(args, load, loads_seen, len(runs)) + "\n" + table + "\n"
    print(text)
    args.output.write_text(text)
    return 0


def run_once(
    load: Load, gunicorn_args: list[str], extra_env: dict[str, str], *, persons: int = PERSONS
) -> report.Run:
    """Start everything, measure every row, stop everything (also on errors and Ctrl-C)."""
    from embedded import EmbeddedServer  # the embedded extra is needed only here

    with (
        tempfile.TemporaryDirectory(prefix="tokenauth-bench-") as scratch,
        contextlib.ExitStack() as cleanup,
    ):
        scratch = Path(scratch)
        database = EmbeddedServer(scratch / "database")
        cleanup.callback(database.stop)
        env = {**service_env(database.start(), scratch / "service"), **extra_env}
        service = Gunicorn("service", env, scratch / "service.log", extra_args=gunicorn_args)
        totp_secret = pyotp.random_base32()
        ceiling = Gunicorn(
            "ceiling",
            {
                **env,
                "TOKENAUTH_DATA_DIR": str(scratch / "ceiling"),
                "BENCH_TOTP_SECRET": totp_secret,
            },
            scratch / "ceiling.log",
            app_uri="bench.ceiling:create_app()",
            extra_args=gunicorn_args,
        )
        for server in (service, ceiling):
            cleanup.callback(server.stop)
            server.start()
        try:
            seeded = seed(service.base, env, persons=persons)
            made = BenchSecrets(service, seeded, scratch, totp_secret)
            cleanup.callback(made.close)
            return measure(service, ceiling, database.process.pid, seeded, load, made)
        except Exception:
            for server in (service, ceiling):
                print(f"--- last lines of the {server.name} log", file=sys.stderr)
                print(server.log_tail(), file=sys.stderr)
            raise


def service_env(mongodb_uri: str, data_dir: Path) -> dict[str, str]:
    """The environment of the service: the project's defaults but for database and data."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENAUTH_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        TOKENAUTH_MONGODB_URI=mongodb_uri,
        TOKENAUTH_DB_NAME=DB_NAME,
        TOKENAUTH_DATA_DIR=str(data_dir),
    )
    return env


@dataclasses.dataclass(frozen=True)
class Target:
    """One row's load: a server, a path, wrk's options, and what else runs meanwhile."""

    name: str
    server: Gunicorn
    path: str
    headers: tuple[str, ...] = ()
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    alongside: Callable[[], AbstractContextManager] = contextlib.nullcontext
    feed: PoolFeed | None = None


class Rows:
    """Loads rows in interleaved slices, keeping each row's figures and CPU per request."""

    def __init__(self, load: Load, database_pid: int) -> None:
        self.load = load
        self.database_pid = database_pid
        self.results: dict[str, report.WrkResult] = {}
        self.cpu: dict[str, tuple[float, float]] = {}

    def interleave(self, *targets: Target) -> None:
        """Warm each target up, then run their slices in turn: A B B A A B B A."""
        # Taking turns, a change in the machine's load, or in how wrk's connections happen to
        # spread over the workers (each slice connects anew), hits every target alike.
        meters = {t.name: self._meter(t.server) for t in targets}
        slices: dict[str, list[report.WrkResult]] = {t.name: [] for t in targets}
        latency = max((self._warm_up(target) for target in targets), default=0.0)
        count, seconds = self.load.slices_for(latency), self.load.slice_seconds(latency)
        for number in range(count):
            for target in targets if number % 2 == 0 else reversed(targets):
                env = self._prepare(target, seconds)
                with meters[target.name].measuring(), target.alongside():
                    result = self._wrk(target, seconds, env)
                slices[target.name].append(result)
                self._settle(target, env, result)
        for target in targets:
            self._record(target.name, report.combine(slices[target.name]), meters[target.name])

    def _warm_up(self, target: Target) -> float:
        """Warm the target up; its median latency (0 without a warm-up)."""
        if self.load.warmup <= 0:
            return 0.0
        env = self._prepare(target, self.load.warmup)
        result = self._wrk(target, self.load.warmup, env)
        self._settle(target, env, result)
        return result.p50

    def _prepare(self, target: Target, seconds: float) -> dict[str, str]:
        env = dict(target.env)
        if target.feed is not None:
            env.update(target.feed.env(max(1, round(seconds)), self.load.threads))
            # Making the pool's secrets is database work: it must not land in the slice.
            wait_until_idle(lambda: [self.database_pid])
        return env

    def _settle(self, target: Target, env: dict[str, str], result: report.WrkResult) -> None:
        if target.feed is not None:
            target.feed.settle(env, result)
        self._drain(target.server)

    def _drain(self, server: Gunicorn) -> None:
        # wrk leaves requests in flight when it stops; the server finishes them regardless,
        # and that work must not land in the next slice, which may be another target's.
        wait_until_idle(lambda: [*server.pids(), self.database_pid])

    def _meter(self, server: Gunicorn) -> CpuMeter:
        return CpuMeter({"server": server.pids, "database": lambda: [self.database_pid]})

    def _wrk(self, target: Target, seconds: float, env: dict[str, str]) -> report.WrkResult:
        url = target.server.base + target.path
        return run_wrk(url, self.load, seconds, headers=target.headers, env=env)

    def _record(self, name: str, result: report.WrkResult, meter: CpuMeter) -> None:
        requests = max(1, result.requests)
        self.results[name] = result
        self.cpu[name] = (meter.spent["server"] / requests, meter.spent["database"] / requests)
        server_ms, database_ms = (seconds * 1000 for seconds in self.cpu[name])
        dry = f"  pool dry {result.pool_dry}" if result.pool_dry else ""
        print(
            f"  {name:<22} {result.requests_per_second:8.1f} req/s"
            f"  p50 {result.p50 * 1000:7.2f} ms  p99 {result.p99 * 1000:7.2f} ms"
            f"  errors {result.errors}{dry}"
            f"  CPU/request: server {server_ms:.2f} ms, database {database_ms:.2f} ms",
            flush=True,
        )


def measure(
    service: Gunicorn,
    ceiling: Gunicorn,
    database_pid: int,
    seeded: Seeded,
    load: Load,
    secrets: BenchSecrets,
) -> report.Run:
    """Every row, each project row interleaved with its ceiling."""
    bearer = (f"Authorization: Bearer {seeded.user_token}",)
    check_same_bodies(service.base, ceiling.base, seeded)
    rows = Rows(load, database_pid)
    # The ceiling gets the very request the service gets, Authorization header included:
    # reading headers is part of a request's cost.
    for name, path, ceiling_path in PAIRED_ROWS:
        rows.interleave(
            Target(f"{name} ceiling", ceiling, ceiling_path.format(user_id=seeded.user_id), bearer),
            Target(name, service, path, bearer),
        )
    logins = {"BENCH_LOGIN_BODIES": "\n".join(seeded.login_bodies)}
    rows.interleave(
        Target("login ceiling", ceiling, "/auth/token", env=logins),
        Target("login", service, "/auth/token", env=logins),
    )
    # The mixed row before the rows that spend secrets: on the embedded server a rotation
    # costs in proportion to the sessions (BENCHMARKS.md, "refresh"), and those rows' pools
    # leave thousands behind, which would load the mixed row's refreshes with the bench's own
    # leftovers rather than with what its logins made.
    login_pacer, refresh_pacer = measure_mixed(rows, service, seeded, load, secrets, bearer)
    for name, path, headers, feed in secrets.write_rows():
        rows.interleave(
            Target(f"{name} ceiling", ceiling, path, headers, feed=feed),
            Target(name, service, path, headers, feed=feed),
        )
    return report.Run(
        results=rows.results,
        peak_rss_bytes=max(peak_rss_bytes(pid) for pid in service.worker_pids()),
        paced_logins_per_second=login_pacer.achieved_rate,
        paced_refreshes_per_second=refresh_pacer.achieved_rate,
        cpu_per_request=rows.cpu,
    )


def measure_mixed(
    rows: Rows,
    service: Gunicorn,
    seeded: Seeded,
    load: Load,
    secrets: BenchSecrets,
    bearer: tuple[str, ...],
) -> tuple[Pacer, Pacer]:
    """Verify alone and verify beside paced logins and refreshes, in turns; the pacers."""
    login_pacer = Pacer(
        service.base,
        lambda slot: (
            "/auth/token",
            json.loads(seeded.login_bodies[slot % len(seeded.login_bodies)]),
        ),
        rate=report.MIXED_LOGIN_RATE,
    )
    refresh_pacer = secrets.refresh_pacer(service.base, rate=report.MIXED_REFRESH_RATE)

    @contextlib.contextmanager
    def paced() -> Iterator[None]:
        with login_pacer.running(), refresh_pacer.running():
            yield

    secrets.refreshes.ensure(int(report.MIXED_REFRESH_RATE * (load.duration + 2) * 2) + 20)
    rows.interleave(
        Target("verify alone", service, "/auth/verify", bearer),
        Target("mixed", service, "/auth/verify", bearer, alongside=paced),
    )
    for what, pacer in (("logins", login_pacer), ("refreshes", refresh_pacer)):
        print(
            f"  paced {what}: {pacer.achieved_rate:.1f}/s, {pacer.failed} failed,"
            f" p50 {pacer.latency(50) * 1000:.0f} ms, p99 {pacer.latency(99) * 1000:.0f} ms",
            flush=True,
        )
    return login_pacer, refresh_pacer


def check_same_bodies(service_base: str, ceiling_base: str, seeded: Seeded) -> None:
    """The ceiling must answer the very bodies the service does, or the ratios mean nothing."""
    pairs = (("/users/me", f"/users/{seeded.user_id}"), ("/persons?limit=50", "/persons?limit=50"))
    for path, ceiling_path in pairs:
        ours = get_json(service_base + path, seeded.user_token)
        theirs = get_json(ceiling_base + ceiling_path)
        if ours != theirs:
            raise RuntimeError(f"bench/ceiling.py no longer answers {path} as the service does")


def get_json(url: str, token: str | None = None) -> object:
    """GET a JSON body."""
    request = urllib.request.Request(url)  # noqa: S310 - loopback URLs we built
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        return json.loads(answer.read())


# -- the record of the run --------------------------------------------------------------
def read_loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def gunicorn_settings(extra_args: list[str]) -> str:
    """worker_class, workers and threads as gunicorn.conf.py sets them."""
    settings = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    text = ", ".join(f"{key}={settings[key]}" for key in ("worker_class", "workers", "threads"))
    return text + (f" (overridden by {' '.join(extra_args)})" if extra_args else "")


def versions() -> str:
    """Python, the packages that matter, and wrk."""
    found = []
    for package in PACKAGES:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout or wrk.stderr).split(" [")[0].strip()
    return f"Python {platform.python_version()}, {', '.join(found)}, {wrk_version}"


def describe(args: argparse.Namespace, load: Load, loads: list[str], runs: int) -> str:
    """The lines above the table: when, where, how and under what load."""
    command = "python -m bench" + "".join(f" {a}" for a in sys.argv[1:])
    runs_text = f"median of {runs} runs" if runs > 1 else "1 run"
    return "\n".join(
        [
            f"# make bench, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"- command: `{command}`; {runs_text}",
            f"- machine: {os.cpu_count()} cores, {platform.machine()}, {versions()}",
            f"- gunicorn: {gunicorn_settings(args.gunicorn_arg)}",
            f"- extra environment: {' '.join(args.env) or 'none'}",
            f"- load: wrk {load.threads} threads, {load.connections} connections; per row "
            f"{load.warmup:g} s warm-up, then {load.duration:g} s measured in 2 to "
            f"{load.slices} slices taking turns with its ceiling, A B B A (slow requests: 2 "
            f"slices of at least {Load.LATENCIES_PER_SLICE} latencies each, so longer)",
            f"- machine load (1/5/15 min) before and after each run: {' | '.join(loads)}",
            "",
        ]
    )
