"""Load from outside the server: wrk for full speed, a paced thread pool for steady logins."""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from bench.report import WrkResult, parse_wrk
from bench.seed import Client

BENCH_DIR = Path(__file__).resolve().parent
LOGIN_SCRIPT = BENCH_DIR / "login.lua"


@dataclasses.dataclass(frozen=True)
class Load:
    """How hard and how long wrk pushes."""

    duration: float = 8.0
    warmup: float = 2.0
    connections: int = 16
    threads: int = 2


def wrk_command(
    url: str, load: Load, seconds: float, *, headers: Sequence[str] = (), script: Path | None = None
) -> list[str]:
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
    ]
    for header in headers:
        command += ["--header", header]
    if script is not None:
        command += ["--script", str(script)]
    return [*command, url]


def run_wrk(
    url: str,
    load: Load,
    *,
    headers: Sequence[str] = (),
    script: Path | None = None,
    env: dict[str, str] | None = None,
    measuring: Callable[[], AbstractContextManager] = contextlib.nullcontext,
) -> WrkResult:
    """Warm up, then measure for load.duration seconds inside `measuring()`."""

    def wrk(seconds: float) -> str:
        return subprocess.run(
            wrk_command(url, load, seconds, headers=headers, script=script),
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=seconds + 60,
            check=True,
        ).stdout

    if load.warmup > 0:
        wrk(load.warmup)
    with measuring():
        output = wrk(load.duration)
    return parse_wrk(output)


class LoginPacer:
    """POST /auth/token at a steady rate from a few threads, open loop, until stopped."""

    def __init__(
        self, base: str, bodies: Sequence[str], *, rate: float = 20.0, threads: int = 8
    ) -> None:
        self.base = base
        self.bodies = [json.loads(body) for body in bodies]
        self.rate = rate
        self.threads = threads
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.succeeded = 0
        self.failed = 0
        self.latencies: list[float] = []
        self._started = 0.0
        self._stopped = 0.0

    def start(self) -> None:
        """Start sending."""
        self._started = time.monotonic()
        for index in range(self.threads):
            worker = threading.Thread(target=self._send, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        """Stop sending and wait for the requests in flight."""
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=15)
        self._stopped = time.monotonic()

    @property
    def achieved_rate(self) -> float:
        """Successful logins per second over the pacer's life."""
        elapsed = self._stopped - self._started
        return self.succeeded / elapsed if elapsed > 0 else 0.0

    def _send(self, index: int) -> None:
        # Slot n of the schedule belongs to thread n % threads: each thread keeps its own times.
        client = Client(self.base)
        slot = index
        try:
            while not self._stop.is_set():
                due = self._started + slot / self.rate
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    break
                self._login(client, self.bodies[slot % len(self.bodies)])
                slot += self.threads
        finally:
            client.close()

    def _login(self, client: Client, body: dict) -> None:
        began = time.monotonic()
        try:
            status, _ = client.request("POST", "/auth/token", body)
        except (OSError, http.client.HTTPException):
            client.close()  # the next request opens a fresh connection
            status = 0
        with self._lock:
            self.latencies.append(time.monotonic() - began)
            if status == 200:
                self.succeeded += 1
            else:
                self.failed += 1
