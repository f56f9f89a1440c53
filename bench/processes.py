"""The processes a run starts: gunicorn serving the service or the ceiling; and their memory."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from embedded import die_with_parent, free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class Gunicorn:
    """`gunicorn -c gunicorn.conf.py [APP]` on a free loopback port, logging to a file."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_path: Path,
        *,
        app_uri: str | None = None,
        extra_args: Sequence[str] = (),
        root: Path = ROOT,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "TOKENAUTH_BIND": f"127.0.0.1:{self.port}"}
        self.log_path = log_path
        self.app_uri = app_uri
        self.extra_args = list(extra_args)
        self.root = root  # the checkout served (bench.ab may serve another commit's)
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        """The URL the server answers on."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start gunicorn and wait until /health answers 200."""
        command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", *self.extra_args]
        if self.app_uri:
            command.append(self.app_uri)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up:\n{self.log_tail()}")
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not healthy in {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/health", timeout=2) as answer:  # noqa: S310
                return answer.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for an error message."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def worker_pids(self) -> list[int]:
        """The pids of the arbiter's worker processes."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]

    def pids(self) -> list[int]:
        """The arbiter and its workers."""
        return [self.process.pid, *self.worker_pids()]

    def stop(self) -> None:
        """SIGTERM, a graceful wait, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds that groups of processes spend inside `measuring()` blocks, summed."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.spent: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        return {name: sum(map(cpu_seconds, pids())) for name, pids in self.groups.items()}

    @contextlib.contextmanager
    def measuring(self) -> Iterator[None]:
        """Add what each group spends inside the block to `spent`."""
        before = self._read()
        yield
        after = self._read()
        for name in self.groups:
            self.spent[name] = self.spent.get(name, 0.0) + after[name] - before[name]


def wait_until_idle(
    pids: Callable[[], list[int]], *, busy: float = 0.1, timeout: float = 10.0
) -> None:
    """Wait until the processes use less than `busy` of a core (or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    before = sum(map(cpu_seconds, pids()))
    while time.monotonic() < deadline:
        time.sleep(0.2)
        after = sum(map(cpu_seconds, pids()))
        if after - before < busy * 0.2:
            return
        before = after


def peak_rss_bytes(pid: int) -> int:
    """VmHWM of a process: the most resident memory it has held, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise RuntimeError(f"no VmHWM for pid {pid}")
