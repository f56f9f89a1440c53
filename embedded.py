"""The embedded secantusdb server for `make run` and the tests: a MongoDB-wire child process."""

from __future__ import annotations

import collections
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pymongo
from pymongo import errors as mongo_errors

if TYPE_CHECKING:
    from config import Config


class EmbeddedServer:
    """A `secantusd-py` child process: MongoDB's wire protocol on a free loopback port."""

    def __init__(
        self,
        data_dir: Path,
        *,
        executable: str | None = None,
        test_commands: bool = False,
        storage: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.executable = executable or _find_secantusd()
        self.test_commands = test_commands
        self.storage = storage or str(self.data_dir / "db")
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        """The connection string of the running server (no retryable writes)."""
        # retryWrites=false: secantusd-py scans its whole list of retryable-write records on
        # every retryable write, and sorts it once it holds 10,000 (30 minutes' worth): from
        # then on each write costs it about 5 ms of CPU more (BENCHMARKS.md, "mfa"). The list
        # lives in its memory only, so a driver's retry after the server restarted was never
        # recognised anyway. A MongoDB named by TOKENAUTH_MONGODB_URI keeps them.
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true&retryWrites=false"

    @property
    def marker(self) -> Path:
        """A file telling other processes (the CLI) where the running server listens."""
        return self.data_dir / "embedded.json"

    def start(self, timeout: float = 30.0) -> str:
        """Start the server (same port again after a stop) and wait until it answers a ping."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.storage != ":memory:":
            Path(self.storage).mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        command = [
            self.executable,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--storage-path", self.storage,
            "--log-level", "WARNING",
        ]  # fmt: skip
        if self.test_commands:
            command.append("--enable-test-commands")
        log = open(self.data_dir / "embedded.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            command, stdout=log, stderr=log, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        log.close()
        self._wait_ready(timeout)
        if self.storage != ":memory:":
            # Replaced whole, so a reader (the CLI) never sees a half-written marker.
            draft = self.marker.with_suffix(".tmp")
            draft.write_text(json.dumps({"pid": self.process.pid, "uri": self.uri}))
            os.replace(draft, self.marker)
        return self.uri

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"secantusd-py exited with {self.process.returncode}; "
                        f"see {self.data_dir / 'embedded.log'}"
                    )
                try:
                    client.admin.command("ping")
                    return
                except mongo_errors.PyMongoError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(
                            "secantusd-py did not answer within its start-up time"
                        ) from None
                    time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server and wait for it to exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.marker.unlink(missing_ok=True)


class Supervisor:
    """Keeps an embedded server running: a child that dies is started again, same data and port.

    A daemon thread polls the child. It forks the restarted children itself and lives as long
    as the supervisor, because PR_SET_PDEATHSIG fires when the forking thread exits.
    """

    def __init__(
        self,
        server: EmbeddedServer,
        *,
        log: Logger,
        max_exits: int = 5,
        window: float = 60.0,
        poll: float = 0.2,
        retry_delay: float = 1.0,
    ) -> None:
        self.server = server
        self.log = log
        self.max_exits = max_exits
        self.window = window
        self.poll = poll
        self.retry_delay = retry_delay
        self._exits: collections.deque[float] = collections.deque()
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # held while a child is replaced or stopped
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Start the server from the calling thread, then watch it; its URI."""
        uri = self.server.start()
        self._thread = threading.Thread(
            target=self._watch, name="tokenauth-embedded-supervisor", daemon=True
        )
        self._thread.start()
        return uri

    def stop(self) -> None:
        """Stop watching, then stop the server."""
        self._stopping.set()
        with self._lock:
            self.server.stop()
        if self._thread is not None:
            self._thread.join(timeout=self.poll * 10)

    def _watch(self) -> None:
        while self._wait_for_exit():
            with self._lock:
                if self._stopping.is_set():
                    return
                if self._crash_loop():
                    self.server.stop()  # reaps the dead child and removes the stale marker
                    self.log.error(
                        "embedded server exited %d times within %d s; not restarting it again "
                        "(see %s); requests answer 503 until the service is restarted",
                        self.max_exits,
                        self.window,
                        self.server.data_dir / "embedded.log",
                    )
                    return
                restarted = self._restart()
            if not restarted:
                self._stopping.wait(self.retry_delay)

    def _wait_for_exit(self) -> bool:
        """Block until the child is gone (True) or the supervisor is stopped (False)."""
        while not self._stopping.is_set():
            process = self.server.process
            if process is None or process.poll() is not None:
                return True
            self._stopping.wait(self.poll)
        return False

    def _crash_loop(self) -> bool:
        now = time.monotonic()
        self._exits.append(now)
        while now - self._exits[0] > self.window:
            self._exits.popleft()
        return len(self._exits) >= self.max_exits

    def _restart(self) -> bool:
        """Start the server again on its port; False (and one log line) when it would not."""
        dead = self.server.process.pid if self.server.process else None
        if port_taken(self.server.port):
            self.log.error(
                "embedded server (pid %s) exited and its port %d is taken by another "
                "process; retrying in %g s",
                dead,
                self.server.port,
                self.retry_delay,
            )
            return False
        try:
            uri = self.server.start()
        except RuntimeError as error:
            self.log.error("embedded server (pid %s) exited and did not restart: %s", dead, error)
            return False
        self.log.warning(
            "embedded server (pid %s) exited; restarted as pid %d on %s",
            dead,
            self.server.process.pid,
            uri,
        )
        return True


class Logger(Protocol):
    """What the supervisor logs through: gunicorn's logger or a logging.Logger."""

    def warning(self, msg: str, *args: object) -> None: ...

    def error(self, msg: str, *args: object) -> None: ...


def port_taken(port: int) -> bool:
    """True when something listens on the loopback port."""
    with socket.socket() as sock:
        # SO_REUSEADDR: connections of a killed server left in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def database_uri(config: Config) -> str | None:
    """The configured MongoDB, else the embedded server running over the data dir, if any."""
    return config.mongodb_uri or running_embedded_uri(config.data_dir)


def running_embedded_uri(data_dir: Path) -> str | None:
    """The URI of an embedded server already running over `data_dir`, if any."""
    try:
        info = json.loads((Path(data_dir) / "embedded.json").read_text())
        os.kill(info["pid"], 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info["uri"]


def _find_secantusd() -> str:
    beside_python = Path(sys.executable).parent / "secantusd-py"
    found = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    if not found:
        raise RuntimeError(
            "the embedded server needs the 'embedded' extra (pip install -e '.[embedded]'), "
            "or set TOKENAUTH_MONGODB_URI"
        )
    return found


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up once in the parent: a child forked by a threaded parent must not call dlopen/dlsym.
_PRCTL = _prctl()


def die_with_parent() -> None:
    """In a child before exec: die when the parent (the thread that forked it) does."""
    # A killed parent must not leave the database behind (Linux prctl PR_SET_PDEATHSIG).
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)
