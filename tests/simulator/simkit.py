"""Test helpers: a raw HTTP client that signs with the reference snippet of cloudstack.md §1.1.

Independent of both ``sidecar.cloudstack.signing`` and the simulator's own verifier.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx

from cloudstack_simulator.api import ApiError, Call, dispatch
from cloudstack_simulator.server import error_payload


def reference_encode(value: str) -> str:
    """Java ``URLEncoder`` + ``%20``: quote keeping only ``*`` and escaping ``~``."""
    return quote(value, safe="*").replace("~", "%7E")


def reference_sign(params: dict[str, str], secret: str) -> str:
    """cloudstack.md §1.1, verbatim."""
    s = "&".join(f"{k}={reference_encode(v)}" for k, v in sorted(params.items())).lower()
    return base64.b64encode(hmac.new(secret.encode(), s.encode(), hashlib.sha1).digest()).decode()


def wire(pairs: Iterable[tuple[str, str]]) -> str:
    """A query string or form body with every name and value fully percent-encoded."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


class RawClient:
    """Signs and sends requests exactly as told (GET query or POST form)."""

    def __init__(self, endpoint: str, key: str, secret: str) -> None:
        self.endpoint = endpoint
        self.key = key
        self.secret = secret
        self.http = httpx.Client(timeout=10.0)

    def close(self) -> None:
        self.http.close()

    def signed(
        self,
        command: str,
        *,
        v3: datetime | None = None,
        response: str | None = "json",
        secret: str | None = None,
        **params: Any,
    ) -> dict[str, str]:
        """The parameters of a signed request (``v3`` = an ``expires`` moment)."""
        out = {"command": command, "apiKey": self.key}
        if response is not None:
            out["response"] = response
        for name, value in params.items():
            out[name] = "true" if value is True else "false" if value is False else str(value)
        if v3 is not None:
            out["signatureVersion"] = "3"
            out["expires"] = v3.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        out["signature"] = reference_sign(out, secret or self.secret)
        return out

    def get(self, command: str, **params: Any) -> httpx.Response:
        """Signed GET."""
        query = wire(self.signed(command, **params).items())
        return self.http.get(f"{self.endpoint}?{query}")

    def post(self, command: str, **params: Any) -> httpx.Response:
        """Signed POST with a form body."""
        body = wire(self.signed(command, **params).items())
        return self.http.post(
            self.endpoint,
            content=body.encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    def send_params(self, params: dict[str, str], *, method: str = "GET") -> httpx.Response:
        """Send already-built parameters."""
        if method == "GET":
            return self.http.get(f"{self.endpoint}?{wire(params.items())}")
        return self.http.post(
            self.endpoint,
            content=wire(params.items()).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )


def future(hours: float = 1.0) -> datetime:
    """An ``expires`` far enough ahead of any test's virtual clock."""
    return datetime.now(UTC) + timedelta(hours=hours)


def invoke(sim: Any, command: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """Run a command in-process as the main key (no HTTP): (status, JSON object)."""
    key = sim.state.keys[sim.key]
    account = sim.state.accounts[key.account]
    values = {"command": command}
    for name, value in params.items():
        values[name] = "true" if value is True else "false" if value is False else str(value)
    try:
        return 200, dispatch(sim.context, Call(command, values, "GET", key, account))
    except ApiError as error:
        return error.status, error_payload(command, error)


def body(payload: dict[str, Any]) -> dict[str, Any]:
    """The object under the single ``…response`` key."""
    (value,) = payload.values()
    return value
