"""API key, secret and signature never reach logs, exceptions or reprs."""

from __future__ import annotations

import asyncio
import io
import logging
from urllib.parse import parse_qsl, quote

import httpx
import pytest
import respx

from sidecar.cloudstack.client import CloudStackClient
from sidecar.cloudstack.config import CloudStackConfig, load_cloudstack_config
from sidecar.cloudstack.errors import CloudStackError
from sidecar.cloudstack.limits import ClientLimits
from sidecar.cloudstack.signing import java_urlencode
from sidecar.support.redact import (
    MASK,
    RedactingFilter,
    install_log_redaction,
    redact,
    register_secret,
)

ENDPOINT = "http://127.0.0.1:8080/client/api"
KEY = "REDACT-key-Zq9x8c7v6b5n4m3l2k1j"
SECRET = "REDACT-secret-Pp0o9i8u7y6t5r4e3w2q+/="


async def _no_sleep(seconds: float) -> None:
    return None


def test_registered_values_are_masked_anywhere_in_a_text():
    register_secret("redaction-unit-secret")
    assert redact("x redaction-unit-secret y") == f"x {MASK} y"
    assert redact(quote("redaction-unit-secret+/", safe="")) != ""  # encoded forms too
    register_secret("a+b/c=redaction")
    assert "a%2Bb%2Fc%3Dredaction" not in redact("q=a%2Bb%2Fc%3Dredaction")


def test_credential_pairs_are_masked_even_for_unknown_values():
    text = redact(
        "GET /client/api?command=listHosts&apiKey=abc123&signature=Zm9v%2Bbar%3D&page=1 "
        "{'secret': 'hunter22', \"signature\": \"xyz\"} secretkey = s3cr3t api_key=kk"
    )
    for value in ("abc123", "Zm9v%2Bbar%3D", "hunter22", "xyz", "s3cr3t", "=kk"):
        assert value not in text
    assert "command=listHosts" in text and "page=1" in text


def test_short_values_are_not_registered_to_avoid_masking_everything():
    register_secret("ab", "", None)
    assert redact("ab about") == "ab about"


def test_the_filter_masks_messages_args_and_tracebacks():
    register_secret("filter-secret-value")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.redaction.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("calling with %s and %s", "filter-secret-value", "apiKey=visible")
        try:
            raise RuntimeError("boom filter-secret-value")
        except RuntimeError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert "filter-secret-value" not in output
    assert "visible" not in output
    assert "RuntimeError" in output and "failed" in output


def test_install_adds_the_filter_once_to_the_httpx_loggers():
    install_log_redaction()
    install_log_redaction()
    filters = [f for f in logging.getLogger("httpx").filters if isinstance(f, RedactingFilter)]
    assert len(filters) == 1


def test_nothing_secret_appears_in_logs_errors_or_reprs(caplog, monkeypatch):
    for name in ("httpx", "httpcore"):  # prove that the client itself installs the filter
        monkeypatch.setattr(logging.getLogger(name), "filters", [])
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("CLOUDSTACK_KEY", KEY)
    monkeypatch.setenv("CLOUDSTACK_SECRET", SECRET)
    config = load_cloudstack_config()
    texts: list[str] = [repr(config), str(config)]
    signatures: list[str] = []

    def serve(request: httpx.Request) -> httpx.Response:
        raw = request.url.query.decode() if request.method == "GET" else request.content.decode()
        signatures.append(dict(parse_qsl(raw))["signature"])
        command = dict(parse_qsl(raw))["command"]
        if command == "listHosts":
            raise httpx.ConnectError(f"refused {request.url}")
        if command == "archiveAlerts":
            return httpx.Response(
                530,
                json={"archivealertsresponse": {"errorcode": 530, "errortext": f"bad {KEY}"}},
            )
        if command == "listZones":
            return httpx.Response(
                200, text=f"<html>{request.url}</html>", headers={"Content-Type": "text/html"}
            )
        return httpx.Response(
            401, json={"errorresponse": {"errorcode": 401, "errortext": "unable to verify"}}
        )

    async def go(client: CloudStackClient) -> None:
        async with client as cs:
            texts.append(repr(cs))
            for call in (
                cs.request("listHosts"),
                cs.archive_alerts(["a1"]),
                cs.request("listZones"),
                cs.capabilities(),
            ):
                try:
                    await call
                except CloudStackError as exc:
                    texts.extend([str(exc), repr(exc), exc.detail])
                    logging.getLogger("sidecar.test").exception("call failed: %s", exc)

    # Other tests' setup_logging() quiets httpx to WARNING; this test needs its request lines.
    with respx.mock() as mock, caplog.at_level(logging.DEBUG), caplog.at_level(
        logging.DEBUG, logger="httpx"
    ):
        mock.route(url__startswith=ENDPOINT).mock(side_effect=serve)
        client = CloudStackClient(config, limits=ClientLimits(max_retries=1),
                                  sleep=_no_sleep)
        asyncio.run(go(client))

    assert signatures and len(texts) > 6
    everything = "\n".join([*texts, caplog.text])
    assert "HTTP Request" in caplog.text  # httpx did log the request lines
    assert "signature=***" in caplog.text
    wire = [java_urlencode(s) for s in signatures]
    for secret in (KEY, SECRET, quote(SECRET, safe=""), *signatures, *wire):
        assert secret not in everything


@pytest.mark.parametrize("field", ["key", "secret"])
def test_a_directly_built_config_hides_its_credentials(field):
    config = CloudStackConfig(endpoint=ENDPOINT, key="direct-key-000", secret="direct-secret-000")
    assert getattr(config, field) not in repr(config)
