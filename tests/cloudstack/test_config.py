"""CloudStack credentials with cs conventions: precedence, regions, and cs's traps guarded."""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from sidecar.cloudstack.config import CloudStackConfig, load_cloudstack_config
from sidecar.support.errors import ConfigError

HOME_INI = """\
[cloudstack]
endpoint = https://home.example.test:8080/client/api
key = home-key-0001
secret = home-secret-0001

[lab]
endpoint = http://127.0.0.1:8080/client/api
key = lab-key-0001
secret = lab-secret-0001
timeout = 30
header_X-Trace = on
"""


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def home() -> Path:
    return Path.home()


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_nothing_configured_is_a_config_error_with_the_fix():
    with pytest.raises(ConfigError) as info:  # cs itself would raise SystemExit
        load_cloudstack_config()
    text = one_line(info.value)
    assert "~/.cloudstack.ini" in text and "CLOUDSTACK_ENDPOINT" in text
    assert info.value.exit_code == 2


def test_the_home_ini_default_section_is_read():
    path = write(home() / ".cloudstack.ini", HOME_INI)
    config = load_cloudstack_config()
    assert config.endpoint == "https://home.example.test:8080/client/api"
    assert (config.key, config.secret) == ("home-key-0001", "home-secret-0001")
    assert config.region == "cloudstack"
    assert config.timeout == 10.0
    assert config.expiration == 600.0
    assert config.verify is True
    assert str(path) in config.source and "[cloudstack]" in config.source


def test_a_region_section_is_chosen_by_argument_or_environment(monkeypatch):
    write(home() / ".cloudstack.ini", HOME_INI)
    lab = load_cloudstack_config("lab")
    assert lab.key == "lab-key-0001" and lab.region == "lab"
    assert lab.timeout == 30.0  # cs hands ini values over as strings
    assert lab.headers == {"x-trace": "on"}
    monkeypatch.setenv("CLOUDSTACK_REGION", "lab")
    assert load_cloudstack_config().key == "lab-key-0001"


def test_the_working_directory_ini_wins_over_home_and_cloudstack_config_wins_over_both(
    monkeypatch, tmp_path
):
    write(home() / ".cloudstack.ini", HOME_INI)
    write(Path.cwd() / "cloudstack.ini", "[cloudstack]\nkey = cwd-key-0001\n")
    config = load_cloudstack_config()
    assert config.key == "cwd-key-0001"
    assert config.secret == "home-secret-0001"  # sections merge key by key, last file wins
    explicit = write(tmp_path / "explicit.ini", "[cloudstack]\nkey = explicit-key-01\n")
    monkeypatch.setenv("CLOUDSTACK_CONFIG", str(explicit))
    config = load_cloudstack_config()
    assert config.key == "explicit-key-01"
    assert str(explicit) in config.source


def test_an_unknown_region_names_the_region_and_the_file():
    path = write(home() / ".cloudstack.ini", HOME_INI)
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config("prod")
    text = one_line(info.value)
    assert "'prod'" in text and str(path) in text


def test_an_unknown_region_from_the_environment_names_the_region(monkeypatch):
    write(home() / ".cloudstack.ini", HOME_INI)
    monkeypatch.setenv("CLOUDSTACK_REGION", "prod")
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    assert "'prod'" in one_line(info.value)


def test_the_environment_alone_is_enough(monkeypatch):
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", "http://127.0.0.1:8080/client/api")
    monkeypatch.setenv("CLOUDSTACK_KEY", "env-key-0001")
    monkeypatch.setenv("CLOUDSTACK_SECRET", "env-secret-0001")
    monkeypatch.setenv("CLOUDSTACK_TIMEOUT", "4")
    config = load_cloudstack_config()
    assert (config.endpoint, config.key, config.timeout) == (
        "http://127.0.0.1:8080/client/api",
        "env-key-0001",
        4.0,
    )
    assert "environment" in config.source


def test_the_environment_endpoint_makes_cs_skip_the_ini(monkeypatch):
    write(home() / ".cloudstack.ini", HOME_INI)
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", "http://127.0.0.1:8080/client/api")
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    text = one_line(info.value)
    assert "CLOUDSTACK_ENDPOINT" in text and "CLOUDSTACK_OVERRIDES=endpoint" in text


def test_overrides_mix_the_environment_endpoint_with_the_ini_credentials(monkeypatch):
    write(home() / ".cloudstack.ini", HOME_INI)
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", "http://127.0.0.1:9090/client/api")
    monkeypatch.setenv("CLOUDSTACK_OVERRIDES", "endpoint")
    config = load_cloudstack_config()
    assert config.endpoint == "http://127.0.0.1:9090/client/api"
    assert config.key == "home-key-0001"
    assert "overrides" in config.source


@pytest.mark.parametrize(
    "endpoint",
    [
        "ftp://mgmt.example.test/client/api",
        "mgmt.example.test:8080/client/api",
        "http:///client/api",
        "https://user:pw@mgmt.example.test/client/api",
        "http://mgmt.example.test:99999/client/api",
        "http://mgmt.example.test/client/api?response=json",
    ],
)
def test_a_bad_endpoint_url_is_a_config_error(monkeypatch, endpoint):
    monkeypatch.setenv("CLOUDSTACK_ENDPOINT", endpoint)
    monkeypatch.setenv("CLOUDSTACK_KEY", "env-key-0001")
    monkeypatch.setenv("CLOUDSTACK_SECRET", "env-secret-0001")
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    text = one_line(info.value)
    assert "endpoint" in text
    assert "user:pw" not in text  # user info may be a password: never echo it


def test_a_section_without_a_secret_is_refused():
    write(
        home() / ".cloudstack.ini",
        "[cloudstack]\nendpoint = http://127.0.0.1/client/api\nkey = k0001\n",
    )
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    assert "secret" in one_line(info.value)


def test_a_section_without_an_endpoint_is_refused():
    write(home() / ".cloudstack.ini", "[other]\nendpoint = http://127.0.0.1/client/api\n")
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    assert "'cloudstack'" in one_line(info.value)


def test_a_broken_ini_is_a_config_error():
    write(home() / ".cloudstack.ini", "endpoint = no section header\n")
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    assert ".cloudstack.ini" in one_line(info.value)


def test_a_non_numeric_timeout_is_a_config_error():
    write(home() / ".cloudstack.ini", HOME_INI.replace("timeout = 30", "timeout = soon"))
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config("lab")
    assert "timeout" in one_line(info.value)


def test_an_ini_readable_by_others_is_warned_about(caplog):
    path = write(home() / ".cloudstack.ini", HOME_INI, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="sidecar.cloudstack.config"):
        load_cloudstack_config()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in w and "chmod 600" in w for w in warnings)


def test_a_private_ini_is_not_warned_about(caplog):
    write(home() / ".cloudstack.ini", HOME_INI, mode=0o600)
    with caplog.at_level(logging.WARNING):
        load_cloudstack_config()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_repr_hides_key_and_secret():
    write(home() / ".cloudstack.ini", HOME_INI)
    config = load_cloudstack_config()
    for text in (repr(config), str(config)):
        assert "home-key-0001" not in text and "home-secret-0001" not in text
        assert "home.example.test" in text
    assert hash(config) == hash(config)


def test_dangerous_no_tls_verify_alone_turns_verification_off(caplog):
    write(
        home() / ".cloudstack.ini",
        HOME_INI.replace("[lab]", "dangerous_no_tls_verify = true\n[lab]"),
    )
    with caplog.at_level(logging.WARNING):
        config = load_cloudstack_config()
    assert config.verify is False
    assert any("dangerous_no_tls_verify" in r.getMessage() for r in caplog.records)


def test_verify_false_does_not_turn_verification_off():
    write(home() / ".cloudstack.ini", HOME_INI.replace("[lab]", "verify = false\n[lab]"))
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    assert "dangerous_no_tls_verify" in one_line(info.value)


def test_a_missing_ca_bundle_is_a_config_error():
    write(
        home() / ".cloudstack.ini", HOME_INI.replace("[lab]", "verify = /nonexistent/ca.pem\n[lab]")
    )
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    assert "/nonexistent/ca.pem" in one_line(info.value)


def test_an_unreadable_client_certificate_is_a_config_error(tmp_path):
    bad = write(tmp_path / "client.pem", "not a certificate")
    write(home() / ".cloudstack.ini", HOME_INI.replace("[lab]", f"cert = {bad}\n[lab]"))
    with pytest.raises(ConfigError) as info:
        load_cloudstack_config()
    assert "cert" in one_line(info.value)


@pytest.fixture
def self_signed(tmp_path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sidecar-test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_a_ca_bundle_and_a_client_certificate_make_an_ssl_context(self_signed):
    cert, key = self_signed
    extra = f"verify = {cert}\ncert = {cert}\ncert_key = {key}\n"
    write(home() / ".cloudstack.ini", HOME_INI.replace("[lab]", extra + "[lab]"))
    config = load_cloudstack_config()
    assert isinstance(config.verify, ssl.SSLContext)
    assert config.verify.verify_mode == ssl.CERT_REQUIRED
    assert config.verify.check_hostname is True
    assert any(c.get("subject") for c in config.verify.get_ca_certs())


def test_the_dataclass_is_frozen_and_can_be_built_directly():
    config = CloudStackConfig(endpoint="http://127.0.0.1/client/api", key="k", secret="s")
    with pytest.raises(AttributeError):
        config.key = "other"  # type: ignore[misc]
    assert config.verify is True and config.timeout == 10.0
