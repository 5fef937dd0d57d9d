"""The config file: what an operator sets once, in TOML.

Where: `--config FILE`, else `$KPICTL_CONFIG`, else `config.toml` in the user config directory
(platformdirs: `~/.config/kpictl/config.toml` on Linux; absent is fine). A file named by the
flag or the variable must exist. Every key is optional; an unknown key or a value of the wrong
kind is a configuration error naming the key and the file (exit 2).

    database_url_file = "/etc/kpictl/database-url"
    source_timezone = "Europe/Berlin"
    period_hours = 24

    [freshness]
    warn_after = "10m"
    error_after = "30m"

    [freshness.kpis.mtti]          # per KPI, over the two above
    warn_after = "2h"
    error_after = "6h"

    [retention]
    run_days = 90
    product_days = 90
    factory_days = 730
    jobs_days = 90

Precedence, for every setting: command-line flag > environment variable > this file > built-in
default (`SETTINGS` below: each setting's flag, variables and default). A per-KPI threshold
stands in for the file's `[freshness]` one; a flag or variable still overrides both. `kpictl
doctor` shows where each value came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kpictl.errors import ConfigurationError

CONFIG_ENV = "KPICTL_CONFIG"
WARN_AFTER_SECONDS = 300  # freshness: stale above this age, by default
ERROR_AFTER_SECONDS = 900  # ... expired above this one
RETENTION_KEYS = ("run_days", "product_days", "factory_days", "jobs_days")
THRESHOLD_KEYS = ("warn_after", "error_after")


@dataclass(frozen=True)
class Thresholds:
    warn_after: str | None = None
    error_after: str | None = None


@dataclass(frozen=True)
class ConfigFile:
    """The values a config file set (None: not set there) and where it was read from."""

    path: Path | None = None  # None: no file
    database_url_file: Path | None = None
    source_timezone: str | None = None
    period_hours: int | None = None
    freshness: Thresholds = field(default_factory=Thresholds)
    freshness_per_kpi: Mapping[str, Thresholds] = field(default_factory=dict)
    retention_days: Mapping[str, int] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return f"config file {self.path}"


def default_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("kpictl", appauthor=False)) / "config.toml"


def load_config(flag_path: str | None, environ: Mapping[str, str]) -> ConfigFile:
    """The config file named by `--config`, else `$KPICTL_CONFIG`, else the default location
    (where a missing file simply means no config file)."""
    if flag_path is not None:
        return _read(_named(flag_path, "--config"))
    if CONFIG_ENV in environ:
        return _read(_named(environ[CONFIG_ENV], CONFIG_ENV))
    path = default_path()
    return _read(path) if path.is_file() else ConfigFile()


def _named(value: str, origin: str) -> Path:
    if not value.strip():
        raise ConfigurationError(f"empty config file path from {origin}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigurationError(f"config file {path} (from {origin}) does not exist")
    return path


def _read(path: Path) -> ConfigFile:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    return _parse(document, path)


def _parse(document: Mapping[str, Any], path: Path) -> ConfigFile:
    reader = _Reader(path)
    reader.only(
        document,
        "",
        ("database_url_file", "source_timezone", "period_hours", "freshness", "retention"),
    )
    freshness = reader.table(document, "freshness")
    reader.only(freshness, "freshness.", (*THRESHOLD_KEYS, "kpis"))
    per_kpi: dict[str, Thresholds] = {}
    kpis = reader.table(freshness, "kpis", "freshness.")
    for name in kpis:
        reader.known_kpi(name)
        table = reader.table(kpis, name, "freshness.kpis.")
        reader.only(table, f"freshness.kpis.{name}.", THRESHOLD_KEYS)
        per_kpi[name] = reader.thresholds(table, f"freshness.kpis.{name}.")
    retention = reader.table(document, "retention")
    reader.only(retention, "retention.", RETENTION_KEYS)
    url_file = reader.text(document, "database_url_file")
    return ConfigFile(
        path=path,
        database_url_file=Path(url_file).expanduser() if url_file else None,
        source_timezone=reader.text(document, "source_timezone"),
        period_hours=reader.integer(document, "period_hours"),
        freshness=reader.thresholds(freshness, "freshness."),
        freshness_per_kpi=per_kpi,
        retention_days={
            key: value
            for key in RETENTION_KEYS
            if (value := reader.integer(retention, key, "retention.")) is not None
        },
    )


@dataclass(frozen=True)
class _Reader:
    path: Path

    def fail(self, key: str, problem: str) -> ConfigurationError:
        return ConfigurationError(f"config file {self.path}: {key} {problem}")

    def only(self, table: Mapping[str, Any], prefix: str, known: tuple[str, ...]) -> None:
        for key in table:
            if key not in known:
                raise self.fail(
                    f"{prefix}{key}", f"is not a known key (known here: {', '.join(known)})"
                )

    def known_kpi(self, name: str) -> None:
        from kpictl import kpis as registry

        if name not in registry.BY_NAME:
            raise self.fail(
                f"freshness.kpis.{name}",
                f"names no KPI (known: {', '.join(registry.names())})",
            )

    def table(self, parent: Mapping[str, Any], key: str, prefix: str = "") -> Mapping[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{prefix}{key}", "must be a table ([section])")
        return value

    def text(self, table: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(f"{prefix}{key}", "must be a non-empty string")
        return value

    def integer(self, table: Mapping[str, Any], key: str, prefix: str = "") -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.fail(
                f"{prefix}{key}", f"must be a whole number of at least 1, not {value!r}"
            )
        return value

    def thresholds(self, table: Mapping[str, Any], prefix: str) -> Thresholds:
        """Durations as kpictl's flags take them: a string ("10m", "2h") or seconds (a number)."""
        values: dict[str, str | None] = {}
        for key in THRESHOLD_KEYS:
            value = table.get(key)
            if isinstance(value, bool) or not isinstance(value, str | int | float | type(None)):
                raise self.fail(f"{prefix}{key}", 'must be a duration such as "10m" or 600')
            values[key] = None if value is None else str(value)
        return Thresholds(**values)


@dataclass(frozen=True)
class Chosen:
    """A setting's value and where it came from (shown by `kpictl doctor`)."""

    value: Any
    origin: str  # "--period-hours", "KPICTL_PERIOD_HOURS", "config file ...", "default"
    key: str = ""  # the setting's key in the config file

    @property
    def name(self) -> str:
        """What a bad value's message names: the flag, the variable or the file's key."""
        if self.origin.startswith("config file"):
            return f"{self.key} from {self.origin}"
        return self.key if self.origin == "default" else self.origin

    @property
    def from_file_or_default(self) -> bool:
        return self.origin == "default" or self.origin.startswith("config file")


@dataclass(frozen=True)
class Setting:
    """A setting an operator sets once: its config file key, flag, variables and default."""

    key: str  # "period_hours", "freshness.warn_after", "retention.run_days"
    flag: str
    env_names: tuple[str, ...]
    default: Any


SETTINGS = {
    setting.key: setting
    for setting in (
        Setting(
            "period_hours",
            "--period-hours",
            ("KPICTL_PERIOD_HOURS", "KPI_AGGREGATION_PERIOD_HOURS"),
            24,
        ),
        Setting(
            "freshness.warn_after",
            "--warn-after",
            ("KPICTL_FRESHNESS_WARN_AFTER",),
            WARN_AFTER_SECONDS,
        ),
        Setting(
            "freshness.error_after",
            "--error-after",
            ("KPICTL_FRESHNESS_ERROR_AFTER",),
            ERROR_AFTER_SECONDS,
        ),
        Setting("retention.run_days", "--run-days", ("KPICTL_RETENTION_RUN_DAYS",), 90),
        Setting("retention.product_days", "--product-days", ("KPICTL_RETENTION_PRODUCT_DAYS",), 90),
        Setting(
            "retention.factory_days", "--factory-days", ("KPICTL_RETENTION_FACTORY_DAYS",), 730
        ),
        Setting("retention.jobs_days", "--jobs-days", ("KPICTL_RETENTION_JOBS_DAYS",), 90),
    )
}
# Old variable names still read, with a warning naming the new one.
DEPRECATED_ENV = {"KPI_AGGREGATION_PERIOD_HOURS": "KPICTL_PERIOD_HOURS"}


def file_value(config: ConfigFile, key: str) -> Any:
    """The value the config file set for `key` (None: not set)."""
    if key == "period_hours":
        return config.period_hours
    section, _, name = key.partition(".")
    if section == "freshness":
        return getattr(config.freshness, name)
    return config.retention_days.get(name)


def chosen_settings(config: ConfigFile, environ: Mapping[str, str]) -> dict[str, Chosen]:
    """Every setting of `SETTINGS` from the environment, the file or its default (the flags,
    which win over all three, are applied by `Settings.setting`)."""
    return {
        key: _with_key(
            choose(
                flag=None,
                flag_name=setting.flag,
                environ=environ,
                env_names=setting.env_names,
                file_value=file_value(config, key),
                config=config,
                default=setting.default,
            ),
            key,
        )
        for key, setting in SETTINGS.items()
    }


def _with_key(chosen: Chosen, key: str) -> Chosen:
    return Chosen(chosen.value, chosen.origin, key)


def kpi_threshold(config: ConfigFile, chosen: Chosen, kpi_name: str) -> Chosen:
    """The warn or error threshold (`chosen`, for all KPIs) of one KPI: the file's
    `[freshness.kpis.NAME]` value stands in for the file's or the default one, never for a flag's
    or a variable's."""
    per_kpi = config.freshness_per_kpi.get(kpi_name)
    name = chosen.key.partition(".")[2]
    value = getattr(per_kpi, name) if per_kpi is not None else None
    if value is None or not chosen.from_file_or_default:
        return chosen
    return Chosen(value, config.origin, f"freshness.kpis.{kpi_name}.{name}")


def choose(
    *,
    flag: Any,
    flag_name: str,
    environ: Mapping[str, str],
    env_names: tuple[str, ...],
    file_value: Any,
    config: ConfigFile,
    default: Any,
) -> Chosen:
    """Flag > environment (the first of `env_names` that is set) > config file > default.

    Values stay as given (strings from the flag and the environment); the caller parses them,
    naming `origin` in its error."""
    if flag is not None:
        return Chosen(flag, flag_name)
    for name in env_names:
        if name in environ and environ[name].strip():
            return Chosen(environ[name], name)
    if file_value is not None:
        return Chosen(file_value, config.origin)
    return Chosen(default, "default")


def describe(config: ConfigFile, chosen: Mapping[str, Chosen]) -> list[tuple[str, str]]:
    """(setting, "value (from origin)") for `kpictl doctor`: the config file, every setting of
    `SETTINGS`, and the per-KPI thresholds the file sets."""
    shown = [("config", str(config.path) if config.path else f"none ({default_path()} absent)")]
    shown += [(key, f"{each.value} (from {each.origin})") for key, each in chosen.items()]
    for kpi, thresholds in config.freshness_per_kpi.items():
        for name in THRESHOLD_KEYS:
            value = getattr(thresholds, name)
            if value is not None:
                shown.append((f"freshness.kpis.{kpi}.{name}", f"{value} (from {config.origin})"))
    return shown
