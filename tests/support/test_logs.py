# mypy: allow-untyped-defs
"""Logging set-up: journald, pipe, terminal and JSON outputs, one line per event, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.support import redact
from sidecar.support.logs import setup_logging, writes_to_journal
from sidecar.support.redact import register_secret


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo setup_logging: root handlers, levels and registered secrets."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "apscheduler")}
    secrets = set(redact._secrets)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, lvl in noisy.items():
        logging.getLogger(name).setLevel(lvl)
    redact._secrets.clear()
    redact._secrets.update(secrets)
    logging.captureWarnings(False)


class TTY(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def journal_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> io.TextIOWrapper:
    """A real file whose device:inode is announced in JOURNAL_STREAM, as systemd does."""
    fh = (tmp_path / "journal").open("w+")
    st = os.fstat(fh.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    return fh


def test_a_pipe_gets_one_plain_line_with_a_timestamp():
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("sidecar.test").info("cycle ok: %d archived", 3)
    [line] = lines(out)
    stamp, rest = line.split(" ", 1)
    assert rest == "INFO sidecar.test: cycle ok: 3 archived"
    assert stamp[:2] == "20" and "T" in stamp
    assert "\x1b[" not in line  # no colours


def test_journald_gets_a_priority_prefix_and_no_timestamp(tmp_path, monkeypatch):
    fh = journal_file(tmp_path, monkeypatch)
    with fh:
        assert writes_to_journal(fh)
        setup_logging("INFO", "text", stream=fh)
        logging.getLogger("sidecar.test").info("started")
        logging.getLogger("sidecar.test").warning("lease lost")
        fh.flush()
        fh.seek(0)
        assert fh.read().splitlines() == [
            "<6>INFO sidecar.test: started",
            "<4>WARNING sidecar.test: lease lost",
        ]


def test_a_journal_stream_naming_another_file_is_not_the_journal(tmp_path, monkeypatch):
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    with (tmp_path / "other").open("w") as fh:
        assert not writes_to_journal(fh)
    assert not writes_to_journal(io.StringIO())


def test_a_traceback_stays_on_one_line_outside_a_terminal(tmp_path, monkeypatch):
    fh = journal_file(tmp_path, monkeypatch)
    with fh:
        setup_logging("INFO", "text", stream=fh)
        try:
            raise RuntimeError("ledger gone")
        except RuntimeError:
            logging.getLogger("sidecar.test").exception("cycle failed")
        fh.flush()
        fh.seek(0)
        [line] = fh.read().splitlines()
    assert line.startswith("<3>ERROR sidecar.test: cycle failed\\nTraceback")
    assert "RuntimeError: ledger gone" in line


def test_a_long_message_is_not_wrapped():
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("t").info("x" * 500)
    assert len(lines(out)) == 1


def test_extra_fields_are_appended_as_key_value_pairs():
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("t").info("archived", extra={"count": 3, "family": "vm-ha"})
    assert lines(out)[0].endswith("INFO t: archived count=3 family=vm-ha")


def test_json_gives_one_object_per_line_with_extra_fields():
    out = io.StringIO()
    setup_logging("DEBUG", "json", stream=out)
    logging.getLogger("sidecar.test").debug("archived", extra={"count": 3})
    logging.getLogger("sidecar.test").error("second\nline")
    first, second = (json.loads(line) for line in lines(out))
    assert first["level"] == "DEBUG"
    assert first["logger"] == "sidecar.test"
    assert first["message"] == "archived"
    assert first["count"] == 3
    assert first["ts"].endswith("+00:00")
    assert second["message"] == "second\nline"


def test_json_carries_the_exception_text():
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("t").exception("failed")
    [record] = [json.loads(line) for line in lines(out)]
    assert "ValueError: boom" in record["exc"]


def test_a_terminal_gets_the_rich_handler():
    from rich.logging import RichHandler

    handler = setup_logging("INFO", "text", stream=TTY())
    assert isinstance(handler, RichHandler)


def test_a_terminal_under_an_inherited_journal_stream_still_gets_rich(monkeypatch):
    from rich.logging import RichHandler

    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    assert isinstance(setup_logging("INFO", "text", stream=TTY()), RichHandler)


def test_json_is_used_even_on_a_terminal():
    out = TTY()
    setup_logging("INFO", "json", stream=out)
    logging.getLogger("t").info("hello")
    assert json.loads(lines(out)[0])["message"] == "hello"


def test_setting_up_twice_replaces_the_handler_instead_of_doubling_lines():
    first, second = io.StringIO(), io.StringIO()
    setup_logging("INFO", "text", stream=first)
    setup_logging("INFO", "text", stream=second)
    logging.getLogger("t").info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_the_level_filters_records():
    out = io.StringIO()
    setup_logging("warning", "text", stream=out)
    logging.getLogger("t").info("hidden")
    logging.getLogger("t").warning("shown")
    assert [line.split(" ", 1)[1] for line in lines(out)] == ["WARNING t: shown"]


def test_httpx_request_lines_are_silenced_at_info():
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("httpx").info('HTTP Request: GET https://ms/client/api "HTTP/1.1 200 OK"')
    assert out.getvalue() == ""


@pytest.mark.parametrize(("fmt", "level"), [("yaml", "INFO"), ("text", "LOUD")])
def test_an_unknown_format_or_level_is_rejected(fmt, level):
    with pytest.raises(ValueError):
        setup_logging(level, fmt, stream=io.StringIO())


def test_signature_and_api_key_query_values_are_scrubbed():
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("t").info(
        "GET %s failed", "https://ms/client/api?apiKey=AK123&command=listHosts&signature=a%2Bb%3D"
    )
    line = lines(out)[0]
    assert "AK123" not in line and "a%2Bb%3D" not in line
    assert "apiKey=***&command=listHosts&signature=***" in line


def test_a_registered_secret_is_scrubbed_from_messages_and_tracebacks():
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    register_secret("s3cr3t/Key+value")
    try:
        raise RuntimeError("bad secret s3cr3t/Key+value")
    except RuntimeError:
        logging.getLogger("t").exception("secret is %s (%s)", "s3cr3t/Key+value",
                                         "s3cr3t%2FKey%2Bvalue")
    text = out.getvalue()
    assert "s3cr3t" not in text
    record = json.loads(text)
    assert record["message"] == "secret is *** (***)"
    assert "RuntimeError: bad secret ***" in record["exc"]


def test_secrets_in_extra_fields_are_scrubbed():
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    register_secret("topsecretvalue")
    logging.getLogger("t").info("calling", extra={"url": "https://ms/?x=topsecretvalue"})
    assert "topsecretvalue" not in out.getvalue()


def test_records_of_any_logger_pass_the_redaction_filter():
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("some.library").warning("retrying ?signature=abc")
    assert "signature=***" in out.getvalue()
    assert "abc" not in out.getvalue()
