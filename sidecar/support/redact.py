"""Keep API keys, secrets and signatures out of logs, exceptions and output.

Two layers: the known credential values (registered when a config is loaded or a client
is built) are replaced wherever they appear, and ``name=value`` / ``"name": "value"`` pairs
whose name is a credential (``apiKey``, ``signature``, ``secret``…) lose their value even
when the value was never registered (another account's key in a pasted URL, say).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"

#: Shorter values are not registered: masking every "foo" in a message helps nobody.
_MIN_SECRET_LENGTH = 4

_NAMES = r"api[_-]?key|secret[_-]?key|secret|signature|key|password|token"
# name=value (URLs, forms, ini lines, "key = x") and "name": "value" (JSON, dict reprs).
_PAIR = re.compile(
    rf"""(?ix)
    (?P<name>\b(?:{_NAMES})\b)
    (?P<sep>\s*=\s*|["']?\s*:\s*["']|["']\s*,\s*["'])
    (?P<value>[^&\s"',;}}\])]+)
    """
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(*values: str | None) -> None:
    """Remember credential values so that ``redact`` masks them anywhere in a text."""
    with _lock:
        for value in values:
            if value and len(value) >= _MIN_SECRET_LENGTH:
                _secrets.update({value, quote(value, safe=""), quote_plus(value, safe="")})


def registered_secrets() -> frozenset[str]:
    """The registered values (for tests)."""
    with _lock:
        return frozenset(_secrets)


def mask_url(url: object) -> str:
    """A database URL (str or SQLAlchemy URL) with its password as ``***``, for messages."""
    # Imported here: support is loaded by every command's --help, SQLAlchemy only when used.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)  # type: ignore[arg-type]
    except (ArgumentError, TypeError, ValueError):
        return "<unparseable URL>"
    return parsed.render_as_string(hide_password=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered (and ``extra``) secret and credential value masked."""
    if not text:
        return text
    with _lock:
        values = set(_secrets)
    values.update(v for v in extra if v and len(v) >= _MIN_SECRET_LENGTH)
    # Longest first, so that a secret containing another registered value is fully masked.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return _PAIR.sub(lambda m: f"{m.group('name')}{m.group('sep')}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Logging filter that renders each record and masks secrets in it (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not hide the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        # Formatter.format re-renders exc_info only when exc_text is empty; keep exc_info so
        # that handlers wanting the type still see it.
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()

#: Third-party loggers that print request URLs (httpx logs every request at INFO).
NOISY_LOGGERS = ("httpx", "httpcore")


def install_log_redaction(*loggers: logging.Logger) -> RedactingFilter:
    """Attach the filter to ``loggers`` (default: root's handlers and the httpx loggers).

    A filter on a logger sees only records created on that very logger, while a filter on a
    handler sees everything the handler writes: use both.
    """
    targets = list(loggers) or [logging.getLogger(name) for name in NOISY_LOGGERS]
    for logger in targets:
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    if not loggers:
        for handler in logging.getLogger().handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
    return _FILTER


__all__ = [
    "MASK",
    "RedactingFilter",
    "install_log_redaction",
    "mask_url",
    "redact",
    "register_secret",
    "registered_secrets",
]
