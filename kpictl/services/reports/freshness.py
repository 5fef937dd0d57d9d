"""`kpictl freshness`: how long ago each KPI was last calculated, judged against two thresholds.

Per KPI of the registry at one level: the age of the newest `calculated_at` in `kpi_snapshots`,
measured against the database clock (the same clock that stamped `calculated_at`). Statuses and
exit codes follow the Nagios/Icinga plugin convention of docs/spec/pipeline.md §5: 0 all fresh, 1 any
stale, 2 any expired or missing, 3 could not check. The renderers for the monitoring formats
(Nagios status line, Prometheus text exposition) are pure functions of the report.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, String, column, func, literal, select, values

from kpictl import kpis as registry
from kpictl.db.schema import TIMESTAMPTZ, kpi_snapshots
from kpictl.errors import UsageError
from kpictl.settings import parse_duration_ms

FRESH, STALE, EXPIRED, MISSING = "fresh", "stale", "expired", "missing"
STATUSES = (FRESH, STALE, EXPIRED, MISSING)  # from best to worst
EXIT_CODES = {FRESH: 0, STALE: 1, EXPIRED: 2, MISSING: 2}
UNKNOWN_EXIT_CODE = 3  # the check itself could not run (Nagios UNKNOWN)
NAGIOS_WORDS = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
FRESHNESS_LEVELS = ("factory", "product", "run")


@dataclass(frozen=True)
class KpiFreshness:
    kpi_name: str
    level: str
    last_calculated_at: datetime | None  # None: never computed at this level
    age_seconds: float | None
    status: str

    @property
    def is_fresh(self) -> bool:
        return self.status == FRESH


@dataclass(frozen=True)
class FreshnessReport:
    level: str
    warn_after_seconds: float
    error_after_seconds: float
    checked_at: datetime
    kpis: list[KpiFreshness] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(kpi.status for kpi in self.kpis)
        return {status: found.get(status, 0) for status in STATUSES}

    @property
    def status(self) -> str:
        """The worst status of all KPIs (fresh < stale < expired < missing)."""
        return max((kpi.status for kpi in self.kpis), key=STATUSES.index, default=FRESH)

    @property
    def exit_code(self) -> int:
        return max((EXIT_CODES[kpi.status] for kpi in self.kpis), default=0)


def parse_threshold_seconds(value: str, option: str) -> float:
    """A DUR of docs/spec/pipeline.md §5 ('600', '90s', '10m', '2h', '1d') in seconds; UsageError if bad."""
    return parse_duration_ms(value, option) / 1000


def check_thresholds(warn_after_seconds: float, error_after_seconds: float) -> None:
    if warn_after_seconds > error_after_seconds:
        raise UsageError(
            f"--warn-after ({_number(warn_after_seconds)}s) is greater than --error-after "
            f"({_number(error_after_seconds)}s)"
        )


def select_kpis(
    kpi_names: list[str], level: str | None
) -> tuple[str, list[registry.KpiDefinition]]:
    """The level to check and its KPIs, in registry order.

    Without `--kpi`, every KPI of `level` (default factory). With `--kpi`, those KPIs; the level
    defaults to theirs, and a KPI of another level than an explicit `--level` is a usage error.
    """
    if level is not None and level not in FRESHNESS_LEVELS:
        raise UsageError(f"invalid --level {level!r} (use one of {', '.join(FRESHNESS_LEVELS)})")
    if not kpi_names:
        chosen = level or "factory"
        return chosen, list(registry.at_level(chosen))
    unknown = [name for name in kpi_names if name not in registry.BY_NAME]
    if unknown:
        raise UsageError(
            f"unknown KPI {unknown[0]!r} for --kpi (known: {', '.join(registry.names())})"
        )
    wanted = [registry.BY_NAME[name] for name in dict.fromkeys(kpi_names)]
    levels = {kpi.level for kpi in wanted}
    chosen = level or (levels.pop() if len(levels) == 1 else "")
    if not chosen:
        raise UsageError("--kpi names KPIs of different levels; check one level at a time")
    wrong = [kpi for kpi in wanted if kpi.level != chosen]
    if wrong:
        raise UsageError(
            f"KPI {wrong[0].name!r} is a {wrong[0].level}-level KPI, not {chosen} (--level)"
        )
    return chosen, [kpi for kpi in registry.KPIS if kpi in wanted]


def classify(age_seconds: float | None, warn_after: float, error_after: float) -> str:
    if age_seconds is None:
        return MISSING
    if age_seconds <= warn_after:
        return FRESH
    return STALE if age_seconds <= error_after else EXPIRED


def check_freshness(
    connection: Connection,
    kpis: list[registry.KpiDefinition],
    *,
    level: str,
    warn_after_seconds: float,
    error_after_seconds: float,
    as_of: datetime | None = None,
) -> FreshnessReport:
    """Newest `calculated_at` per KPI at `level`, aged against `as_of` (default: the DB's now()).

    One index probe per KPI (ix_kpi_snapshots_latest), whatever the size of the table.
    """
    snapshots = kpi_snapshots
    wanted = values(column("kpi_name", String), name="wanted").data([(k.name,) for k in kpis])
    newest = (
        select(func.max(snapshots.c.calculated_at))
        .where(snapshots.c.level == level, snapshots.c.kpi_name == wanted.c.kpi_name)
        .scalar_subquery()
    )
    checked_at = func.now() if as_of is None else literal(as_of, TIMESTAMPTZ)
    statement = select(
        wanted.c.kpi_name,
        newest.label("last_calculated_at"),
        checked_at.label("checked_at"),
        func.extract("epoch", checked_at - newest).label("age_seconds"),
    )
    rows = {row.kpi_name: row for row in connection.execute(statement)}
    checked = next(iter(rows.values())).checked_at if rows else as_of
    results = []
    for kpi in kpis:
        row = rows[kpi.name]
        age = None if row.age_seconds is None else float(row.age_seconds)
        results.append(
            KpiFreshness(
                kpi.name,
                level,
                row.last_calculated_at,
                age,
                classify(age, warn_after_seconds, error_after_seconds),
            )
        )
    return FreshnessReport(level, warn_after_seconds, error_after_seconds, checked, results)


# --- documents and renderers -------------------------------------------------------------------


def report_document(report: FreshnessReport) -> dict[str, Any]:
    """The JSON document of docs/spec/pipeline.md §5."""
    return {
        "status": "success",
        "data": [
            {
                "kpiName": kpi.kpi_name,
                "level": kpi.level,
                "freshnessSeconds": None if kpi.age_seconds is None else round(kpi.age_seconds, 3),
                "lastCalculatedAt": kpi.last_calculated_at,
                "isFresh": kpi.is_fresh,
                "status": kpi.status,
            }
            for kpi in report.kpis
        ],
        "overall": {
            "status": report.status,
            "isFresh": report.exit_code == 0,
            "exitCode": report.exit_code,
            "level": report.level,
            "warnAfterSeconds": report.warn_after_seconds,
            "errorAfterSeconds": report.error_after_seconds,
            "checkedAt": report.checked_at,
            "counts": report.counts,
        },
    }


def error_document(message: str, level: str, warn_after: float, error_after: float) -> dict:
    """The JSON document when the check could not run (exit 3)."""
    return {
        "status": "error",
        "error": message,
        "data": [],
        "overall": {
            "status": "unknown",
            "isFresh": False,
            "exitCode": UNKNOWN_EXIT_CODE,
            "level": level,
            "warnAfterSeconds": warn_after,
            "errorAfterSeconds": error_after,
        },
    }


def table_rows(report: FreshnessReport) -> list[list[Any]]:
    return [
        [
            kpi.kpi_name,
            kpi.level,
            kpi.status,
            "never" if kpi.age_seconds is None else human_age(kpi.age_seconds),
            kpi.last_calculated_at,
        ]
        for kpi in report.kpis
    ]


TABLE_COLUMNS = ["kpi", "level", "status", "age", "last_calculated_at"]


def render_nagios(report: FreshnessReport) -> str:
    """One Nagios/Icinga plugin line: `KPI FRESHNESS <STATE> - <summary> | <perfdata>`."""
    parts = []
    for status in (EXPIRED, MISSING, STALE):
        affected = [kpi for kpi in report.kpis if kpi.status == status]
        if affected:
            shown = ", ".join(
                kpi.kpi_name
                if kpi.age_seconds is None
                else f"{kpi.kpi_name} ({_number(kpi.age_seconds, 0)}s)"
                for kpi in affected
            )
            parts.append(f"{status}: {shown}")
    fresh = report.counts[FRESH]
    parts.append(f"{fresh} of {len(report.kpis)} {report.level} KPIs fresh")
    warn, error = _number(report.warn_after_seconds), _number(report.error_after_seconds)
    perfdata = " ".join(
        f"{kpi.kpi_name}="
        + ("U" if kpi.age_seconds is None else f"{_number(kpi.age_seconds)}s")
        + f";{warn};{error};0;"
        for kpi in report.kpis
    )
    word = NAGIOS_WORDS[report.exit_code]
    return f"KPI FRESHNESS {word} - {'; '.join(parts)} | {perfdata}"


def render_nagios_unknown(message: str) -> str:
    return f"KPI FRESHNESS UNKNOWN - {message}"


PROMETHEUS_PREFIX = "kpictl_"


def render_prometheus(report: FreshnessReport | None) -> str:
    """Prometheus text exposition (node_exporter textfile collector).

    A KPI never computed has no timestamp or age sample but still its status samples; with
    `report=None` (the check could not run) only `kpictl_freshness_check_success 0` is written.
    """
    lines: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        lines.append(f"# HELP {PROMETHEUS_PREFIX}{name} {help_text}")
        lines.append(f"# TYPE {PROMETHEUS_PREFIX}{name} gauge")
        for labels, value in samples:
            lines.append(f"{PROMETHEUS_PREFIX}{name}{_labels(labels)} {_sample(value)}")

    family(
        "freshness_check_success",
        "1 when kpictl freshness could read kpi_snapshots, 0 when it could not.",
        [({}, 0 if report is None else 1)],
    )
    if report is not None:
        computed = [kpi for kpi in report.kpis if kpi.last_calculated_at is not None]
        family(
            "kpi_last_calculated_timestamp_seconds",
            "Unix time of the newest calculated_at of the KPI at this level.",
            [(_kpi_labels(kpi), kpi.last_calculated_at.timestamp()) for kpi in computed],  # type: ignore[union-attr]
        )
        family(
            "kpi_age_seconds",
            "Seconds since the newest calculated_at of the KPI at this level.",
            [(_kpi_labels(kpi), kpi.age_seconds) for kpi in computed],  # type: ignore[misc]
        )
        family(
            "kpi_freshness_status",
            "Freshness status of the KPI: 1 for its current status, 0 for the others.",
            [
                ({**_kpi_labels(kpi), "status": status}, 1 if kpi.status == status else 0)
                for kpi in report.kpis
                for status in STATUSES
            ],
        )
        family(
            "freshness_warn_after_seconds",
            "Age above which a KPI is stale.",
            [({}, report.warn_after_seconds)],
        )
        family(
            "freshness_error_after_seconds",
            "Age above which a KPI is expired.",
            [({}, report.error_after_seconds)],
        )
        family(
            "freshness_check_timestamp_seconds",
            "Unix time of this check.",
            [({}, report.checked_at.timestamp())],
        )
    return "\n".join(lines) + "\n"


def _kpi_labels(kpi: KpiFreshness) -> dict[str, str]:
    return {"kpi": kpi.kpi_name, "level": kpi.level}


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (
        (key, value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"'))
        for key, value in labels.items()
    )
    return "{" + ",".join(f'{key}="{value}"' for key, value in escaped) + "}"


def _sample(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _number(value: float | Decimal, decimals: int = 3) -> str:
    """12.0 -> '12', 12.3456 -> '12.346' (decimals=3), 12.6 -> '13' (decimals=0)."""
    text = f"{float(value):.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def human_age(seconds: float) -> str:
    """42 -> '42s', 430 -> '7m 10s', 7380 -> '2h 3m', 273600 -> '3d 4h'."""
    whole = int(seconds)
    if whole < 60:
        return f"{max(whole, 0)}s"
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"
