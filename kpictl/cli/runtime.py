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
from typing import Any, cast

import typer

from kpictl.cli.logs import configure_logging
from kpictl.errors import (
    CommandFailed,
    ExitCode,
    KpictlError,
    LockHeld,
    UsageError,
    as_kpictl_error,
)
from kpictl.redact import redact, secrets_of_url
from kpictl.settings import Settings, settings_from_environment


def run_command(
    command: str,
    common: Mapping[str, Any],
    body: Callable[[Settings], int | None],
    argv: Sequence[str],
) -> None:
    """Resolve the settings, run `body` and exit with its code, or with the code of what it
    raised (a message on stderr, the traceback only with -v)."""
    verbose, quiet = bool(common["verbose"]), bool(common["quiet"])
    secrets = _known_secrets(common.get("database_url"), common.get("read_url"))
    try:
        configure_logging(
            verbose=verbose, quiet=quiet, log_format=_log_format(common), secrets=secrets
        )
        settings = _settings(command, common, argv)
        secrets += secrets_of_url(settings.target.url)
        secrets += secrets_of_url(settings.read_target.url if settings.read_target else None)
        code = body(settings) or 0
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        code = _failed(exc, common.get("output_format"), verbose, secrets)
    raise typer.Exit(int(code))


def _failed(
    exc: BaseException, output_format: str | None, verbose: bool, secrets: list[str]
) -> int:
    """Report what a command raised; with --format json also as a document, in a Nagios
    plugin's usage error as UNKNOWN. Its exit code."""
    code = exit_code_of(exc, verbose, secrets)
    if isinstance(exc, UsageError) and output_format == "nagios":
        return _nagios_unknown(exc, secrets)
    if output_format == "json":
        _json_failure(exc, code, secrets)
    return code


def _json_failure(exc: BaseException, code: int, secrets: list[str]) -> None:
    """`--format json`: the failure as a JSON document on stdout too (docs/OUTPUT.md)."""
    from kpictl.cli import output

    begun = output.streamed_document_begun()
    output.streamed_document_begun(False)
    if isinstance(exc, BrokenPipeError) or begun:
        return
    error = as_kpictl_error(exc)
    message = error.message if error else f"internal error: {type(exc).__name__}: {exc}"
    job_id = getattr(getattr(error, "partial", None), "job_id", None)  # a job stopped part-way
    details = {"job_id": str(job_id)} if job_id else {}
    output.emit_json(output.failure(redact(message, secrets), code, **details))


def _nagios_unknown(exc: UsageError, secrets: list[str]) -> int:
    """A Nagios plugin's bad argument or configuration is UNKNOWN (3), with a status line."""
    from kpictl.cli.render.freshness import UNKNOWN_EXIT_CODE, render_nagios_unknown

    print(render_nagios_unknown(redact(exc.message, secrets)))
    return UNKNOWN_EXIT_CODE


def _settings(command: str, common: Mapping[str, Any], argv: Sequence[str]) -> Settings:
    return settings_from_environment(
        flag_url=common["database_url"],
        flag_read_url=common.get("read_url"),
        command=command,
        verbose=bool(common["verbose"]),
        quiet=bool(common["quiet"]),
        log_format=_log_format(common),
        argv=tuple(argv),
        config_path=common.get("config"),
        interactive=sys.stdin.isatty() or sys.stderr.isatty(),
        embedded=bool(common.get("embedded")) or command == "kpictl demo",
    )


def _log_format(common: Mapping[str, Any]) -> str:
    """--log-format's value: a `LogFormat` member from Typer, or the text itself."""
    return cast(str, getattr(common["log_format"], "value", common["log_format"]))


def _known_secrets(flag_url: str | None, read_url: str | None = None) -> list[str]:
    """The passwords of every URL kpictl may be given, to mask before anything is logged."""
    secrets = secrets_of_url(flag_url) + secrets_of_url(read_url)
    for name in ("KPICTL_DATABASE_URL", "DATABASE_URL", "KPICTL_READ_DATABASE_URL"):
        secrets += secrets_of_url(os.environ.get(name))
    return secrets


def exit_code_of(exc: BaseException, verbose: bool, secrets: list[str]) -> int:
    """The exit code of what a command raised, its message reported on stderr. A closed stdout
    (`kpictl ... | head`) is not an error; anything unknown is a bug of kpictl's (exit 1)."""
    if isinstance(exc, BrokenPipeError):
        from kpictl.cli.output import reader_gone

        reader_gone()  # the reader took what it wanted
        return ExitCode.OK
    error = as_kpictl_error(exc)
    if error is None:
        error = CommandFailed(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="this is a bug in kpictl; run again with -v and report the traceback",
        )
    if error is not exc:
        error.__cause__ = exc
    return _report(error, verbose, secrets)


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
