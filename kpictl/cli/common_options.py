"""The common options every command gets, added by `cli/commands.py::kpictl_command` and
resolved once by `cli/runtime.py` into `Settings`.

No heavy imports here: this module is on the `--help` and completion path.
"""

import inspect
from enum import Enum
from typing import Annotated, Any

import typer


class LogFormat(str, Enum):
    text = "text"
    json = "json"


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL (postgresql:// or postgres://). Default: $KPICTL_DATABASE_URL, "
        "$DATABASE_URL, $KPICTL_DATABASE_URL_FILE, $CREDENTIALS_DIRECTORY/database-url, "
        "else the embedded server.",
        metavar="URL",
        show_default=False,
        rich_help_panel="Common options",
    ),
]
VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Debug logs; tracebacks on errors.",
        rich_help_panel="Common options",
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="Only warnings and errors on stderr.",
        rich_help_panel="Common options",
    ),
]
LogFormatOption = Annotated[
    LogFormat,
    typer.Option(
        "--log-format",
        help="Log lines on stderr as text or JSON lines.",
        envvar="KPICTL_LOG_FORMAT",
        case_sensitive=False,
        rich_help_panel="Common options",
    ),
]

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        help="Config file (TOML). Default: $KPICTL_CONFIG, else config.toml in the user "
        "config directory when it exists.",
        metavar="FILE",
        show_default=False,
        rich_help_panel="Common options",
    ),
]
ReadUrlOption = Annotated[
    str | None,
    typer.Option(
        "--read-url",
        help="For commands that only read (kpis, freshness, jobs, history export, report): "
        "read from this database, e.g. a replica. Default: $KPICTL_READ_DATABASE_URL, "
        "$KPICTL_READ_DATABASE_URL_FILE, $CREDENTIALS_DIRECTORY/read-database-url, else the "
        "database of --database-url.",
        metavar="URL",
        show_default=False,
        rich_help_panel="Common options",
    ),
]
EmbeddedOption = Annotated[
    bool,
    typer.Option(
        "--embedded",
        help="Use the embedded server when no URL is set, even without a terminal "
        "(cron, scripts; also KPICTL_EMBEDDED=1).",
        rich_help_panel="Common options",
    ),
]


def _common(name: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


COMMON_PARAMETERS = [
    _common("database_url", None, DatabaseUrlOption),
    _common("read_url", None, ReadUrlOption),
    _common("verbose", False, VerboseOption),
    _common("quiet", False, QuietOption),
    _common("log_format", LogFormat.text, LogFormatOption),
    _common("config", None, ConfigOption),
    _common("embedded", False, EmbeddedOption),
]
