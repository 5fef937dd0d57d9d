"""The rules of kpictl/cli/options.py, tested directly: each one's good and bad values and the
message a bad value gets (it names the option and the value; exit 2). Then, through the CLI,
that every command checks its values before it opens a database. No database."""

from __future__ import annotations

import inspect
import math
import os
from datetime import date
from pathlib import Path

import pytest
import typer.main

from kpictl.cli import options
from kpictl.errors import ExitCode, UsageError
from kpictl.services.jobs.stop import StopRequest
from kpictl.settings import DEFAULT_STOP_GRACE_SECONDS, Settings, settings_from_environment
from tests.conftest import run_cli


def message_of(rule, *args) -> str:
    with pytest.raises(UsageError) as raised:
        rule(*args)
    assert raised.value.exit_code == ExitCode.USAGE
    return raised.value.message


# --- whole numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("42", 42), (" 7 ", 7), ("+3", 3), ("-5", -5), (9, 9)]
)
def test_whole_number_reads_integers(value, expected):
    assert options.whole_number(value, "--limit") == expected


@pytest.mark.parametrize("value", ["ten", "1.5", "", " ", "1e3", "0x10"])
def test_whole_number_refuses_what_is_not_one(value):
    assert message_of(options.whole_number, value, "--limit") == (
        f"invalid value for --limit: {value!r} is not a whole number"
    )


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("1000", 1000), ("500", 500)])
def test_whole_number_range_is_inclusive(value, expected):
    assert options.whole_number(value, "--limit", within=(1, 1000)) == expected


@pytest.mark.parametrize("value", ["0", "-1", "1001"])
def test_whole_number_out_of_range(value):
    assert message_of(options.whole_number, value, "--run-days", (1, 1000)) == (
        f"invalid value for --run-days: {int(value)} is not in 1-1000"
    )


def test_whole_number_shows_a_long_or_odd_value_safely():
    message = message_of(options.whole_number, "9" * 50 + "x\x07" + "y" * 100, "--limit")
    assert "\x07" not in message and "\\x07" in message
    assert len(message) < 160 and message.endswith("... is not a whole number")


@pytest.mark.parametrize("name", ["KPICTL_PERIOD_HOURS", "KPI_AGGREGATION_PERIOD_HOURS"])
def test_period_hours_names_its_environment_variable(name):
    result = run_cli(["aggregate"], "postgresql://nobody@127.0.0.1:1/none", env={name: "lots"})
    assert result.exit_code == ExitCode.USAGE
    assert f"invalid value for {name}: 'lots' is not a whole number" in result.stderr


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("600", 600),
        ("90s", 90),
        ("10m", 600),
        ("10min", 600),
        ("1.5m", 90),
        ("2h", 7200),
        ("1d", 86_400),
        ("500ms", 0.5),
        (" 5m ", 300),
    ],
)
def test_duration_seconds(value, seconds):
    assert options.duration_seconds(value, "--warn-after") == seconds


@pytest.mark.parametrize("value", ["soon", "-1", "5 minutes", "", "1w", "m"])
def test_duration_refuses_what_is_not_one(value):
    assert message_of(options.duration_seconds, value, "--error-after") == (
        f"invalid duration for --error-after: {value!r} (use e.g. 600, 90s, 10m, 2h, 1d)"
    )


# --- time zones ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata"])
def test_time_zone(name):
    assert options.time_zone(name, "--timezone").key == name


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "Europe/", "../../etc/passwd", "CEST"])
def test_time_zone_refuses_unknown_names(name):
    assert message_of(options.time_zone, name, "--timezone") == (
        f"invalid value for --timezone: {name!r} is not an IANA time zone (e.g. Europe/Berlin)"
    )


def test_the_source_time_zone_setting_uses_the_same_rule():
    with pytest.raises(UsageError, match="invalid value for KPICTL_SOURCE_TIMEZONE: 'Mars/Base'"):
        settings_from_environment(
            flag_url=None, command="kpictl test", environ={"KPICTL_SOURCE_TIMEZONE": "Mars/Base"}
        )


# --- dates -----------------------------------------------------------------------------------


def test_calendar_date():
    assert options.calendar_date("2026-01-05", "--since") == date(2026, 1, 5)
    assert options.calendar_date("2024-02-29", "--since") == date(2024, 2, 29)
    assert options.calendar_date(None, "--since") is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("2026-02-30", "'2026-02-30'"),
        ("2026-13-01", "'2026-13-01'"),
        ("2026-1-1", "'2026-1-1'"),
        ("yesterday", "'yesterday'"),
        ("2026-01-05T00:00", "'2026-01-05T00:00'"),
        ("tab\there", "'tab\\there'"),
    ],
)
def test_calendar_date_refuses_what_is_not_one(value, shown):
    assert message_of(options.calendar_date, value, "--until") == (
        f"invalid value for --until: {shown} is not a date (YYYY-MM-DD)"
    )


def test_date_range():
    assert options.date_range("2026-01-05", "2026-01-05") == (date(2026, 1, 5), date(2026, 1, 5))
    assert options.date_range(None, "2026-01-05") == (None, date(2026, 1, 5))
    assert options.date_range(None, None) == (None, None)
    assert message_of(options.date_range, "2026-03-01", "2026-02-01") == (
        "invalid value for --since: 2026-03-01 is after --until 2026-02-01"
    )


# --- --wait ----------------------------------------------------------------------------------


def test_wait_seconds():
    assert options.wait_seconds(None) is None
    assert options.wait_seconds("forever") == math.inf
    assert options.wait_seconds("30") == 30
    assert options.wait_seconds("0.5") == 0.5


@pytest.mark.parametrize("value", ["abc", "", "30s"])
def test_wait_refuses_what_is_not_a_number(value):
    assert message_of(options.wait_seconds, value) == (
        f"--wait: {value!r} is not a number of seconds"
    )


@pytest.mark.parametrize("value", ["-3", "0", "inf", "nan"])
def test_wait_must_be_positive_and_finite(value):
    assert message_of(options.wait_seconds, value) == (
        f"--wait must be a positive number of seconds, got {value!r}"
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["aggregate", "--wait"], ["aggregate", "--wait", "forever"]),
        (
            ["aggregate", "--wait", "--format", "json"],
            ["aggregate", "--wait", "forever", "--format", "json"],
        ),
        (["aggregate", "--wait", "30"], ["aggregate", "--wait", "30"]),
        (["aggregate", "--wait", "-3"], ["aggregate", "--wait", "-3"]),
        (["aggregate"], ["aggregate"]),
    ],
)
def test_a_bare_wait_means_for_ever(args, expected):
    assert options.normalize_argv(args) == expected


# --- --output --------------------------------------------------------------------------------


def test_output_file(tmp_path):
    assert options.output_file(None) is None
    assert options.output_file(tmp_path / "acme.csv") == tmp_path / "acme.csv"
    assert (
        message_of(options.output_file, tmp_path)
        == f"invalid value for --output: {tmp_path} is a directory"
    )
    parent = tmp_path / "a-file"
    parent.write_text("x")
    assert message_of(options.output_file, parent / "out.csv") == (
        f"invalid value for --output: {parent} is not a directory"
    )
    missing = tmp_path / "missing"
    assert message_of(options.output_file, missing / "out.csv") == (
        f"invalid value for --output: directory {missing} does not exist"
    )


# --- declared once ---------------------------------------------------------------------------


def test_format_subsets_are_made_of_the_one_format_enum():
    subsets = (
        options.TableFormat,
        options.TextFormat,
        options.MonitoringFormat,
        options.ExportFormat,
    )
    for subset in subsets:
        assert all(member.value in options.Format.__members__ for member in subset)
    assert [m.value for m in options.TableFormat] == ["table", "json", "ndjson", "csv"]
    assert [m.value for m in options.ExportFormat] == ["csv", "json", "ndjson", "table"]
    assert options.TableFormat.json == options.Format.json


def _parameters():
    from kpictl.cli.app import app

    def walk(command):
        yield from command.params
        for sub in getattr(command, "commands", {}).values():
            yield from walk(sub)

    return list(walk(typer.main.get_command(app)))


def test_every_format_option_offers_a_subset_of_format():
    formats = [p for p in _parameters() if "--format" in p.opts]
    assert len(formats) == 11  # every command with output
    for parameter in formats:
        assert set(parameter.type.choices) <= set(options.Format.__members__)


def test_every_tenant_option_says_what_a_tenant_is():
    tenants = [p for p in _parameters() if "--tenant" in p.opts]
    assert len(tenants) == 5  # history fill, export, grant, revoke; report
    assert all(p.help.startswith(options.TENANT_HELP) for p in tenants)


def test_the_freshness_thresholds_are_one_pair():
    from kpictl.cli import freshness
    from kpictl.config import SETTINGS

    defaults = inspect.signature(freshness.freshness).parameters
    assert defaults["warn_after"].default is None  # then KPICTL_..., the config file, the default
    assert defaults["error_after"].default is None
    assert SETTINGS["freshness.warn_after"].default == options.WARN_AFTER_SECONDS == 300
    assert SETTINGS["freshness.error_after"].default == options.ERROR_AFTER_SECONDS == 900


def test_the_stop_grace_period_is_one_constant():
    assert DEFAULT_STOP_GRACE_SECONDS == 60
    assert StopRequest().grace_seconds == DEFAULT_STOP_GRACE_SECONDS
    assert Settings(target=None).stop_grace_seconds == DEFAULT_STOP_GRACE_SECONDS  # type: ignore[arg-type]
    environment = settings_from_environment(flag_url=None, command="kpictl test", environ={})
    assert environment.stop_grace_seconds == DEFAULT_STOP_GRACE_SECONDS
    custom = {"KPICTL_STOP_GRACE_SECONDS": "2s"}
    assert (
        settings_from_environment(flag_url=None, command="t", environ=custom).stop_grace_seconds
        == 2
    )


# --- through the CLI: checked before any database --------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "--limit", "ten"], "invalid value for --limit: 'ten' is not a whole number"),
        (["history", "export", "--tenant", "acme", "--limit", "0"], "--limit: 0 is not in 1-10000"),
        (["history", "fill", "--concurrency", "65"], "--concurrency: 65 is not in 1-64"),
        (["retention", "--batch-size", "x"], "--batch-size: 'x' is not a whole number"),
        (["aggregate", "--period-hours", "8761"], "--period-hours: 8761 is not in 1-8760"),
        (["aggregate", "--align", "soon"], "invalid duration for --align: 'soon'"),
        (["aggregate", "--wait", "abc"], "--wait: 'abc' is not a number of seconds"),
        (["freshness", "--warn-after", "5 minutes"], "invalid duration for --warn-after"),
        (["backfill", "--since", "2026-01-05", "--timezone", "Mars/Olympus"], "'Mars/Olympus'"),
        (["history", "fill", "--since", "2026-02-30"], "--since: '2026-02-30' is not a date"),
        (
            ["history", "export", "--tenant", "acme", "--output", "/nonexistent/x.csv"],
            "/nonexistent",
        ),
    ],
)
def test_bad_values_are_usage_errors_before_any_database(args, message):
    result = run_cli(args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("kpictl: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stdout == "" and "Traceback" not in result.output
    assert not Path(os.environ["KPICTL_DATA_DIR"]).exists()  # no embedded server was started


def test_the_old_text_format_is_read_as_table():
    assert options.normalize_argv(["doctor", "--format", "text"]) == ["doctor", "--format", "table"]
    assert options.normalize_argv(["doctor", "--format=text"]) == ["doctor", "--format=table"]
    unchanged = ["doctor", "--log-format", "text", "--format", "json"]
    assert options.normalize_argv(unchanged) == unchanged
