"""The one place where a command's outcome becomes a message and an exit code.

Every command runs through `run_command`: settings resolved once, logging configured once, the
command body called, and any exception mapped to the exit codes of docs/spec/cli.md with a password-free
message on stderr (a traceback only with `-v`).
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import typer

from kpictl.cli.logs import configure_logging
from kpictl.errors import (
    CommandFailed,
    ExitCode,
    Interrupted,
    KpictlError,
    LockHeld,
    UsageError,
    classify_database_error,
)
from kpictl.redact import redact, secrets_of_url
from kpictl.settings import Settings, settings_from_environment


def run_command(
    command: str,
    common: Mapping[str, Any],
    body: Callable[[Settings], int | None],
    argv: Sequence[str],
) -> None:
    verbose = bool(common["verbose"])
    secrets = secrets_of_url(common.get("database_url"))
    secrets += secrets_of_url(os.environ.get("KPICTL_DATABASE_URL"))
    secrets += secrets_of_url(os.environ.get("DATABASE_URL"))
    log_format = getattr(common["log_format"], "value", common["log_format"])
    try:
        configure_logging(
            verbose=verbose, quiet=bool(common["quiet"]), log_format=log_format, secrets=secrets
        )
        settings = settings_from_environment(
            flag_url=common["database_url"],
            command=command,
            verbose=verbose,
            quiet=bool(common["quiet"]),
            log_format=log_format,
            argv=tuple(argv),
            config_path=common.get("config"),
            interactive=sys.stdin.isatty() or sys.stderr.isatty(),
            embedded=bool(common.get("embedded")) or command == "kpictl demo",
        )
        secrets += secrets_of_url(settings.target.url)
        code = body(settings) or 0
    except typer.Exit:
        raise
    except KpictlError as exc:
        code = _report(exc, verbose, secrets)
        if isinstance(exc, UsageError) and common.get("nagios"):
            # a plugin's bad argument or configuration is UNKNOWN, with a status line
            from kpictl.cli.render.freshness import UNKNOWN_EXIT_CODE, render_nagios_unknown

            print(render_nagios_unknown(redact(exc.message, secrets)))
            code = UNKNOWN_EXIT_CODE
    except BrokenPipeError:
        from kpictl.cli.output import reader_gone

        reader_gone()  # `kpictl ... | head`: the reader took what it wanted
        code = ExitCode.OK
    except KeyboardInterrupt:
        _report(Interrupted("interrupted", signal_exit=ExitCode.SIGINT), verbose, secrets)
        code = ExitCode.SIGINT
    except Exception as exc:
        error = classify_database_error(exc)
        if error is None:
            error = CommandFailed(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="this is a bug in kpictl; run again with -v and report the traceback",
            )
        error.__cause__ = exc
        code = _report(error, verbose, secrets)
    raise typer.Exit(int(code))


def _report(error: KpictlError, verbose: bool, secrets: list[str]) -> int:
    logger = logging.getLogger("kpictl")
    if verbose:
        cause = error.__cause__ or error
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        logger.debug(redact(text, secrets))
    if isinstance(error, LockHeld):
        # Another host's run has it: expected where several hosts run the same timer. An info
        # line (silent with -q, so cron mails nothing); the exit code 75 still says so.
        logger.info("kpictl: %s", redact(error.message, secrets))
        return int(error.exit_code)
    logger.error(redact(error.message, secrets))
    if error.hint:
        logger.info("hint: %s", redact(error.hint, secrets))
    return int(error.exit_code)
