"""CloudStack credentials the way ``cs`` users already keep them, with cs's traps guarded.

``cs.read_config`` reads ``CLOUDSTACK_*`` variables and the ini files ``~/.cloudstack.ini``,
``./cloudstack.ini`` and ``$CLOUDSTACK_CONFIG`` (last wins; sections are regions). Its traps
(libraries.md §1): it raises SystemExit when nothing is configured, NoSectionError for an
unknown region, and ignores the ini entirely once ``CLOUDSTACK_ENDPOINT`` is set.
"""

from __future__ import annotations

import configparser
import logging
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sidecar.support.errors import ConfigError
from sidecar.support.redact import register_secret

log = logging.getLogger(__name__)

DEFAULT_REGION = "cloudstack"
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}
_NO_CONFIG_FIX = (
    "no CloudStack credentials found: create ~/.cloudstack.ini with a [cloudstack] section "
    "(endpoint, key, secret), point CLOUDSTACK_CONFIG at such a file, or set "
    "CLOUDSTACK_ENDPOINT, CLOUDSTACK_KEY and CLOUDSTACK_SECRET"
)


@dataclass(frozen=True, repr=False)
class CloudStackConfig:
    """Where and how to reach one CloudStack region; ``repr`` hides the key and secret."""

    endpoint: str
    key: str
    secret: str
    timeout: float = 10.0
    verify: ssl.SSLContext | bool = True
    region: str = DEFAULT_REGION
    source: str = ""
    expiration: float = 600.0
    """Seconds a signed request stays valid (cs ``expiration``, default 10 min)."""
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)
    """Extra HTTP headers (cs ``header_<name>`` keys)."""

    def __repr__(self) -> str:
        verify = "custom-ssl-context" if isinstance(self.verify, ssl.SSLContext) else self.verify
        return (
            f"CloudStackConfig(endpoint={self.endpoint!r}, key='***', secret='***', "
            f"timeout={self.timeout}, verify={verify}, region={self.region!r}, "
            f"source={self.source!r})"
        )

    __str__ = __repr__


def ini_paths() -> list[Path]:
    """The ini files cs reads, in its order (later ones win)."""
    paths = [Path.home() / ".cloudstack.ini", Path.cwd() / "cloudstack.ini"]
    if "CLOUDSTACK_CONFIG" in os.environ:
        paths.append(Path(os.path.expanduser(os.environ["CLOUDSTACK_CONFIG"])))
    return paths


def _existing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def _files_text(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths) or "no ini file"


def _warn_if_readable(paths: list[Path]) -> None:
    """WARNING for each ini file that group or others may read (it holds the secret)."""
    for path in paths:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning(
                "%s holds CloudStack credentials and is readable by group/others (mode %s): "
                "run chmod 600 %s",
                path,
                oct(stat.S_IMODE(mode)),
                path,
            )


def _section_source(paths: list[Path], region: str) -> Path | None:
    """The last ini file that defines ``region`` (the one cs's merged values came from)."""
    found = None
    for path in paths:
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        if parser.has_section(region):
            found = path
    return found


def _read_cs_config(region: str | None, wanted: str, paths: list[Path]) -> dict[str, Any]:
    """``cs.read_config`` with its exits and exceptions turned into one-line ConfigErrors."""
    from cs import read_config  # imports requests: keep it off the import path of others

    try:
        return dict(read_config(ini_group=region))
    except SystemExit:
        raise ConfigError(_NO_CONFIG_FIX) from None
    except configparser.NoSectionError:
        raise ConfigError(
            f"region {wanted!r} is not a section of {_files_text(_existing(paths))}: add "
            f"[{wanted}] with endpoint, key and secret, or choose another --region"
        ) from None
    except configparser.Error as exc:
        where = getattr(exc, "source", None) or _files_text(_existing(paths))
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot parse {where} ({first}): fix the ini syntax") from None
    except ValueError as exc:
        # cs: "the configuration is missing the following keys: endpoint" when the default
        # region has no section at all.
        if "missing" in str(exc):
            raise ConfigError(
                f"region {wanted!r} has no endpoint in {_files_text(_existing(paths))}: add "
                f"a [{wanted}] section with endpoint, key and secret, or set CLOUDSTACK_REGION"
            ) from None
        raise ConfigError(f"invalid CloudStack configuration: {exc}") from None


def _check_endpoint(endpoint: str, where: str) -> str:
    endpoint = endpoint.strip()
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        host, parts = None, None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"endpoint {endpoint!r} in {where} is not an http(s) URL with a host: use e.g. "
            "https://mgmt.example.org:8080/client/api"
        )
    if parts.username or parts.password:
        raise ConfigError(
            f"endpoint in {where} contains user info: remove it; CloudStack signs requests "
            "with key and secret"
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"endpoint in {where} has a query or fragment: use the bare API URL, "
            "e.g. https://mgmt.example.org:8080/client/api"
        )
    return endpoint


def _truthy(value: Any, name: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE or not text:
        return False
    raise ConfigError(f"{name} = {value!r} in {where} is not a boolean: use true or false")


def _number(value: Any, name: str, where: str, *, positive: bool = True) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} = {value!r} in {where} is not a number: fix it") from None
    if positive and number <= 0:
        raise ConfigError(f"{name} = {value!r} in {where} must be positive: fix it")
    return number


def _tls(conf: Mapping[str, Any], where: str, endpoint: str) -> ssl.SSLContext | bool:
    """TLS settings: verify on; ``verify`` = CA file/dir; ``cert``/``cert_key`` client cert."""
    verify = conf.get("verify")
    cert = conf.get("cert") or None
    cert_key = conf.get("cert_key") or None
    insecure = _truthy(conf.get("dangerous_no_tls_verify"), "dangerous_no_tls_verify", where)
    cafile = capath = None
    if isinstance(verify, str) and verify.strip():
        text = verify.strip()
        if text.lower() in _FALSE:
            raise ConfigError(
                f"verify = {verify} in {where} does not turn TLS verification off: set "
                "dangerous_no_tls_verify = true if you really mean it"
            )
        if text.lower() not in _TRUE:
            path = Path(os.path.expanduser(text))
            if not path.exists():
                raise ConfigError(
                    f"CA bundle {path} (verify in {where}) does not exist: fix the path"
                )
            cafile, capath = (None, str(path)) if path.is_dir() else (str(path), None)
    if insecure:
        log.warning(
            "TLS certificate verification is OFF for %s (dangerous_no_tls_verify in %s): "
            "anyone on the path can read the API key and change answers",
            endpoint,
            where,
        )
    if not (cafile or capath or cert):
        return not insecure
    try:
        context = ssl.create_default_context(cafile=cafile, capath=capath)
        if insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert:
            context.load_cert_chain(
                os.path.expanduser(str(cert)),
                os.path.expanduser(str(cert_key)) if cert_key else None,
            )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load the TLS files named in {where} ({type(exc).__name__}: "
            f"{getattr(exc, 'strerror', None) or exc}): check verify, cert and cert_key"
        ) from None
    return context


def load_cloudstack_config(region: str | None = None) -> CloudStackConfig:
    """Read endpoint, key and secret with cs conventions; raise a one-line ConfigError."""
    wanted = region or os.environ.get("CLOUDSTACK_REGION") or DEFAULT_REGION
    paths = ini_paths()
    conf = _read_cs_config(region, wanted, paths)

    env_endpoint = bool(os.environ.get("CLOUDSTACK_ENDPOINT"))
    overrides = os.environ.get("CLOUDSTACK_OVERRIDES", "").strip()
    env_only = env_endpoint and not overrides
    if env_only:
        where = "the environment (CLOUDSTACK_*)"
        source = "environment (CLOUDSTACK_ENDPOINT; ini files ignored)"
        region_name = wanted
    else:
        existing = _existing(paths)
        _warn_if_readable(existing)
        region_name = str(conf.get("name") or wanted)
        section_file = _section_source(existing, region_name)
        where = f"[{region_name}] of {section_file}" if section_file else _files_text(existing)
        source = where + (f" (environment overrides: {overrides})" if overrides else "")

    endpoint = _check_endpoint(str(conf.get("endpoint") or ""), where)
    key = str(conf.get("key") or "")
    secret = str(conf.get("secret") or "")
    register_secret(key, secret)
    if not key or not secret:
        missing = " and ".join(n for n, v in (("key", key), ("secret", secret)) if not v)
        if env_only:
            raise ConfigError(
                f"CLOUDSTACK_ENDPOINT is set, so cs ignores cloudstack.ini and the {missing} "
                "in it: also set CLOUDSTACK_KEY and CLOUDSTACK_SECRET, or set "
                "CLOUDSTACK_OVERRIDES=endpoint to take the rest from the ini"
            )
        raise ConfigError(f"{where} has no {missing}: add them (unsigned calls are refused)")

    timeout = _number(conf.get("timeout", 10), "timeout", where)
    expiration = _number(conf.get("expiration", 600), "expiration", where)
    headers = conf.get("headers") or {}
    return CloudStackConfig(
        endpoint=endpoint,
        key=key,
        secret=secret,
        timeout=timeout,
        verify=_tls(conf, where, endpoint),
        region=region_name,
        source=source,
        expiration=expiration,
        headers=dict(headers) if isinstance(headers, Mapping) else {},
    )


__all__ = ["CloudStackConfig", "ini_paths", "load_cloudstack_config"]
