"""The README's walk-through runs verbatim against a real server and prints what it shows."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT, service_env

# Ids and times differ from run to run; everything else must match the README exactly.
_VARYING = [
    (re.compile(r"[0-9a-f]{24}"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "<time>"),
]


def walk_through() -> list[tuple[str, str]]:
    """(command, expected output) pairs of the README's console block."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## A walk through it", 1)[1]
    block = section.split("```console\n", 1)[1].split("```", 1)[0]
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line and steps:
            steps[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in steps]


def masked(text: str) -> str:
    """The text with ids and times replaced by placeholders."""
    for pattern, placeholder in _VARYING:
        text = pattern.sub(placeholder, text)
    return text.strip()


def run_walk_through(port: str, env: dict[str, str], cwd: Path) -> None:
    """Run the README's console block against 127.0.0.1:PORT; each output must match."""
    if shutil.which("curl") is None:
        pytest.fail("curl is needed to run the README's walk-through")
    (cwd / ".venv").symlink_to(ROOT / ".venv")
    steps = walk_through()
    assert len(steps) >= 8
    script = []
    for index, (command, _) in enumerate(steps):
        script.append(command.replace("localhost:8000", f"127.0.0.1:{port}"))
        script.append(f"echo; echo '--- step {index} ---'")
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outputs = re.split(r"--- step \d+ ---\n?", result.stdout)
    for (command, expected), actual in zip(steps, outputs, strict=False):
        assert masked(actual) == masked(expected), command


def test_readme_walk_through_runs_verbatim(gunicorn_server, mongo_uri, db_name, tmp_path):
    base = gunicorn_server()
    env = service_env(TOKENAUTH_MONGODB_URI=mongo_uri, TOKENAUTH_DB_NAME=db_name)
    run_walk_through(base.rsplit(":", 1)[1], env, tmp_path)
