"""CloudStack request signing (``ApiServer.verifyRequest``) as an ``httpx.Auth``.

The server sorts the decoded parameter names case-sensitively, re-encodes every value with
Java's ``URLEncoder`` (space as ``%20``), lowercases the whole string and compares an
HMAC-SHA1 of it. We encode values on the wire with the same rule, so what we sign is exactly
what the server re-derives, ``~`` included (Python's ``quote`` keeps ``~``; Java escapes it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Generator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx

from sidecar.model.constants import CS_SEND_DATE_FORMAT

#: The parameters the signer owns; a caller's values for them are replaced.
AUTH_PARAMS = ("apiKey", "response", "signatureVersion", "expires", "signature")

#: Default lifetime of a signed request (cs uses the same 10 minutes).
DEFAULT_EXPIRES_IN = 600.0

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

#: Request extension naming the ``expires`` moment to sign instead of now + ``expires_in``
#: (the clock-skew probe chooses it).
EXPIRES_AT = "sidecar.expires"


def java_urlencode(value: str) -> str:
    """Encode like ``URLEncoder.encode(v, "UTF-8").replaceAll("\\\\+", "%20")``.

    Java keeps only ``A-Za-z0-9.-*_``; Python's ``quote`` also keeps ``~``, so escape it.
    """
    return quote(value, safe="*").replace("~", "%7E")


def string_to_sign(params: Mapping[str, str]) -> str:
    """The lowercased ``name=value&…`` string CloudStack signs (names sorted before lowering)."""
    return "&".join(
        f"{name}={java_urlencode(value)}"
        for name, value in sorted(params.items())
        if name != "signature"
    ).lower()


def sign(params: Mapping[str, str], secret: str) -> str:
    """Base64 HMAC-SHA1 of ``string_to_sign(params)`` with ``secret``."""
    digest = hmac.new(
        secret.encode("utf-8"), string_to_sign(params).encode("utf-8"), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def format_expires(moment: datetime) -> str:
    """``expires`` as CloudStack parses it without ambiguity: UTC, ``+0000``."""
    return moment.astimezone(UTC).strftime(CS_SEND_DATE_FORMAT)


def encode_params(params: Iterable[tuple[str, str]]) -> str:
    """Wire form of a query string or form body, every name and value Java-encoded."""
    return "&".join(f"{java_urlencode(k)}={java_urlencode(v)}" for k, v in params)


def first_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Keep the first value of repeated names, as CloudStack does."""
    out: dict[str, str] = {}
    for name, value in items:
        out.setdefault(name, value)
    return out


def signed_params(
    params: Mapping[str, str],
    *,
    key: str,
    secret: str,
    expires: datetime | None,
) -> dict[str, str]:
    """``params`` plus apiKey, response=json, signatureVersion=3, expires and signature."""
    out = {k: v for k, v in params.items() if k not in AUTH_PARAMS}
    out["apiKey"] = key
    out["response"] = "json"
    if expires is not None:
        out["signatureVersion"] = "3"
        out["expires"] = format_expires(expires)
    out["signature"] = sign(out, secret)
    return out


class CloudStackSigner(httpx.Auth):
    """Signs GET query strings and POST form bodies (signatureVersion 3, HMAC-SHA1)."""

    requires_request_body = True

    def __init__(
        self,
        key: str,
        secret: str,
        *,
        expires_in: float = DEFAULT_EXPIRES_IN,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._key = key
        self._secret = secret
        self.expires_in = expires_in
        self._now = now or (lambda: datetime.now(UTC))

    def __repr__(self) -> str:
        return f"CloudStackSigner(expires_in={self.expires_in})"

    def sign_params(
        self, params: Mapping[str, str], *, expires: datetime | None = None
    ) -> dict[str, str]:
        """Add the authentication parameters and the signature to ``params``.

        ``expires`` defaults to ``expires_in`` seconds after the signer's clock.
        """
        if expires is None:
            expires = self._now() + timedelta(seconds=self.expires_in)
        return signed_params(params, key=self._key, secret=self._secret, expires=expires)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Replace the request by its signed twin (query for GET, form body otherwise)."""
        yield self.sign_request(request)

    def sign_request(self, request: httpx.Request) -> httpx.Request:
        """A signed copy of ``request`` (``expires`` from its EXPIRES_AT extension, if set)."""
        headers = httpx.Headers(request.headers)
        expires = request.extensions.get(EXPIRES_AT)
        if request.method == "GET":
            params = first_values(request.url.params.multi_items())
            wire = encode_params(self.sign_params(params, expires=expires).items())
            url = request.url.copy_with(query=wire.encode("ascii"))
            return httpx.Request("GET", url, headers=headers, extensions=request.extensions)
        body = request.content.decode("utf-8") if request.content else ""
        params = first_values(parse_qsl(body, keep_blank_values=True))
        params.update(first_values(request.url.params.multi_items()))
        signed = self.sign_params(params, expires=expires)
        body_bytes = encode_params(signed.items()).encode("ascii")
        headers.pop("Content-Length", None)
        headers["Content-Type"] = FORM_CONTENT_TYPE
        return httpx.Request(
            request.method,
            request.url.copy_with(query=None),
            headers=headers,
            content=body_bytes,
            extensions=request.extensions,
        )


def _flatten_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return ",".join(_flatten_value(v) for v in items)
    if isinstance(value, datetime):
        return format_expires(value)
    return str(value)


def flatten_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """Turn Python values into CloudStack strings (as ``cs.client.transform`` does).

    None and empty collections are dropped; bools become ``true``/``false``; lists are
    comma-joined (repeated names would lose all but the first value); a list of dicts or a
    dict becomes ``name[i].key=value``; aware datetimes are sent in UTC.
    """
    out: dict[str, str] = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, (list, tuple, set, frozenset, dict)) and not value:
            continue
        if isinstance(value, Mapping) or (
            isinstance(value, (list, tuple)) and isinstance(value[0], Mapping)
        ):
            maps = [value] if isinstance(value, Mapping) else list(value)
            for index, mapping in enumerate(maps):
                for sub, sub_value in mapping.items():
                    out[f"{name}[{index}].{sub}"] = _flatten_value(sub_value)
            continue
        out[name] = _flatten_value(value)
    return out


__all__ = [
    "EXPIRES_AT",
    "CloudStackSigner",
    "encode_params",
    "flatten_params",
    "format_expires",
    "java_urlencode",
    "sign",
    "signed_params",
    "string_to_sign",
]
