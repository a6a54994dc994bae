"""How soon CloudStack can report a host down after it died: the reconciler's detection time.

Ping path (AgentManagerImpl, InaccurateClock): 60 × ⌊ping.interval × ping.timeout / 60⌋ −
ping.interval (``model.defaults.ping_detection``). Host HA (HAManagerImpl, when
a host has it enabled): (kvm.ha.activity.check.max.attempts − 1) × activity.check.interval;
the ping monitor still runs beside it, so the shorter of the two applies. The live values come
from listConfigurations when the role allows it, else from the settings (CloudStack's
defaults unless the operator set them). Shorter is always the safe side: it splits more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.errors import ApiError
from sidecar.model.defaults import (
    KVM_HA_ACTIVITY_ATTEMPTS,
    KVM_HA_ACTIVITY_INTERVAL,
    host_ha_detection,
    ping_detection,
)
from sidecar.model.resources import Host
from sidecar.support.settings import Settings

log = logging.getLogger(__name__)


async def failure_detection(
    cs: CloudStackClient, settings: Settings, hosts: Sequence[Host]
) -> float:
    """The detection time in seconds for this cloud (see the module docstring)."""
    ping = await _read(cs, "ping.")
    detection = ping_detection(
        _number(ping, "ping.interval", settings.ping_interval),
        _number(ping, "ping.timeout", settings.ping_timeout),
    )
    if any(h.hostha.haenable for h in hosts):
        kvm = await _read(cs, "kvm.ha.")
        detection = min(detection, host_ha_detection(
            _number(kvm, "kvm.ha.activity.check.interval", KVM_HA_ACTIVITY_INTERVAL),
            _number(kvm, "kvm.ha.activity.check.max.attempts", KVM_HA_ACTIVITY_ATTEMPTS),
        ))
    return detection


async def _read(cs: CloudStackClient, prefix: str) -> dict[str, str]:
    """Settings by prefix, or none when the role may not read them (listConfigurations is
    optional: the settings' values stand in)."""
    try:
        return await cs.configurations(prefix)
    except ApiError as exc:  # CommandNotAllowedError among them: the role lacks it
        log.info("cannot read %s* with listConfigurations (%s): using the settings", prefix,
                 exc.detail)
        return {}


def _number(values: Mapping[str, str], name: str, default: float) -> float:
    """A positive number from ``values``, else ``default`` (a garbled value never shortens)."""
    try:
        value = float(values[name])
    except (KeyError, ValueError):
        return default
    return value if value > 0 else default
