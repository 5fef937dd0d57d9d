"""Options declared once, as `Annotated` aliases, and the decorator that gives every command
the common ones (`--database-url`, `-v`, `-q`, `--log-format`) and the central error handling.

No heavy imports here: this module is on the `--help` and completion path.
"""

import functools
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any

import typer


class LogFormat(str, Enum):
    text = "text"
    json = "json"


class TableFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class TextFormat(str, Enum):
    text = "text"
    json = "json"


def parse_wait(value: str | None) -> float | None:
    """--wait (no value) -> for ever; --wait N -> N seconds; absent -> no waiting."""
    from kpictl.errors import UsageError

    if value is None:
        return None
    if value == "forever":
        return math.inf
    try:
        seconds = float(value)
    except ValueError:
        raise UsageError(f"--wait: {value!r} is not a number of seconds") from None
    if not 0 < seconds < math.inf:
        raise UsageError(f"--wait must be a positive number of seconds, got {value!r}")
    return seconds


def whole_number(value: str | int) -> int:
    """Typer `parser=` for integer options: the error names the offending value."""
    if isinstance(value, int):
        return value
    try:
        return int(value.strip())
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a whole number") from None


DatabaseUrlOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL (postgresql:// or postgres://). Default: $KPICTL_DATABASE_URL, "
        "$DATABASE_URL, $KPICTL_DATABASE_URL_FILE, $CREDENTIALS_DIRECTORY/database-url, "
        "the config file's database_url_file, else the embedded server (in a terminal only).",
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
        envvar="KPICTL_LOG_FORMAT",
        help="Log lines on stderr: text, or JSON lines for log shippers (with the job ID).",
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
EmbeddedOption = Annotated[
    bool,
    typer.Option(
        "--embedded",
        help="Use the embedded server when no URL is set, even without a terminal "
        "(cron, scripts; also KPICTL_EMBEDDED=1).",
        rich_help_panel="Common options",
    ),
]

COMMON_PARAMETERS = [
    inspect.Parameter(
        "database_url", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=DatabaseUrlOption
    ),
    inspect.Parameter(
        "verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VerboseOption
    ),
    inspect.Parameter(
        "quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=QuietOption
    ),
    inspect.Parameter(
        "log_format",
        inspect.Parameter.KEYWORD_ONLY,
        default=LogFormat.text,
        annotation=LogFormatOption,
    ),
    inspect.Parameter(
        "config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ConfigOption
    ),
    inspect.Parameter(
        "embedded", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=EmbeddedOption
    ),
]


def kpictl_command(app: typer.Typer, name: str, **command_kwargs: Any) -> Callable:
    """Register `func(settings, **options) -> exit code | None` as command `name`.

    The wrapper adds the common options, resolves `Settings` once, configures logging and runs
    the body inside the single error handler of `kpictl.cli.runtime`.
    """

    def decorator(func: Callable[..., int | None]) -> Callable[..., None]:
        own = [p for p in inspect.signature(func).parameters.values() if p.name != "settings"]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> None:
            from kpictl.cli.runtime import run_command

            common = {p.name: kwargs.pop(p.name) for p in COMMON_PARAMETERS}
            # a Nagios plugin's usage errors are UNKNOWN (3), see runtime.run_command
            common["nagios"] = getattr(kwargs.get("format"), "value", None) == "nagios"
            full_name = f"kpictl {app.info.name} {name}" if app.info.name else f"kpictl {name}"
            run_command(full_name, common, lambda settings: func(settings, **kwargs), sys.argv)

        wrapper.__signature__ = inspect.Signature(own + COMMON_PARAMETERS)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in own + COMMON_PARAMETERS}
        del wrapper.__wrapped__  # Typer must read __signature__, not the wrapped function
        app.command(name, **command_kwargs)(wrapper)
        return func

    return decorator


def kpictl_group_default(group: typer.Typer, *, help: str) -> Callable:
    """Register `func(settings, **options)` as what `kpictl <group>` does when no subcommand
    follows (e.g. `kpictl jobs` lists, `kpictl jobs show ID` shows), with the common options and
    error handling of `kpictl_command`."""

    def decorator(func: Callable[..., int | None]) -> Callable[..., int | None]:
        holder = typer.Typer()  # only to build the command wrapper; never mounted
        kpictl_command(holder, group.info.name or "", help=help)(func)
        command = holder.registered_commands[0].callback
        assert command is not None

        def default(ctx: typer.Context, **options: Any) -> None:
            if ctx.invoked_subcommand is None:
                command(**options)

        context = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        default.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [context, *inspect.signature(command).parameters.values()]
        )
        default.__annotations__ = {"ctx": typer.Context, **command.__annotations__}
        group.callback(invoke_without_command=True, no_args_is_help=False, help=help)(default)
        return func

    return decorator


def new_app(name: str | None = None, help: str | None = None) -> typer.Typer:
    """Every (sub-)app is built here, with the same settings."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        add_completion=name is None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
        rich_markup_mode=None,
    )


# Options whose value is optional (`--wait` or `--wait 30`): Typer needs a value, so a bare
# occurrence gets this one before parsing.
OPTIONAL_VALUES = {"--wait": "forever"}


def normalize_argv(args: list[str]) -> list[str]:
    normalized: list[str] = []
    for index, arg in enumerate(args):
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


def wants_nagios(args: Sequence[str]) -> bool:
    """`kpictl freshness ... --format nagios`: run as a Nagios/Icinga plugin, whose usage errors
    are UNKNOWN (exit 3) with a status line, not Click's exit 2 (which a plugin means CRITICAL)."""
    args = list(args)
    if "freshness" not in args:
        return False
    for index, arg in enumerate(args):
        if arg == "--format" and index + 1 < len(args) and args[index + 1] == "nagios":
            return True
        if arg == "--format=nagios":
            return True
    return False
