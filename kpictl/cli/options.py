"""Options declared once, as `Annotated` aliases, with the one rule that checks each kind of
value: `--format` and its subsets, `--tenant`, `--since`
/ `--until`, `--limit` and the other whole numbers, durations, `--timezone`, `--wait`,
`--output`. An option that only one command has and that needs no rule is declared next to its
command. The common options every command gets are in `cli/common_options.py`.

A bad value is a `UsageError` that names the option and the value (exit 2, one line on stderr,
before any SQL). The option takes the text as typed (`str`); the command body turns it into a
value with the rule below, inside the error handler of `cli/runtime.py`.

No heavy imports here: this module is on the `--help` and completion path.
"""

import math
import re
from datetime import date
from enum import Enum
from pathlib import Path
from types import UnionType
from typing import Annotated, Any

import typer

from kpictl.cli import complete
from kpictl.config import ERROR_AFTER_SECONDS as ERROR_AFTER_SECONDS
from kpictl.config import WARN_AFTER_SECONDS as WARN_AFTER_SECONDS
from kpictl.errors import UsageError, shown

# The rules shared with environment settings (KPICTL_STOP_GRACE_SECONDS, KPICTL_SOURCE_TIMEZONE):
from kpictl.settings import duration_seconds as duration_seconds
from kpictl.settings import time_zone as time_zone

DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")

# --- choices -------------------------------------------------------------------------------


class Format(str, Enum):
    """Every output format of kpictl. Each command offers a subset of them (below); the members
    of a subset are equal to these (`TableFormat.json == Format.json`)."""

    table = "table"
    json = "json"
    ndjson = "ndjson"
    csv = "csv"
    nagios = "nagios"
    prometheus = "prometheus"


# The subsets, each in the order Typer offers its values (and `--help` lists them). Classes, not
# `Enum(name, values)` calls, so that a type checker knows their members.


class TableFormat(str, Enum):
    table = Format.table.value
    json = Format.json.value
    ndjson = Format.ndjson.value
    csv = Format.csv.value


class KpisFormat(str, Enum):
    table = Format.table.value
    json = Format.json.value
    ndjson = Format.ndjson.value
    csv = Format.csv.value
    prometheus = Format.prometheus.value


class TextFormat(str, Enum):
    """The commands whose output for people is lines, not rows: still `table`, one word for
    the human format everywhere (`--format text` is read as `table`, see `normalize_argv`)."""

    table = Format.table.value
    json = Format.json.value


class MonitoringFormat(str, Enum):
    table = Format.table.value
    json = Format.json.value
    prometheus = Format.prometheus.value
    nagios = Format.nagios.value


class ExportFormat(str, Enum):
    csv = Format.csv.value
    json = Format.json.value
    ndjson = Format.ndjson.value
    table = Format.table.value


class KpiLevel(str, Enum):
    factory = "factory"
    product = "product"


class FreshnessLevel(str, Enum):
    factory = "factory"
    product = "product"
    run = "run"


class Grain(str, Enum):
    week = "week"
    month = "month"
    quarter = "quarter"


class Bucket(str, Enum):
    hour = "hour"
    day = "day"
    week = "week"


class JobStatus(str, Enum):
    """`kpi_aggregation_jobs.status` (kpictl.db.schema.JOB_STATUSES; a test keeps them equal)."""

    pending = "pending"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    abandoned = "abandoned"


class JobType(str, Enum):
    """The `job_type` of the jobs kpictl writes (a test keeps them equal to the job runner's)."""

    aggregate = "aggregate"
    backfill = "backfill"
    retention = "retention"
    history_fill = "history_fill"
    adopt = "adopt"


def _format_option(
    formats: type[Enum] | UnionType, help: str = "Output format.", **settings: Any
) -> Any:
    return Annotated[formats, typer.Option("--format", help=help, **settings)]


TableFormatOption = _format_option(TableFormat)
KpisFormatOption = _format_option(KpisFormat)
TextFormatOption = _format_option(TextFormat)
MonitoringFormatOption = _format_option(MonitoringFormat)
ExportFormatOption = _format_option(
    ExportFormat | None,
    help="Output format. Default: table on a terminal, else csv.",
    show_default=False,
)

# --- the rules -----------------------------------------------------------------------------


def whole_number(value: str | int, option: str, within: tuple[int, int] | None = None) -> int:
    """`value` as an int, within [low, high] when `within` is given."""
    try:
        number = value if isinstance(value, int) else int(value.strip())
    except ValueError:
        raise UsageError(
            f"invalid value for {option}: {shown(str(value))} is not a whole number"
        ) from None
    if within is not None and not within[0] <= number <= within[1]:
        raise UsageError(f"invalid value for {option}: {number} is not in {within[0]}-{within[1]}")
    return number


def calendar_date(value: str | None, option: str) -> date | None:
    """A `YYYY-MM-DD` value (None stays None)."""
    if value is None:
        return None
    if DATE_PATTERN.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise UsageError(f"invalid value for {option}: {shown(value)} is not a date (YYYY-MM-DD)")


def date_range(since: str | None, until: str | None) -> tuple[date | None, date | None]:
    """`--since` / `--until` as dates, with since <= until."""
    since_date = calendar_date(since, "--since")
    until_date = calendar_date(until, "--until")
    if since_date and until_date and since_date > until_date:
        raise UsageError(f"invalid value for --since: {since} is after --until {until}")
    return since_date, until_date


def wait_seconds(value: str | None) -> float | None:
    """--wait (no value) -> for ever; --wait N -> N seconds; absent -> no waiting."""
    if value is None:
        return None
    if value == OPTIONAL_VALUES["--wait"]:
        return math.inf
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"--wait: {value!r} is not a number of seconds") from None
    if not 0 < seconds < math.inf:
        raise UsageError(f"--wait must be a positive number of seconds, got {value!r}")
    return seconds


def output_file(path: Path | None) -> Path | None:
    """--output names a file in an existing directory (checked before any SQL)."""
    if path is None:
        return None
    directory = path.parent
    if path.is_dir():
        raise UsageError(f"invalid value for --output: {path} is a directory")
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"invalid value for --output: {directory} is not a directory")
    if not directory.is_dir():
        raise UsageError(f"invalid value for --output: directory {directory} does not exist")
    return path


# --- values used as defaults and by more than one command ----------------------------------

# `kpictl freshness` (and the demo's freshness table): stale after 5 min, expired after 15 min.
MAX_EXPORT_LIMIT = 10_000
MAX_CONCURRENCY = 64

# --- options with a value ------------------------------------------------------------------


def _text_option(name: str, help: str, **settings: Any) -> Any:
    """An option taken as typed; the command checks it with one of the rules above."""
    return Annotated[str, typer.Option(name, help=help, **settings)]


def _optional_text_option(name: str, help: str, **settings: Any) -> Any:
    return Annotated[str | None, typer.Option(name, help=help, show_default=False, **settings)]


JobsLimitOption = _text_option("--limit", "At most this many jobs (1-1000).", metavar="N")
ExportLimitOption = _text_option(
    "--limit", f"Newest rows, after --grain (1-{MAX_EXPORT_LIMIT}).", metavar="N"
)
ConcurrencyOption = _text_option(
    "--concurrency", f"Tenants processed in parallel (1-{MAX_CONCURRENCY}).", metavar="N"
)
PeriodHoursOption = _optional_text_option(
    "--period-hours",
    "Length of the period ending now (1-8760). Default: KPICTL_PERIOD_HOURS, else period_hours "
    "of the config file, else 24.",
    metavar="HOURS",
)
BatchSizeOption = _text_option(
    "--batch-size", "Rows per DELETE batch (1 to 1,000,000).", metavar="ROWS"
)


def _days_option(name: str, what: str, key: str, default: int) -> Any:
    return _optional_text_option(
        name,
        f"Delete {what} older than this many days (at least 1). Default: "
        f"KPICTL_RETENTION_{key.upper()}, else retention.{key} of the config file, else {default}.",
        metavar="DAYS",
    )


RunDaysOption = _days_option("--run-days", "run-level snapshots", "run_days", 90)
ProductDaysOption = _days_option("--product-days", "product-level snapshots", "product_days", 90)
FactoryDaysOption = _days_option("--factory-days", "factory-level snapshots", "factory_days", 730)
JobsDaysOption = _days_option("--jobs-days", "finished job rows", "jobs_days", 90)

WarnAfterOption = Annotated[
    str | None,
    typer.Option(
        "--warn-after",
        "-w",
        help="Stale above this age. Default: KPICTL_FRESHNESS_WARN_AFTER, else the config file "
        "([freshness.kpis.NAME], then [freshness] warn_after), else 300.",
        metavar="DUR",
        show_default=False,
    ),
]
ErrorAfterOption = Annotated[
    str | None,
    typer.Option(
        "--error-after",
        "-c",
        help="Expired above this age. Default: KPICTL_FRESHNESS_ERROR_AFTER, else the config "
        "file ([freshness.kpis.NAME], then [freshness] error_after), else 900.",
        metavar="DUR",
        show_default=False,
    ),
]
AlignOption = _text_option(
    "--align", "Round the period end down to this (e.g. 5m, 1h, 300).", metavar="DUR"
)
WaitOption = _optional_text_option(
    "--wait",
    "If another run holds the pipeline lock, wait for it (for ever, or SECONDS) instead of "
    "exiting 75.",
    metavar="[SECONDS]",
)
TimezoneOption = _text_option(
    "--timezone",
    "IANA zone the buckets align to.",
    metavar="ZONE",
    autocompletion=complete.time_zones,
)

SinceDateOption = _optional_text_option(
    "--since", "First date (YYYY-MM-DD, inclusive).", metavar="DATE"
)
UntilDateOption = _optional_text_option(
    "--until", "Last date (YYYY-MM-DD, inclusive).", metavar="DATE"
)
SinceInstantOption = _text_option(
    "--since", "Start: a date or ISO date-time (in --timezone).", metavar="TIME"
)
UntilInstantOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        help="End, exclusive: a date or ISO date-time (default: the end of the current bucket).",
        metavar="TIME",
    ),
]

KpiLevelOption = Annotated[
    KpiLevel | None,
    typer.Option(
        "--level",
        help="factory or product. Default: factory, or product with --product.",
        show_default=False,
    ),
]
FreshnessLevelOption = Annotated[
    FreshnessLevel | None,
    typer.Option(
        "--level",
        help="Level of the snapshots to check. Default: factory, or the level of --kpi.",
        show_default=False,
    ),
]

TENANT_HELP = "A tenant's UUID or slug"
TenantOption = _optional_text_option(
    "--tenant",
    f"{TENANT_HELP}. Default: every tenant.",
    metavar="TENANT",
    autocompletion=complete.tenants,
)
RequiredTenantOption = Annotated[
    str,
    typer.Option(
        "--tenant",
        help=f"{TENANT_HELP}.",
        metavar="TENANT",
        show_default=False,
        autocompletion=complete.tenants,
    ),
]
TenantsOption = Annotated[
    list[str],
    typer.Option(
        "--tenant",
        help=f"{TENANT_HELP}; repeat for several.",
        metavar="TENANT",
        show_default=False,
        autocompletion=complete.tenants,
    ),
]
OutputFileOption = Annotated[
    Path | None,
    typer.Option(
        "--output",
        help="Write to this file (atomically: a temporary file, then a rename) instead of stdout.",
        metavar="FILE",
        show_default=False,
    ),
]

# --- options whose value is optional -------------------------------------------------------

# `--wait` or `--wait 30`: Typer needs a value, so a bare occurrence gets this one before parsing.
OPTIONAL_VALUES = {"--wait": "forever"}


# Earlier names of a --format value, still accepted.
FORMAT_ALIASES = {"text": "table"}


def normalize_argv(args: list[str]) -> list[str]:
    """`args` with the value of a bare optional-value option filled in (`--wait` -> `--wait
    forever`; a following number, `--wait -3`, is taken as its value) and old --format names
    replaced (`--format text` -> `--format table`)."""
    normalized: list[str] = []
    for index, arg in enumerate(args):
        if index and args[index - 1] == "--format" and arg in FORMAT_ALIASES:
            arg = FORMAT_ALIASES[arg]
        elif arg.startswith("--format=") and arg[9:] in FORMAT_ALIASES:
            arg = "--format=" + FORMAT_ALIASES[arg[9:]]
        normalized.append(arg)
        if arg in OPTIONAL_VALUES:
            following = args[index + 1] if index + 1 < len(args) else None
            if following is None or (following.startswith("-") and not _is_number(following)):
                normalized.append(OPTIONAL_VALUES[arg])
    return normalized


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
