"""Real processes for the operations tests: the CLI, gunicorn, and what /proc says of them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from helpers import BIN, ROOT, service_env

# Every wait on a process is bounded by this, so a hung child fails the test, not the run.
PROCESS_TIMEOUT = 30.0


def run(
    command: list[str], environ: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess:
    """Run a command of the project as an operator would, bounded in time."""
    return subprocess.run(
        command,
        cwd=ROOT,
        env=service_env(**environ),
        input=stdin.encode(),
        capture_output=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )


def run_cli(
    args: list[str], environ: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess:
    """`tokenauth ARGS` with exactly these TOKENAUTH_* variables, bounded in time."""
    return run([str(BIN / "tokenauth"), *args], environ, stdin)


def start_gunicorn(
    environ: dict[str, str], log_path: Path, args: tuple[str, ...] = ()
) -> subprocess.Popen:
    """`gunicorn -c gunicorn.conf.py` as `make run` starts it, with exactly these variables."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", *args],
            cwd=ROOT,
            env=service_env(**environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    """Signal a process and wait for it (killing it past the timeout); its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout=PROCESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    """Live processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def command_line(pid: int) -> list[str]:
    """The arguments of a process; empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def pids_with_argument(argument: str) -> list[int]:
    """Live processes one of whose arguments is exactly `argument`."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
        and int(entry.name) != os.getpid()
        and argument in command_line(int(entry.name))
        and alive(int(entry.name))
    ]


def wait_until(condition, timeout: float = PROCESS_TIMEOUT, what: str = "condition") -> None:
    """Poll `condition` until it holds; TimeoutError past the timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def wait_gone(pids: Iterable[int], timeout: float = PROCESS_TIMEOUT) -> None:
    """Wait until none of the processes is alive."""
    pids = list(pids)
    wait_until(lambda: not any(alive(p) for p in pids), timeout, f"exit of {pids}")
