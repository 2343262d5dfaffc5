"""The configuration of ``gojob server``: flags, then environment, then a TOML file.

:func:`resolve_config` merges three sources into one :class:`ServerConfig`, the first
one that sets a key winning:

1. command-line flags (``--workers 8``);
2. environment variables ``GOJOB_<KEY>`` (``GOJOB_WORKERS=8``; ``GOJOB_JOBS`` is
   comma-separated; booleans are ``1/true/yes/on`` or ``0/false/no/off``);
3. a TOML file (``--config FILE`` or ``GOJOB_CONFIG``): top-level keys named like the
   fields below (``drain_grace`` or ``drain-grace``), e.g.::

       store = "postgresql://gojob@db/jobs"
       workers = 8
       jobs = ["myapp.jobs", "myapp.reports"]
       lease = "30s"

then the defaults. A list (``jobs``) from a higher source replaces, never extends, a
lower one. Durations (``lease``, ``drain_grace``, ``retention``) are seconds or duration
strings (``"30s"``, ``"5m"``, ``"7d"``). Every error (unknown key, wrong type, bad
value) raises :class:`ConfigError` naming the source and the key.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import GojobError, InvalidSchedule
from ..schedule import parse_interval

__all__ = [
    "DEFAULT_STORE",
    "ENV_PREFIX",
    "ConfigError",
    "ServerConfig",
    "is_loopback",
    "resolve_config",
]

DEFAULT_STORE = "sqlite:///gojob.db"
"""The embedded default: a SQLite file in the working directory, migrated on first use."""

ENV_PREFIX = "GOJOB_"

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(GojobError, ValueError):
    """The server's configuration is invalid; the message names the source and key."""


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``gojob server`` needs (see the module docstring for the sources)."""

    store: str = DEFAULT_STORE
    """Store URL: ``sqlite:///path.db`` (migrated on first use), ``postgresql://...``,
    ``memory://`` (keeps nothing)."""
    schema: str | None = None
    """PostgreSQL schema of the tables (default: the connection's search path)."""
    prefix: str | None = None
    """Table name prefix of the SQL stores (default ``gojob_``)."""
    migrate: bool = False
    """Migrate a PostgreSQL schema to head at start (SQLite files always are)."""
    workers: int = 10
    host: str = "127.0.0.1"
    port: int = 59051
    metrics: bool = True
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9181
    node_id: str | None = None
    lease: float = 30.0
    drain_grace: float = 10.0
    retention: float | None = None
    """Prune final instances older than this many seconds (off by default)."""
    jobs: tuple[str, ...] = ()
    """Importable modules whose jobs this node runs (see :mod:`gojob.server.jobs`)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token: str | None = field(default=None, repr=False)
    """Bearer token every call (health excepted) must carry; read from ``token_file``
    when that is given."""
    token_file: Path | None = None
    allow_insecure_remote: bool = False
    log_level: str = "INFO"

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def check_exposure(self) -> None:
        """Refuse a non-loopback gRPC address without TLS or a token, and a non-loopback
        metrics address, unless ``allow_insecure_remote``."""
        if self.allow_insecure_remote:
            return
        if not is_loopback(self.host) and not (self.tls or self.token):
            raise ConfigError(
                f"refusing to serve gRPC on non-loopback address {self.host!r} without TLS "
                "or a token: give --tls-cert/--tls-key or --token (or --token-file), or "
                "--allow-insecure-remote if the network is trusted"
            )
        if self.metrics and not is_loopback(self.metrics_host):
            raise ConfigError(
                f"refusing to serve metrics on non-loopback address {self.metrics_host!r}: "
                "the endpoint has no authentication; pass --allow-insecure-remote to expose it"
            )


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (``127.0.0.0/8``, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


# -- parsing ---------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _type_name(value: object) -> str:
    return type(value).__name__


def _as_int(value: object, where: str) -> int:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {_type_name(value)} {value!r}")
    return value


def _as_bool(value: object, where: str) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{where}: expected a boolean (true/false), got {value!r}")
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected a boolean, got {_type_name(value)} {value!r}")
    return value


def _as_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {_type_name(value)} {value!r}")
    if not value.strip():
        raise ConfigError(f"{where}: must not be empty")
    return value


def _as_duration(value: object, where: str) -> float:
    """Seconds (a number, or a number string) or a duration string such as ``"30s"``."""
    if isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            try:
                return parse_interval(value.strip()).total_seconds()
            except InvalidSchedule as exc:
                raise ConfigError(f"{where}: {exc}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(
            f"{where}: expected seconds or a duration string, got {_type_name(value)} {value!r}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"{where}: expected a non-negative duration, got {value!r}")
    return seconds


def _as_modules(value: object, where: str) -> tuple[str, ...]:
    items: list[object]
    if isinstance(value, str):
        items = [part for part in (p.strip() for p in value.split(",")) if part]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(
            f"{where}: expected a list of module names, got {_type_name(value)} {value!r}"
        )
    return tuple(_as_str(item, where).strip() for item in items)


def _as_path(value: object, where: str) -> Path:
    return value if isinstance(value, Path) else Path(_as_str(value, where))


_PARSERS: dict[str, Any] = {
    "store": _as_str,
    "schema": _as_str,
    "prefix": _as_str,
    "migrate": _as_bool,
    "workers": _as_int,
    "host": _as_str,
    "port": _as_int,
    "metrics": _as_bool,
    "metrics_host": _as_str,
    "metrics_port": _as_int,
    "node_id": _as_str,
    "lease": _as_duration,
    "drain_grace": _as_duration,
    "retention": _as_duration,
    "jobs": _as_modules,
    "tls_cert": _as_path,
    "tls_key": _as_path,
    "token": _as_str,
    "token_file": _as_path,
    "allow_insecure_remote": _as_bool,
    "log_level": _as_str,
}
KEYS = tuple(f.name for f in fields(ServerConfig))
assert set(KEYS) == set(_PARSERS), "every field needs a parser"


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in KEYS:
        name = env_name(key)
        if name in env and env[name] != "":
            found[key] = _PARSERS[key](env[name], name)
    return found


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    found: dict[str, Any] = {}
    for raw_key, value in data.items():
        key = raw_key.replace("-", "_")
        if key not in _PARSERS:
            known = ", ".join(KEYS)
            raise ConfigError(f"{path}: unknown key {raw_key!r} (known keys: {known})")
        found[key] = _PARSERS[key](value, f"{path}: {raw_key}")
    return found


def _from_flags(flags: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in flags.items():
        if key not in _PARSERS:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None:
            found[key] = _PARSERS[key](value, "--" + key.replace("_", "-"))
    return found


def resolve_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
) -> ServerConfig:
    """The configuration from ``flags`` (None values are unset), ``env`` (default
    ``os.environ``) and the TOML ``config_file`` (default: ``GOJOB_CONFIG``, if set), in
    that order of precedence; validated (see :class:`ConfigError`). A ``token_file`` is
    read here."""
    env = os.environ if env is None else env
    if config_file is None and env.get(ENV_PREFIX + "CONFIG"):
        config_file = env[ENV_PREFIX + "CONFIG"]
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(_from_file(Path(config_file)))
    merged.update(_from_env(env))
    merged.update(_from_flags(flags or {}))
    config = ServerConfig(**merged)
    return _validate(config)


def _validate(config: ServerConfig) -> ServerConfig:
    if config.workers < 1:
        raise ConfigError(f"workers must be at least 1, got {config.workers}")
    for name in ("port", "metrics_port"):
        value = getattr(config, name)
        if not 0 <= value <= 65535:
            raise ConfigError(f"{name} must be between 0 and 65535, got {value}")
    if config.lease <= 0:
        raise ConfigError(f"lease must be positive, got {config.lease}")
    if config.retention is not None and config.retention <= 0:
        raise ConfigError(f"retention must be positive, got {config.retention}")
    level = config.log_level.upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    if (config.tls_cert is None) != (config.tls_key is None):
        raise ConfigError("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")
    for name in ("tls_cert", "tls_key"):
        path = getattr(config, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"{name}: no such file: {path}")
    token = config.token
    if config.token_file is not None:
        if token is not None:
            raise ConfigError("give either a token or a token file, not both")
        try:
            token = config.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the token file {config.token_file}: {exc.strerror or exc}"
            ) from None
        if not token:
            raise ConfigError(f"the token file {config.token_file} is empty")
    elif token is not None:
        token = token.strip()
    if token is not None and any(c.isspace() for c in token):
        raise ConfigError("the token must not contain whitespace")
    return replace(config, log_level=level, token=token)


def log_level_number(config: ServerConfig) -> int:
    return int(logging.getLevelName(config.log_level))
