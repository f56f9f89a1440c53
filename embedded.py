"""The embedded secantusdb server for `make run` and the tests: a MongoDB-wire child process."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo
from pymongo import errors as mongo_errors


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
        """The connection string of the running server."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

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
            self.marker.write_text(json.dumps({"pid": self.process.pid, "uri": self.uri}))
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


def die_with_parent() -> None:
    """In a child before exec: die when the parent does."""
    # A killed parent must not leave the database behind (Linux prctl PR_SET_PDEATHSIG).
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
