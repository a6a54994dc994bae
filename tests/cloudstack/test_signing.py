"""Request signing: every published and computed vector, cs parity, and a Java-side verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import httpx
import pytest
from cs.client import CloudStack, cs_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.cloudstack.signing import (
    AUTH_PARAMS,
    EXPIRES_AT,
    CloudStackSigner,
    flatten_params,
    java_urlencode,
    sign,
    signed_params,
    string_to_sign,
)

ENDPOINT = "http://127.0.0.1:8080/client/api"
V3 = {"signatureVersion": "3", "expires": "2024-01-01T00:00:00+0000"}
#: A signer clock 10 minutes before the vectors' ``expires``.
BEFORE_EXPIRY = datetime(2023, 12, 31, 23, 50, tzinfo=UTC)


# -- an independent server-side verifier, written from ApiServer.verifyRequest -------------


def java_url_encoder(value: str) -> str:
    """``java.net.URLEncoder.encode(value, "UTF-8")``: keeps A-Za-z0-9 . - * _, space -> +."""
    out = []
    for char in value:
        if char.isascii() and (char.isalnum() or char in ".-*_"):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def server_accepts(decoded: list[tuple[str, str]], secret: str) -> bool:
    """What CloudStack does with the decoded parameters of a request."""
    params: dict[str, str] = {}
    for name, value in decoded:
        params.setdefault(name, value)  # the servlet keeps the first value of a name
    signature = params.pop("signature", None)
    if signature is None:
        return False
    unsigned = "&".join(
        f"{name}={java_url_encoder(params[name]).replace('+', '%20')}" for name in sorted(params)
    ).lower()
    expected = base64.b64encode(
        hmac.new(secret.encode(), unsigned.encode(), hashlib.sha1).digest()
    ).decode()
    return hmac.compare_digest(expected, signature)


def wire_params(request: httpx.Request) -> list[tuple[str, str]]:
    """Decode a request's parameters as the servlet does (query for GET, form body for POST)."""
    raw = request.url.query.decode() if request.method == "GET" else request.content.decode()
    return parse_qsl(raw, keep_blank_values=True)


def cs_signature(params: dict[str, str], secret: str) -> str:
    """The cs library's own signature of ``params``."""
    data = dict(params)
    CloudStack(endpoint=ENDPOINT, key="unused", secret=secret)._sign(data)
    return data["signature"]


# -- vectors --------------------------------------------------------------------------------


def test_official_docs_vector_signs_list_users():
    apikey = (
        "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg"
    )
    secret = (
        "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ"
    )
    params = {"command": "listUsers", "response": "json", "apikey": apikey}
    assert string_to_sign(params) == (
        "apikey=plgwjfzk4gys3momtvmjuvg-x-jlwlnfauj9gabbbf9edm-kaymmailqzzq1elzlyq_u38zcm0bewzgudp66mg"
        "&command=listusers&response=json"
    )
    assert sign(params, secret) == "TTpdDq/7j/J58XCRHomKoQXEQds="


def test_cs_known_answer_vector_signs_list_zones():
    assert sign({"command": "listZones", "apiKey": "foo"}, "bar") == "vRCL4rttwUS7s3a3m53Py1iHaAw="


CS_VECTORS = [
    ("listVirtualMachines", {"listall": "true"}, "B0d6hBsZTcFVCiioSxzwKA9Pke8="),
    (
        "listVirtualMachines",
        {"zoneId": "2", "templateId": "3", "temPlateidd": "4", "pageSize": "10", "page": "1"},
        "mMS7XALuGkCXk7kj5SywySku0Z0=",
    ),
    (
        "listVirtualMachines",
        {"listall": "1", "unicode_param": "éèààû"},
        "gABU/KFJKD3FLAgKDuxQoryu4sA=",
    ),
    (
        "listVirtualMachines",
        {"foo": "foo,bar", "bar[0].baz": "blah", "bar[0].foo": "1000", "bytes_param": "blah"},
        "ImJ/5F0P2RDL7yn4LdLnGcEx5WE=",
    ),
    (
        "scaleVirtualMachine",
        {"id": "a", "details[0].cpunumber": "1000", "details[0].memory": "640k"},
        "ZNl66z3gFhnsx2Eo3vvCIM0kAgI=",
    ),
    ("createNetwork", {"name": "", "display_text": ""}, "CistTEiPt/4Rv1v4qSyILvPbhmg="),
    ("listVirtualMachines", {"blah": "brah"}, "58VvLSaVUqHnG9DhXNOAiDFwBoA="),
]


@pytest.mark.parametrize(("command", "params", "expected"), CS_VECTORS)
def test_cs_library_vectors_match(command, params, expected):
    signed = signed_params({"command": command, **params}, key="foo", secret="bar", expires=None)
    assert signed["signature"] == expected


def test_names_are_sorted_case_sensitively_before_lowercasing():
    params = {
        "command": "listVirtualMachines",
        "apiKey": "foo",
        "response": "json",
        "zoneId": "2",
        "templateId": "3",
        "temPlateidd": "4",
        "pageSize": "10",
        "page": "1",
    }
    assert string_to_sign(params) == (
        "apikey=foo&command=listvirtualmachines&page=1&pagesize=10&response=json"
        "&templateidd=4&templateid=3&zoneid=2"
    )


def test_unicode_and_comma_values_are_percent_encoded_in_the_signed_string():
    unicode = string_to_sign({"unicode_param": "éèààû"})
    assert unicode.endswith("unicode_param=%c3%a9%c3%a8%c3%a0%c3%a0%c3%bb")
    assert string_to_sign({"foo": "foo,bar"}) == "foo=foo%2cbar"


V3_VECTORS = [
    ("listAlerts", {}, "+1xbW/vsjgfXO1JKB3nu6E/6ePU="),
    (
        "listAlerts",
        {"keyword": "HA starting VM*", "page": "1", "pagesize": "500"},
        "OeB9DD1pUkU9y7fcAerxMdxj1Jc=",
    ),
    (
        "archiveAlerts",
        {"ids": "0b0a7a3e-5d2b-4f3c-9a51-6f1c2d3e4f50,7c9d1e2f-3a4b-4c5d-8e6f-0a1b2c3d4e5f"},
        "SCj8PUjyERdUiBhHBZbOkHK4vT4=",
    ),
]


@pytest.mark.parametrize(("command", "params", "expected"), V3_VECTORS)
def test_signature_version_3_vectors_match(command, params, expected):
    signer = CloudStackSigner("foo", "bar", now=lambda: BEFORE_EXPIRY)
    assert signer.sign_params({"command": command, **params})["signature"] == expected


def test_v3_string_to_sign_encodes_the_expires_colons_and_plus():
    signed = signed_params(
        {"command": "listAlerts"},
        key="foo",
        secret="bar",
        expires=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert string_to_sign(signed) == (
        "apikey=foo&command=listalerts&expires=2024-01-01t00%3a00%3a00%2b0000"
        "&response=json&signatureversion=3"
    )


def test_a_signature_starting_with_plus_travels_percent_encoded():
    signer = CloudStackSigner("foo", "bar", now=lambda: BEFORE_EXPIRY)
    request = signer.sign_request(httpx.Request("GET", ENDPOINT, params={"command": "listAlerts"}))
    query = request.url.query.decode()
    assert "signature=%2B1xbW%2Fvs" in query
    assert query.endswith("%3D")
    assert "expires=2024-01-01T00%3A00%3A00%2B0000" in query
    assert dict(wire_params(request))["signature"] == "+1xbW/vsjgfXO1JKB3nu6E/6ePU="


def test_tilde_is_signed_as_java_encodes_it():
    assert java_urlencode("a~b") == "a%7Eb"
    params = {"command": "listAlerts", "apiKey": "foo", "response": "json", "keyword": "a~b"}
    assert sign(params, "bar") == "g2+7lLfT6s+WMEMV+I9Mu0WtUOo="


def test_server_accepts_our_tilde_signature_and_rejects_the_cs_one():
    params = {"command": "listAlerts", "apiKey": "foo", "response": "json", "keyword": "a~b"}
    ours = sign(params, "bar")
    theirs = cs_signature(params, "bar")
    assert theirs == "juA0exQB2OvvDITdeqVbFDiQkKM="
    assert server_accepts([*params.items(), ("signature", ours)], "bar")
    assert not server_accepts([*params.items(), ("signature", theirs)], "bar")


def test_space_star_plus_and_tilde_follow_the_java_rules():
    assert java_urlencode("a b*c+d~e") == "a%20b*c%2Bd%7Ee"
    assert java_urlencode("x/y=z&") == "x%2Fy%3Dz%26"


def test_the_signer_adds_api_key_json_and_version_3_and_replaces_caller_values():
    signer = CloudStackSigner("foo", "bar", expires_in=300, now=lambda: BEFORE_EXPIRY)
    signed = signer.sign_params(
        {"command": "listHosts", "response": "xml", "apiKey": "evil", "signature": "x"}
    )
    assert signed["apiKey"] == "foo"
    assert signed["response"] == "json"
    assert signed["signatureVersion"] == "3"
    assert signed["expires"] == "2023-12-31T23:55:00+0000"
    assert signed["signature"] != "x"


def test_expires_is_utc_whatever_the_clock_zone():
    from datetime import timedelta, timezone

    local = datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    signer = CloudStackSigner("foo", "bar", expires_in=600, now=lambda: local)
    assert signer.sign_params({"command": "listHosts"})["expires"] == "2024-01-01T00:10:00+0000"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_requests_chosen_expires_is_signed_instead_of_the_lifetime(method):
    # The clock-skew probe chooses each call's expires (skew.py).
    signer = CloudStackSigner("foo", "bar", expires_in=600, now=lambda: BEFORE_EXPIRY)
    chosen = datetime(2023, 12, 31, 23, 41, 7, tzinfo=UTC)
    request = httpx.Request(method, ENDPOINT, params={"command": "listCapabilities"},
                            extensions={EXPIRES_AT: chosen})
    signed = signer.sign_request(request)
    params = dict(wire_params(signed))
    assert params["expires"] == "2023-12-31T23:41:07+0000"
    assert server_accepts(wire_params(signed), "bar")
    plain = signer.sign_request(httpx.Request(method, ENDPOINT, params=request.url.params))
    assert dict(wire_params(plain))["expires"] == "2024-01-01T00:00:00+0000"


def test_a_post_form_body_is_signed_like_a_query():
    signer = CloudStackSigner("foo", "bar", now=lambda: BEFORE_EXPIRY)
    request = signer.sign_request(
        httpx.Request(
            "POST",
            ENDPOINT,
            content=b"command=archiveAlerts&ids=0b0a7a3e-5d2b-4f3c-9a51-6f1c2d3e4f50%2C7c9d1e2f-3a4b-4c5d-8e6f-0a1b2c3d4e5f",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    )
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert int(request.headers["Content-Length"]) == len(request.content)
    assert request.url.query == b""
    decoded = dict(wire_params(request))
    assert decoded["signature"] == "SCj8PUjyERdUiBhHBZbOkHK4vT4="
    assert server_accepts(wire_params(request), "bar")


def test_repeated_names_sign_only_the_first_value_as_the_server_reads_it():
    signer = CloudStackSigner("foo", "bar", now=lambda: BEFORE_EXPIRY)
    request = signer.sign_request(
        httpx.Request("GET", ENDPOINT, params=[("command", "listHosts"), ("id", "a"), ("id", "b")])
    )
    decoded = wire_params(request)
    assert [v for k, v in decoded if k == "id"] == ["a"]
    assert server_accepts(decoded, "bar")


def test_flatten_params_follows_cs_transform():
    assert flatten_params(
        {
            "a": 1,
            "b": True,
            "c": ["x", "y"],
            "d": {"key": "k", "value": "v"},
            "e": None,
            "f": [],
            "g": {"z", "y"},
            "h": [{"cpunumber": 1}, {"memory": "640k"}],
        }
    ) == {
        "a": "1",
        "b": "true",
        "c": "x,y",
        "d[0].key": "k",
        "d[0].value": "v",
        "g": "y,z",
        "h[0].cpunumber": "1",
        "h[1].memory": "640k",
    }


# -- properties -----------------------------------------------------------------------------

_NAME = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_[]."),
    min_size=1,
    max_size=12,
).filter(lambda n: n.lower() not in {*(a.lower() for a in AUTH_PARAMS), "command"})
_VALUE = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]),
    max_size=20,
)
_SPECIAL = st.sampled_from(["", " ", "+", "*", "a b+c*d", "é", "100%", "x=y&z", "/?#"])


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(_NAME, st.one_of(_VALUE, _SPECIAL), max_size=8),
    secret=st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
)
def test_our_signature_equals_the_cs_library_signature_without_tilde(params, secret):
    params = {k: v.replace("~", "-") for k, v in params.items()}
    params.update({"command": "listAlerts", "apiKey": "foo", "response": "json"})
    # Both encode with quote(safe="*") apart from "~": only the tilde rule differs.
    assert all(cs_encode(v) == java_urlencode(v) for v in params.values())
    assert sign(params, secret) == cs_signature(params, secret)


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(_NAME, st.one_of(_VALUE, _SPECIAL, st.just("a~b")), max_size=8),
    method=st.sampled_from(["GET", "POST"]),
)
def test_the_server_side_verifier_accepts_every_signed_request_tilde_included(params, method):
    signer = CloudStackSigner("foo", "bar", now=lambda: BEFORE_EXPIRY)
    params = {"command": "listAlerts", **params}
    if method == "GET":
        request = httpx.Request("GET", ENDPOINT, params=params)
    else:
        request = httpx.Request("POST", ENDPOINT, data=params)
    signed = signer.sign_request(request)
    decoded = wire_params(signed)
    assert server_accepts(decoded, "bar")
    assert dict(decoded)["command"] == "listAlerts"
    for name, value in params.items():
        assert dict(decoded)[name] == value


@settings(max_examples=100, deadline=None)
@given(value=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30))
def test_java_urlencode_matches_an_independent_java_urlencoder(value):
    assert java_urlencode(value) == java_url_encoder(value).replace("+", "%20")
