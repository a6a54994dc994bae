"""Logging set-up: one line per event for journald and pipes, rich only on a terminal.

* ``text`` on a terminal: rich (colours, aligned columns), for interactive commands.
* ``text`` into journald (stderr is the stream named by ``JOURNAL_STREAM``): ``<6>INFO logger:
  message``, no timestamp (journald adds one) and a syslog priority prefix so that
  ``journalctl -p warning`` works.
* ``text`` into a pipe or file: ``2026-11-25T10:00:00.123+00:00 INFO logger: message``.
* ``json``: one JSON object per line (``ts``, ``level``, ``logger``, ``message``, extra fields,
  ``exc``), for log shippers.

Outside the terminal every event is exactly one line: newlines (tracebacks) are escaped as
``\\n``, and nothing wraps. The handler always masks secrets (``sidecar.support.redact``):
registered credential values and ``apiKey=``/``signature=`` values, in messages, tracebacks
and extras.

Usage::

    from sidecar.support.logs import setup_logging

    setup_logging(settings.log_level, settings.log_format)
    logging.getLogger("sidecar.ops.service.cycle").info("archived", extra={"count": 3})
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from sidecar.support.redact import RedactingFilter, redact

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

#: syslog priorities journald reads from a ``<N>`` line prefix (``SyslogLevelPrefix=yes``).
_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

#: Libraries whose INFO lines are noise for an operator (httpx logs every request URL).
_NOISY = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "apscheduler": logging.WARNING}

_HANDLER_MARK = "_sidecar_handler"


# --- secrets redaction ----------------------------------------------------------------------


class _ExtrasRedactingFilter(logging.Filter):
    """Mask secrets in string ``extra=`` fields, which the formatters print too."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redact(value))
        return True


# --- formatters -------------------------------------------------------------------------------


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    if record.exc_info and not record.exc_text:
        record.exc_text = formatter.formatException(record.exc_info)
    text = record.exc_text or ""
    if record.stack_info:
        text = f"{text}\n{formatter.formatStack(record.stack_info)}".strip("\n")
    return text


class LineFormatter(logging.Formatter):
    """``[<prio>][time ]LEVEL logger: message key=value`` on exactly one line."""

    def __init__(self, *, timestamps: bool, priority_prefix: bool) -> None:
        super().__init__()
        self.timestamps = timestamps
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{record.levelname} {record.name}: {record.getMessage()}"]
        parts += [f"{k}={v}" for k, v in _extras(record).items()]
        line = " ".join(parts)
        exc = _exception_text(self, record)
        if exc:
            line = f"{line}\n{exc}"
        # One event, one line: journald would split a traceback into unprioritised entries.
        line = line.replace("\r", "").replace("\n", "\\n")
        if self.timestamps:
            when = datetime.fromtimestamp(record.created).astimezone()
            line = f"{when.isoformat(timespec='milliseconds')} {line}"
        if self.priority_prefix:
            line = f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            payload.setdefault(key, value)
        exc = _exception_text(self, record)
        if exc:
            payload["exc"] = exc
        return json.dumps(payload, default=str, ensure_ascii=False)


class _ExtrasFormatter(logging.Formatter):
    """Message plus ``key=value`` extras; rich draws time and level itself."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [record.getMessage()] + [f"{k}={v}" for k, v in _extras(record).items()]
        text = " ".join(parts)
        exc = _exception_text(self, record)
        return f"{text}\n{exc}" if exc else text


# --- set-up -----------------------------------------------------------------------------------


def writes_to_journal(stream: TextIO) -> bool:
    """True when ``stream`` is the journald stream systemd named in ``JOURNAL_STREAM``.

    Only a match of device and inode counts: a shell started from a systemd user service
    inherits ``JOURNAL_STREAM`` while writing to a terminal.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (AttributeError, OSError, ValueError):
        return False


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _rich_handler(stream: TextIO) -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(
        console=Console(file=stream),
        show_path=False,
        markup=False,  # log messages are data (alert texts), never rich markup
        rich_tracebacks=False,
        log_time_format="[%X]",
    )
    handler.setFormatter(_ExtrasFormatter())
    return handler


def setup_logging(
    level: str | int = "INFO", fmt: str = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (default stderr) in ``fmt``; returns the handler.

    Calling it again replaces the handler it installed before (other handlers stay).
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r} is neither 'text' nor 'json'")
    out = stream if stream is not None else sys.stderr
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")

    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(out)
        handler.setFormatter(JsonFormatter())
    elif writes_to_journal(out):
        handler = logging.StreamHandler(out)
        handler.setFormatter(LineFormatter(timestamps=False, priority_prefix=True))
    elif _is_tty(out):
        handler = _rich_handler(out)
    else:
        handler = logging.StreamHandler(out)
        handler.setFormatter(LineFormatter(timestamps=True, priority_prefix=False))
    # On the handler, not a logger: a handler's filters see the records of every logger.
    handler.addFilter(RedactingFilter())
    handler.addFilter(_ExtrasRedactingFilter())
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    for name, floor in _NOISY.items():
        logging.getLogger(name).setLevel(max(numeric, floor))
    logging.captureWarnings(True)
    return handler


__all__ = ["JsonFormatter", "LineFormatter", "setup_logging", "writes_to_journal"]
