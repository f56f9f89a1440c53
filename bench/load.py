"""Load from outside the server: wrk for full speed, a paced thread pool for steady logins."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bench.report import WrkResult, parse_wrk
from bench.seed import Client

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"


@dataclasses.dataclass(frozen=True)
class Load:
    """How hard and how long wrk pushes: each row runs `slices` times, duration in all."""

    duration: float = 8.0
    warmup: float = 1.0
    connections: int = 16
    threads: int = 2
    slices: int = 8

    # A slice shorter than this many request latencies would count too few completions: wrk
    # waits one latency before the first, and drops the requests in flight when it stops.
    LATENCIES_PER_SLICE = 20

    def slices_for(self, latency: float) -> int:
        """How many slices a side runs, for requests of this latency: two at least.

        Two a side make the order A B B A, so neither side always goes first: what the
        first side leaves (a bigger collection, a pool topped up) is paid by both alike."""
        fitting = int(self.duration // max(latency * self.LATENCIES_PER_SLICE, 1.0))
        return max(2, min(self.slices, fitting))

    def slice_seconds(self, latency: float) -> float:
        """How long each slice runs: the duration shared out, but never under 20 latencies
        (slow rows so run longer than `duration` a side)."""
        return max(self.duration / self.slices_for(latency), latency * self.LATENCIES_PER_SLICE)


def wrk_command(url: str, load: Load, seconds: float, headers: Sequence[str] = ()) -> list[str]:
    """The wrk command line for one run."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is missing: `make system-deps` (or apt-get install wrk)")
    command = [
        wrk,
        "--latency",
        f"--threads={load.threads}",
        f"--connections={load.connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={WRK_SCRIPT}",
    ]
    for header in headers:
        command += ["--header", header]
    return [*command, url]


def run_wrk(
    url: str,
    load: Load,
    seconds: float,
    *,
    headers: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> WrkResult:
    """One wrk run of `seconds` against `url`."""
    done = subprocess.run(
        wrk_command(url, load, seconds, headers),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=seconds + 60,
        check=True,
    )
    return parse_wrk(done.stdout)


class Pacer:
    """POSTs at a steady rate, open loop, while `running()`; `next_request(slot)` gives each
    one's (path, JSON body), or None when there is nothing left to send (counted failed)."""

    # Enough threads that requests slowed down to over a second each still keep the rate.

    def __init__(
        self,
        base: str,
        next_request: Callable[[int], tuple[str, dict] | None],
        *,
        rate: float = 20.0,
        threads: int = 32,
    ) -> None:
        self.base = base
        self.next_request = next_request
        self.rate = rate
        self.threads = threads
        self._lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0
        self.latencies: list[float] = []
        self.seconds = 0.0  # time spent running, over every `running()` block

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Send requests for as long as the block lasts, then wait for those in flight."""
        stop = threading.Event()
        started = time.monotonic()
        workers = [
            threading.Thread(target=self._send, args=(index, started, stop), daemon=True)
            for index in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        try:
            yield
        finally:
            # The rate is over the time requests were sent, not the wait for the last answers.
            self.seconds += time.monotonic() - started
            stop.set()
            for worker in workers:
                worker.join(timeout=15)

    def latency(self, percent: float) -> float:
        """A percentile of the requests' latencies, in seconds."""
        ordered = sorted(self.latencies) or [0.0]
        return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]

    @property
    def achieved_rate(self) -> float:
        """Successful requests per second of sending."""
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    def _send(self, index: int, started: float, stop: threading.Event) -> None:
        # Slot n of the schedule belongs to thread n % threads: each thread keeps its own times.
        client = Client(self.base)
        slot = index
        try:
            while not stop.wait(max(0.0, started + slot / self.rate - time.monotonic())):
                with self._lock:
                    request = self.next_request(slot)
                self._post(client, request)
                slot += self.threads
        finally:
            client.close()

    def _post(self, client: Client, request: tuple[str, dict] | None) -> None:
        began = time.monotonic()
        status = 0
        if request is not None:
            try:
                status, _ = client.request("POST", *request)
            except (OSError, http.client.HTTPException):
                client.close()  # the next request opens a fresh connection
        with self._lock:
            self.latencies.append(time.monotonic() - began)
            if status == 200:
                self.succeeded += 1
            else:
                self.failed += 1
