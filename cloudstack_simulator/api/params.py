"""Parameter processing as upstream's dispatcher does it, paging, filters and list answers.

Order of checks follows upstream's standard dispatch chain: ``ParamProcessWorker`` (types,
uuids, dates, lengths), then ``BaseListCmd.validateSpecificParameters`` (page/pagesize
pairing), then the command itself (page size limit, filters).
"""

from __future__ import annotations

import re
from typing import Any

from cloudstack_simulator.alert_table import collate, fold, like_matcher
from cloudstack_simulator.api.request import ApiError, Call, invalid
from cloudstack_simulator.apispec import APIS
from cloudstack_simulator.context import Context
from cloudstack_simulator.verify import parse_param_date
from sidecar.model.constants import HTTP_INTERNAL_ERROR, HTTP_PARAM_ERROR, MAX_PAGE_SIZE

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_JAVA_LONG = re.compile(r"[+-]?\d+")

#: Commands whose ``date`` parameters take the lenient forms of cloudstack.md §10.
LENIENT_DATES = frozenset({"listEvents", "archiveAlerts", "deleteAlerts"})

#: Entity a ``uuid`` parameter refers to, by parameter name; ``id``/``ids`` use the command's.
ENTITY_BY_PARAM = {
    "zoneid": "zone",
    "podid": "pod",
    "clusterid": "cluster",
    "hostid": "host",
    "virtualmachineid": "vm",
    "domainid": "domain",
    "projectid": "project",
    "jobid": "job",
    "startid": "event",
}
ENTITY_BY_COMMAND = {
    "listAlerts": "alert",
    "archiveAlerts": "alert",
    "deleteAlerts": "alert",
    "listHosts": "host",
    "listVirtualMachines": "vm",
    "listEvents": "event",
    "listZones": "zone",
    "listClusters": "cluster",
}


def _validate_paging(call: Call) -> None:
    raw_size = call.params.get("pagesize")
    size = None
    if raw_size is not None:
        if not _JAVA_LONG.fullmatch(raw_size):
            # Only a blank value gets here (ParamProcessWorker skips blank integers); Long.valueOf
            # throws NumberFormatException, which handleRequest answers as a parameter error.
            raise ApiError(HTTP_PARAM_ERROR, f'For input string: "{raw_size}"')
        size = int(raw_size)
    has_page = call.params.get("page") is not None
    if not has_page and size is not None and size != -1:
        raise ApiError(
            HTTP_PARAM_ERROR, '"page" parameter is required when "pagesize" is specified'
        )
    if size is None and has_page:
        raise ApiError(
            HTTP_PARAM_ERROR, '"pagesize" parameter is required when "page" is specified'
        )


def _translate(ctx: Context, call: Call, spec: dict[str, Any], raw: str) -> int | None:
    """``ParamProcessWorker.translateUuidToInternalId``."""
    name = spec["name"]
    if raw == "-1":
        return -1
    pre3x = not spec.get("since")
    is_uuid = _UUID.fullmatch(raw) is not None
    if not pre3x and not is_uuid:
        return None  # newer APIs silently drop a non-uuid value
    if pre3x and not is_uuid and _JAVA_LONG.fullmatch(raw):
        value = int(raw)
        if value < 1:
            # validateNaturalNumber's ServerApiException is caught as a CloudRuntimeException.
            raise ApiError(
                HTTP_INTERNAL_ERROR, f"Internal error executing API command {call.short}"
            )
        return value
    kind = ENTITY_BY_PARAM.get(name) or ENTITY_BY_COMMAND.get(call.command, "")
    found = ctx.state.find_uuid(kind, raw)
    if found is None:
        raise ApiError(
            HTTP_PARAM_ERROR,
            f"Unable to execute API command {call.short} due to invalid value. Invalid parameter "
            f"{name} value={raw} due to incorrect long value format, or entity does not exist or "
            "due to incorrect parameter annotation for the field in api cmd class.",
        )
    return found


def _integer(call: Call, name: str, raw: str, bits: int = 32) -> int:
    if not _JAVA_LONG.fullmatch(raw) or not -(2 ** (bits - 1)) <= int(raw) < 2 ** (bits - 1):
        raise ApiError(
            HTTP_PARAM_ERROR,
            f"Unable to execute API command {call.short} due to invalid value {raw} for "
            f"parameter {name}",
        )
    return int(raw)


def process(ctx: Context, call: Call) -> dict[str, Any]:
    """Parse and check ``call.params`` against the command's declared parameters."""
    spec = APIS[call.command]
    out: dict[str, Any] = {}
    for param in spec["params"]:
        name = param["name"]
        raw = call.params.get(name)
        if raw is None:
            if param["required"]:
                raise ApiError(
                    HTTP_PARAM_ERROR,
                    f"Unable to execute API command {call.short} due to missing parameter {name}",
                )
            continue
        kind = param["type"]
        if kind == "boolean":
            out[name] = raw.lower() == "true"
        elif kind in ("integer", "int"):
            if raw.strip():
                out[name] = _integer(call, name, raw)
        elif kind in ("long", "short"):
            out[name] = _integer(call, name, raw, 64 if kind == "long" else 16)
        elif kind == "uuid":
            value = _translate(ctx, call, param, raw)
            if value is not None:
                out[name] = value
        elif kind == "list":
            tokens = [t for t in raw.split(",") if t]
            if name == "ids":
                ids = []
                for token in tokens:
                    value = _translate(ctx, call, param, token)
                    if value is not None:
                        ids.append(value)
                out[name] = ids
            else:
                out[name] = tokens
        elif kind == "date":
            parsed = parse_param_date(
                raw,
                end=name == "enddate",
                tz=ctx.tz,
                lenient_forms=call.command in LENIENT_DATES,
            )
            if parsed is None:
                raise ApiError(
                    HTTP_PARAM_ERROR,
                    f"Unable to parse date {raw} for command {call.short}, please pass dates in "
                    "the format mentioned in the api documentation",
                )
            out[name] = parsed
        elif kind == "string":
            length = int(param.get("length", 255))
            if len(raw) > length:
                raise ApiError(
                    HTTP_PARAM_ERROR,
                    f"Unable to execute API command {call.short} due to invalid value. Value "
                    f"greater than max allowed length {length} for param: {name}",
                )
            out[name] = raw
        else:
            out[name] = raw
    if any(p["name"] == "pagesize" for p in spec["params"]):
        _validate_paging(call)
    return out


def page_bounds(parsed: dict[str, Any]) -> tuple[int, int | None]:
    """``getStartIndex``/``getPageSizeVal``: (offset, limit or None for unlimited)."""
    size = parsed.get("pagesize")
    page = parsed.get("page")
    if size is not None and size > MAX_PAGE_SIZE:
        raise invalid(f"Page size can't exceed max allowed page size value: {MAX_PAGE_SIZE}")
    if size == -1 and page is not None:
        raise invalid("Can't specify page parameter when pagesize is -1 (Unlimited)")
    if size == -1:
        return 0, None
    limit = MAX_PAGE_SIZE if size is None else max(0, size)
    start = limit * (page - 1) if page is not None and page > 0 else 0
    return start, limit


def list_response(
    command: str, key: str, total: int, items: list[dict[str, Any]]
) -> dict[str, Any]:
    """``{}`` when nothing matches, ``{"count": N}`` past the end, else count and items."""
    body: dict[str, Any] = {}
    if total:
        body["count"] = total
        if items:
            body[key] = items
    return {f"{command.lower()}response": body}


def paged(rows: list[Any], parsed: dict[str, Any]) -> tuple[int, list[Any]]:
    """(total, the page of ``rows`` the paging parameters ask for)."""
    start, limit = page_bounds(parsed)
    if limit is None:
        return len(rows), rows
    return len(rows), rows[start : start + limit]


def like_any(keyword: str, *values: str | None) -> bool:
    """``v LIKE '%keyword%'`` for any of ``values`` (None never matches)."""
    matcher = like_matcher(keyword)
    for value in values:
        if value is None:
            continue
        if isinstance(matcher, str):
            if matcher in fold(value):
                return True
        elif matcher.search(fold(value)):
            return True
    return False


def same_text(a: str | None, b: str) -> bool:
    """``a = b`` under utf8_general_ci, case- and accent-insensitive (None never matches)."""
    return a is not None and collate(a) == collate(b)


def visible_accounts(call: Call, p: dict[str, Any]) -> set[str] | None:
    """Accounts whose resources a root admin sees: all with listall=true, else its own."""
    if "account" in p:
        return {p["account"]}
    if p.get("listall"):
        return None
    return {call.account.name}
