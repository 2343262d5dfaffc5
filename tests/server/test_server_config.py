"""``gojob server``'s configuration: flags over environment over TOML over defaults, and
precise errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gojob.server.config import (
    DEFAULT_STORE,
    ConfigError,
    ServerConfig,
    is_loopback,
    resolve_config,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gojob.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_source() -> None:
    config = resolve_config({}, {})
    assert config == ServerConfig()
    assert config.store == DEFAULT_STORE == "sqlite:///gojob.db"
    assert (config.host, config.port) == ("127.0.0.1", 59051)
    assert (config.metrics, config.metrics_host, config.metrics_port) == (True, "127.0.0.1", 9181)


def test_flags_beat_environment_beat_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'workers = 2\nstore = "memory://"\nport = 1111\nlease = "1m"\njobs = ["from.file"]\n'
        "drain-grace = 7\n",
    )
    env = {"GOJOB_WORKERS": "3", "GOJOB_PORT": "2222", "GOJOB_JOBS": "env.a, env.b"}
    flags = {"workers": "4", "port": None, "jobs": None}
    config = resolve_config(flags, env, path)
    assert config.workers == 4  # flag
    assert config.port == 2222  # environment
    assert config.jobs == ("env.a", "env.b")  # environment, comma-separated, replaces
    assert config.store == "memory://"  # file
    assert config.lease == 60.0  # file, a duration string
    assert config.drain_grace == 7.0  # file, dashed key
    assert config.host == "127.0.0.1"  # default


def test_a_list_from_flags_replaces_the_lower_ones(tmp_path: Path) -> None:
    path = write(tmp_path, 'jobs = ["from.file"]\n')
    config = resolve_config({"jobs": ["a.jobs", "b.jobs"]}, {"GOJOB_JOBS": "env.jobs"}, path)
    assert config.jobs == ("a.jobs", "b.jobs")


def test_the_config_file_may_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "metrics = false\nworkers = 5\n")
    config = resolve_config({}, {"GOJOB_CONFIG": str(path)})
    assert (config.metrics, config.workers) == (False, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('workers = "eight"\n', "gojob.toml: workers: expected an integer, got 'eight'"),
        ("workers = 2.5\n", "gojob.toml: workers: expected an integer, got float 2.5"),
        ("port = true\n", "gojob.toml: port: expected an integer, got bool True"),
        ('metrics = "maybe"\n', "gojob.toml: metrics: expected a boolean (true/false)"),
        ("jobs = 3\n", "gojob.toml: jobs: expected a list of module names, got int 3"),
        ("jobs = [1]\n", "gojob.toml: jobs: expected a string, got int 1"),
        ('lease = "soon"\n', "gojob.toml: lease:"),
        ("lease = -1\n", "gojob.toml: lease: expected a non-negative duration"),
        ("wrokers = 2\n", "unknown key 'wrokers' (known keys: store,"),
        ("workers = \n", "not valid TOML"),
    ],
)
def test_bad_values_in_the_file_name_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        resolve_config({}, {}, path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GOJOB_WORKERS": "many"}, "GOJOB_WORKERS: expected an integer, got 'many'"),
        ({"GOJOB_METRICS": "perhaps"}, "GOJOB_METRICS: expected a boolean"),
        ({"GOJOB_DRAIN_GRACE": "10 parsecs"}, "GOJOB_DRAIN_GRACE:"),
        ({"GOJOB_WORKERS": "0"}, "workers must be at least 1, got 0"),
        ({"GOJOB_PORT": "70000"}, "port must be between 0 and 65535, got 70000"),
        ({"GOJOB_LOG_LEVEL": "loud"}, "log_level must be one of DEBUG, INFO"),
    ],
)
def test_bad_values_in_the_environment_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config({}, env)
    assert message in str(info.value)


def test_booleans_and_empty_variables_in_the_environment() -> None:
    config = resolve_config({}, {"GOJOB_METRICS": "off", "GOJOB_ALLOW_INSECURE_REMOTE": "Yes"})
    assert (config.metrics, config.allow_insecure_remote) == (False, True)
    assert resolve_config({}, {"GOJOB_WORKERS": ""}).workers == 10  # empty means unset


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        resolve_config({}, {}, tmp_path / "absent.toml")


def test_the_token_file_is_read_and_excludes_a_token(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    config = resolve_config({"token_file": str(secret)}, {})
    assert config.token == "s3cret"
    assert "s3cret" not in repr(config)
    with pytest.raises(ConfigError, match="either a token or a token file"):
        resolve_config({"token_file": str(secret)}, {"GOJOB_TOKEN": "other"})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_config({"token_file": str(tmp_path / "empty")}, {})


def test_tls_needs_both_files_and_they_must_exist(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="both a certificate"):
        resolve_config({"tls_cert": str(cert)}, {})
    with pytest.raises(ConfigError, match="no such file"):
        resolve_config({"tls_cert": str(cert), "tls_key": str(tmp_path / "nokey.pem")}, {})


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("jobs.example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_remote_address_needs_tls_or_a_token_or_an_explicit_allowance(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without TLS or a token"):
        resolve_config({"host": "0.0.0.0"}, {}).check_exposure()
    resolve_config({"host": "0.0.0.0", "token": "t"}, {}).check_exposure()
    resolve_config({"host": "0.0.0.0", "allow_insecure_remote": True}, {}).check_exposure()
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    tls = {"host": "10.1.2.3", "tls_cert": str(cert), "tls_key": str(key)}
    resolve_config(tls, {}).check_exposure()


def test_metrics_stay_on_loopback_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="metrics on non-loopback"):
        resolve_config({"metrics_host": "0.0.0.0", "token": "t"}, {}).check_exposure()
    resolve_config({"metrics_host": "0.0.0.0", "metrics": False}, {}).check_exposure()
    allowed = {"metrics_host": "0.0.0.0", "allow_insecure_remote": True}
    resolve_config(allowed, {}).check_exposure()
