"""Wiring shared by the commands: settings, CloudStack credentials, ledger, client."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.cloudstack.config import CloudStackConfig, load_cloudstack_config
from sidecar.cloudstack.limits import ClientLimits
from sidecar.support.errors import UserError
from sidecar.support.logs import setup_logging
from sidecar.support.settings import Settings, load_settings

if TYPE_CHECKING:
    # Imported where used: the ledger pulls in SQLAlchemy and Alembic, the client httpx, and
    # every command's module imports this one (``--help`` should not pay for them).
    from sidecar.cloudstack.client import CloudStackClient
    from sidecar.ledger import Ledger

log = logging.getLogger(__name__)

#: CloudStack releases (major, minor) whose alert formats and API the sidecar knows.
SUPPORTED_RELEASES = ((4, 19), (4, 22))


@dataclass
class Context:
    """Everything a command needs to talk to CloudStack and the ledger."""

    settings: Settings
    cloudstack: CloudStackConfig

    @property
    def limits(self) -> ClientLimits:
        """The client's limits from the settings."""
        return ClientLimits.from_settings(self.settings)

    def client(self, **kwargs: Any) -> CloudStackClient:
        """A new async client with the configured limits (use ``async with``)."""
        from sidecar.cloudstack.client import CloudStackClient  # httpx: not for --help

        return CloudStackClient(self.cloudstack, limits=self.limits, **kwargs)

    def ledger(self, *, holder: str | None = None) -> Ledger:
        """Open (and migrate) the ledger named by the settings."""
        from sidecar.ledger import Ledger  # SQLAlchemy and Alembic: not for --help

        return Ledger(
            self.settings.resolved_ledger_url(),
            holder=holder,
            statement_timeout=self.settings.ledger_statement_timeout,
        )


def load_context(
    config: Path | None = None,
    *,
    region: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Context:
    """Load settings (TOML + env + flags), set up logging, load CloudStack credentials."""
    settings = load_settings(config, overrides=overrides)
    setup_command_logging(settings)  # before the credentials: their warnings go through it
    cloudstack = load_cloudstack_config(region or os.environ.get("CLOUDSTACK_REGION") or None)
    return Context(settings=settings, cloudstack=cloudstack)


def setup_command_logging(settings: Settings) -> None:
    """Logging for an interactive command: warnings and errors only, unless the settings ask
    for another level than the service's default (INFO), e.g. ``SIDECAR_LOG_LEVEL=DEBUG``.

    A command's own output is its tables and its one ``error:`` line; the service logs at INFO.
    """
    level = settings.log_level if settings.log_level != "INFO" else "WARNING"
    setup_logging(level, settings.log_format)


def require_supported(version: str) -> None:
    """Refuse a CloudStack release outside 4.19-4.22 (exit 2); an unknown version only warns."""
    parts = version.split("-")[0].split(".")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        log.warning("CloudStack reports the version %r: assuming it behaves like 4.19-4.22",
                    version)
        return
    release = (int(parts[0]), int(parts[1]))
    low, high = SUPPORTED_RELEASES
    if not low <= release <= high:
        raise UserError(
            f"CloudStack {version} is not supported: cloudstack-sidecar knows "
            f"{low[0]}.{low[1]}.0-{high[0]}.{high[1]}.x (their alert formats and API); "
            "upgrade CloudStack or use a cloudstack-sidecar release that knows it",
            exit_code=2,
        )
