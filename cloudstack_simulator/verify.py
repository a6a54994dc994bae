"""The simulator's own request decoding and signature check, written from upstream's servlet.

Independent of ``sidecar.cloudstack.signing`` on purpose: a bug shared by the client and the
simulator would hide itself. Sources: ``ApiServlet.utf8Fixup`` / ``processRequestInContext``,
``ApiServer.verifyRequest`` and ``DateUtil.parseTZDateString`` (apache/cloudstack).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from urllib.parse import unquote_plus

#: Bytes ``java.net.URLEncoder`` leaves alone (everything else is ``%XX`` of UTF-8, space ``+``).
_JAVA_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-*_")


def java_url_encode(value: str) -> str:
    """``URLEncoder.encode(value, "UTF-8")``: keeps ``A-Za-z0-9.-*_``, space becomes ``+``."""
    out: list[str] = []
    for byte in value.encode("utf-8", "surrogatepass"):
        if byte in _JAVA_SAFE:
            out.append(chr(byte))
        elif byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def unsigned_request(params: Mapping[str, str]) -> str:
    """The string ``verifyRequest`` signs: sorted names, re-encoded values, then lowercased."""
    parts = []
    # Collections.sort on the decoded names, before lowercasing (case-sensitive order).
    for name in sorted(params):
        if name.lower() == "signature":
            continue
        parts.append(f"{name}={java_url_encode(params[name]).replace('+', '%20')}")
    return "&".join(parts).lower()


def compute_signature(params: Mapping[str, str], secret: str) -> str:
    """Base64 HMAC-SHA1 of :func:`unsigned_request` keyed with ``secret`` (as upstream)."""
    mac = hmac.new(secret.encode("utf-8"), unsigned_request(params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def signature_matches(params: Mapping[str, str], secret: str) -> bool:
    """Constant-time comparison of the request's ``signature`` with the computed one."""
    given = next((v for k, v in params.items() if k.lower() == "signature"), None)
    if given is None:
        return False
    expected = compute_signature(params, secret)
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _decode(text: str) -> str:
    # java.net.URLDecoder: "+" is a space, %XX are UTF-8 bytes (bad bytes become U+FFFD).
    return unquote_plus(text, encoding="utf-8", errors="replace")


def decode_pairs(raw: str) -> list[tuple[str, str]]:
    """Split ``a=1&b=2`` into decoded pairs; pieces without ``=`` are dropped (utf8Fixup)."""
    pairs = []
    for piece in raw.split("&"):
        name, sep, value = piece.partition("=")
        if not sep:
            continue
        pairs.append((_decode(name), _decode(value)))
    return pairs


def request_params(query: str, form_body: str | None) -> dict[str, str]:
    """The parameter map ``ApiServlet`` builds: one value per name.

    Form-body values keep the first of repeated names (``getParameterMap()[0]``). Then
    ``utf8Fixup`` re-puts every query-string pair in order, so in a query string the *last*
    occurrence of a name wins, and query values override body values of the same name.
    """
    params: dict[str, str] = {}
    if form_body:
        for name, value in decode_pairs(form_body):
            params.setdefault(name, value)
    if query:
        for name, value in decode_pairs(query):
            params[name] = value
    return params


# --- dates --------------------------------------------------------------------------------

_ISO_OFFSET = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"([Zz]|[+-]\d{2}:\d{2}(?::\d{2})?)"
)
_ZONED = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})([+-]\d{4})")
_FRACTION_X = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})(Z|[+-]\d{2}(?:\d{2})?)"
)
_FRACTION_Z = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{6})([+-]\d{4})")
_LEGACY_ZZ = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z([+-]\d{4})")


def _offset(text: str) -> timezone:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours = int(digits[0:2])
    minutes = int(digits[2:4]) if len(digits) >= 4 else 0
    seconds = int(digits[4:6]) if len(digits) >= 6 else 0
    if hours > 18 or minutes > 59 or seconds > 59:
        raise ValueError("offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes, seconds=seconds))


def _build(groups: tuple[str | None, ...], fraction: str | None, offset: str) -> datetime:
    year, month, day, hour, minute = (int(g or 0) for g in groups[:5])
    second = int(groups[5] or 0)
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(year, month, day, hour, minute, second, micros, tzinfo=_offset(offset))


def parse_tz_date(text: str) -> datetime | None:
    """``DateUtil.parseTZDateString``: the formats it tries in order, or ``None``.

    ISO offset date-time (``…Z``, ``…+05:30``, optional seconds and fraction), then
    ``yyyy-MM-dd'T'HH:mm:ssZ`` (``…+0000``), then six-digit fractions with ``X``/``Z`` offsets,
    then the legacy ``…'Z'Z``. (The ``…SSSSSS'Z'`` pattern has no offset and never parses.)
    """
    attempts = (
        (_ISO_OFFSET, lambda m: _build(m.groups()[:6], m.group(7), m.group(8))),
        (_ZONED, lambda m: _build(m.groups()[:6], None, m.group(7))),
        (_FRACTION_X, lambda m: _build(m.groups()[:6], m.group(7), m.group(8))),
        (_FRACTION_Z, lambda m: _build(m.groups()[:6], m.group(7), m.group(8))),
        (_LEGACY_ZZ, lambda m: _build(m.groups()[:6], None, m.group(7))),
    )
    for pattern, build in attempts:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        try:
            return build(match)
        except ValueError:
            continue
    return None


_NEW_INPUT = re.compile(r"\d+-\d+-\d+ \d+:\d+:\d+")
_DAY_PREFIX = re.compile(r"(\d+)-(\d+)-(\d+)")


def parse_param_date(text: str, *, end: bool, tz: tzinfo, lenient_forms: bool) -> datetime | None:
    """A ``date`` API parameter as ``ParamProcessWorker`` reads it (§10), or ``None``.

    With ``lenient_forms`` (listEvents, archive/deleteAlerts/Events): an offset date-time;
    else ``yyyy-MM-dd HH:mm:ss`` in the server zone; else ``yyyy-MM-dd`` with trailing text
    ignored, a start at 00:00:00 and an end at 23:59:59. Other commands: ``yyyy-MM-dd`` only.
    """
    if lenient_forms:
        zoned = parse_tz_date(text)
        if zoned is not None:
            return zoned
        if _NEW_INPUT.fullmatch(text):
            try:
                return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz)
            except ValueError:
                return None
    match = _DAY_PREFIX.match(text)
    if match is None:
        return None
    try:
        day = datetime(int(match.group(1)), int(match.group(2)), int(match.group(3)), tzinfo=tz)
    except ValueError:
        return None
    if lenient_forms and end:
        return day.replace(hour=23, minute=59, second=59)
    return day
