"""The benchmark's own arithmetic: wrk output, ratios and goals (no timing is asserted)."""

import dataclasses
import subprocess
import sys

import pytest

from bench import report
from bench.load import Load
from bench.pools import Pool
from bench.processes import ROOT

WRK_OUTPUT = """\
Running 8s test @ http://127.0.0.1:40123/auth/verify
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    1.02ms  20.11ms   85.00%
    Req/Sec     2.51k   210.33     2.90k    70.00%
  Latency Distribution
     50%  812.00us
     75%    3.50ms
     90%    4.20ms
     99%    1.02s
  40123 requests in 8.00s, 5.12MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   5015.37
Transfer/sec:    640.11KB
"""


def test_parses_wrk_latency_output():
    result = report.parse_wrk(WRK_OUTPUT)
    assert result.requests == 40123
    assert result.duration == pytest.approx(8.0)
    assert result.requests_per_second == pytest.approx(5015.37)
    assert result.p50 == pytest.approx(812e-6)
    assert result.p99 == pytest.approx(1.02)
    assert result.thread_requests_per_second == pytest.approx(2510)
    assert result.errors == 6


def test_output_without_errors_counts_none():
    clean = WRK_OUTPUT.replace("  Socket errors: connect 0, read 1, write 0, timeout 2\n", "")
    clean = clean.replace("  Non-2xx or 3xx responses: 3\n", "")
    assert report.parse_wrk(clean).errors == 0


def test_output_without_latency_distribution_is_refused():
    without = WRK_OUTPUT.split("  Latency Distribution")[0]
    with pytest.raises(report.WrkOutputError):
        report.parse_wrk(without)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("812.00us", 812e-6), ("3.21ms", 3.21e-3), ("1.02s", 1.02), ("2.00m", 120.0)],
)
def test_durations_in_every_unit(text, expected):
    assert report.seconds(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "expected"), [("812", 812), ("2.51k", 2510), ("1.20M", 1.2e6), ("3G", 3e9)]
)
def test_counts_with_suffixes(text, expected):
    assert report.count(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "3.21", "ms", "1.0x"])
def test_unknown_units_are_refused(text):
    with pytest.raises(report.WrkOutputError):
        report.seconds(text)


def test_ratio_and_no_ceiling():
    assert report.ratio(800, 1000) == pytest.approx(0.8)
    assert report.ratio(800, 0) == 0.0


def test_goals_met_and_not():
    at_least = report.Goal(min_ratio=0.80)
    assert report.is_met(at_least, ratio=0.80)
    assert not report.is_met(at_least, ratio=0.79)
    mixed = report.Goal(min_ratio=0.50, max_p99=0.050)
    assert report.is_met(mixed, ratio=0.6, p99=0.049)
    assert not report.is_met(mixed, ratio=0.6, p99=0.051)
    assert not report.is_met(mixed, ratio=0.4, p99=0.010)
    memory = report.Goal(max_bytes=100 * report.MIB)
    assert report.is_met(memory, peak_bytes=99 * report.MIB)
    assert not report.is_met(memory, peak_bytes=101 * report.MIB)
    assert not report.is_met(report.Goal())


def _result(rate: float, p99: float = 0.010, errors: int = 0) -> report.WrkResult:
    return report.WrkResult(
        requests=int(rate * 8),
        duration=8.0,
        requests_per_second=rate,
        p50=p99 / 4,
        p99=p99,
        thread_requests_per_second=rate / 2,
        errors=errors,
    )


def _run(verify: float = 900.0, mixed_p99: float = 0.040, rss_mib: int = 80) -> report.Run:
    results = {
        "verify": _result(verify),
        "verify ceiling": _result(1000.0),
        "me": _result(850.0),
        "me ceiling": _result(1000.0),
        "page": _result(80.0, errors=5),
        "page ceiling": _result(100.0),
        "login": _result(60.0),
        "login ceiling": _result(80.0),
        "refresh": _result(450.0),
        "refresh ceiling": _result(500.0),
        "refresh cookie": _result(400.0),
        "refresh cookie ceiling": _result(500.0),
        "mfa": _result(170.0),
        "mfa ceiling": _result(200.0),
        "code exchange": _result(150.0),
        "code exchange ceiling": _result(200.0),
        "mixed": _result(verify * 0.6, p99=mixed_p99),
    }
    return report.Run(
        results=results,
        peak_rss_bytes=rss_mib * report.MIB,
        paced_logins_per_second=20.0,
        paced_refreshes_per_second=5.0,
        cpu_per_request={
            "verify": (0.0003, 0.0),
            "verify ceiling": (0.00024, 0.0),
            "login": (0.026, 0.012),
        },
    )


def test_the_cpu_ratio_is_the_ceilings_cpu_per_request_over_ours():
    rows = {row.name: row for row in report.build_rows(_run())}
    assert rows["verify"].cpu_ratio == pytest.approx(0.8)
    assert rows["login"].cpu_ratio is None  # no ceiling figure: nothing to say
    assert "| 0.80 |" in report.format_table([rows["verify"]])


def test_rows_judge_each_goal():
    rows = {row.name: row for row in report.build_rows(_run())}
    assert rows["verify"].ratio == pytest.approx(0.9) and rows["verify"].met
    assert "aim >= 1.00 of the ceiling: not yet" in rows["verify"].note
    assert rows["me"].met
    assert rows["page"].ratio == pytest.approx(0.8) and not rows["page"].met
    assert "5 errors" in rows["page"].note
    assert rows["login"].ratio == pytest.approx(0.75) and not rows["login"].met
    assert rows["refresh"].ratio == pytest.approx(0.9) and rows["refresh"].met
    assert rows["refresh cookie"].ratio == pytest.approx(0.8) and not rows["refresh cookie"].met
    assert rows["mfa"].ratio == pytest.approx(0.85) and rows["mfa"].met
    assert rows["code exchange"].ratio == pytest.approx(0.75) and not rows["code exchange"].met
    assert rows["mixed"].ratio == pytest.approx(0.6) and rows["mixed"].met
    assert rows["memory"].met and rows["memory"].peak_bytes == 80 * report.MIB
    assert rows["verify ceiling"].met is None


def test_every_row_has_its_ceiling_beside_it():
    names = [row.name for row in report.build_rows(_run())]
    for name in report.CEILINGED:
        assert names[names.index(name) + 1] == f"{name} ceiling"
    assert names[-2:] == ["mixed", "memory"]


def test_verify_is_reported_against_the_fastest_peer():
    rows = {row.name: row for row in report.build_rows(_run(verify=1000.0))}
    fastest = rows["verify vs fastest"]
    assert fastest.ratio == pytest.approx(3957 / 4130)
    assert fastest.report_only and "| report |" in report.format_table([fastest])
    assert "aim >= 1.00 of the ceiling: met" in rows["verify"].note


def test_a_row_whose_pool_ran_dry_is_not_met_and_says_so():
    run = _run()
    run.results["refresh"] = dataclasses.replace(_result(600.0), pool_dry=40)
    row = {row.name: row for row in report.build_rows(run)}["refresh"]
    assert not row.met
    assert "pool ran dry: 40 requests had no fresh secret" in row.note


def test_a_row_whose_ceiling_ran_dry_is_not_met():
    run = _run()
    run.results["mfa ceiling"] = dataclasses.replace(_result(200.0), pool_dry=3)
    rows = {row.name: row for row in report.build_rows(run)}
    assert not rows["mfa"].met
    assert "pool ran dry: 3 requests" in rows["mfa ceiling"].note


def test_rows_with_errors_are_not_met():
    run = _run()
    run.results["verify"] = _result(2000.0, errors=1000)
    rows = {row.name: row for row in report.build_rows(run)}
    assert not rows["verify"].met


@pytest.mark.parametrize(
    ("logins", "refreshes", "short"),
    [(15.0, 5.0, "logins short of 20/s"), (20.0, 3.0, "refreshes short of 5/s")],
)
def test_mixed_row_whose_paced_requests_fell_short_is_not_met(logins, refreshes, short):
    run = dataclasses.replace(
        _run(), paced_logins_per_second=logins, paced_refreshes_per_second=refreshes
    )
    mixed = {row.name: row for row in report.build_rows(run)}["mixed"]
    assert not mixed.met
    assert short in mixed.note


def test_slow_mixed_and_large_memory_are_not_met():
    rows = {row.name: row for row in report.build_rows(_run(mixed_p99=0.060, rss_mib=120))}
    assert not rows["mixed"].met
    assert not rows["memory"].met


def test_median_rows_take_each_figure_in_the_middle_and_the_majority_verdict():
    ceilings = (1000.0, 1000.0, 850.0)
    runs = []
    for verify, ceiling, rss_mib in zip((760, 1080, 680), ceilings, (90, 110, 120), strict=True):
        run = _run(verify=verify, rss_mib=rss_mib)
        run.results["verify ceiling"] = _result(ceiling)
        runs.append(report.build_rows(run))
    rows = {row.name: row for row in report.median_rows(runs)}
    # Ratios 0.76, 1.08 and 0.80: their median, not median rate / median ceiling (0.76).
    assert rows["verify"].ratio == pytest.approx(0.80)
    assert rows["verify"].requests_per_second == 760
    assert rows["verify"].met  # in two runs of three
    assert rows["memory"].peak_bytes == 110 * report.MIB
    assert not rows["memory"].met  # in one run of three
    assert rows["login"].cpu == pytest.approx((0.026, 0.012))
    assert rows["verify ceiling"].met is None


def test_table_has_one_line_per_row_and_the_verdicts():
    rows = report.build_rows(_run())
    table = report.format_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| row | requests/s | p50 | p99 | ratio to ceiling | goal | met")
    assert len(lines) == 2 + 2 * len(report.CEILINGED) + 3
    assert "| NOT met |" in table and "| met |" in table and "| report |" in table
    assert "| 26.00 + 12.00 ms |" in table


def test_parses_the_pool_line_of_bench_wrk_lua():
    result = report.parse_wrk(WRK_OUTPUT + "pool used: 812 dry: 7\n")
    assert (result.pool_used, result.pool_dry) == (812, 7)
    assert report.combine([result, result]).pool_dry == 14


def test_parses_the_quantile_grid_of_bench_wrk_lua():
    grid = " ".join(str(us) for us in range(1, 1001))
    result = report.parse_wrk(WRK_OUTPUT + f"latency quantiles us: {grid}\n")
    assert len(result.quantiles) == 1000
    assert result.quantiles[0] == pytest.approx(1e-6)
    assert result.quantiles[-1] == pytest.approx(1e-3)


def _sliced(requests: int, latency_us: int) -> report.WrkResult:
    return dataclasses.replace(
        _result(requests / 2.0),
        requests=requests,
        duration=2.0,
        quantiles=tuple([latency_us * 1e-6] * 1000),
    )


def test_combine_sums_totals_and_merges_latencies_by_requests():
    fast, slow = _sliced(9000, 1000), _sliced(1000, 50_000)
    combined = report.combine([fast, slow])
    assert combined.requests == 10_000
    assert combined.duration == pytest.approx(4.0)
    assert combined.requests_per_second == pytest.approx(2500)
    assert combined.p50 == pytest.approx(0.001)
    assert combined.p99 == pytest.approx(0.050)  # the slowest 10% of requests are the slow run's
    assert report.merged_percentile([fast, slow], 90) == pytest.approx(0.001)


def test_combine_without_grids_weights_percentiles_by_requests():
    a = dataclasses.replace(_result(100.0, p99=0.010), requests=300)
    b = dataclasses.replace(_result(100.0, p99=0.030), requests=100)
    assert report.combine([a, b]).p99 == pytest.approx(0.015)


@pytest.mark.parametrize(
    ("latency", "slices", "seconds"),
    [(0.002, 4, 2.0), (0.100, 4, 2.0), (0.150, 2, 4.0), (0.450, 2, 9.0), (0.900, 2, 18.0)],
)
def test_slow_requests_get_fewer_longer_slices_two_at_least(latency, slices, seconds):
    # Two a side at least (A B B A), each at least 20 latencies long.
    load = Load(duration=8.0, slices=4)
    assert load.slices_for(latency) == slices
    assert load.slice_seconds(latency) == pytest.approx(seconds)


def _pool(max_age: float = 3600.0) -> Pool:
    made = iter(range(10_000))
    return Pool("test", lambda count: [f"item-{next(made)}" for _ in range(count)], max_age=max_age)


def test_a_pool_hands_each_item_out_once(tmp_path):
    pool = _pool()
    pool.ensure(3)
    lines = pool.write(tmp_path).read_text().splitlines()
    assert lines == ["item-0", "item-1", "item-2"]
    pool.spent(used=2, dry=0)
    assert pool.take() == "item-2"
    assert pool.take() is None and pool.dry == 1
    pool.ensure(2)
    assert pool.write(tmp_path).read_text().splitlines() == ["item-3", "item-4"]


def test_a_pool_drops_items_past_their_age():
    pool = _pool(max_age=0.0)
    pool.ensure(2)
    pool.ensure(2)
    assert [item for _, item in pool.items] == ["item-2", "item-3"]


def test_a_tiny_run_prints_every_row_with_its_verdict(tmp_path):
    # End to end, as `make bench` runs but tiny: every row must come out with a verdict.
    output = tmp_path / "table.md"
    command = [sys.executable, "-m", "bench", "--duration", "1", "--warmup", "0"]
    command += ["--slices", "1", "--persons", "60", "--output", str(output)]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cells = {
        line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[1:-1]]
        for line in output.read_text().splitlines()
        if line.startswith("| ")
    }
    for name in [*report.CEILINGED, "mixed", "memory"]:
        assert cells[name][6] in ("met", "NOT met"), cells[name]
        if name in report.CEILINGED:
            assert cells[f"{name} ceiling"][1], f"{name} ceiling has no rate"
    assert cells["verify vs fastest"][6] == "report"
