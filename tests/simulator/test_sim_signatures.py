"""The simulator's own verifier against the published and computed vectors (cloudstack.md §1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cs.client import cs_encode
from simkit import RawClient, future, wire

from cloudstack_simulator import Simulator, compute_signature, java_url_encode, unsigned_request
from cloudstack_simulator.verify import parse_param_date, parse_tz_date, request_params
from sidecar.model.constants import UNAUTHORIZED_TEXT

DOCS_KEY = "plgWJfZK4gyS3mOMTVmjUVg-X-jlWlnfaUJ9GAbBbf9EdM-kAYMmAiLqzzq1ElZLYq_u38zCm0bewzGUdP66mg"
DOCS_SECRET = (
    "VDaACYb0LV9eNjTetIOElcVQkvJck_J_QljX_FcHRj87ZKiy0z0ty0ZsYBkoXkY9b7eq1EhwJaw7FF3akA3KBQ"
)
V3 = {"signatureVersion": "3", "expires": "2024-01-01T00:00:00+0000"}


def cs_params(command: str, **extra: str) -> dict[str, str]:
    return {"apiKey": "foo", "command": command, "response": "json", **extra}


def test_the_docs_vector_signs_to_the_published_signature() -> None:
    params = {"apikey": DOCS_KEY, "command": "listUsers", "response": "json"}
    assert unsigned_request(params) == (
        "apikey=plgwjfzk4gys3momtvmjuvg-x-jlwlnfauj9gabbbf9edm-kaymmailqzzq1elzlyq_u38zcm0bewzgudp66mg"
        "&command=listusers&response=json"
    )
    assert compute_signature(params, DOCS_SECRET) == "TTpdDq/7j/J58XCRHomKoQXEQds="


@pytest.mark.parametrize(
    ("command", "extra", "signature"),
    [
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
        ("listAlerts", V3, "+1xbW/vsjgfXO1JKB3nu6E/6ePU="),
        (
            "listAlerts",
            {**V3, "keyword": "HA starting VM*", "page": "1", "pagesize": "500"},
            "OeB9DD1pUkU9y7fcAerxMdxj1Jc=",
        ),
        (
            "archiveAlerts",
            {
                **V3,
                "ids": "0b0a7a3e-5d2b-4f3c-9a51-6f1c2d3e4f50,7c9d1e2f-3a4b-4c5d-8e6f-0a1b2c3d4e5f",
            },
            "SCj8PUjyERdUiBhHBZbOkHK4vT4=",
        ),
        ("listAlerts", {"keyword": "a~b"}, "g2+7lLfT6s+WMEMV+I9Mu0WtUOo="),
    ],
)
def test_the_verifier_reproduces_the_cs_and_computed_vectors(
    command: str, extra: dict[str, str], signature: str
) -> None:
    assert compute_signature(cs_params(command, **extra), "bar") == signature


def test_names_are_sorted_case_sensitively_before_lowercasing() -> None:
    params = cs_params(
        "listVirtualMachines", zoneId="2", templateId="3", temPlateidd="4", pageSize="10", page="1"
    )
    assert unsigned_request(params) == (
        "apikey=foo&command=listvirtualmachines&page=1&pagesize=10&response=json"
        "&templateidd=4&templateid=3&zoneid=2"
    )


def test_the_cs_library_known_answer_matches() -> None:
    assert compute_signature({"command": "listZones", "apiKey": "foo"}, "bar") == (
        "vRCL4rttwUS7s3a3m53Py1iHaAw="
    )


def test_a_tilde_signed_with_plain_quote_gives_the_wrong_signature() -> None:
    params = cs_params("listAlerts", keyword="a~b")
    assert compute_signature(params, "bar") != "juA0exQB2OvvDITdeqVbFDiQkKM="
    assert unsigned_request(params).endswith("keyword=a%7eb&response=json")


def test_java_url_encoding_keeps_only_the_java_safe_characters() -> None:
    assert java_url_encode("a b*c.d-e_f~g+h/é") == "a+b*c.d-e_f%7Eg%2Bh%2F%C3%A9"


def test_the_signature_parameter_is_left_out_whatever_its_case() -> None:
    params = cs_params("listZones")
    assert unsigned_request({**params, "Signature": "x"}) == unsigned_request(params)


def test_a_query_string_keeps_the_last_value_of_a_repeated_name() -> None:
    # ApiServlet.utf8Fixup re-puts each query pair in order, so the last one wins.
    assert request_params("a=1&a=2&b=x+y", None) == {"a": "2", "b": "x y"}


def test_a_form_body_keeps_the_first_value_and_the_query_overrides_it() -> None:
    assert request_params("", "a=1&a=2&c=3") == {"a": "1", "c": "3"}
    assert request_params("a=9", "a=1&c=3") == {"a": "9", "c": "3"}


def test_pieces_without_an_equals_sign_are_ignored() -> None:
    assert request_params("flag&a=1&=", None) == {"a": "1", "": ""}


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01T00:00:00+0000",
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:00:00+00:00",
        "2024-01-01T05:30:00+05:30",
        "2024-01-01T00:00Z",
        "2024-01-01T00:00:00.000000Z",
        "2024-01-01T00:00:00.000000+0000",
        "2024-01-01T00:00:00.123+00:00",
        "2024-01-01T00:00:00Z+0000",
    ],
)
def test_expires_formats_of_date_util_are_accepted(text: str) -> None:
    parsed = parse_tz_date(text)
    assert parsed is not None
    assert parsed.astimezone(UTC).replace(microsecond=0) == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01 00:00:00",
        "2024-01-01T00:00:00",
        "2024-01-01",
        "tomorrow",
        "2024-13-01T00:00:00Z",
    ],
)
def test_expires_without_an_offset_or_invalid_is_rejected(text: str) -> None:
    assert parse_tz_date(text) is None


def test_param_dates_follow_the_three_rules_in_the_server_zone() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    zoned = parse_param_date("2025-01-01T10:00:00+0000", end=False, tz=ist, lenient_forms=True)
    assert zoned == datetime(2025, 1, 1, 10, tzinfo=UTC)
    local = parse_param_date("2025-01-01 10:00:00", end=False, tz=ist, lenient_forms=True)
    assert local == datetime(2025, 1, 1, 10, tzinfo=ist)
    day_end = parse_param_date("2025-01-01T10:00:00", end=True, tz=ist, lenient_forms=True)
    assert day_end == datetime(2025, 1, 1, 23, 59, 59, tzinfo=ist)
    day_start = parse_param_date("2025-01-01junk", end=False, tz=ist, lenient_forms=True)
    assert day_start == datetime(2025, 1, 1, tzinfo=ist)
    assert parse_param_date("01/02/2025", end=False, tz=ist, lenient_forms=True) is None


# --- over HTTP ---------------------------------------------------------------------------------


def test_a_request_signed_with_the_java_encoding_of_a_tilde_is_accepted(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    response = client.get("listAlerts", keyword="a~b")
    assert response.status_code == 200


def test_a_tilde_signed_like_the_cs_library_is_rejected(
    served: tuple[Simulator, RawClient],
) -> None:
    sim, client = served
    params = {"command": "listAlerts", "apiKey": sim.key, "response": "json", "keyword": "a~b"}
    import base64
    import hashlib
    import hmac

    text = "&".join(f"{k}={cs_encode(v)}" for k, v in sorted(params.items())).lower()
    params["signature"] = base64.b64encode(
        hmac.new(sim.secret.encode(), text.encode(), hashlib.sha1).digest()
    ).decode()
    response = client.send_params(params)
    assert response.status_code == 401
    assert response.json() == {
        "listalertsresponse": {"uuidList": [], "errorcode": 401, "errortext": UNAUTHORIZED_TEXT}
    }


def test_signature_version_3_with_a_future_expiry_is_accepted(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    assert client.get("listZones", v3=future()).status_code == 200


def test_signature_version_3_expired_by_the_virtual_clock_gets_401(
    served: tuple[Simulator, RawClient],
) -> None:
    sim, client = served
    expires = sim.now() + timedelta(minutes=5)
    assert client.get("listZones", v3=expires).status_code == 200
    sim.clock.advance(600)
    response = client.get("listZones", v3=expires)
    assert response.status_code == 401
    assert response.json()["listzonesresponse"]["errortext"] == UNAUTHORIZED_TEXT


def test_signature_version_3_without_expires_gets_401(served: tuple[Simulator, RawClient]) -> None:
    _, client = served
    assert client.get("listZones", signatureVersion="3").status_code == 401


def test_expires_is_ignored_without_signature_version_3(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    assert client.get("listZones", expires="2000-01-01T00:00:00+0000").status_code == 200


def test_a_wrong_secret_gets_401(served: tuple[Simulator, RawClient]) -> None:
    _, client = served
    assert client.get("listZones", secret="not-the-secret").status_code == 401


def test_a_post_form_body_is_verified_like_a_query(served: tuple[Simulator, RawClient]) -> None:
    _, client = served
    assert client.post("listZones").status_code == 200
    assert client.post("listZones", secret="nope").status_code == 401


def test_a_repeated_name_in_the_query_is_verified_with_its_last_value(
    served: tuple[Simulator, RawClient],
) -> None:
    _, client = served
    signed = client.signed("listAlerts", keyword="last")
    pairs = [("keyword", "first"), *signed.items()]
    response = client.http.get(f"{client.endpoint}?{wire(pairs)}")
    assert response.status_code == 200
