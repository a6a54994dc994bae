"""The sidecar's own settings: TOML file overridden by ``SIDECAR_*`` environment variables.

CloudStack credentials are not here: they come from ``cs`` conventions (see
``sidecar.cloudstack.config``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sidecar.model.defaults import (
    ALERT_GAP_WINDOW,
    HA_BACKLOG_AFTER,
    LEDGER_STATEMENT_TIMEOUT,
    PING_INTERVAL,
    PING_TIMEOUT,
)
from sidecar.support.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/cloudstack-sidecar/sidecar.toml")
ENV_PREFIX = "SIDECAR_"


def default_state_dir() -> Path:
    """``$STATE_DIRECTORY`` under systemd, else ``~/.local/state/cloudstack-sidecar``."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(state.split(":")[0])
    return Path.home() / ".local" / "state" / "cloudstack-sidecar"


def default_ledger_url() -> str:
    """SQLite file in the state directory."""
    return f"sqlite:///{default_state_dir() / 'ledger.sqlite3'}"


@dataclass
class Settings:
    """Every setting of the sidecar; each field says its default and why."""

    ledger_url: str = ""
    """Default: SQLite in the state directory. A shared PostgreSQL/MariaDB URL lets several
    sidecars (one per management server) share one ledger and one lease."""

    ledger_statement_timeout: float = LEDGER_STATEMENT_TIMEOUT
    """Default 15 s: the longest one ledger statement may take. PostgreSQL and MariaDB give up
    waiting for a lock at half of it (statement_timeout and lock_timeout; max_statement_time and
    innodb_lock_wait_timeout), SQLite waits this long for its file lock. The cycle deadline
    cannot interrupt a ledger call, so this is what ends a cycle on a hung ledger (in about
    twice this at worst, within the 50 s deadline) for the next cycle to retry; ledger
    statements take milliseconds."""

    cloud_db_url: str = ""
    """Default off: without it the sidecar reads only the API, as before. CloudStack's own
    database (``mysql+pymysql://sidecar_ro:PASSWORD@db:3306/cloud``, TLS query options honoured)
    is the only source of the exact HA queue (``op_ha_work`` has no API); a read-only user is
    enough unless ``merge_ha_work`` is on. The password is masked in every message."""

    merge_ha_work: bool = False
    """Default false: the database is only read. True lets the service cancel duplicate HA rows
    (the conditional UPDATE of a VM's surplus untaken rows), on verified releases only."""

    ha_work_poll_interval: float = 5.0
    """Default 5 s: one indexed query, often enough to cancel a duplicate while it still waits
    for an HA worker, separate from the API cycle so that neither can stall the other."""

    region: str = "cloudstack"
    """Default ``cloudstack``: the ``cs`` ini section (region) holding endpoint, key and secret."""

    dry_run: bool = False
    """Default false for the service; ``report`` never acts and ``cleanup`` acts only with
    ``--apply``. True makes the service observe and plan without archiving anything."""

    poll_interval: float = 60.0
    """Default 60 s: often enough to merge a burst before operators read it, cheap for the MS."""

    poll_jitter: float = 0.1
    """Default 10 % of the interval, so several sidecars do not poll in lockstep."""

    cycle_deadline: float = 50.0
    """Default 50 s (< interval): a cycle that runs longer is abandoned so that a hung call
    cannot stall the scheduler (APScheduler skips runs while one is still running)."""

    misfire_grace_time: float = 30.0
    """Default 30 s: APScheduler's 1 s default silently skips late runs."""

    request_timeout: float = 10.0
    """Default 10 s per HTTP request (connect and read); cs uses the same default."""

    requests_per_second: float = 20.0
    """Default 20 req/s: well under CloudStack's api.throttling.max of 25/s per account."""

    max_concurrency: int = 4
    """Default 4 parallel requests: the MS serves API calls from a bounded thread pool."""

    max_retries: int = 4
    """Default 4 retries for reads (and idempotent writes) on 5xx, 429 and transport errors."""

    retry_backoff: float = 0.5
    """Default 0.5 s first backoff, doubled per retry with jitter, capped at 30 s."""

    archive_batch_size: int = 2000
    """Default 2,000 ids per archiveAlerts POST (about 78 KB of form body, far below the 1 MiB
    ``request.content.size`` of the MS): few calls for a big cleanup, while a 530 (which voids
    the whole batch) is resolved by bisection in about log2(2000) = 11 extra calls per gone id."""

    alert_gap_window: float = ALERT_GAP_WINDOW
    """Default 600 s (10 min): alerts with one fingerprint further apart than this are separate
    incidents when no host-state history separates them."""

    ha_backlog_after: float = HA_BACKLOG_AFTER
    """Default 900 s (15 min): an HA-enabled VM of a failed host not running elsewhere after this
    long counts as HA backlog (the pile-up operators watch for)."""

    ping_interval: float = PING_INTERVAL
    """Default 60 s, CloudStack's ``ping.interval``: used to tell which host failures can have
    killed a restarted VM when the role may not call listConfigurations (the sidecar reads the
    live value when it may). Set it to your cloud's value if you changed CloudStack's."""

    ping_timeout: float = PING_TIMEOUT
    """Default 2.5, CloudStack's ``ping.timeout`` (a multiple of ping.interval): a host is
    reported down no sooner than 60 x floor(ping.interval x ping.timeout / 60) - ping.interval
    after it died (60 s by default); read live with listConfigurations when the role allows
    it."""

    max_actions: int = 10_000
    """Default 10,000 archive actions per cleanup run: a safety cap against a bad plan."""

    lease_ttl: float = 120.0
    """Default 120 s (2 poll intervals): how long a leader's lease lasts without renewal before
    another sidecar on the same ledger may take over."""

    observation_retention_days: float = 90.0
    """Default 90 days of observations (host transitions, alerts seen); decisions and actions are
    kept forever because they are the audit trail."""

    metrics_address: str = ""
    """Default off. ``127.0.0.1:9465`` serves Prometheus metrics; loopback by default because
    metrics name hosts and VMs."""

    alertmanager_url: str = ""
    """Default off. One Alertmanager base URL (``http://127.0.0.1:9093``), or several separated
    by commas (a TOML list works too) for an Alertmanager cluster: each cycle posts one alert per
    open HA incident to every one of them, as Prometheus does, and resolves it when the incident
    ends. No user info in the URL: it would end up in logs and metric labels."""

    log_format: str = "text"
    """Default ``text``; ``json`` for log shippers."""

    log_level: str = "INFO"
    """Default INFO: one line per cycle and per action."""

    def alertmanager_urls(self) -> tuple[str, ...]:
        """The Alertmanager base URLs (none: notifications are off)."""
        return split_urls(self.alertmanager_url)

    def resolved_ledger_url(self) -> str:
        """The ledger URL, defaulting to SQLite in the state directory."""
        return self.ledger_url or default_ledger_url()


_LIMITS: dict[str, tuple[float, float]] = {
    "poll_interval": (5.0, 86400.0),
    "poll_jitter": (0.0, 0.5),
    "cycle_deadline": (1.0, 86400.0),
    "misfire_grace_time": (1.0, 3600.0),
    "request_timeout": (0.1, 600.0),
    "requests_per_second": (0.1, 1000.0),
    "max_concurrency": (1, 64),
    "max_retries": (0, 20),
    "retry_backoff": (0.0, 60.0),
    "archive_batch_size": (1, 20_000),
    "alert_gap_window": (1.0, 30 * 86400.0),
    "ha_backlog_after": (1.0, 30 * 86400.0),
    "ping_interval": (1.0, 86400.0),
    "ping_timeout": (1.0, 1000.0),
    "max_actions": (1, 100_000_000),
    "lease_ttl": (5.0, 86400.0),
    "ledger_statement_timeout": (1.0, 3600.0),
    "ha_work_poll_interval": (1.0, 3600.0),
    "observation_retention_days": (1.0, 36500.0),
}
#: Settings that a TOML list may give; they are kept as one comma-separated string.
_LISTS = frozenset({"alertmanager_url"})

#: At most this many Alertmanagers: one POST each per cycle must stay well inside the deadline.
MAX_ALERTMANAGERS = 8

_CHOICES: dict[str, tuple[str, ...]] = {
    "log_format": ("text", "json"),
    "log_level": ("DEBUG", "INFO", "WARNING", "ERROR"),
}


def _warn_if_readable(path: Path) -> None:
    """WARNING when group or others may read the file: it may hold the ledger's password."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        logging.getLogger(__name__).warning(
            "%s is readable by group/others (mode %s) and may hold the ledger password: "
            "run chmod 600 %s", path, oct(stat.S_IMODE(mode)), path,
        )


def split_urls(text: str) -> tuple[str, ...]:
    """The non-empty items of a comma-separated list of URLs."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_alertmanager_urls(text: str, source: str) -> None:
    """Every Alertmanager URL is http(s) with a host and no user info, query or fragment."""
    urls = split_urls(text)
    if len(urls) > MAX_ALERTMANAGERS:
        raise ConfigError(
            f"setting 'alertmanager_url' in {source} lists {len(urls)} URLs: "
            f"give at most {MAX_ALERTMANAGERS} (one per Alertmanager of the cluster)"
        )
    for url in urls:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"setting 'alertmanager_url' in {source} has {url!r}, not an http(s) URL with "
                "a host: use e.g. http://127.0.0.1:9093, comma-separated for a cluster"
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"setting 'alertmanager_url' in {source} has a URL with user info: remove it "
                "(it would show in logs and metrics); put a local proxy in front for auth"
            )
        if parts.query or parts.fragment:
            raise ConfigError(
                f"setting 'alertmanager_url' in {source} has a URL with a query or fragment: "
                "give the base URL only (the sidecar appends /api/v2/alerts)"
            )


def _coerce(name: str, kind: Any, value: Any, source: str) -> Any:
    """Convert ``value`` to the field's type, or raise a one-line ConfigError."""
    if name in _LISTS and isinstance(value, list):
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(
                f"setting {name!r} in {source} has the invalid value {value!r}: "
                "expected a list of strings"
            )
        value = ",".join(value)
    try:
        if kind in (bool, "bool"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if kind in (int, "int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if kind in (float, "float"):
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if not isinstance(value, str):
            raise ValueError(value)
        return value
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {name!r} in {source} has the invalid value {value!r}: expected {kind}"
        ) from None


def _check(settings: Settings, sources: Mapping[str, str]) -> None:
    for name, (low, high) in _LIMITS.items():
        value = getattr(settings, name)
        if not low <= value <= high:
            raise ConfigError(
                f"setting {name!r} in {sources.get(name, 'defaults')} is {value}, "
                f"outside {low:g}..{high:g}: set a value in that range"
            )
    _check_alertmanager_urls(settings.alertmanager_url,
                             sources.get("alertmanager_url", "defaults"))
    for name, choices in _CHOICES.items():
        value = getattr(settings, name)
        if name == "log_level":
            value = value.upper()
            setattr(settings, name, value)
        if value not in choices:
            raise ConfigError(
                f"setting {name!r} in {sources.get(name, 'defaults')} is {value!r}: "
                f"choose one of {', '.join(choices)}"
            )


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load settings: defaults < TOML file < ``SIDECAR_*`` env < explicit overrides (CLI)."""
    env = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}

    config_path = path
    drop_hint = "drop --config"
    if config_path is None and env.get("SIDECAR_CONFIG"):
        config_path = Path(env["SIDECAR_CONFIG"])
        drop_hint = "unset SIDECAR_CONFIG"
    if config_path is None and DEFAULT_CONFIG_PATH.is_file():
        config_path = DEFAULT_CONFIG_PATH
    if config_path is not None:
        try:
            with config_path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(
                f"config file {config_path} does not exist: create it or {drop_hint}"
            ) from None
        except PermissionError:
            raise ConfigError(
                f"config file {config_path} is not readable: fix its permissions"
            ) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"config file {config_path} is not valid TOML ({exc}): fix the syntax"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"config file {config_path} cannot be read ({exc.strerror or exc}): "
                "point to a readable TOML file"
            ) from None
        _warn_if_readable(config_path)
        # Accept both a flat file and a [sidecar] table.
        table = data.get("sidecar", data) if isinstance(data.get("sidecar"), dict) else data
        if table is not data and len(data) > 1:
            stray = next(k for k in data if k != "sidecar")
            raise ConfigError(
                f"setting {stray!r} in {config_path} is outside the [sidecar] table: "
                "move it below [sidecar]"
            )
        for key, value in table.items():
            if key not in fields:
                raise ConfigError(
                    f"unknown setting {key!r} in {config_path}: "
                    "see sidecar.toml.example for the valid names"
                )
            values[key] = _coerce(key, fields[key].type, value, str(config_path))
            sources[key] = str(config_path)

    for env_key, value in env.items():
        if not env_key.startswith(ENV_PREFIX) or env_key in {"SIDECAR_CONFIG"}:
            continue
        if env_key.startswith("SIDECAR_TEST_"):
            continue  # the test suite's own variables
        key = env_key[len(ENV_PREFIX) :].lower()
        if key not in fields:
            raise ConfigError(
                f"unknown setting {env_key} in the environment: unset it or fix the name"
            )
        values[key] = _coerce(key, fields[key].type, value, env_key)
        sources[key] = env_key

    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in fields:
            raise ConfigError(f"unknown setting {key!r} on the command line")
        values[key] = _coerce(key, fields[key].type, value, "the command line")
        sources[key] = "the command line"

    settings = Settings(**values)
    _check(settings, sources)
    return settings


def describe_settings() -> list[tuple[str, str, str]]:
    """(name, default, documentation) for every setting, from the dataclass docstrings."""
    import ast
    import inspect
    import itertools

    source = inspect.getsource(Settings)
    tree = ast.parse(source)
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    defaults = Settings()
    return [
        (f.name, repr(getattr(defaults, f.name)), docs.get(f.name, ""))
        for f in dataclasses.fields(Settings)
    ]


__all__ = [
    "Settings",
    "default_ledger_url",
    "default_state_dir",
    "describe_settings",
    "load_settings",
    "split_urls",
]
