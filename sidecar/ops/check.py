"""Can the sidecar work against this CloudStack, as configured? (the ``check`` use case)

Reaches the endpoint, proves the credentials with a signed call (listCapabilities), reports
the version, whether it carries the duplicate-HA defect (apache/cloudstack#10367), the clock
skew (measured with signed calls of chosen ``expires``, as upstream sends no ``Date`` header),
and whether the account may call every API the sidecar uses (listApis lists only the allowed
ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig
from sidecar.cloudstack.errors import (
    AuthenticationError,
    CloudStackError,
    CommandNotAllowedError,
    NotJsonError,
    TransportError,
)
from sidecar.cloudstack.limits import ClientLimits
from sidecar.cloudstack.skew import SkewBracket
from sidecar.model.constants import AFFECTED_RELEASES, OPTIONAL_APIS, SIDECAR_APIS
from sidecar.ops.context import require_supported
from sidecar.support.errors import EXIT_CLOUDSTACK, UserError
from sidecar.support.settings import Settings

#: Exit code when the check ran but found a problem (missing APIs, clock skew).
EXIT_PROBLEMS = 1


@dataclass
class CheckResult:
    """Everything ``check`` found out; ``ok`` only when the sidecar can do its work."""

    endpoint: str
    region: str
    source: str
    reachable: bool = False
    credentials_ok: bool = False
    version: str | None = None
    affected: bool | None = None
    clock_skew: float | None = None
    """Server clock minus ours, seconds (None: unknown)."""
    skew_source: str | None = None
    """``signature`` (signed probes) or ``date`` (a Date header, when no probe could tell)."""
    skew_bounds: tuple[float | None, float | None] | None = None
    """What the probes proved: low < skew <= high (low None: at least ``high`` behind)."""
    skew_probes: int = 0
    skew_limit: float = 300.0
    allowed_apis: list[str] = field(default_factory=list)
    missing_apis: list[str] = field(default_factory=list)
    missing_optional_apis: list[str] = field(default_factory=list)
    apis_checked: bool = False
    error: str | None = None
    exit_code: int = 0

    @property
    def skew_ok(self) -> bool:
        """Unknown or within half the signed-request lifetime."""
        return self.clock_skew is None or abs(self.clock_skew) <= self.skew_limit

    @property
    def skew_at_least(self) -> bool:
        """Only a bound of the skew is known: it is larger than ``clock_skew`` says."""
        return self.skew_bounds is not None and self.skew_bounds[0] is None

    @property
    def ok(self) -> bool:
        """Reached, authenticated, APIs allowed, clock close enough."""
        return (
            self.error is None
            and self.reachable
            and self.credentials_ok
            and self.apis_checked
            and not self.missing_apis
            and self.skew_ok
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("exit_code")
        data["clock_skew"] = None if self.clock_skew is None else round(self.clock_skew, 1)
        if self.skew_bounds is not None:
            data["skew_bounds"] = [None if b is None else round(b, 1) for b in self.skew_bounds]
        data["skew_ok"] = self.skew_ok
        data["ok"] = self.ok
        return data


def note_skew(result: CheckResult, bracket: SkewBracket | None, date_skew: float | None) -> None:
    """Record the probes' skew, else the Date header's."""
    if bracket is not None:
        result.skew_probes = bracket.calls
        if bracket.seconds is not None:
            result.clock_skew, result.skew_source = bracket.seconds, "signature"
            result.skew_bounds = (bracket.low, bracket.high)
            return
    if date_skew is not None:
        result.clock_skew, result.skew_source = date_skew, "date"


def is_affected(version: str | None) -> bool | None:
    """True for 4.19.0-4.19.2 and 4.20.0 (any fourth component), None when unknown."""
    if not version or version == "unknown":
        return None
    parts = version.split("-")[0].split(".")
    if len(parts) < 3 or not all(p.isdigit() for p in parts[:3]):
        return None
    return ".".join(parts[:3]) in AFFECTED_RELEASES


async def run_check(
    config: CloudStackConfig,
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    wall_clock: Callable[[], float] | None = None,
) -> CheckResult:
    """Run every check against the endpoint; errors are recorded, not raised."""
    result = CheckResult(
        endpoint=config.endpoint,
        region=config.region,
        source=config.source,
        skew_limit=config.expiration / 2,
    )
    extra: dict[str, Any] = {} if wall_clock is None else {"wall_clock": wall_clock}
    limits = ClientLimits.from_settings(settings)
    async with CloudStackClient(config, limits=limits, transport=transport, **extra) as cs:
        try:
            result.version = await cs.version()
            result.reachable = result.credentials_ok = True
        except (TransportError, NotJsonError) as exc:
            result.error, result.exit_code = str(exc), EXIT_CLOUDSTACK
            return result
        except AuthenticationError as exc:
            # The client has already probed: a key that works means the clock is to blame.
            result.reachable = True
            result.credentials_ok = exc.bracket is not None and exc.bracket.key_works
            note_skew(result, exc.bracket, exc.skew)
            result.error, result.exit_code = str(exc), EXIT_CLOUDSTACK
            return result
        except CommandNotAllowedError:
            # Authenticated (the role check comes after the signature check), just not allowed.
            result.reachable = result.credentials_ok = True
        except CloudStackError as exc:
            result.reachable = True
            result.error, result.exit_code = str(exc), EXIT_CLOUDSTACK
            return result
        note_skew(result, await cs.measure_skew(ordinary_accepted=True), cs.clock_skew)
        if result.version is not None:
            try:
                require_supported(result.version)
            except UserError as exc:
                result.error, result.exit_code = str(exc), exc.exit_code
                return result
        result.affected = is_affected(result.version)
        try:
            allowed = await cs.list_api_names()
        except CommandNotAllowedError:
            allowed = set()
            result.missing_apis = ["listApis"]
        except CloudStackError as exc:
            result.error, result.exit_code = str(exc), EXIT_CLOUDSTACK
            return result
        else:
            result.apis_checked = True
            result.allowed_apis = sorted(a for a in (*SIDECAR_APIS, *OPTIONAL_APIS)
                                         if a in allowed)
            result.missing_apis = [a for a in SIDECAR_APIS if a not in allowed]
            # Not a problem: the sidecar uses its settings instead (reported, not failed).
            result.missing_optional_apis = [a for a in OPTIONAL_APIS if a not in allowed]
    if not result.ok:
        result.exit_code = EXIT_PROBLEMS
    return result
