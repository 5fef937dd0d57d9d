"""How a command is registered: every (sub-)app built by `new_app` with the same settings, every
command wrapped by `kpictl_command`, which adds the common options (`cli/options.py`), resolves
`Settings` once and runs the body inside the single error handler of `cli/runtime.py`.

No heavy imports here: this module is on the `--help` and completion path.
"""

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from kpictl.cli.common_options import COMMON_PARAMETERS
from kpictl.cli.usage import KpictlGroup

# A command's body: `func(settings, **options) -> exit code | None`.
CommandBody = TypeVar("CommandBody", bound=Callable[..., int | None])


def verbatim_examples(help: str) -> str:
    """`help` with Click's no-rewrap marker (`\\b`) before every paragraph of indented lines
    (the examples), so that they are printed as written, one command a line, at any width."""
    paragraphs = help.split("\n\n")
    return "\n\n".join(
        f"\b\n{paragraph}" if paragraph.strip() and paragraph.startswith("    ") else paragraph
        for paragraph in paragraphs
    )


def new_app(name: str | None = None, help: str | None = None) -> typer.Typer:
    """Every (sub-)app is built here, with the same settings; the root reports Click's parsing
    errors in kpictl's style (`cli/usage.py`)."""
    root: dict[str, Any] = {"cls": KpictlGroup} if name is None else {}
    return typer.Typer(
        name=name,
        help=verbatim_examples(help) if help else help,
        no_args_is_help=True,
        add_completion=name is None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
        rich_markup_mode=None,
        **root,
    )


def kpictl_command(
    app: typer.Typer, name: str, **command_kwargs: Any
) -> Callable[[CommandBody], CommandBody]:
    """Register `func(settings, **options) -> exit code | None` as command `name`: the wrapper
    adds the common options, resolves `Settings` once, configures logging and runs the body
    inside the single error handler of `kpictl.cli.runtime`."""

    def decorator(func: CommandBody) -> CommandBody:
        full_name = f"kpictl {app.info.name} {name}" if app.info.name else f"kpictl {name}"

        def wrapper(**kwargs: Any) -> None:
            from kpictl.cli.runtime import run_command

            common = {p.name: kwargs.pop(p.name) for p in COMMON_PARAMETERS}
            # a failure in --format json is a JSON document, a Nagios plugin's usage error is
            # UNKNOWN (3): see runtime.run_command
            common["output_format"] = getattr(kwargs.get("format"), "value", None)
            run_command(full_name, common, lambda settings: func(settings, **kwargs), sys.argv)

        command_kwargs["help"] = verbatim_examples(command_kwargs.get("help") or "")
        app.command(name, **command_kwargs)(_with_signature(wrapper, func, COMMON_PARAMETERS))
        return func

    return decorator


def _with_signature(
    wrapper: Callable[..., None], func: Callable[..., int | None], extra: list[inspect.Parameter]
) -> Callable[..., None]:
    """`wrapper` with the options of `func` (all but `settings`) and `extra`, for Typer to read."""
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "settings"]
    parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + extra
    functools.update_wrapper(wrapper, func)
    del wrapper.__wrapped__  # type: ignore[attr-defined]  # Typer must read __signature__
    wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


def kpictl_group_default(group: typer.Typer, *, help: str) -> Callable[[CommandBody], CommandBody]:
    """Register `func(settings, **options)` as what `kpictl <group>` does when no subcommand
    follows (e.g. `kpictl jobs` lists, `kpictl jobs show ID` shows), with the common options and
    error handling of `kpictl_command`."""

    def decorator(func: CommandBody) -> CommandBody:
        holder = typer.Typer()  # only to build the command wrapper; never mounted
        kpictl_command(holder, group.info.name or "", help=help)(func)
        command = holder.registered_commands[0].callback
        assert command is not None

        def default(ctx: typer.Context, **options: Any) -> None:
            if ctx.invoked_subcommand is None:
                command(**options)

        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        parameters = [context, *inspect.signature(command).parameters.values()]
        default.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        default.__annotations__ = {"ctx": typer.Context, **command.__annotations__}
        shown = verbatim_examples(help)
        group.callback(invoke_without_command=True, no_args_is_help=False, help=shown)(default)
        return func

    return decorator
