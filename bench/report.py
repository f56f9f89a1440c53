"""Reading wrk's output, judging rows against the goals, and printing the table."""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections.abc import Iterable, Sequence

TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
COUNT_SUFFIXES = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
MIB = 1024 * 1024


class WrkOutputError(ValueError):
    """wrk printed something this parser does not understand."""


def seconds(text: str) -> float:
    """A wrk duration such as `812.00us`, `3.21ms`, `1.02s` or `2.00m`, in seconds."""
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if match is None:
        raise WrkOutputError(f"not a wrk duration: {text!r}")
    return float(match[1]) * TIME_UNITS[match[2]]


def count(text: str) -> float:
    """A wrk count such as `812`, `2.51k` or `1.20M`."""
    match = re.fullmatch(r"([0-9.]+)([kMG]?)", text.strip())
    if match is None:
        raise WrkOutputError(f"not a wrk count: {text!r}")
    return float(match[1]) * COUNT_SUFFIXES[match[2]]


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured; times in seconds."""

    requests: int
    duration: float
    requests_per_second: float
    p50: float
    p99: float
    thread_requests_per_second: float
    errors: int  # non-2xx/3xx answers plus socket errors
    # The latency at every 0.1 percentile (from bench/wrk.lua), for merging several runs.
    quantiles: tuple[float, ...] = ()
    # With a pool of single-use items: how many lines wrk got through, and how many
    # requests found the pool spent (they reused an item, and count as nothing).
    pool_used: int = 0
    pool_dry: int = 0

    @property
    def error_share(self) -> float:
        """Errors as a share of all requests."""
        return self.errors / self.requests if self.requests else 1.0


def parse_wrk(output: str) -> WrkResult:
    """Parse `wrk --latency` output."""
    percentiles = dict(re.findall(r"^\s*(50|99)(?:\.0+)?%\s+(\S+)\s*$", output, re.MULTILINE))
    total = re.search(r"^\s*(\d+) requests in (\S+),", output, re.MULTILINE)
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", output, re.MULTILINE)
    thread_rate = re.search(r"^\s*Req/Sec\s+(\S+)", output, re.MULTILINE)
    if not (total and rate and thread_rate) or set(percentiles) != {"50", "99"}:
        raise WrkOutputError("no latency distribution or totals (was --latency given?)")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non_2xx[1]) if non_2xx else 0
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    grid = re.search(r"^latency quantiles us: ([0-9 ]+)$", output, re.MULTILINE)
    pool = re.search(r"^pool used: (\d+) dry: (\d+)$", output, re.MULTILINE)
    return WrkResult(
        requests=int(total[1]),
        duration=seconds(total[2]),
        requests_per_second=float(rate[1]),
        p50=seconds(percentiles["50"]),
        p99=seconds(percentiles["99"]),
        thread_requests_per_second=count(thread_rate[1]),
        errors=errors,
        quantiles=tuple(int(us) * 1e-6 for us in grid[1].split()) if grid else (),
        pool_used=int(pool[1]) if pool else 0,
        pool_dry=int(pool[2]) if pool else 0,
    )


def combine(results: Sequence[WrkResult]) -> WrkResult:
    """One result for several runs of the same row: totals summed, latencies merged."""
    requests = sum(r.requests for r in results)
    duration = sum(r.duration for r in results)
    return WrkResult(
        requests=requests,
        duration=duration,
        requests_per_second=requests / duration if duration else 0.0,
        p50=_merged(results, 50, "p50"),
        p99=_merged(results, 99, "p99"),
        thread_requests_per_second=statistics.fmean(r.thread_requests_per_second for r in results),
        errors=sum(r.errors for r in results),
        pool_used=sum(r.pool_used for r in results),
        pool_dry=sum(r.pool_dry for r in results),
    )


def _merged(results: Sequence[WrkResult], percent: float, field: str) -> float:
    if all(r.quantiles for r in results):
        return merged_percentile(results, percent)
    # Without grids (plain --latency output), the request-weighted mean is the best guess.
    total = sum(r.requests for r in results)
    return sum(getattr(r, field) * r.requests for r in results) / total if total else 0.0


def merged_percentile(results: Sequence[WrkResult], percent: float) -> float:
    """The latency under which `percent` of all the runs' requests finished.

    Each run stands for its requests spread evenly over its grid of quantiles.
    """
    points = sorted(
        (latency, r.requests / len(r.quantiles)) for r in results for latency in r.quantiles
    )
    wanted = sum(weight for _, weight in points) * percent / 100
    passed = 0.0
    for latency, weight in points:
        passed += weight
        if passed >= wanted * (1 - 1e-12):
            return latency
    return points[-1][0] if points else 0.0


# -- goals ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Goal:
    """A lower bound on a ratio and/or an upper bound on a value, as DESIGN.md states it."""

    min_ratio: float | None = None
    max_p99: float | None = None  # seconds
    max_bytes: int | None = None

    def describe(self) -> str:
        """The goal as the table shows it."""
        parts = []
        if self.max_p99 is not None:
            parts.append(f"p99 <= {self.max_p99 * 1000:g} ms")
        if self.min_ratio is not None:
            parts.append(f">= {self.min_ratio:.2f}")
        if self.max_bytes is not None:
            parts.append(f"<= {self.max_bytes / MIB:g} MiB")
        return ", ".join(parts)


def ratio(value: float, ceiling: float) -> float:
    """value / ceiling; 0 when there is no ceiling to speak of."""
    return value / ceiling if ceiling > 0 else 0.0


def is_met(
    goal: Goal,
    *,
    ratio: float | None = None,
    p99: float | None = None,
    peak_bytes: int | None = None,
) -> bool:
    """True when every bound the goal sets holds for what was measured."""
    checks = []
    if goal.min_ratio is not None:
        checks.append(ratio is not None and ratio >= goal.min_ratio)
    if goal.max_p99 is not None:
        checks.append(p99 is not None and p99 <= goal.max_p99)
    if goal.max_bytes is not None:
        checks.append(peak_bytes is not None and peak_bytes <= goal.max_bytes)
    return bool(checks) and all(checks)


# -- the table --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table; a ceiling line has no goal."""

    name: str
    requests_per_second: float | None = None
    p50: float | None = None
    p99: float | None = None
    ratio: float | None = None
    peak_bytes: int | None = None  # the memory row shows this in the ratio column
    goal: Goal | None = None
    met: bool | None = None
    note: str = ""
    cpu: tuple[float, float] | None = None  # CPU seconds per request: server, database
    report_only: bool = False  # a figure to report, with no goal of ours to judge
    # The ceiling's CPU per request (server and database) over ours: what auth costs in
    # CPU, which the machine's other load disturbs far less than requests per second.
    cpu_ratio: float | None = None


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value * 1000:.2f} ms"


def _rate(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _verdict(row: Row) -> str:
    if row.report_only:
        return "report"
    if row.met is None:
        return ""
    return "met" if row.met else "NOT met"


def _cpu(cpu: tuple[float, float] | None) -> str:
    return "" if cpu is None else f"{cpu[0] * 1000:.2f} + {cpu[1] * 1000:.2f} ms"


def format_table(rows: Iterable[Row]) -> str:
    """A Markdown table: row, requests/s, p50, p99, ratio to ceiling, goal, met, CPU, its
    ratio, note."""
    header = ["row", "requests/s", "p50", "p99", "ratio to ceiling", "goal", "met"]
    header += ["CPU/request: server + database", "CPU ratio", "note"]
    lines = [header]
    for row in rows:
        shown_ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        if row.peak_bytes is not None:
            shown_ratio = f"{row.peak_bytes / MIB:.1f} MiB"
        lines.append(
            [
                row.name,
                _rate(row.requests_per_second),
                _ms(row.p50),
                _ms(row.p99),
                shown_ratio,
                row.goal.describe() if row.goal else "",
                _verdict(row),
                _cpu(row.cpu),
                "" if row.cpu_ratio is None else f"{row.cpu_ratio:.2f}",
                row.note,
            ]
        )
    return "\n".join("| " + " | ".join(cells) + " |" for cells in _with_rule(lines))


def _with_rule(lines: list[list[str]]) -> list[list[str]]:
    return [lines[0], ["---"] * len(lines[0]), *lines[1:]]


# -- one run's figures, and the rows they make -------------------------------------------
GOALS = {
    "verify": Goal(min_ratio=0.80),
    "me": Goal(min_ratio=0.85),
    "page": Goal(min_ratio=0.85),
    "login": Goal(min_ratio=0.85),
    "refresh": Goal(min_ratio=0.85),
    "refresh cookie": Goal(min_ratio=0.85),
    "mfa": Goal(min_ratio=0.80),
    "code exchange": Goal(min_ratio=0.80),
    "mixed": Goal(min_ratio=0.50, max_p99=0.050),
    "memory": Goal(max_bytes=100 * MIB),
}
# Rows loaded beside a bare Falcon ceiling doing the same database work, in table order.
CEILINGED = (
    "verify",
    "me",
    "page",
    "login",
    "refresh",
    "refresh cookie",
    "mfa",
    "code exchange",
)
# What verify aims at beyond its goal: the bare Falcon ceiling itself (issue 15).
VERIFY_AIM = 1.00
# The side-by-side measurement on this machine (same wrk settings, one database):
# bare Falcon on gunicorn gthread x2 answered 3,957 req/s, the fastest peer (a two-process
# Node cluster, Express + jsonwebtoken) 4,130. Our ceiling is that bare Falcon on gthread
# x2, so the peer stands at 4,130 / 3,957 of it.
FASTEST_PEER = "Node cluster x2, Express + jsonwebtoken"
FASTEST_PEER_PER_CEILING = 4130 / 3957
# The mixed row's paced load; a row whose paced requests fell short of it proves nothing.
MIXED_LOGIN_RATE = 20.0
MIXED_REFRESH_RATE = 5.0
MIXED_LOGIN_SHORTFALL = 0.9


@dataclasses.dataclass(frozen=True)
class Run:
    """Everything one pass of the benchmark measured."""

    # "verify", "verify ceiling", ..., "login", "verify alone", "mixed"
    results: dict[str, WrkResult]
    peak_rss_bytes: int  # the largest VmHWM among the service's workers
    paced_logins_per_second: float  # what the mixed row's login pacer achieved
    paced_refreshes_per_second: float = MIXED_REFRESH_RATE
    # Per row: CPU seconds per request spent by the server under load and by the database.
    cpu_per_request: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)


def build_rows(run: Run) -> list[Row]:
    """The table of one run (or of the medians of several)."""
    cpu = run.cpu_per_request.get
    rows = []
    for name in CEILINGED:
        project, ceiling = run.results[name], run.results[f"{name} ceiling"]
        project_ratio = ratio(project.requests_per_second, ceiling.requests_per_second)
        row = _judged(name, project, project_ratio, cpu(name))
        ours, theirs = cpu(name), cpu(f"{name} ceiling")
        if ours and theirs and sum(ours) > 0:
            row = dataclasses.replace(row, cpu_ratio=sum(theirs) / sum(ours))
        if ceiling.pool_dry or ceiling.error_share >= 0.01:
            row = dataclasses.replace(
                row, met=False, note=_join(row.note, "the ceiling's pool ran dry or it failed")
            )
        if name == "verify":
            aim = "met" if project_ratio >= VERIFY_AIM else "not yet"
            row = dataclasses.replace(
                row, note=_join(row.note, f"aim >= {VERIFY_AIM:.2f} of the ceiling: {aim}")
            )
        rows.append(row)
        rows.append(
            _plain(f"{name} ceiling", ceiling, cpu(f"{name} ceiling"), "bare Falcon, same work")
        )
        if name == "verify":
            rows.append(_versus_fastest(project_ratio))
    rows.append(_mixed_row(run, cpu("mixed")))
    rows.append(
        Row(
            "memory",
            peak_bytes=run.peak_rss_bytes,
            goal=GOALS["memory"],
            met=is_met(GOALS["memory"], peak_bytes=run.peak_rss_bytes),
            note="peak RSS (VmHWM) of the largest worker after the run",
        )
    )
    return rows


def _versus_fastest(verify_ratio: float) -> Row:
    return Row(
        "verify vs fastest",
        ratio=verify_ratio / FASTEST_PEER_PER_CEILING,
        report_only=True,
        note=f"{FASTEST_PEER}, at {FASTEST_PEER_PER_CEILING:.3f} of this ceiling "
        "(issue 15's side-by-side: 4,130 vs 3,957 req/s)",
    )


def _mixed_row(run: Run, cpu: tuple[float, float] | None) -> Row:
    # The mixed row takes turns with verify alone; an older run compares with the verify row.
    mixed = run.results["mixed"]
    alone = run.results.get("verify alone", run.results["verify"])
    row = _judged(
        "mixed",
        mixed,
        ratio(mixed.requests_per_second, alone.requests_per_second),
        cpu,
        note=f"verify beside {run.paced_logins_per_second:.1f} logins/s and "
        f"{run.paced_refreshes_per_second:.1f} refreshes/s; "
        f"ratio to verify alone ({alone.requests_per_second:,.0f}/s)",
    )
    short = [
        f"{what} short of {rate:g}/s"
        for what, achieved, rate in (
            ("logins", run.paced_logins_per_second, MIXED_LOGIN_RATE),
            ("refreshes", run.paced_refreshes_per_second, MIXED_REFRESH_RATE),
        )
        if achieved < rate * MIXED_LOGIN_SHORTFALL
    ]
    if short:
        row = dataclasses.replace(row, met=False, note=_join(row.note, *short))
    return row


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _judged(
    name: str,
    result: WrkResult,
    row_ratio: float,
    cpu: tuple[float, float] | None,
    note: str = "",
) -> Row:
    goal = GOALS[name]
    met = is_met(goal, ratio=row_ratio, p99=result.p99) and result.error_share < 0.01
    if result.errors:
        note = _join(note, f"{result.errors} errors")
    if result.pool_dry:
        # Requests that found no fresh secret measure nothing: never a verdict of met.
        met = False
        note = _join(note, f"pool ran dry: {result.pool_dry} requests had no fresh secret")
    return Row(
        name,
        requests_per_second=result.requests_per_second,
        p50=result.p50,
        p99=result.p99,
        ratio=row_ratio,
        goal=goal,
        met=met,
        note=note,
        cpu=cpu,
    )


def _plain(name: str, result: WrkResult, cpu: tuple[float, float] | None, note: str) -> Row:
    if result.errors:
        note = _join(note, f"{result.errors} errors")
    if result.pool_dry:
        note = _join(note, f"pool ran dry: {result.pool_dry} requests")
    return Row(name, result.requests_per_second, result.p50, result.p99, note=note, cpu=cpu)


def median_rows(runs: Sequence[Sequence[Row]]) -> list[Row]:
    """The table of several runs: each figure the median of its row's, met when most were."""
    table = []
    for versions in zip(*runs, strict=True):
        middle = sorted(versions, key=_row_order)[len(versions) // 2]
        table.append(
            dataclasses.replace(
                middle,
                requests_per_second=_median_of(versions, "requests_per_second"),
                p50=_median_of(versions, "p50"),
                p99=_median_of(versions, "p99"),
                ratio=_median_of(versions, "ratio"),
                peak_bytes=_median_of(versions, "peak_bytes"),
                cpu=_median_cpu(versions),
                cpu_ratio=_median_of(versions, "cpu_ratio"),
                met=None if middle.met is None else _median([row.met for row in versions]),
            )
        )
    return table


def _row_order(row: Row) -> float:
    # The run standing in the middle lends the row its note (paced logins, errors).
    for figure in (row.ratio, row.peak_bytes, row.requests_per_second):
        if figure is not None:
            return figure
    return 0.0


def _median_of(rows: Sequence[Row], field: str):
    values = [getattr(row, field) for row in rows if getattr(row, field) is not None]
    return _median(values) if values else None


def _median_cpu(rows: Sequence[Row]) -> tuple[float, float] | None:
    cpus = [row.cpu for row in rows if row.cpu is not None]
    if not cpus:
        return None
    return (statistics.median(c[0] for c in cpus), statistics.median(c[1] for c in cpus))


def _median(values: list):
    middle = statistics.median(values)
    return type(values[0])(middle) if isinstance(values[0], bool | int) else middle
