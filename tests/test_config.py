"""Configuration mistakes stop start-up with one line naming the variable, never a traceback."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import BIN, PASSWORD, free_port
from processes import run

from config import Config
from errors import ConfigError
from keys import MIN_HMAC_SECRET
from service import create_app


def config_error(environ: dict[str, str]) -> ConfigError:
    """The ConfigError Config.from_env raises for these variables."""
    with pytest.raises(ConfigError) as raised:
        Config.from_env(environ)
    return raised.value


def assert_names(error: ConfigError, variable: str) -> None:
    """The error names the variable, first thing in its message."""
    assert error.variable == variable
    assert str(error).startswith(f"{variable}: ")


# -- Config.from_env --------------------------------------------------------------------
def test_defaults_are_the_contract_defaults():
    config = Config.from_env({})
    assert config.mongodb_uri is None
    assert config.db_name == "tokenauth"
    assert config.data_dir == Path("var")
    assert config.keys_dir == Path("var") / "keys"
    assert config.bind == "127.0.0.1:8000"
    assert config.issuer == "http://127.0.0.1:8000"
    assert config.audience == "tokenauth"
    assert config.signing_alg == "EdDSA"
    assert config.access_ttl == 900
    assert config.refresh_ttl == 1_209_600
    assert config.cors_origins == ()
    assert config.login_max_failures == 5
    assert config.login_window == 900
    assert config.password_min_length == 15
    assert config.password_grant is True
    assert config.access_log is False


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("on", True)])
def test_the_password_grant_switch_is_read(value, expected):
    assert Config.from_env({"TOKENAUTH_PASSWORD_GRANT": value}).password_grant is expected


def test_a_password_grant_switch_that_is_not_a_boolean_names_the_variable():
    with pytest.raises(ConfigError) as raised:
        Config.from_env({"TOKENAUTH_PASSWORD_GRANT": "maybe"})
    assert str(raised.value) == "TOKENAUTH_PASSWORD_GRANT: not true or false: 'maybe'"


@pytest.mark.parametrize(("value", "expected"), [("on", True), ("true", True), ("off", False)])
def test_the_access_log_switch_is_read(value, expected):
    assert Config.from_env({"TOKENAUTH_ACCESS_LOG": value}).access_log is expected


def test_an_access_log_switch_that_is_not_a_boolean_names_the_variable():
    error = config_error({"TOKENAUTH_ACCESS_LOG": "verbose"})
    assert str(error) == "TOKENAUTH_ACCESS_LOG: not true or false: 'verbose'"


def test_keys_dir_follows_the_data_dir():
    assert Config.from_env({"TOKENAUTH_DATA_DIR": "/srv/ta"}).keys_dir == Path("/srv/ta/keys")


@pytest.mark.parametrize("value", ["XYZ", "eddsa", "none", "HS512"])
def test_unknown_signing_alg_names_the_variable(value):
    error = config_error({"TOKENAUTH_SIGNING_ALG": value})
    assert_names(error, "TOKENAUTH_SIGNING_ALG")
    assert repr(value) in str(error)


@pytest.mark.parametrize(
    "name",
    [
        "ACCESS_TTL",
        "REFRESH_TTL",
        "LOGIN_MAX_FAILURES",
        "LOGIN_WINDOW",
        "PASSWORD_MIN_LENGTH",
        "REFRESH_REUSE_INTERVAL",
    ],
)
@pytest.mark.parametrize("value", ["15m", "1.5", "ten", "0x10"])
def test_non_integer_names_the_variable(name, value):
    error = config_error({f"TOKENAUTH_{name}": value})
    assert_names(error, f"TOKENAUTH_{name}")
    assert "not an integer" in str(error)


@pytest.mark.parametrize("value", ["0", "-900", "86401"])
def test_access_ttl_out_of_range_names_the_variable(value):
    assert_names(config_error({"TOKENAUTH_ACCESS_TTL": value}), "TOKENAUTH_ACCESS_TTL")


@pytest.mark.parametrize("value", ["7", "65", "0", "-15"])
def test_password_min_length_out_of_range_names_the_variable(value):
    error = config_error({"TOKENAUTH_PASSWORD_MIN_LENGTH": value})
    assert_names(error, "TOKENAUTH_PASSWORD_MIN_LENGTH")
    assert "between 8 and 64" in str(error)


@pytest.mark.parametrize("value", ["8", "64"])
def test_password_min_length_bounds_are_accepted(value):
    config = Config.from_env({"TOKENAUTH_PASSWORD_MIN_LENGTH": value})
    assert config.password_min_length == int(value)


@pytest.mark.parametrize("value", ["-1", "301"])
def test_refresh_reuse_interval_out_of_range_names_the_variable(value):
    error = config_error({"TOKENAUTH_REFRESH_REUSE_INTERVAL": value})
    assert_names(error, "TOKENAUTH_REFRESH_REUSE_INTERVAL")
    assert "between 0 and 300" in str(error)


@pytest.mark.parametrize("value", ["0", "300"])
def test_refresh_reuse_interval_bounds_are_accepted(value):
    config = Config.from_env({"TOKENAUTH_REFRESH_REUSE_INTERVAL": value})
    assert config.refresh_reuse_interval == int(value)


def test_step_up_and_admin_mfa_defaults():
    config = Config.from_env({})
    assert (config.step_up_max_age, config.admin_requires_mfa) == (600, True)


@pytest.mark.parametrize("value", ["0", "86401", "-600"])
def test_step_up_max_age_out_of_range_names_the_variable(value):
    error = config_error({"TOKENAUTH_STEP_UP_MAX_AGE": value})
    assert_names(error, "TOKENAUTH_STEP_UP_MAX_AGE")
    assert "between 1 and 86400" in str(error)


@pytest.mark.parametrize("value", ["1", "86400"])
def test_step_up_max_age_bounds_are_accepted(value):
    assert Config.from_env({"TOKENAUTH_STEP_UP_MAX_AGE": value}).step_up_max_age == int(value)


def test_step_up_max_age_must_be_an_integer():
    error = config_error({"TOKENAUTH_STEP_UP_MAX_AGE": "10m"})
    assert_names(error, "TOKENAUTH_STEP_UP_MAX_AGE")
    assert "not an integer" in str(error)


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("off", False), ("1", True)])
def test_admin_requires_mfa_is_a_boolean(value, expected):
    assert Config.from_env({"TOKENAUTH_ADMIN_REQUIRES_MFA": value}).admin_requires_mfa is expected


def test_admin_requires_mfa_names_the_variable():
    error = config_error({"TOKENAUTH_ADMIN_REQUIRES_MFA": "sometimes"})
    assert_names(error, "TOKENAUTH_ADMIN_REQUIRES_MFA")


def test_database_name_with_a_dot_names_the_variable():
    assert_names(config_error({"TOKENAUTH_DB_NAME": "a.b"}), "TOKENAUTH_DB_NAME")


def test_cors_origin_without_scheme_names_the_variable():
    error = config_error({"TOKENAUTH_CORS_ORIGINS": "https://ok.example, app.example"})
    assert_names(error, "TOKENAUTH_CORS_ORIGINS")


# -- keys, checked when the app is built ------------------------------------------------
def write_corrupt_key(keys_dir: Path) -> None:
    """A .pem that is no private key."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    (keys_dir / "20250101T000000Z-broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nxx\n")


def keys_error(config: Config) -> ConfigError:
    """The ConfigError building the app raises."""
    with pytest.raises(ConfigError) as raised:
        create_app(config, start_background=False)
    return raised.value


def test_corrupt_key_file_names_the_keys_dir(make_config, tmp_path):
    write_corrupt_key(tmp_path / "keys")
    config = Config.from_env(
        {
            "TOKENAUTH_MONGODB_URI": make_config().mongodb_uri,
            "TOKENAUTH_KEYS_DIR": str(tmp_path / "keys"),
        }
    )
    error = keys_error(config)
    assert_names(error, "TOKENAUTH_KEYS_DIR")
    assert "20250101T000000Z-broken.pem" in str(error)


def test_key_file_that_cannot_be_read_names_the_keys_dir(make_config, tmp_path):
    # A directory where a key file should be: reading it fails like an unreadable file.
    (tmp_path / "keys" / "20250101T000000Z-dir.pem").mkdir(parents=True)
    assert_names(keys_error(make_config()), "TOKENAUTH_KEYS_DIR")


def test_keys_dir_that_is_a_file_names_the_keys_dir(make_config, tmp_path):
    (tmp_path / "keys").write_text("not a directory")
    assert_names(keys_error(make_config()), "TOKENAUTH_KEYS_DIR")


def write_corrupt_data_key(keys_dir: Path) -> None:
    """A data key file that is not 32 bytes of base64."""
    keys_dir.mkdir(parents=True, exist_ok=True)
    (keys_dir / "data-20250101T000000Z-broken.aesgcm").write_text("c2hvcnQ=\n")


def test_corrupt_data_key_names_the_keys_dir(make_config, tmp_path):
    write_corrupt_data_key(tmp_path / "keys")
    error = keys_error(make_config())
    assert_names(error, "TOKENAUTH_KEYS_DIR")
    assert "data-20250101T000000Z-broken.aesgcm is not 32 bytes of base64" in str(error)


def test_the_data_key_is_made_once_and_kept(make_config, tmp_path):
    create_app(make_config(), start_background=False).close()
    (first,) = (tmp_path / "keys").glob("*.aesgcm")
    content = first.read_bytes()
    create_app(make_config(), start_background=False).close()
    assert [p.name for p in (tmp_path / "keys").glob("*.aesgcm")] == [first.name]
    assert first.read_bytes() == content


# -- the real processes -----------------------------------------------------------------
def bad_environments(tmp_path: Path) -> dict[str, tuple[dict[str, str], str]]:
    """Name -> (TOKENAUTH_* variables with one mistake, the variable to be named)."""
    corrupt = tmp_path / "corrupt-keys"
    write_corrupt_key(corrupt)
    short = tmp_path / "short-keys"
    short.mkdir()
    (short / "short.secret").write_bytes(b"k" * (MIN_HMAC_SECRET - 1))
    data = tmp_path / "data-key"
    write_corrupt_data_key(data)
    return {
        "unknown-alg": ({"TOKENAUTH_SIGNING_ALG": "XYZ"}, "TOKENAUTH_SIGNING_ALG"),
        "non-integer-ttl": ({"TOKENAUTH_ACCESS_TTL": "15m"}, "TOKENAUTH_ACCESS_TTL"),
        "min-length": ({"TOKENAUTH_PASSWORD_MIN_LENGTH": "7"}, "TOKENAUTH_PASSWORD_MIN_LENGTH"),
        "corrupt-key": ({"TOKENAUTH_KEYS_DIR": str(corrupt)}, "TOKENAUTH_KEYS_DIR"),
        "short-secret": (
            {"TOKENAUTH_KEYS_DIR": str(short), "TOKENAUTH_SIGNING_ALG": "HS256"},
            "TOKENAUTH_KEYS_DIR",
        ),
        "corrupt-data-key": ({"TOKENAUTH_KEYS_DIR": str(data)}, "TOKENAUTH_KEYS_DIR"),
        "step-up-max-age": ({"TOKENAUTH_STEP_UP_MAX_AGE": "0"}, "TOKENAUTH_STEP_UP_MAX_AGE"),
    }


MISTAKES = [
    "unknown-alg",
    "non-integer-ttl",
    "min-length",
    "corrupt-key",
    "short-secret",
    "corrupt-data-key",
    "step-up-max-age",
]


def assert_one_line_naming(result: subprocess.CompletedProcess, variable: str) -> None:
    """Exactly one line on stderr, naming the variable; no traceback anywhere."""
    stderr = result.stderr.decode()
    output = stderr + result.stdout.decode()
    assert "Traceback" not in output, output
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"tokenauth: {variable}: "), stderr


@pytest.mark.parametrize("mistake", MISTAKES)
def test_gunicorn_refuses_a_bad_configuration_in_one_line(mongo_uri, tmp_path, mistake):
    environ, variable = bad_environments(tmp_path)[mistake]
    base = {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
        "TOKENAUTH_BIND": f"127.0.0.1:{free_port()}",
    }
    result = run([str(BIN / "gunicorn"), "-c", "gunicorn.conf.py"], {**base, **environ})
    assert result.returncode != 0
    assert_one_line_naming(result, variable)


@pytest.mark.parametrize("mistake", MISTAKES)
def test_cli_refuses_a_bad_configuration_in_one_line(mongo_uri, db_name, db, tmp_path, mistake):
    environ, variable = bad_environments(tmp_path)[mistake]
    base = {
        "TOKENAUTH_MONGODB_URI": mongo_uri,
        "TOKENAUTH_DB_NAME": db_name,
        "TOKENAUTH_DATA_DIR": str(tmp_path / "var"),
    }
    command = [str(BIN / "tokenauth"), "create-user", "carol", "--password-stdin"]
    result = run(command, {**base, **environ}, stdin=PASSWORD + "\n")
    assert result.returncode == 1
    assert_one_line_naming(result, variable)
    assert result.stdout == b""
    assert db.users.count_documents({}) == 0


# -- the access log under real gunicorn --------------------------------------------------
def _access_lines(base: str, tmp_path: Path) -> list[str]:
    """The access-log lines gunicorn wrote for one GET /auth/policy (start-up polls /health)."""
    port = base.rsplit(":", 1)[1]
    with urllib.request.urlopen(f"{base}/auth/policy", timeout=10) as answer:  # noqa: S310
        assert answer.status == 200
    log = tmp_path / f"gunicorn-{port}.log"
    # gunicorn writes the line after the answer: wait for it (or for nothing, when off).
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        lines = [line for line in log.read_text().splitlines() if '"GET /auth/policy"' in line]
        if lines:
            return lines
        time.sleep(0.1)
    return []


def test_gunicorn_writes_no_access_log_by_default(gunicorn_server, tmp_path):
    assert _access_lines(gunicorn_server(), tmp_path) == []


def test_gunicorn_writes_an_access_line_a_request_when_asked(gunicorn_server, tmp_path):
    (line,) = _access_lines(gunicorn_server({"TOKENAUTH_ACCESS_LOG": "on"}), tmp_path)
    assert line.startswith('127.0.0.1 "GET /auth/policy" 200 ')
    assert line.endswith("ms")
