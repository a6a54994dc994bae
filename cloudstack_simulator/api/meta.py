"""About the server itself: listCapabilities, listApis and listConfigurations."""

from __future__ import annotations

from typing import Any

from cloudstack_simulator.api.params import like_any, list_response, paged, process, same_text
from cloudstack_simulator.api.request import ApiError, Call
from cloudstack_simulator.apispec import APIS
from cloudstack_simulator.context import Context
from sidecar.model.constants import HTTP_INTERNAL_ERROR, MAX_PAGE_SIZE


def list_capabilities(ctx: Context, call: Call) -> dict[str, Any]:
    """listCapabilities: ``capability`` is an object; api limits only while throttling is on."""
    process(ctx, call)
    capability: dict[str, Any] = {
        "securitygroupsenabled": False,
        "dynamicrolesenabled": True,
        "cloudstackversion": ctx.profile.version,
        "userpublictemplateenabled": True,
        "supportELB": "false",
        "projectinviterequired": False,
        "allowusercreateprojects": True,
        "customdiskofferingminsize": 1,
        "customdiskofferingmaxsize": 1024,
        "regionsecondaryenabled": False,
        "kvmsnapshotenabled": False,
        "allowuserviewdestroyedvm": False,
        "allowuserexpungerecovervm": False,
        "allowuserexpungerecovervolume": False,
        "allowuserviewalldomainaccounts": False,
        "kubernetesserviceenabled": False,
        "kubernetesclusterexperimentalfeaturesenabled": False,
        "defaultuipagesize": MAX_PAGE_SIZE,
        "instancesstatsretentiontime": 720,
        "instancesstatsuseronly": False,
        "instancesdisksstatsretentionenabled": False,
        "instancesdisksstatsretentiontime": 720,
    }
    if any(f.kind == "throttle" for f in ctx.faults.active):
        capability["apilimitinterval"] = 1
        capability["apilimitmax"] = 25
    return {f"{call.short}response": {"capability": capability}}


def list_apis(ctx: Context, call: Call) -> dict[str, Any]:
    """listApis: only what the key's role allows, shaped like ``cloudstack-apis-4.18.json``."""
    p = process(ctx, call)
    allowed = [name for name in sorted(APIS) if call.key.role is None or name in call.key.role]
    if "name" in p:
        if p["name"] not in allowed:
            raise ApiError(
                HTTP_INTERNAL_ERROR,
                "Api Discovery plugin was unable to find an api by that name or process any apis",
            )
        allowed = [p["name"]]
    items = [APIS[name] for name in allowed]
    return list_response(call.command, "api", len(items), items)


def list_configurations(ctx: Context, call: Call) -> dict[str, Any]:
    """listConfigurations: ``name`` is a substring match (compare exactly client-side)."""
    p = process(ctx, call)
    settings = sorted(ctx.state.settings.values(), key=lambda s: s.name)
    if "name" in p:
        settings = [s for s in settings if like_any(p["name"], s.name)]
    if "category" in p:
        settings = [s for s in settings if same_text(s.category, p["category"])]
    if "keyword" in p:
        settings = [s for s in settings if like_any(p["keyword"], s.name)]
    total, page = paged(settings, p)
    items = [
        {
            "category": s.category,
            "name": s.name,
            "value": s.value,
            "defaultvalue": s.value,
            "description": s.description,
            "scope": s.scope.lower() if p.get("zoneid") or p.get("clusterid") else s.scope,
            "isdynamic": s.isdynamic,
            "component": s.component,
        }
        for s in page
    ]
    return list_response(call.command, "configuration", total, items)


#: Command -> (handler, takes the lock itself). The map is case-sensitive, like upstream's.
