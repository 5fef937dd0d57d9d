"""`kpictl doctor`: everything an operator checks first, one verdict per line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, text

from kpictl.db.schema import HISTORY_SOURCES, SOURCE_COLUMNS, TYPE_FAMILIES
from kpictl.errors import DatabaseUnavailable, classify_database_error
from kpictl.services import migrate

MIN_SERVER_VERSION = 150000  # UNIQUE NULLS NOT DISTINCT (the snapshot key) needs PostgreSQL 15

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)
    reachable: bool = True
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def healthy(self) -> bool:
        return self.reachable and all(check.status != FAIL for check in self.checks)

    def add(self, name: str, status: str, detail: str) -> None:
        self.checks.append(Check(name, status, detail))

    def as_dict(self) -> dict:
        return {
            "status": "healthy" if self.healthy else "unhealthy",
            "timestamp": self.timestamp,
            "checks": [asdict(check) for check in self.checks],
        }


# Extra checks registered by other areas (the pipeline adds its lock and last job).
EXTRA_CHECKS: list[Callable[[Connection, DoctorReport], None]] = []


def run_checks(engine: Engine, *, source: str, shown_url: str) -> DoctorReport:
    report = DoctorReport()
    report.add("database", OK, f"{shown_url} (from {source})")
    try:
        with engine.connect() as connection:
            report.add("reachable", OK, "connected")
            _check_server(connection, report)
            _check_migrations(connection, report)
            _check_sources(connection, report)
            for extra in EXTRA_CHECKS:
                extra(connection, report)
    except Exception as exc:
        error = classify_database_error(exc, connecting=not report.checks[1:])
        if error is None:
            raise
        if isinstance(error, DatabaseUnavailable) and len(report.checks) == 1:
            report.reachable = False
            report.add("reachable", FAIL, error.message)
        else:
            report.add("query", FAIL, error.message)
    return report


def _check_server(connection: Connection, report: DoctorReport) -> None:
    version_num = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    version = connection.execute(text("SHOW server_version")).scalar_one()
    if version_num < MIN_SERVER_VERSION:
        report.add("server version", FAIL, f"PostgreSQL {version}; kpictl needs 15 or later")
    else:
        report.add("server version", OK, f"PostgreSQL {version}")


def _check_migrations(connection: Connection, report: DoctorReport) -> None:
    state = migrate.status(connection)
    if state.up_to_date:
        report.add("migrations", OK, f"at head {state.head}")
    elif state.current is None:
        report.add("migrations", FAIL, f"not migrated (head is {state.head}); run `kpictl migrate`")
    else:
        report.add(
            "migrations", FAIL, f"at {state.current}, head is {state.head}; run `kpictl migrate`"
        )


def _check_sources(connection: Connection, report: DoctorReport) -> None:
    rows = connection.execute(
        text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ANY(:tables)"
        ),
        {"tables": list(SOURCE_COLUMNS)},
    ).all()
    actual: dict[str, dict[str, str]] = {}
    for table_name, column_name, data_type in rows:
        actual.setdefault(table_name, {})[column_name] = data_type
    for table_name, expected in SOURCE_COLUMNS.items():
        # History sources are optional: without them only `history fill` is unavailable.
        missing_status = WARN if table_name in HISTORY_SOURCES else FAIL
        columns = actual.get(table_name)
        if columns is None:
            report.add(f"source {table_name}", missing_status, "table missing")
            continue
        problems = []
        for column_name, family in expected.items():
            if column_name not in columns:
                problems.append(f"column {column_name} missing")
            elif family != "any" and columns[column_name] not in TYPE_FAMILIES[family]:
                problems.append(
                    f"column {column_name} is {columns[column_name]}, expected {family}"
                )
        if problems:
            report.add(f"source {table_name}", missing_status, "; ".join(problems))
        else:
            report.add(f"source {table_name}", OK, f"{len(expected)} columns present")
