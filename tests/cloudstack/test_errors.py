"""The error hierarchy: mapping of codes, one-line secret-free messages, parsed details."""

from __future__ import annotations

import json
import pickle

import pytest
from paths import FIXTURES as FIXTURES_ROOT

from sidecar.cloudstack.errors import (
    AccountPermissionError,
    ApiError,
    AuthenticationError,
    CloudStackError,
    CommandNotAllowedError,
    NotJsonError,
    ParameterError,
    ServerError,
    ThrottledError,
    TransportError,
    api_error,
    describe_skew,
    endpoint_host,
    parse_retry_after,
)
from sidecar.cloudstack.skew import SkewBracket
from sidecar.support.redact import register_secret

ENDPOINT = "https://mgmt.example.test:8443/client/api"
FIXTURES = FIXTURES_ROOT / "constructed"


def inner(name: str) -> dict:
    data = json.loads((FIXTURES / name).read_text())
    data.pop("_constructed")
    return next(iter(data.values()))


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, inner("error-401.json"), AuthenticationError),
        (401, inner("error-401-command-not-allowed.json"), CommandNotAllowedError),
        (432, {"errorcode": 432, "errortext": "The API is disabled"}, CommandNotAllowedError),
        (430, {"errorcode": 430, "errortext": "malformed"}, ParameterError),
        (431, inner("archiveAlerts-431.json"), ParameterError),
        (429, inner("error-429.json"), ThrottledError),
        (530, inner("archiveAlerts-530.json"), ServerError),
        (503, {"errorcode": 503, "errortext": "shutting down"}, ServerError),
        (535, {"errorcode": 535, "errortext": "unavailable"}, ServerError),
        (531, {"errorcode": 531, "errortext": "not allowed"}, AccountPermissionError),
        (400, {"errorcode": 400, "errortext": "needs POST"}, ApiError),
        (511, {"errorcode": 511, "errortext": "2FA"}, ApiError),
    ],
)
def test_each_code_maps_to_its_class(status, body, cls):
    exc = api_error(status, body, command="archiveAlerts", endpoint=ENDPOINT)
    assert type(exc) is cls
    assert isinstance(exc, ApiError) and isinstance(exc, CloudStackError)
    assert exc.errorcode == status


def test_the_status_is_used_when_the_body_has_no_errorcode():
    exc = api_error(530, {}, command="listHosts")
    assert isinstance(exc, ServerError) and exc.errorcode == 530
    assert "no error text" in str(exc)


def test_messages_name_command_and_host_on_one_line():
    exc = api_error(
        530,
        {"errorcode": 530, "cserrorcode": 9999, "errortext": "line one\nline two"},
        command="archiveAlerts",
        endpoint=ENDPOINT,
    )
    text = str(exc)
    assert text.startswith("archiveAlerts at mgmt.example.test:8443: ")
    assert "cserrorcode 9999" in text and "line one line two" in text
    assert "\n" not in text


def test_a_431_keeps_its_errortext_so_callers_find_the_named_id():
    exc = api_error(431, inner("archiveAlerts-431.json"), command="archiveAlerts")
    assert "7c9d1e2f-3a4b-4c5d-8e6f-0a1b2c3d4e5f" in exc.errortext
    assert exc.cserrorcode == 4350


def test_throttling_parses_the_retry_time():
    exc = api_error(429, inner("error-429.json"), command="listAlerts")
    assert isinstance(exc, ThrottledError)
    assert exc.retry_after == 1.5
    assert parse_retry_after("please retry after [250] ms.") == 0.25
    assert parse_retry_after("please retry after 40 ms") == 0.04
    assert parse_retry_after("slow down") is None


def test_authentication_error_explains_causes_and_the_date_headers_skew():
    exc = api_error(401, inner("error-401.json"), command="listCapabilities", skew=734.2)
    text = str(exc)
    assert isinstance(exc, AuthenticationError)
    assert "credentials" in text and "secret" in text and "clock skew" in text
    assert "(server clock is 734 s ahead of this host)" in text
    behind = api_error(401, inner("error-401.json"), command="listCapabilities", skew=-90)
    assert "server clock is 90 s behind this host" in str(behind)
    unknown = api_error(401, inner("error-401.json"), command="listCapabilities")
    assert "clock skew" in str(unknown) and "server clock" not in str(unknown)


def explained(bracket: SkewBracket, skew: float | None = None) -> str:
    exc = api_error(401, inner("error-401.json"), command="listAlerts", skew=skew)
    assert isinstance(exc, AuthenticationError)
    return str(exc.explained(bracket, 600.0))


SEARCHED = (-2080.0, 2380.0)


def test_a_401_with_a_working_key_and_a_clock_past_the_lifetime_blames_the_clock():
    text = explained(SkewBracket(904.0, 906.0, 10, SEARCHED, lifetime_refused=True))
    assert "your key works; the server clock is 905 s ahead of this host: fix NTP" in text
    assert "wrong API key" not in text


def test_a_401_from_a_clock_behind_by_more_than_4_21s_limit_says_so():
    text = explained(SkewBracket(-1001.0, -999.0, 11, SEARCHED, lifetime_refused=True))
    assert "your key works; the server clock is 1000 s behind this host" in text
    assert "lands more than 15 minutes after the server's" in text
    assert "enforce.post.requests.and.timestamps): fix NTP" in text


def test_a_request_lifetime_over_4_21s_limit_is_named_as_the_fix():
    exc = api_error(401, inner("error-401.json"), command="listAlerts")
    assert isinstance(exc, AuthenticationError)
    bracket = SkewBracket(-1.0, 1.0, 12, SEARCHED, lifetime_refused=True)
    text = str(exc.explained(bracket, 1200.0))
    assert "your key works; the server clock agrees with this host" in text
    assert "lower expiration in cloudstack.ini to 900 s or less" in text


def test_a_401_that_went_through_when_asked_again_blames_neither_key_nor_clock():
    # Far behind, yet the call signed as the refused one went through at once: not the clock.
    far = explained(SkewBracket(None, -1189.0, 13, SEARCHED, lifetime_refused=False))
    assert "your key works and the server clock is more than 1189 s behind this host" in far
    assert "another cause" in far and "fix NTP" not in far
    text = explained(SkewBracket(-1.0, 1.0, 3, SEARCHED, lifetime_refused=False))
    assert "your key works and the server clock agrees with this host" in text
    assert "another cause" in text and "fix NTP" not in text


def test_a_401_no_probe_got_through_blames_the_key_or_a_clock_beyond_the_searched_range():
    text = explained(SkewBracket(2380.0, None, 5, SEARCHED), skew=7200.0)
    assert "CloudStack rejected the credentials" in text and "wrong API key or secret" in text
    assert "clock skew beyond what was probed" in text
    assert "from 2080 s behind to 2380 s ahead of this host were refused too" in text
    assert "its Date header says the server clock is 7200 s ahead of this host" in text


def test_describe_skew_rounds_to_seconds():
    assert describe_skew(None) == ""
    assert describe_skew(0.3) == "server clock agrees with this host"
    assert describe_skew(12.6) == "server clock is 13 s ahead of this host"
    at_least = describe_skew(-2080, at_least=True)
    assert at_least == "server clock is more than 2080 s behind this host"


def test_command_not_allowed_points_at_the_role():
    exc = api_error(401, inner("error-401-command-not-allowed.json"), command="archiveAlerts")
    assert "role" in str(exc)


def test_transport_error_names_the_endpoint_without_its_query():
    exc = TransportError(
        "ConnectError: refused", command="listHosts", endpoint=ENDPOINT + "?apiKey=k&signature=s"
    )
    text = str(exc)
    assert "cannot reach https://mgmt.example.test:8443/client/api (ConnectError: refused)" in text
    assert "signature" not in text and "apiKey" not in text


def test_not_json_error_names_endpoint_and_content_type():
    exc = NotJsonError(
        status=200, content_type="text/html;charset=UTF-8", command="listHosts", endpoint=ENDPOINT
    )
    assert ENDPOINT in str(exc) and "text/html" in str(exc) and "HTTP 200" in str(exc)
    assert exc.status == 200


def test_messages_never_carry_registered_secrets():
    register_secret("errors-test-secret-value")
    exc = api_error(
        530,
        {"errorcode": 530, "errortext": "failed for errors-test-secret-value signature=abc"},
        command="listHosts",
    )
    assert "errors-test-secret-value" not in str(exc)
    assert "errors-test-secret-value" not in exc.errortext
    assert "signature=abc" not in str(exc)


def test_the_host_hides_user_info_and_keeps_the_port():
    assert endpoint_host("https://user:pw@mgmt:8080/client/api") == "mgmt:8080"
    assert endpoint_host("http://[::1]:8080/client/api") == "[::1]:8080"
    assert endpoint_host("http://mgmt/client/api") == "mgmt"


def test_errors_survive_pickling():
    original = api_error(429, inner("error-429.json"), command="listAlerts", endpoint=ENDPOINT)
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is ThrottledError
    assert str(copy) == str(original) and copy.retry_after == 1.5


