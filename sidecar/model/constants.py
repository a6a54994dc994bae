"""CloudStack facts shared by the client, the reconciler and the simulator (data only)."""

from __future__ import annotations

from typing import Final

#: Path of the API servlet on a management server.
API_PATH: Final = "/client/api"

#: Upper bound of ``pagesize`` (global ``default.page.size``; larger values get 431).
MAX_PAGE_SIZE: Final = 500

#: Gson date format of every API date: ``2021-10-03T10:59:51+0530`` (MS time zone, whole seconds).
CS_DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%z"

#: Format for ``expires`` and ``startdate``/``enddate`` we send: always UTC, ``+0000``.
CS_SEND_DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%S+0000"

#: Alert type names with their numbers in 4.19/4.20 (``AlertService.AlertType``).
#: Numbers are not unique across names or releases: always key on the name.
ALERT_TYPES: Final[dict[str, int]] = {
    "ALERT.MEMORY": 0,
    "ALERT.CPU": 1,
    "ALERT.STORAGE": 2,
    "ALERT.STORAGE.ALLOCATED": 3,
    "ALERT.NETWORK.PUBLICIP": 4,
    "ALERT.NETWORK.PRIVATEIP": 5,
    "ALERT.STORAGE.SECONDARY": 6,
    "ALERT.COMPUTE.HOST": 7,
    "ALERT.USERVM": 8,
    "ALERT.SERVICE.DOMAINROUTER": 9,
    "ALERT.SERVICE.CONSOLEPROXY": 10,
    "ALERT.NETWORK.IPV6SUBNET": 10,
    "ALERT.NETWORK.ROUTING": 11,
    "ALERT.STORAGE.MISC": 12,
    "ALERT.USAGE": 13,
    "ALERT.MANAGEMENT": 14,
    "ALERT.NETWORK.DOMAINROUTERMIGRATE": 15,
    "ALERT.SERVICE.CONSOLEPROXYMIGRATE": 16,
    "ALERT.USERVM.MIGRATE": 17,
    "ALERT.NETWORK.VLAN": 18,
    "ALERT.SERVICE.SSVM": 19,
    "ALERT.USAGE.RESULT": 20,
    "ALERT.STORAGE.DELETE": 21,
    "ALERT.RESOURCE.COUNT": 22,
    "ALERT.USAGE.SANITY": 23,
    "ALERT.NETWORK.DIRECTPUBLICIP": 24,
    "ALERT.STORAGE.LOCAL": 25,
    "ALERT.RESOURCE.EXCEED": 26,
    "ALERT.TYPE.SYNC": 27,
    "ALERT.UPLOAD.FAILED": 28,
    "ALERT.OOBM.AUTHERROR": 29,
    "ALERT.HA.ACTION": 30,
    "ALERT.CA.CERT": 31,
    "ALERT.VM.SNAPSHOT": 32,
    "ALERT.VR.PUBLIC.IFACE.MTU": 32,
    "ALERT.VR.PRIVATE.IFACE.MTU": 32,
}

#: Alert names CloudStack always stores and mails (exempt from its own suppression, §7).
#: The HA defect duplicates only these; they are the only candidates for de-duplication.
DEDUP_ELIGIBLE_NAMES: Final = frozenset(
    {
        "ALERT.COMPUTE.HOST",
        "ALERT.USERVM",
        "ALERT.SERVICE.DOMAINROUTER",
        "ALERT.SERVICE.CONSOLEPROXY",
        "ALERT.SERVICE.SSVM",
        "ALERT.HA.ACTION",
    }
)

#: Names CloudStack itself suppresses while an unarchived row of the same type exists.
#: Archiving their live row re-arms alerting and sends new mail: never touch them.
SUPPRESSED_NAMES: Final = frozenset(
    name
    for name in ALERT_TYPES
    if name
    not in DEDUP_ELIGIBLE_NAMES
    | {
        "ALERT.STORAGE.MISC",
        "ALERT.MANAGEMENT",
        "ALERT.RESOURCE.EXCEED",
        "ALERT.UPLOAD.FAILED",
        "ALERT.OOBM.AUTHERROR",
        "ALERT.CA.CERT",
    }
)

#: VM kind -> alert name of its HA alerts ("HA starting VM", "Unable to restart").
VM_ALERT_NAME_BY_KIND: Final[dict[str, str]] = {
    "User": "ALERT.USERVM",
    "DomainRouter": "ALERT.SERVICE.DOMAINROUTER",
    "ConsoleProxy": "ALERT.SERVICE.CONSOLEPROXY",
    "SecondaryStorageVm": "ALERT.SERVICE.SSVM",
}

#: HTTP status / ``errorcode`` values (``ApiErrorCode``).
HTTP_POST_REQUIRED: Final = 400
HTTP_UNAUTHORIZED: Final = 401
HTTP_METHOD_NOT_ALLOWED: Final = 405
HTTP_THROTTLED: Final = 429
HTTP_MALFORMED: Final = 430
HTTP_PARAM_ERROR: Final = 431
HTTP_API_DISABLED: Final = 432
HTTP_SHUTTING_DOWN: Final = 503
HTTP_INTERNAL_ERROR: Final = 530
HTTP_ACCOUNT_ERROR: Final = 531

#: Text of a 401 for bad signatures, unknown keys, expired requests and unknown commands.
UNAUTHORIZED_TEXT: Final = "unable to verify user credentials and/or request signature"

#: Text of a 429 from the api-rate-limit plugin; ``{ms}`` is the wait in milliseconds.
THROTTLED_TEXT: Final = (
    "The given user has reached his/her account api limit, please retry after [{ms}] ms."
)

#: Every API the sidecar calls; the least-privilege role is exactly this list.
SIDECAR_APIS: Final = (
    "listApis",
    "listCapabilities",
    "listHosts",
    "listVirtualMachines",
    "listAlerts",
    "archiveAlerts",
)

#: APIs the sidecar uses when the role allows them and does without otherwise.
OPTIONAL_APIS: Final = ("listConfigurations",)

#: Prefixes of the read-only commands (safe to GET and to retry); every other command
#: changes state: always POSTed, never retried unless idempotent.
STATE_CHANGING_PREFIXES_READ: Final = ("list", "get", "query", "find")

#: Releases with the duplicate-HA defect (apache/cloudstack#10367, fixed by #10624).
AFFECTED_RELEASES: Final = ("4.19.0", "4.19.1", "4.19.2", "4.20.0")

#: Host states (``com.cloud.host.Status``).
HOST_STATES: Final = (
    "Creating",
    "Connecting",
    "Up",
    "Down",
    "Disconnected",
    "Alert",
    "Removed",
    "Error",
    "Rebalancing",
)

