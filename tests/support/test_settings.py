# mypy: allow-untyped-defs
"""Settings: defaults < TOML file < SIDECAR_* environment < command line; bad input is one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sidecar.support import settings as settings_module
from sidecar.support.errors import ConfigError
from sidecar.support.settings import (
    Settings,
    default_ledger_url,
    default_state_dir,
    describe_settings,
    load_settings,
)


def write(tmp_path: Path, text: str, name: str = "sidecar.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def no_system_config(monkeypatch, tmp_path):
    """Never read a real /etc/cloudstack-sidecar/sidecar.toml from the test machine."""
    monkeypatch.setattr(settings_module, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")


def one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


# --- precedence ------------------------------------------------------------------------------


def test_without_file_env_or_overrides_every_setting_is_its_default():
    assert load_settings(environ={}) == Settings()


def test_the_file_overrides_defaults(tmp_path):
    path = write(tmp_path, "poll_interval = 30\ndry_run = true\n")
    loaded = load_settings(path, environ={})
    assert loaded.poll_interval == 30.0
    assert loaded.dry_run is True
    assert loaded.max_retries == Settings().max_retries


def test_the_environment_overrides_the_file(tmp_path):
    path = write(tmp_path, "poll_interval = 30\nregion = 'from-file'\n")
    loaded = load_settings(path, environ={"SIDECAR_POLL_INTERVAL": "45"})
    assert loaded.poll_interval == 45.0
    assert loaded.region == "from-file"


def test_overrides_beat_the_environment_and_none_means_not_given(tmp_path):
    path = write(tmp_path, "poll_interval = 30\n")
    loaded = load_settings(
        path,
        environ={"SIDECAR_POLL_INTERVAL": "45", "SIDECAR_MAX_RETRIES": "2"},
        overrides={"poll_interval": 20, "max_retries": None},
    )
    assert loaded.poll_interval == 20.0
    assert loaded.max_retries == 2


def test_the_process_environment_is_read_by_default(monkeypatch):
    monkeypatch.setenv("SIDECAR_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


def test_sidecar_config_names_the_file(tmp_path):
    path = write(tmp_path, "region = 'envfile'\n")
    assert load_settings(environ={"SIDECAR_CONFIG": str(path)}).region == "envfile"


def test_an_explicit_path_beats_sidecar_config(tmp_path):
    explicit = write(tmp_path, "region = 'explicit'\n", "a.toml")
    other = write(tmp_path, "region = 'env'\n", "b.toml")
    assert load_settings(explicit, environ={"SIDECAR_CONFIG": str(other)}).region == "explicit"


def test_the_system_config_file_is_read_when_present(tmp_path, monkeypatch):
    path = write(tmp_path, "region = 'system'\n", "etc.toml")
    monkeypatch.setattr(settings_module, "DEFAULT_CONFIG_PATH", path)
    assert load_settings(environ={}).region == "system"


def test_a_sidecar_table_is_read_like_a_flat_file(tmp_path):
    path = write(tmp_path, "[sidecar]\npoll_interval = 30\nlog_format = 'json'\n")
    loaded = load_settings(path, environ={})
    assert (loaded.poll_interval, loaded.log_format) == (30.0, "json")


def test_sidecar_test_variables_are_ignored():
    env = {"SIDECAR_TEST_POSTGRES_URL": "postgresql://x", "SIDECAR_TEST_ANYTHING": "1"}
    assert load_settings(environ=env) == Settings()


# --- types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("1", True), ("true", True), ("Yes", True), ("on", True),
    ("0", False), ("false", False), ("NO", False), ("off", False),
])
def test_boolean_environment_values(text, expected):
    assert load_settings(environ={"SIDECAR_DRY_RUN": text}).dry_run is expected


def test_an_integer_in_toml_is_accepted_for_a_float_setting(tmp_path):
    loaded = load_settings(write(tmp_path, "retry_backoff = 1\n"), environ={})
    assert loaded.retry_backoff == 1.0 and isinstance(loaded.retry_backoff, float)


@pytest.mark.parametrize(("env", "name"), [
    ({"SIDECAR_DRY_RUN": "maybe"}, "dry_run"),
    ({"SIDECAR_MAX_RETRIES": "three"}, "max_retries"),
    ({"SIDECAR_MAX_RETRIES": "2.5"}, "max_retries"),
    ({"SIDECAR_POLL_INTERVAL": "soon"}, "poll_interval"),
])
def test_an_unparsable_environment_value_names_the_setting_and_the_variable(env, name):
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    message = one_line(exc)
    assert repr(name) in message
    assert next(iter(env)) in message


@pytest.mark.parametrize("text", ["dry_run = 1.5", "max_retries = true", "region = 5",
                                  "max_concurrency = 4.5", "poll_interval = [1]"])
def test_a_wrongly_typed_toml_value_is_a_config_error(tmp_path, text):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert text.split(" =")[0] in one_line(exc)
    assert str(path) in one_line(exc)


def test_log_level_is_case_insensitive(tmp_path):
    assert load_settings(write(tmp_path, "log_level = 'warning'\n"), environ={}).log_level \
        == "WARNING"


# --- unknown names ---------------------------------------------------------------------------


def test_an_unknown_setting_in_the_file_is_named(tmp_path):
    path = write(tmp_path, "poll_intervall = 30\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    message = one_line(exc)
    assert "'poll_intervall'" in message and str(path) in message
    assert "sidecar.toml.example" in message


def test_an_unknown_setting_inside_the_sidecar_table_is_named(tmp_path):
    path = write(tmp_path, "[sidecar]\nbatch = 3\n")
    with pytest.raises(ConfigError, match="unknown setting 'batch'"):
        load_settings(path, environ={})


def test_a_setting_above_the_sidecar_table_is_not_silently_ignored(tmp_path):
    path = write(tmp_path, "poll_interval = 30\n[sidecar]\ndry_run = true\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert "'poll_interval'" in one_line(exc)
    assert "[sidecar]" in one_line(exc)


def test_an_unknown_setting_in_the_environment_is_named():
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"SIDECAR_POLL_INTERVALL": "30"})
    message = one_line(exc)
    assert "SIDECAR_POLL_INTERVALL" in message and "unset it" in message


def test_an_unknown_override_is_a_config_error():
    with pytest.raises(ConfigError, match="'nonsense'"):
        load_settings(environ={}, overrides={"nonsense": 1})


# --- ranges and choices ----------------------------------------------------------------------


@pytest.mark.parametrize(("env", "name"), [
    ({"SIDECAR_POLL_INTERVAL": "1"}, "poll_interval"),
    ({"SIDECAR_POLL_JITTER": "0.9"}, "poll_jitter"),
    ({"SIDECAR_MAX_CONCURRENCY": "0"}, "max_concurrency"),
    ({"SIDECAR_ARCHIVE_BATCH_SIZE": "0"}, "archive_batch_size"),
    ({"SIDECAR_POLL_INTERVAL": "nan"}, "poll_interval"),
    ({"SIDECAR_LEASE_TTL": "inf"}, "lease_ttl"),
    ({"SIDECAR_LEDGER_STATEMENT_TIMEOUT": "0.5"}, "ledger_statement_timeout"),
    ({"SIDECAR_LEDGER_STATEMENT_TIMEOUT": "7200"}, "ledger_statement_timeout"),
])
def test_an_out_of_range_value_names_the_setting_its_source_and_the_range(env, name):
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    message = one_line(exc)
    assert repr(name) in message and next(iter(env)) in message
    assert "outside" in message and "set a value in that range" in message


def test_an_out_of_range_value_from_the_file_names_the_file(tmp_path):
    path = write(tmp_path, "max_retries = 99\n")
    with pytest.raises(ConfigError, match=f"'max_retries' in {path} is 99, outside 0..20"):
        load_settings(path, environ={})


def test_an_out_of_range_override_names_the_command_line():
    with pytest.raises(ConfigError, match="'poll_interval' in the command line"):
        load_settings(environ={}, overrides={"poll_interval": 1})


@pytest.mark.parametrize(("env", "choices"), [
    ({"SIDECAR_LOG_FORMAT": "yaml"}, "text, json"),
    ({"SIDECAR_LOG_LEVEL": "LOUD"}, "DEBUG, INFO, WARNING, ERROR"),
])
def test_an_unknown_choice_lists_the_valid_ones(env, choices):
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    assert f"choose one of {choices}" in one_line(exc)


def test_every_range_limit_names_a_real_setting():
    names = {f.name for f in dataclasses.fields(Settings)}
    assert set(settings_module._LIMITS) <= names
    assert set(settings_module._CHOICES) <= names


def test_every_default_is_within_its_own_limits():
    defaults = Settings()
    for name, (low, high) in settings_module._LIMITS.items():
        assert low <= getattr(defaults, name) <= high, name


# --- unreadable files ------------------------------------------------------------------------


def test_malformed_toml_is_one_line_naming_the_file_and_the_place(tmp_path):
    path = write(tmp_path, "poll_interval = \n[sidecar\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    message = one_line(exc)
    assert str(path) in message and "not valid TOML" in message and "line 1" in message


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("region = 'caf\xe9'\n".encode("latin-1"))
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert str(path) in one_line(exc)


def test_a_missing_config_file_from_the_command_line_says_how_to_fix_it(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    message = one_line(exc)
    assert f"config file {path} does not exist" in message and "--config" in message


def test_a_missing_config_file_from_sidecar_config_names_the_variable(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"SIDECAR_CONFIG": str(path)})
    message = one_line(exc)
    assert str(path) in message and "SIDECAR_CONFIG" in message


def test_a_directory_given_as_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, environ={})
    assert str(tmp_path) in one_line(exc)


def test_an_unreadable_config_file_is_a_config_error(tmp_path, monkeypatch):
    path = write(tmp_path, "region = 'x'\n")

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)  # running as root, chmod 000 would not stop us
    with pytest.raises(ConfigError, match="is not readable: fix its permissions"):
        load_settings(path, environ={})


def test_an_absent_system_config_file_is_not_an_error():
    assert load_settings(environ={}) == Settings()


# --- derived values --------------------------------------------------------------------------


def test_the_state_directory_is_the_first_of_systemds_state_directories(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/cloudstack-sidecar:/var/lib/other")
    assert default_state_dir() == Path("/var/lib/cloudstack-sidecar")
    assert default_ledger_url() == "sqlite:////var/lib/cloudstack-sidecar/ledger.sqlite3"


def test_the_state_directory_outside_systemd_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    assert default_state_dir() == Path.home() / ".local" / "state" / "cloudstack-sidecar"


def test_an_empty_ledger_url_resolves_to_sqlite_in_the_state_directory(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/srv/state")
    assert Settings().resolved_ledger_url() == "sqlite:////srv/state/ledger.sqlite3"
    assert Settings(ledger_url="postgresql+psycopg://db/x").resolved_ledger_url() \
        == "postgresql+psycopg://db/x"


def test_describe_settings_documents_every_field_in_order():
    described = describe_settings()
    assert [name for name, _, _ in described] == [f.name for f in dataclasses.fields(Settings)]
    assert all(doc.startswith("Default") for _, _, doc in described)
    assert {n: d for n, d, _ in described}["poll_interval"] == "60.0"


# --- alertmanager_url ------------------------------------------------------------------------


def test_alertmanager_urls_come_comma_separated_from_the_environment():
    loaded = load_settings(environ={
        "SIDECAR_ALERTMANAGER_URL": "http://127.0.0.1:9093, https://am2.example:9093/am ,"
    })
    assert loaded.alertmanager_urls() == ("http://127.0.0.1:9093", "https://am2.example:9093/am")


def test_alertmanager_urls_may_be_a_toml_list(tmp_path):
    path = write(tmp_path, 'alertmanager_url = ["http://a:9093", "http://b:9093"]\n')
    assert load_settings(path, environ={}).alertmanager_urls() == ("http://a:9093",
                                                                    "http://b:9093")


def test_no_alertmanager_url_means_notifications_are_off():
    assert load_settings(environ={}).alertmanager_urls() == ()


@pytest.mark.parametrize(("value", "words"), [
    ("ftp://127.0.0.1:9093", "not an http(s) URL with a host"),
    ("127.0.0.1:9093", "not an http(s) URL with a host"),
    ("http://:9093", "not an http(s) URL with a host"),
    ("http://127.0.0.1:99999", "not an http(s) URL with a host"),
    ("http://user:pw@127.0.0.1:9093", "user info"),
    ("http://127.0.0.1:9093/?x=1", "query or fragment"),
    (",".join(f"http://am{i}:9093" for i in range(9)), "at most 8"),
])
def test_a_bad_alertmanager_url_is_a_one_line_error_naming_the_variable(value, words):
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"SIDECAR_ALERTMANAGER_URL": value})
    message = one_line(exc)
    assert "SIDECAR_ALERTMANAGER_URL" in message and words in message
    assert ":pw@" not in message  # a password in the URL is never echoed


def test_a_toml_list_of_non_strings_for_alertmanager_url_is_a_config_error(tmp_path):
    path = write(tmp_path, "alertmanager_url = [9093]\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, environ={})
    assert "expected a list of strings" in one_line(exc)
