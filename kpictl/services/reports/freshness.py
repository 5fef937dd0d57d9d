"""`kpictl freshness`: how long ago each KPI was last calculated, judged against two thresholds.

Per KPI of the registry at one level: the age of the newest `calculated_at` in `kpi_snapshots`,
measured against the database clock (the same clock that stamped `calculated_at`), with a
status from best to worst. The exit codes (the Nagios/Icinga plugin convention of docs/spec/pipeline.md
§5) and every output format, the monitoring ones included, are built from the report in
`kpictl/cli/render/freshness.py`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, String, column, func, literal, select, values

from kpictl import kpis as registry
from kpictl.db.schema import TIMESTAMPTZ, kpi_snapshots
from kpictl.errors import UsageError
from kpictl.serialize import plain_number
from kpictl.settings import duration_seconds

FRESH, STALE, EXPIRED, MISSING = "fresh", "stale", "expired", "missing"
STATUSES = (FRESH, STALE, EXPIRED, MISSING)  # from best to worst
FRESHNESS_LEVELS = ("factory", "product", "run")


@dataclass(frozen=True)
class KpiFreshness:
    kpi_name: str
    level: str
    last_calculated_at: datetime | None  # None: never computed at this level
    age_seconds: float | None
    status: str
    # This KPI's own thresholds ([freshness.kpis.NAME] of the config file); None: the report's.
    thresholds: tuple[float, float] | None = None

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


def parse_threshold_seconds(value: str, option: str) -> float:
    """A DUR of docs/spec/pipeline.md §5 ('600', '90s', '10m', '2h', '1d') in seconds; UsageError if bad."""
    return duration_seconds(value, option)


def check_thresholds(
    warn_after_seconds: float, error_after_seconds: float, kpi: str | None = None
) -> None:
    if warn_after_seconds > error_after_seconds:
        of = f" for KPI {kpi}" if kpi else ""
        raise UsageError(
            f"--warn-after ({plain_number(warn_after_seconds)}s) is greater than --error-after "
            f"({plain_number(error_after_seconds)}s){of}"
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
    per_kpi: Mapping[str, tuple[float, float]] | None = None,
    as_of: datetime | None = None,
) -> FreshnessReport:
    """Newest `calculated_at` per KPI at `level`, aged against `as_of` (default: the DB's now()),
    judged by the two thresholds, or by the KPI's own (warn, error) in `per_kpi`.

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
    assert checked is not None  # a row per KPI; no KPIs fails above (VALUES needs a row)
    results = []
    for kpi in kpis:
        row = rows[kpi.name]
        age = None if row.age_seconds is None else float(row.age_seconds)
        own = (per_kpi or {}).get(kpi.name)
        warn, error = own or (warn_after_seconds, error_after_seconds)
        results.append(
            KpiFreshness(
                kpi.name, level, row.last_calculated_at, age, classify(age, warn, error), own
            )
        )
    return FreshnessReport(level, warn_after_seconds, error_after_seconds, checked, results)
