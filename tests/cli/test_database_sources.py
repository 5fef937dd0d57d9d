"""Where the database comes from: no silent embedded fallback where a real database was meant,
and the config file (flag > environment > file > default)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kpictl.config import Chosen, choose, load_config
from kpictl.errors import ConfigurationError
from kpictl.settings import embedded_refusal, settings_from_environment
from tests.conftest import ENV_KEYS


def kpictl(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """A real process with no terminal (as cron or systemd run it), outside any URL setting."""
    base = {k: v for k, v in os.environ.items() if k not in ENV_KEYS and k != "INVOCATION_ID"}
    return subprocess.run(
        [sys.executable, "-m", "kpictl", *args],
        env={**base, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CREDENTIALS_DIRECTORY": "{creds}"}, "has no database-url credential"),
        ({"INVOCATION_ID": "0f3c"}, "running as a systemd service: INVOCATION_ID is set"),
        ({}, "no terminal (cron, a script, a container) and no embedded server set up"),
    ],
    ids=["credential-directory-without-the-file", "systemd-without-a-url", "cron-without-a-url"],
)
def test_no_url_where_a_real_database_was_meant_is_exit_2_and_starts_nothing(
    tmp_path, env, message
):
    data = tmp_path / "data"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "database_url").write_text("postgresql://h/misnamed\n")  # a misnamed credential
    env = {k: v.format(creds=creds) for k, v in env.items()}
    env = {**env, "KPICTL_DATA_DIR": str(data)}
    for command in (["kpis"], ["aggregate"], ["freshness", "--format", "json"]):
        result = kpictl(command, env)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        if "json" in command:  # docs/OUTPUT.md: the failure as a document too
            assert json.loads(result.stdout)["error"]["exit_code"] == 2
        else:
            assert result.stdout == ""
    # a Nagios check says UNKNOWN (its convention for a bad setting), never "OK" from an empty
    # sample database
    result = kpictl(["freshness", "--format", "nagios"], env)
    assert result.returncode == 3
    assert result.stdout.startswith("KPI FRESHNESS UNKNOWN - ") and message in result.stdout
    assert not data.exists()  # no embedded server started, no data directory created


def test_embedded_refusal_rules():
    assert embedded_refusal({}, interactive=True, explicit=False, set_up=False) is None
    assert embedded_refusal({}, interactive=False, explicit=False, set_up=True) is None
    assert embedded_refusal({}, interactive=False, explicit=True, set_up=False) is None
    assert (
        embedded_refusal({"KPICTL_EMBEDDED": "1"}, interactive=False, explicit=False, set_up=False)
        is None
    )
    systemd = {"INVOCATION_ID": "x"}
    assert embedded_refusal(systemd, interactive=True, explicit=False, set_up=True)
    assert embedded_refusal(systemd, interactive=False, explicit=True, set_up=False) is None
    assert embedded_refusal({}, interactive=False, explicit=False, set_up=False)


# --- the config file --------------------------------------------------------------------------

CONFIG = """
database_url_file = "{url_file}"
source_timezone = "Europe/Berlin"
period_hours = 48

[freshness]
warn_after = "10m"
error_after = 1800

[freshness.kpis.mtti]
warn_after = "2h"

[retention]
run_days = 30
factory_days = 365
"""


@pytest.fixture
def config_file(tmp_path) -> Path:
    url_file = tmp_path / "database-url"
    url_file.write_text("postgresql://kpictl@db.internal/factory\n")
    path = tmp_path / "kpictl.toml"
    path.write_text(CONFIG.format(url_file=url_file))
    return path


def test_the_config_file_is_read_with_every_key(config_file, tmp_path):
    config = load_config(str(config_file), {})
    assert config.path == config_file
    assert config.database_url_file == tmp_path / "database-url"
    assert (config.source_timezone, config.period_hours) == ("Europe/Berlin", 48)
    assert (config.freshness.warn_after, config.freshness.error_after) == ("10m", "1800")
    assert config.freshness_per_kpi["mtti"].warn_after == "2h"
    assert config.freshness_per_kpi["mtti"].error_after is None
    assert dict(config.retention_days) == {"run_days": 30, "factory_days": 365}


def test_where_the_config_file_is_looked_for(config_file, tmp_path, monkeypatch):
    assert load_config(None, {"KPICTL_CONFIG": str(config_file)}).path == config_file
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_config(None, {}).path is None  # no file at the default place: no config
    default = tmp_path / "xdg" / "kpictl" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text('source_timezone = "UTC"\n')
    assert load_config(None, {}).path == default
    # the flag wins over the variable, the variable over the default place
    assert load_config(str(config_file), {"KPICTL_CONFIG": str(default)}).path == config_file


def test_precedence_flag_over_environment_over_file_over_default(config_file):
    config = load_config(str(config_file), {})
    common = {
        "flag_name": "--period-hours",
        "env_names": ("KPICTL_PERIOD_HOURS",),
        "file_value": config.period_hours,
        "config": config,
        "default": 24,
    }
    env = {"KPICTL_PERIOD_HOURS": "72"}
    assert choose(flag="168", environ=env, **common) == Chosen("168", "--period-hours")
    assert choose(flag=None, environ=env, **common) == Chosen("72", "KPICTL_PERIOD_HOURS")
    assert choose(flag=None, environ={}, **common) == Chosen(48, f"config file {config_file}")
    bare = {**common, "file_value": None}
    assert choose(flag=None, environ={}, **bare) == Chosen(24, "default")


def test_settings_take_the_url_file_and_time_zone_from_the_config_file(config_file):
    settings = settings_from_environment(
        flag_url=None,
        command="kpictl test",
        environ={},
        config_path=str(config_file),
        interactive=False,
    )
    assert settings.target.url == "postgresql+psycopg://kpictl@db.internal/factory"
    assert settings.target.source.startswith("database_url_file of config file ")
    assert (settings.source_timezone, settings.source_timezone_origin) == (
        "Europe/Berlin",
        f"config file {config_file}",
    )
    overridden = settings_from_environment(
        flag_url="postgresql://other/db",
        command="kpictl test",
        environ={"KPICTL_SOURCE_TIMEZONE": "Asia/Tokyo"},
        config_path=str(config_file),
    )
    assert overridden.target.source == "--database-url"
    assert (overridden.source_timezone, overridden.source_timezone_origin) == (
        "Asia/Tokyo",
        "KPICTL_SOURCE_TIMEZONE",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('databse_url_file = "/x"\n', "databse_url_file is not a known key"),
        ('[freshness]\nwarn = "5m"\n', "freshness.warn is not a known key"),
        (
            '[freshness.kpis.mtti]\nwarn_afte = "5m"\n',
            "freshness.kpis.mtti.warn_afte is not a known",
        ),
        ("[retention]\nrun_days = 0\n", "retention.run_days must be a whole number of at least 1"),
        ('period_hours = "24"\n', "period_hours must be a whole number"),
        ("freshness = 3\n", "freshness must be a table"),
        ('source_timezone = ""\n', "source_timezone must be a non-empty string"),
        ("period_hours = \n", "is not valid TOML"),
        (
            "[freshness]\nwarn_after = true\n",
            'freshness.warn_after must be a duration such as "10m"',
        ),
        ("[freshness.kpis.mtti]\nerror_after = [1]\n", "freshness.kpis.mtti.error_after must be"),
        ("[freshness.kpis.nope]\nwarn_after = 1\n", "freshness.kpis.nope names no KPI"),
        (b"period_hours = 1 # \xff\n", "is not valid TOML"),
    ],
)
def test_a_bad_config_file_is_exit_2_naming_the_key_and_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigurationError, match=re.escape(message)) as raised:
        load_config(str(path), {})
    assert str(path) in raised.value.message
    result = kpictl(["kpis", "--config", str(path)], {"KPICTL_DATA_DIR": str(tmp_path / "d")})
    assert result.returncode == 2
    assert message.split(" is ")[0].split(" must ")[0] in result.stderr
    assert "Traceback" not in result.stderr


def test_a_named_config_file_must_exist(tmp_path):
    missing = tmp_path / "nope.toml"
    result = kpictl(["kpis", "--config", str(missing)], {})
    assert result.returncode == 2
    assert f"config file {missing} (from --config) does not exist" in result.stderr
    result = kpictl(["kpis"], {"KPICTL_CONFIG": str(missing)})
    assert result.returncode == 2
    assert "(from KPICTL_CONFIG) does not exist" in result.stderr


def test_an_invalid_time_zone_in_the_config_file_names_the_file(tmp_path):
    path = tmp_path / "tz.toml"
    path.write_text('source_timezone = "Mars/Olympus"\n')
    with pytest.raises(ConfigurationError, match=f"from config file {path}"):
        settings_from_environment(
            flag_url="postgresql://h/d",
            command="kpictl test",
            environ={},
            config_path=str(path),
        )


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_config_path_is_exit_2_naming_where_it_came_from(value):
    with pytest.raises(ConfigurationError, match="empty config file path from KPICTL_CONFIG"):
        load_config(None, {"KPICTL_CONFIG": value})
    with pytest.raises(ConfigurationError, match="empty config file path from --config"):
        load_config(value, {})
