"""Schemathesis against a real gunicorn: every operation, every check, zero failures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import requests
from helpers import ADMIN_PASSWORD, BIN

import openapi

HERE = Path(__file__).resolve().parent
ADMIN = "st-admin"
# Throttles far away, so that the run exercises the routes rather than the 429 answer
# (test_throttling.py checks that answer against the document).
ROOMY = {
    "TOKENAUTH_LOGIN_MAX_FAILURES": "1000",
    "TOKENAUTH_REGISTRATION_LIMIT": "1000000",
    "TOKENAUTH_ACCESS_TTL": "3600",
}


def create_admin(base: str, db) -> None:
    """Register through the API, then grant the role as `tokenauth create-user --admin` would."""
    body = {"username": ADMIN, "password": ADMIN_PASSWORD}
    assert requests.post(f"{base}/users", json=body, timeout=10).status_code == 201
    db["users"].update_one({"username": ADMIN}, {"$set": {"roles": ["user", "admin"]}})


def run_schemathesis(base: str, workdir: Path, *options: str, timeout: float = 600) -> str:
    """`st run` on the repository's document against `base`; its output, failing on failures."""
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "TOKENAUTH_ST_BASE_URL": base,
        "TOKENAUTH_ST_USERNAME": ADMIN,
        "TOKENAUTH_ST_PASSWORD": ADMIN_PASSWORD,
    }
    command = [
        str(BIN / "st"),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        # The file, not the URL: Schemathesis leaves out the operation serving a schema URL.
        str(openapi.DOCUMENT_FILE),
        "--url",
        base,
        "--checks",
        "all",
        "--generation-database",
        "none",
        "--no-color",
        *options,
    ]
    finished = subprocess.run(
        command,
        env=env,
        cwd=workdir,  # where Schemathesis keeps its cache: not the checkout
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 0, output[-30_000:]
    return output


def operation_count() -> int:
    return len(openapi.documented_routes())


def test_every_operation_conforms_under_schemathesis(gunicorn_server, db, tmp_path):
    base = gunicorn_server(ROOMY)
    served = requests.get(f"{base}/openapi.json", timeout=10).json()
    assert served == json.loads(openapi.DOCUMENT_FILE.read_text(encoding="utf-8"))
    create_admin(base, db)
    output = run_schemathesis(
        base,
        tmp_path,
        "--max-examples",
        "100",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        # One worker: Python 3.11's ast is not thread-safe ("AST constructor recursion depth
        # mismatch"), and Hypothesis parses lambdas with it from every Schemathesis worker.
        "--workers",
        "1",
    )
    count = operation_count()
    assert f"Selected: {count}/{count}" in output
    assert f"Tested: {count}" in output
    assert "API Links:" in output  # the stateful phase ran, following links between operations
