"""The rooms and the one direction between them (DESIGN.md), read off the sources."""

from __future__ import annotations

import ast
import inspect

import pytest
from helpers import ROOT

import account_routes
import discovery
import mfa_routes
import oauth
import passkey_routes
import person_routes
import provider
import service

# Each module imports only modules of a lower rank: service -> provider/discovery -> oauth ->
# exchange/passkey_routes/account_routes ->
# grants/signins/mfa_routes/person_routes/passkeys/middleware ->
# web/sessions/accounts/mfa/idtokens -> auth ->
# throttle/keys/passwords/clients -> store/embedded -> pymongo, with the leaves everyone may use.
RANKS = {
    "cli": 10,
    "service": 9,
    "provider": 8,
    "discovery": 8,
    "oauth": 7,
    "exchange": 6,
    "passkey_routes": 6,
    "account_routes": 6,
    "recovery": 5,
    "signins": 5,
    "grants": 5,
    "mfa_routes": 5,
    "middleware": 5,
    "person_routes": 5,
    "passkeys": 5,
    "web": 4,
    "sessions": 4,
    "accounts": 4,
    "mfa": 4,
    "idtokens": 4,
    "auth": 3,
    "throttle": 2,
    "keys": 2,
    "passwords": 2,
    "events": 2,
    "mail": 2,
    "clients": 2,
    "store": 1,
    "embedded": 1,
    "openapi": 0,
    "config": 0,
    "pages": 0,
    "errors": -1,
    "clock": -1,
}
DRIVER = {"pymongo", "bson"}
HTTP = {"falcon"}


def imports_of(module: str) -> set[str]:
    """Top-level package names a module of ours imports, anywhere in its source."""
    tree = ast.parse((ROOT / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def graph() -> dict[str, set[str]]:
    """Our modules and the modules of ours each imports."""
    return {module: imports_of(module) & set(RANKS) for module in RANKS}


def test_every_top_level_module_has_a_room():
    modules = {path.stem for path in ROOT.glob("*.py")} - {"gunicorn.conf", "setup"}
    assert modules == set(RANKS)


def test_the_import_graph_has_no_cycle():
    edges = graph()
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for imported in edges[module]:
            visit(imported, (*path, module))
        done.add(module)

    for module in edges:
        visit(module, ())


@pytest.mark.parametrize("module", sorted(RANKS))
def test_imports_point_one_way(module):
    upward = {m for m in graph()[module] if RANKS[m] >= RANKS[module]}
    assert upward == set(), f"{module} imports {upward}, which are not below it"


@pytest.mark.parametrize("module", sorted(RANKS))
def test_only_the_store_and_the_embedded_server_speak_to_mongodb(module):
    if module in {"store", "embedded"}:
        return
    assert imports_of(module) & DRIVER == set(), f"{module} imports the MongoDB driver"


@pytest.mark.parametrize(
    "module",
    [
        "store",
        "embedded",
        "throttle",
        "keys",
        "passwords",
        "clients",
        "grants",
        "signins",
        "idtokens",
    ],
)
def test_the_lower_rooms_know_nothing_of_http(module):
    assert imports_of(module) & HTTP == set(), f"{module} imports falcon"


def test_no_resource_takes_the_whole_wiring_record():
    resources = [
        cls
        for module in (
            service,
            oauth,
            account_routes,
            mfa_routes,
            passkey_routes,
            person_routes,
            provider,
            discovery,
        )
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__ and any(name.startswith("on_") for name in vars(cls))
    ]
    assert len(resources) >= 12
    for resource in resources:
        parameters = inspect.signature(resource.__init__).parameters
        annotations = {str(p.annotation) for p in parameters.values()}
        assert "Components" not in annotations, f"{resource.__name__} takes the wiring record"
        assert "c" not in parameters, f"{resource.__name__} takes the wiring record"
